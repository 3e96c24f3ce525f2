//! Dead letters: every line refused for good (a 400 isolated by bisection, a single line the
//! server dropped or found too large, a point the encoder refused) is logged and, when the sink
//! has a state directory, appended with the reason to `<state_dir>/deadletter/YYYY-MM-DD.lp`
//! (UTC date, one file for all tenants: the lines carry their `customer` tag). Each entry is one
//! comment line `# <RFC 3339 UTC time> <reason>` (double quotes in the reason shown as single
//! quotes, see [`comment_safe`]) followed by the refused line, so after fixing the line an
//! operator can replay the file as it is (InfluxDB and VictoriaMetrics skip `#` lines):
//! `curl --data-binary @2026-03-02.lp 'http://influx:8086/write?db=citrix'`. A point the encoder
//! refused has no line; it is written as a second comment (`# point: ...`). Appends are fsynced;
//! the directory is bounded by `deadletter_limit` bytes, beyond which entries are counted and
//! logged, not written. This file must not retry or decide what is refused (the writer has
//! already counted the line as rejected), and must not fail a write: a dead-letter file that
//! cannot be written is logged at ERROR and counted.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

use super::Counters;

/// Longest part of a refused line put into the log.
const MAX_LOGGED: usize = 512;
/// When the limit is reached, the directory is measured again at most this often (so files an
/// operator deleted make room without a restart).
const RESCAN_EVERY: Duration = Duration::from_secs(60);

/// One refused line (or, for the encoder, a `# point: ...` comment) and why.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    pub(crate) line: Vec<u8>,
    pub(crate) reason: String,
}

struct FileState {
    /// Bytes in the directory (measured at the first write, then counted).
    used: Option<u64>,
    last_scan: Option<Instant>,
    /// The open file and the date it is for.
    open: Option<(String, File)>,
}

pub(crate) struct DeadLetters {
    /// The sink's description (no secrets), for logs.
    target: String,
    dir: Option<PathBuf>,
    limit: u64,
    state: Mutex<FileState>,
    counters: Arc<Counters>,
}

/// Bytes of the regular files directly in `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let m = e?.metadata()?;
                if m.is_file() {
                    n += m.len();
                }
            }
            Ok(n)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Text that is safe inside a `#` comment line. InfluxDB 1.x finds line ends with a scanner
/// that tracks double quotes and backslash escapes even in comment lines, so a `"` (server
/// reasons are JSON) or a trailing `\` would swallow the next line, the refused line itself:
/// double quotes become single quotes, trailing backslashes go, newlines become spaces.
fn comment_safe(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
        .replace('"', "'")
        .trim()
        .trim_end_matches('\\')
        .to_owned()
}

/// A whole comment line (no newline) for something that is not line protocol.
pub(crate) fn comment_line(text: &str) -> Vec<u8> {
    format!("# {}", comment_safe(text)).into_bytes()
}

impl DeadLetters {
    pub(crate) fn new(
        target: String,
        dir: Option<PathBuf>,
        limit: u64,
        counters: Arc<Counters>,
    ) -> Self {
        DeadLetters {
            target,
            dir,
            limit,
            state: Mutex::new(FileState {
                used: None,
                last_scan: None,
                open: None,
            }),
            counters,
        }
    }

    /// Logs the entries and appends them to today's file (blocking I/O runs off the runtime).
    pub(crate) async fn record(self: &Arc<Self>, entries: Vec<DeadLetter>) {
        if entries.is_empty() {
            return;
        }
        for e in &entries {
            let line = String::from_utf8_lossy(&e.line[..e.line.len().min(MAX_LOGGED)]);
            tracing::error!(
                sink = %self.target,
                line = %line.trim_end(),
                reason = %e.reason,
                "line refused for good; it is lost unless replayed from the dead-letter file"
            );
        }
        self.counters
            .dead_letters
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        if self.dir.is_none() {
            return;
        }
        let me = self.clone();
        let n = entries.len();
        let res = tokio::task::spawn_blocking(move || me.append(&entries)).await;
        let failure = match res {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(join) => format!("dead-letter task failed: {join}"),
        };
        self.counters
            .dead_letters_not_written
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::error!(sink = %self.target, entries = n, error = %failure,
            "could not write the dead-letter file; the refused lines are only in this log");
    }

