//! The replay list (RFC 3711 §3.3.2) as a sliding window, and rollover-counter estimation
//! (RFC 3711 Appendix A).
//!
//! A window remembers the highest authenticated index and which of the 127 indexes below
//! it have been seen; anything older is refused as too old. It is checked before the tag
//! (cheap refusal) and updated only after the tag verifies, so forged packets cannot move it.

use super::SrtpError;

/// Packets remembered below the highest index (RFC 3711 §3.3.2 requires a window of at
/// least 64; 128 tolerates the reordering of a busy Wi-Fi link).
pub(super) const WINDOW_PACKETS: u64 = 128;

/// A sliding replay window over 48-bit SRTP or 31-bit SRTCP indexes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReplayWindow {
    /// The highest index accepted so far (valid when `any`).
    top: u64,
    /// Bit `k` set: index `top - k` was accepted.
    seen: u128,
    /// Whether any index has been accepted.
    any: bool,
}

impl ReplayWindow {
    /// Refuses `index` if it was accepted before or lies below the window.
    pub(super) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if !self.any || index > self.top {
            return Ok(());
        }
        let behind = self.top - index;
        if behind >= WINDOW_PACKETS || self.seen & (1u128 << behind) != 0 {
            return Err(SrtpError::Replay { index });
        }
        Ok(())
    }

    /// Records `index` as accepted; call only after its tag verified and `check` passed.
    pub(super) fn accept(&mut self, index: u64) {
        if !self.any {
            *self = ReplayWindow {
                top: index,
                seen: 1,
                any: true,
            };
        } else if index > self.top {
            let ahead = index - self.top;
            self.seen = if ahead >= WINDOW_PACKETS {
                0
            } else {
                self.seen << ahead
            };
            self.seen |= 1;
            self.top = index;
        } else {
            let behind = self.top - index;
            if behind < WINDOW_PACKETS {
                self.seen |= 1u128 << behind;
            }
        }
    }
}

/// Guesses the rollover counter of a received sequence number (RFC 3711 Appendix A) from
/// the local `roc` and the highest sequence number `s_l` seen with it.
///
/// Refuses a guess of `roc - 1` while `roc` is 0 (a packet from before the stream's first
/// one: too old) and of `roc + 1` past 2^32 - 1 (the 48-bit index space is spent; going on
/// would reuse keystream, so the session must be keyed again).
pub(super) fn estimate_roc(roc: u32, s_l: u16, seq: u16) -> Result<u32, SrtpError> {
    //= https://www.rfc-editor.org/rfc/rfc3711#appendix-A
    //# if (s_l < 32768)
    //#    if (SEQ - s_l > 32768)
    //#       set v to (ROC-1) mod 2^32
    //#    else
    //#       set v to ROC
    //#    endif
    //# else
    //#    if (s_l - 32768 > SEQ)
    //#       set v to (ROC+1) mod 2^32
    //#    else
    //#       set v to ROC
    //#    endif
    //# endif
    if s_l < 32768 {
        if seq > s_l && seq - s_l > 32768 {
            roc.checked_sub(1).ok_or(SrtpError::Replay {
                index: u64::from(seq),
            })
        } else {
            Ok(roc)
        }
    } else if s_l - 32768 > seq {
        roc.checked_add(1).ok_or(SrtpError::IndexExhausted)
    } else {
        Ok(roc)
    }
}

/// Per-SSRC RTP sequence state shared by sender and receiver: the rollover counter and
/// highest sequence number (RFC 3711 §3.3.1).
#[derive(Debug, Clone, Copy)]
pub(super) struct RtpSeqState {
    /// Rollover counter: wraps of the 16-bit sequence number so far.
    pub(super) roc: u32,
    /// Highest sequence number seen with `roc`.
    pub(super) s_l: u16,
}

impl RtpSeqState {
    /// The state after the first packet of a stream (RFC 3711 §3.3.1: the receiver starts
    /// with ROC 0 and `s_l` the first sequence number).
    pub(super) fn first(seq: u16) -> RtpSeqState {
        RtpSeqState { roc: 0, s_l: seq }
    }

    /// The 48-bit packet index of `seq` (RFC 3711 §3.3.1: i = 2^16 * ROC + SEQ) and its
    /// rollover counter, or an error when it lies before the stream's first packet or past
    /// the end of the index space.
    pub(super) fn index_of(&self, seq: u16) -> Result<(u32, u64), SrtpError> {
        let roc = estimate_roc(self.roc, self.s_l, seq)?;
        Ok((roc, (u64::from(roc) << 16) | u64::from(seq)))
    }

    /// Moves the state forward after `seq` with rollover counter `roc` was accepted
    /// (RFC 3711 §3.3.1: update ROC and s_l only when the packet is authenticated).
    pub(super) fn advance(&mut self, roc: u32, seq: u16) {
        if roc > self.roc {
            self.roc = roc;
            self.s_l = seq;
        } else if roc == self.roc && seq > self.s_l {
            self.s_l = seq;
        }
    }
}
