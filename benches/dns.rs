//! The stub resolver: lookups per second against the in-test DNS server
//! on loopback (cache off, so every lookup is a query), one lookup's
//! round trip, and the cost of a cache hit.
//!
//! Run with `cargo bench --bench dns`.

#[path = "../tests/common/dns_server.rs"]
mod dns_server;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dns_server::{DnsServer, Zone};
use sip_dispatch::dns::{CacheOptions, DnsConfig, DnsQuery, StubResolver};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};

/// Distinct names in the zone (so no two lookups of a batch coalesce).
const NAMES: usize = 1024;
/// Lookups in flight at once in the throughput benchmark.
const BATCH: usize = 64;

fn zone() -> Zone {
    (0..NAMES).fold(Zone::new(), |z, i| {
        z.a(
            &format!("h{i}.bench.test"),
            [10, 0, (i >> 8) as u8, i as u8],
            300,
        )
    })
}

fn resolver(lp: &Rc<MioEventloop>, server: &DnsServer, cache: bool) -> Rc<StubResolver> {
    let cache = CacheOptions {
        max_entries: if cache { 4096 } else { 0 },
        ..CacheOptions::default()
    };
    let config = DnsConfig::with_nameservers(vec![server.addr])
        .timeout(Duration::from_secs(2))
        .cache(cache);
    StubResolver::new(lp.clone(), config)
}

/// Starts `n` lookups (names from `next`) and runs the loop until all
/// answered; panics on an error (the benchmark would be meaningless).
fn batch(lp: &MioEventloop, r: &Rc<StubResolver>, n: usize, next: &mut usize) {
    let left = Rc::new(Cell::new(n));
    for _ in 0..n {
        let name = format!("h{}.bench.test", *next % NAMES);
        *next += 1;
        let l = left.clone();
        r.lookup(
            DnsQuery::A(name),
            Box::new(move |a| {
                assert_eq!(a.map(|r| r.len()).ok(), Some(1), "a lookup failed");
                l.set(l.get() - 1);
            }),
        );
    }
    lp.run(Some(Duration::from_secs(10)), &|| left.get() == 0)
        .expect("loop");
    assert_eq!(left.get(), 0, "lookups timed out");
}

fn lookups(c: &mut Criterion) {
    let server = DnsServer::start(zone());
    let lp = Rc::new(MioEventloop::new().expect("loop"));
    let r = resolver(&lp, &server, false);
    let mut next = 0;

    let mut g = c.benchmark_group("dns");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("udp_lookups_64_in_flight_cache_off", |b| {
        b.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                batch(&lp, &r, BATCH, &mut next);
            }
            t0.elapsed()
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("udp_lookup_one_at_a_time_cache_off", |b| {
        b.iter(|| batch(&lp, &r, 1, &mut next))
    });

    let cached = resolver(&lp, &server, true);
    batch(&lp, &cached, 1, &mut 0);
    let hits = Rc::new(Cell::new(0u64));
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            let h = hits.clone();
            cached.lookup(
                DnsQuery::A("h0.bench.test".into()),
                Box::new(move |a| {
                    if a.is_ok() {
                        h.set(h.get() + 1);
                    }
                }),
            );
        })
    });
    g.finish();
    assert!(hits.get() > 0);
    assert_eq!(
        cached.stats().queries_sent,
        1,
        "every hit came from the cache"
    );
    let _ = lp.now();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
