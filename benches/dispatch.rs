//! Dispatcher benchmarks.
//!
//! `pending/<N>/...`, N = 1,000 / 10,000 / 100,000 pending INVITE deliveries
//! (distinct Call-IDs) to one silent peer: a [`MemoryNetwork`] under
//! virtual time that loses every datagram (`Faults { loss: 1.0 }`: the send
//! happens, nothing ever answers, no loop timer per datagram), so every
//! delivery stays in Calling with Timers A and B armed. Packets are parsed
//! outside the timing. Ops:
//! - `deliver+cancel`: one more `deliver` and its `cancel_delivery(Entry)`,
//!   **both inside the timing** (an untimed cancel would cost criterion
//!   minutes at 100k: it grows with N). `deliver` alone is measured outside
//!   criterion (2,000 single timed `deliver`s, their cancels untimed) and
//!   shown in the summary table;
//! - `cancel_id`, `cancel_callid`: `cancel_delivery(Cancel::Id(..))` /
//!   `(Cancel::CallId(..))` of a random pending delivery, timed alone; the
//!   replacement delivery that keeps N constant is untimed;
//! - `queue_expire`: one `queue_expire(now)` with nothing due.
//!
//! A summary table puts 1k / 10k / 100k side by side (medians of criterion's
//! samples), with the shutdown time and two diagnostics: cancel with every
//! delivery to its own address, and `queue_expire` with the deliveries
//! spread over 30 s of virtual time.
//!
//! Memory per pending delivery (not timed), with a counting allocator.
//!
//! `reqresp/W<w>`: OPTIONS request/response between two dispatchers over
//! loopback UDP on one `MioEventloop` (W = 1 and 64 requests in flight, each
//! completion starting the next), beside `raw_mio_echo`: a client socket and
//! an echo socket on one `mio::Poll`, same window, same payload size, same
//! run.
//!
//! Run with `cargo bench --bench dispatch`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "../bench/common/measure.rs"]
mod measure;
#[path = "../bench/common/workload.rs"]
mod workload;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mio::{Events, Interest, Poll, Token};
use sip_dispatch::dispatcher::{
    Cancel, DeliverOptions, DeliveryId, DeliveryOutcome, Dispatcher, DispatcherOptions,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Leg, LegOptions, MemoryNetwork};
use sip_dispatch::packet::{Method, Packet, Response};

use measure::{live, median, median_of, record};
use workload::{Rng, SilentUac};

// ---- pending deliveries ----

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const PEER: &str = "10.0.0.2:5060";

fn call_id(i: u64) -> String {
    format!("{i:016x}-bench@10.0.0.1")
}

