//! The shard's due queue: a hashed timer wheel of ~1 ms slots.
//!
//! A shard holds one entry per playing track (10,000 at 5,000 viewers) and pops every one of
//! them 10–50 times a second. A binary heap pays O(log n) cache-missing sift steps per pop
//! and push (5 % of a saturated shard's time, measured with `perf`); here a push appends to
//! its slot's list and a pop takes a slot's first entry, both O(1), so a tick costs O(due),
//! not O(sessions) (issue 3, "timer wheel or equivalent").
//!
//! - Entries live in one slab linked into per-slot FIFO lists, so once the slab has grown to
//!   the shard's track count nothing allocates, whatever slot an entry lands in.
//! - Within a slot entries leave in push order: a track re-queued while behind goes behind
//!   the others already due, which keeps a visit's sample budget fair.
//! - An entry further ahead than the wheel spans (~4.3 s, e.g. a BYE after a long pause)
//!   waits in a small overflow heap and moves into the wheel when the cursor nears it.
//! - Draining is slot-granular: [`TimerWheel::pop_until`] takes every entry whose slot
//!   starts at or before its limit, and [`TimerWheel::horizon`] says which instant that
//!   covers, so callers compare due times against the same bound the wheel uses.
//!
//! Written here rather than taken from a crate: the timer-wheel crates on crates.io own
//! their timeouts as callbacks or boxed entries, allocate per insert, or lack FIFO order and
//! caller-chosen drain bounds; this is ~200 lines over a slab.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A slot spans 2^20 ns (1.048576 ms): slot arithmetic is a shift.
const SLOT_SHIFT: u32 = 20;
/// Slots in the wheel (a power of two): it spans ~4.3 s.
const SLOTS: usize = 4096;
const MASK: u64 = SLOTS as u64 - 1;
/// End-of-list marker in the slab links.
const NIL: u32 = u32::MAX;

/// One queued entry in the slab.
#[derive(Debug, Clone, Copy)]
struct Node<T> {
    at: Instant,
    item: T,
    next: u32,
}

/// A FIFO list of slab nodes.
#[derive(Debug, Clone, Copy)]
struct SlotList {
    head: u32,
    tail: u32,
}

const EMPTY: SlotList = SlotList {
    head: NIL,
    tail: NIL,
};

/// An entry too far ahead for the wheel, ordered by due time only.
#[derive(Debug)]
struct Far<T> {
    at: Instant,
    item: T,
}

impl<T> PartialEq for Far<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<T> Eq for Far<T> {}
impl<T> PartialOrd for Far<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Far<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// A queue of items each due at an [`Instant`], drained in ~1 ms slots (see the module doc).
#[derive(Debug)]
pub(super) struct TimerWheel<T> {
    /// The instant slot 0 starts at; nothing is due before it.
    origin: Instant,
    /// The earliest slot that may hold entries; entries pushed for earlier times land here.
    cursor: u64,
    slots: Box<[SlotList]>,
    /// One bit per slot with a non-empty list, to skip empty slots 64 at a time.
    occupied: Box<[u64]>,
    nodes: Vec<Node<T>>,
    /// Head of the free list through `nodes[..].next`.
    free: u32,
    overflow: BinaryHeap<Reverse<Far<T>>>,
    len: usize,
}

impl<T: Copy> TimerWheel<T> {
    /// An empty wheel starting at `origin`, with room for `capacity` entries before the slab
    /// grows.
    pub(super) fn new(origin: Instant, capacity: usize) -> Self {
        Self {
            origin,
            cursor: 0,
            slots: vec![EMPTY; SLOTS].into_boxed_slice(),
            occupied: vec![0; SLOTS / 64].into_boxed_slice(),
            nodes: Vec::with_capacity(capacity),
            free: NIL,
            overflow: BinaryHeap::new(),
            len: 0,
        }
    }

