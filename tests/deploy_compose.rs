//! deploy/compose without Docker: the compose file is read with a small parser for the YAML
//! subset it uses (block maps and lists, flow lists, comments, quotes), and every file it
//! names must exist in the repository: bind mounts, the build context and Dockerfile, the
//! `.env` example behind `env_file`, Grafana's provisioning and home dashboard, the InfluxDB
//! init script. The harvester configs it mounts must be valid, and the demo config's tenants
//! must be exactly what the simulator service serves, proven by a harvest against it.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use citrix_harvester::config::{Config, SecretSources};
use citrix_harvester::scheduler::run;
use citrix_harvester::sim::{SimOptions, Simulator};
use citrix_harvester::sink::{SinkConfig, SinkKind};

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    Scalar(String),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }
    fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(kv) => kv,
            _ => &[],
        }
    }
    fn items(&self) -> Vec<&Node> {
        match self {
            Node::List(v) => v.iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// Removes a trailing comment (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut quote, mut prev) = (None, ' ');
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev.is_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
        prev = c;
    }
    line.trim_end()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

fn scalar_or_flow(v: &str) -> Node {
    let v = v.trim();
    if let Some(inner) = v.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return Node::List(
            split_flow(inner)
                .into_iter()
                .map(|s| Node::Scalar(unquote(&s)))
                .collect(),
        );
    }
    Node::Scalar(unquote(v))
}

/// Splits a flow list's inside on commas outside quotes.
fn split_flow(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote) = (Vec::new(), String::new(), None);
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c)
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c)
            }
            (None, ',') => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `key: value` with the key unquoted; None when the line is not a mapping entry.
fn split_key(s: &str) -> Option<(String, &str)> {
    let i = s
        .find(": ")
        .or_else(|| s.ends_with(':').then(|| s.len() - 1))?;
    let key = &s[..i];
    if key.starts_with('"') || key.starts_with('\'') || !key.contains(' ') {
        Some((unquote(key), s[i + 1..].trim()))
    } else {
        None
    }
}

struct Parser {
    lines: Vec<(usize, String)>, // (indent, content) without blanks and comments
    pos: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        let lines = text
            .lines()
            .map(strip_comment)
            .filter(|l| !l.trim().is_empty())
            .map(|l| (l.len() - l.trim_start().len(), l.trim().to_string()))
            .collect();
        Parser { lines, pos: 0 }
    }

    fn block(&mut self, indent: usize) -> Node {
        let Some((ind, first)) = self.lines.get(self.pos).cloned() else {
            return Node::Scalar(String::new());
        };
        assert!(ind >= indent, "line {}: bad indentation", self.pos + 1);
        if first.starts_with("- ") || first == "-" {
            let mut items = Vec::new();
            while let Some((i, l)) = self.lines.get(self.pos).cloned() {
                if i != ind || !(l.starts_with("- ") || l == "-") {
                    break;
                }
                let rest = l[1..].trim().to_string();
                if split_key(&rest).is_some() {
                    // A map inside a list item: re-read the rest as a map at its own indent.
                    self.lines[self.pos] = (ind + 2, rest);
                    items.push(self.block(ind + 2));
                } else {
                    self.pos += 1;
                    items.push(scalar_or_flow(&rest));
                }
            }
            return Node::List(items);
        }
        let mut kv = Vec::new();
        while let Some((i, l)) = self.lines.get(self.pos).cloned() {
            if i < ind {
                break;
            }
            assert_eq!(i, ind, "line {}: unexpected indentation: {l}", self.pos + 1);
            let (key, value) = split_key(&l)
                .unwrap_or_else(|| panic!("line {}: not `key: value`: {l}", self.pos + 1));
            self.pos += 1;
            let node = if value.is_empty() {
                match self.lines.get(self.pos) {
                    Some((next, _)) if *next > ind => self.block(*next),
                    // A list may sit at the key's own indentation.
                    Some((next, l)) if *next == ind && l.starts_with("- ") => self.block(ind),
                    _ => Node::Scalar(String::new()),
                }
            } else {
                scalar_or_flow(value)
            };
            kv.push((key, node));
        }
        Node::Map(kv)
    }
}