/// An INVITE to `peer` (no Via: the leg adds it). Fixed-width fields: every
/// one is the same length for the same peer.
fn invite_text(i: u64, peer: &str) -> String {
    format!(
        "INVITE sip:bob@{peer} SIP/2.0\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@10.0.0.1>;tag={i:016x}\r\n\
         To: <sip:bob@{peer}>\r\n\
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

/// Where delivery `i` goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peers {
    /// One silent peer (the scenario).
    One,
    /// Each delivery to its own address (diagnostic).
    Distinct,
}

fn peer_of(peers: Peers, i: u64) -> String {
    match peers {
        Peers::One => PEER.to_owned(),
        Peers::Distinct => format!(
            "10.{}.{}.{}:5060",
            1 + ((i >> 16) & 0x7f),
            (i >> 8) & 0xff,
            i & 0xff
        ),
    }
}

fn packet(i: u64, peers: Peers) -> Packet {
    Packet::parse(invite_text(i, &peer_of(peers, i)).as_bytes()).expect("INVITE parses")
}

struct Pending {
    lp: Rc<MioEventloop>,
    _net: MemoryNetwork,
    leg: Leg,
    d: Dispatcher,
    /// The pending deliveries: id and Call-ID number.
    slots: Vec<(DeliveryId, u64)>,
    next: u64,
    rng: Rng,
    peers: Peers,
}

impl Pending {
    fn new(peers: Peers) -> Pending {
        let SilentUac { lp, net, leg, d } = SilentUac::new(DispatcherOptions::default());
        Pending {
            lp,
            _net: net,
            leg,
            d,
            slots: Vec::new(),
            next: 0,
            rng: Rng(7),
            peers,
        }
    }

    fn packet(&mut self) -> (Packet, u64) {
        let i = self.next;
        self.next += 1;
        (packet(i, self.peers), i)
    }

    fn fill(&mut self, n: usize) {
        while self.slots.len() < n {
            let (p, i) = self.packet();
            let id = self
                .d
                .deliver(p, DeliverOptions::default())
                .expect("deliver");
            self.slots.push((id, i));
        }
        let s = self.d.stats();
        assert_eq!(s.pending_deliveries, n, "all pending");
        assert_eq!(s.timers, 2 * n, "Timers A and B for each");
    }

    /// A random pending delivery's slot and the cancel that names it.
    fn pick(&mut self, by_callid: bool) -> (usize, Cancel) {
        let j = self.rng.below(self.slots.len() as u64) as usize;
        let cid = call_id(self.slots[j].1);
        let c = if by_callid {
            Cancel::CallId(cid)
        } else {
            Cancel::Id(format!("{cid} 1"))
        };
        (j, c)
    }

    /// Cancels `ops` random pending deliveries (each timed alone) and
    /// replaces them (untimed). Returns the total cancel time.
    fn cancel_random(&mut self, ops: u64, by_callid: bool) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..ops {
            let (j, c) = self.pick(by_callid);
            let (p, i) = self.packet();
            let t0 = Instant::now();
            let ok = self.d.cancel_delivery(c);
            total += t0.elapsed();
            assert!(ok, "cancelled");
            let id = self
                .d
                .deliver(p, DeliverOptions::default())
                .expect("deliver");
            self.slots[j] = (id, i);
        }
        total
    }

    /// `deliver` and `cancel_delivery(Entry)` of that delivery, both timed.
    fn deliver_cancel(&mut self, ops: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = ops;
        let mut batch = Vec::with_capacity(256);
        while left > 0 {
            let k = left.min(256);
            batch.extend((0..k).map(|_| self.packet().0));
            for p in batch.drain(..) {
                let t0 = Instant::now();
                let id = self
                    .d
                    .deliver(p, DeliverOptions::default())
                    .expect("deliver");
                let ok = self.d.cancel_delivery(Cancel::Entry(id));
                total += t0.elapsed();
                assert!(ok);
            }
            left -= k;
        }
        total
    }

    /// Median ns of `ops` lone `deliver`s (their cancels untimed).
    fn deliver_only(&mut self, ops: usize) -> f64 {
        let packets: Vec<Packet> = (0..ops).map(|_| self.packet().0).collect();
        let mut times = Vec::with_capacity(ops);
        let mut ids = Vec::with_capacity(ops);
        for p in packets {
            let t0 = Instant::now();
            let id = self
                .d
                .deliver(p, DeliverOptions::default())
                .expect("deliver");
            times.push(t0.elapsed().as_nanos() as f64);
            ids.push(id);
        }
        for id in ids {
            assert!(self.d.cancel_delivery(Cancel::Entry(id)));
        }
        median_of(times)
    }

    /// Median ns of `ops` lone cancels (by Id) of random pending ones.
    fn cancel_only(&mut self, ops: usize) -> f64 {
        let times: Vec<f64> = (0..ops)
            .map(|_| self.cancel_random(1, false).as_nanos() as f64)
            .collect();
        median_of(times)
    }

    fn queue_expire(&self, ops: u64) -> Duration {
        let now = self.lp.now();
        let before = self.d.stats().retransmissions;
        let t0 = Instant::now();
        for _ in 0..ops {
            std::hint::black_box(self.d.queue_expire(std::hint::black_box(now)));
        }
        let d = t0.elapsed();
        assert_eq!(self.d.stats().retransmissions, before, "nothing was due");
        d
    }
}

