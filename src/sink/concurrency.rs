//! The output's write concurrency: how many write requests may be in flight at once. Adaptive
//! by default, after Vector's adaptive request concurrency: AIMD on the round-trip time of
//! successful writes against an EWMA baseline. It starts at one request; once per observation
//! window (about one baseline RTT) the limit grows if the window used the whole limit, saw no
//! back pressure and its mean RTT did not exceed the baseline: it doubles until the first
//! back-off (slow start, as in TCP: a server whose writes take seconds would otherwise take
//! minutes to reach its capacity), then grows by one. It shrinks to ×0.9 on back pressure
//! (429, 408, 5xx, a refused connection), on an RTT above the baseline by more than 2.5
//! standard deviations, and on a mean RTT above half of `output.timeout` (latency that creeps up
//! slowly moves the baseline with it, and must not reach the timeout); to ×0.5 when a write
//! timed out (the server is overloaded and a timed-out write may be stored twice on
//! VictoriaMetrics). Always between 1 and the ceiling.
//! A fixed setting keeps the limit where it is. It owns the limit, the in-flight count and the
//! write counters; it must not send requests or decide what a status means (`classify` does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::time::Instant;
use tokio::sync::Notify;

/// Weight of the newest window's mean RTT in the baseline (Vector's default).
const EWMA_ALPHA: f64 = 0.4;
/// How many standard deviations above the baseline count as "latency is rising".
const RTT_DEVIATION_SCALE: f64 = 2.5;
/// Back off on back pressure or rising latency.
const DECREASE: f64 = 0.9;
/// Back off on a timeout: the server did not answer at all.
const DECREASE_TIMEOUT: f64 = 0.5;
/// Shortest observation window (a baseline of microseconds would adjust on every answer).
const MIN_WINDOW: Duration = Duration::from_millis(5);

/// How the write concurrency is chosen (`output.concurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Starts at 1 and adapts between 1 and `max` (`output.max_concurrency`).
    Adaptive { max: usize },
    /// Always this many.
    Fixed(usize),
}

/// What one write attempt told us about the server's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    /// 2xx after this long.
    Success(Duration),
    /// 429, 408, 5xx, a refused or reset connection: the server asks us to slow down.
    BackPressure,
    /// No answer within `output.timeout`.
    Timeout,
    /// Anything else (a 400 while bisecting, a 401): says nothing about load.
    Neutral,
}

/// An exponentially weighted mean and variance.
#[derive(Debug, Default, Clone, Copy)]
struct EwmaVar {
    mean: f64,
    var: f64,
    init: bool,
}

impl EwmaVar {
    fn update(&mut self, x: f64) {
        if !self.init {
            *self = EwmaVar {
                mean: x,
                var: 0.0,
                init: true,
            };
            return;
        }
        // West's incremental form of the exponentially weighted variance.
        let diff = x - self.mean;
        let incr = EWMA_ALPHA * diff;
        self.mean += incr;
        self.var = (1.0 - EWMA_ALPHA) * (self.var + diff * incr);
    }
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    past_rtt: EwmaVar,
    /// This window's RTTs (sum, count).
    rtt_sum: f64,
    rtt_n: u64,
    back_pressure: bool,
    timed_out: bool,
    reached_limit: bool,
    /// Doubling until the first back-off.
    slow_start: bool,
    next_update: Option<Instant>,
}

/// The limiter shared by the coalescing writer (which acquires) and the HTTP writer (which
/// reports every attempt).
#[derive(Debug)]
pub(crate) struct Limiter {
    mode: Concurrency,
    /// A window whose mean RTT is above this backs off (half of `output.timeout`).
    slow_rtt: f64,
    state: Mutex<State>,
    released: Notify,
    /// HTTP write attempts sent (each retry counts).
    pub(crate) requests: AtomicU64,
    /// Of those, attempts that got no answer within `output.timeout`.
    pub(crate) timeouts: AtomicU64,
}

/// One write in flight; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().in_flight -= 1;
        self.limiter.released.notify_waiters();
    }
}

