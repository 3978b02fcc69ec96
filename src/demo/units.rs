//! Time as the report reads it: CPU and wall durations for people, instants as Unix nanoseconds
//! (the unit of OTLP timestamps and pprof's `time_nanos`, so captures and report line up).

use std::time::{SystemTime, UNIX_EPOCH};

/// `1.23 s`, `45 ms`, `0 s`.
pub fn fmt_ns(ns: i64) -> String {
    let ns = ns.max(0) as f64;
    if ns == 0.0 {
        "0 s".to_owned()
    } else if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.0} ms", ns / 1e6)
    } else {
        format!("{:.0} µs", ns / 1e3)
    }
}

pub fn percent(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_ns(0), "0 s");
        assert_eq!(fmt_ns(1_500_000_000), "1.50 s");
        assert_eq!(fmt_ns(40_000_000), "40 ms");
        assert_eq!(fmt_ns(12_000), "12 µs");
    }
}
