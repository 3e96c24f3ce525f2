//! MachineSummaries → `citrix_machine_summary`: per delivery group and interval, how many
//! machines exist, are powered on, registered and in maintenance mode. One job per granularity,
//! re-reading the last few intervals. Timestamp: SummaryDate.

use super::summary::SummaryKind;

use crate::citrix::model::MachineSummary;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_machine_summary";

pub struct MachineSummaries {
    pub granularity: i64,
}

impl SummaryKind for MachineSummaries {
    type Row = MachineSummary;
    const KIND: &'static str = "machine_summaries";
    const ENTITY_SET: &'static str = "MachineSummaries";
    const SELECT: &'static [&'static str] = &[
        "Id",
        "SummaryDate",
        "MachinesCount",
        "PoweredOnMachinesCount",
        "RegisteredMachinesCount",
        "MachinesInMaintenanceModeCount",
        "Granularity",
    ];
    const EXPAND: &'static str = "DesktopGroup($select=Name)";

    fn granularity(&self) -> i64 {
        self.granularity
    }

    fn measurement(&self) -> &'static str {
        MEASUREMENT
    }

    fn point<'r>(&self, r: &'r MachineSummary, base: PointOf<'r>) -> PointOf<'r> {
        base.tag(
            "delivery_group",
            r.desktop_group
                .as_ref()
                .and_then(|g| g.name.clone())
                .unwrap_or_default(),
        )
        .field_opt("machines", r.machines_count)
        .field_opt("powered_on", r.powered_on_machines_count)
        .field_opt("registered", r.registered_machines_count)
        .field_opt("in_maintenance", r.machines_in_maintenance_mode_count)
    }
}