fn pending(c: &mut Criterion) {
    let mut deliver_alone = BTreeMap::new();
    let mut shutdown = BTreeMap::new();
    for n in SIZES {
        let mut fx = Pending::new(Peers::One);
        let t0 = Instant::now();
        fx.fill(n);
        eprintln!(
            "pending/{n}: filled in {:.2?} ({} wheel timers, table_bytes {})",
            t0.elapsed(),
            fx.d.stats().timers,
            fx.d.table_bytes()
        );
        let mut g = c.benchmark_group(format!("pending/{n}"));
        // Shorter than the house 1 s + 3 s: each timed cancel needs an
        // untimed replacement delivery (~3 us), which would triple the wall
        // time of the cheap cases.
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let name = format!("deliver+cancel/{n}");
        g.bench_function("deliver+cancel", |b| {
            b.iter_custom(|iters| {
                let d = fx.deliver_cancel(iters);
                record(&name, iters, d);
                d
            })
        });
        for (label, by_callid) in [("cancel_id", false), ("cancel_callid", true)] {
            let name = format!("{label}/{n}");
            g.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let d = fx.cancel_random(iters, by_callid);
                    record(&name, iters, d);
                    d
                })
            });
        }
        let name = format!("queue_expire/{n}");
        g.bench_function("queue_expire", |b| {
            b.iter_custom(|iters| {
                let d = fx.queue_expire(iters);
                record(&name, iters, d);
                d
            })
        });
        g.finish();
        deliver_alone.insert(n, fx.deliver_only(2_000));
        assert_eq!(fx.d.stats().pending_deliveries, n, "N unchanged");
        let t0 = Instant::now();
        drop(fx);
        shutdown.insert(n, t0.elapsed().as_nanos() as f64);
    }

    // Diagnostics, outside criterion (medians of single timed calls).
    let mut distinct_cancel = BTreeMap::new();
    let mut spread_expire = BTreeMap::new();
    for n in SIZES {
        let mut fx = Pending::new(Peers::Distinct);
        fx.fill(n);
        distinct_cancel.insert(n, fx.cancel_only(2_000));
        drop(fx);
        let fx = spread(n);
        let times: Vec<f64> = (0..200)
            .map(|_| fx.queue_expire(1).as_nanos() as f64)
            .collect();
        spread_expire.insert(n, median_of(times));
    }

    eprintln!();
    eprintln!(
        "Pending deliveries: ns per op (medians of criterion samples unless marked), same run"
    );
    eprintln!(
        "  {:<46} {:>10} {:>10} {:>10} {:>12}",
        "op", "1k", "10k", "100k", "100k / 1k"
    );
    let row = |label: &str, v: [f64; 3]| {
        eprintln!(
            "  {:<46} {:>10.0} {:>10.0} {:>10.0} {:>11.1}x",
            label,
            v[0],
            v[1],
            v[2],
            v[2] / v[0]
        );
    };
    let crit = |op: &str| SIZES.map(|n| median(&format!("{op}/{n}")));
    row(
        "deliver + cancel(Entry), both timed",
        crit("deliver+cancel"),
    );
    row(
        "deliver alone (own: median of 2,000)",
        SIZES.map(|n| deliver_alone[&n]),
    );
    row("cancel_delivery(Cancel::Id)", crit("cancel_id"));
    row("cancel_delivery(Cancel::CallId)", crit("cancel_callid"));
    row("queue_expire(now), nothing due", crit("queue_expire"));
    let sd = SIZES.map(|n| shutdown[&n] / 1e6);
    eprintln!(
        "  {:<46} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>11.0}x",
        "drop(Dispatcher) with N pending (whole)",
        sd[0],
        sd[1],
        sd[2],
        sd[2] / sd[0]
    );
    eprintln!("  diagnostics:");
    row(
        "  cancel(Id), each to its own address (own)",
        SIZES.map(|n| distinct_cancel[&n]),
    );
    row(
        "  queue_expire, deliveries spread over 30 s (own)",
        SIZES.map(|n| spread_expire[&n]),
    );
    eprintln!();
}

