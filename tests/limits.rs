//! Resource limits under attack, on loopback with the real clock: each test
//! a bounded attack and the bound it must meet.
//!
//! - 5,000 TCP connections opened and left idle by another process: capped
//!   at `max_connections`, the ones idle the longest closed, memory bounded;
//! - slow-loris peers sending a byte at a time: closed by `header_timeout`;
//! - a UDP flood of junk: memory flat, valid requests still answered;
//! - 100,000 distinct requests, each retransmitted: the response cache
//!   bounded by `max_server_transactions`;
//! - a peer that never reads: the write buffer bounded by
//!   `max_write_buffer`, the connection closed, deliveries failed.
//!
//! The tests take a lock so that they run one at a time: the memory they
//! report (VmRSS of this process, sampled while the attack runs) is then
//! theirs alone. Run with `--nocapture` to see the figures.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sip_dispatch::Errno;
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId, Timers,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop, When};
use sip_dispatch::leg::{Leg, LegOptions, LegSpec, Protocol, Source, TcpOptions};
use sip_dispatch::packet::{Method, Packet, Response};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// This process's open file descriptors.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Peak of the resident set while an attack runs: sampled at most every
/// 20 ms from inside the loop's stop condition.
struct RssMeter {
    baseline: u64,
    peak: Cell<u64>,
    last: Cell<Instant>,
}

impl RssMeter {
    fn start() -> RssMeter {
        let baseline = rss_kib();
        RssMeter {
            baseline,
            peak: Cell::new(baseline),
            last: Cell::new(Instant::now()),
        }
    }

    fn sample(&self) {
        if self.last.get().elapsed() >= Duration::from_millis(20) {
            self.sample_now();
        }
    }

    fn sample_now(&self) {
        self.last.set(Instant::now());
        self.peak.set(self.peak.get().max(rss_kib()));
    }

    fn growth_kib(&self) -> u64 {
        self.sample_now();
        self.peak.get().saturating_sub(self.baseline)
    }

    fn report(&self, what: &str) -> u64 {
        let growth = self.growth_kib();
        println!(
            "{what}: VmRSS baseline {} KiB, peak {} KiB (+{} KiB), now {} KiB",
            self.baseline,
            self.peak.get(),
            growth,
            rss_kib()
        );
        growth
    }
}

/// A dispatcher whose receiver answers every request (but ACK) with 200,
/// with a body of `body_len` bytes; the outcomes of those deliveries are
/// recorded.
struct Target {
    lp: Rc<MioEventloop>,
    dispatcher: Dispatcher,
    legs: Vec<Leg>,
    requests: Rc<Cell<u64>>,
    outcomes: Rc<RefCell<Vec<DeliveryOutcome>>>,
}

impl Target {
    fn new(
        specs: &[(Protocol, LegOptions)],
        options: DispatcherOptions,
        body_len: usize,
    ) -> Target {
        let lp = Rc::new(MioEventloop::new().expect("event loop"));
        let legs: Vec<Leg> = specs
            .iter()
            .map(|(proto, opts)| {
                let spec = LegSpec {
                    proto: *proto,
                    addr: "127.0.0.1:0".parse().unwrap(),
                };
                Leg::bind(spec, opts.clone()).expect("bind")
            })
            .collect();
        let options = DispatcherOptions {
            dns_resolver: Some(Rc::new(|_, answer| answer(Ok(Vec::new())))),
            ..options
        };
        let dispatcher =
            Dispatcher::new(legs.clone(), Some(lp.clone() as Rc<dyn Eventloop>), options)
                .expect("dispatcher");
        let requests = Rc::new(Cell::new(0));
        let outcomes: Rc<RefCell<Vec<DeliveryOutcome>>> = Rc::default();
        let (r, o) = (requests.clone(), outcomes.clone());
        let body = vec![b'x'; body_len];
        dispatcher.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
            let Packet::Request(req) = p else { return };
            r.set(r.get() + 1);
            if *req.method() == Method::Ack {
                return;
            }
            let mut ok = Response::for_request(&req, 200, "OK");
            ok.set_to_tag("target");
            if !body.is_empty() {
                ok.headers_mut().push("Content-Type", "text/plain");
                ok.set_body(body.clone());
            }
            let o = o.clone();
            let opts = DeliverOptions::with_callback(move |_, out| o.borrow_mut().push(out));
            d.deliver(ok, opts).expect("deliver");
        });
        Target {
            lp,
            dispatcher,
            legs,
            requests,
            outcomes,
        }
    }

    /// Runs the loop until `done` holds or `bound` (real time) passes.
    fn run_until(&self, bound: Duration, meter: &RssMeter, done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while !done() && start.elapsed() < bound {
            self.lp
                .run(Some(Duration::from_millis(10)), &|| {
                    meter.sample();
                    done()
                })
                .expect("loop");
        }
        done()
    }
}

