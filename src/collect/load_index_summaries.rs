//! LoadIndexSummaries → `citrix_load_index_summary`: per machine and interval, the average load
//! index and its components (Citrix stores sums and a sample count: average = Sum* ÷ SumCount of
//! the same row). One job per granularity, re-reading the last few intervals. Timestamp:
//! SummaryDate.

use super::summary::SummaryKind;
use super::{MACHINE_EXPAND, avg, machine_or_id};
use crate::citrix::model::LoadIndexSummary;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_load_index_summary";

pub struct LoadIndexSummaries {
    pub granularity: i64,
}

impl SummaryKind for LoadIndexSummaries {
    type Row = LoadIndexSummary;
    const KIND: &'static str = "load_index_summaries";
    const ENTITY_SET: &'static str = "LoadIndexSummaries";
    const SELECT: &'static [&'static str] = &[
        "Id",
        "SummaryDate",
        "SumCount",
        "SumLoadIndex",
        "SumCpu",
        "SumMemory",
        "SumDisk",
        "SumNetwork",
        "SumSessionCount",
        "Granularity",
    ];
    const EXPAND: &'static str = MACHINE_EXPAND;

    fn granularity(&self) -> i64 {
        self.granularity
    }

    fn measurement(&self) -> &'static str {
        MEASUREMENT
    }

    fn point<'r>(&self, r: &'r LoadIndexSummary, base: PointOf<'r>) -> PointOf<'r> {
        let (dg, machine) = machine_or_id(r.machine.as_ref(), r.machine_id.as_deref());
        let n = r.sum_count;
        base.tag("delivery_group", dg)
            .tag("machine", machine)
            .field_opt("load_index_avg", avg(r.sum_load_index, n))
            .field_opt("cpu_avg", avg(r.sum_cpu, n))
            .field_opt("memory_avg", avg(r.sum_memory, n))
            .field_opt("disk_avg", avg(r.sum_disk, n))
            .field_opt("network_avg", avg(r.sum_network, n))
            .field_opt("session_count_avg", avg(r.sum_session_count, n))
            .field_opt("samples", n)
    }
}
