//! Redaction of server text (`Secret::redact`): for any secret without `*` and any text, no
//! panic, and the secret — in any of the spellings a server may echo — is gone from the result.
#![no_main]

use citrix_harvester::secret::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the secret, the rest the server's text (which may quote it).
    let (secret, rest) = text.split_once('\n').unwrap_or((text, ""));
    if secret.is_empty() || secret.contains('*') {
        return;
    }
    let server = format!("{rest}{secret}{rest}");
    let out = Secret::new(secret).redact(&server);
    assert!(!out.contains(secret), "secret left in {out:?}");
});
