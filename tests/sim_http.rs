//! The simulator over real HTTP with reqwest: token endpoint, auth headers, OData options,
//! paging through nextLinks, the one-request-per-tenant rule, faults, admin routes and the wire
//! format of dates. Expectations come from `SimHandle::rows`, never from the code under test.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use citrix_harvester::sim::{Faults, SimHandle, SimOptions, SimTenant, Simulator, TokenFault};
use common::sim::{client_credentials, start};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

fn small() -> SimOptions {
    SimOptions {
        sessions_per_day: 60,
        ..SimOptions::default()
    }
}

async fn token_at(c: &Client, host: &str, path_id: &str, t: &SimTenant) -> Response {
    c.post(format!("{host}/cctrustoauth2/{path_id}/tokens/clients"))
        .header("Accept", "application/json")
        .form(&client_credentials(t))
        .send()
        .await
        .unwrap()
}

async fn token(c: &Client, h: &SimHandle, t: &SimTenant) -> String {
    let r = token_at(c, &h.regional_url(), &t.customer_id, t).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn get(c: &Client, url: &str, tok: &str, t: &SimTenant) -> Response {
    c.get(url)
        .header("Authorization", format!("CWSAuth bearer={tok}"))
        .header("Citrix-CustomerId", &t.customer_id)
        .send()
        .await
        .unwrap()
}

async fn get_json(c: &Client, url: &str, tok: &str, t: &SimTenant) -> Value {
    let r = get(c, url, tok, t).await;
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_endpoint_good_and_bad_credentials() {
    let h = start(small()).await;
    let c = Client::new();
    let ts = h.tenants();
    let t = &ts[0];

    for (host, id) in [
        (h.regional_url(), t.customer_id.as_str()),
        (h.regional_url(), "root"),
        (h.fallback_url(), "root"),
    ] {
        let r = token_at(&c, &host, id, t).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(
            body["expires_in"],
            Value::String("3600".into()),
            "expires_in is a JSON string"
        );
        assert!(body["access_token"].as_str().is_some_and(|s| s.len() > 20));
    }

    let wrong_secret = SimTenant {
        client_secret: "nope".into(),
        ..t.clone()
    };
    let unknown_client = SimTenant {
        client_id: "00000000-0000-0000-0000-000000000000".into(),
        ..t.clone()
    };
    for (who, id) in [
        (&wrong_secret, t.customer_id.as_str()),
        (&unknown_client, "root"),
        (t, ts[1].customer_id.as_str()),
    ] {
        let r = token_at(&c, &h.regional_url(), id, who).await;
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].is_string());
    }

    let r = c
        .post(format!(
            "{}/cctrustoauth2/root/tokens/clients",
            h.regional_url()
        ))
        .form(&[
            ("client_id", &t.client_id),
            ("client_secret", &t.client_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "missing grant_type");
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = c
        .post(format!(
            "{}/cctrustoauth2/root/tokens/clients",
            h.regional_url()
        ))
        .json(&serde_json::json!({"clientId": t.client_id, "clientSecret": t.client_secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "JSON body is the legacy API, not this one");

    let s = h.stats();
    // Attributed by the path's customer id, or by client id on `root`: two good requests, the
    // wrong secret and the missing grant_type (the unknown client and the JSON body name nobody,
    // the foreign path counts for the other tenant).
    assert_eq!(s.tenants[&t.customer_id].token_requests.regional, 4);
    assert_eq!(s.tenants[&ts[1].customer_id].token_requests.regional, 1);
    assert_eq!(s.tenants[&t.customer_id].token_requests.fallback, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitor_auth_headers() {
    let h = start(small()).await;
    let c = Client::new();
    let ts = h.tenants();
    let t = &ts[0];
    let tok = token(&c, &h, t).await;
    let url = format!("{}/Machines?$top=1", h.monitor_base_url());
    for auth in [
        format!("CWSAuth bearer={tok}"),
        format!("CwsAuth Bearer={tok}"),
        format!("cwsauth BEARER={tok}"),
    ] {
        let r = c
            .get(&url)
            .header("Authorization", auth)
            .header("Citrix-CustomerId", &t.customer_id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/json; odata.metadata=minimal"
        );
        assert_eq!(r.headers()["odata-version"], "4.0");
    }
    // Plain Bearer is not accepted (unverified on the real service: clients must send CWSAuth).
    let r = c
        .get(&url)
        .bearer_auth(&tok)
        .header("Citrix-CustomerId", &t.customer_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://errors-api.cloud.com/common/")
    );
    assert!(body["detail"].is_string());
    // Missing customer header, another tenant's customer id, a made-up token.
    let r = c
        .get(&url)
        .header("Authorization", format!("CWSAuth bearer={tok}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = get(&c, &url, &tok, &ts[1]).await;
    assert_eq!(r.status(), 403);
    let r = get(&c, &url, "made-up", t).await;
    assert_eq!(r.status(), 401);
    // Entity sets are case-sensitive; unknown ones are 404 with an OData error.
    let r = get(&c, &format!("{}/machines", h.monitor_base_url()), &tok, t).await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    // The fallback host is a token host only.
    let r = get(
        &c,
        &format!("{}/monitorodata/Machines", h.fallback_url()),
        &tok,
        t,
    )
    .await;
    assert_eq!(r.status(), 404);
    // Short token lifetime: an expired token is refused.
    let h2 = start(SimOptions {
        token_lifetime_secs: 0,
        ..small()
    })
    .await;
    let t2 = &h2.tenants()[0];
    let r = token_at(&c, &h2.regional_url(), "root", t2).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["expires_in"], "0");
    let r = get(
        &c,
        &format!("{}/Machines", h2.monitor_base_url()),
        body["access_token"].as_str().unwrap(),
        t2,
    )
    .await;
    assert_eq!(r.status(), 401);
}

/// Follows nextLinks from `url`, checking each link keeps the options; returns all rows and
/// the number of pages.
async fn walk(
    c: &Client,
    url: &str,
    tok: &str,
    t: &SimTenant,
    must_keep: &[&str],
) -> (Vec<Value>, usize, Option<u64>) {
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut next = Some(url.to_string());
    let mut count = None;
    let mut seen_links = HashSet::new();
    while let Some(u) = next {
        assert!(seen_links.insert(u.clone()), "nextLink repeats: {u}");
        let page = get_json(c, &u, tok, t).await;
        pages += 1;
        let value = page["value"].as_array().unwrap();
        assert!(value.len() <= 100, "page size");
        rows.extend(value.iter().cloned());
        if let Some(n) = page.get("@odata.count") {
            let n = n.as_u64().unwrap();
            assert!(count.is_none_or(|c| c == n), "count is stable across pages");
            count = Some(n);
        }
        next = page
            .get("@odata.nextLink")
            .map(|l| l.as_str().unwrap().to_string());
        if let Some(l) = &next {
            assert!(l.starts_with("http://127.0.0.1:"), "absolute nextLink: {l}");
            for k in must_keep {
                assert!(l.contains(k), "nextLink {l} lost {k}");
            }
            assert_eq!(value.len(), 100, "only the last page is short");
        }
        assert!(pages < 100);
    }
    (rows, pages, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_reaches_every_row_exactly_once() {
    let h = start(SimOptions::default()).await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let all = h.rows(&t.customer_id, "Connections");
    assert!(all.len() >= 1050);

    // Everything, default order.
    let (rows, pages, count) = walk(
        &c,
        &format!("{}/Connections", h.monitor_base_url()),
        &tok,
        t,
        &[],
    )
    .await;
    assert_eq!(rows, all, "same rows, same (key) order");
    assert_eq!(pages, all.len().div_ceil(100));
    assert_eq!(count, None);

    // Filter + select + expand + count + orderby with ties (ModifiedDate is shared by some rows).
    let mut mods: Vec<&str> = all
        .iter()
        .map(|r| r["ModifiedDate"].as_str().unwrap())
        .collect();
    mods.sort_unstable();
    let watermark = mods[mods.len() / 10];
    let expected: BTreeSet<i64> = all
        .iter()
        .filter(|r| {
            let m =
                chrono::DateTime::parse_from_rfc3339(r["ModifiedDate"].as_str().unwrap()).unwrap();
            m >= chrono::DateTime::parse_from_rfc3339(watermark).unwrap()
        })
        .map(|r| r["Id"].as_i64().unwrap())
        .collect();
    assert!(expected.len() > 900);
    let url = format!(
        "{}/Connections?$filter=ModifiedDate ge {watermark}&$select=Id,ModifiedDate,SessionKey&$expand=Session($select=ConnectionState)&$orderby=ModifiedDate&$count=true",
        h.monitor_base_url()
    );
    let (rows, _, count) = walk(
        &c,
        &url,
        &tok,
        t,
        &[
            "$filter=",
            "$select=",
            "$expand=",
            "$orderby=",
            "$count=true",
            "$skip=",
        ],
    )
    .await;
    let got: Vec<i64> = rows.iter().map(|r| r["Id"].as_i64().unwrap()).collect();
    assert_eq!(got.len(), expected.len(), "no row twice, none lost");
    assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), expected);
    assert_eq!(count, Some(expected.len() as u64));
    let dates: Vec<_> = rows
        .iter()
        .map(|r| chrono::DateTime::parse_from_rfc3339(r["ModifiedDate"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        dates.windows(2).all(|w| w[0] <= w[1]),
        "ordered by ModifiedDate"
    );
    for r in &rows {
        assert_eq!(r.as_object().unwrap().len(), 4, "3 selected + Session: {r}");
        assert!(r["Session"]["ConnectionState"].is_i64());
    }

    // $top larger than a page: nextLinks count $top down.
    let (rows, pages, _) = walk(
        &c,
        &format!("{}/Connections?$top=250&$skip=10", h.monitor_base_url()),
        &tok,
        t,
        &["$top="],
    )
    .await;
    assert_eq!(pages, 3);
    assert_eq!(rows, all[10..260].to_vec());

    // $count with $top=0, as some clients count.
    let page = get_json(
        &c,
        &format!("{}/Connections?$count=true&$top=0", h.monitor_base_url()),
        &tok,
        t,
    )
    .await;
    assert_eq!(page["@odata.count"], all.len());
    assert_eq!(page["value"].as_array().unwrap().len(), 0);
    assert!(page.get("@odata.nextLink").is_none());
    assert_eq!(
        h.stats().tenants[&t.customer_id].max_in_flight,
        1,
        "sequential walking"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn next_link_uses_the_host_the_client_reached() {
    let h = start(small()).await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let r = c
        .get(format!("{}/Connections", h.monitor_base_url()))
        .header("Host", "monitor.example.test:8443")
        .header("Authorization", format!("CWSAuth bearer={tok}"))
        .header("Citrix-CustomerId", &t.customer_id)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(
        page["@odata.context"],
        "http://monitor.example.test:8443/monitorodata/$metadata#Connections"
    );
    assert_eq!(
        page["@odata.nextLink"],
        "http://monitor.example.test:8443/monitorodata/Connections?$skip=100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_and_nested_expand() {
    let h = start(small()).await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let base = h.monitor_base_url();
    let sessions = h.rows(&t.customer_id, "Sessions");
    let machines = h.rows(&t.customer_id, "Machines");
    let groups = h.rows(&t.customer_id, "DesktopGroups");
    let conns = h.rows(&t.customer_id, "Connections");

    // Navigation in $filter, from the official how-to.
    let open: HashSet<&str> = sessions
        .iter()
        .filter(|s| s["ConnectionState"] != 3)
        .map(|s| s["SessionKey"].as_str().unwrap())
        .collect();
    let expected = conns
        .iter()
        .filter(|c| open.contains(c["SessionKey"].as_str().unwrap()))
        .count();
    let page = get_json(
        &c,
        &format!("{base}/Connections?$filter=Session/ConnectionState ne 3&$count=true&$top=0"),
        &tok,
        t,
    )
    .await;
    assert_eq!(page["@odata.count"], expected);
    assert!(expected > 0);

    let running = sessions.iter().filter(|s| s["EndDate"].is_null()).count();
    let page = get_json(
        &c,
        &format!("{base}/Sessions?$filter=EndDate eq null&$count=true&$top=0"),
        &tok,
        t,
    )
    .await;
    assert_eq!(page["@odata.count"], running);

    // A filter built with reqwest's query encoding ('+' and '&' in a string literal, a Guid).
    let dg = &groups[0];
    let r = c
        .get(format!("{base}/Machines"))
        .query(&[
            (
                "$filter",
                format!(
                    "DesktopGroupId eq {} and Name ne 'a+b&c'",
                    dg["Id"].as_str().unwrap()
                ),
            ),
            ("$count", "true".into()),
        ])
        .header("Authorization", format!("CWSAuth bearer={tok}"))
        .header("Citrix-CustomerId", &t.customer_id)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(
        page["@odata.count"],
        machines
            .iter()
            .filter(|m| m["DesktopGroupId"] == dg["Id"])
            .count()
    );

    // Nested $expand with ';'-separated options, as in the official samples.
    let url = format!(
        "{base}/Sessions?$filter=LogOnDuration ne null&$top=5&$select=SessionKey,LogOnDuration&$expand=Machine($select=Name;$expand=DesktopGroup($select=Name)),User($select=FullName),Connections($select=Id,LogOnStartDate;$OrderBy=LogOnStartDate Desc;$top=1)"
    );
    let page = get_json(&c, &url, &tok, t).await;
    assert_eq!(
        page["@odata.context"],
        format!(
            "{base}/$metadata#Sessions(SessionKey,LogOnDuration,Machine(Name,DesktopGroup(Name)),User(FullName),Connections(Id,LogOnStartDate))"
        )
    );
    let value = page["value"].as_array().unwrap();
    assert_eq!(value.len(), 5);
    for s in value {
        let raw = sessions
            .iter()
            .find(|r| r["SessionKey"] == s["SessionKey"])
            .unwrap();
        let m = machines
            .iter()
            .find(|m| m["Id"] == raw["MachineId"])
            .unwrap();
        let g = groups
            .iter()
            .find(|g| g["Id"] == m["DesktopGroupId"])
            .unwrap();
        assert_eq!(
            s["Machine"],
            serde_json::json!({"Name": m["Name"], "DesktopGroup": {"Name": g["Name"]}})
        );
        assert_eq!(
            s["User"].as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["FullName"]
        );
        let mine: Vec<&Value> = conns
            .iter()
            .filter(|c| c["SessionKey"] == s["SessionKey"])
            .collect();
        let latest = mine
            .iter()
            .max_by_key(|c| {
                c["LogOnStartDate"]
                    .as_str()
                    .map(|d| chrono::DateTime::parse_from_rfc3339(d).unwrap())
            })
            .unwrap();
        assert_eq!(
            s["Connections"],
            serde_json::json!([{"Id": latest["Id"], "LogOnStartDate": latest["LogOnStartDate"]}])
        );
    }

    // Machine.CurrentLoadIndex expands to the row its id names; null ids expand to null.
    let page = get_json(
        &c,
        &format!("{base}/Machines?$expand=CurrentLoadIndex,Sessions($select=SessionKey)"),
        &tok,
        t,
    )
    .await;
    for m in page["value"].as_array().unwrap() {
        match m["CurrentLoadIndexId"].as_i64() {
            Some(id) => assert_eq!(m["CurrentLoadIndex"]["Id"], id),
            None => assert!(m["CurrentLoadIndex"].is_null()),
        }
        let n = sessions
            .iter()
            .filter(|s| s["MachineId"] == m["Id"])
            .count();
        assert_eq!(m["Sessions"].as_array().unwrap().len(), n);
    }

    // Invalid queries are 400 with an OData error naming the problem.
    for (q, needle) in [
        ("Machines?$filter=Nmae eq 'x'", "Nmae"),
        ("Machines?$filter=LifecycleState eq '0'", "incompatible"),
        ("Machines?$orderby=Name sideways", "sideways"),
        ("Machines?$expand=Bogus", "Bogus"),
        ("Machines?$top=x", "$top"),
    ] {
        let r = get(&c, &format!("{base}/{q}"), &tok, t).await;
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{q}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dates_guids_and_nulls_on_the_wire() {
    let h = start(small()).await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let page = get_json(
        &c,
        &format!("{}/Connections?$top=100", h.monitor_base_url()),
        &tok,
        t,
    )
    .await;
    let mut digit_counts = BTreeSet::new();
    for r in page["value"].as_array().unwrap() {
        for (k, v) in r.as_object().unwrap() {
            if k.ends_with("Date") && !v.is_null() {
                let s = v.as_str().unwrap();
                assert!(s.ends_with('Z') && s.len() >= 20, "{k}: {s}");
                let frac = s[19..s.len() - 1].trim_start_matches('.');
                assert!(!frac.ends_with('0'), "trailing zero in {s}");
                assert!(frac.len() <= 7);
                digit_counts.insert(frac.len());
            }
        }
        let key = r["SessionKey"].as_str().unwrap();
        assert_eq!(key, key.to_lowercase());
        assert_eq!(key.len(), 36);
        assert!(r["Id"].is_i64());
        assert!(
            r.as_object().unwrap().contains_key("DisconnectDate"),
            "nulls are explicit"
        );
    }
    assert!(
        digit_counts.len() >= 4,
        "varied fractional digits: {digit_counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_request_of_a_tenant_gets_429_others_unaffected() {
    let h = start(small()).await;
    let c = Client::new();
    let ts = h.tenants();
    let (a, b) = (&ts[0], &ts[1]);
    let (ta, tb) = (token(&c, &h, a).await, token(&c, &h, b).await);
    h.set_faults(
        &a.customer_id,
        Faults {
            slow_ms: 1500,
            ..Default::default()
        },
    );
    let url = format!("{}/Machines", h.monitor_base_url());
    let first = {
        let (c, url, ta, a) = (c.clone(), url.clone(), ta.clone(), a.clone());
        tokio::spawn(async move { get(&c, &url, &ta, &a).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = get(&c, &url, &ta, a).await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().get("retry-after").is_none());
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["statusCode"], 429);
    assert!(body["message"].is_string());
    assert_eq!(
        get(&c, &url, &tb, b).await.status(),
        200,
        "another tenant is not limited"
    );
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(
        get(&c, &url, &ta, a).await.status(),
        200,
        "free again afterwards"
    );

    let s = h.stats();
    assert_eq!(s.tenants[&a.customer_id].max_in_flight, 2);
    assert_eq!(s.tenants[&a.customer_id].responses_429, 1);
    assert_eq!(s.tenants[&a.customer_id].requests, 3);
    assert_eq!(s.tenants[&b.customer_id].max_in_flight, 1);
    assert_eq!(s.tenants[&b.customer_id].responses_429, 0);
    let machines = h.rows(&a.customer_id, "Machines").len() as u64;
    assert_eq!(
        s.tenants[&a.customer_id].rows_served["Machines"],
        2 * machines
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitor_faults() {
    let h = start(small()).await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let url = format!("{}/Hypervisors", h.monitor_base_url());

    h.set_faults(
        &t.customer_id,
        Faults {
            throttle_429: 2,
            retry_after_secs: Some(7),
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let r = get(&c, &url, &tok, t).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
    }
    assert_eq!(get(&c, &url, &tok, t).await.status(), 200);
    h.set_faults(
        &t.customer_id,
        Faults {
            throttle_429: 1,
            ..Default::default()
        },
    );
    let r = get(&c, &url, &tok, t).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());

    h.set_faults(
        &t.customer_id,
        Faults {
            error_500: 1,
            ..Default::default()
        },
    );
    let r = get(&c, &url, &tok, t).await;
    assert_eq!(r.status(), 500);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    assert_eq!(get(&c, &url, &tok, t).await.status(), 200);

    h.set_faults(
        &t.customer_id,
        Faults {
            malformed_json: 1,
            ..Default::default()
        },
    );
    let r = get(&c, &url, &tok, t).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "truncated: {text}"
    );
    assert!(
        serde_json::from_str::<Value>(&get(&c, &url, &tok, t).await.text().await.unwrap()).is_ok()
    );

    h.set_faults(
        &t.customer_id,
        Faults {
            slow_ms: 400,
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    assert_eq!(get(&c, &url, &tok, t).await.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(400));

    h.set_faults(
        &t.customer_id,
        Faults {
            expire_tokens: true,
            ..Default::default()
        },
    );
    assert_eq!(get(&c, &url, &tok, t).await.status(), 401);
    assert_eq!(
        get(&c, &url, &tok, t).await.status(),
        401,
        "an expired token stays expired"
    );
    let fresh = token(&c, &h, t).await;
    assert_eq!(get(&c, &url, &fresh, t).await.status(), 200);

    let s = &h.stats().tenants[&t.customer_id];
    assert_eq!(s.responses_429, 3);
    assert_eq!(s.responses_500, 1);
    assert_eq!(s.responses_401, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_faults_hit_one_listener_each() {
    let h = start(small()).await;
    let c = Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let ts = h.tenants();
    let t = &ts[0];

    h.set_faults(
        &t.customer_id,
        Faults {
            regional_token: Some(TokenFault::BadGateway),
            ..Default::default()
        },
    );
    assert_eq!(
        token_at(&c, &h.regional_url(), &t.customer_id, t)
            .await
            .status(),
        502
    );
    assert_eq!(
        token_at(&c, &h.fallback_url(), &t.customer_id, t)
            .await
            .status(),
        200
    );
    assert_eq!(
        token_at(&c, &h.regional_url(), &ts[1].customer_id, &ts[1])
            .await
            .status(),
        200,
        "other tenant"
    );

    h.set_faults(
        &t.customer_id,
        Faults {
            fallback_token: Some(TokenFault::GatewayTimeout),
            ..Default::default()
        },
    );
    assert_eq!(
        token_at(&c, &h.fallback_url(), "root", t).await.status(),
        504
    );
    assert_eq!(
        token_at(&c, &h.regional_url(), "root", t).await.status(),
        200
    );

    h.set_faults(
        &t.customer_id,
        Faults {
            regional_token: Some(TokenFault::Timeout),
            ..Default::default()
        },
    );
    let err = c
        .post(format!(
            "{}/cctrustoauth2/root/tokens/clients",
            h.regional_url()
        ))
        .form(&client_credentials(t))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());

    // Admin routes over HTTP: clear everything, then the regional host answers again.
    let r = c
        .delete(format!("{}/_sim/faults", h.regional_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        token_at(&c, &h.regional_url(), "root", t).await.status(),
        200
    );
    let r = c
        .post(format!("{}/_sim/faults", h.regional_url()))
        .json(&serde_json::json!({"customer_id": t.customer_id, "regional_token": "504"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        token_at(&c, &h.regional_url(), "root", t).await.status(),
        504
    );
    let r = c
        .post(format!("{}/_sim/faults", h.regional_url()))
        .json(&serde_json::json!({"customer_id": t.customer_id, "throtle_429": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "typos fail loudly");
    // Incidents: one that does not fit the tenant is refused and names what is wrong; one that
    // does changes the data (a group's machines deregister) and the harvest-stop fails tokens.
    let r = c
        .post(format!("{}/_sim/faults", h.regional_url()))
        .json(&serde_json::json!({"customer_id": t.customer_id,
            "incidents": [{"kind": "deregistration", "delivery_group": "No such group"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("No such group"));
    let registered = |h: &citrix_harvester::sim::SimHandle| {
        h.rows(&t.customer_id, "Machines")
            .iter()
            .filter(|m| m["LifecycleState"] == 0 && m["CurrentRegistrationState"] == 1)
            .count()
    };
    let before = registered(&h);
    let r = c
        .post(format!("{}/_sim/faults", h.regional_url()))
        .json(&serde_json::json!({"customer_id": t.customer_id,
            "incidents": [{"kind": "deregistration"}, {"kind": "harvest_stop"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(registered(&h) < before, "the group's machines deregistered");
    assert_eq!(
        token_at(&c, &h.regional_url(), "root", t).await.status(),
        502
    );
    let r = c
        .post(format!("{}/_sim/faults", h.regional_url()))
        .json(&serde_json::json!({"customer_id": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let stats: Value = c
        .get(format!("{}/_sim/stats", h.regional_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats, serde_json::to_value(h.stats()).unwrap());
    assert_eq!(
        stats["tenants"][&t.customer_id]["token_requests"]["fallback"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_aborts_hanging_requests() {
    let sim = Simulator::new(small());
    let t = sim.tenants()[0].clone();
    let regional = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fallback = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", regional.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(sim.serve(regional, fallback, stop.clone()));
    let c = Client::new();
    let r = c
        .post(format!("{url}/_sim/faults"))
        .json(&serde_json::json!({"customer_id": t.customer_id, "regional_token": "timeout"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let hanging = {
        let (c, url, t) = (c.clone(), url.clone(), t.clone());
        tokio::spawn(async move { token_at(&c, &url, "root", &t).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(hanging.await.unwrap(), 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_and_service_document() {
    let h = start(small()).await;
    let c = Client::new();
    let t = &h.tenants()[0];
    let tok = token(&c, &h, t).await;
    let r = get(&c, &format!("{}/$metadata", h.monitor_base_url()), &tok, t).await;
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(xml.contains(r#"<EntitySet Name="Connections""#));
    assert!(xml.contains(r#"<Property Name="CurrentLoadIndexId" Type="Edm.Int64"/>"#));
    let doc = get_json(&c, &h.monitor_base_url(), &tok, t).await;
    assert!(
        doc["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "LoadIndexes")
    );
}
