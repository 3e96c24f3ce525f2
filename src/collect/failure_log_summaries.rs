//! FailureLogSummaries → `citrix_failure_summary`: per delivery group, interval, failure
//! category and failure code, Citrix's failure count (a sum). One job per granularity,
//! re-reading the last few intervals. Timestamp: SummaryDate; category and code are tags (few
//! values, and they are part of the row's identity).

use super::summary::SummaryKind;

use crate::citrix::enums;
use crate::citrix::model::FailureLogSummary;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_failure_summary";

pub struct FailureLogSummaries {
    pub granularity: i64,
}

impl SummaryKind for FailureLogSummaries {
    type Row = FailureLogSummary;
    const KIND: &'static str = "failure_log_summaries";
    const ENTITY_SET: &'static str = "FailureLogSummaries";
    const SELECT: &'static [&'static str] = &[
        "Id",
        "SummaryDate",
        "FailureCategory",
        "FailureCode",
        "FailureCount",
        "Granularity",
    ];
    const EXPAND: &'static str = "DesktopGroup($select=Name)";

    fn granularity(&self) -> i64 {
        self.granularity
    }

    fn measurement(&self) -> &'static str {
        MEASUREMENT
    }

    fn point<'r>(&self, r: &'r FailureLogSummary, base: PointOf<'r>) -> PointOf<'r> {
        base.tag(
            "delivery_group",
            r.desktop_group
                .as_ref()
                .and_then(|g| g.name.clone())
                .unwrap_or_default(),
        )
        .tag(
            "failure_category",
            r.failure_category
                .map(|v| enums::failure_category(v).into_owned())
                .unwrap_or_default(),
        )
        .tag("failure_reason", reason(r.failure_category, r.failure_code))
        .field_opt("failure_count", r.failure_count)
        .field_opt("failure_code", r.failure_code)
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