impl Limiter {
    /// A limiter for writes that time out after `timeout`.
    pub(crate) fn new(mode: Concurrency, timeout: Duration) -> Limiter {
        let limit = match mode {
            Concurrency::Adaptive { .. } => 1,
            Concurrency::Fixed(n) => n.max(1),
        };
        Limiter {
            mode,
            slow_rtt: timeout.as_secs_f64() / 2.0,
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                past_rtt: EwmaVar::default(),
                rtt_sum: 0.0,
                rtt_n: 0,
                back_pressure: false,
                timed_out: false,
                reached_limit: false,
                slow_start: true,
                next_update: None,
            }),
            released: Notify::new(),
            requests: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Writes in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Waits until fewer writes than the limit are in flight, then takes a place.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut st = self.lock();
                if st.in_flight < st.limit {
                    st.in_flight += 1;
                    if st.in_flight >= st.limit {
                        st.reached_limit = true;
                    }
                    return Permit {
                        limiter: self.clone(),
                    };
                }
            }
            released.await;
        }
    }

    /// Takes in one attempt's outcome; adjusts the limit once per observation window.
    pub(crate) fn record(&self, outcome: Outcome) {
        self.record_at(outcome, Instant::now());
    }

    fn record_at(&self, outcome: Outcome, now: Instant) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::Timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let mut st = self.lock();
        match outcome {
            Outcome::Success(rtt) => {
                st.rtt_sum += rtt.as_secs_f64();
                st.rtt_n += 1;
            }
            Outcome::BackPressure => st.back_pressure = true,
            Outcome::Timeout => st.timed_out = true,
            Outcome::Neutral => {}
        }
        let current = (st.rtt_n > 0).then(|| st.rtt_sum / st.rtt_n as f64);
        let Some(next) = st.next_update else {
            // The first answer sets the baseline (the limit starts at one: nothing to lower).
            if let Some(c) = current {
                st.past_rtt.update(c);
                st.next_update = Some(now + window(c));
                reset_window(&mut st);
            }
            return;
        };
        // One adjustment per window (about one round trip): the answers to requests sent at
        // the old limit must not lower the new one again.
        if now < next {
            return;
        }
        self.adjust(&mut st, current);
        if let Some(c) = current {
            st.past_rtt.update(c);
        }
        let base = st.past_rtt.mean;
        st.next_update = Some(now + window(base));
        reset_window(&mut st);
    }

    fn adjust(&self, st: &mut State, current: Option<f64>) {
        let Concurrency::Adaptive { max } = self.mode else {
            return;
        };
        let past = st.past_rtt;
        let threshold = past.var.max(0.0).sqrt() * RTT_DEVIATION_SCALE;
        let before = st.limit;
        if st.timed_out {
            st.limit = ((st.limit as f64 * DECREASE_TIMEOUT) as usize).max(1);
            st.slow_start = false;
        } else if st.back_pressure
            || current
                .is_some_and(|c| c > self.slow_rtt || (past.init && c > past.mean + threshold))
        {
            st.limit = ((st.limit as f64 * DECREASE) as usize).max(1);
            st.slow_start = false;
        } else if st.limit < max
            && st.reached_limit
            && current.is_some_and(|c| !past.init || c <= past.mean)
        {
            st.limit = match st.slow_start {
                true => st.limit.saturating_mul(2),
                false => st.limit + 1,
            };
        }
        st.limit = st.limit.min(max.max(1));
        if st.limit != before {
            tracing::debug!(
                from = before,
                to = st.limit,
                rtt = ?current.map(Duration::from_secs_f64),
                baseline = ?Duration::from_secs_f64(past.mean),
                back_pressure = st.back_pressure,
                timed_out = st.timed_out,
                "output write concurrency changed"
            );
        }
    }
}

fn window(rtt_secs: f64) -> Duration {
    Duration::from_secs_f64(rtt_secs.clamp(0.0, 60.0)).max(MIN_WINDOW)
}

