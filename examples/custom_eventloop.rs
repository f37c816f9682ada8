//! Plugging your own event loop into sip-dispatch.
//!
//! The dispatcher and its legs never talk to an operating-system poller
//! directly: everything goes through the [`Eventloop`] trait. The crate
//! ships [`MioEventloop`](sip_dispatch::eventloop::MioEventloop) (epoll
//! through mio, edge-triggered, timers on a hierarchical wheel), but any
//! loop that provides these five things will do:
//!
//! 1. **A clock**: [`Eventloop::now`] must be monotonic (never go back);
//!    every deadline the dispatcher computes (retransmissions, Timer B/F,
//!    the response cache) is relative to it. `Instant::now()` is fine.
//! 2. **Descriptors with callbacks**: `add_fd`, `modify_fd`, `del_fd`. The
//!    descriptor stays owned by the caller; the loop only watches it and
//!    calls the callback with a [`Readiness`].
//! 3. **Timers with callbacks**: `add_timer` (one-shot or repeating) and
//!    `cancel_timer`.
//! 4. **Handles with generations**: a slot is reused after `del_fd` or
//!    `cancel_timer`, so every handle carries a generation
//!    ([`FdHandle::from_parts`], [`TimerId::from_parts`]) and a stale
//!    handle never touches whatever took the slot later.
//! 5. **`run(timeout, stop)`**: fire due timers, check `stop`, wait for
//!    descriptors until the next deadline, dispatch, repeat; return when
//!    `stop()` is true, when the timeout has passed, or when nothing is
//!    registered that could ever happen.
//!
//! And the rules that keep such a loop correct:
//!
//! - **Take the callback out of its slot while it runs.** Callbacks call
//!   back into the loop: a UDP leg's read callback hands a request to the
//!   dispatcher, which sends the answer, arms a timer, cancels another, and
//!   may remove the leg (its own descriptor) altogether. So the loop moves
//!   the boxed closure out of the table, calls it, and puts it back only if
//!   the slot still holds the same registration (same generation) and
//!   nothing else was put there meanwhile.
//! - **Never hold a `RefCell` borrow across a callback** (every trait method
//!   takes `&self` and is called from inside callbacks, so a borrow held
//!   while one runs is a "already borrowed" panic waiting to happen).
//!   That includes *dropping* a callback: a closure's captured values may
//!   have `Drop` impls that call back into the loop, so removed callbacks
//!   are dropped after the borrow ends.
//! - **Level-triggered readiness is fine.** The crate's callbacks read and
//!   write until the call would block (EAGAIN), as edge-triggered polling
//!   demands; under level-triggered polling that costs nothing, and the
//!   write interest is removed again (`modify_fd`) once queued output has
//!   drained, so a writable socket does not wake the loop forever.
//! - **Timers never fire early.** A timer runs once `now() >= deadline`,
//!   never before: the dispatcher relies on it (a retransmission sent a
//!   millisecond early is a protocol bug). Late is fine; the poll timeout
//!   is rounded *up* to whole milliseconds for that reason.
//! - **Optionally, open a [`Turn`] around each batch of callbacks**: UDP
//!   legs then gather what the callbacks send and hand it to the kernel
//!   with one `sendmmsg` when the turn ends. A loop that is run again from
//!   inside a callback calls [`Turn::flush`] before it waits.
//! - A one-shot timer is done once its callback starts (cancelling it from
//!   inside returns false); a repeating one stays on its grid, skipping
//!   periods it missed.
//!
//! This example implements the trait in a deliberately different way from
//! the crate's own loop: plain `poll(2)` (through `libc::poll`,
//! level-triggered, the descriptor list rebuilt on every turn) and timers in
//! a `BTreeMap` ordered by deadline. Then it runs two dispatchers on it in
//! one thread: a UAS on a UDP leg that answers OPTIONS with 200, and a UAC
//! on another UDP leg that sends `--count N` OPTIONS to it (`--window W`
//! at a time) and prints one line per request.
//!
//! ```text
//! cargo run --example custom_eventloop -- --count 5 --window 2
//! ```
//!
//! Exit code: 0 when every OPTIONS got a 2xx, 1 when one got another final
//! response, 2 when a delivery failed (or the run was interrupted), 64 on a
//! bad command line.

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::process::exit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId,
};
use sip_dispatch::eventloop::{
    Eventloop, FdCallback, FdHandle, Interest, Readiness, TimerCallback, TimerId, Turn, When,
};
use sip_dispatch::leg::Source;
use sip_dispatch::packet::{Method, Packet, Response};
use sip_dispatch::ua;

