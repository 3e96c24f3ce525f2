//! Coalescing writes across tenants for the HTTP targets. Every `write_encoded` call becomes a
//! submission in one byte-bounded queue and waits for its own answer; one dispatcher takes a
//! place from the concurrency limiter (`concurrency`), then packs the queued lines of as many
//! submissions as fit into one request of at most `batch_size` lines and `batch_bytes` bytes (a
//! single longer line goes alone) and sends it on its own task. No timer: while every place is
//! taken, submissions pile up and the next request carries many of them; when the output is
//! idle a submission goes at once. A full queue makes the caller wait (back pressure), never
//! drops. Each submission is answered with its own exact report once every one of its lines
//! was delivered (2xx), refused for good (counted, dead-lettered), or appended to the spool and
//! fsynced (one append and one fsync per request, for all the submissions in it); the HTTP
//! writer attributes each line's fate to its submission. Spool ordering is kept: while the
//! spool holds anything, a request goes to the spool instead of the server. It owns the queue,
//! the dispatcher and the attribution; it must not decide what a status means (`classify`),
//! retry (`influx`), or encode.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::concurrency::Limiter;
use super::influx::{HttpWriter, Owner};
use super::replay::keep;
use super::spool::{Batch, Spool};
use super::{Counters, Origin, SinkError, WriteReport};

/// The coalescing writer of one HTTP sink.
pub(crate) struct Engine {
    pub(crate) writer: Arc<HttpWriter>,
    pub(crate) spool: Option<Arc<Spool>>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) description: String,
    pub(crate) batch_size: usize,
    pub(crate) batch_bytes: usize,
    queue: Mutex<VecDeque<Queued>>,
    /// Woken when a submission is queued or the sink is dropped.
    queued: Notify,
    /// Room in the queue, in bytes; a submission holds its bytes until it is answered.
    room: Arc<Semaphore>,
    queue_limit: usize,
    closed: AtomicBool,
    /// The dispatcher task, started on the first write (inside the runtime) and again if the
    /// runtime that ran it has gone.
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A submission's lines not yet taken into a request.
struct Queued {
    sub: Arc<Submission>,
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// The first line not yet taken.
    next: usize,
}

impl Queued {
    fn line_start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }
}

/// One `write_encoded` call, shared by the requests that carry its lines.
struct Submission {
    tenant: Option<String>,
    entity: Option<String>,
    state: Mutex<SubState>,
}

struct SubState {
    report: WriteReport,
    /// Lines whose fate is not known yet.
    outstanding: usize,
    /// The first error (then the lines not yet sent are not sent: the call fails).
    failure: Option<SinkError>,
    /// Lines the spool refused (full).
    spool_refused: usize,
    done: Option<oneshot::Sender<Result<WriteReport, SinkError>>>,
    /// Its bytes in the queue, given back with the answer.
    room: Option<OwnedSemaphorePermit>,
}

/// A part of one submission inside a request.
struct Piece {
    sub: Arc<Submission>,
    /// Line indexes in the request.
    lines: Range<usize>,
}

/// One request's worth of lines.
struct Request {
    buf: Vec<u8>,
    ends: Vec<usize>,
    pieces: Vec<Piece>,
    /// The spool held data when the request was formed: append behind it.
    to_spool: bool,
}

