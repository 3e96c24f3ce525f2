//! OData v4 query building and the paging guard. A [`Query`] renders `$select`, `$expand`,
//! `$filter`, `$orderby`, `$top`, `$count` into a URL; [`PageGuard`] follows
//! `@odata.nextLink`s and stops loops and endless paging with a clear error. Nothing here does
//! I/O: the client fetches, this decides what to fetch next.

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use std::collections::HashSet;

/// Characters escaped in a query-option value. OData's own syntax characters (`$ ( ) ; , / ' =`)
/// stay literal, as in Citrix's samples; space, `&`, `#`, `+` and `%` must not.
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

/// One OData collection query, e.g. `Connections?$filter=ModifiedDate ge ...&$expand=...`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub entity_set: &'static str,
    pub select: Vec<&'static str>,
    pub expand: Option<String>,
    pub filter: Option<String>,
    pub orderby: Option<String>,
    pub top: Option<u64>,
    pub count: bool,
}

impl Query {
    pub fn new(entity_set: &'static str) -> Self {
        Query {
            entity_set,
            ..Default::default()
        }
    }

    /// The absolute URL of the first page under `base` (e.g. `https://api.cloud.com/monitorodata`).
    pub fn url(&self, base: &str) -> String {
        let mut opts: Vec<(&str, String)> = Vec::new();
        if !self.select.is_empty() {
            opts.push(("$select", self.select.join(",")));
        }
        if let Some(e) = &self.expand {
            opts.push(("$expand", e.clone()));
        }
        if let Some(f) = &self.filter {
            opts.push(("$filter", f.clone()));
        }
        if let Some(o) = &self.orderby {
            opts.push(("$orderby", o.clone()));
        }
        if let Some(t) = self.top {
            opts.push(("$top", t.to_string()));
        }
        if self.count {
            opts.push(("$count", "true".into()));
        }
        let mut url = format!("{}/{}", base.trim_end_matches('/'), self.entity_set);
        for (i, (k, v)) in opts.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.extend(utf8_percent_encode(v, VALUE));
        }
        url
    }
}

/// An OData v4 date-time literal: unquoted ISO-8601 UTC (citrix-monitor-api.md §5.2), with the
/// service's own precision (.NET ticks: up to 7 fractional digits, trailing zeros trimmed), so a
/// watermark taken from a row compares equal to that row — `ge` then re-reads exactly the rows
/// sharing it, no more and no fewer.
pub fn datetime_literal(t: DateTime<Utc>) -> String {
    let base = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let ticks = t.timestamp_subsec_nanos() / 100;
    if ticks == 0 {
        return base;
    }
    let frac = format!("{ticks:07}");
    let frac = frac.trim_end_matches('0');
    format!("{}.{frac}Z", base.trim_end_matches('Z'))
}

/// Why paging stopped before the end.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PagingError {
    #[error("the service returned a nextLink it had returned before ({url}): paging loop")]
    Loop { url: String },
    #[error("more than {max} pages: stopping (raise citrix.max_pages if this is a real backfill)")]
    TooManyPages { max: usize },
    #[error(
        "page {page} brought only rows this walk had read already ({rows} rows) and has a \
         nextLink: the service is paging in a loop; stopping"
    )]
    OnlyRepeats { page: usize, rows: usize },
    #[error("nextLink `{url}` is not on the Monitor host {expected}")]
    ForeignHost { url: String, expected: String },
}

/// Follows `@odata.nextLink`s: refuses a link seen before (Citrix's own sample guards against
/// identical consecutive links), a link to another host (the token must not leak), and more
/// than `max_pages` pages.
#[derive(Debug)]
pub struct PageGuard {
    seen: HashSet<String>,
    pages: usize,
    max_pages: usize,
    origin: String,
}

impl PageGuard {
    pub fn new(first_url: &str, max_pages: usize) -> Self {
        let mut seen = HashSet::new();
        seen.insert(first_url.to_string());
        PageGuard {
            seen,
            pages: 1,
            max_pages,
            origin: origin(first_url),
        }
    }

    /// Validates the next link and counts it as a page to fetch.
    pub fn next(&mut self, link: &str) -> Result<(), PagingError> {
        if origin(link) != self.origin {
            return Err(PagingError::ForeignHost {
                url: link.to_string(),
                expected: self.origin.clone(),
            });
        }
        if !self.seen.insert(link.to_string()) {
            return Err(PagingError::Loop {
                url: link.to_string(),
            });
        }
        self.pages += 1;
        if self.pages > self.max_pages {
            return Err(PagingError::TooManyPages {
                max: self.max_pages,
            });
        }
        Ok(())
    }
}

fn origin(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(p) => p.origin().ascii_serialization(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn renders_options_with_odata_syntax_literal() {
        let mut q = Query::new("Connections");
        q.select = vec!["Id", "ModifiedDate"];
        q.expand = Some("Session($select=SessionKey;$expand=User($select=UserName))".into());
        q.filter = Some(format!(
            "ModifiedDate ge {}",
            datetime_literal(Utc.with_ymd_and_hms(2024, 7, 30, 0, 0, 0).unwrap())
        ));
        q.orderby = Some("ModifiedDate,Id".into());
        q.count = true;
        assert_eq!(
            q.url("https://api.cloud.com/monitorodata/"),
            "https://api.cloud.com/monitorodata/Connections?$select=Id,ModifiedDate\
             &$expand=Session($select=SessionKey;$expand=User($select=UserName))\
             &$filter=ModifiedDate%20ge%202024-07-30T00:00:00Z&$orderby=ModifiedDate,Id&$count=true"
        );
    }

    #[test]
    fn date_literals_keep_tick_precision() {
        let t: DateTime<Utc> = "2024-07-31T11:22:37.4731234Z".parse().unwrap();
        assert_eq!(datetime_literal(t), "2024-07-31T11:22:37.4731234Z");
        let t: DateTime<Utc> = "2024-07-31T11:22:37.4Z".parse().unwrap();
        assert_eq!(datetime_literal(t), "2024-07-31T11:22:37.4Z");
        let t: DateTime<Utc> = "2024-07-31T11:22:37.000000099Z".parse().unwrap();
        assert_eq!(
            datetime_literal(t),
            "2024-07-31T11:22:37Z",
            "below a tick is cut, never rounded up"
        );
    }

    #[test]
    fn string_literals_with_ampersand_are_escaped() {
        let mut q = Query::new("Users");
        q.filter = Some("UserName eq 'a&b #1+'".into());
        assert_eq!(
            q.url("http://h/m"),
            "http://h/m/Users?$filter=UserName%20eq%20'a%26b%20%231%2B'"
        );
    }

    #[test]
    fn guard_stops_loops_foreign_hosts_and_endless_paging() {
        let first = "https://api.cloud.com/monitorodata/Machines";
        let mut g = PageGuard::new(first, 3);
        assert_eq!(g.next(&format!("{first}?$skip=100")), Ok(()));
        assert!(matches!(
            g.next(&format!("{first}?$skip=100")),
            Err(PagingError::Loop { .. })
        ));
        assert!(matches!(
            g.next("https://evil.example/monitorodata/Machines?$skip=200"),
            Err(PagingError::ForeignHost { .. })
        ));
        assert_eq!(g.next(&format!("{first}?$skip=200")), Ok(()));
        assert_eq!(
            g.next(&format!("{first}?$skip=300")),
            Err(PagingError::TooManyPages { max: 3 })
        );
    }
}
