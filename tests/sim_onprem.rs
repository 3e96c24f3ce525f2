//! The simulator's on-premises mode over HTTP, as onprem-cvad.md §1 describes a Delivery
//! Controller: the site's data under `/Citrix/Monitor/OData/v4/Data`, 100 rows a page with
//! absolute `$skip` nextLinks that together serve every row once, query options honoured only
//! in the query string (a `$filter` in a GET body is ignored, as the real service does), 404
//! for `Entity(key)` and `/$count`, and no token: authentication is the acceptor's job in front.

mod common;

use std::collections::HashSet;

use serde_json::Value;

use citrix_harvester::scheduler::minute_now;
use citrix_harvester::sim::SimOptions;

#[tokio::test]
async fn a_site_pages_by_absolute_skip_links_and_refuses_key_and_count_segments() {
    let sim = common::sim::start(SimOptions {
        tenants: 2,
        seed: 23,
        now: minute_now(),
        history: chrono::Duration::days(1),
        onprem_site: true,
        ..SimOptions::default()
    })
    .await;
    let site = sim.onprem_site().expect("a site in on-premises mode");
    let base = sim.onprem_base_url();
    assert!(base.ends_with("/Citrix/Monitor/OData/v4/Data"), "{base}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };

    // Every row once, through 100-row pages; no Authorization header, no Citrix-CustomerId.
    let want: HashSet<String> = sim
        .rows(&site.customer_id, "Connections")
        .iter()
        .map(|r| r["Id"].to_string())
        .collect();
    assert!(want.len() > 100, "more than one page: {}", want.len());
    let mut seen = HashSet::new();
    let mut next = Some(format!("{base}/Connections"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let (status, body) = get(url.clone()).await;
        assert_eq!(status, 200, "{url}: {body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let rows = page["value"].as_array().unwrap();
        assert!(rows.len() <= 100, "{} rows on one page", rows.len());
        for r in rows {
            assert!(
                seen.insert(r["Id"].to_string()),
                "row {} served twice",
                r["Id"]
            );
        }
        pages += 1;
        if let Some(link) = page["@odata.nextLink"].as_str() {
            assert!(
                link.starts_with(&base),
                "not absolute under the site: {link}"
            );
            assert!(link.contains(&format!("$skip={}", pages * 100)), "{link}");
            next = Some(link.to_string());
        }
    }
    assert_eq!(seen, want);
    assert_eq!(pages, want.len().div_ceil(100));

    // Query options only in the query string: a $filter in the body changes nothing.
    let in_body = http
        .get(format!("{base}/Connections"))
        .body("$filter=Id eq -1")
        .send()
        .await
        .unwrap();
    let page: Value = serde_json::from_str(&in_body.text().await.unwrap()).unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 100);
    let (status, body) = get(format!("{base}/Connections?$filter=Id%20eq%20-1")).await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert!(page["value"].as_array().unwrap().is_empty(), "{body}");

    // The segments the real controller does not serve.
    let first = want.iter().next().unwrap();
    for path in [
        format!("Connections({first})"),
        "Connections/$count".to_string(),
    ] {
        let (status, body) = get(format!("{base}/{path}")).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}
