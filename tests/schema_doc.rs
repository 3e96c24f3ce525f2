//! docs/schema.md's example lines are what the collectors and the encoder really produce: each
//! is rebuilt from a Monitor API record through the collector's own mapping and compared, and
//! every measurement of every registered collector is documented.

use chrono::{DateTime, Utc};

use citrix_harvester::collect::application_instances::ApplicationInstances;
use citrix_harvester::collect::application_usage::ApplicationUsage;
use citrix_harvester::collect::connection_failures::{Categories, ConnectionFailures};
use citrix_harvester::collect::failure_log_summaries::FailureLogSummaries;
use citrix_harvester::collect::hotfixes::Hotfixes;
use citrix_harvester::collect::load_index_summaries::LoadIndexSummaries;
use citrix_harvester::collect::load_indexes::LoadIndexes;
use citrix_harvester::collect::logon_summaries::LogOnSummaries;
use citrix_harvester::collect::machine_failures::MachineFailures;
use citrix_harvester::collect::machine_metric::MachineMetric;
use citrix_harvester::collect::machine_summaries::MachineSummaries;
use citrix_harvester::collect::resource_utilization::ResourceUtilization;
use citrix_harvester::collect::resource_utilization_summary::ResourceUtilizationSummaries;
use citrix_harvester::collect::session_activity_summaries::SessionActivitySummaries;
use citrix_harvester::collect::session_metrics::SessionMetrics;
use citrix_harvester::collect::sessions::Sessions;
use citrix_harvester::collect::{Collector, Ctx};
use citrix_harvester::lineproto::encode;

const DOC: &str = include_str!("../docs/schema.md");

fn ctx() -> Ctx {
    let cycle: DateTime<Utc> = "2026-03-02T09:00:00Z".parse().unwrap();
    Ctx {
        customer: "Contoso".into(),
        customer_id: "contoso1".into(),
        cycle_time: cycle,
    }
}

fn lines<C: Collector>(c: &C, state: &C::State, json: &str) -> Vec<String> {
    let r: C::Record<'_> = serde_json::from_str(json).unwrap();
    let ctx = ctx();
    let mut points = Vec::new();
    c.map(&r, state, &ctx, &mut points).unwrap();
    c.finish(state, &ctx, &mut points);
    points
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            encode(p, &mut out).unwrap();
            String::from_utf8(out).unwrap().trim_end().to_string()
        })
        .collect()
}

fn check(line: String) {
    let measurement = line.split(',').next().unwrap();
    let doc_line = DOC
        .lines()
        .find(|l| l.starts_with(&format!("{measurement},")))
        .unwrap_or_else(|| panic!("docs/schema.md has no example line for {measurement}:\n{line}"));
    assert_eq!(
        doc_line, line,
        "update docs/schema.md with the line on the right"
    );
    assert!(
        DOC.contains(&format!("### `{measurement}`")),
        "no section for {measurement}"
    );
}

const M: &str = r#""Machine":{"Name":"DOM\\vda-01","DesktopGroup":{"Name":"Sales EU"},"Catalog":{"Name":"Win11"}}"#;

