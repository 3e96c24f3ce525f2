//! The names of the entity kinds (`tenant[].entities`) and of the schedule keys: plain data
//! that the configuration validates against and the collector registry builds jobs for. It
//! lives at the bottom of the layout so that the configuration need not import the collectors
//! (which import the configuration).

/// Entity kinds as written in `tenant[].entities`, in the order a cycle runs them
/// (snapshots first: they are the data that cannot be re-read later).
pub const KINDS: &[&str] = &[
    "machines",
    "application_usage",
    "connections",
    "sessions",
    "connection_failures",
    "machine_failures",
    "session_activity_summaries",
    "logon_summaries",
    "load_index_summaries",
    "failure_log_summaries",
    "machine_summaries",
    "load_indexes",
    "resource_utilization",
    "resource_utilization_summary",
    "machine_metric",
    "session_metrics",
    "hotfixes",
    "application_instances",
];

/// Schedule keys besides the kinds themselves.
pub const SCHEDULE_KEYS: &[&str] = &["summaries_minute", "summaries_hourly", "summaries_daily"];
