//! The proof of the encoder: arbitrary strings (quotes, backslashes, commas, `=`, spaces,
//! newlines, tabs, non-ASCII, trailing backslashes) written through the sink as tag keys, tag
//! values, field keys and string field values to the real InfluxDB 1.6, read back with
//! InfluxQL, and compared with the input after the rewrites documented in `src/lineproto.rs`.

mod common;

use std::collections::BTreeMap;

use citrix_harvester::lineproto::Point;
use citrix_harvester::sink::{Sink, SinkConfig, SinkKind};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

fn ctrl(s: &str) -> String {
    s.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}
/// Rewrite 3 (measurements and field keys only).
fn drop_backslash_before_special(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let run = i;
            while i < b.len() && b[i] == b'\\' {
                i += 1;
            }
            if !(i < b.len() && matches!(b[i], b',' | b'=' | b' ' | b'"')) {
                out.extend_from_slice(&b[run..i]);
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
fn field_key(s: &str) -> String {
    ctrl(&drop_backslash_before_special(s.trim_end_matches('\\')))
}
fn tag(s: &str) -> String {
    ctrl(s.trim_end_matches('\\'))
}

fn nasty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(vec![
                ' ', ',', '=', '"', '\\', '\n', '\r', '\t', '\'', '#', '_',
            ]),
            4 => prop::char::range('a', 'z'),
            1 => prop::sample::select(vec!['é', 'ß', '😀', '値', '\u{2028}']),
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

const CASES: usize = 300;

#[tokio::test]
async fn arbitrary_strings_survive_influxdb_1_6() {
    let Some(url) = common::influx1_url() else {
        return;
    };
    let db = common::unique_name("lp_roundtrip");
    common::influx1_create_db(&url, &db).await;

    // (tag key, tag value, field key, string value); the first cases pin the known edges.
    let mut cases: Vec<(String, String, String, String)> = vec![
        ("a\\".into(), "v\\".into(), "f\\".into(), "s\\".into()),
        (
            "a\\,b".into(),
            "x\\,y".into(),
            "f\\,g".into(),
            "\\\"".into(),
        ),
        (
            "a\\=b".into(),
            "x\\ y".into(),
            "f\\ g".into(),
            "\"\"\\\\".into(),
        ),
        (
            "\"k\"".into(),
            "\"v\"".into(),
            "\"f\"".into(),
            "\n\t\r".into(),
        ),
        ("k".into(), "".into(), "f".into(), "".into()),
        ("k".into(), "\\\\\\".into(), "f\\\"x".into(), "é😀".into()),
    ];
    let strat = (nasty(), nasty(), nasty(), nasty());
    let mut runner = TestRunner::deterministic();
    while cases.len() < CASES {
        cases.push(strat.new_tree(&mut runner).unwrap().current());
    }

    // One measurement per case, so each answer has only that case's columns. Prefixes keep
    // names valid and apart: tag key "k…", field key "f…", plus the fixed "s" and "t".
    let points: Vec<Point> = cases
        .iter()
        .enumerate()
        .map(|(i, (tk, tv, fk, sv))| {
            Point::new(format!("rt{i}"), 1_000 + i as i64)
                .tag(format!("k{tk}"), "x")
                .tag("t", tv.clone())
                .field(format!("f{fk}"), 1i64)
                .field("s", sv.clone())
        })
        .collect();
    let mut cfg = SinkConfig::new(SinkKind::InfluxV1 {
        url: url.clone(),
        database: db.clone(),
        retention_policy: None,
        username: None,
        password: None,
    });
    cfg.retry_max_elapsed = std::time::Duration::from_secs(5);
    let sink = Sink::new(cfg).unwrap();
    let report = sink.write(&points).await.unwrap();
    assert_eq!(report.written, CASES, "{report:?}");
    assert_eq!(report.rejected + report.dropped, 0, "{report:?}");

    let q: Vec<String> = (0..CASES).map(|i| format!("SELECT * FROM rt{i}")).collect();
    let ans = common::influx1_query(&url, &db, &q.join(";")).await;
    let results = ans["results"].as_array().unwrap();
    assert_eq!(results.len(), CASES);
    let mut failures = Vec::new();
    for (i, (tk, tv, fk, sv)) in cases.iter().enumerate() {
        let series = &results[i]["series"][0];
        let cols: Vec<String> = series["columns"]
            .as_array()
            .map(|c| c.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        let row = series["values"][0].as_array().cloned().unwrap_or_default();
        let got: BTreeMap<String, Value> = cols.into_iter().zip(row).collect();
        let mut want = BTreeMap::new();
        want.insert("time".to_owned(), json!(1_000 + i as i64));
        want.insert(tag(&format!("k{tk}")), json!("x"));
        let tv = tag(tv);
        if !tv.is_empty() {
            want.insert("t".to_owned(), json!(tv));
        }
        want.insert(field_key(&format!("f{fk}")), json!(1));
        want.insert("s".to_owned(), json!(ctrl(sv)));
        if got != want {
            failures.push(format!(
                "case {i} {:?}:\n  want {want:?}\n  got  {got:?}",
                (tk, &tv, fk, sv)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CASES} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