fn request(proto: Protocol, from: SocketAddr, call_id: &str, branch: &str) -> String {
    let rport = if proto == Protocol::Udp { ";rport" } else { "" };
    format!(
        "OPTIONS sip:target@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{} {from};branch=z9hG4bK{branch}{rport}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:attacker@127.0.0.1>;tag=a\r\n\
         To: <sip:target@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        proto.via_name()
    )
}

/// Sends a valid request on a new TCP connection and waits for its 200.
fn tcp_request_is_answered(target: &Target, leg: &Leg, meter: &RssMeter, call_id: &str) {
    let s = TcpStream::connect_timeout(&leg.local_addr(), Duration::from_secs(5))
        .expect("connect for the valid request");
    let text = request(Protocol::Tcp, s.local_addr().unwrap(), call_id, call_id);
    (&s).write_all(text.as_bytes()).unwrap();
    s.set_nonblocking(true).unwrap();
    let got = RefCell::new(Vec::new());
    let answered = target.run_until(Duration::from_secs(10), meter, || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = (&s).read(&mut buf) {
            if n == 0 {
                break;
            }
            got.borrow_mut().extend_from_slice(&buf[..n]);
        }
        let got = got.borrow();
        got.starts_with(b"SIP/2.0 200 ")
            && got.windows(call_id.len()).any(|w| w == call_id.as_bytes())
    });
    assert!(
        answered,
        "no 200 for {call_id}: {:?}",
        String::from_utf8_lossy(&got.borrow())
    );
}

// ---------------------------------------------------------------------------

/// The attacker: opens `n` connections one after the other and leaves them
/// idle; on a line from the test, reports which are still open (the
/// others were closed by the target), then waits for its stdin to close.
/// It ends itself after 120 s whatever happens.
const IDLE_ATTACKER: &str = r#"
import resource, signal, socket, sys
signal.alarm(120)
n, port = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 64 if hard == resource.RLIM_INFINITY else min(hard, n + 64)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    socks.append(s)
print("done", n, flush=True)
sys.stdin.readline()
still = []
for i, s in enumerate(socks):
    s.setblocking(False)
    try:
        closed = s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        closed = False
    except OSError:
        closed = True
    if not closed:
        still.append(i)
