//! MachineMetric (singular; it has no ModifiedDate, citrix-monitor-api.md §3) →
//! `citrix_machine_metric`: disk IOPS and latency samples per machine, windowed on
//! `CollectedDate`. Timestamp: CollectedDate, exact.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, incremental_query, machine_sample_key,
    machine_sample_key_hash, machine_sample_point,
};
use crate::citrix::model::MachineMetric as Row;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_machine_metric";

pub struct MachineMetric;

impl Collector for MachineMetric {
    type Record<'de> = Row;
    type State = ();

    fn name(&self) -> String {
        "machine_metric".into()
    }

    fn entity_set(&self) -> &'static str {
        "MachineMetric"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("CollectedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &["MachineId", "CollectedDate", "Iops", "Latency"],
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
            base.field_opt("iops", r.iops)
                .field_opt("latency_ms", r.latency),
        );
        Ok(())
    }
}
