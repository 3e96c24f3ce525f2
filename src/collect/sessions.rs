//! Sessions → `citrix_session`: one point per session (start, state, duration, logon time).
//! Incremental on `ModifiedDate`: a session is modified when its state changes or it ends, and
//! the re-read overwrites the same point (timestamp: StartDate + a hash of the SessionKey).
//! The mutable connection state is therefore a field, never a tag (DESIGN.md rule 1).

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, incremental_query, machine_names,
    record_timestamp_ns_str, tenant_point,
};
use crate::citrix::enums;
use crate::citrix::model::Session;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_session";

pub struct Sessions;

impl Collector for Sessions {
    type Record<'de> = Session;
    type State = ();

    fn name(&self) -> String {
        "sessions".into()
    }

    fn entity_set(&self) -> &'static str {
        "Sessions"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("ModifiedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "SessionKey",
                "StartDate",
                "EndDate",
                "LogOnDuration",
                "ConnectionState",
                "SessionType",
                "FailureDate",
                "ExitCode",
                "ModifiedDate",
            ],
            Some(&format!("User($select=UserName),{MACHINE_EXPAND}")),
            "ModifiedDate",
            since,
            None,
            "SessionKey",
        )
    }

    fn key(&self, r: &Session) -> Option<String> {
        r.session_key.clone()
    }

    fn watermark(&self, r: &Session) -> Option<DateTime<Utc>> {
        r.modified_date
    }

    fn map<'r>(
        &self,
        s: &'r Session,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let key = s
            .session_key
            .as_deref()
            .ok_or_else(|| MapError("session without SessionKey".into()))?;
        let start = s
            .start_date
            .ok_or_else(|| MapError(format!("session {key} has no StartDate")))?;
        let (dg, machine) = machine_names(s.machine.as_ref());
        let state = s.connection_state;
        let duration_s = s
            .end_date
            .map(|e| (e - start).num_milliseconds() as f64 / 1000.0)
            .filter(|d| *d >= 0.0);
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns_str(start, key), ctx)
                .tag("delivery_group", dg)
                .tag(
                    "session_type",
                    s.session_type
                        .map(|v| enums::session_type(v).into_owned())
                        .unwrap_or_default(),
                )
                .field_opt(
                    "connection_state",
                    state.map(|v| enums::connection_state(v).into_owned()),
                )
                .field_opt("connection_state_code", state)
                .field("ended", s.end_date.is_some())
                .field_opt("duration_s", duration_s)
                .field_opt("logon_duration_ms", s.log_on_duration)
                .field("failed", s.failure_date.is_some())
                .field_opt("exit_code", s.exit_code)
                .field("session_key", key)
                .field_opt(
                    "user_name",
                    s.user.as_ref().and_then(|u| u.user_name.clone()),
                )
                .field_opt("machine", (!machine.is_empty()).then_some(machine)),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{FieldValue, FieldValueOf};

    #[test]
    fn state_is_a_field_and_the_timestamp_is_stable_across_state_changes() {
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let running: Session = serde_json::from_str(
            r#"{"SessionKey":"6B07220E-0000-4000-8000-000000000001","StartDate":"2026-03-02T08:00:00Z",
                "ConnectionState":5,"SessionType":0,"EndDate":null,"LogOnDuration":21000,
                "Machine":{"Name":"D\\m1","DesktopGroup":{"Name":"DG 1"}},"User":{"UserName":"D\\u"}}"#,
        )
        .unwrap();
        let ended: Session = serde_json::from_str(
            r#"{"SessionKey":"6b07220e-0000-4000-8000-000000000001","StartDate":"2026-03-02T08:00:00Z",
                "ConnectionState":3,"SessionType":0,"EndDate":"2026-03-02T09:30:00Z"}"#,
        )
        .unwrap();
        let mut a = Vec::new();
        let mut b = Vec::new();
        Sessions.map(&running, &(), &ctx, &mut a).unwrap();
        Sessions.map(&ended, &(), &ctx, &mut b).unwrap();
        assert_eq!(
            a[0].timestamp_ns, b[0].timestamp_ns,
            "same record, same point"
        );
        let tag_keys = |p: &PointOf<'_>| {
            p.tags
                .iter()
                .map(|(k, _)| k.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tag_keys(&a[0]),
            ["customer", "customer_id", "delivery_group", "session_type"]
        );
        fn f<'a>(p: &PointOf<'a>, k: &str) -> Option<FieldValueOf<'a>> {
            p.fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        }
        assert_eq!(
            f(&a[0], "connection_state"),
            Some(FieldValue::Str("Active".into()))
        );
        assert_eq!(
            f(&b[0], "connection_state"),
            Some(FieldValue::Str("Terminated".into()))
        );
        assert_eq!(f(&b[0], "duration_s"), Some(FieldValue::Float(5400.0)));
        assert_eq!(f(&a[0], "duration_s"), None);
        assert_eq!(f(&a[0], "ended"), Some(FieldValue::Bool(false)));
        assert!(!a[0].tags.iter().any(|(k, _)| k == "connection_state"));
    }
}
