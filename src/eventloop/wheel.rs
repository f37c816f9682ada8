//! A hierarchical timer wheel over an index-based arena.
//!
//! This is the timer core of the event loop (RFC 3261 retransmission and
//! transaction timers: millions may be pending at once). Time is counted in
//! *ticks* (milliseconds); the caller converts `Instant`s to ticks.
//!
//! # Design
//!
//! The wheel follows the shape of tokio's `runtime/time/wheel`:
//!
//! * 6 levels of 64 slots; a slot of level `L` is `64^L` ticks wide, so
//!   level 0 has 1 ms slots and the top level 2^30 ms (~12.4 days) slots; the
//!   whole wheel spans 2^36 ms (~2.2 years).
//! * every level has a 64-bit `occupied` bitmap; the next occupied slot of a
//!   level is found with one `rotate_right` + `trailing_zeros`, so empty
//!   slots are never visited and a jump of 10^9 ticks costs a handful of
//!   bit operations.
//! * the level of a deadline is the index of the highest 6-bit group in
//!   which it differs from the wheel's current tick (`xor` +
//!   `leading_zeros`). A level-0 slot therefore holds entries of exactly one
//!   deadline, and when the wheel's time reaches the start of a
//!   higher-level slot, that slot's entries are *cascaded*: re-inserted at
//!   lower levels relative to the new time.
//! * the top level is used as a ring: a deadline more than the ring's reach
//!   away is put into the last reachable top-level slot and re-cascaded from
//!   there, so it never fires early and is never lost (`u64::MAX` included).
//!
//! Instead of pointers the entries live in one arena (a vector in pages of
//! 1,024, so that growing never moves them) and every
//! slot is an intrusive doubly-linked list threaded through the arena by
//! `u32` indices. Freed entries go on a free list and bump their
//! generation, so a stale [`TimerKey`] never reaches a reused entry. Insert
//! and cancel are O(1) and, once the arena has grown to the peak number of
//! pending timers, allocation-free. An entry is 32 bytes for an 8-byte
//! payload.
//!
//! A deadline that is already in the past when it is inserted (earlier than
//! [`TimerWheel::elapsed`]) cannot be placed on the wheel; such entries go
//! to a small binary heap, kept in the same arena, so that they still come
//! out first and in deadline order (O(log k) for the k overdue entries; the
//! event loop normally never inserts into the past).

use std::fmt;
use std::num::NonZeroU32;

use super::paged::PagedVec;

/// Bits of a tick consumed by one level.
const LEVEL_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << LEVEL_BITS;
/// Mask of a slot number within a level.
const SLOT_MASK: u64 = (SLOTS as u64) - 1;
/// Number of levels.
const NUM_LEVELS: usize = 6;
/// Index of the top level.
const TOP: usize = NUM_LEVELS - 1;
/// Shift of a top-level slot number within a tick.
const TOP_SHIFT: u32 = LEVEL_BITS * TOP as u32;
/// Ticks covered by all levels together: 64^6 = 2^36.
const WHEEL_SPAN: u64 = 1 << (LEVEL_BITS * NUM_LEVELS as u32);

/// "No entry" in the intrusive lists.
const NIL: u32 = u32::MAX;
/// `Entry::loc` of an entry on the free list.
const LOC_FREE: u32 = u32::MAX;
/// Tag bit of `Entry::loc` for an entry in the overdue heap (the rest is
/// its heap position).
const LOC_HEAP: u32 = 1 << 31;
/// Most entries the arena may hold (indices and heap positions must stay
/// below [`LOC_HEAP`]).
const MAX_ENTRIES: usize = (LOC_HEAP - 1) as usize;

/// Handle to a pending timer; carries a generation so a stale key never hits a reused slot.
///
/// Keys are returned by [`TimerWheel::insert`] and [`TimerWheel::poll`]. A
/// key stays valid until its timer fires or is cancelled; after that every
/// lookup with it returns `None` (the generation counter is 32 bits, so a
/// key could only alias again after 2^32 reuses of the same arena entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    /// Never zero: an `Option<TimerKey>` is as small as a key (a pending
    /// delivery holds three).
    generation: NonZeroU32,
}

/// A key's generation from its entry's, which is never zero (entries
/// start at 1 and skip 0 when the counter wraps).
fn key_generation(generation: u32) -> NonZeroU32 {
    NonZeroU32::new(generation).unwrap_or(NonZeroU32::MIN)
}

/// One arena entry: a pending timer, or a free one (then `next` links the
/// free list).
#[derive(Clone, Copy)]
struct Entry<T> {
    /// Deadline in ticks.
    deadline: u64,
    /// The caller's payload (kept, unused, while the entry is free).
    payload: T,
    /// Previous entry in the slot list, or [`NIL`].
    prev: u32,
    /// Next entry in the slot list or in the free list, or [`NIL`].
    next: u32,
    /// Bumped every time the entry is freed.
    generation: u32,
    /// Where the entry is: `level * 64 + slot` on the wheel,
    /// `LOC_HEAP | position` in the overdue heap, [`LOC_FREE`] when free.
    loc: u32,
}

/// One level: 64 slot lists and the bitmap of the non-empty ones.
#[derive(Clone)]
struct Level {
    occupied: u64,
    head: [u32; SLOTS],
    tail: [u32; SLOTS],
}

impl Level {
    const EMPTY: Level = Level {
        occupied: 0,
        head: [NIL; SLOTS],
        tail: [NIL; SLOTS],
    };
}

