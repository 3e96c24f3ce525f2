//! ResourceUtilization (singular, as the real service names it) → `citrix_resource_utilization`:
//! raw CPU and memory samples per machine. Windowed on `CollectedDate` (the sample's own time;
//! rows are not modified later). Timestamp: CollectedDate, exact (one sample per machine and time).

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, incremental_query, machine_sample_key,
    machine_sample_key_hash, machine_sample_point,
};
use crate::citrix::model::ResourceUtilization as Row;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_resource_utilization";

pub struct ResourceUtilization;

impl Collector for ResourceUtilization {
    type Record<'de> = Row;
    type State = ();

    fn name(&self) -> String {
        "resource_utilization".into()
    }

    fn entity_set(&self) -> &'static str {
        "ResourceUtilization"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("CollectedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "MachineId",
                "CollectedDate",
                "PercentCpu",
                "UsedMemory",
                "TotalMemory",
            ],
            Some(MACHINE_EXPAND),
            "CollectedDate",
            since,
            None,
            "MachineId",
        )
    }

    fn key(&self, r: &Row) -> Option<String> {
        machine_sample_key(r.machine_id.as_deref(), r.collected_date)
    }

    fn key_hash(&self, r: &Row) -> Option<u64> {
        machine_sample_key_hash(r.machine_id.as_deref(), r.collected_date)
    }

    fn watermark(&self, r: &Row) -> Option<DateTime<Utc>> {
        r.collected_date
    }

    fn map<'r>(
        &self,
        r: &'r Row,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let base = machine_sample_point(
            MEASUREMENT,
            r.collected_date,
            r.machine.as_ref(),
            r.machine_id.as_deref(),
            ctx,
        )?;
        out.push(
            base.field_opt("cpu_pct", r.percent_cpu)
                .field_opt("memory_used", r.used_memory)
                .field_opt("memory_total", r.total_memory),
        );
        Ok(())
    }
}