// ---------------------------------------------------------------------------
// The event loop: poll(2) for descriptors, a BTreeMap of deadlines for timers.
// ---------------------------------------------------------------------------

/// A registered descriptor.
struct FdSlot {
    fd: RawFd,
    interest: Interest,
    generation: u32,
    /// `None` while the callback runs (and for a free slot).
    callback: Option<FdCallback>,
    live: bool,
    /// poll(2) said POLLNVAL: the owner closed the descriptor without
    /// `del_fd`. It is no longer polled (epoll forgets a closed descriptor
    /// the same way), but the handle stays valid until `del_fd`.
    closed: bool,
}

/// A timer.
struct TimerSlot {
    generation: u32,
    /// Its key in [`State::deadlines`] while it is scheduled.
    key: Option<TimerKey>,
    repeat: Option<Duration>,
    /// `None` while the callback runs (and for a free slot).
    callback: Option<TimerCallback>,
    live: bool,
}

/// Deadline first, then a sequence number: timers due at the same instant
/// fire in the order they were added, and every key is unique.
type TimerKey = (Instant, u64);

#[derive(Default)]
struct State {
    fds: Vec<FdSlot>,
    free_fds: Vec<u32>,
    timers: Vec<TimerSlot>,
    free_timers: Vec<u32>,
    /// Scheduled timers by deadline: the first entry is the next to fire.
    deadlines: BTreeMap<TimerKey, u32>,
    next_seq: u64,
}

/// An [`Eventloop`] on `poll(2)`, level-triggered, with timers in a
/// `BTreeMap`. Single-threaded, like everything in sip-dispatch: all state
/// is in one `RefCell`, borrowed only for short stretches in which no
/// callback runs.
#[derive(Default)]
struct PollLoop {
    state: RefCell<State>,
}

/// Far enough to mean "never", near enough not to overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The smallest repeat period: a zero period would fire forever.
const MIN_PERIOD: Duration = Duration::from_millis(1);

impl PollLoop {
    fn new() -> PollLoop {
        PollLoop::default()
    }

    /// Registered descriptors and pending timers (for the final check).
    fn registered(&self) -> (usize, usize) {
        let st = self.state.borrow();
        let fds = st.fds.iter().filter(|s| s.live).count();
        (fds, st.deadlines.len())
    }

    /// The loop-clock instant a [`When`] stands for.
    fn deadline_for(&self, when: When) -> Instant {
        let now = self.now();
        let after = |d: Duration| now.checked_add(d).unwrap_or(now + FAR_FUTURE);
        match when {
            When::In(d) => after(d),
            // Converted once, now: a wall-clock step later does not move it.
            When::At(at) => match at.duration_since(self.wall_now()) {
                Ok(ahead) => after(ahead),
                Err(_) => now, // in the past: due at once
            },
            When::Deadline(t) => t,
        }
    }

