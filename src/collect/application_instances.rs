//! ApplicationInstances (+ Applications) → `citrix_application_instance`: one point per launch
//! of a published application (its duration once it ended, whether it is still running).
//! Incremental on `ModifiedDate` (an instance is modified when it ends and overwrites its
//! point); timestamp StartDate + Id offset. The application's name is a tag: published
//! applications are few, and it is what usage dashboards group by.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, incremental_query, machine_names,
    record_timestamp_ns, span_ms, tenant_point,
};
use crate::citrix::model::{Application, ApplicationInstance};
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_application_instance";

pub struct ApplicationInstances;

/// The name dashboards show: the published name, else the internal name, else the Id.
pub fn application_name(a: Option<&Application>, id: Option<&str>) -> String {
    a.and_then(|a| a.published_name.clone().or_else(|| a.name.clone()))
        .or_else(|| id.map(str::to_string))
        .unwrap_or_default()
}

pub const APPLICATION_EXPAND: &str = "Application($select=Name,PublishedName)";

impl Collector for ApplicationInstances {
    type Record<'de> = ApplicationInstance;
    type State = ();

    fn name(&self) -> String {
        "application_instances".into()
    }

    fn entity_set(&self) -> &'static str {
        "ApplicationInstances"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("ModifiedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "ApplicationId",
                "SessionKey",
                "StartDate",
                "EndDate",
                "ModifiedDate",
            ],
            Some(&format!(
                "{APPLICATION_EXPAND},Session($select=SessionKey;$expand=User($select=UserName),{MACHINE_EXPAND})"
            )),
            "ModifiedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &ApplicationInstance) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &ApplicationInstance) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
    }

    fn watermark(&self, r: &ApplicationInstance) -> Option<DateTime<Utc>> {
        r.modified_date
    }

    fn map<'r>(
        &self,
        r: &'r ApplicationInstance,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let id =
            r.id.ok_or_else(|| MapError("application instance without Id".into()))?;
        let start = r
            .start_date
            .ok_or_else(|| MapError(format!("application instance {id} has no StartDate")))?;
        let session = r.session.as_ref();
        let (dg, machine) = machine_names(session.and_then(|s| s.machine.as_ref()));
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns(start, id), ctx)
                .tag("delivery_group", dg)
                .tag(
                    "application",
                    application_name(r.application.as_ref(), r.application_id.as_deref()),
                )
                .field("launches", 1i64)
                .field("running", r.end_date.is_none())
                .field_opt(
                    "duration_s",
                    span_ms(Some(start), r.end_date).map(|ms| ms as f64 / 1000.0),
                )
                .field("instance_id", id)
                .field_opt("session_key", r.session_key.clone())
                .field_opt(
                    "user_name",
                    session
                        .and_then(|s| s.user.as_ref())
                        .and_then(|u| u.user_name.clone()),
                )
                .field_opt("machine", (!machine.is_empty()).then_some(machine)),
        );
        Ok(())
    }
}