impl Submission {
    fn origin(&self) -> Option<Origin<'_>> {
        Some(Origin {
            tenant: self.tenant.as_deref()?,
            entity: self.entity.as_deref().unwrap_or(""),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_failed(&self) -> bool {
        self.lock().failure.is_some()
    }

    /// Records the fate of `lines` of its lines; answers the caller when none is left.
    fn settle(&self, engine: &Engine, add: &WriteReport, lines: usize, fate: Fate<'_>) {
        let mut st = self.lock();
        st.report.written += add.written;
        st.report.rejected += add.rejected;
        st.report.dropped += add.dropped;
        st.report.spooled += add.spooled;
        st.outstanding = st.outstanding.saturating_sub(lines);
        match fate {
            Fate::Done => {}
            Fate::Failed(e) if st.failure.is_none() => st.failure = Some(e.duplicate()),
            Fate::Failed(_) => {}
            Fate::SpoolFull(n) => st.spool_refused += n,
        }
        if st.outstanding > 0 {
            return;
        }
        let report = st.report;
        let result = if let Some(e) = &st.failure {
            Err(e.with_report(report))
        } else if st.spool_refused > 0 {
            Err(SinkError::SpoolFull {
                target: engine.description.clone(),
                limit: engine.spool.as_ref().map_or(0, |s| s.limit()),
                not_stored: st.spool_refused,
                report,
            })
        } else {
            Ok(report)
        };
        if let Some(tx) = st.done.take() {
            // The caller may have stopped waiting (shutdown): its lines were handled anyway.
            let _ = tx.send(result);
        }
        st.room = None;
    }
}

/// The pieces of a request not settled yet; dropping it settles them as failed.
struct Unsettled<'a> {
    engine: &'a Engine,
    pieces: Vec<(Arc<Submission>, usize)>,
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if self.pieces.is_empty() {
            return;
        }
        let e = SinkError::Stopped(
            "the write request ended before its answer (a panic, or the runtime shut down)".into(),
        );
        tracing::error!(sink = %self.engine.description, writes = self.pieces.len(), error = %e,
            "write request ended without an answer; its writes fail (not acknowledged)");
        for (sub, lines) in self.pieces.drain(..) {
            sub.settle(
                self.engine,
                &WriteReport::default(),
                lines,
                Fate::Failed(&e),
            );
        }
    }
}

/// What happened to the lines being settled, beyond the report.
enum Fate<'a> {
    Done,
    Failed(&'a SinkError),
    SpoolFull(usize),
}

impl Engine {
    pub(crate) fn new(
        writer: Arc<HttpWriter>,
        spool: Option<Arc<Spool>>,
        limiter: Arc<Limiter>,
        counters: Arc<Counters>,
        description: String,
        (batch_size, batch_bytes, queue_bytes): (usize, usize, usize),
    ) -> Engine {
        Engine {
            writer,
            spool,
            limiter,
            counters,
            description,
            batch_size,
            batch_bytes,
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            room: Arc::new(Semaphore::new(queue_bytes)),
            queue_limit: queue_bytes,
            closed: AtomicBool::new(false),
            dispatcher: Mutex::new(None),
        }
    }

    /// Bytes of the submissions not answered yet (queued or in requests in flight).
    pub(crate) fn queue_bytes(&self) -> usize {
        self.queue_limit
            .saturating_sub(self.room.available_permits())
    }

