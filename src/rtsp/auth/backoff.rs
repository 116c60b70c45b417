//! Brute-force backoff for credential guessing, shared by every connection (sans-IO: the
//! caller passes the time and sleeps for the wait it is given).
//!
//! Rules:
//! - Failures are counted per **key**: the client's address, and the user name it claims
//!   (Digest `username=`, or the user of Basic credentials), whatever the connection. The
//!   first [`FREE_FAILURES`] of a key cost nothing; a key's record is forgotten after a quiet
//!   [`FAILURE_WINDOW`] (no failure for it).
//! - Over its free failures a key admits attempts **one at a time**: an attempt takes the
//!   slot `max(now, key's last slot) + backoff`, where the backoff is 0.2 s doubling per
//!   further failure up to [`MAX_BACKOFF`], and is answered no earlier than that slot. When
//!   both keys are throttled the later slot wins and both keys move on to it. A sequential
//!   client therefore waits exactly the backoff per attempt, while N parallel connections
//!   queue behind each other instead of waiting side by side.
//! - The slot is taken before the credentials are looked at, so a right guess is answered no
//!   faster than a wrong one.
//! - A slot more than [`MAX_QUEUE`] ahead is not handed out: the attempt is refused at once,
//!   unverified (it tells the client nothing), which bounds how long connections are held.
//! - A success wipes no failure record (an attacker must not be able to reset the count of
//!   the user name it targets by interleaving its own good logins, nor the real user reset
//!   the attacker's). Instead the pair (address, user) that succeeded is marked proven for a
//!   [`FAILURE_WINDOW`] after its last success, and attempts claiming that user from that
//!   address skip the wait, so a real user's session is not slowed by someone else guessing
//!   its name; any failure for the pair removes the mark. Only someone holding the password
//!   (or sharing the real user's address, for one attempt per success) gets past the queue.
//! - Memory is bounded: at most `cap` keys and `cap` proven pairs. When the table is full,
//!   expired entries are dropped first (at most once a second, so a full table costs no
//!   scan per request); any key beyond the cap shares one overflow entry, so an attacker
//!   cycling through many addresses or names slows down only itself and the few newcomers
//!   that arrive while the table is full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed attempts of one key tolerated before its attempts are queued.
pub const FREE_FAILURES: u32 = 5;
/// Backoff of the first queued attempt; doubles with each further failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest backoff between two queued attempts of one key.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A quiet period (no failure) after which a key's failures are forgotten.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Slots further ahead than this are not handed out (the attempt is refused unverified).
pub const MAX_QUEUE: Duration = Duration::from_secs(30);
/// Keys (and, separately, proven pairs) tracked at most by default.
pub const DEFAULT_CAP: usize = 10_000;
/// User names longer than this are keyed by their first this-many bytes.
const MAX_NAME_KEY: usize = 128;
/// A full table is scanned for expired entries at most this often.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// What an attempt is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    User(String),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    last_slot: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            last_failure: now,
            last_slot: now,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_failure) > FAILURE_WINDOW
    }

    /// Failures still remembered at `now`.
    fn live_failures(&self, now: Instant) -> u32 {
        if self.expired(now) {
            0
        } else {
            self.failures
        }
    }

    fn fail(&mut self, now: Instant) {
        if self.expired(now) {
            *self = Entry::new(now);
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
    }
}

/// The wait before an attempt may be verified and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead after this long (zero when no key is throttled).
    After(Duration),
    /// The queue is more than [`MAX_QUEUE`] long: refuse without verifying; the client may
    /// try again after this long.
    Refuse(Duration),
}

/// Per-address and per-user-name failure records with serialized slots; one per server.
#[derive(Debug)]
pub struct Backoff {
    cap: usize,
    entries: HashMap<Key, Entry>,
    overflow: Entry,
    proven: HashMap<(IpAddr, String), Instant>,
    last_purge: Option<Instant>,
    /// Attempts delayed or refused by the backoff since start.
    pub throttled: u64,
}

