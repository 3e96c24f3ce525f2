//! ConnectionFailureLogs (+ ConnectionFailureCategories) → `citrix_connection_failure`: one
//! point per failed connection, with its failure code and the category Citrix files it under.
//! The categories are a small lookup table read once per run (ConnectionFailureLog has no
//! navigation to it). Incremental on `ModifiedDate`; timestamp FailureDate + Id offset.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    Collector, Ctx, MACHINE_EXPAND, MapError, fetch_all, incremental_query, machine_names,
    record_timestamp_ns, tenant_point,
};
use crate::citrix::client::{MonitorClient, MonitorError};
use crate::citrix::enums;
use crate::citrix::model::{ConnectionFailureCategory, ConnectionFailureLog};
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_connection_failure";

pub struct ConnectionFailures;

/// Failure code → category (ConnectionFailureType).
#[derive(Default)]
pub struct Categories(pub HashMap<i64, i64>);

impl Collector for ConnectionFailures {
    type Record<'de> = ConnectionFailureLog;
    type State = Categories;

    fn name(&self) -> String {
        "connection_failures".into()
    }

    fn entity_set(&self) -> &'static str {
        "ConnectionFailureLogs"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("ModifiedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "SessionKey",
                "FailureDate",
                "ConnectionFailureEnumValue",
                "ModifiedDate",
            ],
            Some(&format!("{MACHINE_EXPAND},User($select=UserName)")),
            "ModifiedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &ConnectionFailureLog) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &ConnectionFailureLog) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
    }

    fn watermark(&self, r: &ConnectionFailureLog) -> Option<DateTime<Utc>> {
        r.modified_date
    }

    async fn prepare(&self, client: &MonitorClient) -> Result<Categories, MonitorError> {
        let mut q = Query::new("ConnectionFailureCategories");
        q.select = vec!["Id", "ConnectionFailureEnumValue", "Category"];
        let rows: Vec<ConnectionFailureCategory> =
            fetch_all(client, "connection_failure_categories", &q).await?;
        Ok(Categories(
            rows.into_iter()
                .filter_map(|r| Some((r.connection_failure_enum_value?, r.category?)))
                .collect(),
        ))
    }

    fn map<'r>(
        &self,
        f: &'r ConnectionFailureLog,
        cats: &'r Categories,
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let id =
            f.id.ok_or_else(|| MapError("failure log without Id".into()))?;
        let when = f
            .failure_date
            .or(f.created_date)
            .ok_or_else(|| MapError(format!("failure log {id} has no FailureDate")))?;
        let (dg, machine) = machine_names(f.machine.as_ref());
        let code = f.connection_failure_enum_value;
        let category = code.and_then(|c| cats.0.get(&c).copied());
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns(when, id), ctx)
                .tag("delivery_group", dg)
                .tag(
                    "failure_category",
                    category
                        .map(|c| enums::connection_failure_type(c).into_owned())
                        .unwrap_or_default(),
                )
                .tag(
                    "failure_reason",
                    code.map(|c| enums::session_failure_code(c).into_owned())
                        .unwrap_or_default(),
                )
                .field("count", 1i64)
                .field_opt("failure_code", code)
                .field_opt("category_code", category)
                .field("failure_id", id)
                .field_opt("session_key", f.session_key.clone())
                .field_opt(
                    "user_name",
                    f.user.as_ref().and_then(|u| u.user_name.clone()),
                )
                .field_opt("machine", (!machine.is_empty()).then_some(machine)),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_category_become_names() {
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: Utc::now(),
        };
        let f: ConnectionFailureLog = serde_json::from_str(
            r#"{"Id":128230,"SessionKey":"k","FailureDate":"2024-07-30T01:02:49.37Z","ConnectionFailureEnumValue":100,
                "Machine":{"Name":"D\\m","DesktopGroup":{"Name":"G"}},"User":{"UserName":"u"}}"#,
        )
        .unwrap();
        let cats = Categories([(100, 3)].into_iter().collect());
        let mut out = Vec::new();
        ConnectionFailures.map(&f, &cats, &ctx, &mut out).unwrap();
        let tag = |k: &str| {
            out[0]
                .tags
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            tag("failure_category").as_deref(),
            Some("NoCapacityAvailable")
        );
        assert_eq!(tag("failure_reason").as_deref(), Some("NoMachineAvailable"));
        assert_eq!(tag("delivery_group").as_deref(), Some("G"));
        // Unknown code: no category tag, the reason says Unknown(n).
        let f: ConnectionFailureLog = serde_json::from_str(
            r#"{"Id":1,"FailureDate":"2024-07-30T01:02:49Z","ConnectionFailureEnumValue":999}"#,
        )
        .unwrap();
        out.clear();
        ConnectionFailures.map(&f, &cats, &ctx, &mut out).unwrap();
        let tag = |k: &str| {
            out[0]
                .tags
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(tag("failure_category").as_deref(), Some(""));
        assert_eq!(tag("failure_reason").as_deref(), Some("Unknown(999)"));
    }
}
