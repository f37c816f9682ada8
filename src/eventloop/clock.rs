//! The loop's clock: real, or virtual for tests and simulation.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

/// A monotonic clock with millisecond ticks for the timer wheel.
///
/// Ticks count milliseconds since the clock's origin. Deadlines round up
/// to the next tick and `now` rounds down, so a timer never fires early.
#[derive(Debug)]
pub struct Clock {
    origin: Instant,
    wall_origin: SystemTime,
    virtual_now: Option<Cell<Instant>>,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Clock {
        Clock {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
            virtual_now: None,
        }
    }

    /// A virtual clock, standing at its origin until advanced.
    pub fn virtual_time() -> Clock {
        let origin = Instant::now();
        Clock {
            origin,
            wall_origin: SystemTime::now(),
            virtual_now: Some(Cell::new(origin)),
        }
    }

    /// Whether this clock is virtual.
    pub fn is_virtual(&self) -> bool {
        self.virtual_now.is_some()
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        match &self.virtual_now {
            Some(v) => v.get(),
            None => Instant::now(),
        }
    }

    /// The wall-clock time matching [`Clock::now`].
    pub fn wall_now(&self) -> SystemTime {
        match &self.virtual_now {
            Some(v) => self.wall_origin + (v.get() - self.origin),
            None => SystemTime::now(),
        }
    }

    /// Moves a virtual clock forward to `to` (never backwards); no effect
    /// on the real clock.
    pub fn advance_to(&self, to: Instant) {
        if let Some(v) = &self.virtual_now {
            if to > v.get() {
                v.set(to);
            }
        }
    }

    /// The tick `now` falls in (rounded down).
    pub fn now_tick(&self) -> u64 {
        self.tick_floor(self.now())
    }

    /// The first tick at or after `t` (rounded up).
    pub fn tick_ceil(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin);
        let ms = d.as_millis();
        let ms = if d.subsec_nanos() % 1_000_000 != 0 {
            ms + 1
        } else {
            ms
        };
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// The tick `t` falls in (rounded down).
    pub fn tick_floor(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant a tick starts.
    pub fn tick_instant(&self, tick: u64) -> Instant {
        self.origin
            .checked_add(Duration::from_millis(tick))
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365 * 100))
    }

    /// Converts a wall-clock time to the loop's clock.
    pub fn instant_for(&self, at: SystemTime) -> Instant {
        let now = self.now();
        match at.duration_since(self.wall_now()) {
            Ok(ahead) => now.checked_add(ahead).unwrap_or(now),
            Err(_) => now,
        }
    }
}
