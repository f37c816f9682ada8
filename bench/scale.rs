//! Scale and allocation measurements of `bench/run`.
//!
//! 1. Pending client deliveries at 1,000 and 1,000,000 in one dispatcher:
//!    INVITEs to one silent peer (a [`MemoryNetwork`] under virtual time that
//!    loses every datagram, so every delivery stays in Calling with Timers A
//!    and B armed), as in `benches/dispatch.rs`.
//!    - memory per pending delivery (a counting allocator: requested bytes;
//!      and the process's RSS), beyond the packet's bytes (its text, kept by
//!      the parsed packet, and the prepared datagram kept for
//!      retransmission);
//!    - `deliver`, `cancel_delivery` (by id and by Call-ID) and an empty
//!      `queue_expire` at each size (batches of 64 timed together, the
//!      replacements or cancels that keep N constant untimed; median batch
//!      and mean; the thread's CPU time, so that other processes of a
//!      shared machine do not count);
//!    - a retransmission tick: the N deliveries spread evenly over 30 s of
//!      virtual time (as under steady load), then 1,000 ticks of 1 ms
//!      (`queue_expire` after each virtual millisecond): time per tick and
//!      per retransmission sent.
//! 2. Allocations per OPTIONS transaction on a UAS doing what
//!    `examples/uas.rs` does for OPTIONS (200 with a new To tag and Allow),
//!    in process over loopback UDP, the client's sends and receives
//!    allocation-free: every allocation of the event loop, the leg, the
//!    dispatcher and the receiver from the request's arrival to the end of
//!    its server transaction (T1 = 2 ms, so that Timer J ends it within the
//!    run), split into the receiver's share (building the response,
//!    `deliver`) and the rest. The same for a stateless proxy
//!    ([`StatelessProxy`]) forwarding OPTIONS to an allocation-free UAS and
//!    the 200 back. Each is measured as the difference between a run of N
//!    and a run of 2N transactions (each from idle to idle), so that what a
//!    run costs once (arming its loop timer, the last table growth) is not
//!    spread over its transactions.
//!
//! ```text
//! scale [--out DIR] [--sizes 1000,1000000]
//! ```
//! Prints the tables (markdown) and, with `--out`, writes `DIR/scale.md`
//! and `DIR/scale.csv` (`metric,n,value,unit`).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "common/measure.rs"]
mod measure;
#[path = "common/wire.rs"]
mod wire;
#[path = "common/workload.rs"]
mod workload;

use sip_dispatch::dispatcher::{
    Cancel, DeliverOptions, DeliveryId, Dispatcher, DispatcherOptions, Timers,
};
use sip_dispatch::eventloop::{Eventloop, Interest, MioEventloop};
use sip_dispatch::leg::{Leg, LegOptions, MemoryNetwork};
use sip_dispatch::packet::{Method, Packet, Response};
use sip_dispatch::proxy::StatelessProxy;
use sip_dispatch::ua;

use measure::{allocs, live, rss_bytes};
use wire::{Template, answer, template};
use workload::{Rng, SilentUac};

// ---- results ----

#[derive(Default)]
struct Out {
    md: String,
    csv: String,
}

impl Out {
    fn metric(&mut self, name: &str, n: usize, value: f64, unit: &str) {
        let _ = writeln!(self.csv, "{name},{n},{value:.1},{unit}");
    }

    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = io::stdout().flush();
        self.md.push_str(s.as_ref());
        self.md.push('\n');
    }
}

/// This thread's CPU time: the timings below exclude the time other
/// processes of this shared machine take from us (not their effect on the
/// caches).
#[derive(Clone, Copy)]
struct Cpu(Duration);

