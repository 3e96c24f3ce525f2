//! A secret value (client secret, InfluxDB token, password) that prints as `***` in Debug and
//! Display, so that it cannot reach a log line or an error message by accident. It owns nothing
//! else: where a secret comes from (env, file, systemd credential) is config's business.

use std::fmt;

/// A string that must never be printed. Use [`Secret::expose`] only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for building a request body or header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of this secret replaced by `***`: as it is, form-encoded,
    /// percent-encoded (either case of hex) and JSON-escaped, the forms in which a server that
    /// quotes our request back (an error page, an `error_description`) would show it.
    pub fn redact(&self, text: &str) -> String {
        redact_all(text, &[self])
    }
}

/// `text` with every form of each of `secrets` replaced by `***` (see [`Secret::redact`]).
/// Server answers pass through here before they reach a log line or `check`'s output.
pub fn redact_all(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.0.is_empty() {
            continue;
        }
        for form in forms(&s.0) {
            if out.contains(&form) {
                out = out.replace(&form, "***");
            }
        }
    }
    out
}

/// The spellings of a secret that may come back in a server's text.
fn forms(raw: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(raw.as_bytes()).collect();
    let pct: String =
        percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC).to_string();
    // Inside a JSON string: the quoted form without its two quotes (not trim_matches, which
    // would eat an escaped quote at the end too).
    let quoted = serde_json::to_string(raw).unwrap_or_default();
    let json = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(raw)
        .to_string();
    let mut v = vec![
        raw.to_string(),
        form.clone(),
        lower_hex(&form),
        pct.clone(),
        lower_hex(&pct),
        json,
    ];
    v.sort_by_key(|f| std::cmp::Reverse(f.len()));
    v.dedup();
    v
}

/// Lower-cases the hex digits of `%XX` escapes only.
fn lower_hex(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.extend([
                b'%',
                b[i + 1].to_ascii_lowercase(),
                b[i + 2].to_ascii_lowercase(),
            ]);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn redacts_every_spelling_a_server_may_echo() {
        let s = Secret::new("p@ss w/rd+\"x\"");
        let echoed = [
            "p@ss w/rd+\"x\"",
            "p%40ss+w%2Frd%2B%22x%22",
            "p%40ss+w%2frd%2b%22x%22",
            "p%40ss%20w%2Frd%2B%22x%22",
            "p%40ss%20w%2frd%2b%22x%22",
            "p@ss w/rd+\\\"x\\\"",
        ];
        for e in echoed {
            let text = format!("error: client_secret={e}&grant_type=client_credentials");
            let r = s.redact(&text);
            assert_eq!(
                r, "error: client_secret=***&grant_type=client_credentials",
                "{e}"
            );
        }
        let token = Secret::new("eyJ0.abc");
        let r = redact_all("Authorization: CWSAuth bearer=eyJ0.abc", &[&s, &token]);
        assert_eq!(r, "Authorization: CWSAuth bearer=***");
        assert_eq!(Secret::new("").redact("keep"), "keep");
    }
}