    /// Appends and fsyncs; entries beyond the limit are counted and logged instead.
    fn append(&self, entries: &[DeadLetter]) -> Result<(), String> {
        let dir = self.dir.as_ref().expect("checked by the caller");
        let now = Utc::now();
        let stamp = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        let date = now.format("%Y-%m-%d").to_string();
        let path = dir.join(format!("{date}.lp"));
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rescan = match (st.used, st.last_scan) {
            (None, _) | (_, None) => true,
            (Some(u), Some(t)) => u >= self.limit && t.elapsed() >= RESCAN_EVERY,
        };
        if rescan {
            st.used = Some(dir_bytes(dir).map_err(|e| format!("{}: {e}", dir.display()))?);
            st.last_scan = Some(Instant::now());
        }
        let mut used = st.used.unwrap_or(0);
        let mut out = Vec::new();
        let mut over = 0usize;
        for e in entries {
            let before = out.len();
            out.extend_from_slice(b"# ");
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
            out.extend_from_slice(comment_safe(&e.reason).as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&e.line);
            if out.last() != Some(&b'\n') {
                out.push(b'\n');
            }
            let size = (out.len() - before) as u64;
            if used + size > self.limit {
                out.truncate(before);
                over += 1;
            } else {
                used += size;
            }
        }
        if over > 0 {
            self.counters
                .dead_letters_not_written
                .fetch_add(over as u64, Ordering::Relaxed);
            tracing::error!(sink = %self.target, entries = over, limit = self.limit, dir = %dir.display(),
                "dead-letter directory is full (deadletter_limit); entries only logged");
        }
        if out.is_empty() {
            return Ok(());
        }
        if st.open.as_ref().map(|(d, _)| d != &date).unwrap_or(true) {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            st.open = Some((date, f));
        }
        let (_, f) = st.open.as_mut().expect("opened above");
        let r = f.write_all(&out).and_then(|()| f.sync_data());
        if let Err(e) = r {
            st.open = None;
            st.used = None; // measure again: part of it may be on disk
            return Err(format!("{}: {e}", path.display()));
        }
        st.used = Some(used);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(dir: Option<PathBuf>, limit: u64) -> (Arc<DeadLetters>, Arc<Counters>) {
        let c = Arc::new(Counters::default());
        (
            Arc::new(DeadLetters::new("test".into(), dir, limit, c.clone())),
            c,
        )
    }

    fn entry(line: &str, reason: &str) -> DeadLetter {
        DeadLetter {
            line: line.as_bytes().to_vec(),
            reason: reason.into(),
        }
    }

    #[tokio::test]
    async fn entries_are_a_comment_then_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("deadletter");
        let (dl, c) = letters(Some(dir.clone()), 1 << 20);
        dl.record(vec![
            entry(
                "m v=1i 1\n",
                "HTTP 400: {\"error\":\"unable to parse 'v=1'\"}\nsecond\\",
            ),
            entry("m v=2i 2", "why"),
        ])
        .await;
        let files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().into_string().unwrap();
        assert_eq!(name, format!("{}.lp", Utc::now().format("%Y-%m-%d")));
        let text = fs::read_to_string(files[0].path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("# 20"), "{text}");
        assert!(
            lines[0].ends_with(" HTTP 400: {'error':'unable to parse 'v=1''} second"),
            "{text}"
        );
        assert_eq!(lines[1], "m v=1i 1");
        assert!(lines[2].ends_with(" why"));
        assert_eq!(lines[3], "m v=2i 2");
        assert_eq!(c.dead_letters.load(Ordering::Relaxed), 2);
        assert_eq!(c.dead_letters_not_written.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn limit_counts_what_is_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dl");
        // room for exactly one entry: "# <27-char stamp> r\n" (31) + "m v=1i 1\n" (9)
        let (dl, c) = letters(Some(dir.clone()), 45);
        dl.record(vec![entry("m v=1i 1", "r"), entry("m v=2i 2", "r")])
            .await;
        dl.record(vec![entry("m v=3i 3", "r")]).await;
        let text = fs::read_to_string(fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path())
            .unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("m v=1i 1"));
        assert_eq!(c.dead_letters.load(Ordering::Relaxed), 3);
        assert_eq!(c.dead_letters_not_written.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn without_a_directory_only_logs() {
        let (dl, c) = letters(None, 0);
        dl.record(vec![entry("m v=1i 1", "r")]).await;
        assert_eq!(c.dead_letters.load(Ordering::Relaxed), 1);
        assert_eq!(c.dead_letters_not_written.load(Ordering::Relaxed), 0);
    }
}
