//! LoadIndexSummaries → `citrix_load_index_summary`: per machine and interval, the average load
//! index and its components (Citrix stores sums and a sample count: average = Sum* ÷ SumCount of
//! the same row). One job per granularity, re-reading the last few intervals. Timestamp:
//! SummaryDate.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, avg, exact_ns, machine_names, summary_overlap,
    summary_query, tenant_point,
};
use crate::citrix::model::LoadIndexSummary;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

pub const MEASUREMENT: &str = "citrix_load_index_summary";

pub struct LoadIndexSummaries {
    pub granularity: i64,
}

impl Collector for LoadIndexSummaries {
    type Record = LoadIndexSummary;
    type State = ();

    fn name(&self) -> String {
        format!("load_index_summaries_{}", self.granularity)
    }

    fn entity_set(&self) -> &'static str {
        "LoadIndexSummaries"
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
                "SumCount",
                "SumLoadIndex",
                "SumCpu",
                "SumMemory",
                "SumDisk",
                "SumNetwork",
                "SumSessionCount",
                "Granularity",
            ],
            Some(MACHINE_EXPAND),
            self.granularity,
            since,
        )
    }

    fn key(&self, r: &LoadIndexSummary) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn watermark(&self, r: &LoadIndexSummary) -> Option<DateTime<Utc>> {
        r.summary_date
    }

    fn map(
        &self,
        r: &LoadIndexSummary,
        _: &(),
        ctx: &Ctx,
        out: &mut Vec<Point>,
    ) -> Result<(), MapError> {
        let at = r
            .summary_date
            .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
        let (dg, machine) = machine_names(r.machine.as_ref());
        let machine = if machine.is_empty() {
            r.machine_id.clone().unwrap_or_default()
        } else {
            machine
        };
        let n = r.sum_count;
        out.push(
            tenant_point(MEASUREMENT, exact_ns(at)?, ctx)
                .tag("delivery_group", dg)
                .tag("machine", machine)
                .tag(
                    "granularity",
                    r.granularity.unwrap_or(self.granularity).to_string(),
                )
                .field_opt("load_index_avg", avg(r.sum_load_index, n))
                .field_opt("cpu_avg", avg(r.sum_cpu, n))
                .field_opt("memory_avg", avg(r.sum_memory, n))
                .field_opt("disk_avg", avg(r.sum_disk, n))
                .field_opt("network_avg", avg(r.sum_network, n))
                .field_opt("session_count_avg", avg(r.sum_session_count, n))
                .field_opt("samples", n),
        );
        Ok(())
    }
}
