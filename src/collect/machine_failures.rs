//! MachineFailureLogs → `citrix_machine_failure`: one point per machine failure (fault state,
//! deregistration reason, whether it is still ongoing, its duration once it ended).
//! Incremental on `ModifiedDate` (an ongoing failure is modified when it ends and overwrites
//! its point); timestamp FailureStartDate + Id offset.

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError, incremental_query, record_timestamp_ns, tenant_point};
use crate::citrix::enums;
use crate::citrix::model::MachineFailureLog;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_machine_failure";

pub struct MachineFailures;

impl Collector for MachineFailures {
    type Record<'de> = MachineFailureLog;
    type State = ();

    fn name(&self) -> String {
        "machine_failures".into()
    }

    fn entity_set(&self) -> &'static str {
        "MachineFailureLogs"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("ModifiedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "FailureStartDate",
                "FailureEndDate",
                "FaultState",
                "LastDeregisteredCode",
                "ModifiedDate",
            ],
            Some("Machine($select=Name;$expand=DesktopGroup($select=Name),Catalog($select=Name))"),
            "ModifiedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &MachineFailureLog) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &MachineFailureLog) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
    }

    fn watermark(&self, r: &MachineFailureLog) -> Option<DateTime<Utc>> {
        r.modified_date
    }

    fn map<'r>(
        &self,
        f: &'r MachineFailureLog,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let id =
            f.id.ok_or_else(|| MapError("machine failure log without Id".into()))?;
        let start = f
            .failure_start_date
            .or(f.created_date)
            .ok_or_else(|| MapError(format!("machine failure {id} has no FailureStartDate")))?;
        let m = f.machine.as_ref();
        let fault = f.fault_state;
        let dereg = f.last_deregistered_code;
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns(start, id), ctx)
                .tag(
                    "delivery_group",
                    m.and_then(|m| m.desktop_group.as_ref())
                        .and_then(|g| g.name.clone())
                        .unwrap_or_default(),
                )
                .tag(
                    "catalog",
                    m.and_then(|m| m.catalog.as_ref())
                        .and_then(|c| c.name.clone())
                        .unwrap_or_default(),
                )
                .tag(
                    "machine",
                    m.and_then(|m| m.name.clone()).unwrap_or_default(),
                )
                .tag(
                    "fault_state",
                    fault
                        .map(|v| enums::fault_state(v).into_owned())
                        .unwrap_or_default(),
                )
                .field("count", 1i64)
                .field_opt("fault_state_code", fault)
                .field_opt("deregistration_code", dereg)
                .field_opt(
                    "deregistration_reason",
                    dereg.map(|v| enums::deregistration_reason(v).into_owned()),
                )
                .field("ongoing", f.failure_end_date.is_none())
                .field_opt(
                    "duration_s",
                    super::span_ms(Some(start), f.failure_end_date).map(|ms| ms as f64 / 1000.0),
                )
                .field("failure_id", id),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::FieldValue;

    #[test]
    fn ongoing_and_ended_failures() {
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let f: MachineFailureLog = serde_json::from_str(
            r#"{"Id":9,"FailureStartDate":"2026-03-02T08:00:00Z","FailureEndDate":"2026-03-02T08:10:00Z",
                "FaultState":4,"LastDeregisteredCode":207,
                "Machine":{"Name":"D\\m","DesktopGroup":{"Name":"G"},"Catalog":{"Name":"Cat"}}}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        MachineFailures.map(&f, &(), &ctx, &mut out).unwrap();
        let p = &out[0];
        let f = |k: &str| {
            p.fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let t = |k: &str| p.tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(t("fault_state").as_deref(), Some("Unregistered"));
        assert_eq!(t("catalog").as_deref(), Some("Cat"));
        assert_eq!(
            f("deregistration_reason"),
            Some(FieldValue::Str("ContactLost".into()))
        );
        assert_eq!(f("duration_s"), Some(FieldValue::Float(600.0)));
        assert_eq!(f("ongoing"), Some(FieldValue::Bool(false)));
    }
}
