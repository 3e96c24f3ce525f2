//! The spool: batches the server could not take, kept on disk until it can. It owns the
//! segment files under `<state_dir>/spool/` (`<20-digit sequence>.seg`, append-only), their
//! record format, the size bound (`buffer_limit`) and which segments exist; the replay task
//! (`replay.rs`) reads sealed segments in order and asks this file to delete one only after
//! every batch in it was acknowledged. It must not talk HTTP, decide when to spool, or encode
//! points (records carry encoded line protocol as it would have been sent).
//!
//! Record format (little endian): `"CHS1"` magic, payload length (u32), line count (u32),
//! CRC-32 of (length, count, payload) (u32), then the payload: whole lines, each ending in
//! `\n`. An append is one `write` of whole records followed by `fdatasync`, and `Sink::write`
//! returns Ok only after that. Reading stops being trusting at the first bad record: invalid
//! bytes followed by a valid record are *corrupt* (acknowledged data lost: ERROR), invalid
//! bytes with no valid record after them are a *torn tail* (a write cut off by a crash before
//! its fsync returned, hence never acknowledged: WARN). A new process never appends to an old
//! segment, so a torn tail can only ever be at the end of a segment.
//!
//! Beside each segment, `<seq>.ack` holds the segment's acknowledged length (u64 and its
//! CRC-32), rewritten after every fsynced append. It is written after the segment's fsync and
//! is not itself fsynced: it can lag behind the segment (a power cut: detection is weaker for
//! that tail) but never run ahead of it. So invalid or missing bytes *below* the acknowledged
//! length are lost acknowledged data — corruption, not a torn write — however they look, and an
//! `.ack` whose segment is gone is a whole lost segment.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Counters, SinkError};

pub(crate) const MAGIC: [u8; 4] = *b"CHS1";
pub(crate) const HEADER: usize = 16;
const EXT: &str = "seg";
const ACK_EXT: &str = "ack";

/// One batch to spool: whole lines, each ending in `\n`.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) lines: usize,
}

fn checksum(len: u32, lines: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&lines.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one record to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, payload: &[u8], lines: u32) {
    let len = u32::try_from(payload.len()).expect("a batch is far below 4 GiB");
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lines.to_le_bytes());
    out.extend_from_slice(&checksum(len, lines, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// The record starting at `at`, if it is complete and valid: (payload range, line count).
fn record_at(buf: &[u8], at: usize) -> Option<(Range<usize>, u32)> {
    let head = buf.get(at..at + HEADER)?;
    if head[..4] != MAGIC {
        return None;
    }
    let len = u32_at(head, 4);
    let lines = u32_at(head, 8);
    let crc = u32_at(head, 12);
    let start = at + HEADER;
    let end = start.checked_add(len as usize)?;
    let payload = buf.get(start..end)?;
    if checksum(len, lines, payload) != crc {
        return None;
    }
    // Belt and braces: the count and the line ends must agree.
    let newlines = payload.iter().filter(|&&b| b == b'\n').count();
    if newlines != lines as usize || (len > 0 && payload[payload.len() - 1] != b'\n') {
        return None;
    }
    Some((start..end, lines))
}

/// What reading one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Valid records in file order: payload range in the buffer and line count.
    pub(crate) records: Vec<(Range<usize>, u32)>,
    /// Invalid bytes followed by a valid record (acknowledged data lost).
    pub(crate) corrupt_bytes: usize,
    /// Invalid bytes at the end with no valid record after them (never acknowledged).
    pub(crate) torn_bytes: usize,
}

/// Splits a segment's bytes into valid records, skipping corrupt stretches and a torn tail.
pub(crate) fn scan(buf: &[u8]) -> Scan {
    let mut s = Scan::default();
    let mut at = 0;
    while at < buf.len() {
        if let Some((payload, lines)) = record_at(buf, at) {
            at = payload.end;
            s.records.push((payload, lines));
            continue;
        }
        // Resynchronise: the next magic that starts a valid record.
        let mut next = None;
        let mut from = at + 1;
        while let Some(i) = find(&buf[from..], &MAGIC) {
            if record_at(buf, from + i).is_some() {
                next = Some(from + i);
                break;
            }
            from += i + 1;
        }
        match next {
            Some(n) => {
                s.corrupt_bytes += n - at;
                at = n;
            }
            None => {
                s.torn_bytes = buf.len() - at;
                break;
            }
        }
    }
    s
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A segment file the replay task may read (sealed: nothing is appended to it any more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    /// The acknowledged length from `<seq>.ack`; `None` for a segment written before it existed.
    pub(crate) acked: Option<u64>,
}

impl Segment {
    fn ack_path(&self) -> PathBuf {
        self.path.with_extension(ACK_EXT)
    }
}

struct Head {
    seg: Segment,
    file: File,
    ack: File,
}

fn encode_ack(len: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&len.to_le_bytes());
    b[8..].copy_from_slice(&crc32fast::hash(&len.to_le_bytes()).to_le_bytes());
    b
}

/// The acknowledged length in an `.ack` file; `None` when absent or not valid.
fn read_ack(path: &Path) -> Option<u64> {
    let b = fs::read(path).ok()?;
    let len = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let crc = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
    (crc32fast::hash(&len.to_le_bytes()) == crc).then_some(len)
}

/// Applies the acknowledged length to a scan of `len` bytes: whatever of `[0, acked)` is not in
/// a valid record was acknowledged and is lost (corrupt); only bytes beyond it can be torn.
pub(crate) fn apply_ack(mut s: Scan, len: usize, acked: Option<u64>) -> Scan {
    let Some(acked) = acked.map(|a| a as usize) else {
        return s;
    };
    let valid_end = len - s.torn_bytes;
    if acked > valid_end {
        s.corrupt_bytes += acked - valid_end;
        s.torn_bytes = len.saturating_sub(acked);
    }
    s
}

struct State {
    sealed: VecDeque<Segment>,
    head: Option<Head>,
    next_seq: u64,
    /// Bytes of all segments, sealed and head.
    bytes: u64,
}

/// What an append stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub(crate) stored_lines: usize,
    /// Lines not stored because the spool would have grown beyond its limit.
    pub(crate) refused_lines: usize,
}

