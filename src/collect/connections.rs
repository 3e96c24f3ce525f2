//! Connections → `citrix_logon`: one point per connection (a logon or a reconnect) with the total
//! logon time and every phase in milliseconds. Incremental on `ModifiedDate` (a connection is
//! modified when its logon completes, so a half-finished logon is re-read and overwritten).
//! Tags are low-cardinality only (DESIGN.md rule 6): user, client and session key are fields.

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError, incremental_query, record_timestamp_ns, span_ms};
use crate::citrix::model::Connection;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_logon";

pub struct Connections;

impl Collector for Connections {
    type Record<'de> = Connection<'de>;
    type State = ();

    fn name(&self) -> String {
        "connections".into()
    }

    fn entity_set(&self) -> &'static str {
        "Connections"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("ModifiedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "ClientName",
                "ClientAddress",
                "ClientVersion",
                "ClientPlatform",
                "IsReconnect",
                "Protocol",
                "LogOnStartDate",
                "LogOnEndDate",
                "BrokeringDuration",
                "BrokeringDate",
                "VMStartStartDate",
                "VMStartEndDate",
                "HdxStartDate",
                "HdxEndDate",
                "AuthenticationDuration",
                "GpoStartDate",
                "GpoEndDate",
                "LogOnScriptsStartDate",
                "LogOnScriptsEndDate",
                "ProfileLoadStartDate",
                "ProfileLoadEndDate",
                "InteractiveStartDate",
                "InteractiveEndDate",
                "SessionKey",
                "CreatedDate",
                "ModifiedDate",
            ],
            Some(
                "Session($select=SessionKey,LogOnDuration,SessionType;\
                 $expand=User($select=UserName),Machine($select=Name;$expand=DesktopGroup($select=Name)))",
            ),
            "ModifiedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &Connection<'_>) -> Option<String> {
        r.id.map(|id| id.to_string())
    }

    fn key_hash(&self, r: &Connection<'_>) -> Option<u64> {
        r.id.map(|id| super::key_hash(&id))
    }

    fn watermark(&self, r: &Connection<'_>) -> Option<DateTime<Utc>> {
        r.modified_date
    }

    fn map<'r>(
        &self,
        c: &'r Connection<'_>,
        _state: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let id =
            c.id.ok_or_else(|| MapError("connection without Id".into()))?;
        // Brokering is the first thing Citrix records of a connection, so it is present and
        // stable from the first read; a logon that completes later overwrites the same point.
        let when = c
            .brokering_date
            .or(c.log_on_start_date)
            .or(c.created_date)
            .ok_or_else(|| {
                MapError(format!(
                    "connection {id} has no BrokeringDate, LogOnStartDate or CreatedDate"
                ))
            })?;
        let session = c.session.as_ref();
        let machine = session.and_then(|s| s.machine.as_ref());
        let delivery_group = machine
            .and_then(|m| m.desktop_group.as_ref())
            .and_then(|g| g.name.as_deref())
            .unwrap_or_default();
        let is_reconnect = c.is_reconnect.unwrap_or(false);
        // Per-connection logon time; the session's LogOnDuration covers its first logon only.
        let total = span_ms(c.log_on_start_date, c.log_on_end_date).or_else(|| {
            (!is_reconnect)
                .then(|| session.and_then(|s| s.log_on_duration))
                .flatten()
        });
        let p = PointOf::with_capacity(MEASUREMENT, record_timestamp_ns(when, id), 5, 17)
            .tag("customer", ctx.customer.as_str())
            .tag("customer_id", ctx.customer_id.as_str())
            .tag("delivery_group", delivery_group)
            .tag("protocol", c.protocol.as_deref().unwrap_or_default())
            .tag("is_reconnect", if is_reconnect { "true" } else { "false" })
            .field("connection_id", id)
            .field_opt("logon_duration_ms", total)
            .field_opt("brokering_ms", c.brokering_duration)
            .field_opt(
                "vm_start_ms",
                span_ms(c.vm_start_start_date, c.vm_start_end_date),
            )
            .field_opt("hdx_ms", span_ms(c.hdx_start_date, c.hdx_end_date))
            .field_opt("authentication_ms", c.authentication_duration)
            .field_opt("gpo_ms", span_ms(c.gpo_start_date, c.gpo_end_date))
            .field_opt(
                "logon_scripts_ms",
                span_ms(c.log_on_scripts_start_date, c.log_on_scripts_end_date),
            )
            .field_opt(
                "profile_load_ms",
                span_ms(c.profile_load_start_date, c.profile_load_end_date),
            )
            .field_opt(
                "interactive_ms",
                span_ms(c.interactive_start_date, c.interactive_end_date),
            )
            .field_str("session_key", c.session_key.as_deref())
            .field_str(
                "user_name",
                session
                    .and_then(|s| s.user.as_ref())
                    .and_then(|u| u.user_name.as_deref()),
            )
            .field_str("machine", machine.and_then(|m| m.name.as_deref()))
            .field_str("client_name", c.client_name.as_deref())
            .field_str("client_address", c.client_address.as_deref())
            .field_str("client_version", c.client_version.as_deref())
            .field_str("client_platform", c.client_platform.as_deref());
        out.push(p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{FieldValue, FieldValueOf};

    fn ctx() -> Ctx {
        Ctx {
            customer: "Contoso".into(),
            customer_id: "contoso1".into(),
            cycle_time: Utc::now(),
        }
    }

    fn field<'a>(p: &'a PointOf<'_>, k: &str) -> Option<&'a FieldValueOf<'a>> {
        p.fields.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    fn tag<'a>(p: &'a PointOf<'_>, k: &str) -> Option<&'a str> {
        p.tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref())
    }

    #[test]
    fn a_negative_duration_costs_its_record_and_nothing_else() {
        let body = br#"{"value":[
            {"Id":1,"BrokeringDate":"2026-03-02T07:59:58Z","BrokeringDuration":-5000},
            {"Id":2,"BrokeringDate":"2026-03-02T07:59:59Z","BrokeringDuration":850}]}"#;
        let page = crate::collect::decode_page::<Connection>(body).unwrap();
        assert_eq!(page.value.len(), 1);
        assert_eq!(page.value[0].id, Some(2));
        assert_eq!(page.bad.len(), 1);
        assert_eq!(page.bad[0].0, 0);
        assert!(
            page.bad[0].1.contains("negative duration -5000"),
            "{:?}",
            page.bad
        );
        // A date no nanosecond timestamp can hold (a VDA clock at year 9999) likewise.
        let body = br#"{"value":[
            {"Id":1,"BrokeringDate":"9999-03-02T07:59:58Z"},
            {"Id":2,"BrokeringDate":"2026-03-02T07:59:59Z"}]}"#;
        let page = crate::collect::decode_page::<Connection>(body).unwrap();
        assert_eq!((page.value.len(), page.bad.len()), (1, 1));
        assert!(
            page.bad[0].1.contains("outside the range"),
            "{:?}",
            page.bad
        );
    }

    #[test]
    fn maps_phases_tags_and_fields() {
        let c: Connection = serde_json::from_str(
            r#"{"Id":77,"Protocol":"HDX","IsReconnect":false,"ClientName":"PC,1","ClientAddress":"10.0.0.1",
            "BrokeringDate":"2026-03-02T07:59:58.5Z","BrokeringDuration":850,"AuthenticationDuration":1200,
            "LogOnStartDate":"2026-03-02T08:00:00Z","LogOnEndDate":"2026-03-02T08:00:25.25Z",
            "VMStartStartDate":null,"VMStartEndDate":null,
            "HdxStartDate":"2026-03-02T08:00:00Z","HdxEndDate":"2026-03-02T08:00:02Z",
            "GpoStartDate":"2026-03-02T08:00:05Z","GpoEndDate":"2026-03-02T08:00:09.5Z",
            "ProfileLoadStartDate":"2026-03-02T08:00:10Z","ProfileLoadEndDate":"2026-03-02T08:00:14Z",
            "InteractiveStartDate":"2026-03-02T08:00:15Z","InteractiveEndDate":"2026-03-02T08:00:25Z",
            "SessionKey":"aa","ModifiedDate":"2026-03-02T08:00:26Z",
            "Session":{"LogOnDuration":99999,"User":{"UserName":"DOM\\o'brien"},
              "Machine":{"Name":"DOM\\vda 1","DesktopGroup":{"Name":"Sales, EU"}}}}"#,
        )
        .unwrap();
        let ctx = ctx();
        let mut out = Vec::new();
        Connections.map(&c, &(), &ctx, &mut out).unwrap();
        let p = &out[0];
        assert_eq!(p.measurement, MEASUREMENT);
        assert_eq!(tag(p, "delivery_group"), Some("Sales, EU"));
        assert_eq!(tag(p, "protocol"), Some("HDX"));
        assert_eq!(tag(p, "is_reconnect"), Some("false"));
        assert_eq!(tag(p, "customer_id"), Some("contoso1"));
        assert!(tag(p, "user").is_none(), "user must never be a tag");
        assert_eq!(
            field(p, "logon_duration_ms"),
            Some(&FieldValue::Int(25_250))
        );
        assert_eq!(field(p, "brokering_ms"), Some(&FieldValue::Int(850)));
        assert_eq!(field(p, "authentication_ms"), Some(&FieldValue::Int(1200)));
        assert_eq!(field(p, "hdx_ms"), Some(&FieldValue::Int(2000)));
        assert_eq!(field(p, "gpo_ms"), Some(&FieldValue::Int(4500)));
        assert_eq!(field(p, "profile_load_ms"), Some(&FieldValue::Int(4000)));
        assert_eq!(field(p, "interactive_ms"), Some(&FieldValue::Int(10_000)));
        assert_eq!(field(p, "vm_start_ms"), None);
        assert_eq!(
            field(p, "user_name"),
            Some(&FieldValue::Str("DOM\\o'brien".into()))
        );
        assert_eq!(
            field(p, "machine"),
            Some(&FieldValue::Str("DOM\\vda 1".into()))
        );
        // Timestamp: brokering date (ms) + Id as sub-ms offset.
        let expect = "2026-03-02T07:59:58.5Z"
            .parse::<DateTime<Utc>>()
            .unwrap()
            .timestamp_millis()
            * 1_000_000
            + 77;
        assert_eq!(p.timestamp_ns, expect);
    }

    #[test]
    fn reconnect_without_logon_dates_has_no_total() {
        let c: Connection = serde_json::from_str(
            r#"{"Id":78,"IsReconnect":true,"BrokeringDate":"2026-03-02T09:00:00Z",
                "Session":{"LogOnDuration":5000}}"#,
        )
        .unwrap();
        let ctx = ctx();
        let mut out = Vec::new();
        Connections.map(&c, &(), &ctx, &mut out).unwrap();
        assert_eq!(field(&out[0], "logon_duration_ms"), None);
        assert_eq!(tag(&out[0], "is_reconnect"), Some("true"));
    }

    #[test]
    fn record_without_id_or_dates_is_rejected() {
        let ctx = ctx();
        let mut out = Vec::new();
        let no_id: Connection =
            serde_json::from_str(r#"{"BrokeringDate":"2026-03-02T09:00:00Z"}"#).unwrap();
        assert!(Connections.map(&no_id, &(), &ctx, &mut out).is_err());
        let no_date: Connection = serde_json::from_str(r#"{"Id":5}"#).unwrap();
        let e = Connections.map(&no_date, &(), &ctx, &mut out).unwrap_err();
        assert!(e.0.contains("connection 5"));
        assert!(out.is_empty());
    }

    #[test]
    fn query_filters_on_watermark_with_ge() {
        let since = "2026-03-02T08:00:00Z".parse().unwrap();
        let url = Connections.query(Some(since)).url("http://h/monitorodata");
        assert!(
            url.contains("$filter=ModifiedDate%20ge%202026-03-02T08:00:00Z"),
            "{url}"
        );
        assert!(url.contains("$orderby=ModifiedDate,Id"));
        assert!(url.contains("$expand=Session("));
    }
}
