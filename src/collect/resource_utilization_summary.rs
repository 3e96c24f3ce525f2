//! ResourceUtilizationSummary (singular, as the real service names it) →
//! `citrix_resource_summary`: per machine and interval (10 min, hour, day), average and peak CPU
//! and memory and the session count, as Citrix consolidated them. One job per granularity,
//! re-reading the last few intervals. Timestamp: SummaryDate.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, exact_ns, machine_names, summary_overlap,
    summary_query, tenant_point,
};
use crate::citrix::model::ResourceUtilizationSummary as Row;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

pub const MEASUREMENT: &str = "citrix_resource_summary";

pub struct ResourceUtilizationSummaries {
    pub granularity: i64,
}

impl Collector for ResourceUtilizationSummaries {
    type Record = Row;
    type State = ();

    fn name(&self) -> String {
        format!("resource_utilization_summary_{}", self.granularity)
    }

    fn entity_set(&self) -> &'static str {
        "ResourceUtilizationSummary"
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
                "MachineId",
                "AvgPercentCpu",
                "PeakPercentCpu",
                "AvgUsedMemory",
                "PeakUsedMemory",
                "AvgTotalMemory",
                "TotalSessionCount",
                "Granularity",
            ],
            Some(MACHINE_EXPAND),
            self.granularity,
            since,
        )
    }

    fn key(&self, r: &Row) -> Option<String> {
        match (r.id, &r.machine_id, r.summary_date) {
            (Some(id), _, _) => Some(id.to_string()),
            (None, Some(m), Some(d)) => Some(format!("{m}@{d}")),
            _ => None,
        }
    }

    fn watermark(&self, r: &Row) -> Option<DateTime<Utc>> {
        r.summary_date
    }

    fn map(&self, r: &Row, _: &(), ctx: &Ctx, out: &mut Vec<Point>) -> Result<(), MapError> {
        let at = r
            .summary_date
            .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
        let (dg, machine) = machine_names(r.machine.as_ref());
        let machine = if machine.is_empty() {
            r.machine_id.clone().unwrap_or_default()
        } else {
            machine
        };
        out.push(
            tenant_point(MEASUREMENT, exact_ns(at)?, ctx)
                .tag("delivery_group", dg)
                .tag("machine", machine)
                .tag(
                    "granularity",
                    r.granularity.unwrap_or(self.granularity).to_string(),
                )
                .field_opt("cpu_avg_pct", r.avg_percent_cpu)
                .field_opt("cpu_peak_pct", r.peak_percent_cpu)
                .field_opt("memory_used_avg", r.avg_used_memory)
                .field_opt("memory_used_peak", r.peak_used_memory)
                .field_opt("memory_total_avg", r.avg_total_memory)
                .field_opt("session_count", r.total_session_count),
        );
        Ok(())
    }
}
