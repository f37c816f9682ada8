//! [`MioEventloop`]: mio for descriptors, a timer wheel for timers.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Poll, Token};

use super::clock::Clock;
use super::wheel::{TimerKey, TimerWheel};
use super::{
    Eventloop, FdCallback, FdHandle, Interest, Readiness, TimerCallback, TimerId, Turn, When,
};

struct FdSlot {
    fd: RawFd,
    generation: u32,
    /// `None` while the callback runs (or for a free slot).
    callback: Option<FdCallback>,
    live: bool,
}

struct TimerSlot {
    generation: u32,
    key: Option<TimerKey>,
    /// The tick the timer is scheduled for.
    due: u64,
    repeat: Option<Duration>,
    callback: Option<TimerCallback>,
    live: bool,
}

struct State {
    fds: Vec<FdSlot>,
    free_fds: Vec<u32>,
    live_fds: usize,
    timers: Vec<TimerSlot>,
    free_timers: Vec<u32>,
    wheel: TimerWheel<u32>,
}

/// The event loop this crate ships: mio (epoll on Linux) for descriptors,
/// a hierarchical timer wheel with millisecond ticks for timers.
///
/// With [`MioEventloop::new_virtual`] the clock is virtual: whenever no
/// descriptor is ready, time jumps to the next timer instead of sleeping.
/// Descriptors still work (loopback sockets deliver synchronously); before
/// a jump the loop gives the kernel a short real grace period
/// ([`MioEventloop::set_virtual_grace`]) when descriptors are registered.
pub struct MioEventloop {
    poll: RefCell<Poll>,
    events: RefCell<Events>,
    clock: Clock,
    state: RefCell<State>,
    grace: Cell<Duration>,
    /// The time a descriptor's callback started, which `now` returns while
    /// it runs: handling a batch of messages reads the clock once, not
    /// once per message (as libuv's `uv_now`). `None` outside callbacks.
    callback_now: Cell<Option<Instant>>,
}

impl std::fmt::Debug for MioEventloop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.borrow();
        f.debug_struct("MioEventloop")
            .field("virtual", &self.clock.is_virtual())
            .field("fds", &st.live_fds)
            .field("timers", &st.wheel.len())
            .finish()
    }
}

fn token(index: u32, generation: u32) -> Token {
    Token(((generation as usize) << 32) | index as usize)
}

fn untoken(t: Token) -> (u32, u32) {
    ((t.0 & 0xffff_ffff) as u32, (t.0 >> 32) as u32)
}

fn mio_interest(i: Interest) -> io::Result<mio::Interest> {
    match (i.read, i.write) {
        (true, true) => Ok(mio::Interest::READABLE | mio::Interest::WRITABLE),
        (true, false) => Ok(mio::Interest::READABLE),
        (false, true) => Ok(mio::Interest::WRITABLE),
        (false, false) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty interest: use del_fd",
        )),
    }
}

impl MioEventloop {
    /// A loop on the real clock.
    pub fn new() -> io::Result<MioEventloop> {
        Self::with_clock(Clock::real())
    }

    /// A loop on virtual time.
    ///
    /// # Panics
    /// If the OS cannot create an epoll instance (out of descriptors);
    /// use [`MioEventloop::try_new_virtual`] to handle that.
    pub fn new_virtual() -> MioEventloop {
        match Self::try_new_virtual() {
            Ok(lp) => lp,
            Err(e) => panic!("cannot create the poller for a virtual-time loop: {e}"),
        }
    }

    /// A loop on virtual time, or the OS error.
    pub fn try_new_virtual() -> io::Result<MioEventloop> {
        Self::with_clock(Clock::virtual_time())
    }