fn reset_window(st: &mut State) {
    st.rtt_sum = 0.0;
    st.rtt_n = 0;
    st.back_pressure = false;
    st.timed_out = false;
    st.reached_limit = st.in_flight >= st.limit;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A clock the test moves.
    struct Clock(Instant);

    /// Fills the limit, then answers every request of a window 20 ms later.
    async fn window_of(l: &Arc<Limiter>, clock: &mut Clock, outcome: impl Fn() -> Outcome) {
        let n = l.limit();
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(l.acquire().await);
        }
        clock.0 += 20 * MS;
        for p in permits {
            l.record_at(outcome(), clock.0);
            drop(p);
        }
    }

    #[tokio::test]
    async fn grows_while_rtt_is_flat_and_backs_off() {
        let l = Arc::new(Limiter::new(Concurrency::Adaptive { max: 8 }, TIMEOUT));
        let c = &mut Clock(Instant::now());
        assert_eq!(l.limit(), 1);
        for _ in 0..30 {
            window_of(&l, c, || Outcome::Success(20 * MS)).await;
        }
        assert_eq!(l.limit(), 8, "grows up to the ceiling");
        window_of(&l, c, || Outcome::BackPressure).await;
        assert_eq!(l.limit(), 7, "x0.9 on back pressure");
        window_of(&l, c, || Outcome::Timeout).await;
        assert_eq!(l.limit(), 3, "x0.5 on a timeout");
        let before = l.timeouts.load(Ordering::Relaxed);
        for _ in 0..5 {
            window_of(&l, c, || Outcome::Timeout).await;
        }
        assert_eq!(l.limit(), 1, "never below one");
        assert_eq!(
            l.timeouts.load(Ordering::Relaxed),
            before + 3 + 1 + 1 + 1 + 1
        );
    }

    #[tokio::test]
    async fn rising_latency_shrinks_the_limit() {
        let l = Arc::new(Limiter::new(Concurrency::Adaptive { max: 32 }, TIMEOUT));
        let c = &mut Clock(Instant::now());
        for _ in 0..10 {
            window_of(&l, c, || Outcome::Success(20 * MS)).await;
        }
        let grown = l.limit();
        assert!(grown > 5, "{grown}");
        window_of(&l, c, || Outcome::Success(200 * MS)).await;
        assert!(l.limit() < grown, "{} !< {grown}", l.limit());
    }

    #[tokio::test]
    async fn does_not_grow_without_demand_and_fixed_stays() {
        let l = Arc::new(Limiter::new(Concurrency::Adaptive { max: 32 }, TIMEOUT));
        let c = &mut Clock(Instant::now());
        for _ in 0..10 {
            // One request at a time never reaches a limit above one.
            let p = l.acquire().await;
            c.0 += 20 * MS;
            l.record_at(Outcome::Success(20 * MS), c.0);
            drop(p);
        }
        assert!(l.limit() <= 2, "{}", l.limit());
        let f = Arc::new(Limiter::new(Concurrency::Fixed(4), TIMEOUT));
        for _ in 0..5 {
            window_of(&f, c, || Outcome::Timeout).await;
        }
        assert_eq!(f.limit(), 4);
    }

    #[tokio::test]
    async fn acquire_waits_for_a_release() {
        let l = Arc::new(Limiter::new(Concurrency::Fixed(1), TIMEOUT));
        let p = l.acquire().await;
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _p = l2.acquire().await;
            l2.in_flight()
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        drop(p);
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test]
    async fn doubles_until_the_first_back_off_then_grows_by_one() {
        let l = Arc::new(Limiter::new(Concurrency::Adaptive { max: 64 }, TIMEOUT));
        let c = &mut Clock(Instant::now());
        let mut seen = vec![l.limit()];
        for _ in 0..5 {
            window_of(&l, c, || Outcome::Success(20 * MS)).await;
            seen.push(l.limit());
        }
        assert_eq!(
            seen,
            [1, 1, 2, 4, 8, 16],
            "the first answer sets the baseline"
        );
        window_of(&l, c, || Outcome::BackPressure).await;
        assert_eq!(l.limit(), 14);
        // The first answers of a window close the one before (back pressure again).
        window_of(&l, c, || Outcome::Success(20 * MS)).await;
        let mut after = vec![l.limit()];
        for _ in 0..3 {
            window_of(&l, c, || Outcome::Success(20 * MS)).await;
            after.push(l.limit());
        }
        let steps: Vec<usize> = after.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            steps,
            [1, 1, 1],
            "one per window after a back-off: {after:?}"
        );
    }

    #[tokio::test]
    async fn latency_creeping_towards_the_timeout_backs_off_before_it() {
        let l = Arc::new(Limiter::new(Concurrency::Adaptive { max: 32 }, TIMEOUT));
        let c = &mut Clock(Instant::now());
        for _ in 0..6 {
            window_of(&l, c, || Outcome::Success(20 * MS)).await;
        }
        let grown = l.limit();
        // Each window a little slower than the last: never 2.5 deviations above the moving
        // baseline, but past half the timeout the limit comes down, with no write timed out.
        let mut rtt = 20 * MS;
        let mut past_half = Vec::new();
        while rtt <= TIMEOUT {
            rtt = rtt * 21 / 20;
            // The answers come that much later.
            c.0 += rtt - 20 * MS;
            let r = rtt;
            window_of(&l, c, || Outcome::Success(r)).await;
            if rtt > TIMEOUT / 2 {
                past_half.push(l.limit());
            }
        }
        assert!(grown >= 16, "{grown}");
        // Once past half the timeout (the first window closes the one before), every window
        // lowers the limit, until it is one.
        assert!(
            past_half[1..].windows(2).all(|w| w[1] < w[0] || w[1] == 1),
            "{past_half:?}"
        );
        assert!(past_half.last().unwrap() < &(grown / 2), "{past_half:?}");
        assert_eq!(l.timeouts.load(Ordering::Relaxed), 0);
    }
}