/// The backoff before the attempt following `failures` failures (zero while free).
pub fn backoff_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(over) => (FIRST_BACKOFF * 2u32.saturating_pow(over.min(16))).min(MAX_BACKOFF),
    }
}

fn user_key(user: &str) -> Key {
    let mut end = user.len().min(MAX_NAME_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    Key::User(user[..end].to_owned())
}

/// Which record an attempt's key uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Own(Key),
    Overflow,
    /// Not tracked and room left: no failures yet.
    Fresh,
}

impl Backoff {
    /// A backoff tracking at most `cap` keys and `cap` proven pairs.
    pub fn new(cap: usize) -> Self {
        let now = Instant::now();
        Self {
            cap: cap.max(1),
            entries: HashMap::new(),
            overflow: Entry::new(now),
            proven: HashMap::new(),
            last_purge: None,
            throttled: 0,
        }
    }

    /// Keys tracked now (never more than the cap).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    fn keys(addr: IpAddr, user: Option<&str>) -> impl Iterator<Item = Key> {
        std::iter::once(Key::Addr(addr)).chain(user.map(user_key))
    }

    /// Drops expired records when a table is full (at most once per [`PURGE_INTERVAL`]).
    fn purge_if_full(&mut self, now: Instant) {
        let full = self.entries.len() >= self.cap || self.proven.len() >= self.cap;
        let due = self
            .last_purge
            .is_none_or(|t| now.saturating_duration_since(t) >= PURGE_INTERVAL);
        if full && due {
            self.last_purge = Some(now);
            self.entries.retain(|_, e| !e.expired(now));
            self.proven
                .retain(|_, t| now.saturating_duration_since(*t) <= FAILURE_WINDOW);
        }
    }

    fn slot_of(&self, key: Key) -> Slot {
        if self.entries.contains_key(&key) {
            Slot::Own(key)
        } else if self.entries.len() >= self.cap {
            Slot::Overflow
        } else {
            Slot::Fresh
        }
    }

    fn entry(&mut self, slot: &Slot) -> Option<&mut Entry> {
        match slot {
            Slot::Own(k) => self.entries.get_mut(k),
            Slot::Overflow => Some(&mut self.overflow),
            Slot::Fresh => None,
        }
    }

    fn is_proven(&self, addr: IpAddr, user: Option<&str>, now: Instant) -> bool {
        let Some(user) = user else { return false };
        self.proven
            .get(&(addr, user.to_owned()))
            .is_some_and(|t| now.saturating_duration_since(*t) <= FAILURE_WINDOW)
    }

    /// Takes a slot for an attempt from `addr` claiming `user` (None when the credentials
    /// name none). Call before verifying the credentials; answer no earlier than the wait.
    pub fn admit(&mut self, addr: IpAddr, user: Option<&str>, now: Instant) -> Admit {
        if self.is_proven(addr, user, now) {
            return Admit::After(Duration::ZERO);
        }
        self.purge_if_full(now);
        let mut slots: Vec<Slot> = Vec::with_capacity(2);
        let mut at = now;
        for key in Self::keys(addr, user) {
            let slot = self.slot_of(key);
            if slots.contains(&slot) {
                continue;
            }
            let Some(e) = self.entry(&slot) else { continue };
            let wait = backoff_after(e.live_failures(now));
            if wait.is_zero() {
                continue;
            }
            at = at.max(e.last_slot.max(now) + wait);
            slots.push(slot);
        }
        if slots.is_empty() {
            return Admit::After(Duration::ZERO);
        }
        self.throttled = self.throttled.saturating_add(1);
        let wait = at.saturating_duration_since(now);
        if wait > MAX_QUEUE {
            // Nothing reserved; by then the queue will have moved on.
            let backlog = slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Own(k) => self.entries.get(k),
                    Slot::Overflow => Some(&self.overflow),
                    Slot::Fresh => None,
                })
                .map(|e| e.last_slot.saturating_duration_since(now))
                .max()
                .unwrap_or(MAX_BACKOFF);
            return Admit::Refuse(backlog.max(MAX_BACKOFF));
        }
        for slot in &slots {
            if let Some(e) = self.entry(slot) {
                e.last_slot = at;
            }
        }
        Admit::After(wait)
    }

    /// Records a failed attempt (wrong, replayed or malformed credentials).
    pub fn failed(&mut self, addr: IpAddr, user: Option<&str>, now: Instant) {
        if let Some(user) = user {
            self.proven.remove(&(addr, user.to_owned()));
        }
        self.purge_if_full(now);
        let mut touched_overflow = false;
        for key in Self::keys(addr, user) {
            match self.slot_of(key.clone()) {
                Slot::Own(k) => {
                    if let Some(e) = self.entries.get_mut(&k) {
                        e.fail(now);
                    }
                }
                Slot::Fresh => {
                    let mut e = Entry::new(now);
                    e.fail(now);
                    self.entries.insert(key, e);
                }
                Slot::Overflow if !touched_overflow => {
                    touched_overflow = true;
                    self.overflow.fail(now);
                }
                Slot::Overflow => {}
            }
        }
    }

    /// Records a success of `user` from `addr`: marks the pair proven (see the module
    /// rules); failure records are kept.
    pub fn succeeded(&mut self, addr: IpAddr, user: &str, now: Instant) {
        self.purge_if_full(now);
        let pair = (addr, user.to_owned());
        if self.proven.len() < self.cap || self.proven.contains_key(&pair) {
            self.proven.insert(pair, now);
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_CAP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn wait(a: Admit) -> Duration {
        match a {
            Admit::After(d) => d,
            Admit::Refuse(_) => panic!("refused: {a:?}"),
        }
    }

    /// One failing attempt: takes its slot, then fails; returns its wait.
    fn guess(b: &mut Backoff, addr: IpAddr, user: &str, now: Instant) -> Admit {
        let a = b.admit(addr, Some(user), now);
        if matches!(a, Admit::After(_)) {
            b.failed(addr, Some(user), now);
        }
        a
    }

    #[test]
    fn parallel_guesses_from_one_address_are_queued_one_at_a_time() {
        // All arrive at once, as over many parallel connections.
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let waits: Vec<Admit> = (0..16)
            .map(|i| guess(&mut b, A, &format!("user{i}"), t0))
            .collect();
        let ms: Vec<u64> = waits[..10]
            .iter()
            .map(|a| wait(*a).as_millis() as u64)
            .collect();
        // 5 free; then 0.2, +0.4, +0.8, +1.6, +3.2 (the backoff of each next failure).
        assert_eq!(ms, [0, 0, 0, 0, 0, 200, 600, 1400, 3000, 6200]);
        // Capped at 5 s apart; the queue stops at MAX_QUEUE and later ones are refused.
        assert_eq!(wait(waits[10]), MS(11_200));
        assert_eq!(wait(waits[13]), MS(26_200));
        assert!(matches!(waits[14], Admit::Refuse(d) if d >= MAX_BACKOFF));
        assert!(matches!(waits[15], Admit::Refuse(_)));
        assert_eq!(b.throttled, 11);
    }

    #[test]
    fn a_sequential_guesser_waits_the_backoff_per_attempt() {
        let mut now = Instant::now();
        let mut b = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            let w = wait(guess(&mut b, A, "alice", now));
            waits.push(w);
            now += w + MS(1); // answered at its slot, next guess right after
        }
        assert_eq!(waits, [0, 0, 0, 0, 0, 200, 400, 800, 1600].map(MS).to_vec());
        assert_eq!(backoff_after(40), MAX_BACKOFF);
    }

    #[test]
    fn guesses_for_one_user_from_two_addresses_share_the_queue() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..3 {
            guess(&mut b, A, "alice", t0);
        }
        for _ in 0..2 {
            guess(&mut b, B, "alice", t0);
        }
        // Neither address has failed 5 times; the user name has.
        assert_eq!(wait(guess(&mut b, B, "alice", t0)), MS(200));
        assert_eq!(wait(guess(&mut b, A, "alice", t0)), MS(600));
        // Another name from a fresh address is not affected.
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(wait(b.admit(c, Some("bob"), t0)), Duration::ZERO);
    }

    #[test]
    fn a_success_keeps_the_record_and_exempts_only_the_proven_pair() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        // An attacker at B fails 6 times for alice.
        for _ in 0..6 {
            guess(&mut b, B, "alice", t0);
        }
        // The real alice at A is queued for her first attempt (the name is throttled)...
        let first = wait(b.admit(A, Some("alice"), t0));
        assert!(first >= MS(400), "{first:?}");
        b.succeeded(A, "alice", t0 + first);
        // ...then her session's requests are not.
        let t1 = t0 + first + MS(10);
        assert_eq!(wait(b.admit(A, Some("alice"), t1)), Duration::ZERO);
        // Her success did not reset the attacker's queue for alice.
        assert!(wait(b.admit(B, Some("alice"), t1)) > Duration::ZERO);
        // An own good login at B (as mallory) does not exempt B's guesses for alice either.
        b.succeeded(B, "mallory", t1);
        assert!(wait(b.admit(B, Some("alice"), t1)) > Duration::ZERO);
        assert_eq!(wait(b.admit(B, Some("mallory"), t1)), Duration::ZERO);
        // A failure for the proven pair removes the mark.
        b.failed(A, Some("alice"), t1);
        assert!(wait(b.admit(A, Some("alice"), t1)) > Duration::ZERO);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_window() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..8 {
            guess(&mut b, A, "alice", t0);
        }
        assert!(wait(b.admit(A, Some("alice"), t0)) > Duration::ZERO);
        let later = t0 + FAILURE_WINDOW + MS(1);
        assert_eq!(wait(b.admit(A, Some("alice"), later)), Duration::ZERO);
        // And counting starts over: 5 free again.
        for _ in 0..5 {
            assert_eq!(wait(guess(&mut b, A, "alice", later)), Duration::ZERO);
        }
        assert_eq!(wait(b.admit(A, Some("alice"), later)), MS(200));
    }

    #[test]
    fn the_table_is_bounded_and_newcomers_beyond_it_share_an_overflow_entry() {
        let t0 = Instant::now();
        let mut b = Backoff::new(4);
        // Two addresses fail once each as two names: 4 keys, the table is full.
        guess(&mut b, A, "alice", t0);
        guess(&mut b, B, "bob", t0);
        assert_eq!(b.tracked(), 4);
        // An attacker with many addresses and names: every new key lands in the overflow.
        for i in 0..200u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0b00_0000u32 + i));
            guess(&mut b, addr, &format!("n{i}"), t0 + MS(i.into()));
        }
        assert_eq!(b.tracked(), 4, "memory does not grow");
        // The overflow is throttled (it took the attacker's failures)...
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(b.admit(stranger, Some("zed"), t0 + MS(300)) != Admit::After(Duration::ZERO));
        // ...while the tracked keys keep their own record (1 failure: free).
        assert_eq!(
            b.admit(A, Some("alice"), t0 + MS(300)),
            Admit::After(Duration::ZERO)
        );
        // Expired entries make room first.
        let later = t0 + FAILURE_WINDOW + MS(1_000);
        guess(&mut b, stranger, "zed", later);
        assert!(b.tracked() <= 4);
        assert!(b.entries.contains_key(&Key::Addr(stranger)));
        // Proven pairs are bounded too.
        for i in 0..50u32 {
            b.succeeded(IpAddr::V4(std::net::Ipv4Addr::from(i)), "alice", later);
        }
        assert!(b.proven.len() <= 4);
    }

    #[test]
    fn long_user_names_are_keyed_by_a_bounded_prefix() {
        let long = "é".repeat(500);
        match user_key(&long) {
            Key::User(k) => assert!(k.len() <= MAX_NAME_KEY && long.starts_with(&k)),
            Key::Addr(_) => unreachable!(),
        }
    }
}
