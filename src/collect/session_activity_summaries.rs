//! SessionActivitySummaries → `citrix_session_activity`: per delivery group and interval, the
//! concurrent / connected / disconnected session maxima and the logon count and total, with
//! Citrix's semantics kept (maxima stay maxima; the average logon is total ÷ count of the same
//! row, never re-aggregated). One job per granularity; each walk re-reads the last few
//! intervals by `SummaryDate`. Timestamp: SummaryDate (the interval's start).

use super::avg;
use super::summary::SummaryKind;
use crate::citrix::model::SessionActivitySummary;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_session_activity";

pub struct SessionActivitySummaries {
    pub granularity: i64,
}

impl SummaryKind for SessionActivitySummaries {
    type Row = SessionActivitySummary;
    const KIND: &'static str = "session_activity_summaries";
    const ENTITY_SET: &'static str = "SessionActivitySummaries";
    const SELECT: &'static [&'static str] = &[
        "Id",
        "SummaryDate",
        "ConcurrentSessionCount",
        "ConnectedSessionCount",
        "DisconnectedSessionCount",
        "TotalLogOnDuration",
        "TotalLogOnCount",
        "Granularity",
    ];
    const EXPAND: &'static str = "DesktopGroup($select=Name)";

    fn granularity(&self) -> i64 {
        self.granularity
    }

    fn measurement(&self) -> &'static str {
        MEASUREMENT
    }

    fn point<'r>(&self, r: &'r SessionActivitySummary, base: PointOf<'r>) -> PointOf<'r> {
        let count = r.total_log_on_count;
        let total = r.total_log_on_duration;
        base.tag(
            "delivery_group",
            r.desktop_group
                .as_ref()
                .and_then(|g| g.name.clone())
                .unwrap_or_default(),
        )
        .field_opt("concurrent_sessions", r.concurrent_session_count)
        .field_opt("connected_sessions", r.connected_session_count)
        .field_opt("disconnected_sessions", r.disconnected_session_count)
        .field_opt("logon_count", count)
        .field_opt("logon_total_ms", total)
        .field_opt(
            "logon_avg_ms",
            avg(total.map(|t| t as f64), count.map(|c| c as f64)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Collector, Ctx};
    use crate::lineproto::FieldValue;
    use chrono::Utc;

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
