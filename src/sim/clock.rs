//! The simulator's real clock (`SimOptions::real_clock`): on a wall-time tick it advances the
//! simulated present to `start + wall elapsed × time_scale`, so that new rows appear as time
//! passes and a daemon polling the simulator reads, each cycle, what arrived since its last
//! one. A tick that finds generation still running is skipped; the next one catches up. It only
//! decides when and how far; `advance` (advance.rs through server.rs) does the work.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::server::State;

/// Advances below this are left for a later tick (they would only add rounding work).
const MIN_STEP: Duration = Duration::from_millis(500);

/// Runs until `stop` is cancelled.
pub async fn run(state: Arc<State>, tick: Duration, stop: CancellationToken) {
    let (wall0, sim0) = (Instant::now(), state.now());
    let mut every = tokio::time::interval(tick.max(Duration::from_millis(10)));
    every.set_missed_tick_behavior(MissedTickBehavior::Skip);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        let elapsed = wall0.elapsed().mul_f64(state.time_scale());
        let Ok(elapsed) = chrono::Duration::from_std(elapsed) else {
            return;
        };
        let by = sim0 + elapsed - state.now();
        if by.to_std().is_ok_and(|b| b >= MIN_STEP) {
            let s = state.clone();
            let started = std::time::Instant::now();
            // Generation is CPU work; keep it off the async workers.
            if let Err(e) = tokio::task::spawn_blocking(move || s.advance(by)).await {
                tracing::warn!(error = %e, "simulated clock: advance failed");
                return;
            }
            tracing::debug!(
                advanced_ms = by.num_milliseconds(),
                took_ms = started.elapsed().as_millis() as u64,
                "simulated clock advanced"
            );
        }
    }
}
