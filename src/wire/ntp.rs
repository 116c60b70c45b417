//! NTP timestamps as used by RTCP (RFC 3550 §4): 64-bit fixed point, seconds since
//! 1900-01-01 in the high word and the binary fraction in the low word; the middle 32 bits
//! are the "LSR" compact form of §6.4.1. Times wrap with the NTP era (2036), as RFC 3550 allows.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 seconds since 1900 (MSW)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 fraction of a second (LSW)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!                 |<------- middle 32 (LSR) ------->|
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900-01-01) to the UNIX epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// 64-bit NTP timestamp (RFC 3550 §4): seconds since 1900 in the high 32 bits, fraction in the low 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// Converts a wall-clock time (times before 1900 clamp to 0; the era wraps in 2036).
    pub fn from_system_time(t: SystemTime) -> Self {
        let since_1900 = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.saturating_add(Duration::from_secs(NTP_UNIX_OFFSET_SECS)),
            Err(e) => Duration::from_secs(NTP_UNIX_OFFSET_SECS).saturating_sub(e.duration()),
        };
        let secs = since_1900.as_secs() & 0xffff_ffff;
        let frac = (u64::from(since_1900.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Middle 32 bits (RFC 3550 §6.4.1 LSR): low 16 bits of seconds, high 16 of the fraction.
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }

    /// Whole seconds since 1900 (the most significant word).
    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Fraction of a second in units of 2^-32 s (the least significant word).
    pub fn fraction(self) -> u32 {
        self.0 as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_epoch() {
        assert_eq!(
            NtpTime::from_system_time(UNIX_EPOCH),
            NtpTime(2_208_988_800 << 32)
        );
    }

    #[test]
    fn fractions_and_middle() {
        let t = UNIX_EPOCH + Duration::from_millis(1500);
        let n = NtpTime::from_system_time(t);
        assert_eq!(n.seconds(), 2_208_988_801);
        assert_eq!(n.fraction(), 0x8000_0000);
        assert_eq!(n.middle32(), ((2_208_988_801u32 & 0xffff) << 16) | 0x8000);
        let q = NtpTime::from_system_time(UNIX_EPOCH + Duration::from_nanos(250_000_000));
        assert_eq!(q.fraction(), 0x4000_0000);
    }

    #[test]
    fn before_epoch_and_wrap() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(NtpTime::from_system_time(before).seconds(), 2_208_988_790);
        // 2036-02-07T06:28:16Z is the start of NTP era 1: seconds wrap to 0.
        let era1 = UNIX_EPOCH + Duration::from_secs((1u64 << 32) - NTP_UNIX_OFFSET_SECS);
        assert_eq!(NtpTime::from_system_time(era1).seconds(), 0);
        let now = NtpTime::now();
        assert!(now.seconds() > 3_900_000_000 || now.seconds() < 1_000_000_000);
    }
}
