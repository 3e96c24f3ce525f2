//! Fuzzes what a hostile Monitor API answer can reach: page decoding (typed, then the
//! per-record fallback), the Connections and Machines mappings, and the encoder. Invariants:
//! nothing panics, and every encoded point is exactly one line (no raw newline inside).
#![no_main]

use citrix_harvester::citrix::model::{Connection, Machine};
use citrix_harvester::collect::connections::Connections;
use citrix_harvester::collect::machines::Machines;
use citrix_harvester::collect::{Collector, Ctx, decode_page};
use citrix_harvester::lineproto::encode_all;
use libfuzzer_sys::fuzz_target;

fn check<'de, C: Collector<State = ()>>(c: &C, records: &[C::Record<'de>]) {
    let ctx = Ctx {
        customer: "fuzz".into(),
        customer_id: "fuzz".into(),
        cycle_time: chrono::DateTime::from_timestamp(1_772_438_400, 0).unwrap(),
    };
    let mut points = Vec::new();
    for r in records {
        let _ = c.map(r, &(), &ctx, &mut points);
    }
    let mut out = Vec::new();
    let report = encode_all(&points, &mut out);
    let text = String::from_utf8(out).expect("the encoder writes UTF-8");
    assert_eq!(text.lines().count(), report.encoded, "one line per encoded point");
}

fuzz_target!(|body: &[u8]| {
    if let Ok(page) = decode_page::<Connection>(body) {
        check(&Connections, &page.value);
    }
    if let Ok(page) = decode_page::<Machine>(body) {
        check(&Machines, &page.value);
    }
});
