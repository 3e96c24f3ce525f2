//! Running ApplicationInstances → `citrix_application_usage`: a snapshot, each cycle, of how
//! many instances of each application are running (`EndDate eq null`) per delivery group — the
//! concurrency Citrix does not keep. Like machine state it cannot be re-read later, so it has no
//! watermark; timestamp: the cycle's start. The counting happens over the whole walk
//! (`finish`), never per page.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::application_instances::{APPLICATION_EXPAND, application_name};
use super::{Collector, Ctx, MapError, exact_ns};
use crate::citrix::model::ApplicationInstance;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_application_usage";

pub struct ApplicationUsage;

/// (delivery group, application) → running instances, over one walk.
#[derive(Default)]
pub struct Running(Mutex<BTreeMap<(String, String), i64>>);

impl Collector for ApplicationUsage {
    type Record<'de> = ApplicationInstance;
    type State = Running;

    fn name(&self) -> String {
        "application_usage".into()
    }

    fn entity_set(&self) -> &'static str {
        "ApplicationInstances"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        None
    }

    fn query(&self, _since: Option<DateTime<Utc>>) -> Query {
        let mut q = Query::new(self.entity_set());
        q.select = vec!["Id", "ApplicationId", "EndDate"];
        q.expand = Some(format!(
            "{APPLICATION_EXPAND},Session($select=SessionKey;$expand=Machine($select=Name;$expand=DesktopGroup($select=Name)))"
        ));
        q.filter = Some("EndDate eq null".into());
        q
    }

    fn key(&self, r: &ApplicationInstance) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &ApplicationInstance) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
    }

    fn watermark(&self, _r: &ApplicationInstance) -> Option<DateTime<Utc>> {
        None
    }

    fn map(
        &self,
        r: &ApplicationInstance,
        running: &Running,
        _ctx: &Ctx,
        _out: &mut Vec<PointOf<'_>>,
    ) -> Result<(), MapError> {
        let dg = r
            .session
            .as_ref()
            .and_then(|s| s.machine.as_ref())
            .and_then(|m| m.desktop_group.as_ref())
            .and_then(|g| g.name.clone())
            .unwrap_or_default();
        let app = application_name(r.application.as_ref(), r.application_id.as_deref());
        if app.is_empty() {
            return Err(MapError("running instance without application".into()));
        }
        *running
            .0
            .lock()
            .expect("not poisoned")
            .entry((dg, app))
            .or_default() += 1;
        Ok(())
    }

    fn finish(&self, running: &Running, ctx: &Ctx, out: &mut Vec<PointOf<'_>>) {
        let Ok(ts) = exact_ns(ctx.cycle_time) else {
            return;
        };
        for ((dg, app), n) in running.0.lock().expect("not poisoned").iter() {
            // Owned: these points outlive the walk's pages (written after the last one).
            out.push(
                PointOf::new(MEASUREMENT, ts)
                    .tag("customer", ctx.customer.clone())
                    .tag("customer_id", ctx.customer_id.clone())
                    .tag("delivery_group", dg.clone())
                    .tag("application", app.clone())
                    .field("running_instances", *n),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_running_instances_per_application_and_group() {
        let ctx = Ctx {
            customer: "C".into(),
            customer_id: "c".into(),
            cycle_time: "2026-03-02T09:00:00Z".parse().unwrap(),
        };
        let rows: Vec<ApplicationInstance> = serde_json::from_str(
            r#"[{"Id":1,"Application":{"PublishedName":"Word"},"Session":{"Machine":{"DesktopGroup":{"Name":"G"}}}},
                {"Id":2,"Application":{"PublishedName":"Word"},"Session":{"Machine":{"DesktopGroup":{"Name":"G"}}}},
                {"Id":3,"Application":{"Name":"excel"},"Session":{"Machine":{"DesktopGroup":{"Name":"G"}}}}]"#,
        )
        .unwrap();
        let state = Running::default();
        let mut out = Vec::new();
        for r in &rows {
            ApplicationUsage.map(r, &state, &ctx, &mut out).unwrap();
        }
        assert!(out.is_empty(), "nothing per record");
        ApplicationUsage.finish(&state, &ctx, &mut out);
        let got: Vec<(String, String)> = out
            .iter()
            .map(|p| {
                let app = p
                    .tags
                    .iter()
                    .find(|(k, _)| k == "application")
                    .unwrap()
                    .1
                    .to_string();
                (app, format!("{:?}", p.fields[0].1))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("Word".into(), "Int(2)".into()),
                ("excel".into(), "Int(1)".into())
            ]
        );
    }
}