    /// Runs the timers that were due when this pass began.
    ///
    /// Only those: a timer that a callback adds for "now" waits for the next
    /// turn, after the descriptors had their chance, so a callback that
    /// keeps re-adding zero-delay timers cannot starve the sockets.
    fn fire_due_timers(&self) {
        let now = self.now();
        loop {
            // 1. Under the borrow: unschedule the first due timer, take its
            //    callback out, reschedule it if it repeats.
            let (index, generation, callback) = {
                let mut guard = self.state.borrow_mut();
                let st = &mut *guard;
                let Some(entry) = st.deadlines.first_entry() else {
                    break;
                };
                let (due, _) = *entry.key();
                if due > now {
                    break; // never early
                }
                let index = entry.remove();
                let slot = &mut st.timers[index as usize];
                slot.key = None;
                let generation = slot.generation;
                let callback = slot.callback.take();
                match slot.repeat {
                    Some(period) => {
                        let key = (next_on_grid(due, period, now), st.next_seq);
                        st.next_seq += 1;
                        slot.key = Some(key);
                        st.deadlines.insert(key, index);
                    }
                    None => {
                        // A one-shot timer is done once its callback starts:
                        // free the slot now, so that cancelling it from
                        // inside returns false.
                        slot.live = false;
                        slot.generation = slot.generation.wrapping_add(1);
                        st.free_timers.push(index);
                    }
                }
                (index, generation, callback)
            };
            // 2. No borrow: run it. (No callback means it is already running
            //    further up the stack, in a `run` nested inside a callback.)
            let Some(mut callback) = callback else {
                continue;
            };
            callback();
            // 3. Under the borrow: put a repeating timer's callback back,
            //    unless the timer was cancelled (or its slot reused) meanwhile.
            let leftover = {
                let mut st = self.state.borrow_mut();
                match st.timers.get_mut(index as usize) {
                    Some(slot)
                        if slot.live
                            && slot.generation == generation
                            && slot.callback.is_none() =>
                    {
                        slot.callback = Some(callback);
                        None
                    }
                    _ => Some(callback),
                }
            };
            // 4. No borrow: drop what is finished (its captures may call us).
            drop(leftover);
        }
    }

    /// Calls the callbacks of the descriptors poll(2) reported.
    fn dispatch(&self, pollfds: &[libc::pollfd], ids: &[(u32, u32)]) {
        for (pfd, &(index, generation)) in pollfds.iter().zip(ids) {
            if pfd.revents == 0 {
                continue;
            }
            let (readiness, callback) = {
                let mut st = self.state.borrow_mut();
                let Some(slot) = st.fds.get_mut(index as usize) else {
                    continue;
                };
                // An earlier callback of this turn may have removed this
                // descriptor (and someone may have taken the slot since).
                if !slot.live || slot.generation != generation {
                    continue;
                }
                if pfd.revents & libc::POLLNVAL != 0 {
                    log::warn!(
                        "descriptor {} was closed without del_fd: no longer watched",
                        slot.fd
                    );
                    slot.closed = true;
                    continue;
                }
                let Some(readiness) = readiness(pfd.revents, slot.interest) else {
                    continue;
                };
                (readiness, slot.callback.take())
            };
            let Some(mut callback) = callback else {
                continue;
            };
            callback(readiness);
            let leftover = {
                let mut st = self.state.borrow_mut();
                match st.fds.get_mut(index as usize) {
                    Some(slot)
                        if slot.live
                            && slot.generation == generation
                            && slot.callback.is_none() =>
                    {
                        slot.callback = Some(callback);
                        None
                    }
                    _ => Some(callback),
                }
            };
            drop(leftover);
        }
    }
}

/// A repeating timer's next deadline: one period after the last one,
/// skipping the periods that were missed, so it stays on its grid.
fn next_on_grid(due: Instant, period: Duration, now: Instant) -> Instant {
    let Some(next) = due.checked_add(period) else {
        return now + FAR_FUTURE;
    };
    if next > now {
        return next;
    }
    let missed = (now - next).as_nanos() / period.as_nanos() + 1;
    let periods = u32::try_from(missed).unwrap_or(u32::MAX);
    next.checked_add(period.saturating_mul(periods))
        .unwrap_or(now + FAR_FUTURE)
}

