//! A turn of the event loop: the callbacks run for one batch of ready
//! descriptors (or one batch of due timers). Work that is cheaper done
//! once per turn than once per message registers here and runs when the
//! outermost [`Turn`] ends: the UDP legs gather the datagrams sent during
//! a turn and hand them to the kernel with one `sendmmsg`.
//!
//! [`MioEventloop`](super::MioEventloop) opens a turn around each batch of
//! callbacks. A custom event loop opens one the same way, around whatever
//! it runs per wake-up; without it, sends go out one by one, which is
//! equally correct.
//!
//! ```
//! use sip_dispatch::eventloop::Turn;
//!
//! let turn = Turn::begin();
//! assert!(Turn::active());
//! // ... run the callbacks of the descriptors that are ready ...
//! drop(turn); // what they batched goes out now
//! assert!(!Turn::active());
//! ```

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static AT_END: RefCell<Vec<Weak<dyn TurnEnd>>> = const { RefCell::new(Vec::new()) };
}

/// Something with work to finish when the outermost turn ends (a UDP
/// leg's batch of datagrams). Registered as a weak reference, so that
/// registering costs no allocation and a dropped owner is skipped.
pub(crate) trait TurnEnd {
    /// The turn ended (or [`Turn::flush`] was called).
    fn turn_end(self: Rc<Self>);
}

/// Marks a turn of the event loop while it lives. Turns nest: the work
/// registered to run at the end of a turn (the legs' batched sends) runs
/// when the outermost one ends.
/// Per thread (each thread runs its own loop).
#[must_use = "the turn ends when this guard is dropped"]
pub struct Turn {
    // Not Send: the turn belongs to this thread.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Turn {
    /// Opens a turn (or a nested one).
    pub fn begin() -> Turn {
        DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        Turn {
            _not_send: std::marker::PhantomData,
        }
    }

    /// Whether a turn is open on this thread.
    pub fn active() -> bool {
        DEPTH.with(Cell::get) > 0
    }

    /// Runs `f` when the outermost open turn ends (at once when none is
    /// open). Crate-internal: the legs' batched sends.
    pub(crate) fn at_end(w: Weak<dyn TurnEnd>) {
        if Turn::active() {
            AT_END.with(|a| a.borrow_mut().push(w));
        } else if let Some(owner) = w.upgrade() {
            owner.turn_end();
        }
    }

    /// Runs what is registered now, turn or not. An event loop run from
    /// inside a callback (a nested `run`) calls this before it waits:
    /// what the outer turn batched must not wait for the outer turn's end.
    pub fn flush() {
        // What runs may register more (a handler of the events a flush
        // emits may send again); bounded, and each pass is what was
        // registered before it.
        for _ in 0..64 {
            let mut work = AT_END.with(|a| std::mem::take(&mut *a.borrow_mut()));
            if work.is_empty() {
                // Keep the list's room for the next turn.
                AT_END.with(|a| *a.borrow_mut() = work);
                return;
            }
            for w in work.drain(..) {
                if let Some(owner) = w.upgrade() {
                    owner.turn_end();
                }
            }
            // The emptied list serves the next turn (no allocation per
            // turn), unless work registered meanwhile took its place.
            AT_END.with(|a| {
                let mut a = a.borrow_mut();
                if a.is_empty() {
                    *a = work;
                }
            });
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let depth = DEPTH.with(|d| {
            let v = d.get().saturating_sub(1);
            d.set(v);
            v
        });
        if depth == 0 {
            Turn::flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(Cell<u32>);

    impl TurnEnd for Counter {
        fn turn_end(self: Rc<Self>) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn register(c: &Rc<Counter>) {
        let weak: Weak<dyn TurnEnd> = Rc::downgrade(c) as Weak<dyn TurnEnd>;
        Turn::at_end(weak);
    }

    #[test]
    fn work_runs_when_the_outermost_turn_ends() {
        let ran = Rc::new(Counter(Cell::new(0)));
        let outer = Turn::begin();
        let inner = Turn::begin();
        register(&ran);
        drop(inner);
        assert_eq!(ran.0.get(), 0);
        drop(outer);
        assert_eq!(ran.0.get(), 1);
        // Outside a turn it runs at once.
        register(&ran);
        assert_eq!(ran.0.get(), 2);
    }

    #[test]
    fn a_dropped_owner_is_skipped() {
        let turn = Turn::begin();
        let gone = Rc::new(Counter(Cell::new(0)));
        register(&gone);
        drop(gone);
        let kept = Rc::new(Counter(Cell::new(0)));
        register(&kept);
        drop(turn);
        assert_eq!(kept.0.get(), 1);
    }
}
