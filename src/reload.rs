//! Configuration reload, the Prometheus way: on SIGHUP, or when a file of the configuration
//! changes (`--watch-config`), the whole new configuration is read and validated first; an
//! invalid one changes nothing (one ERROR naming file and key, and
//! `citrix_harvester_config_last_reload_successful 0`). A valid one is applied tenant by tenant:
//! added tenants start, removed ones stop after their current page, changed ones restart, and
//! unchanged ones are not touched. Settings outside the tenants (`[harvester]`, `[citrix]`,
//! `[output]`) are not applied live: such a reload is refused with a message asking for a
//! restart, because the output, the spool and the global limits are shared by every tenant and
//! a restart is the one way to swap them that loses nothing. This file owns the request channel,
//! the file watcher and the plan (what changed); the scheduler carries the plan out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TenantConfig};

/// Why a reload was asked for (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Signal,
    FileChanged,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cause::Signal => "SIGHUP",
            Cause::FileChanged => "a configuration file changed",
        })
    }
}

/// Reads the configuration again: the same path, overrides and shard as at start.
pub type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// What the daemon needs to reload: the requests and how to read the configuration.
pub struct Reload {
    pub requests: mpsc::Receiver<Cause>,
    pub load: Loader,
}

/// A channel for reload requests; a burst of requests while one is pending collapses into one.
pub fn channel() -> (mpsc::Sender<Cause>, mpsc::Receiver<Cause>) {
    mpsc::channel(1)
}

/// What a valid new configuration changes, by `customer_id`.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub added: Vec<TenantConfig>,
    pub removed: Vec<TenantConfig>,
    /// (old, new) of tenants whose settings changed (a new name included).
    pub changed: Vec<(TenantConfig, TenantConfig)>,
    pub unchanged: usize,
}

/// The plan from `old` to `new`, or why it cannot be applied without a restart.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, String> {
    let mut differ = Vec::new();
    if old.harvester != new.harvester {
        differ.push("[harvester]");
    }
    if old.citrix != new.citrix {
        differ.push("[citrix]");
    }
    if old.output != new.output {
        differ.push("[output]");
    }
    if !differ.is_empty() {
        return Err(format!(
            "{} changed; these settings are shared by every tenant and take effect only after a \
             restart (systemctl restart citrix-harvester); nothing was changed",
            differ.join(", ")
        ));
    }
    let by_id = |c: &Config| -> BTreeMap<String, TenantConfig> {
        c.tenants
            .iter()
            .map(|t| (t.customer_id.to_ascii_lowercase(), t.clone()))
            .collect()
    };
    let (before, after) = (by_id(old), by_id(new));
    let mut p = Plan::default();
    for (id, t) in &after {
        match before.get(id) {
            None => p.added.push(t.clone()),
            Some(o) if o != t => p.changed.push((o.clone(), t.clone())),
            Some(_) => p.unchanged += 1,
        }
    }
    p.removed = before
        .iter()
        .filter(|(id, _)| !after.contains_key(*id))
        .map(|(_, t)| t.clone())
        .collect();
    Ok(p)
}

/// What identifies the configuration's files now: the main file and every `*.toml` of the
/// tenants directory, with their contents (a hash), so that a save with the same size and
/// second still counts.
fn fingerprint(main: &Path, dir: Option<&Path>) -> BTreeSet<(PathBuf, u64)> {
    use std::hash::{BuildHasher, BuildHasherDefault};
    type H = BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
    let hash = |p: &Path| {
        std::fs::read(p)
            .map(|b| H::default().hash_one(&b))
            .unwrap_or(0)
    };
    let mut out = BTreeSet::new();
    out.insert((main.to_path_buf(), hash(main)));
    if let Some(Ok(rd)) = dir.map(std::fs::read_dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let h = hash(&p);
                out.insert((p, h));
            }
        }
    }
    out
}

/// Asks for a reload whenever the main file or a file of `dir` changes, is added or removed
/// (polled every `every`), until `cancel` fires.
pub async fn watch(
    main: PathBuf,
    dir: Option<PathBuf>,
    every: Duration,
    tx: mpsc::Sender<Cause>,
    cancel: CancellationToken,
) {
    let mut last = fingerprint(&main, dir.as_deref());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let (m, d) = (main.clone(), dir.clone());
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&m, d.as_deref())).await
        else {
            continue;
        };
        if now != last {
            last = now;
            tracing::debug!(file = %main.display(), "A configuration file changed.");
            // Full: a reload is pending already and will read the newest files.
            let _ = tx.try_send(Cause::FileChanged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSources;

    fn cfg(tenants: &[(&str, &str, &str)], extra: &str) -> Config {
        let mut text = format!(
            "[harvester]\nallow_inline_secrets = true\n{extra}\n[output]\nkind = \"stdout\"\n"
        );
        for (name, id, entities) in tenants {
            text.push_str(&format!(
                "[[tenant]]\nname = \"{name}\"\ncustomer_id = \"{id}\"\nclient_id = \"c\"\n\
                 client_secret = \"s\"\nentities = [{entities}]\n"
            ));
        }
        let none = SecretSources {
            env: Box::new(|_| None),
            credentials_dir: None,
        };
        Config::from_toml_str(&text, &none).unwrap()
    }

    #[test]
    fn tenants_added_removed_changed_and_unchanged() {
        let m = "\"machines\"";
        let old = cfg(&[("A", "a", m), ("B", "b", m), ("C", "c", m)], "");
        let new = cfg(
            &[("A", "a", m), ("B", "b", "\"connections\""), ("D", "d", m)],
            "",
        );
        let p = plan(&old, &new).unwrap();
        let names = |v: &[TenantConfig]| v.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p.added), ["D"]);
        assert_eq!(names(&p.removed), ["C"]);
        assert_eq!(p.changed.len(), 1);
        assert_eq!(p.changed[0].1.name, "B");
        assert_eq!(p.unchanged, 1);
        // A new name for the same customer is a change, not a removal plus an addition.
        let renamed = cfg(&[("A2", "a", m), ("B", "b", m), ("C", "c", m)], "");
        let p = plan(&old, &renamed).unwrap();
        assert_eq!((p.added.len(), p.removed.len(), p.changed.len()), (0, 0, 1));
    }

    #[test]
    fn shared_settings_need_a_restart() {
        let m = "\"machines\"";
        let old = cfg(&[("A", "a", m)], "");
        let new = cfg(&[("A", "a", m)], "interval = \"10m\"");
        let e = plan(&old, &new).unwrap_err();
        assert!(e.contains("[harvester]") && e.contains("restart"), "{e}");
        assert_eq!(plan(&old, &old).unwrap().unchanged, 1);
    }

    #[test]
    fn the_fingerprint_sees_edits_additions_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main.toml");
        let d = dir.path().join("tenants.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(&main, "a").unwrap();
        let f0 = fingerprint(&main, Some(&d));
        std::fs::write(d.join("x.toml"), "x").unwrap();
        let f1 = fingerprint(&main, Some(&d));
        assert_ne!(f0, f1);
        std::fs::write(d.join("x.toml"), "y").unwrap();
        let f2 = fingerprint(&main, Some(&d));
        assert_ne!(f1, f2);
        std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        assert_eq!(f2, fingerprint(&main, Some(&d)));
        std::fs::remove_file(d.join("x.toml")).unwrap();
        assert_eq!(f0, fingerprint(&main, Some(&d)));
    }
}
