//! The simulator's newer entity sets and its clock over real HTTP: every set pages correctly
//! and answers `$filter` on its watermark field; `POST /_sim/advance` adds rows, ends sessions
//! (bumping ModifiedDate of rows already read) and adds late rows within the documented 90 s;
//! the equal-ModifiedDate batch of tenant 0's Connections straddles the first page boundary.
//! Expectations come from `SimHandle::rows`, recomputed here, never from the code under test.

mod common;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use citrix_harvester::sim::{SimOptions, SimTenant};
use common::sim::{start, token};
use reqwest::Client;
use serde_json::Value;

/// Follows nextLinks; returns all rows and the page sizes.
async fn walk(c: &Client, url: &str, tok: &str, t: &SimTenant) -> (Vec<Value>, Vec<usize>) {
    let (mut rows, mut sizes) = (Vec::new(), Vec::new());
    let mut next = Some(url.to_string());
    while let Some(u) = next {
        let r = c
            .get(&u)
            .header("Authorization", format!("CWSAuth bearer={tok}"))
            .header("Citrix-CustomerId", &t.customer_id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{u}");
        let page: Value = r.json().await.unwrap();
        let value = page["value"].as_array().unwrap();
        sizes.push(value.len());
        rows.extend(value.iter().cloned());
        next = page["@odata.nextLink"].as_str().map(str::to_string);
        assert!(sizes.len() < 500);
    }
    (rows, sizes)
}

fn date(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn lit(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn key_of(set: &str) -> &'static str {
    match set {
        "Sessions" => "SessionKey",
        _ => "Id",
    }
}

/// (set, watermark field, extra filter) of every set a harvester reads incrementally.
const SETS: &[(&str, &str, &str)] = &[
    ("MachineFailureLogs", "ModifiedDate", ""),
    ("MachineHotfixLogs", "ModifiedDate", ""),
    ("ApplicationInstances", "ModifiedDate", ""),
    ("ResourceUtilization", "CollectedDate", ""),
    ("MachineMetric", "CollectedDate", ""),
    ("SessionMetrics", "CollectedDate", ""),
    (
        "SessionActivitySummaries",
        "SummaryDate",
        " and Granularity eq 60",
    ),
    ("LogOnSummaries", "SummaryDate", " and Granularity eq 60"),
    (
        "FailureLogSummaries",
        "SummaryDate",
        " and Granularity eq 60",
    ),
    (
        "LoadIndexSummaries",
        "SummaryDate",
        " and Granularity eq 60",
    ),
    ("MachineSummaries", "SummaryDate", " and Granularity eq 1"),
    (
        "ResourceUtilizationSummary",
        "SummaryDate",
        " and Granularity eq 10",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_set_pages_and_filters_on_its_watermark() {
    let h = start(SimOptions {
        tenants: 1,
        ..SimOptions::default()
    })
    .await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let base = h.monitor_base_url();
    for set in ["Hotfixes", "Applications"] {
        let (rows, _) = walk(&c, &format!("{base}/{set}"), &tok, t).await;
        assert_eq!(rows, h.rows(&t.customer_id, set), "{set}");
    }
    for (set, field, extra) in SETS {
        let all = h.rows(&t.customer_id, set);
        assert!(!all.is_empty(), "{set} has rows");
        // Everything, paged.
        let (rows, sizes) = walk(&c, &format!("{base}/{set}"), &tok, t).await;
        assert_eq!(rows.len(), all.len(), "{set}");
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n == 100),
            "{set} {sizes:?}"
        );
        let keys: HashSet<String> = rows.iter().map(|r| r[key_of(set)].to_string()).collect();
        assert_eq!(keys.len(), rows.len(), "{set}: no row twice");
        // A watermark in the middle: exactly the rows at or after it (plus the extra filter).
        let mut dates: Vec<DateTime<Utc>> = all.iter().filter_map(|r| date(&r[*field])).collect();
        dates.sort();
        let mark = dates[dates.len() / 2];
        let mark = mark - Duration::nanoseconds(mark.timestamp_subsec_nanos() as i64);
        let gran = extra.rsplit(' ').next().and_then(|g| g.parse::<i64>().ok());
        let expected: Vec<&Value> = all
            .iter()
            .filter(|r| date(&r[*field]).is_some_and(|d| d >= mark))
            .filter(|r| gran.is_none_or(|g| r["Granularity"].as_i64() == Some(g)))
            .collect();
        let url = format!(
            "{base}/{set}?$filter={field} ge {}{extra}&$orderby={field},{}",
            lit(mark),
            key_of(set)
        );
        let (rows, _) = walk(&c, &url, &tok, t).await;
        assert_eq!(rows.len(), expected.len(), "{url}");
        assert!(
            rows.windows(2)
                .all(|w| date(&w[0][*field]) <= date(&w[1][*field])),
            "{set} ordered"
        );
    }
    // MachineMetric has no ModifiedDate: filtering on it is a 400, as on the real service.
    let r = c
        .get(format!(
            "{base}/MachineMetric?$filter=ModifiedDate ge 2024-01-01T00:00:00Z"
        ))
        .header("Authorization", format!("CWSAuth bearer={tok}"))
        .header("Citrix-CustomerId", &t.customer_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Navigations for $expand.
    for (set, expand) in [
        ("SessionActivitySummaries", "DesktopGroup"),
        ("LoadIndexSummaries", "Machine"),
        ("MachineFailureLogs", "Machine"),
        ("ApplicationInstances", "Application,Session"),
        ("MachineHotfixLogs", "Machine,Hotfix"),
        ("ResourceUtilizationSummary", "Machine"),
        ("SessionMetrics", "Session"),
    ] {
        let (rows, _) = walk(
            &c,
            &format!("{base}/{set}?$top=3&$expand={expand}"),
            &tok,
            t,
        )
        .await;
        for r in rows {
            for nav in expand.split(',') {
                assert!(r[nav].is_object(), "{set} expands {nav}: {r}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_modified_dates_straddle_the_page_boundary() {
    let h = start(SimOptions {
        tenants: 1,
        ..SimOptions::default()
    })
    .await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let url = format!(
        "{}/Connections?$select=Id,ModifiedDate&$orderby=ModifiedDate,Id",
        h.monitor_base_url()
    );
    let (rows, sizes) = walk(&c, &url, &tok, t).await;
    assert_eq!(sizes[0], 100);
    let d: Vec<_> = rows
        .iter()
        .map(|r| date(&r["ModifiedDate"]).unwrap())
        .collect();
    assert!((97..=101).all(|i| d[i] == d[99]), "{:?}", &d[95..103]);
    // A client resuming with `gt` the last date of page 1 would lose rows 100 and 101.
    let lost = d[100..].iter().filter(|x| **x <= d[99]).count();
    assert!(lost >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advance_adds_rows_ends_sessions_and_late_rows_stay_within_90_s() {
    use chrono::TimeZone;
    let h = start(SimOptions {
        tenants: 2,
        // A weekday afternoon, fixed: at night (the default is the real present) no session
        // may end within the 30 simulated minutes, and the test would depend on the hour.
        now: Utc.with_ymd_and_hms(2026, 11, 17, 14, 0, 0).unwrap(),
        ..SimOptions::default()
    })
    .await;
    let c = Client::new();
    let t = h.tenants()[0].clone();
    let old = h.now();
    let before: HashMap<&str, Vec<Value>> = ["Sessions", "Connections", "SessionActivitySummaries"]
        .into_iter()
        .map(|s| (s, h.rows(&t.customer_id, s)))
        .collect();
    let r = c
        .post(format!("{}/_sim/advance?minutes=30", h.regional_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(date(&body["now"]), Some(old + Duration::minutes(30)));
    assert_eq!(h.now(), old + Duration::minutes(30));
    let bad = c
        .post(format!("{}/_sim/advance?minutes=abc", h.regional_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let after = h.rows(&t.customer_id, "Sessions");
    assert!(after.len() > before["Sessions"].len());
    let was: HashMap<String, &Value> = before["Sessions"]
        .iter()
        .map(|r| (r["SessionKey"].to_string(), r))
        .collect();
    let mut ended = 0;
    let mut late = 0;
    for r in &after {
        let m = date(&r["ModifiedDate"]).unwrap();
        assert!(m <= h.now());
        match was.get(&r["SessionKey"].to_string()) {
            Some(prev) if prev["EndDate"].is_null() && !r["EndDate"].is_null() => {
                ended += 1;
                assert!(
                    m > old,
                    "an ended session's ModifiedDate moves past the old now"
                );
            }
            Some(prev) => assert_eq!(*prev, r),
            None if m < old => {
                late += 1;
                assert!(
                    m >= old - Duration::seconds(90),
                    "late by more than 90 s: {m}"
                );
            }
            None => {}
        }
    }
    assert!(ended > 0, "some sessions ended");
    assert_eq!(late, 2, "two late launches");
    // A harvester reading `ModifiedDate ge old - 90 s` sees every new or changed session.
    let tok = token(&c, &h, &t).await;
    let url = format!(
        "{}/Sessions?$filter=ModifiedDate ge {}",
        h.monitor_base_url(),
        lit(old - Duration::seconds(90))
    );
    let (seen, _) = walk(&c, &url, &tok, &t).await;
    let seen: HashSet<String> = seen.iter().map(|r| r["SessionKey"].to_string()).collect();
    for r in &after {
        let k = r["SessionKey"].to_string();
        if was.get(&k).is_none_or(|p| **p != *r) {
            assert!(seen.contains(&k), "missed {k}");
        }
    }
    // Old summary rows are unchanged; new ones are complete intervals only.
    let sas = h.rows(&t.customer_id, "SessionActivitySummaries");
    assert_eq!(
        &sas[..before["SessionActivitySummaries"].len()],
        &before["SessionActivitySummaries"][..]
    );
    assert!(sas.len() > before["SessionActivitySummaries"].len());
    for r in &sas {
        let a = date(&r["SummaryDate"]).unwrap();
        let g = r["Granularity"].as_i64().unwrap();
        assert!(a + Duration::minutes(g) <= h.now());
    }
    // The other tenant moved too.
    let other = &h.tenants()[1];
    assert!(
        h.rows(&other.customer_id, "ResourceUtilization")
            .iter()
            .any(|r| date(&r["CollectedDate"]).is_some_and(|d| d > old))
    );
}