    fn with_clock(clock: Clock) -> io::Result<MioEventloop> {
        Ok(MioEventloop {
            poll: RefCell::new(Poll::new()?),
            events: RefCell::new(Events::with_capacity(1024)),
            clock,
            state: RefCell::new(State {
                fds: Vec::new(),
                free_fds: Vec::new(),
                live_fds: 0,
                timers: Vec::new(),
                free_timers: Vec::new(),
                wheel: TimerWheel::new(),
            }),
            grace: Cell::new(Duration::from_millis(2)),
            callback_now: Cell::new(None),
        })
    }

    /// Whether the clock is virtual.
    pub fn is_virtual(&self) -> bool {
        self.clock.is_virtual()
    }

    /// Under virtual time, how long to wait for real descriptors before
    /// jumping the clock (default 2 ms; only when descriptors are
    /// registered).
    pub fn set_virtual_grace(&self, grace: Duration) {
        self.grace.set(grace);
    }

    /// Under virtual time, moves the clock forward by `d` (timers that
    /// become due fire on the next run). No effect on a real clock.
    pub fn advance(&self, d: Duration) {
        self.clock.advance_to(self.clock.now() + d);
    }

    /// Number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.state.borrow().wheel.len()
    }

    /// Number of registered descriptors.
    pub fn registered_fds(&self) -> usize {
        self.state.borrow().live_fds
    }

    fn deadline_for(&self, when: When) -> Instant {
        match when {
            When::In(d) => self
                .clock
                .now()
                .checked_add(d)
                .unwrap_or_else(|| self.clock.tick_instant(u64::MAX / 2)),
            When::At(at) => self.clock.instant_for(at),
            When::Deadline(t) => t,
        }
    }

    /// Runs every timer that is due; returns how many ran.
    fn fire_due_timers(&self) -> usize {
        let mut ran = 0;
        loop {
            let now_tick = self.clock.now_tick();
            let (index, callback) = {
                let mut st = self.state.borrow_mut();
                let Some((_, index)) = st.wheel.poll(now_tick) else {
                    break;
                };
                let State {
                    wheel,
                    timers,
                    free_timers,
                    ..
                } = &mut *st;
                let slot = &mut timers[index as usize];
                if !slot.live {
                    continue;
                }
                let callback = slot.callback.take();
                match slot.repeat {
                    Some(period) => {
                        let period_ms =
                            u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
                        // Stay on the grid; skip periods that were missed.
                        let mut next = slot.due.saturating_add(period_ms);
                        if next <= now_tick {
                            let missed = (now_tick - next) / period_ms + 1;
                            next = next.saturating_add(missed.saturating_mul(period_ms));
                        }
                        slot.due = next;
                        slot.key = Some(wheel.insert(next, index));
                    }
                    None => {
                        slot.key = None;
                        slot.live = false;
                        slot.generation = slot.generation.wrapping_add(1);
                        free_timers.push(index);
                    }
                }
                (index, callback)
            };
            let Some(mut cb) = callback else { continue };
            cb();
            ran += 1;
            // Put a repeating timer's callback back, unless the timer was
            // cancelled (or its slot reused) while it ran.
            let mut st = self.state.borrow_mut();
            if let Some(slot) = st.timers.get_mut(index as usize) {
                if slot.live && slot.repeat.is_some() && slot.callback.is_none() {
                    slot.callback = Some(cb);
                }
            }
        }
        ran
    }

    fn next_timer_instant(&self) -> Option<Instant> {
        self.state
            .borrow()
            .wheel
            .next_expiration()
            .map(|t| self.clock.tick_instant(t))
    }

    fn dispatch(&self, events: &[(Token, Readiness)]) {
        for &(tok, readiness) in events {
            let (index, generation) = untoken(tok);
            let callback = {
                let mut st = self.state.borrow_mut();
                match st.fds.get_mut(index as usize) {
                    Some(slot) if slot.live && slot.generation == generation => {
                        slot.callback.take()
                    }
                    _ => None,
                }
            };
            let Some(mut cb) = callback else { continue };
            // Restored after: a nested run's callbacks must not leave
            // their time behind.
            let outer = self.callback_now.replace(Some(self.clock.now()));
            cb(readiness);
            self.callback_now.set(outer);
            let mut st = self.state.borrow_mut();
            if let Some(slot) = st.fds.get_mut(index as usize) {
                if slot.live && slot.generation == generation && slot.callback.is_none() {
                    slot.callback = Some(cb);
                }
            }
        }
    }
}

