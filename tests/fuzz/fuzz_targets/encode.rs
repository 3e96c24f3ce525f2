//! Fuzzes the line-protocol encoder with arbitrary names and values: nothing panics, a refused
//! point leaves the output untouched, and an accepted point is exactly one line.
#![no_main]

use citrix_harvester::lineproto::{FieldValue, Point, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, String, String, String, String, f64, i64)| {
    let (m, tk, tv, fk, fv, f, i) = input;
    let p = Point::new(m, i)
        .tag(tk, tv)
        .field(fk.clone(), FieldValue::Str(fv.into()))
        .field(format!("{fk}_f"), f)
        .field("i", i);
    let mut out = b"keep".to_vec();
    match encode(&p, &mut out) {
        Ok(()) => {
            let line = std::str::from_utf8(&out[4..]).expect("UTF-8");
            assert!(line.ends_with('\n'));
            assert_eq!(line.matches('\n').count(), 1, "exactly one line: {line:?}");
        }
        Err(_) => assert_eq!(out, b"keep"),
    }
});
