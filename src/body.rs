//! Bounded reading of HTTP response bodies. Every body the harvester reads from the network
//! (Monitor pages, token answers, error pages, the output server's answers) goes through
//! [`read_limited`], which counts the *decoded* bytes while they stream in (a 4 MB gzip answer
//! can inflate to gigabytes) and stops at the limit, and which yields to the runtime between
//! chunks so that a timeout around it fires even when decompression never waits on the socket
//! (DESIGN.md rule 8). It owns nothing else: what a limit should be is the caller's decision.

/// Why a body was not read completely.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes (decoded); refused")]
    TooLarge { limit: usize },
    #[error("reading the answer failed: {0}")]
    Read(String),
    /// The body outgrew its reservation of the byte budget and the budget had no more free:
    /// the caller gives everything back, waits for `needed` and reads the page again.
    #[error("the answer needs {needed} bytes of the body budget; not free now")]
    OverBudget { needed: usize },
}

/// Reads the whole body of `resp`, or fails as soon as more than `limit` decoded bytes arrived.
/// A `Content-Length` above the limit fails before anything is read.
pub async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    read_bounded(resp, limit, None).await
}

/// Like [`read_limited`], with every byte read covered by `reservation` (the byte budget of
/// bodies in processing): when the body outgrows it, the reservation grows without waiting
/// (doubling, up to `limit`); when the budget has no more free, this stops with
/// [`BodyError::OverBudget`] and the partial body is dropped. It never waits for the budget
/// while holding part of it (see budget.rs).
pub async fn read_reserved(
    resp: reqwest::Response,
    limit: usize,
    reservation: &mut crate::budget::Reservation,
) -> Result<Vec<u8>, BodyError> {
    read_bounded(resp, limit, Some(reservation)).await
}

/// The one reader behind both: `limit` always, `reservation` when the body is budgeted.
async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    mut reservation: Option<&mut crate::budget::Reservation>,
) -> Result<Vec<u8>, BodyError> {
    // Content-Length is of the encoded body; only a plain body's length is a promise about the
    // decoded size (reqwest drops the header when it decompresses).
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let reserved = reservation.as_ref().map_or(usize::MAX, |r| r.bytes());
    let mut out: Vec<u8> = Vec::with_capacity(
        resp.content_length()
            .map_or(0, |n| n as usize)
            .min(reserved)
            .min(limit)
            .min(1 << 20),
    );
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| BodyError::Read(error_chain(&e)))?;
        let Some(chunk) = chunk else { break };
        let needed = out.len() + chunk.len();
        if needed > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if let Some(r) = reservation.as_deref_mut().filter(|r| needed > r.bytes()) {
            let generous = needed.max(r.bytes().saturating_mul(2)).min(limit);
            if !r.try_grow(generous) && !r.grow(needed).await {
                return Err(BodyError::OverBudget { needed: generous });
            }
        }
        out.extend_from_slice(&chunk);
        // A decoder fed from a buffer never returns Pending; this lets timeouts run.
        tokio::task::consume_budget().await;
    }
    Ok(out)
}

/// Reads at most `limit` bytes of an error body for a message; what does not fit, and a body
/// that cannot be read, are simply left out (the status already says what happened).
pub async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
        tokio::task::consume_budget().await;
    }
    out
}

/// The start of a body, for error messages (an HTML error page must not flood the log).
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > 300 {
        s.push('…');
    }
    s
}

/// For a 3xx: its `Location` as text (redirects are never followed; the error names it).
pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// An error and its sources on one line (reqwest hides the useful part in `source()`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
