//! The ICE-lite agent of one WebRTC session (RFC 8445 §2.5): it never sends checks, it answers
//! the browser's Binding requests (§7.3), learns the nominated address from `USE-CANDIDATE`
//! (§7.3.1.5), and ends the session when consent lapses (RFC 7675 §5.1).
//!
//! A lite agent has one host candidate per component and is always controlled (§6.1.1), so
//! "the selected pair" is just the peer address of the last valid check that carried
//! `USE-CANDIDATE`; a later nomination from another address replaces it (the browser may
//! move, for instance from Wi-Fi to a cellular network). Media must go only to that address:
//! it proved knowledge of our password.
//!
//! Consent: RFC 7675 has the *sender* of media keep consent with its own checks every few
//! seconds. A lite agent sends no checks, so it takes the other direction as the evidence:
//! the browser runs those consent checks (a full agent must, RFC 7675 §5.1) against us, and a
//! valid one from the selected address is proof the tab is still there. 30 s without one
//! (RFC 7675's consent timeout) ends the session.
//!
//! Sans-IO: the caller passes the time and a buffer; the agent writes the response there and
//! says what happened. Per request it allocates nothing. Not done: sending checks or
//! keepalives (a lite agent sends none; the browser keeps the binding alive), trickle ICE,
//! more than one component (BUNDLE and rtcp-mux are required by the SDP side).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::stun::{
    write_binding_error, write_binding_success, ErrorCode, IceRole, IntegrityKey, StunError,
    StunMessage,
};

//= https://www.rfc-editor.org/rfc/rfc7675#section-5.1
//# Consent expires after 30 seconds.
/// Without a valid check from the selected address for this long, consent is lost.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A session that has not been nominated this long after its answer is given up.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Characters in a generated ufrag: 48 bits of randomness, above the 24 RFC 8445 §5.3 asks.
pub const UFRAG_CHARS: usize = 8;
/// Characters in a generated password: 144 bits, above the 128 RFC 8445 §5.3 asks.
pub const PWD_CHARS: usize = 24;
/// Random bytes [`generate_credentials`] consumes: one per character.
pub const CREDENTIAL_RANDOM_BYTES: usize = UFRAG_CHARS + PWD_CHARS;

//= https://www.rfc-editor.org/rfc/rfc8839#section-5.4
//# ice-char = ALPHA / DIGIT / "+" / "/"
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Makes a ufrag and a password for our SDP answer (RFC 8839 §5.4: ufrag 4–256 ice-chars,
/// password 22–256) from caller-given random bytes. Each byte gives one of the 64 ice-chars
/// (its low six bits: 256 is a multiple of 64, so the draw is uniform). The shard maps ufrag
/// to session, so the caller should redraw on the (2^-48) chance of a ufrag already in use.
pub fn generate_credentials(random: &[u8; CREDENTIAL_RANDOM_BYTES]) -> (String, String) {
    let chars = |bytes: &[u8]| -> String {
        bytes
            .iter()
            .map(|b| char::from(ICE_CHARS[usize::from(b & 0x3f)]))
            .collect()
    };
    (chars(&random[..UFRAG_CHARS]), chars(&random[UFRAG_CHARS..]))
}

/// Why a Binding request was dropped with no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IceError {
    /// Not a Binding request (a response, an indication, another method): nothing to answer.
    #[error("ice: not a binding request")]
    NotBindingRequest,
    /// FINGERPRINT missing or wrong: not STUN for ICE (RFC 8445 §7.2.2, RFC 8489 §7.3).
    #[error("ice: {0}")]
    Fingerprint(StunError),
    /// USERNAME is not `our-ufrag:their-ufrag`: not this session's check.
    #[error("ice: username does not name this session")]
    UnknownUsername,
    /// The response did not fit the output buffer.
    #[error("ice: writing the response: {0}")]
    Write(StunError),
}

/// What [`IceLite::handle_binding`] did with a request: the response is in `out[..len]`,
/// to be sent back to the address the request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingOutcome {
    /// A valid check, answered with a success response.
    Success {
        /// Length of the response.
        len: usize,
        /// Whether the request's source is the selected address after this check.
        selected: bool,
        /// Whether this check changed the selected address (first nomination or a move).
        changed: bool,
    },
    /// A bad check, answered with an error response; the agent's state is unchanged.
    Error {
        /// Length of the response.
        len: usize,
        /// The error code sent.
        code: ErrorCode,
    },
}

/// The ICE-lite agent of one session (RFC 8445 §2.5, §7.3).
#[derive(Debug)]
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    remote_ufrag: String,
    /// `local_ufrag:remote_ufrag`, the USERNAME of the peer's checks (RFC 8445 §7.2.2).
    username: Vec<u8>,
    key: IntegrityKey,
    created: Instant,
    selected: Option<SocketAddr>,
    consent_at: Instant,
}

impl IceLite {
    /// Starts the agent with our credentials (from our answer) and the peer's (from the
    /// offer), at `now` (the setup timeout runs from here). A lite agent sends no checks and
    /// signs its responses with its own password, so the remote password is not kept.
    pub fn new(
        local_ufrag: &str,
        local_pwd: &str,
        remote_ufrag: &str,
        _remote_pwd: &str,
        now: Instant,
    ) -> IceLite {
        let username = format!("{local_ufrag}:{remote_ufrag}").into_bytes();
        IceLite {
            local_ufrag: local_ufrag.to_owned(),
            local_pwd: local_pwd.to_owned(),
            remote_ufrag: remote_ufrag.to_owned(),
            username,
            key: IntegrityKey::new(local_pwd.as_bytes()),
            created: now,
            selected: None,
            consent_at: now,
        }
    }

