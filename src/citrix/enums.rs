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

/// `ConnectionFailureCategory.Category` (§4.1, ConnectionFailureType).
pub fn connection_failure_type(v: i64) -> Cow<'static, str> {
    lookup(
        &[
            (0, "None"),
            (1, "ClientConnectionFailure"),
            (2, "MachineFailure"),
            (3, "NoCapacityAvailable"),
            (4, "NoLicensesAvailable"),
            (5, "Configuration"),
        ],
        v,
    )
}

/// `FailureLogSummary.FailureCategory` (§4.1, FailureCategory).
pub fn failure_category(v: i64) -> Cow<'static, str> {
    lookup(&[(0, "Unknown"), (1, "Connection"), (2, "Machine")], v)
}

/// `ConnectionFailureEnumValue`, `FailureCode` (§4.1, SessionFailureCode).
pub fn session_failure_code(v: i64) -> Cow<'static, str> {
    lookup(
        &[
            (0, "Unknown"),
            (1, "None"),
            (2, "SessionPreparation"),
            (3, "RegistrationTimeout"),
            (4, "ConnectionTimeout"),
            (5, "Licensing"),
            (6, "Ticketing"),
            (7, "Other"),
            (8, "GeneralFail"),
            (9, "MaintenanceMode"),
            (10, "ApplicationDisabled"),
            (11, "LicenseFeatureRefused"),
            (12, "NoDesktopAvailable"),
            (13, "SessionLimitReached"),
            (14, "DisallowedProtocol"),
            (15, "ResourceUnavailable"),
            (16, "ActiveSessionReconnectDisabled"),
            (17, "NoSessionToReconnect"),
            (18, "SpinUpFailed"),
            (19, "Refused"),
            (20, "ConfigurationSetFailure"),
            (21, "MaxTotalInstancesExceeded"),
            (22, "MaxPerUserInstancesExceeded"),
            (23, "CommunicationError"),
            (24, "MaxPerMachineInstancesExceeded"),
            (25, "MaxPerEntitlementInstancesExceeded"),
            (100, "NoMachineAvailable"),
            (101, "MachineNotFunctional"),
        ],
        v,
    )
}

/// `LastDeregisteredCode` (§4.2, DeregistrationReason).
pub fn deregistration_reason(v: i64) -> Cow<'static, str> {
    lookup(
        &[
            (0, "AgentShutdown"),
            (1, "AgentSuspended"),
            (2, "AgentRequested"),
            (100, "IncompatibleVersion"),
            (101, "AgentAddressResolutionFailed"),
            (102, "AgentNotContactable"),
            (103, "AgentWrongActiveDirectoryOU"),
            (104, "EmptyRegistrationRequest"),
            (105, "MissingRegistrationCapabilities"),
            (106, "MissingAgentVersion"),
            (108, "NotLicensedForFeature"),
            (109, "UnsupportedCredentialSecurityVersion"),
            (110, "InvalidRegistrationRequest"),
            (111, "SingleMultiSessionMismatch"),
            (112, "FunctionalLevelTooLowForCatalog"),
            (113, "FunctionalLevelTooLowForDesktopGroup"),
            (114, "OSNotCompatibleWithDdc"),
            (115, "VMNotCompatibleWithDdc"),
            (200, "PowerOff"),
            (201, "DesktopRestart"),
            (202, "DesktopRemoved"),
            (203, "AgentRejectedSettingsUpdate"),
            (204, "SendSettingsFailure"),
            (205, "SessionAuditFailure"),
            (206, "SessionPrepareFailure"),
            (207, "ContactLost"),
            (208, "SettingsCreationFailure"),
            (300, "UnknownError"),
            (301, "BrokerRegistrationLimitReached"),
            (400, "None"),
            (401, "HypervisorReportedFailure"),
            (402, "HypervisorRateLimitExceeded"),
            (1000, "HardRegistrationPending"),
            (1001, "SoftRegistered"),
            (1002, "Unknown"),
        ],
        v,
    )
}

/// `MachineHotfixLog.ChangeType` (HotfixChangeType). The ints are not in Citrix's published
/// tables; 0 Add, 1 Remove follows the declaration order (citrix-monitor-api.md §4.2, [INF]).
pub fn hotfix_change_type(v: i64) -> Cow<'static, str> {
    lookup(&[(0, "Add"), (1, "Remove")], v)
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
        assert_eq!(connection_failure_type(3), "NoCapacityAvailable");
        assert_eq!(failure_category(2), "Machine");
        assert_eq!(session_failure_code(101), "MachineNotFunctional");
        assert_eq!(session_failure_code(26), "Unknown(26)");
        assert_eq!(deregistration_reason(207), "ContactLost");
        assert_eq!(hotfix_change_type(1), "Remove");
    }
}