/// A hierarchical timer wheel holding a small `Copy` payload per timer.
///
/// Deadlines are absolute ticks (milliseconds from an origin chosen by the
/// caller; the wheel starts at tick 0). The usual loop is:
///
/// ```
/// use sip_dispatch::eventloop::TimerWheel;
///
/// let mut wheel = TimerWheel::new();
/// let a = wheel.insert(500, "retransmit");
/// let b = wheel.insert(32_000, "timer B");
/// // When to wake up: never after 500; here the start of the level-1 slot
/// // holding 500 (448), after which the answer is exact.
/// assert_eq!(wheel.next_expiration(), Some(448));
///
/// // The event loop sleeps until then, polls, and asks again.
/// let mut fired = Vec::new();
/// while let Some(at) = wheel.next_expiration().filter(|&at| at <= 1_000) {
///     while let Some((key, what)) = wheel.poll(at) {
///         fired.push((key, what, wheel.elapsed()));
///     }
/// }
/// assert_eq!(fired, [(a, "retransmit", 500)]);
/// assert_eq!(wheel.cancel(b), Some("timer B"));
/// assert!(wheel.is_empty());
/// ```
#[derive(Clone)]
pub struct TimerWheel<T: Copy> {
    /// The arena, in pages: growing never moves the entries.
    entries: PagedVec<Entry<T>>,
    /// Head of the free list threaded through `Entry::next`.
    free_head: u32,
    /// Number of pending timers.
    len: usize,
    /// The tick the wheel has advanced to.
    elapsed: u64,
    /// The levels (boxed: about 3 KiB, keeps the wheel itself cheap to move).
    levels: Box<[Level; NUM_LEVELS]>,
    /// Binary min-heap of arena indices, ordered by `(deadline, index)`, of
    /// the entries inserted with a deadline before `elapsed`.
    overdue: Vec<u32>,
    /// Loop iterations and re-placements done by `poll` (tests bound it).
    #[cfg(test)]
    steps: u64,
}

impl<T: Copy> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("elapsed", &self.elapsed)
            .field("next_expiration", &self.next_expiration())
            .finish_non_exhaustive()
    }
}

/// The level and slot of a deadline `when >= elapsed`.
#[inline]
fn level_slot(elapsed: u64, when: u64) -> (usize, usize) {
    debug_assert!(when >= elapsed);
    let diff = elapsed ^ when;
    if diff < WHEEL_SPAN {
        // Highest differing bit, at least bit 5 so that `when == elapsed`
        // lands in level 0.
        let significant = 63 - (diff | SLOT_MASK).leading_zeros();
        let level = (significant / LEVEL_BITS) as usize;
        let slot = ((when >> (LEVEL_BITS as usize * level)) & SLOT_MASK) as usize;
        (level, slot)
    } else {
        // Beyond the current 2^36-aligned block: the top level is a ring of
        // 64 slots starting at the current top slot. Use the deadline's own
        // top slot when it is at most 63 top slots ahead, otherwise the
        // last reachable one (it is re-cascaded from there).
        let current = elapsed >> TOP_SHIFT;
        let ahead = ((when >> TOP_SHIFT) - current).min(SLOT_MASK);
        (TOP, ((current + ahead) & SLOT_MASK) as usize)
    }
}

impl<T: Copy> TimerWheel<T> {
    /// Bytes of one arena entry (one pending timer) for this payload type:
    /// 32 for an 8-byte payload.
    pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry<T>>();

    /// An empty wheel whose time is tick 0.
    pub fn new() -> Self {
        TimerWheel {
            entries: PagedVec::default(),
            free_head: NIL,
            len: 0,
            elapsed: 0,
            levels: Box::new([Level::EMPTY; NUM_LEVELS]),
            overdue: Vec::new(),
            #[cfg(test)]
            steps: 0,
        }
    }

    /// An empty wheel with room for `n` pending timers before the arena
    /// grows (a request too large to allocate is ignored).
    pub fn with_capacity(n: usize) -> Self {
        let mut wheel = Self::new();
        // Best effort: never panics, also not on absurd `n`.
        wheel.entries.reserve_total(n.min(MAX_ENTRIES));
        wheel
    }

    /// Schedules `payload` for tick `deadline` and returns its key.
    ///
    /// A deadline at or before [`elapsed`](Self::elapsed) fires at the next
    /// [`poll`](Self::poll), whatever its `now`. O(1) (O(log k) for a
    /// deadline already in the past, with k such overdue timers).
    ///
    /// # Panics
    ///
    /// If 2^31 - 1 timers are already pending (64 GiB of entries).
    pub fn insert(&mut self, deadline: u64, payload: T) -> TimerKey {
        let index = self.alloc(deadline, payload);
        self.place(index);
        self.len += 1;
        TimerKey {
            index,
            generation: key_generation(self.entries[index as usize].generation),
        }
    }

