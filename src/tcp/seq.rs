//! TCP sequence numbers: 32-bit counters that wrap. Every comparison goes through this type,
//! using the signed distance of RFC 1982 serial arithmetic, so that 2^32 - 1 < 0 holds.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl std::ops::Add<u32> for SeqNumber {
    type Output = SeqNumber;

    fn add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
}

impl SeqNumber {
    /// The signed distance from `base` to `self`: positive when `self` is after `base`.
    /// Meaningful for points less than 2^31 apart, as in any TCP window.
    pub fn distance_from(self, base: SeqNumber) -> i64 {
        i64::from(self.0.wrapping_sub(base.0) as i32)
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.distance_from(*other).cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let cases: [(u32, u32, i64); 5] = [
            (10, 5, 5),
            (5, 10, -5),
            (2, u32::MAX - 1, 4),
            (u32::MAX - 1, 2, -4),
            (0x8000_0000, 0, -0x8000_0000),
        ];
        for (a, b, want) in cases {
            assert_eq!(SeqNumber(a).distance_from(SeqNumber(b)), want, "{a} - {b}");
        }
        assert!(SeqNumber(1) > SeqNumber(u32::MAX));
        assert!(SeqNumber(u32::MAX) + 2 == SeqNumber(1));
    }
}
