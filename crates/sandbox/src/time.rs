//! Wall-clock formatting without a date crate: state files and logs need
//! RFC 3339 UTC timestamps, and nothing else about calendars.

use std::time::{SystemTime, UNIX_EPOCH};

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Format seconds and nanoseconds since the epoch as RFC 3339 in UTC.
/// With `nanos` the fraction is printed with nine digits (Go's RFC3339Nano
/// trims zeros; runc's state files carry nine digits, as here).
pub fn rfc3339(secs: i64, nsec: u32, nanos: bool) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if nanos {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{nsec:09}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }
}

/// The current time as RFC 3339 (seconds precision), as runc's JSON logs use.
pub fn now_rfc3339() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(t.as_secs() as i64, t.subsec_nanos(), false)
}

/// The current time with nanoseconds, as state `created` fields use.
pub fn now_rfc3339_nanos() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(t.as_secs() as i64, t.subsec_nanos(), true)
}

/// Monotonic nanoseconds, for phase durations.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(rfc3339(0, 0, false), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 0, false), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 5, true),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(rfc3339(-86_400, 0, false), "1969-12-31T00:00:00Z");
    }
}
