//! Timer wheel micro-benchmarks: insert/cancel and fire cost with 1,000 and
//! 1,000,000 pending timers (deadlines spread over 64 s in ms, `T = u64`).
//!
//! Run with `cargo bench --bench wheel`.

#[path = "../bench/common/workload.rs"]
mod workload;

use criterion::{Criterion, criterion_group, criterion_main};
use sip_dispatch::eventloop::TimerWheel;
use std::hint::black_box;
use std::time::Duration;
use workload::Rng;

/// Deadlines are spread over this many ticks (ms).
const SPREAD: u64 = 64_000;

/// A wheel with `n` pending timers at random deadlines in `0..SPREAD`, and
/// their keys. Grown by plain `insert`s (no `with_capacity`), as in a server.
fn filled(n: usize, rng: &mut Rng) -> (TimerWheel<u64>, Vec<sip_dispatch::eventloop::TimerKey>) {
    let mut wheel = TimerWheel::new();
    let keys = (0..n as u64)
        .map(|i| wheel.insert(rng.below(SPREAD), i))
        .collect();
    (wheel, keys)
}

fn wheel_benches(c: &mut Criterion) {
    for n in [1_000usize, 1_000_000] {
        let mut group = c.benchmark_group(format!("wheel/{n}"));

        // One insert and the cancel of that same timer (hot in cache).
        {
            let mut rng = Rng(1);
            let (mut wheel, _) = filled(n, &mut rng);
            if n == 1_000_000 {
                eprintln!(
                    "wheel: {} pending timers, memory_bytes() = {}, {:.1} bytes per pending timer, \
                     entry size {} bytes (T = u64)",
                    wheel.len(),
                    wheel.memory_bytes(),
                    wheel.memory_bytes() as f64 / wheel.len() as f64,
                    TimerWheel::<u64>::ENTRY_BYTES,
                );
            }
            let mut i = 0u64;
            group.bench_function("insert_cancel", |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let key = wheel.insert(black_box(rng.below(SPREAD)), i);
                    black_box(wheel.cancel(black_box(key)))
                })
            });
        }

        // Cancel a random pending timer and insert a new one in its place
        // (cold entries, as when a transaction completes).
        {
            let mut rng = Rng(2);
            let (mut wheel, mut keys) = filled(n, &mut rng);
            let mut i = 0u64;
            group.bench_function("cancel_random_insert", |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let j = rng.below(keys.len() as u64) as usize;
                    black_box(wheel.cancel(keys[j]));
                    keys[j] = wheel.insert(black_box(rng.below(SPREAD)), i);
                })
            });
        }

        // Fire cost, "hold" model: insert a timer at a random deadline up to
        // 64 s ahead, then advance the clock as an event loop would
        // (`next_expiration`, `poll`) until exactly one timer fires. The
        // number pending stays `n`; cascading is included.
        {
            let mut rng = Rng(3);
            let (mut wheel, _) = filled(n, &mut rng);
            let mut i = 0u64;
            group.bench_function("insert_fire", |b| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let deadline = wheel.elapsed() + 1 + rng.below(SPREAD);
                    wheel.insert(black_box(deadline), i);
                    while let Some(at) = wheel.next_expiration() {
                        if let Some(fired) = wheel.poll(at) {
                            black_box(fired);
                            break;
                        }
                    }
                })
            });
        }

        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = wheel_benches
}
criterion_main!(benches);
