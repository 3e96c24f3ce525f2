//! Which collectors exist, under which config name, and on which schedule key. The scheduler
//! asks this file for a tenant's jobs; the config validates entity names against it. Adding a
//! data kind means adding a collector file and one entry here.

use super::Job;
use super::application_instances::ApplicationInstances;
use super::application_usage::ApplicationUsage;
use super::connection_failures::ConnectionFailures;
use super::connections::Connections;
use super::failure_log_summaries::FailureLogSummaries;
use super::hotfixes::Hotfixes;
use super::load_index_summaries::LoadIndexSummaries;
use super::load_indexes::LoadIndexes;
use super::logon_summaries::LogOnSummaries;
use super::machine_failures::MachineFailures;
use super::machine_metric::MachineMetric;
use super::machine_summaries::MachineSummaries;
use super::machines::Machines;
use super::resource_utilization::ResourceUtilization;
use super::resource_utilization_summary::ResourceUtilizationSummaries;
use super::session_activity_summaries::SessionActivitySummaries;
use super::session_metrics::SessionMetrics;
use super::sessions::Sessions;
use super::{RESOURCE_GRANULARITIES, SUMMARY_GRANULARITIES, summary_schedule_key};

pub use crate::kinds::{KINDS, SCHEDULE_KEYS};

type Jobs = Vec<(Box<dyn Job>, &'static str)>;

fn one(job: impl Job + 'static, key: &'static str) -> Jobs {
    vec![(Box::new(job), key)]
}

fn per_granularity<J: Job + 'static>(grains: &[i64], make: impl Fn(i64) -> J) -> Jobs {
    grains
        .iter()
        .map(|g| (Box::new(make(*g)) as Box<dyn Job>, summary_schedule_key(*g)))
        .collect()
}

/// The jobs of one entity kind, with the schedule key that sets their interval.
pub fn jobs(kind: &str) -> Jobs {
    let g = SUMMARY_GRANULARITIES;
    match kind {
        "machines" => one(Machines, "machines"),
        "application_usage" => one(ApplicationUsage, "application_usage"),
        "connections" => one(Connections, "connections"),
        "sessions" => one(Sessions, "sessions"),
        "connection_failures" => one(ConnectionFailures, "connection_failures"),
        "machine_failures" => one(MachineFailures, "machine_failures"),
        "session_activity_summaries" => {
            per_granularity(g, |granularity| SessionActivitySummaries { granularity })
        }
        "logon_summaries" => per_granularity(g, |granularity| LogOnSummaries { granularity }),
        "load_index_summaries" => {
            per_granularity(g, |granularity| LoadIndexSummaries { granularity })
        }
        "failure_log_summaries" => {
            per_granularity(g, |granularity| FailureLogSummaries { granularity })
        }
        "machine_summaries" => per_granularity(g, |granularity| MachineSummaries { granularity }),
        "load_indexes" => one(LoadIndexes, "load_indexes"),
        "resource_utilization" => one(ResourceUtilization, "resource_utilization"),
        "resource_utilization_summary" => per_granularity(RESOURCE_GRANULARITIES, |granularity| {
            ResourceUtilizationSummaries { granularity }
        }),
        "machine_metric" => one(MachineMetric, "machine_metric"),
        "session_metrics" => one(SessionMetrics, "session_metrics"),
        "hotfixes" => one(Hotfixes, "hotfixes"),
        "application_instances" => one(ApplicationInstances, "application_instances"),
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
        assert!(names.contains("logon_summaries_1440"));
        assert!(names.contains("resource_utilization_summary_10"));
        assert!(jobs("nope").is_empty());
    }

    #[test]
    fn summaries_are_scheduled_by_granularity() {
        let keys: Vec<&str> = jobs("session_activity_summaries")
            .iter()
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(
            keys,
            ["summaries_minute", "summaries_hourly", "summaries_daily"]
        );
        let keys: Vec<&str> = jobs("resource_utilization_summary")
            .iter()
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(
            keys,
            ["summaries_minute", "summaries_hourly", "summaries_daily"]
        );
    }
}
