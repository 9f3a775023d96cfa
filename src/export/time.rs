//! Times as people read them: UTC dates and short durations.

use crate::capture::Timestamp;

/// A capture time as a UTC date (None past chrono's range).
pub fn datetime(ts: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = ts.0.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
}

/// `2026-11-26 21:30:01.123456` (UTC).
pub fn utc(ts: Timestamp) -> String {
    match datetime(ts) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        None => ts.to_string(),
    }
}

/// `0.512s`, `12.0s`, `3m04s`, `2h05m`.
pub fn duration(nanos: u64) -> String {
    let secs = nanos as f64 / 1e9;
    if secs < 10.0 {
        format!("{secs:.3}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
    } else {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as u64,
            (secs as u64 % 3600) / 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(
            utc(Timestamp::from_parts(1_700_000_000, 123_456_789)),
            "2023-11-14 22:13:20.123456"
        );
        assert_eq!(duration(512_000_000), "0.512s");
        assert_eq!(duration(12_040_000_000), "12.0s");
        assert_eq!(duration(184_000_000_000), "3m04s");
        assert_eq!(duration(7_500_000_000_000), "2h05m");
    }
}
