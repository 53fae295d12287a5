//! The Functions host's timer invocation body and its dates on arbitrary input:
//! `parse_timer_invocation` on the bytes, and `parse_host_date` on the bytes as text. Neither
//! may panic or hang, and a date they return is a real one (after the .NET minimum, within the
//! years RFC 3339 can write).
#![no_main]

use apikey_rotator::functions::host::{parse_host_date, parse_timer_invocation};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

fn check(date: Option<OffsetDateTime>) {
    if let Some(d) = date {
        assert!(
            (2..=9999).contains(&d.year()),
            "not a real date: {d}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = parse_timer_invocation(data) {
        check(t.last);
        check(t.next);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check(parse_host_date(text));
        // The dates of a body are usually short: try the text's first line alone as well.
        if let Some(line) = text.lines().next() {
            check(parse_host_date(line.trim()));
        }
    }
});
