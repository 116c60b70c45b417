//! The H.264 `profile-level-id` (RFC 6184 §8.1) and the offer/answer compatibility rules of
//! RFC 6184 §8.2.2: which profile a `profile_idc` + `profile-iop` pair means (ITU-T H.264
//! Annex A.2: the constraint flags make Baseline into Constrained Baseline, High into
//! Constrained High), and how levels compare (level 1b sits between 1.0 and 1.1).

use std::fmt;

/// The profiles WebRTC endpoints negotiate (ITU-T H.264 Annex A.2), as the constraint flags
/// define them: `42e01f`, `42c01f` and `4240 1f` are all Constrained Baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Profile {
    /// Constrained Baseline (A.2.1.1): Baseline with `constraint_set1_flag`, or Main with
    /// `constraint_set0_flag`, or Extended with both.
    ConstrainedBaseline,
    /// Baseline (A.2.1).
    Baseline,
    /// Main (A.2.2).
    Main,
    /// Extended (A.2.3).
    Extended,
    /// High (A.2.4).
    High,
    /// Constrained High (A.2.4.2): High with `constraint_set4_flag` and `constraint_set5_flag`.
    ConstrainedHigh,
    /// High 10 (A.2.5).
    High10,
    /// High 4:2:2 (A.2.6).
    High422,
    /// High 4:4:4 Predictive (A.2.7).
    High444,
}

/// The three bytes of `profile-level-id`: `profile_idc`, `profile-iop` (the constraint
/// flags byte) and `level_idc` (RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileLevelId {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// `profile-iop`: `constraint_set0_flag` is the top bit.
    pub profile_iop: u8,
    /// `level_idc`.
    pub level_idc: u8,
}

impl ProfileLevelId {
    /// RFC 6184 §8.1: without `profile-level-id`, "the Baseline profile … and level 1.0" (`42000a`).
    pub const DEFAULT: ProfileLevelId = ProfileLevelId {
        profile_idc: 0x42,
        profile_iop: 0x00,
        level_idc: 0x0a,
    };

    /// Parses the 6 hex digits (either case).
    pub fn parse(s: &str) -> Option<ProfileLevelId> {
        let s = s.trim();
        if s.len() != 6 || !s.is_ascii() {
            return None;
        }
        let byte = |i: usize| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok());
        Some(ProfileLevelId {
            profile_idc: byte(0)?,
            profile_iop: byte(2)?,
            level_idc: byte(4)?,
        })
    }

    /// The profile these bytes mean, or `None` for a combination no WebRTC stack negotiates.
    /// The flag patterns follow Annex A.2 (and match libwebrtc's table, where a reserved
    /// low nibble of `profile-iop` must be zero).
    pub fn profile(self) -> Option<H264Profile> {
        let iop = self.profile_iop;
        let (cs0, cs1) = (iop & 0x80 != 0, iop & 0x40 != 0);
        if iop & 0x0f != 0 && !(self.profile_idc == 0x64 && iop & 0x0f == 0x0c) {
            return None;
        }
        match self.profile_idc {
            0x42 if cs1 => Some(H264Profile::ConstrainedBaseline),
            0x42 => Some(H264Profile::Baseline),
            0x4d if cs0 => Some(H264Profile::ConstrainedBaseline),
            0x4d => Some(H264Profile::Main),
            0x58 if cs0 && cs1 => Some(H264Profile::ConstrainedBaseline),
            0x58 if cs0 => Some(H264Profile::Baseline),
            0x58 => Some(H264Profile::Extended),
            0x64 if iop == 0x0c => Some(H264Profile::ConstrainedHigh),
            0x64 if iop == 0 => Some(H264Profile::High),
            0x6e => Some(H264Profile::High10),
            0x7a => Some(H264Profile::High422),
            0xf4 => Some(H264Profile::High444),
            _ => None,
        }
    }

    /// The level on an ordered scale (`level_idc` × 10, level 1b as 105): level 1b is
    /// `level_idc` 11 with `constraint_set3_flag` in Baseline/Main/Extended, or `level_idc` 9
    /// (H.264 A.3.1, A.3.2).
    pub fn level_rank(self) -> u16 {
        let cs3 = self.profile_iop & 0x10 != 0;
        let is_1b = self.level_idc == 9
            || (self.level_idc == 11 && cs3 && matches!(self.profile_idc, 0x42 | 0x4d | 0x58));
        if is_1b {
            105
        } else {
            u16::from(self.level_idc) * 10
        }
    }
}

impl fmt::Display for ProfileLevelId {
    /// Six lowercase hex digits, as browsers write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_iop, self.level_idc
        )
    }
}
