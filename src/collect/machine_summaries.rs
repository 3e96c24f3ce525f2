//! MachineSummaries → `citrix_machine_summary`: per delivery group and interval, how many
//! machines exist, are powered on, registered and in maintenance mode. One job per granularity,
//! re-reading the last few intervals. Timestamp: SummaryDate.

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError, exact_ns, summary_overlap, summary_query, tenant_point};
use crate::citrix::model::MachineSummary;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

pub const MEASUREMENT: &str = "citrix_machine_summary";

pub struct MachineSummaries {
    pub granularity: i64,
}

impl Collector for MachineSummaries {
    type Record = MachineSummary;
    type State = ();

    fn name(&self) -> String {
        format!("machine_summaries_{}", self.granularity)
    }

    fn entity_set(&self) -> &'static str {
        "MachineSummaries"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("SummaryDate")
    }

    fn overlap(&self, _default: std::time::Duration) -> std::time::Duration {
        summary_overlap(self.granularity)
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        summary_query(
            self.entity_set(),
            &[
                "Id",
                "SummaryDate",
                "MachinesCount",
                "PoweredOnMachinesCount",
                "RegisteredMachinesCount",
                "MachinesInMaintenanceModeCount",
                "Granularity",
            ],
            Some("DesktopGroup($select=Name)"),
            self.granularity,
            since,
        )
    }

    fn key(&self, r: &MachineSummary) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn watermark(&self, r: &MachineSummary) -> Option<DateTime<Utc>> {
        r.summary_date
    }

    fn map(
        &self,
        r: &MachineSummary,
        _: &(),
        ctx: &Ctx,
        out: &mut Vec<Point>,
    ) -> Result<(), MapError> {
        let at = r
            .summary_date
            .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
        out.push(
            tenant_point(MEASUREMENT, exact_ns(at)?, ctx)
                .tag(
                    "delivery_group",
                    r.desktop_group
                        .as_ref()
                        .and_then(|g| g.name.clone())
                        .unwrap_or_default(),
                )
                .tag(
                    "granularity",
                    r.granularity.unwrap_or(self.granularity).to_string(),
                )
                .field_opt("machines", r.machines_count)
                .field_opt("powered_on", r.powered_on_machines_count)
                .field_opt("registered", r.registered_machines_count)
                .field_opt("in_maintenance", r.machines_in_maintenance_mode_count),
        );
        Ok(())
    }
}
