//! LogOnSummaries → `citrix_logon_summary`: per delivery group and interval, the average total
//! logon time and the average of every phase (Citrix's per-phase sum ÷ that phase's count in the
//! same row), with the counts. One job per granularity, re-reading the last few intervals by
//! `SummaryDate`. Timestamp: SummaryDate.

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MapError, avg, exact_ns, summary_overlap, summary_query, tenant_point,
};
use crate::citrix::model::LogOnSummary;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

pub const MEASUREMENT: &str = "citrix_logon_summary";

pub struct LogOnSummaries {
    pub granularity: i64,
}

impl Collector for LogOnSummaries {
    type Record = LogOnSummary;
    type State = ();

    fn name(&self) -> String {
        format!("logon_summaries_{}", self.granularity)
    }

    fn entity_set(&self) -> &'static str {
        "LogOnSummaries"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("SummaryDate")
    }

    fn overlap(&self, _default: std::time::Duration) -> std::time::Duration {
        summary_overlap(self.granularity)
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        // No $select: the phase columns are many and all needed.
        summary_query(
            self.entity_set(),
            &[],
            Some("DesktopGroup($select=Name)"),
            self.granularity,
            since,
        )
    }

    fn key(&self, r: &LogOnSummary) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn watermark(&self, r: &LogOnSummary) -> Option<DateTime<Utc>> {
        r.summary_date
    }

    fn map(
        &self,
        r: &LogOnSummary,
        _: &(),
        ctx: &Ctx,
        out: &mut Vec<Point>,
    ) -> Result<(), MapError> {
        let at = r
            .summary_date
            .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
        let f = |v: Option<i64>| v.map(|x| x as f64);
        let mut p = tenant_point(MEASUREMENT, exact_ns(at)?, ctx)
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
        out.push(p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::FieldValue;

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
