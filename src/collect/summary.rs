//! What every summary collector shares: Citrix summaries are read by `SummaryDate` for one
//! `Granularity`, re-reading the last few intervals each walk, keyed by their `Id`, and written
//! at `SummaryDate` with a `granularity` tag. A summary kind only says which entity set and
//! columns it reads and how a row becomes a point ([`SummaryKind`]); the [`Collector`] plumbing
//! is here, once. It never re-aggregates: each row is written as Citrix computed it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{Collector, Ctx, MapError, exact_ns, summary_overlap, summary_query, tenant_point};
use crate::citrix::model::{
    Date, FailureLogSummary, LoadIndexSummary, LogOnSummary, MachineSummary,
    ResourceUtilizationSummary, SessionActivitySummary,
};
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

/// The columns every summary row has.
pub trait SummaryRow {
    fn id(&self) -> Option<i64>;
    fn summary_date(&self) -> Date;
    fn granularity(&self) -> Option<i64>;
}

macro_rules! summary_row {
    ($($t:ty),*) => {$(
        impl SummaryRow for $t {
            fn id(&self) -> Option<i64> { self.id }
            fn summary_date(&self) -> Date { self.summary_date }
            fn granularity(&self) -> Option<i64> { self.granularity }
        }
    )*};
}
summary_row!(
    SessionActivitySummary,
    LogOnSummary,
    LoadIndexSummary,
    FailureLogSummary,
    MachineSummary,
    ResourceUtilizationSummary
);

/// One summary entity set at one granularity.
pub trait SummaryKind: Send + Sync {
    type Row: SummaryRow + DeserializeOwned + Send;
    /// The kind's name in config (`logon_summaries`); jobs are `<KIND>_<granularity>`.
    const KIND: &'static str;
    const ENTITY_SET: &'static str;
    /// `$select` (empty: every column).
    const SELECT: &'static [&'static str];
    const EXPAND: &'static str;
    fn granularity(&self) -> i64;
    /// The row's fields and its own tags on top of [`summary_point`]'s (they may borrow from
    /// the row).
    fn point<'r>(&self, row: &'r Self::Row, base: PointOf<'r>) -> PointOf<'r>;
    /// The measurement written.
    fn measurement(&self) -> &'static str;
}

/// A summary point: tenant tags, `granularity`, at `SummaryDate`.
pub fn summary_point<'r, R: SummaryRow>(
    measurement: &'static str,
    row: &R,
    granularity: i64,
    ctx: &'r Ctx,
) -> Result<PointOf<'r>, MapError> {
    let at = row
        .summary_date()
        .ok_or_else(|| MapError("summary without SummaryDate".into()))?;
    Ok(tenant_point(measurement, exact_ns(at)?, ctx).tag(
        "granularity",
        granularity_tag(row.granularity().unwrap_or(granularity)),
    ))
}

/// The `granularity` tag: the documented granularities without formatting a number per row.
fn granularity_tag(g: i64) -> Cow<'static, str> {
    match g {
        1 => Cow::Borrowed("1"),
        10 => Cow::Borrowed("10"),
        60 => Cow::Borrowed("60"),
        1440 => Cow::Borrowed("1440"),
        other => Cow::Owned(other.to_string()),
    }
}

impl<K: SummaryKind> Collector for K {
    type Record<'de> = K::Row;
    type State = ();

    fn name(&self) -> String {
        format!("{}_{}", K::KIND, self.granularity())
    }

    fn entity_set(&self) -> &'static str {
        K::ENTITY_SET
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("SummaryDate")
    }

    fn overlap(&self, _default: std::time::Duration) -> std::time::Duration {
        summary_overlap(self.granularity())
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        summary_query(
            K::ENTITY_SET,
            K::SELECT,
            Some(K::EXPAND),
            self.granularity(),
            since,
        )
    }

    fn key(&self, r: &K::Row) -> Option<String> {
        r.id().map(|i| i.to_string())
    }

    fn key_hash(&self, r: &K::Row) -> Option<u64> {
        r.id().map(|i| super::key_hash(&i))
    }

    fn watermark(&self, r: &K::Row) -> Option<DateTime<Utc>> {
        r.summary_date()
    }

    fn map<'r>(
        &self,
        r: &'r K::Row,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let base = summary_point(self.measurement(), r, self.granularity(), ctx)?;
        out.push(self.point(r, base));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_tags_are_the_numbers() {
        for g in [1, 10, 60, 1440, 5, -1, 100_000] {
            assert_eq!(granularity_tag(g), g.to_string());
        }
        assert!(matches!(granularity_tag(60), Cow::Borrowed("60")));
    }
}
