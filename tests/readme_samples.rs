//! README's sample lines are what the collectors and the encoder really produce: each sample is
//! rebuilt from a Monitor API record through the ordinary mapping and encoding, and compared.

use chrono::{DateTime, Utc};

use citrix_harvester::collect::connections::Connections;
use citrix_harvester::collect::machines::Machines;
use citrix_harvester::collect::{Collector, Ctx};
use citrix_harvester::lineproto::encode;

fn readme_line(prefix: &str) -> String {
    let readme = include_str!("../README.md");
    readme
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("README has no line starting with {prefix}"))
        .to_string()
}

fn encode_one<C: Collector<State = ()>>(c: C, json: &str, ctx: &Ctx) -> String {
    let record: C::Record<'_> = serde_json::from_str(json).unwrap();
    let mut points = Vec::new();
    c.map(&record, &(), ctx, &mut points).unwrap();
    let mut out = Vec::new();
    encode(&points[0], &mut out).unwrap();
    String::from_utf8(out).unwrap().trim_end().to_string()
}

#[test]
fn logon_sample_matches_the_encoder() {
    let ctx = Ctx {
        customer: "Contoso".into(),
        customer_id: "contoso1".into(),
        cycle_time: Utc::now(),
    };
    let json = r#"{"Id":77,"Protocol":"HDX","IsReconnect":false,
        "BrokeringDate":"2026-03-02T07:59:58.5Z","BrokeringDuration":850,"AuthenticationDuration":1200,
        "LogOnStartDate":"2026-03-02T08:00:00Z","LogOnEndDate":"2026-03-02T08:00:25.25Z",
        "GpoStartDate":"2026-03-02T08:00:05Z","GpoEndDate":"2026-03-02T08:00:09.5Z",
        "Session":{"User":{"UserName":"DOM\\o'brien"},
          "Machine":{"Name":"DOM\\vda 1","DesktopGroup":{"Name":"Sales, EU"}}}}"#;
    let line = encode_one(Connections, json, &ctx);
    assert_eq!(
        readme_line("citrix_logon,"),
        line,
        "update README with the line on the right"
    );
}

#[test]
fn machine_sample_matches_the_encoder() {
    let cycle: DateTime<Utc> = "2026-03-02T08:05:00Z".parse().unwrap();
    let ctx = Ctx {
        customer: "Contoso".into(),
        customer_id: "c1".into(),
        cycle_time: cycle,
    };
    let json = r#"{"Name":"DOM\\vda 7","CurrentRegistrationState":1,"CurrentPowerState":3,
        "FaultState":1,"IsInMaintenanceMode":false,"CurrentSessionCount":4,
        "DesktopGroup":{"Name":"Sales, EU"},"Catalog":{"Name":"Win11 MCS"},
        "CurrentLoadIndex":{"EffectiveLoadIndex":2500}}"#;
    let line = encode_one(Machines, json, &ctx);
    assert_eq!(
        readme_line("citrix_machine,"),
        line,
        "update README with the line on the right"
    );
}
