//! Which collectors exist, under which config name, and on which schedule key. The scheduler
//! asks this file for a tenant's jobs; the config validates entity names against it. Adding a
//! data kind means adding a collector file and one entry here.

use super::Job;
use super::connection_failures::ConnectionFailures;
use super::connections::Connections;
use super::machines::Machines;
use super::sessions::Sessions;

/// How often a job runs is looked up under this key in `harvester.schedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub job: String,
    pub schedule_key: &'static str,
}

/// Entity kinds as written in `tenant[].entities`, in the order a cycle runs them
/// (snapshots first: they are the data that cannot be re-read later).
pub const KINDS: &[&str] = &["machines", "connections", "sessions", "connection_failures"];

/// Schedule keys besides the kinds themselves.
pub const SCHEDULE_KEYS: &[&str] = &["summaries_minute", "summaries_hourly", "summaries_daily"];

/// The jobs of one entity kind.
pub fn jobs(kind: &str) -> Vec<(Box<dyn Job>, &'static str)> {
    match kind {
        "machines" => vec![(Box::new(Machines), "machines")],
        "connections" => vec![(Box::new(Connections), "connections")],
        "sessions" => vec![(Box::new(Sessions), "sessions")],
        "connection_failures" => vec![(Box::new(ConnectionFailures), "connection_failures")],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_jobs_with_unique_names() {
        let mut names = std::collections::HashSet::new();
        for k in KINDS {
            let jobs = jobs(k);
            assert!(!jobs.is_empty(), "{k}");
            for (j, _) in jobs {
                assert!(names.insert(j.name()), "duplicate job name {}", j.name());
            }
        }
    }
}