    /// Our ufrag (the session's key in the shard's ufrag map).
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Our password.
    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    /// The peer's ufrag.
    pub fn remote_ufrag(&self) -> &str {
        &self.remote_ufrag
    }

    /// The selected (nominated) peer address, if any: the only one media may go to.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// The local ufrag a request names: USERNAME up to the first `:`. RFC 8445 §7.2.2: the
    /// sender concatenates "the username fragment provided by the peer with the username
    /// fragment of the ICE agent sending the request, separated by a colon", so ours comes
    /// first. `None` without a USERNAME or a colon. The shard looks the session up by it
    /// before it knows the address.
    pub fn local_ufrag_of<'a>(msg: &StunMessage<'a>) -> Option<&'a [u8]> {
        let username = msg.username()?;
        let colon = username.iter().position(|&b| b == b':')?;
        Some(&username[..colon])
    }

    /// Whether the session should end: consent lapsed (no valid check from the selected
    /// address for [`CONSENT_TIMEOUT`], RFC 7675 §5.1), or no nomination within
    /// [`SETUP_TIMEOUT`] of [`IceLite::new`].
    pub fn consent_expired(&self, now: Instant) -> bool {
        match self.selected {
            Some(_) => now.saturating_duration_since(self.consent_at) >= CONSENT_TIMEOUT,
            None => now.saturating_duration_since(self.created) >= SETUP_TIMEOUT,
        }
    }

    /// Handles a Binding request `msg` that arrived from `from` at `now`, writing the answer
    /// into `out`. `Err` means drop it, no answer (count it). The order of checks:
    ///
    /// 1. a Binding request with a valid FINGERPRINT (RFC 8445 §7.2.2), else drop;
    /// 2. USERNAME and MESSAGE-INTEGRITY present, else 400 (RFC 8489 §9.1.3);
    /// 3. USERNAME = `local_ufrag:remote_ufrag`, else drop. RFC 8489 §9.1.3 answers an unknown
    ///    username with 401; we do not: the shard routes by our ufrag, so a mismatch here is
    ///    a wrong remote ufrag or a prober, and an answer would confirm our ufrag exists;
    /// 4. MESSAGE-INTEGRITY with our password, else 401 without integrity (RFC 8489 §9.1.3);
    /// 5. no unknown comprehension-required attribute, else 420 (RFC 8489 §6.3.1);
    /// 6. ICE-CONTROLLING present: ICE-CONTROLLED gets 487 — a lite agent is always
    ///    controlled and cannot switch (RFC 8445 §7.3.1.1, §6.1.1); neither, or no
    ///    PRIORITY (§7.1.1), gets 400;
    /// 7. success with XOR-MAPPED-ADDRESS = `from` (§7.3.1.4); `USE-CANDIDATE` makes `from`
    ///    the selected address (§7.3.1.5); a valid check from the selected address refreshes
    ///    consent (RFC 7675 §5.1).
    pub fn handle_binding(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &StunMessage<'_>,
        out: &mut [u8],
    ) -> Result<BindingOutcome, IceError> {
        if !msg.is_binding_request() {
            return Err(IceError::NotBindingRequest);
        }
        msg.verify_fingerprint().map_err(IceError::Fingerprint)?;
        let tid = msg.transaction_id();
        let error = |out: &mut [u8], code: ErrorCode, key: Option<&IntegrityKey>| {
            write_binding_error(out, tid, code, msg.unknown_required(), key)
                .map(|len| BindingOutcome::Error { len, code })
                .map_err(IceError::Write)
        };
        let Some(username) = msg.username() else {
            return error(out, ErrorCode::BadRequest, None);
        };
        if msg.integrity_offset().is_none() {
            return error(out, ErrorCode::BadRequest, None);
        }
        if username != self.username.as_slice() {
            return Err(IceError::UnknownUsername);
        }
        if msg.verify_integrity(&self.key).is_err() {
            return error(out, ErrorCode::Unauthenticated, None);
        }
        let key = Some(&self.key);
        if !msg.unknown_required().is_empty() {
            return error(out, ErrorCode::UnknownAttribute, key);
        }
        match msg.role() {
            Some(IceRole::Controlling(_)) => {}
            Some(IceRole::Controlled(_)) => return error(out, ErrorCode::RoleConflict, key),
            None => return error(out, ErrorCode::BadRequest, key),
        }
        if msg.priority().is_none() {
            return error(out, ErrorCode::BadRequest, key);
        }
        // On a dual-stack socket an IPv4 peer shows up as ::ffff:a.b.c.d; the peer knows
        // itself by the IPv4 address, so that is what XOR-MAPPED-ADDRESS reports.
        let mapped = SocketAddr::new(from.ip().to_canonical(), from.port());
        let len = write_binding_success(out, tid, mapped, &self.key).map_err(IceError::Write)?;
        let mut changed = false;
        if msg.use_candidate() && self.selected != Some(from) {
            self.selected = Some(from);
            changed = true;
        }
        let selected = self.selected == Some(from);
        if selected {
            self.consent_at = now;
        }
        Ok(BindingOutcome::Success {
            len,
            selected,
            changed,
        })
    }
}

#[cfg(test)]
mod tests;
