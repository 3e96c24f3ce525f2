//! Giving freed memory back to the operating system between harvest bursts.
//!
//! A cycle allocates and frees megabyte page bodies and their points; glibc's allocator keeps
//! the freed pages, so without help the RSS stays at the burst's peak while every tenant idles
//! until its next run. Each finished cycle marks the heap dirty ([`cycle_finished`]); the
//! daemon's trimmer ([`run_trimmer`]) asks glibc every [`PERIOD`] to return whole free pages
//! (`malloc_trim`) when a cycle finished since the last time, so a busy instance trims at most
//! that often and an idle one not at all. Elsewhere (musl, other systems) trimming does
//! nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the trimmer looks.
pub const PERIOD: Duration = Duration::from_secs(10);

static DIRTY: AtomicBool = AtomicBool::new(false);

/// A cycle finished: what it freed may be given back.
pub fn cycle_finished() {
    DIRTY.store(true, Ordering::Relaxed);
}

/// Trims if a cycle finished since the last trim; returns whether it did.
pub fn trim_if_dirty() -> bool {
    if !DIRTY.swap(false, Ordering::Relaxed) {
        return false;
    }
    release();
    true
}

/// Trims every [`PERIOD`] after cycles finished, until `cancel` fires.
pub async fn run_trimmer(cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
        if trim_if_dirty() {
            tracing::trace!("Returned freed memory to the OS.");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it takes no pointer
    // from us and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_a_cycle_finished() {
        cycle_finished();
        assert!(trim_if_dirty(), "a finished cycle makes the next look trim");
        assert!(!trim_if_dirty(), "nothing finished since: no trim");
        cycle_finished();
        cycle_finished();
        assert!(trim_if_dirty());
        assert!(!trim_if_dirty());
    }
}