impl Cpu {
    fn now() -> Cpu {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills the timespec we pass.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Cpu(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }

    fn elapsed(self) -> Duration {
        Cpu::now().0.saturating_sub(self.0)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

// ---- pending deliveries ----

const PEER: &str = "10.0.0.2:5060";

fn call_id(i: u64) -> String {
    format!("{i:016x}-bench@10.0.0.1")
}

/// The INVITE of `benches/dispatch.rs` (no Via: the leg adds it).
fn invite_text(i: u64) -> String {
    format!(
        "INVITE sip:bob@{PEER} SIP/2.0\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@10.0.0.1>;tag={i:016x}\r\n\
         To: <sip:bob@{PEER}>\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@10.0.0.1:5060>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         Supported: replaces, timer\r\n\
         User-Agent: bench/1.0\r\n\
         Content-Length: 0\r\n\r\n",
        call_id(i)
    )
}

fn packet(i: u64) -> Packet {
    Packet::parse(invite_text(i).as_bytes()).expect("INVITE parses")
}

struct Pending {
    lp: Rc<MioEventloop>,
    _net: MemoryNetwork,
    leg: Leg,
    d: Dispatcher,
    slots: Vec<(DeliveryId, u64)>,
    next: u64,
    rng: Rng,
}

impl Pending {
    fn new() -> Pending {
        // Room above N for the measured deliveries (the default cap is
        // 1,000,000).
        let options = DispatcherOptions {
            max_deliveries: Some(4_000_000),
            ..DispatcherOptions::default()
        };
        let SilentUac { lp, net, leg, d } = SilentUac::new(options);
        Pending {
            lp,
            _net: net,
            leg,
            d,
            slots: Vec::new(),
            next: 0,
            rng: Rng(7),
        }
    }

    fn packet(&mut self) -> (Packet, u64) {
        let i = self.next;
        self.next += 1;
        (packet(i), i)
    }

    fn deliver_one(&mut self) {
        let (p, i) = self.packet();
        let id = self
            .d
            .deliver(p, DeliverOptions::default())
            .expect("deliver");
        self.slots.push((id, i));
    }

    /// Per-op ns of `deliver`: batches of 64 timed, their cancels untimed.
    fn time_deliver(&mut self, batches: usize) -> (f64, f64) {
        let mut per = Vec::with_capacity(batches);
        let (mut total, mut ops) = (Duration::ZERO, 0u64);
        for _ in 0..batches {
            let packets: Vec<Packet> = (0..64).map(|_| self.packet().0).collect();
            let mut ids = Vec::with_capacity(64);
            let t0 = Cpu::now();
            for p in packets {
                ids.push(
                    self.d
                        .deliver(p, DeliverOptions::default())
                        .expect("deliver"),
                );
            }
            let dt = t0.elapsed();
            for id in ids {
                assert!(self.d.cancel_delivery(Cancel::Entry(id)));
            }
            per.push(dt.as_nanos() as f64 / 64.0);
            total += dt;
            ops += 64;
        }
        (median(per), total.as_nanos() as f64 / ops as f64)
    }

    /// Per-op ns of cancelling random pending deliveries (batches of 64
    /// timed), each replaced (untimed).
    fn time_cancel(&mut self, batches: usize, by_callid: bool) -> (f64, f64) {
        let mut per = Vec::with_capacity(batches);
        let (mut total, mut ops) = (Duration::ZERO, 0u64);
        for _ in 0..batches {
            let mut picks = Vec::with_capacity(64);
            while picks.len() < 64 {
                let j = self.rng.below(self.slots.len() as u64) as usize;
                if !picks.iter().any(|(k, _)| *k == j) {
                    let cid = call_id(self.slots[j].1);
                    let c = if by_callid {
                        Cancel::CallId(cid)
                    } else {
                        Cancel::Id(format!("{cid} 1"))
                    };
                    picks.push((j, c));
                }
            }
            let cancels: Vec<Cancel> = picks.iter().map(|(_, c)| c.clone()).collect();
            let t0 = Cpu::now();
            for c in cancels {
                assert!(self.d.cancel_delivery(c), "cancelled");
            }
            let dt = t0.elapsed();
            for (j, _) in picks {
                let (p, i) = self.packet();
                let id = self
                    .d
                    .deliver(p, DeliverOptions::default())
                    .expect("deliver");
                self.slots[j] = (id, i);
            }
            per.push(dt.as_nanos() as f64 / 64.0);
            total += dt;
            ops += 64;
        }
        (median(per), total.as_nanos() as f64 / ops as f64)
    }

    /// Per-call ns of `queue_expire(now)` with nothing due.
    fn time_empty_tick(&self, batches: usize) -> f64 {
        let now = self.lp.now();
        let before = self.d.stats().retransmissions;
        let per: Vec<f64> = (0..batches)
            .map(|_| {
                let t0 = Cpu::now();
                for _ in 0..64 {
                    std::hint::black_box(self.d.queue_expire(std::hint::black_box(now)));
                }
                t0.elapsed().as_nanos() as f64 / 64.0
            })
            .collect();
        assert_eq!(self.d.stats().retransmissions, before, "nothing was due");
        median(per)
    }
}

struct Sized {
    n: usize,
    heap_per: f64,
    rss_per: f64,
    text: usize,
    wire: usize,
    deliver: (f64, f64),
    cancel_id: (f64, f64),
    cancel_callid: (f64, f64),
    /// The same-run floor for a random removal: see `baseline_remove`.
    baseline_remove: (f64, f64),
    empty_tick: f64,
    tick: (f64, f64),
    per_retransmission: f64,
    retransmissions_per_tick: f64,
    fill_secs: f64,
    /// Heap of a parsed packet beyond its text (header index, URI).
    parse_index: f64,
}

/// Heap of a parsed INVITE beyond its text.
fn parse_overhead() -> f64 {
    let texts: Vec<String> = (0..1000).map(invite_text).collect();
    let mut packets = Vec::with_capacity(1000);
    let before = live();
    for t in &texts {
        packets.push(Packet::parse(t.as_bytes()).expect("parses"));
    }
    (live() - before) as f64 / 1000.0 - texts[0].len() as f64
}

fn measure_size(n: usize) -> Sized {
    let text = invite_text(0).len();
    let mut fx = Pending::new();
    let wire = Rc::new(Cell::new(0usize));
    let w = wire.clone();
    fx.leg.set_send_hook(Some(Rc::new(move |b: &[u8], _| {
        w.set(b.len());
        true
    })));
    // One delivery first, so that one-time state (loop timers) exists.
    fx.deliver_one();
    fx.leg.set_send_hook(None);
    fx.slots.reserve_exact(n);
    let (heap0, rss0) = (live(), rss_bytes());
    let t0 = Instant::now();
    for _ in 1..n {
        fx.deliver_one();
    }
    let fill_secs = t0.elapsed().as_secs_f64();
    let (heap1, rss1) = (live(), rss_bytes());
    let s = fx.d.stats();
    assert_eq!(s.pending_deliveries, n, "all pending");
    assert_eq!(s.timers, 2 * n, "Timers A and B for each");
    let heap_per = (heap1 - heap0) as f64 / (n - 1) as f64;
    let rss_per = rss1.saturating_sub(rss0) as f64 / (n - 1) as f64;
    let batches = 40;
    let deliver = fx.time_deliver(batches);
    let cancel_id = fx.time_cancel(batches, false);
    let cancel_callid = fx.time_cancel(batches, true);
    let empty_tick = fx.time_empty_tick(batches);
    assert_eq!(fx.d.stats().pending_deliveries, n, "N unchanged");
    drop(fx);
    let baseline_remove = baseline_remove(n, batches);
    let (tick, per_retransmission, retransmissions_per_tick) = ticks(n);
    Sized {
        n,
        heap_per,
        rss_per,
        text,
        wire: wire.get(),
        deliver,
        cancel_id,
        cancel_callid,
        baseline_remove,
        empty_tick,
        tick,
        per_retransmission,
        retransmissions_per_tick,
        fill_secs,
        parse_index: parse_overhead(),
    }
}

/// The floor of any cancel, measured in the same run: removing one random
/// key from a std `HashMap` of N entries whose values are boxed records of
/// a delivery's size (and freeing the record), batches of 64 timed, each
/// key added back untimed. A cancel does this kind of step several times
/// over (the delivery slot, the id, Call-ID and client-key indexes, two
/// timer entries), so at 1M its ratio to 1k is a multiple of this one's:
/// the cost is memory latency (cache and TLB misses), not the algorithm.
fn baseline_remove(n: usize, batches: usize) -> (f64, f64) {
    type Record = Box<[u64; 74]>;
    let mut rng = Rng(11);
    let mut keys: Vec<u64> = (0..n).map(|_| rng.next()).collect();
    let mut map: std::collections::HashMap<u64, Record> =
        std::collections::HashMap::with_capacity(n);
    for (i, k) in keys.iter().enumerate() {
        map.insert(*k, Box::new([i as u64; 74]));
    }
    let mut per = Vec::with_capacity(batches);
    let (mut total, mut ops) = (Duration::ZERO, 0u64);
    for _ in 0..batches {
        let picks: Vec<usize> = (0..64).map(|_| rng.below(n as u64) as usize).collect();
        let t0 = Cpu::now();
        for &j in &picks {
            std::hint::black_box(map.remove(&keys[j]));
        }
        let dt = t0.elapsed();
        for &j in &picks {
            let k = rng.next();
            keys[j] = k;
            map.insert(k, Box::new([j as u64; 74]));
        }
        per.push(dt.as_nanos() as f64 / 64.0);
        total += dt;
        ops += 64;
    }
    (median(per), total.as_nanos() as f64 / ops as f64)
}

/// N deliveries spread over 30 s of virtual time, then 1,000 ticks of
/// 1 ms: (median, mean) ns per tick, ns per retransmission, retransmissions
/// per tick.
fn ticks(n: usize) -> ((f64, f64), f64, f64) {
    let mut fx = Pending::new();
    let per_ms = n.div_ceil(30_000);
    let steps = n.div_ceil(per_ms) as u32;
    let step = Duration::from_secs(30) / steps;
    for k in 0..n {
        if k % per_ms == 0 {
            fx.lp.advance(step);
            fx.d.queue_expire(fx.lp.now());
        }
        fx.deliver_one();
    }
    assert_eq!(fx.d.stats().pending_deliveries, n);
    let before = fx.d.stats().retransmissions;
    let mut per = Vec::with_capacity(1000);
    // (ns, retransmissions) of each tick.
    let mut each: Vec<(f64, u64)> = Vec::with_capacity(1000);
    let mut total = Duration::ZERO;
    for _ in 0..1000 {
        fx.lp.advance(Duration::from_millis(1));
        let now = fx.lp.now();
        let r0 = fx.d.stats().retransmissions;
        let t0 = Cpu::now();
        std::hint::black_box(fx.d.queue_expire(now));
        let dt = t0.elapsed();
        let sent = fx.d.stats().retransmissions - r0;
        per.push(dt.as_nanos() as f64);
        each.push((dt.as_nanos() as f64, sent));
        total += dt;
    }
    let sent = fx.d.stats().retransmissions - before;
    assert_eq!(fx.d.stats().pending_deliveries, n, "none expired yet");
    let mean = total.as_nanos() as f64 / 1000.0;
    // The cost of a retransmission: what ticks that sent some cost beyond a
    // tick that sent none (the wheel's own step), per retransmission. At
    // sizes where every tick sends, that step (well under 1 us) is not
    // subtracted.
    let idle: Vec<f64> = each.iter().filter(|e| e.1 == 0).map(|e| e.0).collect();
    let base = if idle.len() >= 50 { median(idle) } else { 0.0 };
    let busy: f64 = each
        .iter()
        .filter(|e| e.1 > 0)
        .map(|e| (e.0 - base).max(0.0))
        .sum();
    (
        (median(per), mean),
        busy / sent.max(1) as f64,
        sent as f64 / 1000.0,
    )
}

// ---- allocations per transaction, in process over UDP ----

/// The client side of an in-process run: sends the next request for each
/// answer, `window` in flight, until `limit` were sent.
struct Client {
    socket: UdpSocket,
    target: SocketAddr,
    tpl: Template,
    buf: Vec<u8>,
    sent: u64,
    answered: u64,
    limit: u64,
}

impl Client {
    fn send_next(&mut self) {
        if self.sent < self.limit {
            self.sent += 1;
            let id = self.sent;
            let bytes = self.tpl.stamp(id);
            let _ = self.socket.send_to(bytes, self.target);
        }
    }

    fn drain(&mut self) {
        while let Ok(n) = self.socket.recv(&mut self.buf) {
            if self.buf[..n].starts_with(b"SIP/2.0 200") {
                self.answered += 1;
                self.send_next();
            }
        }
    }
}

fn bind_udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

#[derive(Default)]
struct Phases {
    receiver_build: Cell<u64>,
    receiver_deliver: Cell<u64>,
}

struct AllocResult {
    per_txn: f64,
    build: f64,
    deliver: f64,
    bytes_per_txn: f64,
    /// The counts behind the ratios (transactions, allocations: all, in
    /// building the response, in `deliver`), for an exact difference.
    counts: [u64; 4],
}

/// Runs `n` transactions with 32 in flight: allocations per transaction.
fn alloc_run(
    lp: &Rc<MioEventloop>,
    client: &Rc<RefCell<Client>>,
    phases: &Phases,
    done: &dyn Fn() -> bool,
    n: u64,
) -> AllocResult {
    {
        let mut c = client.borrow_mut();
        c.limit = c.sent + n;
    }
    let target = client.borrow().sent + n;
    phases.receiver_build.set(0);
    phases.receiver_deliver.set(0);
    let (a0, b0) = (allocs(), live());
    // Live heap growth over the run: a leak check (about zero once every
    // transaction has ended).
    for _ in 0..32 {
        client.borrow_mut().send_next();
    }
    let c2 = client.clone();
    lp.run(Some(Duration::from_secs(120)), &|| {
        c2.borrow().answered >= target && done()
    })
    .expect("run");
    let (a1, b1) = (allocs(), live());
    assert_eq!(client.borrow().answered, target, "all answered");
    let counts = [
        n,
        a1 - a0,
        phases.receiver_build.get(),
        phases.receiver_deliver.get(),
    ];
    let n = n as f64;
    AllocResult {
        per_txn: counts[1] as f64 / n,
        build: counts[2] as f64 / n,
        deliver: counts[3] as f64 / n,
        bytes_per_txn: (b1 as f64 - b0 as f64) / n,
        counts,
    }
}

fn client_for(lp: &Rc<MioEventloop>, target: SocketAddr, ruri: SocketAddr) -> Rc<RefCell<Client>> {
    let socket = bind_udp();
    let local = socket.local_addr().expect("addr");
    let fd = socket.as_raw_fd();
    let client = Rc::new(RefCell::new(Client {
        socket,
        target,
        tpl: template(local, ruri),
        buf: vec![0u8; 65_536],
        sent: 0,
        answered: 0,
        limit: 0,
    }));
    let c = client.clone();
    lp.add_fd(
        fd,
        Interest::READ,
        Box::new(move |_| c.borrow_mut().drain()),
    )
    .expect("add_fd");
    client
}

/// What `examples/uas.rs` does with an OPTIONS.
fn uas_allocs(warm: u64, n: u64) -> AllocResult {
    let lp = Rc::new(MioEventloop::new().expect("event loop"));
    let dyn_lp: Rc<dyn Eventloop> = lp.clone();
    let leg = Leg::bind(
        "udp:127.0.0.1:0".parse().expect("spec"),
        LegOptions::default(),
    )
    .expect("leg");
    let addr = leg.local_addr();
    let options = DispatcherOptions {
        timers: Timers {
            t1: Duration::from_millis(2),
            ..Timers::default()
        },
        ..DispatcherOptions::default()
    };
    let d = Dispatcher::new(vec![leg], Some(dyn_lp), options).expect("dispatcher");
    let phases = Rc::new(Phases::default());
    let ph = phases.clone();
    let allow: Rc<str> = Rc::from("INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, REGISTER");
    d.set_receiver(
        move |d: &Dispatcher, p: Packet, _leg, _from: &sip_dispatch::leg::Source| {
            let Packet::Request(req) = p else { return };
            // examples/uas.rs, handle() and respond(), for OPTIONS.
            let a0 = allocs();
            let method = req.method().clone();
            if method == Method::Ack || req.uri().as_sip().is_none() {
                return;
            }
            let unsupported: Vec<String> = req
                .unsupported_require(&[])
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert!(unsupported.is_empty());
            let mut resp = Response::for_request(&req, 200, "OK");
            resp.set_to_tag(ua::Tag::new().as_str());
            if method == Method::Options {
                // As the uas: one shared Allow text, no copy per answer.
                resp.headers_mut().push_shared("Allow", allow.clone());
            }
            let a1 = allocs();
            d.deliver(resp, DeliverOptions::default()).expect("deliver");
            let a2 = allocs();
            let _ = writeln!(
                io::sink(),
                "{} {} -> {}",
                req.method().as_str(),
                req.call_id().unwrap_or(""),
                200
            );
            ph.receiver_build.set(ph.receiver_build.get() + (a1 - a0));
            ph.receiver_deliver
                .set(ph.receiver_deliver.get() + (a2 - a1));
        },
    );
    let client = client_for(&lp, addr, addr);
    let weak = d.downgrade();
    let idle = move || {
        weak.upgrade()
            .is_some_and(|d| d.stats().server_transactions == 0)
    };
    alloc_run(&lp, &client, &phases, &idle, warm);
    let r = marginal(&lp, &client, &phases, &idle, n);
    d.shutdown();
    r
}

/// Allocations per transaction as the difference between a run of `n`
/// and one of `2n` transactions: a run's fixed costs cancel out.
fn marginal(
    lp: &Rc<MioEventloop>,
    client: &Rc<RefCell<Client>>,
    phases: &Phases,
    done: &dyn Fn() -> bool,
    n: u64,
) -> AllocResult {
    let short = alloc_run(lp, client, phases, done, n);
    let long = alloc_run(lp, client, phases, done, 2 * n);
    // In integers: the float form (2 x long - short) can miss an exact 4
    // by a rounding error.
    let extra = |i: usize| long.counts[i] as f64 - short.counts[i] as f64;
    let txns = extra(0);
    AllocResult {
        per_txn: extra(1) / txns,
        build: extra(2) / txns,
        deliver: extra(3) / txns,
        bytes_per_txn: long.bytes_per_txn,
        counts: long.counts,
    }
}

/// A stateless proxy forwarding OPTIONS to an allocation-free UAS.
fn proxy_allocs(warm: u64, n: u64) -> AllocResult {
    let lp = Rc::new(MioEventloop::new().expect("event loop"));
    let dyn_lp: Rc<dyn Eventloop> = lp.clone();
    let leg = Leg::bind(
        "udp:127.0.0.1:0".parse().expect("spec"),
        LegOptions::default(),
    )
    .expect("leg");
    let addr = leg.local_addr();
    let options = StatelessProxy::dispatcher_options(DispatcherOptions::default());
    let d = Dispatcher::new(vec![leg], Some(dyn_lp), options).expect("dispatcher");
    d.set_receiver(StatelessProxy::new(false));
    // The back end.
    let backend = Rc::new(bind_udp());
    let backend_addr = backend.local_addr().expect("addr");
    let b = backend.clone();
    let mut inbuf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(4096);
    lp.add_fd(
        backend.as_raw_fd(),
        Interest::READ,
        Box::new(move |_| {
            while let Ok((len, from)) = b.recv_from(&mut inbuf) {
                if answer(&inbuf[..len], &mut out) {
                    let _ = b.send_to(&out, from);
                }
            }
        }),
    )
    .expect("add_fd");
    let client = client_for(&lp, addr, backend_addr);
    let phases = Phases::default();
    alloc_run(&lp, &client, &phases, &|| true, warm);
    let r = marginal(&lp, &client, &phases, &|| true, n);
    d.shutdown();
    r
}

// ---- main ----

fn main() {
    let mut argv = std::env::args().skip(1);
    let mut out_dir: Option<String> = None;
    let mut sizes = vec![1_000usize, 1_000_000];
    let mut allocs = true;
    while let Some(a) = argv.next() {
        match a.as_str() {
            "--bench" => {}
            // The pending-delivery part alone (to profile it, say under
            // callgrind, without the loopback transactions).
            "--no-allocs" => allocs = false,
            "--out" => out_dir = argv.next(),
            "--sizes" => {
                sizes = argv
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.parse().expect("--sizes N,N"))
                    .collect()
            }
            "--help" | "-h" => {
                println!("usage: scale [--out DIR] [--sizes 1000,1000000] [--no-allocs]");
                return;
            }
            other => {
                eprintln!("scale: unknown argument {other:?}");
                eprintln!("usage: scale [--out DIR] [--sizes 1000,1000000] [--no-allocs]");
                std::process::exit(64);
            }
        }
    }
    let mut out = Out::default();
    let results: Vec<Sized> = sizes
        .iter()
        .map(|&n| {
            eprintln!("scale: {n} pending deliveries ...");
            measure_size(n)
        })
        .collect();
    report_sizes(&mut out, &results);
    if allocs {
        report_allocs(&mut out);
    }

    if let Some(dir) = out_dir {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("out dir");
        std::fs::write(dir.join("scale.md"), &out.md).expect("scale.md");
        std::fs::write(
            dir.join("scale.csv"),
            format!("metric,n,value,unit\n{}", out.csv),
        )
        .expect("scale.csv");
    }
}

/// Allocations per OPTIONS transaction, uas and proxy, into `out`.
fn report_allocs(out: &mut Out) {
    eprintln!("scale: allocations per transaction ...");
    // Warm-up as long as the longest measured run: the tables (the server
    // transactions' index, the arenas) reach the size the measured runs
    // need before counting, so a growth at a new peak, a one-off cost
    // and not a per-transaction one, does not count.
    let uas = uas_allocs(200_000, 100_000);
    let proxy = proxy_allocs(200_000, 100_000);
    out.line("");
    out.line(
        "### Allocations per OPTIONS transaction (counting allocator, in process over loopback UDP)",
    );
    out.line("");
    out.line("| server | allocations per transaction | in the receiver: building the response | in the receiver: `deliver` | elsewhere (event loop, leg, parse, dispatcher, timers) | live heap growth per transaction |");
    out.line("|---|---:|---:|---:|---:|---:|");
    out.line(format!(
        "| uas (OPTIONS as `examples/uas.rs` answers it; the server transaction kept until Timer J, T1 = 2 ms) | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} B |",
        uas.per_txn,
        uas.build,
        uas.deliver,
        uas.per_txn - uas.build - uas.deliver,
        uas.bytes_per_txn
    ));
    out.line(format!(
        "| stateless proxy (`StatelessProxy`, request and response forwarded; the back end allocates nothing) | {:.2} | - | - | {:.2} | {:.1} B |",
        proxy.per_txn, proxy.per_txn, proxy.bytes_per_txn
    ));
    out.line("");
    // A table that reaches a new size during the longer run (an arena
    // page at a new peak of live transactions, which depends on timing)
    // is one allocation in 100,000 transactions: +-0.00001, not a fifth
    // allocation per transaction.
    out.line(format!(
        "Target: 4 or fewer allocations per OPTIONS transaction on the uas: {:.5} — {} \
         (a table growing at a new peak of live transactions shows as +-0.00001).",
        uas.per_txn,
        if uas.per_txn < 4.0005 {
            "met"
        } else {
            "MISSED"
        }
    ));
    out.metric("allocs_per_options_uas", 0, uas.per_txn, "allocations");
    out.metric("allocs_uas_build_response", 0, uas.build, "allocations");
    out.metric("allocs_uas_deliver_response", 0, uas.deliver, "allocations");
    out.metric("allocs_per_options_proxy", 0, proxy.per_txn, "allocations");
}

fn report_sizes(out: &mut Out, r: &[Sized]) {
    if r.is_empty() {
        return;
    }
    let header: String = r.iter().map(|s| format!(" {} |", fmt_n(s.n))).collect();
    let sep: String = r.iter().map(|_| "---:|").collect();
    let last = r.last().expect("one");
    let first = &r[0];
    let ratio = |f: &dyn Fn(&Sized) -> f64| f(last) / f(first);
    out.line("### Pending client deliveries in one dispatcher (INVITEs to one silent peer)");
    out.line("");
    out.line(format!(
        "Packet: the INVITE text is {} bytes; the prepared datagram kept for retransmission {} bytes. Once sent, a pending request keeps only that datagram (read again for a new target or an ACK), not its parsed form.",
        first.text, first.wire
    ));
    out.line("");
    out.line(format!(
        "| per pending delivery |{header} {} / {} |",
        fmt_n(last.n),
        fmt_n(first.n)
    ));
    out.line(format!("|---|{sep}---:|"));
    let row = |out: &mut Out, label: &str, f: &dyn Fn(&Sized) -> f64, unit: &str| {
        let cells: String = r.iter().map(|s| format!(" {:.0} {unit} |", f(s))).collect();
        out.line(format!("| {label} |{cells} {:.2}x |", ratio(f)));
    };
    row(
        out,
        "heap (requested bytes, everything)",
        &|s| s.heap_per,
        "B",
    );
    row(
        out,
        "  of which: the prepared datagram kept for retransmission",
        &|s| s.wire as f64,
        "B",
    );
    row(
        out,
        "**heap beyond the packet bytes** (the dispatcher's own: slot, indexes, timers, labels)",
        &|s| s.heap_per - s.wire as f64,
        "B",
    );
    row(
        out,
        "for scale: a parsed packet's text, header index and URI (dropped once sent)",
        &|s| s.text as f64 + s.parse_index,
        "B",
    );
    row(
        out,
        "process RSS growth (malloc's own overhead included)",
        &|s| s.rss_per,
        "B",
    );
    out.line("");
    out.line(format!(
        "| ns per operation (median of 40 batches of 64; mean in brackets) |{header} {} / {} (medians) |",
        fmt_n(last.n),
        fmt_n(first.n)
    ));
    out.line(format!("|---|{sep}---:|"));
    let row2 = |out: &mut Out, label: &str, f: &dyn Fn(&Sized) -> (f64, f64)| {
        let cells: String = r
            .iter()
            .map(|s| {
                let (m, a) = f(s);
                format!(" {m:.0} ({a:.0}) |")
            })
            .collect();
        out.line(format!(
            "| {label} |{cells} {:.2}x |",
            f(last).0 / f(first).0
        ));
    };
    row2(
        out,
        "`deliver` (INVITE, resolved, sent, Timers A and B armed)",
        &|s| s.deliver,
    );
    row2(out, "`cancel_delivery(Cancel::Id)`", &|s| s.cancel_id);
    row2(out, "`cancel_delivery(Cancel::CallId)`", &|s| {
        s.cancel_callid
    });
    row2(
        out,
        "baseline, same run: remove a random key from a `HashMap` of N boxed 592-byte records",
        &|s| s.baseline_remove,
    );
    row2(out, "`queue_expire(now)`, nothing due", &|s| {
        (s.empty_tick, s.empty_tick)
    });
    row2(
        out,
        "retransmission tick (1 ms of virtual time, load spread over 30 s)",
        &|s| s.tick,
    );
    row2(
        out,
        "per retransmission sent in those ticks (beyond a tick that sends none)",
        &|s| (s.per_retransmission, s.per_retransmission),
    );
    let rpt: String = r
        .iter()
        .map(|s| format!(" {:.2} |", s.retransmissions_per_tick))
        .collect();
    out.line(format!("| retransmissions per tick |{rpt} |"));
    let fill: String = r
        .iter()
        .map(|s| format!(" {:.2} s |", s.fill_secs))
        .collect();
    out.line(format!(
        "| time to fill (deliveries, parse included) |{fill} |"
    ));
    out.line("");
    let beyond = last.heap_per - last.wire as f64;
    out.line(format!(
        "Target: under 1 KiB per pending delivery beyond the packet bytes at {}: {:.0} B — {}.",
        fmt_n(last.n),
        beyond,
        if beyond < 1024.0 { "met" } else { "MISSED" }
    ));
    let ops: [(&str, f64); 4] = [
        ("deliver", last.deliver.0 / first.deliver.0),
        ("cancel(Id)", last.cancel_id.0 / first.cancel_id.0),
        (
            "cancel(CallId)",
            last.cancel_callid.0 / first.cancel_callid.0,
        ),
        (
            "per retransmission",
            last.per_retransmission / first.per_retransmission,
        ),
    ];
    let worst = ops
        .iter()
        .cloned()
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    out.line(format!(
        "Target: per-operation costs at {} within 2x of those at {}: worst {} at {:.2}x — {}.",
        fmt_n(last.n),
        fmt_n(first.n),
        worst.0,
        worst.1,
        if worst.1 <= 2.0 { "met" } else { "MISSED" }
    ));
    out.line(format!(
        "For scale: one random removal from a plain `HashMap` of boxed records costs {:.2}x as much at {} as at {} in this run (memory latency: cache and TLB misses); a cancel reaches several structures of that size (the delivery slot, the id, Call-ID and client-key indexes, two timer entries).",
        last.baseline_remove.0 / first.baseline_remove.0,
        fmt_n(last.n),
        fmt_n(first.n),
    ));
    for s in r {
        out.metric("heap_per_delivery", s.n, s.heap_per, "bytes");
        out.metric(
            "heap_beyond_packet_bytes",
            s.n,
            s.heap_per - (s.text + s.wire) as f64,
            "bytes",
        );
        out.metric("rss_per_delivery", s.n, s.rss_per, "bytes");
        out.metric("deliver_ns", s.n, s.deliver.0, "ns");
        out.metric("cancel_id_ns", s.n, s.cancel_id.0, "ns");
        out.metric("cancel_callid_ns", s.n, s.cancel_callid.0, "ns");
        out.metric("baseline_remove_ns", s.n, s.baseline_remove.0, "ns");
        out.metric("empty_tick_ns", s.n, s.empty_tick, "ns");
        out.metric("tick_ns", s.n, s.tick.0, "ns");
        out.metric("per_retransmission_ns", s.n, s.per_retransmission, "ns");
    }
}

fn fmt_n(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
