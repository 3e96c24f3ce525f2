//! SessionMetrics → `citrix_session_metrics`: ICA round-trip time and latencies sampled per
//! session, windowed on `CollectedDate`. The session key is a field (DESIGN.md rule 6), so the
//! timestamp carries the sample's Id as a sub-millisecond offset. Timestamp: CollectedDate + Id.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, incremental_query, machine_names,
    record_timestamp_ns, tenant_point,
};
use crate::citrix::model::SessionMetrics as Row;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_session_metrics";

pub struct SessionMetrics;

impl Collector for SessionMetrics {
    type Record<'de> = Row;
    type State = ();

    fn name(&self) -> String {
        "session_metrics".into()
    }

    fn entity_set(&self) -> &'static str {
        "SessionMetrics"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("CollectedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "CollectedDate",
                "IcaRttMS",
                "IcaLatency",
                "ClientL7Latency",
                "ServerL7Latency",
                "SessionId",
            ],
            Some(&format!(
                "Session($select=SessionKey;$expand={MACHINE_EXPAND})"
            )),
            "CollectedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &Row) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &Row) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
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
        let id =
            r.id.ok_or_else(|| MapError("session metric without Id".into()))?;
        let at = r
            .collected_date
            .ok_or_else(|| MapError(format!("session metric {id} has no CollectedDate")))?;
        let (dg, machine) = machine_names(r.session.as_ref().and_then(|s| s.machine.as_ref()));
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns(at, id), ctx)
                .tag("delivery_group", dg)
                .field_opt("ica_rtt_ms", r.ica_rtt_ms)
                .field_opt("ica_latency_ms", r.ica_latency)
                .field_opt("client_l7_latency_ms", r.client_l7_latency)
                .field_opt("server_l7_latency_ms", r.server_l7_latency)
                .field_opt("session_key", r.session_id.clone())
                .field_opt("machine", (!machine.is_empty()).then_some(machine)),
        );
        Ok(())
    }
}
