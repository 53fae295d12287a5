//! The one formatter of times the rotator writes out: RFC 3339 in UTC (`Z`), to the precision
//! the reader is promised.
//!
//! The report (PRODUCT.md: `"timestamp": "2026-11-22T06:00:01.123Z"`), the Key Vault tag
//! `keyExpiresAt` and the application APIs' `expiresAt` carry exactly three fraction digits;
//! the ToolkitApp answer carries the digits the time has and no fraction when it has none
//! (`2026-11-22T06:00:01.5Z`), as it always has.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// How many digits of the second's fraction are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// Always three (milliseconds; anything finer is cut).
    Millis,
    /// As many as the time needs, none when it falls on a whole second.
    AsNeeded,
}

/// `t` as RFC 3339 in UTC with `fraction` digits of the second.
pub fn format(t: OffsetDateTime, fraction: Fraction) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    match fraction {
        Fraction::Millis => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        // Every year the rotator meets (0000-9999) formats; the fallback never shows.
        Fraction::AsNeeded => t
            .format(&Rfc3339)
            .unwrap_or_else(|_| format(t, Fraction::Millis)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn millis_always_has_three_digits_and_z() {
        let f = |t| format(t, Fraction::Millis);
        assert_eq!(
            f(datetime!(2026-11-22 06:00:01.123 UTC)),
            "2026-11-22T06:00:01.123Z"
        );
        assert_eq!(
            f(datetime!(2026-11-22 06:00:01 UTC)),
            "2026-11-22T06:00:01.000Z"
        );
        assert_eq!(
            f(datetime!(2026-11-22 06:00:01.123456 UTC)),
            "2026-11-22T06:00:01.123Z"
        );
        assert_eq!(
            f(datetime!(2026-11-22 07:00:01.5 +01:00)),
            "2026-11-22T06:00:01.500Z"
        );
    }

    #[test]
    fn as_needed_drops_what_is_not_there() {
        let f = |t| format(t, Fraction::AsNeeded);
        assert_eq!(
            f(datetime!(2026-11-22 06:00:01.5 UTC)),
            "2026-11-22T06:00:01.5Z"
        );
        assert_eq!(
            f(datetime!(2026-11-22 06:00:01 UTC)),
            "2026-11-22T06:00:01Z"
        );
        assert_eq!(
            f(datetime!(2026-11-22 07:00:01.25 +01:00)),
            "2026-11-22T06:00:01.25Z"
        );
    }
}
