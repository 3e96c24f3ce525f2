//! Citrix Monitor enums: the OData API exposes enums as integers (citrix-monitor-api.md §4), and
//! dashboards want names. This file only maps int → name; an unknown value maps to
//! `Unknown(<n>)` so that a new Citrix release never breaks a harvest.

use std::borrow::Cow;

fn lookup(table: &'static [(i64, &'static str)], v: i64) -> Cow<'static, str> {
    match table.iter().find(|(k, _)| *k == v) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(format!("Unknown({v})")),
    }
}

/// `Machine.CurrentRegistrationState` (§4.1).
pub fn registration_state(v: i64) -> Cow<'static, str> {
    lookup(&[(0, "Unknown"), (1, "Registered"), (2, "Unregistered")], v)
}

/// `Machine.CurrentPowerState` (§4.2, PowerStateCode).
pub fn power_state(v: i64) -> Cow<'static, str> {
    lookup(
        &[
            (0, "Unknown"),
            (1, "Unavailable"),
            (2, "Off"),
            (3, "On"),
            (4, "Suspended"),
            (5, "TurningOn"),
            (6, "TurningOff"),
            (7, "Suspending"),
            (8, "Resuming"),
            (9, "Unmanaged"),
            (10, "NotSupported"),
            (11, "VirtualMachineNotFound"),
        ],
        v,
    )
}

/// `Machine.FaultState` (§4.2, MachineFaultStateCode).
pub fn fault_state(v: i64) -> Cow<'static, str> {
    lookup(
        &[
            (0, "Unknown"),
            (1, "None"),
            (2, "FailedToStart"),
            (3, "StuckOnBoot"),
            (4, "Unregistered"),
            (5, "MaxCapacity"),
            (6, "VirtualMachineNotFound"),
        ],
        v,
    )
}

/// `Session.ConnectionState` (§4.1).
pub fn connection_state(v: i64) -> Cow<'static, str> {
    lookup(
        &[
            (0, "Unknown"),
            (1, "Connected"),
            (2, "Disconnected"),
            (3, "Terminated"),
            (4, "PreparingSession"),
            (5, "Active"),
            (6, "Reconnecting"),
            (7, "NonBrokeredSession"),
            (8, "Other"),
            (9, "Pending"),
        ],
        v,
    )
}

/// `Session.SessionType` (§4.1).
pub fn session_type(v: i64) -> Cow<'static, str> {
    lookup(&[(0, "Desktop"), (1, "Application")], v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_values() {
        assert_eq!(registration_state(1), "Registered");
        assert_eq!(registration_state(0), "Unknown");
        assert_eq!(power_state(3), "On");
        assert_eq!(power_state(11), "VirtualMachineNotFound");
        assert_eq!(fault_state(1), "None");
        assert_eq!(connection_state(5), "Active");
        assert_eq!(session_type(1), "Application");
        assert_eq!(power_state(42), "Unknown(42)");
        assert_eq!(fault_state(-1), "Unknown(-1)");
    }
}
