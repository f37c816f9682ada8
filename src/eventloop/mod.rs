//! The event loop: file descriptors, timers and a clock.
//!
//! [`Eventloop`] is the interface the dispatcher and its legs use; any
//! poller can implement it (see `examples/custom_eventloop.rs`).
//! [`MioEventloop`] is the implementation this crate ships: mio for the
//! descriptors, a hierarchical [`TimerWheel`] for the timers, and either
//! the real clock or virtual time ([`MioEventloop::new_virtual`]) under
//! which a 32-second timeout is tested in microseconds.
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use sip_dispatch::eventloop::{Eventloop, MioEventloop, When};
//!
//! let lp = MioEventloop::new_virtual();
//! let fired = Rc::new(Cell::new(0));
//! let f = fired.clone();
//! lp.add_timer(When::In(Duration::from_secs(32)), None, Box::new(move || f.set(f.get() + 1)));
//! let start = lp.now();
//! lp.run(None, &|| fired.get() > 0).unwrap();
//! assert_eq!(lp.now() - start, Duration::from_secs(32));
//! ```

mod clock;
mod mio_loop;
mod paged;
pub(crate) mod turn;
pub mod wheel;

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant, SystemTime};

pub use clock::Clock;
pub use mio_loop::MioEventloop;
pub use turn::Turn;
pub use wheel::{TimerKey, TimerWheel};

/// When a timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// After this long, from the loop's `now()`.
    In(Duration),
    /// At this wall-clock time (converted once, when the timer is added).
    At(SystemTime),
    /// At this point of the loop's monotonic clock.
    Deadline(Instant),
}

/// Which readiness a file descriptor is watched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interest {
    /// Watch for readability.
    pub read: bool,
    /// Watch for writability.
    pub write: bool,
}

impl Interest {
    /// Readable only.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    /// Writable only.
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
    /// Readable and writable.
    pub const READ_WRITE: Interest = Interest {
        read: true,
        write: true,
    };
}

/// What a file descriptor is ready for, as passed to its callback.
///
/// An error or hang-up should also be reported as `readable` (and a
/// hang-up as `writable`): the callbacks of this crate find out what
/// happened by reading (a read returns the error or EOF), as mio reports
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Data (or EOF, or an error) can be read.
    pub readable: bool,
    /// Data can be written (or the peer is gone).
    pub writable: bool,
    /// The socket has an error pending (read it with `SO_ERROR` or a read).
    pub error: bool,
    /// Both directions are closed.
    pub hangup: bool,
}

/// Handle of a registered file descriptor. Carries a generation: a stale
/// handle never touches a descriptor registered later in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FdHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl FdHandle {
    /// Builds a handle from parts (for implementers of [`Eventloop`]).
    pub fn from_parts(index: u32, generation: u32) -> FdHandle {
        FdHandle { index, generation }
    }

    /// The parts (for implementers of [`Eventloop`]).
    pub fn into_parts(self) -> (u32, u32) {
        (self.index, self.generation)
    }
}

/// Handle of a timer added with [`Eventloop::add_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl TimerId {
    /// Builds an id from parts (for implementers of [`Eventloop`]).
    pub fn from_parts(index: u32, generation: u32) -> TimerId {
        TimerId { index, generation }
    }

    /// The parts (for implementers of [`Eventloop`]).
    pub fn into_parts(self) -> (u32, u32) {
        (self.index, self.generation)
    }
}

/// Called when a registered descriptor is ready. Readiness may be
/// edge-triggered (it is with [`MioEventloop`]) or level-triggered (a
/// `poll(2)` loop): the callbacks of this crate read and write until the
/// call would block, and drop write interest once nothing is queued, so
/// both work.
pub type FdCallback = Box<dyn FnMut(Readiness)>;

/// Called when a timer fires.
pub type TimerCallback = Box<dyn FnMut()>;

/// What the dispatcher needs from an event loop: a clock, descriptors with
/// callbacks, timers with callbacks, and a way to run.
///
/// Every method takes `&self`: they are called from inside callbacks while
/// the loop runs. Implementations keep their state in `RefCell`s and never
/// hold a borrow while a callback runs *or is dropped* (dropping a closure
/// may run a captured value's `Drop`, which may call back in); a running
/// callback is taken out of its slot, so it may add, remove or cancel
/// anything, itself included.
///
/// Timers never fire early. Timers due at the same instant fire in an
/// unspecified but deterministic order ([`MioEventloop`]: the order they
/// were added); a timer added with a zero delay from inside a timer callback
/// may fire in the same pass or on the next turn. A zero repeat period is
/// treated as the loop's smallest tick. `examples/custom_eventloop.rs`
/// implements this trait on `poll(2)`.
pub trait Eventloop {
    /// The loop's monotonic clock. Under virtual time it only moves when
    /// the loop moves it.
    fn now(&self) -> Instant;

    /// The wall-clock time that corresponds to [`Eventloop::now`].
    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Watches `fd` for `interest` and calls `callback` when it is ready.
    /// The descriptor stays owned by the caller, who must `del_fd` it
    /// before closing it.
    fn add_fd(&self, fd: RawFd, interest: Interest, callback: FdCallback) -> io::Result<FdHandle>;

    /// Changes what a registered descriptor is watched for (for example
    /// adding writability while output is queued). Re-arms edge-triggered
    /// readiness.
    fn modify_fd(&self, handle: FdHandle, interest: Interest) -> io::Result<()>;

    /// Stops watching a descriptor; returns false for an unknown handle.
    /// Safe from inside any callback, the descriptor's own included.
    fn del_fd(&self, handle: FdHandle) -> bool;

    /// Adds a timer; with `repeat`, it fires again every `repeat` after
    /// its deadline (missed periods are skipped, the schedule stays on its
    /// grid).
    fn add_timer(&self, when: When, repeat: Option<Duration>, callback: TimerCallback) -> TimerId;

    /// Cancels a timer; returns false if it was unknown or already done.
    /// A one-shot timer is done once its callback starts.
    fn cancel_timer(&self, id: TimerId) -> bool;

    /// Runs until `stop` returns true (checked after timers ran, before
    /// waiting, as Perl's `loop(TIMEOUT, \@STOPVARS)` does), until
    /// `timeout` has passed, or until nothing is left that could ever
    /// happen (no descriptors, no timers). A wait interrupted by a signal
    /// (EINTR) must go round again and check `stop`, not retry the wait:
    /// that is how a signal handler that sets a flag stops the loop.
    fn run(&self, timeout: Option<Duration>, stop: &dyn Fn() -> bool) -> io::Result<()>;
}