/// N deliveries to the one peer, spread evenly over 30 s of virtual time
/// (due retransmissions fired each virtual millisecond), as under steady
/// load.
fn spread(n: usize) -> Pending {
    let mut fx = Pending::new(Peers::One);
    let per_ms = n.div_ceil(30_000);
    let ticks = n.div_ceil(per_ms) as u32;
    let step = Duration::from_secs(30) / ticks;
    for k in 0..n {
        if k % per_ms == 0 {
            fx.lp.advance(step);
            fx.d.queue_expire(fx.lp.now());
        }
        let (p, i) = fx.packet();
        let id = fx.d.deliver(p, DeliverOptions::default()).expect("deliver");
        fx.slots.push((id, i));
    }
    assert_eq!(fx.d.stats().pending_deliveries, n);
    fx
}

// ---- memory per pending delivery ----

fn memory(_c: &mut Criterion) {
    let text_len = invite_text(0, PEER).len();
    // Heap of a parsed packet beyond its text: fields and URI.
    let parse_overhead = {
        let texts: Vec<String> = (0..1000).map(|i| invite_text(i, PEER)).collect();
        let mut packets = Vec::with_capacity(1000);
        let before = live();
        for t in &texts {
            packets.push(Packet::parse(t.as_bytes()).expect("parses"));
        }
        (live() - before) as f64 / 1000.0 - text_len as f64
    };
    eprintln!();
    eprintln!(
        "Memory per pending INVITE delivery (counting allocator, requested bytes; \
         INVITE text {text_len} bytes, a parsed packet holds its text plus {parse_overhead:.0} bytes of \
         header index and URI)"
    );
    eprintln!(
        "  {:>7} {:>12} {:>10} {:>18} {:>14} {:>16} {:>18}",
        "N",
        "heap/N",
        "sent bytes",
        "heap/N - text",
        "- sent bytes",
        "- parse index",
        "table_bytes()/N"
    );
    for n in SIZES {
        let mut fx = Pending::new(Peers::One);
        let sent = Rc::new(Cell::new(0usize));
        let s = sent.clone();
        fx.leg.set_send_hook(Some(Rc::new(move |b: &[u8], _| {
            s.set(b.len());
            true
        })));
        // One delivery first, so that one-time state (loop timers) exists.
        fx.fill(1);
        let sent_len = sent.get();
        // The bench's own list of ids, sized up front: not in the figures.
        fx.slots.reserve_exact(n);
        let before = live();
        for _ in 1..n {
            let (p, i) = fx.packet();
            let id = fx.d.deliver(p, DeliverOptions::default()).expect("deliver");
            fx.slots.push((id, i));
        }
        let after = live();
        let per = (after - before) as f64 / (n - 1) as f64;
        let minus_text = per - text_len as f64;
        let minus_sent = minus_text - sent_len as f64;
        let minus_index = minus_sent - parse_overhead;
        eprintln!(
            "  {:>7} {:>12.0} {:>10} {:>18.0} {:>14.0} {:>16.0} {:>18.1}   {}",
            n,
            per,
            sent_len,
            minus_text,
            minus_sent,
            minus_index,
            fx.d.table_bytes() as f64 / n as f64,
            if minus_sent < 512.0 {
                "(target < 512: met)"
            } else {
                "(target < 512: MISSED)"
            }
        );
    }
    eprintln!(
        "  heap/N: everything a delivery adds (the parsed packet included); \"- text\" subtracts the \
         packet's own text (kept in the parsed packet), \"- sent bytes\" also the prepared bytes \
         (the INVITE with the leg's Via, kept for retransmission): the target figure. \
         \"- parse index\" also subtracts the parsed packet's header index and URI: the dispatcher's own share."
    );
    eprintln!();
}

// ---- request/response over loopback UDP ----

#[derive(Default)]
struct Flow {
    issued: Cell<u64>,
    done: Cell<u64>,
    limit: Cell<u64>,
    failed: Cell<u64>,
}

struct ReqResp {
    lp: Rc<MioEventloop>,
    uac: Dispatcher,
    _uas: Dispatcher,
    uac_addr: SocketAddr,
    uas_addr: SocketAddr,
    flow: Rc<Flow>,
    wire_len: usize,
}