/// What poll(2) reported, as the crate's [`Readiness`]; `None` if nothing
/// is left that the descriptor is (still) watched for.
///
/// Errors and hang-ups are reported whatever the interest (poll(2) always
/// reports them) and make the descriptor readable and writable, as
/// mio does: the callback's next read or write meets the error or EOF.
fn readiness(revents: libc::c_short, interest: Interest) -> Option<Readiness> {
    let has = |flag: libc::c_short| revents & flag != 0;
    let (error, hangup) = (has(libc::POLLERR), has(libc::POLLHUP));
    // Mask with the *current* interest: an earlier callback of the same turn
    // may have called modify_fd after poll(2) returned.
    let readable = (has(libc::POLLIN) && interest.read) || error || hangup;
    let writable = (has(libc::POLLOUT) && interest.write) || error || hangup;
    (readable || writable).then_some(Readiness {
        readable,
        writable,
        error,
        hangup,
    })
}

fn poll_events(interest: Interest) -> libc::c_short {
    let mut events = 0;
    if interest.read {
        events |= libc::POLLIN;
    }
    if interest.write {
        events |= libc::POLLOUT;
    }
    events
}

fn check_interest(interest: Interest) -> io::Result<()> {
    if interest.read || interest.write {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty interest: use del_fd",
        ))
    }
}