print("open", len(still), min(still) if still else -1, flush=True)
sys.stdin.readline()
"#;

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn five_thousand_idle_connections_from_another_process_are_capped() {
    let _serial = serial();
    const ATTACK: usize = 5_000;
    const CAP: usize = 1_000;
    let opts = LegOptions {
        tcp: TcpOptions {
            max_connections: CAP,
            // Deeper than one accept round (256), so that a burst leaves
            // connections waiting in the kernel's queue.
            backlog: 1024,
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let target = Target::new(&[(Protocol::Tcp, opts)], DispatcherOptions::default(), 0);
    let leg = target.legs[0].clone();
    let fds_before = fd_count();
    let meter = RssMeter::start();
    let started = Instant::now();
    let child = Command::new("python3")
        .arg("-c")
        .arg(IDLE_ATTACKER)
        .arg(ATTACK.to_string())
        .arg(leg.local_addr().port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the attacker (it is on every machine of this kind)");
    let mut child = ChildGuard(child);
    let mut stdin = child.0.stdin.take().unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let lines = RefCell::new(Vec::<String>::new());
    let has_line = |prefix: &str| {
        lines.borrow_mut().extend(rx.try_iter());
        lines.borrow().iter().any(|l| l.starts_with(prefix))
    };
    let max_open = Cell::new(0);
    let all_accepted = target.run_until(Duration::from_secs(60), &meter, || {
        max_open.set(max_open.get().max(leg.connection_count()));
        has_line("done") && leg.stats().connections_opened >= ATTACK as u64
    });
    let elapsed = started.elapsed();
    let stats = leg.stats();
    assert!(
        all_accepted,
        "accepted {} of {ATTACK} in {elapsed:?} (attacker said {:?})",
        stats.connections_opened,
        lines.borrow()
    );
    assert!(max_open.get() <= CAP, "{} open", max_open.get());
    assert_eq!(leg.connection_count(), CAP);
    assert_eq!(stats.connections_limited, (ATTACK - CAP) as u64);
    assert_eq!(stats.connections_closed, (ATTACK - CAP) as u64);
    let fds = fd_count();
    assert!(
        fds <= fds_before + CAP + 16,
        "{fds} descriptors open (before: {fds_before})"
    );

    // The ones still open are the newest: the oldest idle were closed.
    writeln!(stdin, "report").unwrap();
    assert!(target.run_until(Duration::from_secs(20), &meter, || has_line("open")));
    let report = lines
        .borrow()
        .iter()
        .find(|l| l.starts_with("open"))
        .cloned()
        .unwrap();
    let fields: Vec<usize> = report
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields, [CAP, ATTACK - CAP], "attacker: {report}");

    // The leg still serves.
    tcp_request_is_answered(&target, &leg, &meter, "after-idle-flood");
    let growth = meter.report(&format!(
        "{ATTACK} idle connections (cap {CAP}, {fds} fds at the peak) in {elapsed:?}"
    ));
    assert!(growth < 64 * 1024, "memory grew by {growth} KiB");

    // The attacker goes away: every connection is closed.
    drop(stdin);
    assert!(
        target.run_until(Duration::from_secs(20), &meter, || leg.connection_count()
            == 0)
    );
}

#[test]
fn slow_loris_peers_are_closed_by_the_header_timeout() {
    let _serial = serial();
    const LORIS: usize = 20;
    let header_timeout = Duration::from_millis(300);
    let opts = LegOptions {
        tcp: TcpOptions {
            header_timeout,
            idle_timeout: Duration::from_secs(60),
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let target = Target::new(&[(Protocol::Tcp, opts)], DispatcherOptions::default(), 0);
    let leg = target.legs[0].clone();
    let meter = RssMeter::start();
    let addr = leg.local_addr();
    let conns: Vec<TcpStream> = (0..LORIS)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    let text = request(
        Protocol::Tcp,
        conns[0].local_addr().unwrap(),
        "loris",
        "loris",
    );
    // A byte at a time on every connection, every 10 ms, until the target
    // closes them (or 10 s).
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let message_len = text.len();
    let loris = std::thread::spawn(move || {
        let start = Instant::now();
        let mut closed_after: Vec<Option<Duration>> = vec![None; conns.len()];
        let mut sent = 0;
        while closed_after.iter().any(Option::is_none)
            && start.elapsed() < Duration::from_secs(10)
            && !stopped.load(Ordering::Relaxed)
        {
            for (c, closed) in conns.iter().zip(closed_after.iter_mut()) {
                if closed.is_some() {
                    continue;
                }
                let byte = &text.as_bytes()[sent % text.len()..][..1];
                if (&*c).write(byte).is_err() {
                    *closed = Some(start.elapsed());
                }
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        (closed_after, sent)
    });
    let start = Instant::now();
    let all_closed = target.run_until(Duration::from_secs(10), &meter, || {
        leg.stats().connections_opened == LORIS as u64 && leg.connection_count() == 0
    });
    let elapsed = start.elapsed();
    // Let the peers see it (their next write fails).
    let grace = Instant::now();
    while !loris.is_finished() && grace.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let (closed_after, sent) = loris.join().unwrap();
    assert!(
        all_closed,
        "{} still open after {elapsed:?}",
        leg.connection_count()
    );
    assert!(
        elapsed >= header_timeout && elapsed < header_timeout + Duration::from_secs(2),
        "closed after {elapsed:?}"
    );
    assert!(
        sent < message_len,
        "the message never completed ({sent} bytes)"
    );
    assert!(
        closed_after.iter().all(Option::is_some),
        "every loris saw the close: {closed_after:?}"
    );
    let stats = leg.stats();
    assert_eq!(stats.connections_limited, LORIS as u64);
    assert_eq!(stats.received, 0);
    assert_eq!(target.requests.get(), 0);
    tcp_request_is_answered(&target, &leg, &meter, "after-loris");
    meter.report(&format!(
        "{LORIS} slow-loris peers, closed after {elapsed:?}"
    ));
}

#[test]
fn udp_junk_flood_keeps_memory_flat_and_valid_requests_answered() {
    let _serial = serial();
    const JUNK: usize = 200_000;
    const VALID: usize = 40;
    let target = Target::new(
        &[(Protocol::Udp, LegOptions::default())],
        DispatcherOptions::default(),
        0,
    );
    let leg = target.legs[0].clone();
    let to = leg.local_addr();
    // The client: a second dispatcher on the same loop, retransmitting as
    // RFC 3261 says. T1 = 250 ms: a request lost in the flood is sent
    // again soon, and Timer F (64*T1 = 16 s) outlasts the flood (at most
    // 8 s) by more than T2 (4 s), so one retransmission always comes after
    // it, however long a loaded machine makes the flood.
    let client_leg = Leg::bind(
        LegSpec {
            proto: Protocol::Udp,
            addr: "127.0.0.1:0".parse().unwrap(),
        },
        LegOptions::default(),
    )
    .unwrap();
    let client = Dispatcher::new(
        vec![client_leg],
        Some(target.lp.clone() as Rc<dyn Eventloop>),
        DispatcherOptions {
            dns_resolver: Some(Rc::new(|_, answer| answer(Ok(Vec::new())))),
            timers: Timers {
                t1: Duration::from_millis(250),
                ..Timers::default()
            },
            ..DispatcherOptions::default()
        },
    )
    .unwrap();
    let meter = RssMeter::start();
    let flooding = std::sync::Arc::new(AtomicBool::new(true));
    let flag = flooding.clone();
    let flood = std::thread::spawn(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let mut state = 0x2545_f491_u32;
        let mut buf = vec![0u8; 1400];
        let mut sent = 0;
        for i in 0..JUNK {
            if start.elapsed() > Duration::from_secs(8) {
                break;
            }
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let len = 1 + (state as usize % buf.len());
            let msg: &[u8] = match i % 4 {
                // Random bytes.
                0 | 1 => {
                    for b in &mut buf[..len] {
                        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        *b = (state >> 16) as u8;
                    }
                    &buf[..len]
                }
                // A request that is answered 400.
                2 => b"OPTIONS sip:t@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKj\r\nContent-Length: x\r\n\r\n",
                // A response nobody asked for.
                _ => b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKj\r\nContent-Length: 0\r\n\r\n",
            };
            if s.send_to(msg, to).is_ok() {
                sent += 1;
            }
        }
        flag.store(false, Ordering::Relaxed);
        sent
    });
    let outcomes: Rc<RefCell<Vec<DeliveryOutcome>>> = Rc::default();
    for i in 0..VALID {
        let o = outcomes.clone();
        let weak = client.downgrade();
        target.lp.add_timer(
            When::In(Duration::from_millis(25 * i as u64)),
            None,
            Box::new(move || {
                let Some(d) = weak.upgrade() else { return };
                let o = o.clone();
                let req = Packet::parse(
                    format!(
                        "OPTIONS sip:target@{to} SIP/2.0\r\nMax-Forwards: 70\r\n\
                         From: <sip:client@127.0.0.1>;tag=c\r\nTo: <sip:target@{to}>\r\n\
                         Call-ID: flood-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .unwrap();
                d.deliver(
                    req,
                    DeliverOptions::with_callback(move |_, out| o.borrow_mut().push(out)),
                )
                .unwrap();
            }),
        );
    }
    let mid_flood = Cell::new(0u64);
    let done = target.run_until(Duration::from_secs(30), &meter, || {
        if mid_flood.get() == 0 && leg.stats().parse_errors > 10_000 {
            mid_flood.set(rss_kib());
        }
        !flooding.load(Ordering::Relaxed) && outcomes.borrow().len() == VALID
    });
    let sent = flood.join().unwrap();
    let stats = leg.stats();
    assert!(
        done,
        "{} of {VALID} answered; {stats:?}",
        outcomes.borrow().len()
    );
    assert!(
        outcomes
            .borrow()
            .iter()
            .all(|o| *o == DeliveryOutcome::Completed(200)),
        "{:?}",
        outcomes.borrow()
    );
    let junk_seen = stats.parse_errors + stats.dropped_foreign_via;
    assert!(junk_seen > 1000, "{stats:?}");
    assert!(stats.bad_requests_answered > 0, "{stats:?}");
    let end = rss_kib();
    let growth = meter.report(&format!(
        "UDP flood: {sent} junk datagrams sent, {junk_seen} received and dropped, \
         {} answered 400, {VALID} valid requests answered; VmRSS mid-flood {} KiB, after {end} KiB",
        stats.bad_requests_answered,
        mid_flood.get()
    ));
    assert!(growth < 32 * 1024, "memory grew by {growth} KiB");
    // Flat: after the first 10,000 junk datagrams, the rest cost nothing
    // that stays.
    if mid_flood.get() > 0 {
        assert!(
            end < mid_flood.get() + 8 * 1024,
            "grew from {} to {end} KiB during the flood",
            mid_flood.get()
        );
    }
}

#[test]
fn distinct_retransmitted_requests_keep_the_response_cache_bounded() {
    let _serial = serial();
    const DISTINCT: usize = 100_000;
    const CACHE: usize = 1_000;
    /// A request is retransmitted this many requests later (inside the
    /// cache's reach, as a retransmission after T1 is).
    const LAG: usize = 500;
    /// Datagrams in flight stay well inside the socket's receive buffer.
    const BATCH: usize = 32;
    let target = Target::new(
        &[(Protocol::Udp, LegOptions::default())],
        DispatcherOptions {
            max_server_transactions: Some(CACHE),
            ..DispatcherOptions::default()
        },
        0,
    );
    let leg = target.legs[0].clone();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker.connect(leg.local_addr()).unwrap();
    attacker.set_nonblocking(true).unwrap();
    let from = attacker.local_addr().unwrap();
    let meter = RssMeter::start();
    let started = Instant::now();
    let responses = Cell::new(0u64);
    let drain = || {
        let mut buf = [0u8; 2048];
        while let Ok(n) = attacker.recv(&mut buf) {
            assert!(buf[..n].starts_with(b"SIP/2.0 200 "));
            responses.set(responses.get() + 1);
        }
    };
    let mut max_cached = 0;
    let mut sent = 0u64;
    let text = |i: usize| request(Protocol::Udp, from, &format!("cache-{i}"), &format!("c{i}"));
    let mut i = 0;
    while i < DISTINCT + LAG {
        for j in i..(i + BATCH).min(DISTINCT + LAG) {
            if j < DISTINCT {
                attacker.send(text(j).as_bytes()).unwrap();
                sent += 1;
            }
            if j >= LAG {
                attacker.send(text(j - LAG).as_bytes()).unwrap();
                sent += 1;
            }
        }
        i += BATCH;
        let all_in = target.run_until(Duration::from_secs(10), &meter, || {
            drain();
            leg.stats().received == sent
        });
        assert!(all_in, "received {} of {sent}", leg.stats().received);
        max_cached = max_cached.max(target.dispatcher.stats().server_transactions);
        assert!(max_cached <= CACHE, "{max_cached} server transactions");
    }
    assert!(target.run_until(Duration::from_secs(10), &meter, || {
        drain();
        responses.get() == sent
    }));
    let elapsed = started.elapsed();
    let stats = target.dispatcher.stats();
    // Every request reached the receiver once; every retransmission was
    // answered from the cache.
    assert_eq!(target.requests.get(), DISTINCT as u64);
    assert_eq!(stats.absorbed_requests, DISTINCT as u64);
    assert_eq!(stats.server_transactions, CACHE);
    // One expiry per cached transaction; the expiries of evicted ones are
    // gone with them, so the tables stay sized by the cache, not by the
    // requests seen (100 times as many).
    assert_eq!(stats.timers, CACHE);
    let tables = target.dispatcher.table_bytes();
    eprintln!("tables: {tables} bytes");
    assert!(tables < 1 << 20, "tables hold {tables} bytes");
    assert_eq!(responses.get(), 2 * DISTINCT as u64);
    assert_eq!(stats.pending_deliveries, 0);
    let growth = meter.report(&format!(
        "{DISTINCT} distinct requests + {DISTINCT} retransmissions in {elapsed:?} \
         (response cache at most {max_cached} of {CACHE})"
    ));
    assert!(growth < 32 * 1024, "memory grew by {growth} KiB");
}

#[test]
fn a_peer_that_never_reads_is_cut_off_at_the_write_buffer_limit() {
    let _serial = serial();
    const MAX_WRITE: usize = 256 * 1024;
    // More than the kernel's socket buffers take (tcp_wmem allows 4 MiB).
    const BODY: usize = 60 * 1024;
    const REQUESTS: usize = 150;
    let opts = LegOptions {
        tcp: TcpOptions {
            max_write_buffer: MAX_WRITE,
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let target = Target::new(&[(Protocol::Tcp, opts)], DispatcherOptions::default(), BODY);
    let leg = target.legs[0].clone();
    let meter = RssMeter::start();
    // A small receive window, and nobody reading it.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&leg.local_addr().into()).unwrap();
    let mut peer: TcpStream = socket.into();
    let from = peer.local_addr().unwrap();
    let all: String = (0..REQUESTS)
        .map(|i| request(Protocol::Tcp, from, &format!("deaf-{i}"), &format!("d{i}")))
        .collect();
    peer.write_all(all.as_bytes()).unwrap();
    let closed = target.run_until(Duration::from_secs(20), &meter, || {
        target.requests.get() == REQUESTS as u64
            && target.outcomes.borrow().len() == REQUESTS
            && leg.connection_count() == 0
    });
    let outcomes = target.outcomes.borrow();
    assert!(
        closed,
        "{} requests, {} outcomes, {} connections; {:?}",
        target.requests.get(),
        outcomes.len(),
        leg.connection_count(),
        leg.stats()
    );
    let sent = outcomes
        .iter()
        .filter(|o| **o == DeliveryOutcome::Sent)
        .count();
    let no_buffer = outcomes
        .iter()
        .filter(|o| matches!(o, DeliveryOutcome::Failed(e) if e.errno() == Errno::ENOBUFS))
        .count();
    // Once the connection is gone, the rest cannot reach the peer either
    // (its port does not listen): refused, each its own failure.
    let other: Vec<_> = outcomes
        .iter()
        .filter(|o| {
            !matches!(o, DeliveryOutcome::Sent)
                && !matches!(o, DeliveryOutcome::Failed(e) if e.errno() == Errno::ENOBUFS)
        })
        .collect();
    assert!(
        no_buffer >= 1,
        "no delivery failed with ENOBUFS: {outcomes:?}"
    );
    assert!(sent >= 1, "nothing was sent before the buffer filled");
    assert!(
        other
            .iter()
            .all(|o| matches!(o, DeliveryOutcome::Failed(_))),
        "{other:?}"
    );
    assert!(leg.stats().connections_limited >= 1, "{:?}", leg.stats());
    let growth = meter.report(&format!(
        "a peer that never reads: {sent} responses of {BODY} bytes sent, {no_buffer} failed \
         with ENOBUFS, {} otherwise (write buffer limit {MAX_WRITE} bytes)",
        other.len()
    ));
    assert!(growth < 32 * 1024, "memory grew by {growth} KiB");
    // The peer, reading at last, finds the end of the stream after what
    // was sent.
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all_read = Vec::new();
    let _ = peer.read_to_end(&mut all_read);
    assert!(
        all_read.len() <= sent * (BODY + 1024),
        "{} bytes",
        all_read.len()
    );
}

/// Connection churn against a large response cache: every TCP connection
/// that closes makes the dispatcher look for the server transactions that
/// answer over it. That look-up must not scan the whole cache (an attacker
/// opening and closing connections would make each close cost
/// `max_server_transactions` steps). The dispatcher indexes server
/// transactions by connection, so a close touches only its own.
/// Timing-based, hence not in the default run: `cargo test --release --test
/// limits connection_churn -- --ignored` (2,000 closes: 47 ms empty, 67 ms
/// with 100,000 cached transactions).
#[test]
#[ignore = "timing-based complexity check; run by hand in release mode"]
fn connection_churn_does_not_scan_the_response_cache() {
    let _serial = serial();
    const CACHED: usize = 100_000;
    const CHURN: usize = 2_000;
    let target = Target::new(
        &[(Protocol::Tcp, LegOptions::default())],
        DispatcherOptions::default(),
        0,
    );
    target.dispatcher.clear_receiver();
    let leg = target.legs[0].clone();
    let meter = RssMeter::start();
    let churn = |target: &Target| {
        let closed = leg.stats().connections_closed;
        let start = Instant::now();
        // The attacker is another thread: this one runs the loop.
        let addr = leg.local_addr();
        let attacker = std::thread::spawn(move || {
            for _ in 0..CHURN {
                drop(TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap());
            }
        });
        let done = target.run_until(Duration::from_secs(120), &meter, || {
            leg.stats().connections_closed >= closed + CHURN as u64
        });
        attacker.join().unwrap();
        assert!(done, "{:?}", leg.stats());
        start.elapsed()
    };
    let empty = churn(&target);
    // Server transactions answering over connections that stay open.
    let id = target.dispatcher.leg_id(&leg).unwrap();
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    for i in 0..CACHED {
        let text = request(Protocol::Tcp, from, &format!("churn-{i}"), &format!("k{i}"));
        let packet = Packet::parse(text.as_bytes()).unwrap();
        let source = Source {
            proto: Protocol::Tcp,
            addr: from,
            conn: Some(sip_dispatch::leg::ConnId::from_raw(1 << 40 | i as u64)),
        };
        target.dispatcher.receive(packet, id, source);
    }
    assert_eq!(target.dispatcher.stats().server_transactions, CACHED);
    let full = churn(&target);
    println!(
        "{CHURN} connections closed: {empty:?} with no server transaction, {full:?} with {CACHED}"
    );
    assert!(
        full < empty * 3 + Duration::from_millis(500),
        "closing {CHURN} connections took {empty:?} with an empty cache, {full:?} with {CACHED} entries"
    );
}
