//! ResourceUtilization (singular, as the real service names it) → `citrix_resource_utilization`:
//! raw CPU and memory samples per machine. Windowed on `CollectedDate` (the sample's own time;
//! rows are not modified later). Timestamp: CollectedDate, exact (one sample per machine and time).

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, exact_ns, incremental_query, machine_or_id,
    tenant_point,
};
use crate::citrix::model::ResourceUtilization as Row;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

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
        Some(format!(
            "{}@{}",
            r.machine_id.as_deref()?,
            r.collected_date?
        ))
    }

    fn watermark(&self, r: &Row) -> Option<DateTime<Utc>> {
        r.collected_date
    }

    fn map(&self, r: &Row, _: &(), ctx: &Ctx, out: &mut Vec<Point>) -> Result<(), MapError> {
        let at = r
            .collected_date
            .ok_or_else(|| MapError("sample without CollectedDate".into()))?;
        let (dg, machine) = machine_or_id(r.machine.as_ref(), r.machine_id.as_deref());
        if machine.is_empty() {
            return Err(MapError("sample without MachineId".into()));
        }
        out.push(
            tenant_point(MEASUREMENT, exact_ns(at)?, ctx)
                .tag("delivery_group", dg)
                .tag("machine", machine)
                .field_opt("cpu_pct", r.percent_cpu)
                .field_opt("memory_used", r.used_memory)
                .field_opt("memory_total", r.total_memory),
        );
        Ok(())
    }
}
