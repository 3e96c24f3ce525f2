//! LogOnSummaries → `citrix_logon_summary`: per delivery group and interval, the average total
//! logon time and the average of every phase (Citrix's per-phase sum ÷ that phase's count in the
//! same row), with the counts. One job per granularity, re-reading the last few intervals by
//! `SummaryDate`. Timestamp: SummaryDate.

use super::avg;
use super::summary::SummaryKind;
use crate::citrix::model::LogOnSummary;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_logon_summary";

pub struct LogOnSummaries {
    pub granularity: i64,
}

impl SummaryKind for LogOnSummaries {
    type Row = LogOnSummary;
    const KIND: &'static str = "logon_summaries";
    const ENTITY_SET: &'static str = "LogOnSummaries";
    const SELECT: &'static [&'static str] = &[];
    const EXPAND: &'static str = "DesktopGroup($select=Name)";

    fn granularity(&self) -> i64 {
        self.granularity
    }

    fn measurement(&self) -> &'static str {
        MEASUREMENT
    }

    fn point<'r>(&self, r: &'r LogOnSummary, base: PointOf<'r>) -> PointOf<'r> {
        let f = |v: Option<i64>| v.map(|x| x as f64);
        let mut p = base
            .tag(
                "delivery_group",
                r.desktop_group
                    .as_ref()
                    .and_then(|g| g.name.clone())
                    .unwrap_or_default(),
            )
            .field_opt("logon_count", r.total_count)
            .field_opt("logon_avg_ms", avg(f(r.total_duration), f(r.total_count)));
        for (name, sum, count) in [
            ("brokering", r.brokering_duration, r.brokering_count),
            ("vm_start", r.vm_start_duration, r.vm_start_count),
            ("hdx", r.hdx_duration, r.hdx_count),
            (
                "authentication",
                r.authentication_duration,
                r.authentication_count,
            ),
            ("gpo", r.gpo_duration, r.gpo_count),
            (
                "logon_scripts",
                r.log_on_scripts_duration,
                r.log_on_scripts_count,
            ),
            (
                "profile_load",
                r.profile_load_duration,
                r.profile_load_count,
            ),
            ("interactive", r.interactive_duration, r.interactive_count),
        ] {
            p = p
                .field_opt(format!("{name}_avg_ms"), avg(f(sum), f(count)))
                .field_opt(format!("{name}_count"), count);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{Collector, Ctx};
    use crate::lineproto::FieldValue;
    use chrono::Utc;

    #[test]
    fn per_phase_averages_within_the_row() {
        let r: LogOnSummary = serde_json::from_str(
            r#"{"Id":1,"SummaryDate":"2026-03-02T08:00:00Z","TotalDuration":100000,"TotalCount":4,
                "BrokeringDuration":2000,"BrokeringCount":4,"VMStartDuration":60000,"VMStartCount":1,
                "GpoDuration":0,"GpoCount":0,"Granularity":1440}"#,
        )
        .unwrap();
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let mut out = Vec::new();
        LogOnSummaries { granularity: 1440 }
            .map(&r, &(), &ctx, &mut out)
            .unwrap();
        let f = |k: &str| {
            out[0]
                .fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(f("logon_avg_ms"), Some(FieldValue::Float(25000.0)));
        assert_eq!(f("brokering_avg_ms"), Some(FieldValue::Float(500.0)));
        assert_eq!(f("vm_start_avg_ms"), Some(FieldValue::Float(60000.0)));
        assert_eq!(f("gpo_avg_ms"), None, "no division by a zero count");
        assert_eq!(f("gpo_count"), Some(FieldValue::Int(0)));
    }
}
