//! The dead-letter hook: every line a server refused for good (400 after bisection, 413 for a
//! single line) passes through [`dead_letter`]. Today it logs the line and the server's reason;
//! a dead-letter file will be added here later, so that callers need not change. It must not
//! retry or count: the writer has already counted the line as rejected.

/// Longest part of a refused line put into the log.
const MAX_LOGGED: usize = 512;

/// Hook for a line the server refused for good. `target` is the sink's description (no secrets).
pub(crate) fn dead_letter(target: &str, line: &[u8], reason: &str) {
    let line = String::from_utf8_lossy(&line[..line.len().min(MAX_LOGGED)]);
    tracing::error!(
        sink = %target,
        line = %line.trim_end(),
        reason = %reason,
        "server refused a line; it is lost"
    );
}