    /// The sink is dropped: the dispatcher ends once the queue is empty.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.queued.notify_one();
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the lines and waits for their answer.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        buf: Vec<u8>,
        ends: Vec<usize>,
        origin: Option<Origin<'_>>,
    ) -> Result<WriteReport, SinkError> {
        if ends.is_empty() {
            return Ok(WriteReport::default());
        }
        self.ensure_dispatcher();
        // A submission larger than the whole queue waits for an empty queue, then goes alone.
        let need = buf.len().clamp(1, self.queue_limit);
        let need = u32::try_from(need).unwrap_or(u32::MAX);
        let room = self
            .room
            .clone()
            .acquire_many_owned(need)
            .await
            .expect("the queue's semaphore is never closed");
        let (tx, rx) = oneshot::channel();
        let sub = Arc::new(Submission {
            tenant: origin.map(|o| o.tenant.to_owned()),
            entity: origin.map(|o| o.entity.to_owned()),
            state: Mutex::new(SubState {
                report: WriteReport::default(),
                outstanding: ends.len(),
                failure: None,
                spool_refused: 0,
                done: Some(tx),
                room: Some(room),
            }),
        });
        self.queue().push_back(Queued {
            sub,
            buf,
            ends,
            next: 0,
        });
        self.queued.notify_one();
        rx.await.unwrap_or_else(|_| {
            Err(SinkError::Stopped(
                "the output's writer stopped before answering (runtime shut down or a task panicked)"
                    .into(),
            ))
        })
    }

    fn ensure_dispatcher(self: &Arc<Self>) {
        let mut d = self.dispatcher.lock().unwrap_or_else(|p| p.into_inner());
        if d.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        *d = Some(tokio::spawn(dispatch(self.clone())));
    }

    /// Takes the next request's lines from the front of the queue.
    fn take(&self) -> Option<Request> {
        let to_spool = self.spool.as_ref().is_some_and(|s| s.is_active());
        let mut abandoned = Vec::new();
        let req = {
            let mut q = self.queue();
            // A write an earlier request of which failed for good fails as a whole: the rest
            // of its lines are not sent (as when each write sent its own requests).
            q.retain(|item| {
                if item.sub.has_failed() {
                    abandoned.push((item.sub.clone(), item.ends.len() - item.next));
                    return false;
                }
                true
            });
            // First the plan (which lines of which writes), so the request is allocated once.
            let mut plan: Vec<(usize, Range<usize>)> = Vec::new();
            let (mut size, mut count) = (0usize, 0usize);
            for (k, item) in q.iter().enumerate() {
                let mut i = item.next;
                while i < item.ends.len() {
                    let len = item.ends[i] - item.line_start(i);
                    if count >= self.batch_size || (count > 0 && size + len > self.batch_bytes) {
                        break;
                    }
                    size += len;
                    count += 1;
                    i += 1;
                }
                if i > item.next {
                    plan.push((k, item.next..i));
                }
                if i < item.ends.len() || count >= self.batch_size || size >= self.batch_bytes {
                    break; // the request is full
                }
            }
            let mut req = Request {
                buf: Vec::with_capacity(size),
                ends: Vec::with_capacity(count),
                pieces: Vec::with_capacity(plan.len()),
                to_spool,
            };
            for (k, lines) in plan {
                let item = &mut q[k];
                let from = item.line_start(lines.start);
                let base = req.buf.len();
                req.buf
                    .extend_from_slice(&item.buf[from..item.ends[lines.end - 1]]);
                let at = req.ends.len();
                req.ends
                    .extend(item.ends[lines.clone()].iter().map(|e| e - from + base));
                req.pieces.push(Piece {
                    sub: item.sub.clone(),
                    lines: at..req.ends.len(),
                });
                item.next = lines.end;
            }
            // The plan covers a prefix of the queue: what it took whole is at the front.
            while q.front().is_some_and(|f| f.next == f.ends.len()) {
                q.pop_front();
            }
            req
        };
        for (sub, left) in abandoned {
            sub.settle(self, &WriteReport::default(), left, Fate::Done);
        }
        (!req.ends.is_empty()).then_some(req)
    }

    /// Sends (or spools) one request and settles every piece of it.
    async fn send(&self, req: Request) {
        let Request {
            buf,
            ends,
            pieces,
            to_spool,
        } = req;
        // A panic (or the runtime going away) must not leave a caller waiting forever.
        let mut guard = Unsettled {
            engine: self,
            pieces: pieces
                .iter()
                .map(|p| (p.sub.clone(), p.lines.len()))
                .collect(),
        };
        let mut reports = vec![WriteReport::default(); pieces.len()];
        // Per piece: the request's line ranges that go to the spool.
        let mut spool_lines: Vec<Vec<Range<usize>>> = vec![Vec::new(); pieces.len()];
        let mut failure: Option<SinkError> = None;
        let mut cause: Option<String> = None;
        if to_spool {
            for (i, p) in pieces.iter().enumerate() {
                spool_lines[i].push(p.lines.clone());
            }
        } else {
            let owners: Vec<Owner<'_>> = pieces
                .iter()
                .map(|p| Owner {
                    end: p.lines.end,
                    origin: p.sub.origin(),
                })
                .collect();
            match self
                .writer
                .deliver(&buf, &ends, &owners, &mut reports)
                .await
            {
                Ok(()) => {
                    if let Some(s) = &self.spool {
                        // The server takes points again: a spool that failed earlier no longer matters.
                        s.server_took_writes();
                    }
                }
                Err(u) => {
                    for (i, p) in pieces.iter().enumerate() {
                        spool_lines[i] = u
                            .remaining
                            .iter()
                            .map(|r| r.start.max(p.lines.start)..r.end.min(p.lines.end))
                            .filter(|r| !r.is_empty())
                            .collect();
                    }
                    if self.spool.is_some() {
                        cause = Some(u.error.to_string());
                    } else {
                        failure = Some(u.error);
                    }
                }
            }
        }
        let mut refused = vec![0usize; pieces.len()];
        let mut spool_err = None;
        if let (Some(spool), None) = (&self.spool, &failure) {
            match self
                .spool_pieces(
                    spool,
                    &buf,
                    &ends,
                    &pieces,
                    &spool_lines,
                    &mut reports,
                    cause,
                )
                .await
            {
                Ok(r) => refused = r,
                Err(e) => spool_err = Some(e),
            }
        }
        let failure = failure.as_ref().or(spool_err.as_ref());
        let fates = spool_lines
            .iter()
            .zip(&refused)
            .map(|(lines, &n)| match failure {
                Some(e) if !lines.is_empty() => Fate::Failed(e),
                _ if n > 0 => Fate::SpoolFull(n),
                _ => Fate::Done,
            });
        guard.pieces.clear();
        for ((p, r), fate) in pieces.iter().zip(&reports).zip(fates) {
            p.sub.settle(self, r, p.lines.len(), fate);
        }
    }

    /// Appends the pieces' undelivered lines to the spool (one record per piece, one fsync)
    /// and counts what was stored in each piece's report. Returns the lines of each piece the
    /// full spool refused, or the error if the append failed (nothing was stored then).
    #[allow(clippy::too_many_arguments)]
    async fn spool_pieces(
        &self,
        spool: &Arc<Spool>,
        buf: &[u8],
        ends: &[usize],
        pieces: &[Piece],
        spool_lines: &[Vec<Range<usize>>],
        reports: &mut [WriteReport],
        cause: Option<String>,
    ) -> Result<Vec<usize>, SinkError> {
        let mut batches = Vec::new();
        let mut owner = Vec::new();
        for (i, lines) in spool_lines.iter().enumerate() {
            if lines.is_empty() {
                continue;
            }
            let (bytes, left) = keep(buf, ends, lines);
            batches.push(Batch {
                bytes,
                lines: left.len(),
            });
            owner.push(i);
        }
        let mut refused = vec![0usize; pieces.len()];
        if batches.is_empty() {
            return Ok(refused);
        }
        let total: usize = batches.iter().map(|b| b.lines).sum();
        if let Some(cause) = &cause {
            let first = pieces[owner[0]].sub.origin();
            tracing::warn!(tenant = first.map(|o| o.tenant), entity = first.map(|o| o.entity),
                writes = owner.len(), sink = %self.description, points = total, error = %cause,
                "server unreachable or refusing; spooling to disk until it answers again");
        }
        let sp = spool.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let r = sp.append(&batches);
            (r, batches.into_iter().map(|b| b.lines).collect::<Vec<_>>())
        })
        .await;
        let (appended, sizes) = match appended {
            Ok((Ok(a), sizes)) => (a, sizes),
            Ok((Err(e), _)) => return Err(e),
            Err(e) => {
                return Err(SinkError::Spool {
                    path: spool.dir().to_path_buf(),
                    source: std::io::Error::other(format!("spool task failed: {e}")),
                });
            }
        };
        // The spool stores whole records in order up to the first that does not fit.
        let mut stored = appended.stored_lines;
        for (k, n) in owner.iter().zip(sizes) {
            if n <= stored {
                reports[*k].spooled += n;
                stored -= n;
            } else {
                refused[*k] += n;
                stored = 0;
            }
        }
        if appended.refused_lines > 0 {
            self.counters
                .spool_full_points
                .fetch_add(appended.refused_lines as u64, Ordering::Relaxed);
            tracing::error!(sink = %self.description, not_stored = appended.refused_lines,
                spool_bytes = self.counters.spool_bytes.load(Ordering::Relaxed),
                "spool is full (buffer_limit): points not stored; replayable entities read them again, snapshot points are lost");
        }
        Ok(refused)
    }
}

/// Takes a place, then as many queued lines as one request holds, and sends them on their
/// own task; ends when the sink is dropped ([`Engine::close`]) and the queue is empty.
async fn dispatch(e: Arc<Engine>) {
    loop {
        loop {
            let wait = e.queued.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if !e.queue().is_empty() {
                break;
            }
            if e.closed.load(Ordering::Acquire) {
                return;
            }
            wait.await;
        }
        let permit = e.limiter.acquire().await;
        let Some(req) = e.take() else { continue };
        let engine = e.clone();
        tokio::spawn(async move {
            engine.send(req).await;
            drop(permit);
        });
    }
}