/// The poll(2) timeout in milliseconds for a wake-up at `wake_at`: -1 to
/// wait for descriptors only, rounded *up* so that a timer is never early.
fn poll_timeout(now: Instant, wake_at: Option<Instant>) -> libc::c_int {
    match wake_at {
        None => -1,
        Some(at) => {
            let ms = at
                .saturating_duration_since(now)
                .as_nanos()
                .div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

impl Eventloop for PollLoop {
    fn now(&self) -> Instant {
        // Monotonic. (A loop on virtual time would return its own clock.)
        Instant::now()
    }

    // `wall_now` keeps the trait's default, `SystemTime::now()`: this loop
    // runs on the real clock.

    fn add_fd(&self, fd: RawFd, interest: Interest, callback: FdCallback) -> io::Result<FdHandle> {
        check_interest(interest)?;
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "negative file descriptor",
            ));
        }
        let mut st = self.state.borrow_mut();
        let index = match st.free_fds.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(st.fds.len())
                    .map_err(|_| io::Error::other("too many descriptors"))?;
                st.fds.push(FdSlot {
                    fd: -1,
                    interest,
                    generation: 0,
                    callback: None,
                    live: false,
                    closed: false,
                });
                index
            }
        };
        let slot = &mut st.fds[index as usize];
        slot.fd = fd;
        slot.interest = interest;
        slot.callback = Some(callback);
        slot.live = true;
        slot.closed = false;
        // Nothing to tell the kernel: the next turn of `run` polls it.
        Ok(FdHandle::from_parts(index, slot.generation))
    }

    fn modify_fd(&self, handle: FdHandle, interest: Interest) -> io::Result<()> {
        check_interest(interest)?;
        let (index, generation) = handle.into_parts();
        let mut st = self.state.borrow_mut();
        match st.fds.get_mut(index as usize) {
            Some(slot) if slot.live && slot.generation == generation => {
                // Level-triggered: there is nothing to re-arm, the next
                // poll(2) reports whatever is ready for the new interest.
                slot.interest = interest;
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "unknown descriptor handle",
            )),
        }
    }

    fn del_fd(&self, handle: FdHandle) -> bool {
        let (index, generation) = handle.into_parts();
        let callback = {
            let mut guard = self.state.borrow_mut();
            let st = &mut *guard;
            match st.fds.get_mut(index as usize) {
                Some(slot) if slot.live && slot.generation == generation => {
                    slot.live = false;
                    slot.fd = -1;
                    slot.generation = slot.generation.wrapping_add(1);
                    st.free_fds.push(index);
                    // `None` if it is running: `dispatch` drops it then.
                    slot.callback.take()
                }
                _ => return false,
            }
        };
        drop(callback); // outside the borrow
        true
    }

    fn add_timer(&self, when: When, repeat: Option<Duration>, callback: TimerCallback) -> TimerId {
        let deadline = self.deadline_for(when);
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let index = match st.free_timers.pop() {
            Some(index) => index,
            None => {
                st.timers.push(TimerSlot {
                    generation: 0,
                    key: None,
                    repeat: None,
                    callback: None,
                    live: false,
                });
                u32::try_from(st.timers.len() - 1).expect("fewer than 2^32 timers")
            }
        };
        let key = (deadline, st.next_seq);
        st.next_seq += 1;
        st.deadlines.insert(key, index);
        let slot = &mut st.timers[index as usize];
        slot.key = Some(key);
        slot.repeat = repeat.map(|r| r.max(MIN_PERIOD));
        slot.callback = Some(callback);
        slot.live = true;
        TimerId::from_parts(index, slot.generation)
    }

    fn cancel_timer(&self, id: TimerId) -> bool {
        let (index, generation) = id.into_parts();
        let callback = {
            let mut guard = self.state.borrow_mut();
            let st = &mut *guard;
            match st.timers.get_mut(index as usize) {
                Some(slot) if slot.live && slot.generation == generation => {
                    if let Some(key) = slot.key.take() {
                        st.deadlines.remove(&key);
                    }
                    slot.live = false;
                    slot.generation = slot.generation.wrapping_add(1);
                    st.free_timers.push(index);
                    slot.callback.take()
                }
                _ => return false,
            }
        };
        drop(callback); // outside the borrow
        true
    }

    fn run(&self, timeout: Option<Duration>, stop: &dyn Fn() -> bool) -> io::Result<()> {
        let end = timeout.map(|t| self.deadline_for(When::In(t)));
        // Rebuilt every turn (that is poll(2)), allocated once per run.
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        let mut ids: Vec<(u32, u32)> = Vec::new();
        loop {
            {
                // A turn (optional): the UDP legs send what the callbacks
                // of one batch sent with one sendmmsg when it ends.
                let _turn = Turn::begin();
                self.fire_due_timers();
            }
            if stop() {
                return Ok(());
            }
            let now = self.now();
            if end.is_some_and(|end| now >= end) {
                return Ok(());
            }
            let next_timer = {
                let st = self.state.borrow();
                pollfds.clear();
                ids.clear();
                for (index, slot) in st.fds.iter().enumerate() {
                    if slot.live && !slot.closed {
                        pollfds.push(libc::pollfd {
                            fd: slot.fd,
                            events: poll_events(slot.interest),
                            revents: 0,
                        });
                        ids.push((index as u32, slot.generation));
                    }
                }
                st.deadlines.first_key_value().map(|(&(at, _), _)| at)
            };
            if pollfds.is_empty() && next_timer.is_none() && end.is_none() {
                return Ok(()); // nothing could ever happen
            }
            let wake_at = match (next_timer, end) {
                (Some(t), Some(e)) => Some(t.min(e)),
                (t, e) => t.or(e),
            };
            let timeout_ms = poll_timeout(now, wake_at);
            // Run from inside a callback: the outer turn's sends go first.
            Turn::flush();
            let nfds = libc::nfds_t::try_from(pollfds.len())
                .map_err(|_| io::Error::other("too many descriptors for poll(2)"))?;
            // SAFETY: `pollfds` is a live, exclusively borrowed buffer of
            // `nfds` initialised `libc::pollfd` values (a plain C struct);
            // poll(2) reads them and writes only their `revents` fields, and
            // keeps no pointer into the buffer after it returns.
            let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), nfds, timeout_ms) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    // A signal: go round, so that `stop` is asked again
                    // (that is how SIGINT/SIGTERM end the run promptly).
                    continue;
                }
                return Err(err);
            }
            if ready > 0 {
                let _turn = Turn::begin();
                self.dispatch(&pollfds, &ids);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Two dispatchers on that loop: a UAS that answers OPTIONS, a UAC that asks.
// ---------------------------------------------------------------------------

const USAGE: &str = "[--count N] [--window W]

Implements the Eventloop trait on poll(2) with a BTreeMap of timer
deadlines, and runs two dispatchers on it: a UAS on udp:127.0.0.1:0 that
answers OPTIONS with 200, and a UAC on udp:127.0.0.1:0 that sends N OPTIONS
to it (default 3), W at a time (default 1), printing `CODE REASON` (or
`error ERRNO: text`) per request and a summary line.
Exit: 0 all answered with 2xx, 1 another final response, 2 a failure.";

struct Config {
    count: u32,
    window: u32,
}

fn parse_args() -> (common::Args, Config) {
    let mut args = common::Args::from_env("custom_eventloop", USAGE);
    let mut config = Config {
        count: 3,
        window: 1,
    };
    while let Some(arg) = args.next() {
        match common::flag_name(&arg) {
            "--count" => config.count = args.parsed(&arg),
            "--window" => config.window = args.parsed(&arg),
            _ => args.fail(format!("unknown argument {arg:?}")),
        }
    }
    if config.count == 0 {
        args.fail("--count must be at least 1");
    }
    if config.window == 0 {
        args.fail("--window must be at least 1");
    }
    (args, config)
}

/// The UAS: 200 to OPTIONS, 501 to anything else but ACK.
fn start_uas(args: &common::Args, lp: &Rc<dyn Eventloop>) -> (Dispatcher, SocketAddr) {
    let leg = common::bind_leg(args, "udp:127.0.0.1:0");
    let addr = leg.local_addr();
    let uas = match Dispatcher::new(vec![leg], Some(lp.clone()), DispatcherOptions::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("custom_eventloop: cannot start the UAS: {e}");
            exit(1)
        }
    };
    uas.set_receiver(
        |d: &Dispatcher, packet: Packet, _leg: LegId, from: &Source| {
            let Packet::Request(request) = packet else {
                return; // a UAS that sends nothing gets no responses
            };
            let (code, reason) = match request.method() {
                Method::Options => (200, "OK"),
                Method::Ack => return,
                _ => (501, "Not Implemented"),
            };
            log::info!("uas: {} from {from} -> {code}", request.method().as_str());
            let mut response = Response::for_request(&request, code, reason);
            response.set_to_tag(&ua::new_tag());
            if let Err(e) = d.deliver(response, DeliverOptions::default()) {
                log::warn!("uas: cannot answer: {e}");
            }
        },
    );
    (uas, addr)
}