pub(crate) struct Spool {
    dir: PathBuf,
    limit: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    /// Anything spooled and not yet acknowledged: new writes go behind it (FIFO).
    active: AtomicBool,
    pub(crate) notify: tokio::sync::Notify,
    counters: Arc<Counters>,
}

fn io_err(path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Spool {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Makes a new file's directory entry durable (a no-op error on systems that refuse it).
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(e),
    }
}

impl Spool {
    /// Opens (creating) the spool directory and lists the segments left by earlier runs; they
    /// are replayed first. Cheap: files are only read by the replay task.
    pub(crate) fn open(
        dir: PathBuf,
        limit: u64,
        segment_bytes: u64,
        counters: Arc<Counters>,
    ) -> Result<Spool, SinkError> {
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mut sealed = Vec::new();
        let mut acks = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let e = e.map_err(|e| io_err(&dir, e))?;
            let path = e.path();
            let ext = path.extension().and_then(|x| x.to_str());
            let Some(seq) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if ext == Some(ACK_EXT) {
                acks.push(path);
                continue;
            }
            if ext != Some(EXT) {
                continue;
            }
            let bytes = e.metadata().map_err(|e| io_err(&path, e))?.len();
            let mut seg = Segment {
                seq,
                path,
                bytes,
                acked: None,
            };
            seg.acked = read_ack(&seg.ack_path());
            if bytes == 0 && seg.acked.unwrap_or(0) == 0 {
                // Created, nothing ever written (a crash right after the create).
                let _ = fs::remove_file(&seg.path);
                let _ = fs::remove_file(seg.ack_path());
                continue;
            }
            sealed.push(seg);
        }
        for ack in acks {
            if ack.with_extension(EXT).exists() {
                continue;
            }
            // The segment is gone but its acknowledged length says it held points.
            let lost = read_ack(&ack).unwrap_or(0);
            if lost > 0 {
                counters
                    .spool_corrupt_bytes
                    .fetch_add(lost, Ordering::Relaxed);
                tracing::error!(segment = %ack.with_extension(EXT).display(), bytes = lost,
                    "spool segment is missing although it held acknowledged points; they are lost");
            }
            let _ = fs::remove_file(&ack);
        }
        sealed.sort_by_key(|s| s.seq);
        let bytes: u64 = sealed.iter().map(|s| s.bytes).sum();
        let next_seq = sealed.last().map_or(1, |s| s.seq + 1);
        counters.spool_bytes.store(bytes, Ordering::Relaxed);
        counters
            .spool_segments
            .store(sealed.len() as u64, Ordering::Relaxed);
        if !sealed.is_empty() {
            tracing::info!(dir = %dir.display(), segments = sealed.len(), bytes,
                "spool holds data from an earlier run; it is replayed first");
        }
        let active = !sealed.is_empty();
        Ok(Spool {
            dir,
            limit,
            segment_bytes: segment_bytes.max(1),
            state: Mutex::new(State {
                sealed: sealed.into(),
                head: None,
                next_seq,
                bytes,
            }),
            active: AtomicBool::new(active),
            notify: tokio::sync::Notify::new(),
            counters,
        })
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while anything is spooled and not yet acknowledged (one atomic load: the hot path).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the batches in order as one write plus one fsync (blocking: call it from
    /// `spawn_blocking`). Stops at the first batch that would grow the spool beyond its limit;
    /// that one and the rest are refused.
    pub(crate) fn append(&self, batches: &[Batch]) -> Result<Appended, SinkError> {
        let r = self.append_records(batches);
        // `/readyz` says not ready while the spool cannot be written (a full disk, say).
        self.counters
            .spool_write_failing
            .store(r.is_err(), Ordering::Relaxed);
        r
    }

    /// A write went straight to the server: a failure to spool earlier no longer stops readiness.
    pub(crate) fn server_took_writes(&self) {
        self.counters
            .spool_write_failing
            .store(false, Ordering::Relaxed);
    }

    fn append_records(&self, batches: &[Batch]) -> Result<Appended, SinkError> {
        let mut st = self.lock();
        let mut out = Vec::with_capacity(batches.iter().map(|b| b.bytes.len() + HEADER).sum());
        let mut r = Appended::default();
        for b in batches {
            let size = (b.bytes.len() + HEADER) as u64;
            if r.refused_lines > 0 || st.bytes + out.len() as u64 + size > self.limit {
                r.refused_lines += b.lines;
                continue;
            }
            encode_record(&mut out, &b.bytes, b.lines as u32);
            r.stored_lines += b.lines;
        }
        if out.is_empty() {
            return Ok(r);
        }
        if st.head.is_none() {
            let seq = st.next_seq;
            let path = self.dir.join(format!("{seq:020}.{EXT}"));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?;
            let seg = Segment {
                seq,
                path,
                bytes: 0,
                acked: None,
            };
            let ack = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(seg.ack_path())
                .map_err(|e| io_err(&seg.ack_path(), e))?;
            sync_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
            st.next_seq += 1;
            st.head = Some(Head { seg, file, ack });
            self.counters.spool_segments.fetch_add(1, Ordering::Relaxed);
        }
        let head = st.head.as_mut().expect("opened above");
        let written = head
            .file
            .write_all(&out)
            .and_then(|()| head.file.sync_data());
        if let Err(e) = written {
            // Cut a partial record off (or leave it as the torn tail of a segment that is
            // never appended to again): the next append starts a new segment.
            let head = st.head.take().expect("present");
            let _ = head.file.set_len(head.seg.bytes);
            if head.seg.bytes > 0 {
                st.sealed.push_back(head.seg.clone());
            } else {
                let _ = fs::remove_file(&head.seg.path);
                self.counters.spool_segments.fetch_sub(1, Ordering::Relaxed);
            }
            return Err(io_err(&head.seg.path, e));
        }
        head.seg.bytes += out.len() as u64;
        // After the fsync, never before: the recorded length must not run ahead of the data.
        {
            use std::os::unix::fs::FileExt as _;
            if let Err(e) = head.ack.write_all_at(&encode_ack(head.seg.bytes), 0) {
                tracing::warn!(path = %head.seg.ack_path().display(), error = %e,
                    "cannot record the spool segment's acknowledged length; a later cut of it may be taken for a torn write");
            }
        }
        head.seg.acked = Some(head.seg.bytes);
        let full = head.seg.bytes >= self.segment_bytes;
        st.bytes += out.len() as u64;
        if full {
            let head = st.head.take().expect("present");
            st.sealed.push_back(head.seg);
        }
        self.counters
            .spool_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        self.counters
            .spooled_points
            .fetch_add(r.stored_lines as u64, Ordering::Relaxed);
        self.active.store(true, Ordering::Release);
        drop(st);
        self.notify.notify_one();
        Ok(r)
    }

    /// The oldest segment to replay. When only the head has data, it is sealed first (later
    /// appends start a new segment). `None` means everything was acknowledged: the spool turns
    /// inactive and new writes go straight to the server again.
    pub(crate) fn next_segment(&self) -> Option<Segment> {
        let mut st = self.lock();
        if st.sealed.is_empty()
            && let Some(head) = st.head.take()
        {
            st.sealed.push_back(head.seg);
        }
        match st.sealed.front() {
            Some(s) => Some(s.clone()),
            None => {
                self.active.store(false, Ordering::Release);
                None
            }
        }
    }

    /// Deletes the oldest segment: every batch in it was acknowledged.
    pub(crate) fn finish_segment(&self, seg: &Segment) -> Result<(), SinkError> {
        let mut st = self.lock();
        if st.sealed.front() != Some(seg) {
            debug_assert!(false, "finish_segment out of order");
            return Ok(());
        }
        match fs::remove_file(&seg.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&seg.path, e)),
        }
        // After the segment: an `.ack` alone would report the segment as lost.
        let _ = fs::remove_file(seg.ack_path());
        st.sealed.pop_front();
        st.bytes -= seg.bytes;
        self.counters
            .spool_bytes
            .fetch_sub(seg.bytes, Ordering::Relaxed);
        self.counters.spool_segments.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(lines: &[&str]) -> Batch {
        let mut bytes = Vec::new();
        for l in lines {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        Batch {
            bytes,
            lines: lines.len(),
        }
    }

    fn payloads(buf: &[u8], s: &Scan) -> Vec<String> {
        s.records
            .iter()
            .map(|(r, _)| String::from_utf8(buf[r.clone()].to_vec()).unwrap())
            .collect()
    }

    fn three() -> Vec<u8> {
        let mut buf = Vec::new();
        encode_record(&mut buf, b"a v=1i 1\n", 1);
        encode_record(&mut buf, b"b v=2i 2\nb v=3i 3\n", 2);
        encode_record(&mut buf, b"c v=4i 4\n", 1);
        buf
    }

    #[test]
    fn records_round_trip_in_order() {
        let buf = three();
        let s = scan(&buf);
        assert_eq!(s.corrupt_bytes, 0);
        assert_eq!(s.torn_bytes, 0);
        assert_eq!(
            payloads(&buf, &s),
            vec!["a v=1i 1\n", "b v=2i 2\nb v=3i 3\n", "c v=4i 4\n"]
        );
        assert_eq!(
            s.records.iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![1, 2, 1]
        );
    }

    #[test]
    fn a_torn_tail_is_skipped_at_every_cut() {
        let buf = three();
        let second_end = buf.len() - (HEADER + 9);
        for cut in second_end..buf.len() {
            let s = scan(&buf[..cut]);
            assert_eq!(s.records.len(), 2, "cut at {cut}");
            assert_eq!(s.corrupt_bytes, 0, "cut at {cut}");
            assert_eq!(s.torn_bytes, cut - second_end, "cut at {cut}");
        }
        // garbage (zeros a crash left) after the last record
        let mut z = buf.clone();
        z.extend_from_slice(&[0; 100]);
        let s = scan(&z);
        assert_eq!((s.records.len(), s.torn_bytes), (3, 100));
    }

    #[test]
    fn a_checksum_mismatch_skips_exactly_that_record() {
        let mut buf = three();
        // flip one payload byte of the second record
        let at = HEADER + 9 + HEADER + 3;
        buf[at] ^= 0x20;
        let s = scan(&buf);
        assert_eq!(payloads(&buf, &s), vec!["a v=1i 1\n", "c v=4i 4\n"]);
        assert_eq!(s.corrupt_bytes, HEADER + 18);
        assert_eq!(s.torn_bytes, 0);
        // a corrupt length is caught by the checksum too
        let mut buf = three();
        buf[HEADER + 9 + 4] = 1;
        let s = scan(&buf);
        assert_eq!(payloads(&buf, &s), vec!["a v=1i 1\n", "c v=4i 4\n"]);
        // and a wrong line count
        let mut buf = Vec::new();
        encode_record(&mut buf, b"a v=1i 1\n", 2);
        assert_eq!(scan(&buf).records.len(), 0);
    }

    fn open(dir: &Path, limit: u64, seg: u64) -> (Spool, Arc<Counters>) {
        let c = Arc::new(Counters::default());
        (
            Spool::open(dir.to_path_buf(), limit, seg, c.clone()).unwrap(),
            c,
        )
    }

    fn read(seg: &Segment) -> Vec<String> {
        let buf = fs::read(&seg.path).unwrap();
        let s = scan(&buf);
        payloads(&buf, &s)
    }

    #[test]
    fn segments_replay_in_order_and_go_only_when_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let (sp, c) = open(tmp.path(), 1 << 20, 40);
        assert!(!sp.is_active());
        assert_eq!(sp.next_segment(), None);
        // each record is 16 + 9 bytes: a segment is sealed after the second record
        for i in 0..5 {
            let r = sp.append(&[batch(&[&format!("m v={i}i {i}")])]).unwrap();
            assert_eq!(r.stored_lines, 1);
        }
        assert!(sp.is_active());
        assert_eq!(c.spool_segments.load(Ordering::Relaxed), 3);
        assert_eq!(c.spool_bytes.load(Ordering::Relaxed), 5 * 25);
        assert_eq!(c.spooled_points.load(Ordering::Relaxed), 5);
        let mut got = Vec::new();
        let first = sp.next_segment().unwrap();
        // not finished: handed out again, file still there
        assert_eq!(sp.next_segment().unwrap(), first);
        assert!(first.path.exists());
        while let Some(seg) = sp.next_segment() {
            got.extend(read(&seg));
            assert!(sp.is_active());
            sp.finish_segment(&seg).unwrap();
            assert!(!seg.path.exists());
        }
        assert_eq!(
            got,
            (0..5)
                .map(|i| format!("m v={i}i {i}\n"))
                .collect::<Vec<_>>()
        );
        assert!(!sp.is_active());
        assert_eq!(c.spool_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(c.spool_segments.load(Ordering::Relaxed), 0);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_new_spool_replays_what_an_old_one_left() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (sp, _) = open(tmp.path(), 1 << 20, 1 << 20);
            sp.append(&[batch(&["a v=1i 1"]), batch(&["b v=1i 1"])])
                .unwrap();
        }
        // a crash during an append: half a record at the end of the file
        let seg = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == EXT))
            .unwrap();
        let mut half = Vec::new();
        encode_record(&mut half, b"c v=1i 1\n", 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&half[..20]).unwrap();
        drop(f);
        let (sp, c) = open(tmp.path(), 1 << 20, 1 << 20);
        assert!(sp.is_active());
        assert_eq!(c.spool_segments.load(Ordering::Relaxed), 1);
        sp.append(&[batch(&["d v=1i 1"])]).unwrap();
        let old = sp.next_segment().unwrap();
        let buf = fs::read(&old.path).unwrap();
        let s = scan(&buf);
        assert_eq!(payloads(&buf, &s), vec!["a v=1i 1\n", "b v=1i 1\n"]);
        assert_eq!(s.torn_bytes, 20);
        sp.finish_segment(&old).unwrap();
        let new = sp.next_segment().unwrap();
        assert!(new.seq > old.seq);
        assert_eq!(read(&new), vec!["d v=1i 1\n"]);
    }

    #[test]
    fn the_limit_refuses_whole_batches_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        // room for two 25-byte records and one 18-byte record
        let (sp, c) = open(tmp.path(), 70, 1 << 20);
        let r = sp
            .append(&[
                batch(&["a v=1i 1"]),
                batch(&["b v=1i 1"]),
                batch(&["c v=1i 1"]),
                batch(&["d"]),
            ])
            .unwrap();
        assert_eq!(
            r,
            Appended {
                stored_lines: 2,
                refused_lines: 2
            }
        );
        assert_eq!(c.spool_bytes.load(Ordering::Relaxed), 50);
        let r = sp.append(&[batch(&["x"])]).unwrap();
        assert_eq!(r.stored_lines, 1, "a small batch still fits");
        let r = sp.append(&[batch(&["y"])]).unwrap();
        assert_eq!(r.refused_lines, 1);
    }
}
