//! A response body that trickles out at a fixed rate, in chunks with sleeps in between, so a
//! slow body is slow on the wire as a client sees it (the simulated stream rate). It also
//! carries a guard (the request's in-flight mark) and drops it just before the last chunk
//! leaves, so a client that sends its next request after reading the whole body never finds
//! the previous one still counted. It knows nothing of tenants or statistics.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Chunks carry about this much of the stream's time each.
const CHUNK_TIME: Duration = Duration::from_millis(50);
const MIN_CHUNK: usize = 512;
const MAX_CHUNK: usize = 64 * 1024;

/// `data` sent over `total` (wall time) from the first poll on; `guard` dropped with the last
/// chunk. Once `stop` is cancelled the rest goes out at once (so shutdown is prompt).
pub struct Throttled<G> {
    data: Bytes,
    sent: usize,
    chunk: usize,
    total: Duration,
    start: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    stopped: bool,
    guard: Option<G>,
}

impl<G> Throttled<G> {
    pub fn new(data: Bytes, total: Duration, stop: CancellationToken, guard: G) -> Throttled<G> {
        let per_sec = data.len() as f64 / total.as_secs_f64().max(1e-9);
        let chunk = ((per_sec * CHUNK_TIME.as_secs_f64()) as usize).clamp(MIN_CHUNK, MAX_CHUNK);
        Throttled {
            data,
            sent: 0,
            chunk,
            total,
            start: None,
            sleep: None,
            stop: Box::pin(stop.cancelled_owned()),
            stopped: false,
            guard: Some(guard),
        }
    }

    /// When the bytes up to `end` have been "transmitted" at the rate.
    fn due(&self, start: Instant, end: usize) -> Instant {
        let share = end as f64 / self.data.len().max(1) as f64;
        start + self.total.mul_f64(share)
    }
}

impl<G: Unpin> Body for Throttled<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent >= this.data.len() {
            this.guard = None;
            return Poll::Ready(None);
        }
        let start = *this.start.get_or_insert_with(Instant::now);
        let end = (this.sent + this.chunk).min(this.data.len());
        let due = this.due(start, end);
        if !this.stopped && this.stop.as_mut().poll(cx).is_ready() {
            this.stopped = true;
        }
        if !this.stopped && Instant::now() < due {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let end = if this.stopped { this.data.len() } else { end };
        let out = this.data.slice(this.sent..end);
        this.sent = end;
        if this.sent >= this.data.len() {
            this.guard = None;
        }
        Poll::Ready(Some(Ok(Frame::data(out))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn takes_its_time_in_chunks_and_drops_the_guard_with_the_last() {
        let dropped = Arc::new(AtomicBool::new(false));
        let data = Bytes::from(vec![7u8; 10_000]);
        let mut body = Throttled::new(
            data.clone(),
            Duration::from_millis(300),
            CancellationToken::new(),
            Flag(dropped.clone()),
        );
        let t0 = Instant::now();
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(f) = body.frame().await {
            let d = f.unwrap().into_data().unwrap();
            got.extend_from_slice(&d);
            chunks += 1;
            assert_eq!(dropped.load(Ordering::SeqCst), got.len() == data.len());
        }
        assert_eq!(got, data);
        assert!(chunks >= 5, "{chunks} chunks");
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
    }

    #[tokio::test]
    async fn stop_sends_the_rest_at_once() {
        let stop = CancellationToken::new();
        let mut body = Throttled::new(
            Bytes::from(vec![1u8; 100_000]),
            Duration::from_secs(3600),
            stop.clone(),
            (),
        );
        let first = tokio::time::timeout(Duration::from_millis(50), body.frame()).await;
        assert!(first.is_err(), "the first chunk is due after 18 s");
        stop.cancel();
        let rest = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(rest.len(), 100_000);
        assert!(body.frame().await.is_none());
    }
}