    /// Entries queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The slot an instant falls in (instants before `origin` fall in slot 0).
    fn slot_of(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_nanos() >> SLOT_SHIFT) as u64
    }

    /// The instant slot `slot` starts at.
    fn slot_start(&self, slot: u64) -> Instant {
        self.origin + Duration::from_nanos(slot << SLOT_SHIFT)
    }

    /// The last instant that [`TimerWheel::pop_until`]`(limit)` drains: the end of `limit`'s
    /// slot. An entry due at or before it is popped by that call; one due after it is not.
    pub(super) fn horizon(&self, limit: Instant) -> Instant {
        self.slot_start(self.slot_of(limit).max(self.cursor) + 1) - Duration::from_nanos(1)
    }

    /// Queues `item`, due at `at`; a time already past lands in the current slot.
    pub(super) fn push(&mut self, at: Instant, item: T) {
        let slot = self.slot_of(at).max(self.cursor);
        if slot - self.cursor >= SLOTS as u64 {
            self.overflow.push(Reverse(Far { at, item }));
        } else {
            self.link(slot, at, item);
        }
        self.len += 1;
    }

    /// Appends a slab node for `item` to `slot`'s list.
    fn link(&mut self, slot: u64, at: Instant, item: T) {
        let node = Node {
            at,
            item,
            next: NIL,
        };
        let index = if self.free == NIL {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        } else {
            let index = self.free;
            self.free = self.nodes[index as usize].next;
            self.nodes[index as usize] = node;
            index
        };
        let i = (slot & MASK) as usize;
        let list = &mut self.slots[i];
        if list.tail == NIL {
            list.head = index;
            self.occupied[i / 64] |= 1 << (i % 64);
        } else {
            self.nodes[list.tail as usize].next = index;
        }
        list.tail = index;
    }

    /// Pops the next entry of every slot starting at or before `limit`'s: slots in time
    /// order, push order within a slot. Entries pushed meanwhile into a slot not yet drained
    /// (or for a time already past) are popped by the same drain.
    pub(super) fn pop_until(&mut self, limit: Instant) -> Option<(Instant, T)> {
        let last = self.slot_of(limit);
        loop {
            let i = (self.cursor & MASK) as usize;
            let head = self.slots[i].head;
            if head != NIL {
                let node = self.nodes[head as usize];
                let list = &mut self.slots[i];
                list.head = node.next;
                if node.next == NIL {
                    list.tail = NIL;
                    self.occupied[i / 64] &= !(1 << (i % 64));
                }
                self.nodes[head as usize].next = self.free;
                self.free = head;
                self.len -= 1;
                return Some((node.at, node.item));
            }
            if self.cursor >= last {
                return None;
            }
            self.cursor = self
                .next_occupied_after(self.cursor)
                .unwrap_or(last)
                .min(last);
            self.admit_overflow();
        }
    }

    /// The first slot after `slot` with entries, within the wheel's span.
    fn next_occupied_after(&self, slot: u64) -> Option<u64> {
        let start = slot + 1;
        let mut offset = 0u64;
        while offset < SLOTS as u64 {
            let i = ((start + offset) & MASK) as usize;
            // The bits of word i/64 from bit i%64 up.
            let bits = self.occupied[i / 64] >> (i % 64);
            if bits != 0 {
                let found = offset + u64::from(bits.trailing_zeros());
                return (found < SLOTS as u64).then_some(start + found);
            }
            offset += 64 - (i % 64) as u64;
        }
        None
    }

    /// Moves overflow entries that now fall within the wheel's span into their slots.
    fn admit_overflow(&mut self) {
        while let Some(Reverse(far)) = self.overflow.peek() {
            let slot = self.slot_of(far.at).max(self.cursor);
            if slot - self.cursor >= SLOTS as u64 {
                break;
            }
            let (at, item) = (far.at, far.item);
            self.overflow.pop();
            self.link(slot, at, item);
        }
    }

    /// An instant at or before the earliest entry's due time (the start of its slot), or
    /// `None` when the wheel is empty: the time to wake up for it.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let i = (self.cursor & MASK) as usize;
        if self.slots[i].head != NIL {
            return Some(self.slot_start(self.cursor));
        }
        if let Some(slot) = self.next_occupied_after(self.cursor) {
            return Some(self.slot_start(slot));
        }
        self.overflow.peek().map(|Reverse(far)| far.at)
    }

    /// Every queued entry with its due time, in no particular order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (Instant, &T)> + '_ {
        let wheel = self.slots.iter().flat_map(move |list| {
            let mut at = list.head;
            std::iter::from_fn(move || {
                let node = self.nodes.get(at as usize)?;
                at = node.next;
                Some((node.at, &node.item))
            })
        });
        wheel.chain(self.overflow.iter().map(|Reverse(far)| (far.at, &far.item)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(w: &mut TimerWheel<u32>, limit: Instant) -> Vec<u32> {
        std::iter::from_fn(|| w.pop_until(limit).map(|(_, v)| v)).collect()
    }

    #[test]
    fn entries_leave_in_time_order_and_only_once_due() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, 8);
        for (i, at) in [30u64, 10, 20, 0, 50].into_iter().enumerate() {
            w.push(t0 + ms(at), i as u32);
        }
        assert_eq!(drain(&mut w, t0 + ms(25)), vec![3, 1, 2]);
        assert_eq!(w.len(), 2);
        assert_eq!(drain(&mut w, t0 + ms(25)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, t0 + ms(60)), vec![0, 4]);
        assert_eq!(w.len(), 0);
        assert!(w.next_wake().is_none());
    }

    #[test]
    fn the_horizon_bounds_exactly_what_a_drain_takes() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, 8);
        let limit = t0 + ms(7) + Duration::from_micros(300);
        let horizon = w.horizon(limit);
        assert!(horizon >= limit && horizon - limit < ms(2));
        w.push(horizon, 1);
        w.push(horizon + Duration::from_nanos(1), 2);
        assert_eq!(drain(&mut w, limit), vec![1]);
        assert_eq!(drain(&mut w, horizon + Duration::from_nanos(1)), vec![2]);
    }

    #[test]
    fn a_slot_is_first_in_first_out_even_while_it_drains() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, 8);
        let at = t0 + ms(5);
        for v in 0..4 {
            w.push(at, v);
        }
        let mut order = Vec::new();
        while let Some((_, v)) = w.pop_until(at) {
            order.push(v);
            if v == 0 {
                // Re-queued while behind: it goes behind the others of its slot.
                w.push(t0, 10);
            }
        }
        assert_eq!(order, vec![0, 1, 2, 3, 10]);
    }

    #[test]
    fn past_times_are_due_at_once_and_far_ones_wait_in_the_overflow() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0 + ms(100), 8);
        w.push(t0, 1); // before the origin
        w.push(t0 + ms(100) + Duration::from_secs(60), 2); // beyond the span
        w.push(t0 + ms(100) + Duration::from_secs(3), 3);
        assert_eq!(w.len(), 3);
        assert_eq!(drain(&mut w, t0 + ms(100)), vec![1]);
        assert_eq!(
            w.next_wake().map(|i| i > t0 + Duration::from_secs(2)),
            Some(true)
        );
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(30)), vec![3]);
        assert_eq!(
            drain(&mut w, t0 + Duration::from_secs(59)),
            Vec::<u32>::new()
        );
        assert_eq!(drain(&mut w, t0 + Duration::from_secs(61)), vec![2]);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_random_workload_matches_a_sorted_reference() {
        // Deterministic pseudo-random pushes and drains, checked against a plain list.
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, 4);
        let mut reference: Vec<(Instant, u32)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = t0;
        for step in 0..20_000u32 {
            if rand(3) > 0 {
                // Mostly near, sometimes past, sometimes beyond the span.
                let at = match rand(10) {
                    0 => now.checked_sub(ms(rand(50))).unwrap_or(t0),
                    1 => now + Duration::from_secs(3 + rand(10)),
                    _ => now + Duration::from_micros(rand(200_000)),
                };
                w.push(at, step);
                reference.push((at, step));
            } else {
                now += Duration::from_micros(rand(5_000));
                let horizon = w.horizon(now);
                let mut got: Vec<u32> = drain(&mut w, now);
                let (mut due, rest): (Vec<_>, Vec<_>) =
                    reference.iter().partition(|(at, _)| *at <= horizon);
                reference = rest;
                due.sort_by_key(|&(at, v)| (at, v));
                let mut want: Vec<u32> = due.into_iter().map(|(_, v)| v).collect();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "step {step}");
                assert_eq!(w.len(), reference.len());
                if let (Some(wake), Some(first)) = (w.next_wake(), reference.iter().min()) {
                    assert!(
                        wake <= first.0,
                        "step {step}: wakes after the earliest entry"
                    );
                }
            }
        }
    }
}
