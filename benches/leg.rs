//! Leg benchmarks, each beside a baseline measured in the same run.
//!
//! - `leg_rx/udp`: datagrams per second that one UDP [`Leg`] on a
//!   [`MioEventloop`] receives, parses and hands up (its sink counts
//!   [`LegEvent::Packet`]), beside `leg_rx/raw_mio`: a `mio::net::UdpSocket`
//!   on a `mio::Poll` doing `recv_from` until `WouldBlock` and counting.
//!   Both get the same ~400-byte OPTIONS, in bursts of [`BURST`] datagrams
//!   sent from this thread by a plain `std::net::UdpSocket` *before* the
//!   clock starts: only the receive side is timed (poll, read, and for the
//!   leg parse, Via stamping and the sink call). Both sockets have a
//!   4 MiB `SO_RCVBUF`; what arrived is counted, and kernel drops (a burst
//!   that did not fully arrive) are reported.
//! - `tcp_idle_memory` (not timed): heap growth per idle TCP connection
//!   accepted by a TCP leg, with a counting global allocator.
//!
//! The counting allocator wraps `System` for the whole binary (one relaxed
//! atomic add per allocation, on both sides of every comparison).
//!
//! Run with `cargo bench --bench leg`.

use std::cell::Cell;
use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "../bench/common/measure.rs"]
mod measure;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mio::{Events, Interest, Poll, Token};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Leg, LegEvent, LegOptions};

use measure::{live, median, record};

// ---- the message ----

/// A ~400-byte OPTIONS with a Via (a leg drops requests without one).
fn options(to: SocketAddr, from: SocketAddr) -> Vec<u8> {
    let msg = format!(
        "OPTIONS sip:bob@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK776asdhds0001;rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:bob@{to}>\r\n\
         From: \"Alice\" <sip:alice@{from}>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 63104 OPTIONS\r\n\
         Contact: <sip:alice@{from}>\r\n\
         Accept: application/sdp\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let bytes = msg.into_bytes();
    assert!(
        (370..=430).contains(&bytes.len()),
        "OPTIONS is {} bytes",
        bytes.len()
    );
    bytes
}

// ---- UDP receive: leg and raw mio ----

/// Datagrams per burst: the sender sends a burst, then the receiver runs
/// until all of it arrived. Below the leg's per-readiness read budget
/// (256), far below the 4 MiB receive buffer.
const BURST: u64 = 200;
const RCVBUF: usize = 4 << 20;

struct LegRx {
    lp: Rc<MioEventloop>,
    _leg: Leg,
    count: Rc<Cell<u64>>,
    tx: UdpSocket,
    dst: SocketAddr,
    msg: Vec<u8>,
    drops: u64,
}

impl LegRx {
    fn new() -> io::Result<LegRx> {
        let lp = Rc::new(MioEventloop::new()?);
        let leg = Leg::bind(
            "udp:127.0.0.1:0".parse().map_err(io::Error::other)?,
            LegOptions {
                recv_buffer_size: Some(RCVBUF),
                ..LegOptions::default()
            },
        )?;
        let count = Rc::new(Cell::new(0u64));
        let c = count.clone();
        let dyn_lp: Rc<dyn Eventloop> = lp.clone();
        leg.attach(
            dyn_lp,
            Rc::new(move |_: &Leg, ev: LegEvent| {
                if let LegEvent::Packet(p, _) = ev {
                    std::hint::black_box(&p);
                    c.set(c.get() + 1);
                }
            }),
        )?;
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        let dst = leg.local_addr();
        let msg = options(dst, tx.local_addr()?);
        Ok(LegRx {
            lp,
            _leg: leg,
            count,
            tx,
            dst,
            msg,
            drops: 0,
        })
    }

    /// Receives `n` datagrams in bursts; returns the receive time only.
    fn receive(&mut self, n: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let k = left.min(BURST);
            let before = self.count.get();
            for _ in 0..k {
                self.tx.send_to(&self.msg, self.dst).expect("send");
            }
            let count = self.count.clone();
            let target = before + k;
            let t0 = Instant::now();
            self.lp
                .run(Some(Duration::from_secs(1)), &|| count.get() >= target)
                .expect("run");
            total += t0.elapsed();
            self.drops += target.saturating_sub(self.count.get());
            left -= k;
        }
        total
    }
}