#[test]
fn every_example_line_matches_the_encoder() {
    check(lines(&Sessions, &(), &format!(
        r#"{{"SessionKey":"6b07220e-0000-4000-8000-000000000001","StartDate":"2026-03-02T08:00:03.25Z","EndDate":"2026-03-02T08:45:03.25Z",
        "LogOnDuration":23000,"ConnectionState":3,"SessionType":0,"ExitCode":0,"User":{{"UserName":"DOM\\jdoe"}},{M}}}"#
    ))[0].clone());
    let cats = Categories([(100, 3)].into_iter().collect());
    check(lines(&ConnectionFailures, &cats, &format!(
        r#"{{"Id":4711,"SessionKey":"6b07220e-0000-4000-8000-000000000002","FailureDate":"2026-03-02T08:01:00.5Z",
        "ConnectionFailureEnumValue":100,"User":{{"UserName":"DOM\\jdoe"}},{M}}}"#
    ))[0].clone());
    check(lines(&MachineFailures, &(), &format!(
        r#"{{"Id":17,"FailureStartDate":"2026-03-02T07:30:00Z","FailureEndDate":"2026-03-02T07:40:00Z","FaultState":4,
        "LastDeregisteredCode":207,{M}}}"#
    ))[0].clone());
    check(lines(&SessionActivitySummaries { granularity: 60 }, &(),
        r#"{"Id":1,"SummaryDate":"2026-03-02T08:00:00Z","ConcurrentSessionCount":41,"ConnectedSessionCount":38,
        "DisconnectedSessionCount":3,"TotalLogOnDuration":920000,"TotalLogOnCount":40,"Granularity":60,"DesktopGroup":{"Name":"Sales EU"}}"#,
    )[0].clone());
    check(lines(&LogOnSummaries { granularity: 60 }, &(),
        r#"{"Id":2,"SummaryDate":"2026-03-02T08:00:00Z","TotalDuration":920000,"TotalCount":40,"BrokeringDuration":40000,
        "BrokeringCount":40,"GpoDuration":200000,"GpoCount":40,"Granularity":60,"DesktopGroup":{"Name":"Sales EU"}}"#,
    )[0].clone());
    check(lines(&LoadIndexSummaries { granularity: 60 }, &(), &format!(
        r#"{{"Id":3,"SummaryDate":"2026-03-02T08:00:00Z","SumCount":12,"SumLoadIndex":30000,"SumCpu":360,"SumMemory":600,
        "SumDisk":12,"SumNetwork":24,"SumSessionCount":48,"Granularity":60,{M}}}"#
    ))[0].clone());
    check(lines(&FailureLogSummaries { granularity: 1440 }, &(),
        r#"{"Id":4,"SummaryDate":"2026-03-02T00:00:00Z","FailureCategory":1,"FailureCode":100,"FailureCount":7,
        "Granularity":1440,"DesktopGroup":{"Name":"Sales EU"}}"#,
    )[0].clone());
    check(lines(&MachineSummaries { granularity: 60 }, &(),
        r#"{"Id":5,"SummaryDate":"2026-03-02T08:00:00Z","MachinesCount":20,"PoweredOnMachinesCount":18,
        "RegisteredMachinesCount":17,"MachinesInMaintenanceModeCount":1,"Granularity":60,"DesktopGroup":{"Name":"Sales EU"}}"#,
    )[0].clone());
    check(lines(&LoadIndexes, &(), &format!(
        r#"{{"Id":99001,"EffectiveLoadIndex":2500,"Cpu":30,"Memory":50,"Disk":1,"Network":2,"SessionCount":4,
        "CreatedDate":"2026-03-02T08:05:00.123Z",{M}}}"#
    ))[0].clone());
    check(lines(&ResourceUtilization, &(), &format!(
        r#"{{"MachineId":"6b07220e-0000-4000-8000-0000000000aa","CollectedDate":"2026-03-02T08:05:00Z","PercentCpu":31.5,
        "UsedMemory":6144,"TotalMemory":16384,{M}}}"#
    ))[0].clone());
    check(lines(&ResourceUtilizationSummaries { granularity: 10 }, &(), &format!(
        r#"{{"Id":6,"SummaryDate":"2026-03-02T08:00:00Z","AvgPercentCpu":28.5,"PeakPercentCpu":71,"AvgUsedMemory":6000,
        "PeakUsedMemory":7000,"AvgTotalMemory":16384,"TotalSessionCount":4,"Granularity":10,{M}}}"#
    ))[0].clone());
    check(lines(&MachineMetric, &(), &format!(
        r#"{{"MachineId":"6b07220e-0000-4000-8000-0000000000aa","CollectedDate":"2026-03-02T08:05:00Z","Iops":120.5,"Latency":3.2,{M}}}"#
    ))[0].clone());
    check(lines(&SessionMetrics, &(), &format!(
        r#"{{"Id":555,"CollectedDate":"2026-03-02T08:05:00Z","IcaRttMS":42,"IcaLatency":38,"ClientL7Latency":12,"ServerL7Latency":9,
        "SessionId":"6b07220e-0000-4000-8000-000000000001","Session":{{{M}}}}}"#
    ))[0].clone());
    check(lines(&Hotfixes, &(), &format!(
        r#"{{"Id":12,"ChangeType":0,"CurrentState":true,"CreatedDate":"2026-03-01T22:00:00Z",
        "Hotfix":{{"Name":"HDX RealTime Fix","Article":"CTX123456","Version":"1.0","ComponentName":"VDA","ComponentVersion":"2402.0.0.1"}},{M}}}"#
    ))[0].clone());
    check(lines(&ApplicationInstances, &(), &format!(
        r#"{{"Id":321,"StartDate":"2026-03-02T08:03:00Z","EndDate":"2026-03-02T08:33:00Z","SessionKey":"6b07220e-0000-4000-8000-000000000001",
        "Application":{{"Name":"word","PublishedName":"Microsoft Word"}},"Session":{{"User":{{"UserName":"DOM\\jdoe"}},{M}}}}}"#
    ))[0].clone());
    let running = Default::default();
    check(lines(&ApplicationUsage, &running, &format!(
        r#"{{"Id":322,"Application":{{"PublishedName":"Microsoft Word"}},"Session":{{{M}}}}}"#
    ))[0].clone());
}

#[test]
fn self_metrics_example_line_matches_the_encoder() {
    use citrix_harvester::collect::EntityStats;
    use citrix_harvester::metrics::{ApiCounts, Metrics};
    use citrix_harvester::scheduler::TenantSummary;
    let at = ctx().cycle_time;
    let summary = TenantSummary {
        tenant: "Contoso".into(),
        customer_id: "contoso1".into(),
        error: None,
        entities: vec![EntityStats {
            kind: "connections".into(),
            records: 1200,
            points_written: 1200,
            ..EntityStats::default()
        }],
        duration: std::time::Duration::from_millis(4250),
    };
    let m = Metrics::new();
    let api = ApiCounts {
        throttled: 2,
        token_fetches: 1,
        token_fallbacks: 0,
    };
    m.record(&summary, api, at);
    let p = m
        .point("Contoso", &Default::default(), at)
        .expect("a point after a cycle");
    let mut out = Vec::new();
    encode(&p, &mut out).unwrap();
    check(String::from_utf8(out).unwrap().trim_end().to_string());
}

#[test]
fn every_registered_kind_is_documented() {
    for kind in citrix_harvester::collect::registry::KINDS {
        assert!(
            DOC.contains(&format!("`{kind}`")),
            "docs/schema.md does not mention `{kind}`"
        );
    }
    for m in ["citrix_logon", "citrix_machine"] {
        assert!(DOC.contains(&format!("### `{m}`")), "no section for {m}");
    }
}
