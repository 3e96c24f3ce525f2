//! The replay task: the one reader of the spool. It takes sealed segments oldest first, sends
//! their batches through the HTTP writer (coalesced up to `batch_size`/`batch_bytes`, with the
//! writer's retries, splitting and bisection), waits and tries again while the server is away,
//! and asks the spool to delete a segment only after every line in it was delivered or refused
//! for good. It is started by `Sink::start_replay` and stops when its cancellation token fires;
//! a batch in flight at that moment stays in the spool and is sent again next start (points
//! overwrite themselves, so at-least-once is harmless). It must not write to the spool or
//! decide what a status means.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::spool::{Segment, Spool, apply_ack, scan};
use super::{Inner, WriteReport};
use crate::sink::influx::{HttpWriter, Owner};

/// Pause between replay attempts while the server stays away (the writer's own backoff runs
/// inside each attempt, up to `retry_max_elapsed`).
const MIN_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Runs until `cancel` fires.
pub(crate) async fn run(
    inner: Arc<Inner>,
    writer: Arc<HttpWriter>,
    spool: Arc<Spool>,
    cancel: CancellationToken,
) {
    tracing::debug!(sink = %inner.description, dir = %spool.dir().display(), "spool replay started");
    loop {
        let next = spool.next_segment();
        let Some(seg) = next else {
            tokio::select! {
                _ = spool.notify.notified() => continue,
                _ = cancel.cancelled() => return,
            }
        };
        if !replay_segment(&inner, &writer, &spool, &seg, &cancel).await {
            return;
        }
    }
}

/// Replays one segment and deletes it; false when cancelled first.
async fn replay_segment(
    inner: &Inner,
    writer: &HttpWriter,
    spool: &Spool,
    seg: &Segment,
    cancel: &CancellationToken,
) -> bool {
    let path = seg.path.clone();
    let mut pause = MIN_PAUSE;
    let buf = loop {
        let p = path.clone();
        match tokio::task::spawn_blocking(move || std::fs::read(&p)).await {
            Ok(Ok(b)) => break b,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(sink = %inner.description, segment = %path.display(),
                    "spool segment vanished before it was replayed; its points are lost");
                let _ = spool.finish_segment(seg);
                return true;
            }
            Ok(Err(e)) => {
                tracing::error!(sink = %inner.description, segment = %path.display(), error = %e,
                "cannot read a spool segment; retrying")
            }
            Err(e) => {
                tracing::error!(sink = %inner.description, error = %e, "spool read task failed")
            }
        }
        if !sleep(cancel, &mut pause).await {
            return false;
        }
    };
    // Bytes below the acknowledged length that are not valid records were acknowledged: lost.
    let s = apply_ack(scan(&buf), buf.len(), seg.acked);
    if s.corrupt_bytes > 0 {
        inner
            .counters
            .spool_corrupt_bytes
            .fetch_add(s.corrupt_bytes as u64, Ordering::Relaxed);
        tracing::error!(sink = %inner.description, segment = %path.display(), bytes = s.corrupt_bytes,
            "spool segment has corrupt or missing records below its acknowledged length; acknowledged points are lost");
    }
    if s.torn_bytes > 0 {
        tracing::warn!(sink = %inner.description, segment = %path.display(), bytes = s.torn_bytes,
            "spool segment ends in a torn record (a write cut off before it was acknowledged); skipped");
    }
    let total: u64 = s.records.iter().map(|r| r.1 as u64).sum();
    // Coalesce records into requests as large as a normal batch.
    let mut i = 0;
    while i < s.records.len() {
        let mut body: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        while i < s.records.len() {
            let (range, lines) = &s.records[i];
            let fits = ends.is_empty()
                || (ends.len() + *lines as usize <= inner.batch_size
                    && body.len() + range.len() <= inner.batch_bytes);
            if !fits {
                break;
            }
            let base = body.len();
            let payload = &buf[range.clone()];
            body.extend_from_slice(payload);
            ends.extend(
                payload
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(j, _)| base + j + 1),
            );
            i += 1;
        }
        if !send(inner, writer, body, ends, cancel).await {
            return false;
        }
    }
    if let Err(e) = spool.finish_segment(seg) {
        tracing::error!(sink = %inner.description, error = %e,
            "cannot delete a replayed spool segment; it will be replayed again (harmless duplicates)");
    }
    tracing::info!(sink = %inner.description, segment = %path.display(), points = total,
        "spool segment replayed and deleted");
    true
}

/// Sends one request's worth until every line is delivered or refused for good; false when
/// cancelled first.
async fn send(
    inner: &Inner,
    writer: &HttpWriter,
    mut body: Vec<u8>,
    mut ends: Vec<usize>,
    cancel: &CancellationToken,
) -> bool {
    let mut pause = MIN_PAUSE;
    loop {
        let mut report = [WriteReport::default()];
        let owner = [Owner {
            end: ends.len(),
            origin: None,
        }];
        let res = tokio::select! {
            r = writer.deliver(&body, &ends, &owner, &mut report) => r,
            _ = cancel.cancelled() => return false,
        };
        inner
            .counters
            .replayed_points
            .fetch_add(report[0].written as u64, Ordering::Relaxed);
        let Err(u) = res else {
            return true;
        };
        tracing::warn!(sink = %inner.description, error = %u.error, retry_in = ?pause,
            "spool replay: the server is still away");
        (body, ends) = keep(&body, &ends, &u.remaining);
        if !sleep(cancel, &mut pause).await {
            return false;
        }
    }
}

/// The lines in `ranges` as a new body and line ends.
pub(crate) fn keep(body: &[u8], ends: &[usize], ranges: &[Range<usize>]) -> (Vec<u8>, Vec<usize>) {
    let start = |i: usize| if i == 0 { 0 } else { ends[i - 1] };
    let mut b = Vec::new();
    let mut e = Vec::new();
    for r in ranges {
        for i in r.clone() {
            b.extend_from_slice(&body[start(i)..ends[i]]);
            e.push(b.len());
        }
    }
    (b, e)
}

/// Sleeps `pause` (then doubles it, up to a cap); false when cancelled first.
async fn sleep(cancel: &CancellationToken, pause: &mut Duration) -> bool {
    let d = *pause;
    *pause = (*pause * 2).min(MAX_PAUSE);
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::keep;

    #[test]
    fn keep_takes_the_ranges_in_order() {
        let body = b"a\nbb\nccc\ndddd\n";
        let ends = [2, 5, 9, 14];
        let (b, e) = keep(body, &ends, &[1..2, 3..4]);
        assert_eq!(b, b"bb\ndddd\n");
        assert_eq!(e, vec![3, 8]);
        let (b, e) = keep(body, &ends, &[0..2, 2..4]);
        assert_eq!(b, body.to_vec());
        assert_eq!(e, ends.to_vec());
    }
}
