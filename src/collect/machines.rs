//! Machines → `citrix_machine`: a snapshot of every active machine each cycle (registration,
//! power and fault state as names (tags) and codes (fields), session count, load index,
//! maintenance mode). Machine state cannot be re-read later, so this kind has no watermark; its
//! timestamp is the cycle's start, so one cycle gives one point per machine.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError};
use crate::citrix::enums;
use crate::citrix::model::{MachineRow, Named};
use crate::citrix::odata::Query;
use crate::lineproto::PointOf;

pub const MEASUREMENT: &str = "citrix_machine";

pub struct Machines;

impl Collector for Machines {
    type Record<'de> = MachineRow<'de>;
    type State = ();

    fn name(&self) -> String {
        "machines".into()
    }

    fn entity_set(&self) -> &'static str {
        "Machines"
    }

    fn watermark_field(&self) -> Option<&'static str> {
        None
    }

    fn query(&self, _since: Option<DateTime<Utc>>) -> Query {
        let mut q = Query::new(self.entity_set());
        q.select = vec![
            "Id",
            "Name",
            "DnsName",
            "LifecycleState",
            "CurrentRegistrationState",
            "CurrentPowerState",
            "FaultState",
            "IsInMaintenanceMode",
            "CurrentSessionCount",
            "AgentVersion",
            "OSType",
        ];
        q.expand = Some(
            "DesktopGroup($select=Name),Catalog($select=Name),CurrentLoadIndex($select=EffectiveLoadIndex)"
                .into(),
        );
        // Deleted machines stay in the set until groomed (citrix-monitor-api.md §3).
        q.filter = Some("LifecycleState eq 0".into());
        q
    }

    fn key(&self, r: &MachineRow<'_>) -> Option<String> {
        r.id.as_deref().map(str::to_owned)
    }

    fn key_hash(&self, r: &MachineRow<'_>) -> Option<u64> {
        r.id.as_deref().map(super::key_hash)
    }

    fn watermark(&self, _r: &MachineRow<'_>) -> Option<DateTime<Utc>> {
        None
    }

    /// The point borrows its text from the record and the context: a snapshot of 500
    /// machines a minute per tenant must not cost a dozen allocations per machine.
    fn map<'r>(
        &self,
        m: &'r MachineRow<'_>,
        _state: &'r (),
        ctx: &'r Ctx,
        out: &mut Vec<PointOf<'r>>,
    ) -> Result<(), MapError> {
        let name = m
            .name
            .as_deref()
            .or(m.dns_name.as_deref())
            .or(m.id.as_deref())
            .ok_or_else(|| MapError("machine without Name, DnsName or Id".into()))?;
        let ts = ctx
            .cycle_time
            .timestamp_nanos_opt()
            .ok_or_else(|| MapError("cycle time out of range".into()))?;
        let reg = m.current_registration_state;
        let power = m.current_power_state;
        let fault = m.fault_state;
        let state_name = |v: Option<i64>, f: fn(i64) -> Cow<'static, str>| -> Cow<'r, str> {
            v.map(f).unwrap_or_default()
        };
        let named = |n: &'r Option<Named<'_>>| n.as_ref().and_then(|g| g.name.as_deref());
        let p = PointOf::with_capacity(MEASUREMENT, ts, 8, 11)
            .tag("customer", ctx.customer.as_str())
            .tag("customer_id", ctx.customer_id.as_str())
            .tag(
                "delivery_group",
                named(&m.desktop_group).unwrap_or_default(),
            )
            .tag("catalog", named(&m.catalog).unwrap_or_default())
            .tag("machine", name)
            .tag(
                "registration_state",
                state_name(reg, enums::registration_state),
            )
            .tag("power_state", state_name(power, enums::power_state))
            .tag("fault_state", state_name(fault, enums::fault_state))
            .field_opt("registration_state_code", reg)
            .field_opt("power_state_code", power)
            .field_opt("fault_state_code", fault)
            .field_opt("session_count", m.current_session_count)
            .field_opt(
                "load_index",
                m.current_load_index
                    .as_ref()
                    .and_then(|l| l.effective_load_index),
            )
            .field(
                "in_maintenance_mode",
                m.is_in_maintenance_mode.unwrap_or(false),
            )
            .field("registered", reg == Some(1))
            .field_str("machine_id", m.id.as_deref())
            .field_str("dns_name", m.dns_name.as_deref())
            .field_str("agent_version", m.agent_version.as_deref())
            .field_str("os_type", m.os_type.as_deref());
        out.push(p);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::FieldValue;

    #[test]
    fn snapshot_point_has_state_names_and_codes() {
        let m: MachineRow = serde_json::from_str(
            r#"{"Id":"6b07220e-0000-4000-8000-000000000001","Name":"DOM\\vda \"7\"","DnsName":null,
            "CurrentRegistrationState":1,"CurrentPowerState":3,"FaultState":1,"IsInMaintenanceMode":true,
            "CurrentSessionCount":4,"DesktopGroup":{"Name":"Sales, EU"},"Catalog":{"Name":"Win11 MCS"},
            "CurrentLoadIndex":{"EffectiveLoadIndex":2500}}"#,
        )
        .unwrap();
        let cycle: DateTime<Utc> = "2026-03-02T08:05:00Z".parse().unwrap();
        let ctx = Ctx {
            customer: "Contoso".into(),
            customer_id: "c1".into(),
            cycle_time: cycle,
        };
        let mut out = Vec::new();
        Machines.map(&m, &(), &ctx, &mut out).unwrap();
        let p = &out[0];
        let tag = |k: &str| p.tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref());
        let field = |k: &str| {
            p.fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(p.timestamp_ns, cycle.timestamp_nanos_opt().unwrap());
        assert_eq!(tag("machine"), Some("DOM\\vda \"7\""));
        assert_eq!(tag("registration_state"), Some("Registered"));
        assert_eq!(tag("power_state"), Some("On"));
        assert_eq!(tag("fault_state"), Some("None"));
        assert_eq!(tag("catalog"), Some("Win11 MCS"));
        assert_eq!(field("power_state_code"), Some(FieldValue::Int(3)));
        assert_eq!(field("session_count"), Some(FieldValue::Int(4)));
        assert_eq!(field("load_index"), Some(FieldValue::Float(2500.0)));
        assert_eq!(field("in_maintenance_mode"), Some(FieldValue::Bool(true)));
        assert_eq!(field("dns_name"), None);
    }

    #[test]
    fn snapshot_point_borrows_its_text_and_encodes_as_before() {
        // Text without escapes is a slice of the page body (no copy per machine), text with
        // escapes is unescaped once at decode; the point borrows either from the record.
        let body = r#"{"Id":"id-1","Name":"vda1","DnsName":"vda1.corp","CurrentRegistrationState":1,
            "CurrentPowerState":3,"FaultState":0,"CurrentSessionCount":2,"AgentVersion":"2407",
            "OSType":"Windows 11","DesktopGroup":{"Name":"DG\\1"},"Catalog":{"Name":"Cat"}}"#;
        let m: MachineRow = serde_json::from_str(body).unwrap();
        let ctx = Ctx {
            customer: "Contoso".into(),
            customer_id: "c1".into(),
            cycle_time: "2026-03-02T08:05:00Z".parse().unwrap(),
        };
        let mut out = Vec::new();
        Machines.map(&m, &(), &ctx, &mut out).unwrap();
        let p = &out[0];
        let tag = |k: &str| &p.tags.iter().find(|(n, _)| n == k).unwrap().1;
        assert!(matches!(tag("machine"), Cow::Borrowed("vda1")));
        assert!(matches!(tag("customer"), Cow::Borrowed("Contoso")));
        assert!(matches!(
            tag("registration_state"),
            Cow::Borrowed("Registered")
        ));
        assert_eq!(tag("delivery_group"), "DG\\1");
        let mut line = Vec::new();
        crate::lineproto::encode(p, &mut line).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "citrix_machine,catalog=Cat,customer=Contoso,customer_id=c1,delivery_group=DG\\1,\
             fault_state=Unknown,machine=vda1,power_state=On,registration_state=Registered \
             registration_state_code=1i,power_state_code=3i,fault_state_code=0i,session_count=2i,\
             in_maintenance_mode=false,registered=true,machine_id=\"id-1\",dns_name=\"vda1.corp\",\
             agent_version=\"2407\",os_type=\"Windows 11\" 1772438700000000000\n"
        );
    }

    #[test]
    fn query_excludes_deleted_machines_and_expands_names() {
        let url = Machines.query(None).url("http://h/monitorodata");
        assert!(url.contains("$filter=LifecycleState%20eq%200"), "{url}");
        assert!(url.contains("DesktopGroup($select=Name)"));
        assert!(url.contains("CurrentLoadIndex($select=EffectiveLoadIndex)"));
    }
}