/// The UAC's progress, shared by the delivery callbacks.
struct Progress {
    uas: SocketAddr,
    local: SocketAddr,
    count: u32,
    sent: Cell<u32>,
    finished: Cell<u32>,
    ok: Cell<u32>,
    other_final: Cell<u32>,
    failed: Cell<u32>,
    /// Set when the run ends early (a signal): send nothing more.
    stopping: Cell<bool>,
    /// Reason phrases of final responses by Call-ID: the receiver sees the
    /// response itself (just before the delivery callback gets the code).
    reasons: RefCell<HashMap<String, String>>,
}

impl Progress {
    fn all_done(&self) -> bool {
        self.finished.get() == self.count
    }
}

/// Sends the next OPTIONS; its callback prints the outcome and sends the
/// one after it, so that `window` requests stay in flight.
fn send_next(d: &Dispatcher, progress: &Rc<Progress>) {
    while progress.sent.get() < progress.count && !progress.stopping.get() {
        progress.sent.set(progress.sent.get() + 1);
        let (uas, local) = (progress.uas, progress.local);
        let call_id = ua::new_call_id(&local.ip().to_string());
        let text = format!(
            "OPTIONS sip:uas@{uas} SIP/2.0\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:uac@{local}>;tag={tag}\r\n\
             To: <sip:uas@{uas}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            tag = ua::new_tag(),
        );
        let request = Packet::parse(text.as_bytes()).expect("a well-formed OPTIONS");
        let p = progress.clone();
        let on_outcome = move |d: &Dispatcher, outcome: DeliveryOutcome| {
            let reason = p.reasons.borrow_mut().remove(&call_id).unwrap_or_default();
            finish(&p, outcome, &reason);
            send_next(d, &p);
        };
        match d.deliver(request, DeliverOptions::with_callback(on_outcome)) {
            Ok(_) => return, // in flight: its callback sends the next one
            // Refused at once (queue full, shut down): no callback will
            // come, so count it here and go on with the next one.
            Err(e) => finish(progress, DeliveryOutcome::Failed(e), ""),
        }
    }
}

