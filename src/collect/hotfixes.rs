//! MachineHotfixLogs (+ Hotfixes) → `citrix_hotfix`: one event per hotfix added to or removed
//! from a machine, with the hotfix's name, article and component. Incremental on `ModifiedDate`;
//! timestamp CreatedDate + Id offset.

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError, incremental_query, record_timestamp_ns, tenant_point};
use crate::citrix::enums;
use crate::citrix::model::MachineHotfixLog;
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_hotfix";

pub struct Hotfixes;

impl Collector for Hotfixes {
    type Record<'de> = MachineHotfixLog;
    type State = ();

    fn name(&self) -> String {
        "hotfixes".into()
    }

    fn entity_set(&self) -> &'static str {
        "MachineHotfixLogs"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        Some("ModifiedDate")
    }

    fn query(&self, since: Option<DateTime<Utc>>) -> Query {
        incremental_query(
            self.entity_set(),
            &[
                "Id",
                "MachineId",
                "HotfixId",
                "ChangeType",
                "CurrentState",
                "CreatedDate",
                "ModifiedDate",
            ],
            Some(
                "Machine($select=Name;$expand=DesktopGroup($select=Name)),\
                 Hotfix($select=Name,Article,ArticleName,Version,ComponentName,ComponentVersion)",
            ),
            "ModifiedDate",
            since,
            None,
            "Id",
        )
    }

    fn key(&self, r: &MachineHotfixLog) -> Option<String> {
        r.id.map(|i| i.to_string())
    }

    fn key_hash(&self, r: &MachineHotfixLog) -> Option<u64> {
        r.id.map(|i| super::key_hash(&i))
    }

    fn watermark(&self, r: &MachineHotfixLog) -> Option<DateTime<Utc>> {
        r.modified_date
    }

    fn map<'r>(
        &self,
        r: &'r MachineHotfixLog,
        _: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let id =
            r.id.ok_or_else(|| MapError("hotfix log without Id".into()))?;
        let at = r
            .created_date
            .or(r.modified_date)
            .ok_or_else(|| MapError(format!("hotfix log {id} has no CreatedDate")))?;
        let (dg, machine) = super::machine_names(r.machine.as_ref());
        let h = r.hotfix.as_ref();
        out.push(
            tenant_point(MEASUREMENT, record_timestamp_ns(at, id), ctx)
                .tag("delivery_group", dg)
                .tag("machine", machine)
                .tag(
                    "change_type",
                    r.change_type
                        .map(|v| enums::hotfix_change_type(v).into_owned())
                        .unwrap_or_default(),
                )
                .field("count", 1i64)
                .field_opt("change_type_code", r.change_type)
                .field_opt("current_state", r.current_state)
                .field_opt("hotfix", h.and_then(|h| h.name.clone()))
                .field_opt("article", h.and_then(|h| h.article.clone()))
                .field_opt("version", h.and_then(|h| h.version.clone()))
                .field_opt("component", h.and_then(|h| h.component_name.clone()))
                .field_opt(
                    "component_version",
                    h.and_then(|h| h.component_version.clone()),
                )
                .field("log_id", id),
        );
        Ok(())
    }
}
