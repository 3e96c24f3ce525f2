//! SessionActivitySummaries → `citrix_session_activity`: per delivery group and interval, the
//! concurrent / connected / disconnected session maxima and the logon count and total, with
//! Citrix's semantics kept (maxima stay maxima; the average logon is total ÷ count of the same
//! row, never re-aggregated). One job per granularity; each walk re-reads the last few
//! intervals by `SummaryDate`. Timestamp: SummaryDate (the interval's start).

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError, exact_ns, summary_overlap, summary_query, tenant_point};
use crate::citrix::model::SessionActivitySummary;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

pub const MEASUREMENT: &str = "citrix_session_activity";

pub struct SessionActivitySummaries {
    pub granularity: i64,
}

impl Collector for SessionActivitySummaries {
    type Record = SessionActivitySummary;
    type State = ();

    fn name(&self) -> String {
        format!("session_activity_summaries_{}", self.granularity)
    }

    fn entity_set(&self) -> &'static str {
        "SessionActivitySummaries"
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
                "ConcurrentSessionCount",
                "ConnectedSessionCount",
                "DisconnectedSessionCount",
                "TotalLogOnDuration",
                "TotalLogOnCount",
                "Granularity",
            ],
            Some("DesktopGroup($select=Name)"),
            self.granularity,
            since,
        )
    }

    fn key(&self, r: &SessionActivitySummary) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn watermark(&self, r: &SessionActivitySummary) -> Option<DateTime<Utc>> {
        r.summary_date
    }

    fn map(
        &self,
        r: &SessionActivitySummary,
        _: &(),
        ctx: &Ctx,
        out: &mut Vec<Point>,
    ) -> Result<(), MapError> {
        let at = r
            .summary_date
            .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
        let count = r.total_log_on_count;
        let total = r.total_log_on_duration;
        out.push(
            tenant_point(MEASUREMENT, exact_ns(at)?, ctx)
                .tag(
                    "delivery_group",
                    r.desktop_group
                        .as_ref()
                        .and_then(|g| g.name.clone())
                        .unwrap_or_default(),
                )
                .tag(
                    "granularity",
                    r.granularity.unwrap_or(self.granularity).to_string(),
                )
                .field_opt("concurrent_sessions", r.concurrent_session_count)
                .field_opt("connected_sessions", r.connected_session_count)
                .field_opt("disconnected_sessions", r.disconnected_session_count)
                .field_opt("logon_count", count)
                .field_opt("logon_total_ms", total)
                .field_opt(
                    "logon_avg_ms",
                    super::avg(total.map(|t| t as f64), count.map(|c| c as f64)),
                ),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::FieldValue;

    #[test]
    fn keeps_maxima_and_averages_logon_within_the_row() {
        let r: SessionActivitySummary = serde_json::from_str(
            r#"{"Id":5,"SummaryDate":"2026-03-02T08:00:00Z","ConcurrentSessionCount":40,"ConnectedSessionCount":35,
                "DisconnectedSessionCount":5,"TotalLogOnDuration":90000,"TotalLogOnCount":4,"Granularity":60,
                "DesktopGroup":{"Name":"Sales"}}"#,
        )
        .unwrap();
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let mut out = Vec::new();
        let c = SessionActivitySummaries { granularity: 60 };
        c.map(&r, &(), &ctx, &mut out).unwrap();
        let f = |k: &str| {
            out[0]
                .fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(f("concurrent_sessions"), Some(FieldValue::Int(40)));
        assert_eq!(f("logon_avg_ms"), Some(FieldValue::Float(22500.0)));
        assert!(out[0].tags.contains(&("granularity".into(), "60".into())));
        let url = c
            .query(Some("2026-03-02T00:00:00Z".parse().unwrap()))
            .url("http://h/m");
        assert!(
            url.contains("Granularity%20eq%2060%20and%20SummaryDate%20ge%20"),
            "{url}"
        );
        assert_eq!(
            c.overlap(std::time::Duration::ZERO),
            std::time::Duration::from_secs(3 * 3600)
        );
        assert_eq!(c.name(), "session_activity_summaries_60");
    }
}