fn options_text(n: u64, uas: SocketAddr, uac: SocketAddr) -> String {
    format!(
        "OPTIONS sip:bob@{uas} SIP/2.0\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:bob@{uas}>\r\n\
         From: \"Alice\" <sip:alice@{uac}>;tag={n:016x}\r\n\
         Call-ID: {n:016x}@uac.bench.example.com\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:alice@{uac}>\r\n\
         Accept: application/sdp\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn start_one(d: &Dispatcher, flow: &Rc<Flow>, uas: SocketAddr, uac: SocketAddr) {
    let n = flow.issued.get();
    flow.issued.set(n + 1);
    let p = Packet::parse(options_text(n, uas, uac).as_bytes()).expect("OPTIONS parses");
    let f = flow.clone();
    d.deliver(
        p,
        DeliverOptions::with_callback(move |d, outcome| {
            if outcome != DeliveryOutcome::Completed(200) {
                f.failed.set(f.failed.get() + 1);
            }
            f.done.set(f.done.get() + 1);
            if f.issued.get() < f.limit.get() {
                start_one(d, &f, uas, uac);
            }
        }),
    )
    .expect("deliver");
}

impl ReqResp {
    fn new() -> io::Result<ReqResp> {
        let lp = Rc::new(MioEventloop::new()?);
        let dyn_lp: Rc<dyn Eventloop> = lp.clone();
        let spec = || "udp:127.0.0.1:0".parse().map_err(io::Error::other);
        let uas_leg = Leg::bind(spec()?, LegOptions::default())?;
        let uac_leg = Leg::bind(spec()?, LegOptions::default())?;
        let (uas_addr, uac_addr) = (uas_leg.local_addr(), uac_leg.local_addr());
        let wire = Rc::new(Cell::new(0usize));
        let w = wire.clone();
        uac_leg.set_send_hook(Some(Rc::new(move |b: &[u8], _| {
            w.set(b.len());
            true
        })));
        let uas = Dispatcher::new(
            vec![uas_leg],
            Some(dyn_lp.clone()),
            DispatcherOptions::default(),
        )?;
        uas.set_receiver(|d: &Dispatcher, p: Packet, _leg, _from: &_| {
            if let Packet::Request(req) = p {
                if *req.method() != Method::Ack {
                    let mut ok = Response::for_request(&req, 200, "OK");
                    ok.set_to_tag("uas1");
                    d.deliver(ok, DeliverOptions::default()).expect("answer");
                }
            }
        });
        let uac = Dispatcher::new(
            vec![uac_leg.clone()],
            Some(dyn_lp),
            DispatcherOptions::default(),
        )?;
        let mut rr = ReqResp {
            lp,
            uac,
            _uas: uas,
            uac_addr,
            uas_addr,
            flow: Rc::default(),
            wire_len: 0,
        };
        // One exchange: checks the path and measures the request on the wire.
        rr.run(1, 1);
        assert_eq!(rr.flow.failed.get(), 0, "first OPTIONS answered 200");
        rr.wire_len = wire.get();
        uac_leg.set_send_hook(None);
        Ok(rr)
    }

    /// Completes `iters` requests with `w` in flight; returns the time.
    fn run(&mut self, iters: u64, w: u64) -> Duration {
        let f = self.flow.clone();
        let target = f.done.get() + iters;
        f.limit.set(f.issued.get() + iters);
        let t0 = Instant::now();
        for _ in 0..w.min(iters) {
            start_one(&self.uac, &f, self.uas_addr, self.uac_addr);
        }
        self.lp
            .run(Some(Duration::from_secs(60)), &|| f.done.get() >= target)
            .expect("run");
        let d = t0.elapsed();
        assert_eq!(f.done.get(), target, "all requests completed");
        d
    }
}

const CLIENT: Token = Token(0);
const ECHO: Token = Token(1);

struct RawEcho {
    poll: Poll,
    events: Events,
    client: mio::net::UdpSocket,
    echo: mio::net::UdpSocket,
    echo_addr: SocketAddr,
    buf: Vec<u8>,
    payload: Vec<u8>,
}

impl RawEcho {
    fn new(len: usize) -> io::Result<RawEcho> {
        let any: SocketAddr = "127.0.0.1:0".parse().map_err(io::Error::other)?;
        let mut client = mio::net::UdpSocket::bind(any)?;
        let mut echo = mio::net::UdpSocket::bind(any)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut client, CLIENT, Interest::READABLE)?;
        poll.registry()
            .register(&mut echo, ECHO, Interest::READABLE)?;
        let echo_addr = echo.local_addr()?;
        Ok(RawEcho {
            poll,
            events: Events::with_capacity(1024),
            client,
            echo,
            echo_addr,
            buf: vec![0u8; 65_536],
            payload: vec![b'x'; len],
        })
    }

    fn run(&mut self, iters: u64, w: u64) -> Duration {
        let (mut issued, mut done) = (0u64, 0u64);
        let t0 = Instant::now();
        while issued < w.min(iters) {
            self.client
                .send_to(&self.payload, self.echo_addr)
                .expect("send");
            issued += 1;
        }
        while done < iters {
            self.poll
                .poll(&mut self.events, Some(Duration::from_secs(5)))
                .expect("poll");
            assert!(!self.events.is_empty(), "echo stalled");
            for ev in self.events.iter() {
                if ev.token() == ECHO {
                    loop {
                        match self.echo.recv_from(&mut self.buf) {
                            Ok((n, from)) => {
                                self.echo.send_to(&self.buf[..n], from).expect("echo");
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("echo recv: {e}"),
                        }
                    }
                } else {
                    loop {
                        match self.client.recv_from(&mut self.buf) {
                            Ok(_) => {
                                done += 1;
                                if issued < iters {
                                    self.client
                                        .send_to(&self.payload, self.echo_addr)
                                        .expect("send");
                                    issued += 1;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("client recv: {e}"),
                        }
                    }
                }
            }
        }
        t0.elapsed()
    }
}

fn reqresp(c: &mut Criterion) {
    let mut rr = ReqResp::new().expect("dispatchers");
    let mut raw = RawEcho::new(rr.wire_len).expect("raw echo");
    eprintln!(
        "reqresp: OPTIONS on the wire {} bytes (raw echo payload the same)",
        rr.wire_len
    );
    for w in [1u64, 64] {
        let mut g = c.benchmark_group(format!("reqresp/W{w}"));
        g.throughput(Throughput::Elements(1));
        let name = format!("dispatch/{w}");
        g.bench_function("dispatchers", |b| {
            b.iter_custom(|iters| {
                let d = rr.run(iters, w);
                record(&name, iters, d);
                d
            })
        });
        let name = format!("raw/{w}");
        g.bench_function("raw_mio_echo", |b| {
            b.iter_custom(|iters| {
                let d = raw.run(iters, w);
                record(&name, iters, d);
                d
            })
        });
        g.finish();
    }
    eprintln!();
    eprintln!(
        "OPTIONS request/response over loopback UDP (medians of criterion samples, same run):"
    );
    eprintln!(
        "  {:<6} {:>16} {:>16} {:>18}",
        "window", "dispatchers r/s", "raw echo r/s", "dispatch / raw"
    );
    for w in [1u64, 64] {
        let (d, r) = (
            median(&format!("dispatch/{w}")),
            median(&format!("raw/{w}")),
        );
        eprintln!(
            "  W={:<4} {:>16.0} {:>16.0} {:>18.3}",
            w,
            1e9 / d,
            1e9 / r,
            r / d
        );
    }
    let s = rr.uac.stats();
    eprintln!(
        "  UAC after the run: {} requests, {} failed, {} pending deliveries (Timer K lingering), \
         {} retransmissions",
        rr.flow.done.get(),
        rr.flow.failed.get(),
        s.pending_deliveries,
        s.retransmissions
    );
    eprintln!();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = pending, memory, reqresp
}
criterion_main!(benches);
