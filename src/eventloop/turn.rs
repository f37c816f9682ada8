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

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static AT_END: RefCell<Vec<Box<dyn FnOnce()>>> = const { RefCell::new(Vec::new()) };
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
    pub(crate) fn at_end(f: Box<dyn FnOnce()>) {
        if Turn::active() {
            AT_END.with(|a| a.borrow_mut().push(f));
        } else {
            f();
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
            let work = AT_END.with(|a| std::mem::take(&mut *a.borrow_mut()));
            if work.is_empty() {
                return;
            }
            for f in work {
                f();
            }
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
    use std::rc::Rc;

    #[test]
    fn work_runs_when_the_outermost_turn_ends() {
        let ran = Rc::new(Cell::new(0));
        let outer = Turn::begin();
        let inner = Turn::begin();
        let r = ran.clone();
        Turn::at_end(Box::new(move || r.set(r.get() + 1)));
        drop(inner);
        assert_eq!(ran.get(), 0);
        drop(outer);
        assert_eq!(ran.get(), 1);
        // Outside a turn it runs at once.
        let r = ran.clone();
        Turn::at_end(Box::new(move || r.set(r.get() + 1)));
        assert_eq!(ran.get(), 2);
    }
}