impl Eventloop for MioEventloop {
    /// While a descriptor's callback runs: the time it started (one
    /// clock read per readiness batch, at most a few hundred microseconds
    /// old); otherwise the clock.
    fn now(&self) -> Instant {
        match self.callback_now.get() {
            Some(t) => t,
            None => self.clock.now(),
        }
    }

    fn wall_now(&self) -> SystemTime {
        self.clock.wall_now()
    }

    fn add_fd(&self, fd: RawFd, interest: Interest, callback: FdCallback) -> io::Result<FdHandle> {
        let mio_int = mio_interest(interest)?;
        let mut st = self.state.borrow_mut();
        let index = match st.free_fds.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(st.fds.len())
                    .map_err(|_| io::Error::other("too many descriptors"))?;
                st.fds.push(FdSlot {
                    fd: -1,
                    generation: 0,
                    callback: None,
                    live: false,
                });
                i
            }
        };
        let generation = st.fds[index as usize].generation;
        if let Err(e) = self.poll.borrow().registry().register(
            &mut SourceFd(&fd),
            token(index, generation),
            mio_int,
        ) {
            st.free_fds.push(index);
            return Err(e);
        }
        let slot = &mut st.fds[index as usize];
        slot.fd = fd;
        slot.callback = Some(callback);
        slot.live = true;
        st.live_fds += 1;
        Ok(FdHandle { index, generation })
    }

    fn modify_fd(&self, handle: FdHandle, interest: Interest) -> io::Result<()> {
        let mio_int = mio_interest(interest)?;
        let st = self.state.borrow();
        match st.fds.get(handle.index as usize) {
            Some(slot) if slot.live && slot.generation == handle.generation => {
                self.poll.borrow().registry().reregister(
                    &mut SourceFd(&slot.fd),
                    token(handle.index, handle.generation),
                    mio_int,
                )
            }
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "unknown descriptor handle",
            )),
        }
    }

    fn del_fd(&self, handle: FdHandle) -> bool {
        // The callback is dropped after the borrow ends: dropping it may
        // run code (a captured dispatcher's Drop) that calls back in.
        let callback;
        let mut st = self.state.borrow_mut();
        let State {
            fds,
            free_fds,
            live_fds,
            ..
        } = &mut *st;
        match fds.get_mut(handle.index as usize) {
            Some(slot) if slot.live && slot.generation == handle.generation => {
                // The descriptor may already be closed by its owner: then
                // the kernel dropped it from epoll and this fails harmlessly.
                let _ = self
                    .poll
                    .borrow()
                    .registry()
                    .deregister(&mut SourceFd(&slot.fd));
                slot.live = false;
                callback = slot.callback.take();
                slot.generation = slot.generation.wrapping_add(1);
                free_fds.push(handle.index);
                *live_fds -= 1;
                drop(st);
                drop(callback);
                true
            }
            _ => false,
        }
    }

    fn add_timer(&self, when: When, repeat: Option<Duration>, callback: TimerCallback) -> TimerId {
        // A deadline already reached is due on the loop's next turn, not at
        // the next tick boundary: deferring work with a zero delay must not
        // cost up to a millisecond.
        let deadline = self.deadline_for(when);
        let now = self.clock.now();
        let tick = if deadline <= now {
            self.clock.tick_floor(now)
        } else {
            self.clock.tick_ceil(deadline)
        };
        let mut st = self.state.borrow_mut();
        let index = match st.free_timers.pop() {
            Some(i) => i,
            None => {
                st.timers.push(TimerSlot {
                    generation: 0,
                    key: None,
                    due: 0,
                    repeat: None,
                    callback: None,
                    live: false,
                });
                (st.timers.len() - 1) as u32
            }
        };
        let key = st.wheel.insert(tick, index);
        let slot = &mut st.timers[index as usize];
        slot.key = Some(key);
        slot.due = tick;
        // A zero period would fire forever within one tick.
        slot.repeat = repeat.map(|r| r.max(Duration::from_millis(1)));
        slot.callback = Some(callback);
        slot.live = true;
        TimerId {
            index,
            generation: slot.generation,
        }
    }

    fn cancel_timer(&self, id: TimerId) -> bool {
        // As in `del_fd`: drop the callback outside the borrow.
        let callback;
        let mut st = self.state.borrow_mut();
        let State {
            wheel,
            timers,
            free_timers,
            ..
        } = &mut *st;
        match timers.get_mut(id.index as usize) {
            Some(slot) if slot.live && slot.generation == id.generation => {
                if let Some(key) = slot.key.take() {
                    wheel.cancel(key);
                }
                slot.live = false;
                callback = slot.callback.take();
                slot.generation = slot.generation.wrapping_add(1);
                free_timers.push(id.index);
                drop(st);
                drop(callback);
                true
            }
            _ => false,
        }
    }

    fn run(&self, timeout: Option<Duration>, stop: &dyn Fn() -> bool) -> io::Result<()> {
        // A run nested in a callback waits: the callback's time would be
        // stale inside it, and is after it.
        let outer = self.callback_now.take();
        let result = self.run_turns(timeout, stop);
        self.callback_now.set(outer.map(|_| self.clock.now()));
        result
    }
}