/// Prints one line for a finished request and counts it.
fn finish(progress: &Progress, outcome: DeliveryOutcome, reason: &str) {
    match outcome {
        DeliveryOutcome::Completed(code) => {
            println!("{code} {reason}");
            let counter = if (200..300).contains(&code) {
                &progress.ok
            } else {
                &progress.other_final
            };
            counter.set(counter.get() + 1);
        }
        DeliveryOutcome::Sent => {
            // Only for deliveries without a transaction: not expected here.
            println!("sent (no final response)");
            progress.other_final.set(progress.other_final.get() + 1);
        }
        DeliveryOutcome::Failed(e) => {
            println!("error {e}");
            progress.failed.set(progress.failed.get() + 1);
        }
    }
    progress.finished.set(progress.finished.get() + 1);
}

fn main() {
    common::init_logging();
    let (args, config) = parse_args();
    let interrupted = common::stop_on_signals();

    // One loop, ours, for both dispatchers.
    let poll_loop = Rc::new(PollLoop::new());
    let lp: Rc<dyn Eventloop> = poll_loop.clone();

    let (uas, uas_addr) = start_uas(&args, &lp);

    let uac_leg = common::bind_leg(&args, "udp:127.0.0.1:0");
    let progress = Rc::new(Progress {
        uas: uas_addr,
        local: uac_leg.local_addr(),
        count: config.count,
        sent: Cell::new(0),
        finished: Cell::new(0),
        ok: Cell::new(0),
        other_final: Cell::new(0),
        failed: Cell::new(0),
        stopping: Cell::new(false),
        reasons: RefCell::new(HashMap::new()),
    });
    let uac = match Dispatcher::new(
        vec![uac_leg],
        Some(lp.clone()),
        DispatcherOptions::default(),
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("custom_eventloop: cannot start the UAC: {e}");
            exit(1)
        }
    };
    let p = progress.clone();
    uac.set_receiver(
        move |_: &Dispatcher, packet: Packet, _leg: LegId, _from: &Source| {
            if let Packet::Response(response) = packet {
                if !response.is_provisional() {
                    let call_id = response.call_id().unwrap_or_default().to_owned();
                    p.reasons
                        .borrow_mut()
                        .insert(call_id, response.reason().to_owned());
                }
            }
        },
    );
    log::info!(
        "uac {} -> uas {uas_addr}: {} OPTIONS, {} at a time",
        progress.local,
        config.count,
        config.window
    );

    for _ in 0..config.window.min(config.count) {
        send_next(&uac, &progress);
    }
    // Every delivery ends (at the latest with ETIMEDOUT after 64*T1), so
    // the run ends too; a signal ends it early.
    let stop = || progress.all_done() || interrupted();
    if let Err(e) = lp.run(None, &stop) {
        eprintln!("custom_eventloop: the event loop failed: {e}");
        exit(2);
    }

    // Shutting the dispatchers down removes their descriptors and timers
    // (requests still in flight after a signal end with ECANCELED).
    progress.stopping.set(true);
    drop(uac);
    drop(uas);
    let (fds, timers) = poll_loop.registered();
    log::debug!("after shutdown: {fds} descriptors, {timers} timers left on the loop");

    let ok = progress.ok.get();
    println!("custom event loop: {ok}/{} OPTIONS answered", config.count);
    let code = if progress.failed.get() > 0 || !progress.all_done() {
        2
    } else if progress.other_final.get() > 0 {
        1
    } else {
        0
    };
    exit(code);
}
