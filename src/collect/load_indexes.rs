//! LoadIndexes → `citrix_load_index`: every load-index sample of every machine (effective load
//! and its CPU, memory, disk, network and session components). Incremental on `CreatedDate`:
//! Metricbeat's Citrix module found that filtering LoadIndexes on `ModifiedDate` returns nothing
//! on the real service (citrix-monitor-api.md §5.5), and samples are not modified after they
//! are written. Timestamp: CreatedDate + Id offset.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, incremental_query, machine_or_id,
    record_timestamp_ns, tenant_point,
};
use crate::citrix::model::LoadIndexRow;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_load_index";

pub struct LoadIndexes;

impl Collector for LoadIndexes {
    type Record<'de> = LoadIndexRow;
    type State = ();

    fn name(&self) -> String {
        "load_indexes".into()
    }

    fn entity_set(&self) -> &'static str {
        "LoadIndexes"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("CreatedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "EffectiveLoadIndex",
                "Cpu",
                "Memory",
                "Disk",
                "Network",
                "SessionCount",
                "MachineId",
                "CreatedDate",
            ],
            Some(MACHINE_EXPAND),
            "CreatedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &LoadIndexRow) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &LoadIndexRow) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
    }

    fn watermark(&self, r: &LoadIndexRow) -> Option<DateTime<Utc>> {
        r.created_date
    }

    fn map<'r>(
        &self,
        r: &'r LoadIndexRow,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let id =
            r.id.ok_or_else(|| MapError("load index without Id".into()))?;
        let at = r
            .created_date
            .ok_or_else(|| MapError(format!("load index {id} has no CreatedDate")))?;
        let (dg, machine) = machine_or_id(r.machine.as_ref(), r.machine_id.as_deref());
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns(at, id), ctx)
                .tag("delivery_group", dg)
                .tag("machine", machine)
                .field_opt("load_index", r.effective_load_index)
                .field_opt("cpu", r.cpu)
                .field_opt("memory", r.memory)
                .field_opt("disk", r.disk)
                .field_opt("network", r.network)
                .field_opt("session_count", r.session_count),
        );
        Ok(())
    }
}
