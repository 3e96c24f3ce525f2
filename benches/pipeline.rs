//! Micro-benchmarks of the CPU path every harvested page takes: decode the OData JSON
//! (`decode_page`), map the records to points (`map_page`, with the walk's key and watermark
//! bookkeeping) and encode them as line protocol (`lineproto::encode`) — and, on the same
//! bytes, serde_json alone (to `Value` and to `IgnoredAny`, the floor any Rust harvester pays).
//! The pages are the simulator's, rendered exactly as its HTTP server serves them for the
//! collectors' own queries (Connections with its `$expand`, Machines, and the per-machine
//! samples and summaries that make up most rows of a steady harvest: ResourceUtilization and
//! ResourceUtilizationSummary at hourly granularity), so the numbers are those
//! of the real path minus HTTP and gzip (the end-to-end benchmark, benches/e2e.sh, has those).
//! Run: `cargo bench --bench pipeline`; docs/performance.md has the figures.

use std::sync::LazyLock;

use chrono::{DurationRound, Utc};
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use serde::de::IgnoredAny;

use citrix_harvester::citrix::model::{Connection, Page};
use citrix_harvester::collect::connections::Connections;
use citrix_harvester::collect::machines::Machines;
use citrix_harvester::collect::resource_utilization::ResourceUtilization;
use citrix_harvester::collect::resource_utilization_summary::ResourceUtilizationSummaries;
use citrix_harvester::collect::{Collector, Ctx, WalkMarks, decode_page, map_page};
use citrix_harvester::lineproto::encode;
use citrix_harvester::sim::{SimOptions, Simulator};

fn main() {
    divan::main();
}

/// Every page of one entity's walk over a few simulated tenants, and their record count.
#[derive(Default)]
struct Corpus {
    pages: Vec<Vec<u8>>,
    records: usize,
    bytes: usize,
}

struct Corpora {
    connections: Corpus,
    machines: Corpus,
    samples: Corpus,
    summaries: Corpus,
}

/// The hourly resource summaries, as the collector reads them.
const HOURLY: ResourceUtilizationSummaries = ResourceUtilizationSummaries { granularity: 60 };

/// Page size of the cloud service (citrix-monitor-api.md: up to 1000 in Citrix Cloud).
const PAGE_SIZE: usize = 1000;
const BASE: &str = "https://api.cloud.com/monitorodata";

static CORPORA: LazyLock<Corpora> = LazyLock::new(|| {
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("a minute divides any instant");
    let history = chrono::Duration::days(2);
    let sim = Simulator::new(SimOptions {
        tenants: 6,
        seed: 7,
        page_size: PAGE_SIZE,
        now,
        history,
        sessions_per_day: 1000,
        ..SimOptions::default()
    });
    let since = now - history - chrono::Duration::hours(1);
    let mut connections = Corpus::default();
    let mut machines = Corpus::default();
    let mut samples = Corpus::default();
    let mut summaries = Corpus::default();
    for t in sim.tenants() {
        walk(
            &sim,
            &t.customer_id,
            ResourceUtilization
                .query(Some(now - chrono::Duration::hours(2)))
                .url(BASE),
            &mut samples,
        );
        walk(
            &sim,
            &t.customer_id,
            HOURLY.query(Some(since)).url(BASE),
            &mut summaries,
        );
        walk(
            &sim,
            &t.customer_id,
            Connections.query(Some(since)).url(BASE),
            &mut connections,
        );
        walk(
            &sim,
            &t.customer_id,
            Machines.query(None).url(BASE),
            &mut machines,
        );
    }
    eprintln!(
        "corpus: Connections {} pages, {} records, {} bytes; Machines {} pages, {} records, {} bytes",
        connections.pages.len(),
        connections.records,
        connections.bytes,
        machines.pages.len(),
        machines.records,
        machines.bytes
    );
    eprintln!(
        "corpus: ResourceUtilization {} pages, {} records; ResourceUtilizationSummary (60) {} pages, {} records",
        samples.pages.len(),
        samples.records,
        summaries.pages.len(),
        summaries.records,
    );
    Corpora {
        connections,
        machines,
        samples,
        summaries,
    }
});

fn walk(sim: &Simulator, customer_id: &str, first: String, into: &mut Corpus) {
    let mut next = Some(first);
    while let Some(url) = next.take() {
        let body = sim
            .page_body(customer_id, &url)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let page: Page<IgnoredAny> = serde_json::from_slice(&body).expect("an OData page");
        into.records += page.value.len();
        into.bytes += body.len();
        into.pages.push(body);
        next = page.next_link;
    }
}

