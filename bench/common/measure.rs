//! Measurement helpers shared by the benchmarks (`benches/*.rs`,
//! `bench/scale.rs`, included with `#[path]`): a counting global
//! allocator, the process RSS, and per-sample records of `iter_custom`
//! calls for the side-by-side tables.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

// ---- counting allocator ----

/// Live heap bytes (requested sizes, not what malloc rounds them up to).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Allocation calls (alloc, alloc_zeroed, realloc).
static ALLOCS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live heap bytes now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Allocation calls so far.
pub fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

/// Resident set size of this process, in bytes (0 when unknown).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize
}

// ---- per-sample records, for the side-by-side tables ----

thread_local! {
    /// Nanoseconds per iteration of each `iter_custom` call, by benchmark.
    static SAMPLES: RefCell<BTreeMap<String, Vec<f64>>> = RefCell::default();
}

/// Records one `iter_custom` call of `iters` iterations.
pub fn record(name: &str, iters: u64, elapsed: Duration) {
    let per = elapsed.as_nanos() as f64 / iters.max(1) as f64;
    SAMPLES.with(|s| {
        let mut s = s.borrow_mut();
        match s.get_mut(name) {
            Some(v) => v.push(per),
            None => {
                s.insert(name.to_owned(), vec![per]);
            }
        }
    });
}

/// The median of `v` (NaN when empty).
pub fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median ns per iteration over the last 100 calls (criterion's
/// measurement samples; the calls before them are its warm-up).
pub fn median(name: &str) -> f64 {
    SAMPLES.with(|s| {
        let s = s.borrow();
        let all = s.get(name).map(Vec::as_slice).unwrap_or(&[]);
        median_of(all[all.len().saturating_sub(100)..].to_vec())
    })
}
