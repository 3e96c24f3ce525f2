//! A test hook, compiled into debug builds only: makes the cycle of a named tenant panic, so
//! that the integration tests can prove the scheduler's supervision (a panic is logged,
//! counted, reported and restarted — DESIGN.md rule 8) without a real bug to trigger. Release
//! builds have neither this module nor its call.

use std::sync::Mutex;

static PANICKING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// From now on, cycles of `tenant` panic (`on`), or no longer do.
pub fn set_panicking(tenant: &str, on: bool) {
    let mut v = PANICKING.lock().unwrap_or_else(|e| e.into_inner());
    v.retain(|t| t != tenant);
    if on {
        v.push(tenant.to_string());
    }
}

/// Panics when `tenant` was named by [`set_panicking`].
pub(crate) fn check(tenant: &str) {
    let hit = PANICKING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|t| t == tenant);
    if hit {
        panic!("failpoint: a cycle of tenant {tenant} panics on purpose");
    }
}