fn ctx() -> Ctx {
    Ctx {
        customer: "Contoso, Ltd.".into(),
        customer_id: "contoso1".into(),
        cycle_time: Utc::now(),
    }
}

/// decode + map + encode of every page, as the harvest walk does it; returns the bytes of line
/// protocol so the work cannot be optimised away.
fn full<C: Collector<State = ()>>(c: &C, corpus: &Corpus, incremental: bool) -> usize {
    let ctx = ctx();
    let mut marks = WalkMarks::default();
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut lines = 0;
    for body in &corpus.pages {
        let page = decode_page::<C::Record<'_>>(body).expect("a well-formed page");
        // Per page, as in the walk: the points borrow from this page's records.
        let mut points = Vec::with_capacity(page.value.len());
        let errors = map_page(
            c,
            &page.value,
            &(),
            &ctx,
            incremental.then_some(&mut marks),
            &mut points,
        );
        assert!(errors.is_empty());
        out.clear();
        for p in &points {
            encode(p, &mut out).expect("encodable");
        }
        lines += out.len();
    }
    lines
}

/// divan's counters are per iteration: one iteration is the whole corpus.
fn counters<'a, 'b>(b: Bencher<'a, 'b>, corpus: &Corpus) -> Bencher<'a, 'b> {
    b.counter(BytesCount::new(corpus.bytes))
        .counter(ItemsCount::new(corpus.records))
}

mod connections {
    use super::*;

    /// decode + map + encode: the real path.
    #[divan::bench]
    fn full_pipeline(b: Bencher) {
        let c = &CORPORA.connections;
        counters(b, c).bench(|| full(&Connections, c, true));
    }

    /// decode only: the typed structs the collector reads.
    #[divan::bench]
    fn decode_typed(b: Bencher) {
        let c = &CORPORA.connections;
        counters(b, c).bench(|| {
            c.pages
                .iter()
                .map(|p| decode_page::<Connection>(p).expect("page").value.len())
                .sum::<usize>()
        });
    }

    /// serde_json to `Value`: what a generic JSON consumer pays.
    #[divan::bench]
    fn parse_value(b: Bencher) {
        let c = &CORPORA.connections;
        counters(b, c).bench(|| {
            for p in &c.pages {
                divan::black_box(serde_json::from_slice::<serde_json::Value>(p).expect("json"));
            }
        });
    }

    /// serde_json validating and skipping everything: the floor.
    #[divan::bench]
    fn parse_ignored(b: Bencher) {
        let c = &CORPORA.connections;
        counters(b, c).bench(|| {
            for p in &c.pages {
                divan::black_box(serde_json::from_slice::<IgnoredAny>(p).expect("json"));
            }
        });
    }
}

mod machines {
    use super::*;

    #[divan::bench]
    fn full_pipeline(b: Bencher) {
        let c = &CORPORA.machines;
        counters(b, c).bench(|| full(&Machines, c, false));
    }

    #[divan::bench]
    fn decode_typed(b: Bencher) {
        let c = &CORPORA.machines;
        counters(b, c).bench(|| {
            c.pages
                .iter()
                .map(|p| {
                    decode_page::<<Machines as Collector>::Record<'_>>(p)
                        .expect("page")
                        .value
                        .len()
                })
                .sum::<usize>()
        });
    }

    #[divan::bench]
    fn parse_value(b: Bencher) {
        let c = &CORPORA.machines;
        counters(b, c).bench(|| {
            for p in &c.pages {
                divan::black_box(serde_json::from_slice::<serde_json::Value>(p).expect("json"));
            }
        });
    }

    #[divan::bench]
    fn parse_ignored(b: Bencher) {
        let c = &CORPORA.machines;
        counters(b, c).bench(|| {
            for p in &c.pages {
                divan::black_box(serde_json::from_slice::<IgnoredAny>(p).expect("json"));
            }
        });
    }
}

/// The per-machine samples (incremental, keyed by machine and date).
mod resource_utilization {
    use super::*;

    #[divan::bench]
    fn full_pipeline(b: Bencher) {
        let c = &CORPORA.samples;
        counters(b, c).bench(|| full(&ResourceUtilization, c, true));
    }
}

/// A summary kind (incremental, keyed by Id, with the granularity tag).
mod resource_utilization_summary {
    use super::*;

    #[divan::bench]
    fn full_pipeline(b: Bencher) {
        let c = &CORPORA.summaries;
        counters(b, c).bench(|| full(&HOURLY, c, true));
    }
}