fn parse_yaml(text: &str) -> Node {
    let mut p = Parser::new(text);
    let n = p.block(0);
    assert_eq!(p.pos, p.lines.len(), "parser stopped early");
    n
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose_dir() -> PathBuf {
    repo().join("deploy/compose")
}

fn compose() -> Node {
    let text = std::fs::read_to_string(compose_dir().join("docker-compose.yml")).unwrap();
    parse_yaml(&text)
}

/// `${VAR:-default}` → default; `${VAR}` / `${VAR:?msg}` → None (no file to check).
fn default_of(s: &str) -> String {
    let Some(rest) = s.strip_prefix("${") else {
        return s.to_string();
    };
    match rest.find('}') {
        Some(end) => match rest[..end].split_once(":-") {
            Some((_, d)) => format!("{d}{}", &rest[end + 1..]),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

/// Every `${NAME...}` in the text.
fn interpolated_vars(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|r| {
            let name: String = r
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn dotenv_example() -> Vec<(String, String)> {
    std::fs::read_to_string(compose_dir().join(".env.example"))
        .expect(".env.example exists beside docker-compose.yml")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not K=V: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// (host path relative to the compose dir, container path) of every bind mount of a service.
fn bind_mounts(service: &Node) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in service.get("volumes").map(Node::items).unwrap_or_default() {
        let Some(v) = v.str() else { continue };
        // `${X:-./a}:/b:ro`: the braces hold a colon of their own.
        let (host, rest) = match v.strip_prefix("${").and_then(|r| r.find('}')) {
            Some(end) => (default_of(&v[..end + 3]), &v[end + 3..]),
            None => match v.split_once(':') {
                Some((h, r)) => (h.to_string(), r),
                None => continue,
            },
        };
        let container = rest.trim_start_matches(':').split(':').next().unwrap_or("");
        if host.starts_with('.') || host.starts_with('/') {
            out.push((host, container.to_string()));
        }
    }
    out
}

#[test]
fn the_parser_reads_the_yaml_subset() {
    let n = parse_yaml(
        "a: 1 # c\nb:\n  - x\n  - \"y # not a comment\"\nc:\n  d: [\"e\", f]\n  g:\n    h: i\nj:\n- k: l\n  m: n\n",
    );
    assert_eq!(n.get("a").unwrap().str(), Some("1"));
    assert_eq!(n.get("b").unwrap().items().len(), 2);
    assert_eq!(
        n.get("b").unwrap().items()[1].str(),
        Some("y # not a comment")
    );
    assert_eq!(n.get("c").unwrap().get("d").unwrap().items().len(), 2);
    assert_eq!(
        n.get("c")
            .unwrap()
            .get("g")
            .unwrap()
            .get("h")
            .unwrap()
            .str(),
        Some("i")
    );
    let j = n.get("j").unwrap().items();
    assert_eq!(j[0].get("m").unwrap().str(), Some("n"));
}

#[test]
fn every_file_the_compose_file_names_exists() {
    let dir = compose_dir();
    let c = compose();
    let services = c.get("services").expect("services");
    let names: Vec<&str> = services.entries().iter().map(|(k, _)| k.as_str()).collect();
    for want in ["influxdb", "grafana", "harvester", "simulator"] {
        assert!(names.contains(&want), "service {want} missing: {names:?}");
    }
    let mut checked = 0;
    for (name, svc) in services.entries() {
        for (host, _) in bind_mounts(svc) {
            let p = dir.join(&host);
            assert!(p.exists(), "{name}: bind mount {host} does not exist");
            checked += 1;
        }
        if let Some(build) = svc.get("build") {
            let ctx = dir.join(build.get("context").and_then(Node::str).unwrap_or("."));
            assert!(ctx.join("Cargo.toml").is_file(), "{name}: build context");
            let df = build.get("dockerfile").and_then(Node::str).unwrap();
            assert!(ctx.join(df).is_file(), "{name}: dockerfile {df}");
            checked += 1;
        }
        if let Some(env_file) = svc.get("env_file").and_then(Node::str) {
            // The real .env is git-ignored; its example must exist and the file be ignored.
            assert!(
                dir.join(format!("{env_file}.example")).is_file(),
                "{name}: {env_file}.example"
            );
            let ignored = std::fs::read_to_string(repo().join(".gitignore")).unwrap();
            assert!(
                ignored.lines().any(|l| l.trim() == env_file),
                ".gitignore does not list {env_file}"
            );
            checked += 1;
        }
    }
    // Files named by their path inside a container: map back through that service's mounts.
    let grafana = services.get("grafana").unwrap();
    let mounts = bind_mounts(grafana);
    let to_host = |container_path: &str| -> PathBuf {
        let (host, cont) = mounts
            .iter()
            .filter(|(_, c)| container_path.starts_with(c.as_str()))
            .max_by_key(|(_, c)| c.len())
            .unwrap_or_else(|| panic!("{container_path} is not in a mounted directory"));
        dir.join(host)
            .join(container_path[cont.len()..].trim_start_matches('/'))
    };
    let home = grafana
        .get("environment")
        .and_then(|e| e.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"))
        .and_then(Node::str)
        .unwrap();
    assert!(to_host(home).is_file(), "home dashboard {home}");
    let prov = to_host("/etc/grafana/provisioning");
    for f in [
        "datasources/influxdb.yml",
        "dashboards/citrix.yml",
        "alerting/citrix-rules.json",
    ] {
        assert!(prov.join(f).is_file(), "provisioning {f}");
    }
    // The dashboard provider reads a directory that is mounted and holds the dashboards.
    let provider =
        parse_yaml(&std::fs::read_to_string(prov.join("dashboards/citrix.yml")).unwrap());
    for p in provider.get("providers").unwrap().items() {
        let path = p
            .get("options")
            .and_then(|o| o.get("path"))
            .and_then(Node::str)
            .unwrap();
        let host = to_host(path);
        let n = std::fs::read_dir(&host)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count();
        assert!(n >= 5, "{}: {n} dashboards", host.display());
    }
    // The datasource queries the database the InfluxDB init script maps to the bucket.
    let ds = parse_yaml(&std::fs::read_to_string(prov.join("datasources/influxdb.yml")).unwrap());
    let ds0 = ds.get("datasources").unwrap().items()[0].clone();
    let db = ds0
        .get("jsonData")
        .and_then(|j| j.get("dbName"))
        .and_then(Node::str)
        .unwrap();
    let influx = services.get("influxdb").unwrap();
    let init_dir = bind_mounts(influx)
        .into_iter()
        .find(|(_, c)| c == "/docker-entrypoint-initdb.d")
        .map(|(h, _)| dir.join(h))
        .expect("influxdb init scripts mounted");
    let script = std::fs::read_to_string(init_dir.join("dbrp.sh")).unwrap();
    assert!(script.contains("influx v1 dbrp create"));
    let env = influx.get("environment").unwrap();
    assert_eq!(
        env.get("CITRIX_DBRP_DATABASE").and_then(Node::str),
        Some(db),
        "DBRP database vs. Grafana's dbName"
    );
    assert_eq!(
        env.get("DOCKER_INFLUXDB_INIT_MODE").and_then(Node::str),
        Some("setup")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(init_dir.join("dbrp.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "dbrp.sh must be executable");
    }
    assert!(checked >= 7, "only {checked} references checked");
}

#[test]
fn every_variable_the_compose_file_needs_is_in_the_env_example() {
    let text = std::fs::read_to_string(compose_dir().join("docker-compose.yml")).unwrap();
    let example: Vec<String> = dotenv_example().into_iter().map(|(k, _)| k).collect();
    for v in interpolated_vars(&text) {
        assert!(example.contains(&v), ".env.example lacks {v}");
    }
    // HARVESTER_CONFIG values (the example's and the demo's) are files beside the compose file.
    for (k, v) in dotenv_example() {
        if k == "HARVESTER_CONFIG" {
            assert!(compose_dir().join(&v).is_file(), "{v}");
        }
    }
    // Secrets the harvester configs read from the environment are in the example.
    for f in ["harvester.toml", "harvester-demo.toml"] {
        let t = std::fs::read_to_string(compose_dir().join(f)).unwrap();
        for l in t.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if k.trim().ends_with("_env") {
                let var = v.trim().trim_matches('"');
                assert!(
                    example.iter().any(|e| e == var),
                    "{f}: {var} not in .env.example"
                );
            }
        }
    }
}

fn secrets_from_example() -> SecretSources {
    let example = dotenv_example();
    SecretSources {
        env: Box::new(move |k| example.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())),
        credentials_dir: None,
    }
}

fn load(file: &str) -> Config {
    let text = std::fs::read_to_string(compose_dir().join(file)).unwrap();
    Config::from_toml_str(&text, &secrets_from_example()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The simulator service's `--tenants` and `--seed`.
fn simulator_args() -> (usize, u64) {
    let c = compose();
    let cmd: Vec<String> = c
        .get("services")
        .and_then(|s| s.get("simulator"))
        .and_then(|s| s.get("command"))
        .map(Node::items)
        .unwrap()
        .into_iter()
        .filter_map(|n| n.str().map(str::to_string))
        .collect();
    let arg = |name: &str| -> String {
        let i = cmd
            .iter()
            .position(|a| a == name)
            .unwrap_or_else(|| panic!("{name}"));
        cmd[i + 1].clone()
    };
    assert_eq!(cmd[0], "simulate");
    (
        arg("--tenants").parse().unwrap(),
        arg("--seed").parse().unwrap(),
    )
}

#[test]
fn the_harvester_configs_are_valid() {
    let prod = load("harvester.toml");
    assert!(!prod.tenants.is_empty());
    let demo = load("harvester-demo.toml");
    let (tenants, seed) = simulator_args();
    let sim = Simulator::new(SimOptions {
        tenants,
        seed,
        ..SimOptions::default()
    });
    let want: Vec<(String, String, String, String)> = sim
        .tenants()
        .into_iter()
        .map(|t| (t.name, t.customer_id, t.client_id, t.client_secret))
        .collect();
    let got: Vec<(String, String, String, String)> = demo
        .tenants
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.customer_id.clone(),
                t.client_id.clone(),
                t.client_secret.expose().to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "harvester-demo.toml vs. simulate --seed {seed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_config_harvests_the_simulator_service() {
    let (tenants, seed) = simulator_args();
    let sim = common::sim::start(SimOptions {
        tenants,
        seed,
        history: chrono::Duration::hours(6),
        ..SimOptions::default()
    })
    .await;
    // The compose service name becomes the loopback simulator; everything else as shipped.
    let text = std::fs::read_to_string(compose_dir().join("harvester-demo.toml"))
        .unwrap()
        .replace("http://simulator:8400", &sim.regional_url())
        .replace("http://simulator:8401", &sim.fallback_url());
    let mut cfg = Config::from_toml_str(&text, &secrets_from_example()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = state.path().join("demo.lp");
    cfg.harvester.state_dir = state.path().join("state");
    let mut output = SinkConfig::new(SinkKind::File { path: out.clone() });
    output.state_dir = Some(cfg.harvester.state_dir.clone());
    cfg.output = output;
    let summaries = run(&cfg, true, CancellationToken::new()).await.unwrap();
    sim.shutdown();
    assert_eq!(summaries.len(), tenants);
    for s in &summaries {
        assert!(s.ok(), "{}: {s:?}", s.tenant);
    }
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(lines.lines().any(|l| l.starts_with("citrix_logon,")));
}

/// Compose v2 and Debian's docker-compose 1.29 both read the file: only top-level keys 1.29
/// knows (`name:` is v2 only; the project name comes from .env instead).
#[test]
fn the_compose_file_suits_docker_compose_1_29_too() {
    let c = compose();
    for (key, _) in c.entries() {
        assert!(
            ["services", "volumes", "networks", "secrets", "configs"].contains(&key.as_str()),
            "top-level `{key}:` is not understood by docker-compose 1.29"
        );
    }
    let example = dotenv_example();
    let get = |k: &str| {
        example
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("COMPOSE_PROJECT_NAME"), Some("citrix-harvester"));
    // docker-compose 1.29 builds with BuildKit (RUN --mount, Dockerfile.dockerignore) only so.
    assert_eq!(get("COMPOSE_DOCKER_CLI_BUILD"), Some("1"));
    assert_eq!(get("DOCKER_BUILDKIT"), Some("1"));
}

/// Cargo parses every target Cargo.toml declares before building one, so the image's build
/// context (Dockerfile.dockerignore) and its COPY lines must carry each declared file.
#[test]
fn the_image_build_context_holds_every_target_cargo_declares() {
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let ignore =
        std::fs::read_to_string(repo().join("deploy/docker/Dockerfile.dockerignore")).unwrap();
    let dockerfile = std::fs::read_to_string(repo().join("deploy/docker/Dockerfile")).unwrap();
    let admitted: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    let mut files = Vec::new();
    let mut section = "";
    for l in cargo.lines().map(str::trim) {
        if l.starts_with('[') {
            section = l;
        } else if let Some(v) = l.strip_prefix("name = ") {
            let name = v.trim_matches('"');
            match section {
                "[[bench]]" => files.push(format!("benches/{name}.rs")),
                "[[test]]" => files.push(format!("tests/{name}.rs")),
                "[[example]]" => files.push(format!("examples/{name}.rs")),
                _ => {}
            }
        } else if let Some(v) = l.strip_prefix("path = ") {
            files.push(v.trim_matches('"').to_string());
        }
    }
    assert!(files.iter().any(|f| f.starts_with("benches/")), "{files:?}");
    for f in &files {
        let dir_admitted = |a: &&str| a.ends_with('/') && f.starts_with(*a);
        assert!(
            admitted.iter().any(|a| a == f || dir_admitted(a)),
            "Dockerfile.dockerignore does not admit {f}, which Cargo.toml declares"
        );
        let top = f.split('/').next().unwrap();
        assert!(
            dockerfile
                .lines()
                .any(|l| l.starts_with("COPY ") && l.contains(top)),
            "the Dockerfile copies nothing of {top}/ ({f})"
        );
    }
}