struct RawRx {
    poll: Poll,
    events: Events,
    sock: mio::net::UdpSocket,
    buf: Vec<u8>,
    tx: UdpSocket,
    dst: SocketAddr,
    msg: Vec<u8>,
    drops: u64,
}

impl RawRx {
    fn new() -> io::Result<RawRx> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.set_recv_buffer_size(RCVBUF)?;
        s.bind(
            &"127.0.0.1:0"
                .parse::<SocketAddr>()
                .map_err(io::Error::other)?
                .into(),
        )?;
        s.set_nonblocking(true)?;
        let mut sock = mio::net::UdpSocket::from_std(s.into());
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut sock, Token(0), Interest::READABLE)?;
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        let dst = sock.local_addr()?;
        let msg = options(dst, tx.local_addr()?);
        Ok(RawRx {
            poll,
            events: Events::with_capacity(1024),
            sock,
            buf: vec![0u8; 65_536],
            tx,
            dst,
            msg,
            drops: 0,
        })
    }

    fn receive(&mut self, n: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let k = left.min(BURST);
            for _ in 0..k {
                self.tx.send_to(&self.msg, self.dst).expect("send");
            }
            let t0 = Instant::now();
            let mut got = 0u64;
            while got < k {
                self.poll
                    .poll(&mut self.events, Some(Duration::from_secs(1)))
                    .expect("poll");
                if self.events.is_empty() {
                    break; // timed out: the rest was dropped
                }
                for _ in self.events.iter() {
                    loop {
                        match self.sock.recv_from(&mut self.buf) {
                            Ok((len, _)) => {
                                std::hint::black_box(len);
                                got += 1;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("recv_from: {e}"),
                        }
                    }
                }
            }
            total += t0.elapsed();
            self.drops += k.saturating_sub(got);
            left -= k;
        }
        total
    }
}

fn udp_receive(c: &mut Criterion) {
    let mut leg = LegRx::new().expect("leg");
    let mut raw = RawRx::new().expect("raw");
    eprintln!(
        "udp receive: {}-byte OPTIONS, bursts of {BURST}, SO_RCVBUF {} MiB (asked)",
        leg.msg.len(),
        RCVBUF >> 20
    );
    let mut g = c.benchmark_group("leg_rx");
    g.throughput(Throughput::Elements(1));
    g.bench_function("udp_leg", |b| {
        b.iter_custom(|iters| {
            let d = leg.receive(iters);
            record("leg", iters, d);
            d
        })
    });
    g.bench_function("raw_mio", |b| {
        b.iter_custom(|iters| {
            let d = raw.receive(iters);
            record("raw", iters, d);
            d
        })
    });
    g.finish();
    let (l, r) = (median("leg"), median("raw"));
    eprintln!();
    eprintln!("UDP receive (median of criterion samples, same run):");
    eprintln!("  {:<34} {:>10} {:>14}", "", "ns/dgram", "datagrams/s");
    eprintln!(
        "  {:<34} {:>10.0} {:>14.0}",
        "Leg (recv+parse+Via+sink)",
        l,
        1e9 / l
    );
    eprintln!(
        "  {:<34} {:>10.0} {:>14.0}",
        "raw mio recv_from loop",
        r,
        1e9 / r
    );
    eprintln!(
        "  leg/raw throughput ratio: {:.2} (the leg reaches {:.0}% of the raw loop's rate)",
        r / l,
        100.0 * r / l
    );
    eprintln!(
        "  kernel drops: leg {} datagrams, raw {} datagrams (must be 0 for valid timings); leg received {}",
        leg.drops,
        raw.drops,
        leg.count.get()
    );
    eprintln!();
}