impl MioEventloop {
    fn run_turns(&self, timeout: Option<Duration>, stop: &dyn Fn() -> bool) -> io::Result<()> {
        let end = timeout.map(|t| self.clock.now() + t);
        let mut ready: Vec<(Token, Readiness)> = Vec::with_capacity(64);
        loop {
            {
                let _turn = Turn::begin();
                self.fire_due_timers();
            }
            if stop() {
                return Ok(());
            }
            let now = self.clock.now();
            if end.is_some_and(|e| now >= e) {
                return Ok(());
            }
            let next_timer = self.next_timer_instant();
            let has_fds = self.state.borrow().live_fds > 0;
            if !has_fds && next_timer.is_none() && end.is_none() {
                return Ok(());
            }
            let wake_at = match (next_timer, end) {
                (Some(t), Some(e)) => Some(t.min(e)),
                (t, e) => t.or(e),
            };
            // A nested run (from inside a callback): what the outer turn
            // batched goes out before this one waits.
            Turn::flush();
            let wait = if self.clock.is_virtual() {
                Some(Duration::ZERO)
            } else {
                wake_at.map(|w| w.saturating_duration_since(now))
            };
            self.poll_into(wait, &mut ready)?;
            if ready.is_empty() && self.clock.is_virtual() && has_fds && !self.grace.get().is_zero()
            {
                self.poll_into(Some(self.grace.get()), &mut ready)?;
            }
            if ready.is_empty() && self.clock.is_virtual() {
                match wake_at {
                    Some(w) => self.clock.advance_to(w),
                    // Only descriptors and no deadline: wait for them for real.
                    None => self.poll_into(None, &mut ready)?,
                }
            }
            let _turn = Turn::begin();
            self.dispatch(&ready);
        }
    }

    fn poll_into(
        &self,
        wait: Option<Duration>,
        ready: &mut Vec<(Token, Readiness)>,
    ) -> io::Result<()> {
        ready.clear();
        let mut events = self.events.borrow_mut();
        match self.poll.borrow_mut().poll(&mut events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            ready.push((
                ev.token(),
                Readiness {
                    readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    writable: ev.is_writable() || ev.is_write_closed(),
                    error: ev.is_error(),
                    hangup: ev.is_read_closed() && ev.is_write_closed(),
                },
            ));
        }
        Ok(())
    }
}
