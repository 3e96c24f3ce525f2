//! FailureLogSummaries → `citrix_failure_summary`: per delivery group, interval, failure
//! category and failure code, Citrix's failure count (a sum). One job per granularity,
//! re-reading the last few intervals. Timestamp: SummaryDate; category and code are tags (few
//! values, and they are part of the row's identity).

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError, exact_ns, summary_overlap, summary_query, tenant_point};
use crate::citrix::enums;
use crate::citrix::model::FailureLogSummary;
use crate::citrix::odata::Query;
use crate::lineproto::Point;

pub const MEASUREMENT: &str = "citrix_failure_summary";

pub struct FailureLogSummaries {
    pub granularity: i64,
}

impl Collector for FailureLogSummaries {
    type Record = FailureLogSummary;
    type State = ();

    fn name(&self) -> String {
        format!("failure_log_summaries_{}", self.granularity)
    }

    fn entity_set(&self) -> &'static str {
        "FailureLogSummaries"
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
                "FailureCategory",
                "FailureCode",
                "FailureCount",
                "Granularity",
            ],
            Some("DesktopGroup($select=Name)"),
            self.granularity,
            since,
        )
    }

    fn key(&self, r: &FailureLogSummary) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn watermark(&self, r: &FailureLogSummary) -> Option<DateTime<Utc>> {
        r.summary_date
    }

    fn map(
        &self,
        r: &FailureLogSummary,
        _: &(),
        ctx: &Ctx,
        out: &mut Vec<Point>,
    ) -> Result<(), MapError> {
        let at = r
            .summary_date
            .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
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
                .tag(
                    "failure_category",
                    r.failure_category
                        .map(|v| enums::failure_category(v).into_owned())
                        .unwrap_or_default(),
                )
                .tag("failure_reason", reason(r.failure_category, r.failure_code))
                .field_opt("failure_count", r.failure_count)
                .field_opt("failure_code", r.failure_code),
        );
        Ok(())
    }
}

/// The code's name. Citrix documents FailureCode as a SessionFailureCode; for machine failures
/// (category 2) Director shows machine fault states (FailedToStart, StuckOnBoot, ...), so those
/// codes are read as MachineFaultStateCode — an inference, as in the simulator.
fn reason(category: Option<i64>, code: Option<i64>) -> String {
    match (category, code) {
        (_, None) => String::new(),
        (Some(2), Some(c)) => enums::fault_state(c).into_owned(),
        (_, Some(c)) => enums::session_failure_code(c).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_category_codes_are_fault_states() {
        assert_eq!(reason(Some(2), Some(3)), "StuckOnBoot");
        assert_eq!(reason(Some(1), Some(100)), "NoMachineAvailable");
        assert_eq!(reason(None, None), "");
    }
}
