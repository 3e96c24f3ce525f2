//! Giving freed memory back to the operating system between harvest bursts.
//!
//! A cycle allocates and frees megabyte page bodies and their points; glibc's allocator keeps
//! the freed pages, so without help the RSS stays at the burst's peak while every tenant idles
//! until its next run. Each finished cycle marks the heap dirty ([`cycle_finished`]); the
//! daemon's trimmer ([`run_trimmer`]) asks glibc every [`PERIOD`] to return whole free pages
//! (`malloc_trim`) when a cycle finished (or a `/metrics` page was dropped, [`buffer_freed`])
//! since the last time, so a busy instance trims at most that often and an idle one not at
//! all. Elsewhere (musl, other systems) trimming does nothing.
//!
//! The other process resource the harvester sizes from its settings lives here too: file
//! descriptors. Up to `harvester.max_requests_in_flight` sockets may be open at once, more than
//! the soft limit of 1024 that shells and older service managers give; [`allow_descriptors`]
//! raises the soft limit towards the hard one (as Go's runtime does), and warns when even the
//! hard limit is too low.

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

/// A large buffer is being freed outside a cycle: a `/metrics` page (about 1 KB per tenant)
/// is allocated and dropped at every scrape. It comes from the heap, not from its own mapping
/// (glibc raises its mapping threshold to the largest block freed, and page bodies are larger),
/// so without a trim every scrape would leave its size resident while the tenants idle.
pub fn buffer_freed() {
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

/// Descriptors kept for everything besides Monitor requests: token requests, the output's
/// connections, the spool, checkpoints, the listener, logs.
const DESCRIPTOR_MARGIN: u64 = 1024;

/// Makes room for `requests` sockets at once: raises the soft `RLIMIT_NOFILE` to
/// `requests` plus a margin, up to the hard limit; returns the soft limit now in force.
pub fn allow_descriptors(requests: usize) -> Option<u64> {
    let want = (requests as u64).saturating_add(DESCRIPTOR_MARGIN);
    let (soft, hard) = nofile()?;
    let soft = if soft < want {
        let new = want.min(hard);
        if set_nofile(new, hard) { new } else { soft }
    } else {
        soft
    };
    if soft < want {
        tracing::warn!(
            soft_limit = soft,
            wanted = want,
            "The file-descriptor limit is lower than harvester.max_requests_in_flight needs; \
             raise LimitNOFILE (systemd) or ulimit -n, or lower the setting."
        );
    }
    Some(soft)
}

#[cfg(unix)]
fn nofile() -> Option<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
    let limits = (r.rlim_cur as u64, r.rlim_max as u64);
    ok.then_some(limits)
}

#[cfg(unix)]
fn set_nofile(soft: u64, hard: u64) -> bool {
    let r = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one rlimit from a struct we own; a soft limit up to the hard one
    // needs no privilege and changes nothing but this process's limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 }
}

#[cfg(not(unix))]
fn nofile() -> Option<(u64, u64)> {
    None
}

#[cfg(not(unix))]
fn set_nofile(_: u64, _: u64) -> bool {
    false
}

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
        buffer_freed();
        assert!(
            trim_if_dirty(),
            "a dropped /metrics page makes the next look trim"
        );
        assert!(!trim_if_dirty());
    }

    #[test]
    fn descriptors_are_raised_towards_what_the_requests_need() {
        let (_, hard) = nofile().unwrap();
        let soft = allow_descriptors(2048).unwrap();
        assert!(
            soft >= (2048 + DESCRIPTOR_MARGIN).min(hard),
            "{soft} of {hard}"
        );
        assert_eq!(nofile().unwrap().0, soft);
    }
}