// ---- idle TCP connections ----

const CONNS: usize = 1000;

/// `TCP: ... mem N` from /proc/net/sockstat: pages the kernel charges to
/// TCP socket buffers (not heap).
fn tcp_kernel_pages() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "mem" {
            return it.next()?.parse().ok();
        }
    }
    None
}

/// Opens `CONNS` connections in batches below the listen backlog, running
/// the loop until the leg has accepted each batch. Returns the streams.
fn open_connections(lp: &MioEventloop, leg: &Leg, clients: &mut Vec<TcpStream>) {
    let addr = leg.local_addr();
    let base = leg.connection_count();
    while clients.len() < CONNS {
        let batch = (CONNS - clients.len()).min(64);
        for _ in 0..batch {
            clients.push(TcpStream::connect(addr).expect("connect"));
        }
        let want = base + clients.len();
        lp.run(Some(Duration::from_secs(10)), &|| {
            leg.connection_count() >= want
        })
        .expect("run");
        assert_eq!(leg.connection_count(), want, "accepted connections");
    }
}

fn tcp_idle_memory(_c: &mut Criterion) {
    let lp = Rc::new(MioEventloop::new().expect("loop"));
    let leg = Leg::bind(
        "tcp:127.0.0.1:0".parse().expect("spec"),
        LegOptions::default(),
    )
    .expect("tcp leg");
    let dyn_lp: Rc<dyn Eventloop> = lp.clone();
    leg.attach(dyn_lp, Rc::new(|_: &Leg, _ev: LegEvent| {}))
        .expect("attach");
    let mut clients: Vec<TcpStream> = Vec::with_capacity(CONNS);

    // Cold: the first 1,000 on a fresh leg and loop (table growth included).
    let pages0 = tcp_kernel_pages();
    let before = live();
    open_connections(&lp, &leg, &mut clients);
    let after = live();
    let pages1 = tcp_kernel_pages();
    let cold = after as f64 - before as f64;

    // Close them all, let the leg notice, then open 1,000 again: the tables
    // keep their capacity, so this is the per-connection part alone.
    clients.clear();
    lp.run(Some(Duration::from_secs(10)), &|| {
        leg.connection_count() == 0
    })
    .expect("run");
    assert_eq!(leg.connection_count(), 0, "connections closed");
    let before2 = live();
    open_connections(&lp, &leg, &mut clients);
    let warm = live() as f64 - before2 as f64;

    eprintln!();
    eprintln!("Idle TCP connections ({CONNS} accepted by one TCP leg, counting allocator):");
    eprintln!(
        "  heap growth, fresh leg and loop:       {:>9.0} bytes total, {:>7.1} bytes/connection{}",
        cold,
        cold / CONNS as f64,
        if cold / (CONNS as f64) < 8192.0 {
            "  (target < 8 KiB: met)"
        } else {
            "  (target < 8 KiB: MISSED)"
        }
    );
    eprintln!(
        "  heap growth, tables already grown:     {:>9.0} bytes total, {:>7.1} bytes/connection",
        warm,
        warm / CONNS as f64
    );
    if let (Some(a), Some(b)) = (pages0, pages1) {
        eprintln!(
            "  kernel TCP buffer pages (/proc/net/sockstat, whole host): {a} -> {b} \
             (socket buffers are kernel memory, not heap: not in the figures above)"
        );
    }
    eprintln!(
        "  (both ends are in this process: the client side uses std TcpStreams, \
         which allocate nothing; counts are requested sizes, without malloc overhead)"
    );
    eprintln!();
    drop(clients);
    leg.detach();
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
    targets = udp_receive, tcp_idle_memory
}
criterion_main!(benches);
