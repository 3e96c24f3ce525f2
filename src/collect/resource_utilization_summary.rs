//! ResourceUtilizationSummary (singular, as the real service names it) →
//! `citrix_resource_summary`: per machine and interval (10 min, hour, day), average and peak CPU
//! and memory and the session count, as Citrix consolidated them. One job per granularity,
//! re-reading the last few intervals. Timestamp: SummaryDate.

use super::summary::SummaryKind;
use super::{MACHINE_EXPAND, machine_or_id};
use crate::citrix::model::ResourceUtilizationSummary as Row;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_resource_summary";

pub struct ResourceUtilizationSummaries {
    pub granularity: i64,
}

impl SummaryKind for ResourceUtilizationSummaries {
    type Row = Row;
    const KIND: &'static str = "resource_utilization_summary";
    const ENTITY_SET: &'static str = "ResourceUtilizationSummary";
    const SELECT: &'static [&'static str] = &[
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
    ];
    const EXPAND: &'static str = MACHINE_EXPAND;

    fn granularity(&self) -> i64 {
        self.granularity
    }

    fn measurement(&self) -> &'static str {
        MEASUREMENT
    }

    fn point<'r>(&self, r: &'r Row, base: PointOf<'r>) -> PointOf<'r> {
        let (dg, machine) = machine_or_id(r.machine.as_ref(), r.machine_id.as_deref());
        base.tag("delivery_group", dg)
            .tag("machine", machine)
            .field_opt("cpu_avg_pct", r.avg_percent_cpu)
            .field_opt("cpu_peak_pct", r.peak_percent_cpu)
            .field_opt("memory_used_avg", r.avg_used_memory)
            .field_opt("memory_used_peak", r.peak_used_memory)
            .field_opt("memory_total_avg", r.avg_total_memory)
            .field_opt("session_count", r.total_session_count)
    }
}
