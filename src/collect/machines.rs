//! Machines → `citrix_machine`: a snapshot of every active machine each cycle (registration,
//! power and fault state as names (tags) and codes (fields), session count, load index,
//! maintenance mode). Machine state cannot be re-read later, so this kind has no watermark; its
//! timestamp is the cycle's start, so one cycle gives one point per machine.

use chrono::{DateTime, Utc};

use super::{Collector, Ctx, MapError};
use crate::citrix::enums;
use crate::citrix::model::Machine;
use crate::citrix::odata::Query;
use crate::lineproto::{Point, PointOf};

pub const MEASUREMENT: &str = "citrix_machine";

pub struct Machines;

impl Collector for Machines {
    type Record<'de> = Machine;
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

    fn key(&self, r: &Machine) -> Option<String> {
        r.id.clone()
    }

    fn watermark(&self, _r: &Machine) -> Option<DateTime<Utc>> {
        None
    }

    fn map(
        &self,
        m: &Machine,
        _state: &(),
        ctx: &Ctx,
        out: &mut Vec<PointOf<'_>>,
    ) -> Result<(), MapError> {
        let name = m
            .name
            .clone()
            .or_else(|| m.dns_name.clone())
            .or_else(|| m.id.clone())
            .ok_or_else(|| MapError("machine without Name, DnsName or Id".into()))?;
        let ts = ctx
            .cycle_time
            .timestamp_nanos_opt()
            .ok_or_else(|| MapError("cycle time out of range".into()))?;
        let reg = m.current_registration_state;
        let power = m.current_power_state;
        let fault = m.fault_state;
        let p = Point::with_capacity(MEASUREMENT, ts, 8, 11)
            .tag("customer", ctx.customer.clone())
            .tag("customer_id", ctx.customer_id.clone())
            .tag(
                "delivery_group",
                m.desktop_group
                    .as_ref()
                    .and_then(|g| g.name.clone())
                    .unwrap_or_default(),
            )
            .tag(
                "catalog",
                m.catalog
                    .as_ref()
                    .and_then(|c| c.name.clone())
                    .unwrap_or_default(),
            )
            .tag("machine", name)
            .tag(
                "registration_state",
                reg.map(|v| enums::registration_state(v).into_owned())
                    .unwrap_or_default(),
            )
            .tag(
                "power_state",
                power
                    .map(|v| enums::power_state(v).into_owned())
                    .unwrap_or_default(),
            )
            .tag(
                "fault_state",
                fault
                    .map(|v| enums::fault_state(v).into_owned())
                    .unwrap_or_default(),
            )
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
            .field_opt("machine_id", m.id.clone())
            .field_opt("dns_name", m.dns_name.clone())
            .field_opt("agent_version", m.agent_version.clone())
            .field_opt("os_type", m.os_type.clone());
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
        let m: Machine = serde_json::from_str(
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
    fn query_excludes_deleted_machines_and_expands_names() {
        let url = Machines.query(None).url("http://h/monitorodata");
        assert!(url.contains("$filter=LifecycleState%20eq%200"), "{url}");
        assert!(url.contains("DesktopGroup($select=Name)"));
        assert!(url.contains("CurrentLoadIndex($select=EffectiveLoadIndex)"));
    }
}