    /// Cancels a pending timer and returns its payload; `None` if the key
    /// is stale (fired or cancelled) or unknown. O(1).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let index = self.lookup(key)?;
        let loc = self.entries[index as usize].loc;
        if loc & LOC_HEAP != 0 {
            self.heap_remove((loc & !LOC_HEAP) as usize);
        } else {
            self.unlink(index);
        }
        Some(self.release(index).1)
    }

    /// The deadline of a pending timer.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        let index = self.lookup(key)?;
        Some(self.entries[index as usize].deadline)
    }

    /// The payload of a pending timer.
    pub fn payload(&self, key: TimerKey) -> Option<&T> {
        let index = self.lookup(key)?;
        Some(&self.entries[index as usize].payload)
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tick the wheel has advanced to.
    ///
    /// [`poll`](Self::poll) moves it to the deadline of each timer it
    /// returns, and to `now` once nothing is due any more.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// When the caller should poll next: a tick that is never later than
    /// the earliest pending deadline, and exactly that deadline when it lies
    /// within level 0 (less than 64 ticks ahead, in the current 64-tick
    /// block) or in the past. Otherwise it may be the start of a
    /// higher-level slot: poll then and ask again. `None` when empty.
    ///
    /// Costs a few bit operations per level; no entry is visited.
    pub fn next_expiration(&self) -> Option<u64> {
        if let Some(&index) = self.overdue.first() {
            return Some(self.entries[index as usize].deadline);
        }
        self.next_slot().map(|(_, _, start)| start)
    }

    /// The earliest pending deadline, exactly. Costs a walk of the entries
    /// of the earliest occupied slot (all of them when that slot is on a
    /// higher level); use [`next_expiration`](Self::next_expiration) to
    /// decide when to wake up, and this where the exact time is needed.
    ///
    /// ```
    /// use sip_dispatch::eventloop::TimerWheel;
    /// let mut wheel = TimerWheel::new();
    /// wheel.insert(500, ());
    /// assert!(wheel.next_expiration().unwrap() <= 500);
    /// assert_eq!(wheel.next_deadline(), Some(500));
    /// ```
    pub fn next_deadline(&self) -> Option<u64> {
        if let Some(&index) = self.overdue.first() {
            return Some(self.entries[index as usize].deadline);
        }
        let slot_min = |level: usize, slot: usize| {
            let mut index = self.levels[level].head[slot];
            let mut best = u64::MAX;
            while index != NIL {
                let e = &self.entries[index as usize];
                best = best.min(e.deadline);
                index = e.next;
            }
            best
        };
        // Below the top, the levels partition the time after `elapsed`: a
        // level's earliest occupied slot holds its earliest deadline. The
        // top level is a ring that also parks deadlines beyond its reach,
        // so every occupied slot of it counts (those are timers more than
        // ~12 days away).
        let mut best = u64::MAX;
        for level in 0..TOP {
            if let Some((slot, _)) = self.next_in_level(level) {
                best = best.min(slot_min(level, slot));
            }
        }
        let mut top = self.levels[TOP].occupied;
        while top != 0 {
            let slot = top.trailing_zeros() as usize;
            top &= top - 1;
            best = best.min(slot_min(TOP, slot));
        }
        (best != u64::MAX || !self.is_empty()).then_some(best)
    }

    /// Advances the wheel to `now` and pops one timer whose deadline is at
    /// or before `now`; call it again until it returns `None`.
    ///
    /// Timers come out in deadline order; timers with equal deadlines come
    /// out in a deterministic order (insertion order for timers that were
    /// not inserted in the past). A `now` before
    /// [`elapsed`](Self::elapsed) does not move the wheel back; it is taken
    /// as `elapsed`, so only timers already due come out.
    ///
    /// Empty slots are skipped through the bitmaps: the work does not
    /// depend on how far `now` is, only on the occupied slots passed on the
    /// way. Each timer is re-placed at most once per level; a timer more
    /// than the wheel's span (~2.2 years) away is also re-placed when the
    /// wheel reaches the last top-level slot, and when a single `poll` jumps
    /// past every occupied top-level slot, all top-level timers are
    /// re-placed at once (O(timers on the top level)), so that even
    /// `poll(u64::MAX)` takes a bounded number of steps.
    pub fn poll(&mut self, now: u64) -> Option<(TimerKey, T)> {
        let now = now.max(self.elapsed);
        loop {
            #[cfg(test)]
            {
                self.steps += 1;
            }
            // Timers inserted in the past are earlier than anything on the
            // wheel (those are all at or after `elapsed`).
            if let Some(&index) = self.overdue.first() {
                self.heap_remove(0);
                return Some(self.release(index));
            }
            let Some((level, slot, start)) = self.next_slot() else {
                self.elapsed = now;
                return None;
            };
            if start > now {
                self.elapsed = now;
                return None;
            }
            self.elapsed = self.elapsed.max(start);
            if level == 0 {
                let index = self.levels[0].head[slot];
                debug_assert_eq!(self.entries[index as usize].deadline, self.elapsed);
                self.unlink(index);
                return Some(self.release(index));
            }
            if level == TOP && self.top_passed(now) {
                self.rebase_top(now);
            } else {
                self.cascade(level, slot);
            }
        }
    }

    /// Approximate heap bytes used: arena capacity times entry size, the
    /// overdue heap and the slot arrays.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<T>>()
            + self.overdue.capacity() * std::mem::size_of::<u32>()
            + std::mem::size_of::<[Level; NUM_LEVELS]>()
    }

    // ----- arena -----

    /// The arena index of a pending timer.
    #[inline]
    fn lookup(&self, key: TimerKey) -> Option<u32> {
        let entry = self.entries.get(key.index as usize)?;
        (entry.generation == key.generation.get() && entry.loc != LOC_FREE).then_some(key.index)
    }

    /// Takes an entry from the free list (or grows the arena) and fills it;
    /// the caller places it.
    #[inline]
    fn alloc(&mut self, deadline: u64, payload: T) -> u32 {
        if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.next;
            entry.deadline = deadline;
            entry.payload = payload;
            entry.prev = NIL;
            entry.next = NIL;
            index
        } else {
            let index = self.entries.len();
            assert!(index < MAX_ENTRIES, "TimerWheel: too many pending timers");
            self.entries.push(Entry {
                deadline,
                payload,
                prev: NIL,
                next: NIL,
                generation: 1,
                loc: LOC_FREE,
            });
            index as u32
        }
    }

    /// Frees an entry that is already out of its list or heap and returns
    /// its key and payload.
    #[inline]
    fn release(&mut self, index: u32) -> (TimerKey, T) {
        let entry = &mut self.entries[index as usize];
        let key = TimerKey {
            index,
            generation: key_generation(entry.generation),
        };
        // Zero is skipped: keys carry the generation as a `NonZeroU32`.
        entry.generation = entry.generation.wrapping_add(1).max(1);
        entry.loc = LOC_FREE;
        entry.prev = NIL;
        entry.next = self.free_head;
        self.free_head = index;
        self.len -= 1;
        (key, entry.payload)
    }

    // ----- wheel -----

    /// Puts an entry on the wheel relative to `elapsed` (or in the overdue
    /// heap if its deadline has passed).
    #[inline]
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        if deadline < self.elapsed {
            self.heap_push(index);
        } else {
            let (level, slot) = level_slot(self.elapsed, deadline);
            self.push_back(level, slot, index);
        }
    }

    /// Appends an entry to a slot list.
    #[inline]
    fn push_back(&mut self, level: usize, slot: usize, index: u32) {
        let lvl = &mut self.levels[level];
        let tail = lvl.tail[slot];
        let entry = &mut self.entries[index as usize];
        entry.prev = tail;
        entry.next = NIL;
        entry.loc = (level * SLOTS + slot) as u32;
        if tail == NIL {
            lvl.head[slot] = index;
            lvl.occupied |= 1 << slot;
        } else {
            self.entries[tail as usize].next = index;
        }
        lvl.tail[slot] = index;
    }

    /// Removes an entry from its slot list.
    #[inline]
    fn unlink(&mut self, index: u32) {
        let entry = self.entries[index as usize];
        debug_assert!(entry.loc < (NUM_LEVELS * SLOTS) as u32);
        let level = entry.loc as usize / SLOTS;
        let slot = entry.loc as usize % SLOTS;
        let lvl = &mut self.levels[level];
        if entry.prev == NIL {
            lvl.head[slot] = entry.next;
        } else {
            self.entries[entry.prev as usize].next = entry.next;
        }
        if entry.next == NIL {
            lvl.tail[slot] = entry.prev;
        } else {
            self.entries[entry.next as usize].prev = entry.prev;
        }
        if lvl.head[slot] == NIL {
            lvl.occupied &= !(1 << slot);
        }
    }

    /// The next occupied slot of a level (at or after the current one, in
    /// ring order) and the tick it starts at.
    #[inline]
    fn next_in_level(&self, level: usize) -> Option<(usize, u64)> {
        let occupied = self.levels[level].occupied;
        if occupied == 0 {
            return None;
        }
        let shift = LEVEL_BITS * level as u32;
        let current = ((self.elapsed >> shift) & SLOT_MASK) as u32;
        let ahead = occupied.rotate_right(current).trailing_zeros();
        let slot = ((current + ahead) as u64 & SLOT_MASK) as usize;
        let width = 1u64 << shift;
        // Never overflows while the invariants hold (the start is at most
        // the deadline of an entry in the slot); saturate anyway.
        let start = (self.elapsed & !(width - 1)).saturating_add(u64::from(ahead) << shift);
        Some((slot, start))
    }

    /// The earliest occupied slot of the wheel: `(level, slot, start)`.
    #[inline]
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        // A non-empty lower level always starts before any higher level's
        // next slot, but take the minimum anyway (6 levels, no entries).
        let mut best: Option<(usize, usize, u64)> = None;
        for level in 0..NUM_LEVELS {
            if let Some((slot, start)) = self.next_in_level(level)
                && best.is_none_or(|(_, _, s)| start < s)
            {
                best = Some((level, slot, start));
            }
        }
        best
    }

    /// Re-places the entries of a slot whose start the wheel has reached.
    fn cascade(&mut self, level: usize, slot: usize) {
        let lvl = &mut self.levels[level];
        let head = lvl.head[slot];
        lvl.head[slot] = NIL;
        lvl.tail[slot] = NIL;
        lvl.occupied &= !(1 << slot);
        self.place_chain(head);
    }

    /// Re-places a detached chain of entries relative to `elapsed`.
    fn place_chain(&mut self, mut index: u32) {
        while index != NIL {
            let next = self.entries[index as usize].next;
            debug_assert!(self.entries[index as usize].deadline >= self.elapsed);
            self.place(index);
            #[cfg(test)]
            {
                self.steps += 1;
            }
            index = next;
        }
    }

    /// Whether only the top level holds entries and every occupied
    /// top-level slot starts at or before `now` (a jump over the whole ring).
    fn top_passed(&self, now: u64) -> bool {
        let top = self.levels[TOP].occupied;
        if top == 0 || self.levels[..TOP].iter().any(|l| l.occupied != 0) {
            return false;
        }
        let current = ((self.elapsed >> TOP_SHIFT) & SLOT_MASK) as u32;
        let last_ahead = 63 - top.rotate_right(current).leading_zeros();
        let start = (self.elapsed & !((1u64 << TOP_SHIFT) - 1))
            .saturating_add(u64::from(last_ahead) << TOP_SHIFT);
        start <= now
    }

    /// Jumps over the whole top level at once: takes all its entries, moves
    /// `elapsed` to `min(now, earliest deadline)` and re-places them. Keeps a
    /// jump of, say, 2^63 ticks from re-cascading far deadlines once per
    /// ring turn.
    fn rebase_top(&mut self, now: u64) {
        let mut head = NIL;
        let mut tail = NIL;
        let lvl = &mut self.levels[TOP];
        let mut occupied = lvl.occupied;
        while occupied != 0 {
            let slot = occupied.trailing_zeros() as usize;
            occupied &= occupied - 1;
            let (h, t) = (lvl.head[slot], lvl.tail[slot]);
            lvl.head[slot] = NIL;
            lvl.tail[slot] = NIL;
            if tail == NIL {
                head = h;
            } else {
                self.entries[tail as usize].next = h;
                self.entries[h as usize].prev = tail;
            }
            tail = t;
        }
        lvl.occupied = 0;
        let mut earliest = u64::MAX;
        let mut index = head;
        while index != NIL {
            let entry = &self.entries[index as usize];
            earliest = earliest.min(entry.deadline);
            index = entry.next;
        }
        self.elapsed = self.elapsed.max(now.min(earliest));
        self.place_chain(head);
    }

    // ----- overdue heap -----

    /// Heap order: `(deadline, index)`.
    #[inline]
    fn heap_less(&self, a: u32, b: u32) -> bool {
        (self.entries[a as usize].deadline, a) < (self.entries[b as usize].deadline, b)
    }

    #[inline]
    fn heap_set(&mut self, pos: usize, index: u32) {
        self.overdue[pos] = index;
        self.entries[index as usize].loc = LOC_HEAP | pos as u32;
    }

    fn heap_push(&mut self, index: u32) {
        let pos = self.overdue.len();
        self.overdue.push(index);
        self.entries[index as usize].loc = LOC_HEAP | pos as u32;
        self.sift_up(pos);
    }

    /// Removes the element at `pos`; the caller then frees it.
    fn heap_remove(&mut self, pos: usize) {
        let Some(last) = self.overdue.pop() else {
            return;
        };
        if pos < self.overdue.len() {
            self.heap_set(pos, last);
            self.sift_down(pos);
            self.sift_up(pos);
        }
    }

    fn sift_up(&mut self, mut pos: usize) {
        let index = self.overdue[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = self.overdue[parent];
            if !self.heap_less(index, p) {
                break;
            }
            self.heap_set(pos, p);
            pos = parent;
        }
        self.heap_set(pos, index);
    }

    fn sift_down(&mut self, mut pos: usize) {
        let index = self.overdue[pos];
        let len = self.overdue.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let mut child = left;
            if right < len && self.heap_less(self.overdue[right], self.overdue[left]) {
                child = right;
            }
            let c = self.overdue[child];
            if !self.heap_less(c, index) {
                break;
            }
            self.heap_set(pos, c);
            pos = child;
        }
        self.heap_set(pos, index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    /// SplitMix64, for deterministic pseudo-random tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Deadlines that hit every level, the level boundaries, the ring
    /// and the far end of `u64`.
    fn interesting_deadlines() -> Vec<u64> {
        let mut v = vec![
            0,
            1,
            2,
            63,
            64,
            65,
            127,
            128,
            4095,
            4096,
            4097,
            (1 << 18) - 1,
            1 << 18,
            1 << 24,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            WHEEL_SPAN - 1,
            WHEEL_SPAN,
            WHEEL_SPAN + 1,
            WHEEL_SPAN + (1 << 30) * 40 + 5,
            2 * WHEEL_SPAN + 17,
            1 << 40,
            1 << 50,
            u64::MAX / 2,
            u64::MAX / 2 + 1,
            u64::MAX - (1 << 30),
            u64::MAX - 64,
            u64::MAX - 1,
            u64::MAX,
        ];
        v.sort_unstable();
        v.dedup();
        v
    }

    // size_of::<Entry<u64>>() == 32: deadline 8 + payload 8 + prev/next/
    // generation/loc 4 x 4. Well under the 64-byte budget per timer.
    #[test]
    fn entry_size() {
        assert_eq!(std::mem::size_of::<Entry<u64>>(), 32);
        assert_eq!(std::mem::size_of::<Entry<u32>>(), 32);
        assert_eq!(std::mem::size_of::<TimerKey>(), 8);
        assert_eq!(std::mem::size_of::<Option<TimerKey>>(), 8);
    }

    #[test]
    fn fires_at_exact_tick_in_order_across_levels() {
        let deadlines = interesting_deadlines();
        let mut wheel = TimerWheel::new();
        // Insert in a scrambled order.
        let mut order: Vec<usize> = (0..deadlines.len()).collect();
        let mut rng = Rng(7);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut keys = vec![None; deadlines.len()];
        for &i in &order {
            keys[i] = Some(wheel.insert(deadlines[i], i));
        }
        assert_eq!(wheel.len(), deadlines.len());
        for (i, &d) in deadlines.iter().enumerate() {
            // Never early: nothing comes out one tick before.
            if d > wheel.elapsed() {
                assert_eq!(wheel.poll(d - 1), None, "deadline {d} fired early");
                assert_eq!(wheel.elapsed(), d - 1);
            }
            let next = wheel.next_expiration().unwrap();
            assert!(next <= d, "next_expiration {next} > earliest {d}");
            wheel.steps = 0;
            assert_eq!(wheel.poll(d), Some((keys[i].unwrap(), i)), "deadline {d}");
            assert!(wheel.steps < 64, "{} steps for {d}", wheel.steps);
            assert_eq!(wheel.elapsed(), d);
            assert_eq!(wheel.deadline(keys[i].unwrap()), None);
        }
        assert_eq!(wheel.poll(u64::MAX), None);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn one_big_poll_drains_in_order() {
        let deadlines = interesting_deadlines();
        let mut wheel = TimerWheel::new();
        for &d in deadlines.iter().rev() {
            wheel.insert(d, d);
        }
        let mut out = Vec::new();
        while let Some((_, d)) = wheel.poll(u64::MAX) {
            assert_eq!(wheel.elapsed(), d, "fired at the wrong tick");
            out.push(d);
        }
        assert_eq!(out, deadlines);
        assert_eq!(wheel.elapsed(), u64::MAX);
        // Bounded work: a handful of steps per timer, not one per ring turn.
        assert!(wheel.steps < 40 * deadlines.len() as u64, "{}", wheel.steps);
    }

    #[test]
    fn many_random_deadlines_fire_at_their_tick() {
        let mut rng = Rng(42);
        let mut wheel = TimerWheel::with_capacity(20_000);
        let mut expected = Vec::new();
        for i in 0..20_000u64 {
            let d = match i % 4 {
                0 => rng.below(64),
                1 => rng.below(64_000),
                2 => rng.below(1 << 32),
                _ => rng.below(1 << 40),
            };
            wheel.insert(d, (d, i));
            expected.push((d, i));
        }
        // Equal deadlines come out in insertion order.
        expected.sort_unstable();
        let mut got = Vec::new();
        let mut now = 0u64;
        while !wheel.is_empty() {
            let bits = rng.below(42);
            now = now.saturating_add(rng.below(1 << bits));
            while let Some((_, (d, i))) = wheel.poll(now) {
                assert!(d <= now);
                assert_eq!(wheel.elapsed(), d);
                got.push((d, i));
            }
            assert_eq!(wheel.elapsed(), now);
            if let Some(next) = wheel.next_expiration() {
                assert!(next > now);
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn deadline_zero_and_now() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(0, 'a');
        assert_eq!(wheel.next_expiration(), Some(0));
        assert_eq!(wheel.poll(0), Some((a, 'a')));
        assert_eq!(wheel.poll(0), None);
        assert_eq!(wheel.poll(77), None);
        let b = wheel.insert(77, 'b');
        assert_eq!(wheel.next_expiration(), Some(77));
        assert_eq!(wheel.poll(77), Some((b, 'b')));
    }

    #[test]
    fn insert_in_the_past_fires_next_poll_in_deadline_order() {
        let mut wheel = TimerWheel::new();
        let later = wheel.insert(5000, 5000u64);
        assert_eq!(wheel.poll(1000), None);
        assert_eq!(wheel.elapsed(), 1000);
        let at_now = wheel.insert(1000, 1000);
        for d in [500, 10, 999, 0, 10] {
            wheel.insert(d, d);
        }
        assert_eq!(wheel.len(), 7);
        assert_eq!(wheel.next_expiration(), Some(0));
        // `now` before `elapsed` is allowed: only what is already due.
        let mut got = Vec::new();
        while let Some((_, d)) = wheel.poll(3) {
            got.push(d);
            assert_eq!(wheel.elapsed(), 1000);
        }
        assert_eq!(got, [0, 10, 10, 500, 999, 1000]);
        assert_eq!(wheel.elapsed(), 1000);
        assert_eq!(wheel.cancel(at_now), None);
        assert_eq!(wheel.deadline(later), Some(5000));
        assert_eq!(wheel.next_expiration(), Some(4096));
        assert_eq!(wheel.poll(u64::MAX), Some((later, 5000)));
        // Past inserts can be cancelled too.
        let x = wheel.insert(3, 3);
        let y = wheel.insert(2, 2);
        let z = wheel.insert(1, 1);
        assert_eq!(wheel.cancel(y), Some(2));
        assert_eq!(wheel.cancel(y), None);
        assert_eq!(wheel.poll(0), Some((z, 1)));
        assert_eq!(wheel.poll(0), Some((x, 3)));
        assert_eq!(wheel.poll(0), None);
        assert!(wheel.is_empty());
    }

    #[test]
    fn cancel_and_stale_keys() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(100, 1u64);
        assert_eq!(wheel.payload(a), Some(&1));
        assert_eq!(wheel.deadline(a), Some(100));
        assert_eq!(wheel.cancel(a), Some(1));
        assert_eq!(wheel.cancel(a), None, "double cancel");
        assert_eq!(wheel.payload(a), None);
        assert_eq!(wheel.deadline(a), None);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
        // The freed entry is reused with a new generation.
        let b = wheel.insert(100, 2);
        assert_eq!(b.index, a.index);
        assert_ne!(b, a);
        assert_eq!(wheel.cancel(a), None, "stale key hit a reused entry");
        assert_eq!(wheel.payload(a), None);
        assert_eq!(wheel.payload(b), Some(&2));
        // A fired key is stale as well.
        assert_eq!(wheel.poll(100), Some((b, 2)));
        assert_eq!(wheel.cancel(b), None);
        // Unknown keys (index beyond the arena, forged generation).
        let forged = TimerKey {
            index: 12345,
            generation: NonZeroU32::MIN,
        };
        assert_eq!(wheel.cancel(forged), None);
        let c = wheel.insert(7, 3);
        let forged = TimerKey {
            index: c.index,
            generation: NonZeroU32::new(c.generation.get().wrapping_add(5)).unwrap(),
        };
        assert_eq!(wheel.cancel(forged), None);
        assert_eq!(wheel.len(), 1);
        // Cancelling every other timer in a slot keeps the list intact.
        let keys: Vec<_> = (0..10).map(|i| wheel.insert(3000, i)).collect();
        for k in keys.iter().step_by(2) {
            assert!(wheel.cancel(*k).is_some());
        }
        assert_eq!(wheel.cancel(keys[9]), Some(9));
        assert_eq!(wheel.poll(10), Some((c, 3)));
        let got: Vec<_> = std::iter::from_fn(|| wheel.poll(3000))
            .map(|(_, i)| i)
            .collect();
        assert_eq!(got, [1, 3, 5, 7]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn cancel_during_poll_loop() {
        let mut wheel = TimerWheel::new();
        let keys: Vec<_> = (0..40u64).map(|i| wheel.insert(10 + i % 4, i)).collect();
        let far = wheel.insert(1 << 33, 999);
        let mut got = Vec::new();
        let mut n = 0;
        while let Some((key, i)) = wheel.poll(100) {
            assert_eq!(wheel.cancel(key), None, "just fired");
            got.push(i);
            n += 1;
            if n == 3 {
                // Cancel some due timers (same and later ticks) and the far one.
                for &j in &[4u64, 8, 1, 2, 39, 5] {
                    wheel.cancel(keys[j as usize]);
                }
                assert_eq!(wheel.cancel(far), Some(999));
            }
        }
        let mut expected: Vec<u64> = (0..40)
            .filter(|i| ![1, 2, 4, 5, 8, 39].contains(i))
            .collect();
        expected.sort_by_key(|i| (10 + i % 4, *i));
        // The first three came out before the cancels: 0, 4, 8 (tick 10).
        let mut expected_with_early = vec![0, 4, 8];
        expected_with_early.extend(expected.into_iter().filter(|i| ![0].contains(i)));
        assert_eq!(got, expected_with_early);
        assert!(wheel.is_empty());
    }

    #[test]
    fn next_expiration_never_late_and_exact_in_level_zero() {
        let mut rng = Rng(3);
        let mut wheel = TimerWheel::new();
        let mut model: BTreeMap<(u64, u32), TimerKey> = BTreeMap::new();
        for round in 0..5_000u32 {
            let e = wheel.elapsed();
            let d = match rng.below(5) {
                0 => e + rng.below(64),
                1 => e + rng.below(5_000),
                2 => e + rng.below(1 << 34),
                3 => e.saturating_add(rng.below(1 << 45)),
                _ => e.saturating_sub(rng.below(100)),
            };
            let k = wheel.insert(d, round);
            model.insert((d, round), k);
            if rng.below(3) == 0 {
                let (&(d0, r0), &k0) = model
                    .iter()
                    .nth(rng.below(model.len() as u64) as usize)
                    .unwrap();
                assert_eq!(wheel.cancel(k0), Some(r0));
                model.remove(&(d0, r0));
            }
            if rng.below(2) == 0 {
                let bits = rng.below(40);
                let now = e.saturating_add(rng.below(1 << bits));
                while let Some((k, r)) = wheel.poll(now) {
                    let (&(d0, r0), &k0) = model.iter().next().unwrap();
                    assert_eq!((k, r), (k0, r0));
                    assert!(d0 <= now.max(e));
                    model.remove(&(d0, r0));
                }
            }
            let e = wheel.elapsed();
            assert_eq!(
                wheel.next_deadline(),
                model.keys().next().map(|&(min, _)| min)
            );
            match model.keys().next() {
                None => assert_eq!(wheel.next_expiration(), None),
                Some(&(min, _)) => {
                    let next = wheel.next_expiration().unwrap();
                    assert!(next <= min, "next {next} > min {min}");
                    if min < e || (min ^ e) < 64 {
                        assert_eq!(next, min, "not exact in level 0 (elapsed {e})");
                    }
                }
            }
        }
    }

    #[test]
    fn huge_deadlines_never_overflow() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(u64::MAX, 'a');
        let b = wheel.insert(u64::MAX - 1, 'b');
        assert!(wheel.next_expiration().unwrap() < u64::MAX);
        assert_eq!(wheel.poll(u64::MAX - 2), None);
        assert_eq!(wheel.next_expiration(), Some(u64::MAX - 1));
        assert_eq!(wheel.poll(u64::MAX), Some((b, 'b')));
        assert_eq!(wheel.poll(u64::MAX), Some((a, 'a')));
        assert_eq!(wheel.poll(u64::MAX), None);
        assert_eq!(wheel.elapsed(), u64::MAX);
        // At the end of time everything is due at once.
        let c = wheel.insert(u64::MAX, 'c');
        let d = wheel.insert(0, 'd');
        assert_eq!(wheel.next_expiration(), Some(0));
        assert_eq!(wheel.poll(0), Some((d, 'd')));
        assert_eq!(wheel.poll(5), Some((c, 'c')));
        assert_eq!(wheel.poll(u64::MAX), None);
    }

    #[test]
    fn far_jump_is_bounded() {
        let mut wheel = TimerWheel::<u64>::new();
        // Empty wheel: one step whatever the distance.
        assert_eq!(wheel.poll(1_000_000_000_000), None);
        assert_eq!(wheel.steps, 1);
        assert_eq!(wheel.elapsed(), 1_000_000_000_000);

        let mut wheel = TimerWheel::new();
        for d in [
            5u64,
            1_000_000,
            10_000_000_000,
            100_000_000_007,
            999_999_999_999,
        ] {
            wheel.insert(d, d);
        }
        let far = wheel.insert(2_000_000_000_000, 0);
        let mut got = Vec::new();
        while let Some((_, d)) = wheel.poll(1_000_000_000_000) {
            got.push(d);
        }
        assert_eq!(
            got,
            [
                5,
                1_000_000,
                10_000_000_000,
                100_000_000_007,
                999_999_999_999
            ]
        );
        assert!(wheel.steps < 100, "{} steps", wheel.steps);
        assert_eq!(wheel.deadline(far), Some(2_000_000_000_000));

        // Jumps of ~2^63 over far deadlines do not re-cascade per ring turn.
        let mut wheel = TimerWheel::new();
        for d in [
            1u64 << 62,
            (1 << 62) + (1 << 40),
            u64::MAX / 3,
            u64::MAX - 5,
        ] {
            wheel.insert(d, d);
        }
        wheel.steps = 0;
        assert_eq!(wheel.poll(1 << 61), None);
        assert!(wheel.steps < 20, "{} steps", wheel.steps);
        let mut n = 0;
        while wheel.poll(u64::MAX).is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
        assert!(wheel.steps < 200, "{} steps", wheel.steps);

        // Two far groups inserted at different times (two far slots).
        let mut wheel = TimerWheel::new();
        wheel.insert(u64::MAX / 2, 1);
        wheel.poll(40 << 30);
        wheel.insert(u64::MAX / 2 + 1, 2);
        wheel.steps = 0;
        assert_eq!(wheel.poll(u64::MAX / 2 - 1), None);
        assert!(wheel.steps < 20, "{} steps", wheel.steps);
        assert_eq!(wheel.poll(u64::MAX).map(|x| x.1), Some(1));
        assert_eq!(wheel.poll(u64::MAX).map(|x| x.1), Some(2));
    }

    #[test]
    fn reuse_keeps_arena_bounded() {
        let mut wheel = TimerWheel::new();
        for round in 0..1000u64 {
            let keys: Vec<_> = (0..100).map(|i| wheel.insert(round * 10 + i, i)).collect();
            for k in &keys[..50] {
                wheel.cancel(*k);
            }
            while wheel.poll(round * 10 + 200).is_some() {}
        }
        assert!(wheel.entries.len() <= 100);
        assert!(wheel.memory_bytes() >= 100 * 32);
    }

    // ----- model test -----

    #[derive(Clone, Debug)]
    enum Op {
        /// Insert at `elapsed + delta` (saturating), or `elapsed - delta` if `past`.
        Insert {
            delta: u64,
            past: bool,
            payload: u32,
        },
        /// Insert at an absolute tick.
        InsertAt { deadline: u64, payload: u32 },
        /// Cancel the n-th pending key (mod len), or an already dead key.
        Cancel { n: usize, stale: bool },
        /// Poll with `elapsed + advance` (or `elapsed - advance`) until `None`.
        Drain { advance: u64, back: bool },
        /// Poll once (leaves due timers behind, for cancels mid-loop).
        PollOne { advance: u64 },
    }

    fn delta() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0..70u64,
            4 => 0..5_000u64,
            2 => 0..(1u64 << 24),
            2 => 0..(1u64 << 38),
            1 => 0..(1u64 << 45),
            1 => Just(u64::MAX),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (delta(), prop::bool::weighted(0.1), any::<u32>())
                .prop_map(|(delta, past, payload)| Op::Insert { delta, past, payload }),
            1 => (prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64)], any::<u32>())
                .prop_map(|(deadline, payload)| Op::InsertAt { deadline, payload }),
            3 => (any::<usize>(), prop::bool::weighted(0.2))
                .prop_map(|(n, stale)| Op::Cancel { n, stale }),
            3 => (delta(), prop::bool::weighted(0.1))
                .prop_map(|(advance, back)| Op::Drain { advance, back }),
            3 => delta().prop_map(|advance| Op::PollOne { advance }),
        ]
    }

    #[derive(Default)]
    struct Model {
        /// `(deadline, seq) -> (key, payload)`.
        order: BTreeMap<(u64, u64), (TimerKey, u32)>,
        /// `key -> (deadline, seq)`.
        keys: HashMap<TimerKey, (u64, u64)>,
        dead: Vec<TimerKey>,
        elapsed: u64,
        seq: u64,
    }

    impl Model {
        /// Checks one popped timer against the model and removes it.
        fn popped(&mut self, key: TimerKey, payload: u32, now: u64) {
            let &(min, _) = self.order.keys().next().expect("popped from empty model");
            let (deadline, seq) = self.keys.remove(&key).expect("popped unknown key");
            assert_eq!(deadline, min, "not the earliest deadline");
            assert!(deadline <= now, "popped {deadline} > now {now}");
            assert_eq!(self.order.remove(&(deadline, seq)), Some((key, payload)));
            self.elapsed = self.elapsed.max(deadline);
            self.dead.push(key);
        }

        fn nothing_due(&mut self, now: u64) {
            if let Some(&(min, _)) = self.order.keys().next() {
                assert!(min > now, "{min} due at {now} not popped");
            }
            self.elapsed = now;
        }
    }

    fn run_model(ops: Vec<Op>) {
        let mut wheel = TimerWheel::new();
        let mut model = Model::default();
        for op in ops {
            let e = wheel.elapsed();
            assert_eq!(e, model.elapsed);
            match op {
                Op::Insert { .. } | Op::InsertAt { .. } => {
                    let (deadline, payload) = match op {
                        Op::Insert {
                            delta,
                            past: true,
                            payload,
                        } => (e.saturating_sub(delta), payload),
                        Op::Insert { delta, payload, .. } => (e.saturating_add(delta), payload),
                        Op::InsertAt { deadline, payload } => (deadline, payload),
                        _ => unreachable!(),
                    };
                    let key = wheel.insert(deadline, payload);
                    assert_eq!(wheel.deadline(key), Some(deadline));
                    model.seq += 1;
                    assert!(model.keys.insert(key, (deadline, model.seq)).is_none());
                    model.order.insert((deadline, model.seq), (key, payload));
                }
                Op::Cancel { n, stale: true } => {
                    if !model.dead.is_empty() {
                        let key = model.dead[n % model.dead.len()];
                        assert_eq!(wheel.cancel(key), None);
                        assert_eq!(wheel.payload(key), None);
                    }
                }
                Op::Cancel { n, stale: false } => {
                    if !model.order.is_empty() {
                        let (&(d, s), &(key, payload)) =
                            model.order.iter().nth(n % model.order.len()).unwrap();
                        assert_eq!(wheel.payload(key), Some(&payload));
                        assert_eq!(wheel.cancel(key), Some(payload));
                        model.order.remove(&(d, s));
                        model.keys.remove(&key);
                        model.dead.push(key);
                    }
                }
                Op::Drain { advance, back } => {
                    let now = if back {
                        e.saturating_sub(advance)
                    } else {
                        e.saturating_add(advance)
                    };
                    let effective = now.max(e);
                    while let Some((key, payload)) = wheel.poll(now) {
                        model.popped(key, payload, effective);
                        assert_eq!(wheel.elapsed(), model.elapsed);
                    }
                    model.nothing_due(effective);
                }
                Op::PollOne { advance } => {
                    let now = e.saturating_add(advance);
                    match wheel.poll(now) {
                        Some((key, payload)) => model.popped(key, payload, now),
                        None => model.nothing_due(now),
                    }
                }
            }
            assert_eq!(wheel.len(), model.keys.len());
            assert_eq!(wheel.is_empty(), model.keys.is_empty());
            assert_eq!(wheel.elapsed(), model.elapsed);
            let e = wheel.elapsed();
            match model.order.keys().next() {
                None => assert_eq!(wheel.next_expiration(), None),
                Some(&(min, _)) => {
                    let next = wheel.next_expiration().unwrap();
                    assert!(next <= min, "next_expiration {next} > min {min}");
                    if min < e || (min ^ e) < 64 {
                        assert_eq!(next, min);
                    }
                }
            }
        }
        // Drain everything that is left, in order.
        while let Some((key, payload)) = wheel.poll(u64::MAX) {
            model.popped(key, payload, u64::MAX);
        }
        assert!(model.order.is_empty());
        assert!(wheel.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_btreemap_model(ops in prop::collection::vec(op(), 1..300)) {
            run_model(ops);
        }
    }
}
