//! TLS benchmarks, each beside the same over TCP in the same run, on
//! loopback, one thread, one `MioEventloop` for both ends:
//!
//! - `new connection + first transaction`: a client leg opens a connection
//!   to a server leg and sends one OPTIONS; the server leg's sink answers
//!   200 on that connection; done when the client leg has parsed the 200;
//!   then the client's connections are closed. Over TCP; over TLS with a
//!   full handshake (a new client leg per connection: nothing to resume);
//!   over TLS resuming the session (one client leg: TLS 1.3 session
//!   tickets, which arrive before the 200). ECDSA P-256 certificates from a
//!   test CA (rcgen), rustls on `ring`, TLS 1.3, X25519.
//! - `OPTIONS over one connection`: OPTIONS request/response transactions
//!   between two dispatchers (a UAC and a UAS answering 200) over one
//!   reused connection, with 1 and 64 in flight, each completion starting
//!   the next. TLS (`sips:`) beside TCP (`;transport=tcp`).
//!
//! Each case: a warm-up, then 5 rounds of about 1 s each; the median
//! round's rate is reported.
//!
//! Run with `cargo bench --bench tls`.

#[path = "../tests/pki/mod.rs"]
mod pki;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sip_dispatch::dispatcher::{DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{
    Destination, Leg, LegEvent, LegOptions, LegSink, LegSpec, Protocol, TlsConfig,
};
use sip_dispatch::packet::{Method, Packet, Request, Response};

const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(30);

fn spec(proto: Protocol) -> LegSpec {
    LegSpec {
        proto,
        addr: "127.0.0.1:0".parse().expect("address"),
    }
}

fn options(tls: Option<TlsConfig>) -> LegOptions {
    LegOptions {
        tls,
        ..LegOptions::default()
    }
}

fn request(call_id: u64) -> Request {
    let text = format!(
        "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: {call_id:016x}@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    Request::parse(text.as_bytes()).expect("request parses")
}

/// Runs `one` (which does one unit of work and returns how many it did)
/// for a warm-up and `ROUNDS` rounds; returns the median rate per second.
fn measure(mut one: impl FnMut() -> u64) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < ROUND / 2 {
        one();
    }
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t0 = Instant::now();
            let mut n = 0;
            while t0.elapsed() < ROUND {
                n += one();
            }
            n as f64 / t0.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

/// A server leg whose sink answers every request with 200 on its
/// connection.
fn server(lp: &Rc<MioEventloop>, proto: Protocol, tls: Option<TlsConfig>) -> Leg {
    let leg = Leg::bind(spec(proto), options(tls)).expect("bind server");
    let sink: LegSink = Rc::new(move |leg: &Leg, ev: LegEvent| {
        if let LegEvent::Packet(Packet::Request(req), src) = ev {
            let ok = Response::for_request(&req, 200, "OK");
            let _ = leg.send_response(&ok, &src.reply_destination(), None);
        }
    });
    leg.attach(lp.clone(), sink).expect("attach server");
    leg
}

/// A sink counting the responses a client leg hands up.
fn counting_sink(count: &Rc<Cell<u64>>) -> LegSink {
    let c = count.clone();
    Rc::new(move |_: &Leg, ev: LegEvent| {
        if let LegEvent::Packet(Packet::Response(_), _) = ev {
            c.set(c.get() + 1);
        }
    })
}

/// One new connection and one transaction: attaches `client` (so that it
/// has no connection), sends to `to`, runs until the 200 is back, then
/// detaches it (closing the connection).
fn connect_once(
    lp: &Rc<MioEventloop>,
    client: &Leg,
    to: &Destination,
    count: &Rc<Cell<u64>>,
    n: u64,
) {
    client
        .attach(lp.clone(), counting_sink(count))
        .expect("attach");
    let before = count.get();
    let bytes = Rc::from(client.prepare_request(&request(n), &format!("z9hG4bK{n}"), to));
    let _ = client.send(bytes, to, None);
    lp.run(Some(LIMIT), &|| count.get() > before).expect("run");
    assert!(count.get() > before, "the 200 arrived");
    client.detach();
}

fn handshakes(ca: &pki::Ca, server_tls: &TlsConfig) -> (f64, f64, f64) {
    let lp = Rc::new(MioEventloop::new().expect("loop"));
    let client_tls = TlsConfig::client()
        .with_ca_pem(ca.pem.as_bytes())
        .expect("CA");
    let count = Rc::new(Cell::new(0u64));
    let mut n = 0u64;

    let tcp_server = server(&lp, Protocol::Tcp, None);
    let tcp_client = Leg::bind(spec(Protocol::Tcp), options(None)).expect("bind");
    let to = Destination::new(Protocol::Tcp, tcp_server.local_addr());
    let tcp = measure(|| {
        n += 1;
        connect_once(&lp, &tcp_client, &to, &count, n);
        1
    });

    let tls_server = server(&lp, Protocol::Tls, Some(server_tls.clone()));
    let to = Destination {
        proto: Protocol::Tls,
        addr: tls_server.local_addr(),
        host: Some(Rc::from("127.0.0.1")),
        conn: None,
    };
    let full = measure(|| {
        n += 1;
        // A new leg: new rustls configurations, no session to resume.
        let client =
            Leg::bind(spec(Protocol::Tls), options(Some(client_tls.clone()))).expect("bind client");
        connect_once(&lp, &client, &to, &count, n);
        1
    });

    let resuming =
        Leg::bind(spec(Protocol::Tls), options(Some(client_tls.clone()))).expect("bind client");
    let resumed = measure(|| {
        n += 1;
        connect_once(&lp, &resuming, &to, &count, n);
        1
    });
    drop((tcp_server, tls_server));
    (tcp, full, resumed)
}

/// The OPTIONS flow of a [`Pair`]: the URI called, and counters.
#[derive(Default)]
struct Flow {
    uri: String,
    issued: Cell<u64>,
    done: Cell<u64>,
    failed: Cell<u64>,
    limit: Cell<u64>,
}

/// A UAC and a UAS dispatcher on one loop over one protocol.
struct Pair {
    lp: Rc<MioEventloop>,
    uac: Dispatcher,
    uac_leg: Leg,
    uas_leg: Leg,
    _uas: Dispatcher,
    flow: Rc<Flow>,
}

/// Starts one OPTIONS transaction; its completion starts the next while
/// the limit allows.
fn start_one(d: &Dispatcher, flow: &Rc<Flow>) {
    let n = flow.issued.get();
    flow.issued.set(n + 1);
    let uri = &flow.uri;
    let text = format!(
        "OPTIONS {uri} SIP/2.0\r\nMax-Forwards: 70\r\nTo: <{uri}>\r\n\
         From: <sip:alice@127.0.0.1>;tag={n:016x}\r\nCall-ID: {n:016x}@uac.bench\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let packet = Packet::parse(text.as_bytes()).expect("OPTIONS parses");
    let f = flow.clone();
    d.deliver(
        packet,
        DeliverOptions::with_callback(move |d, outcome| {
            if outcome != DeliveryOutcome::Completed(200) {
                f.failed.set(f.failed.get() + 1);
            }
            f.done.set(f.done.get() + 1);
            if f.issued.get() < f.limit.get() {
                start_one(d, &f);
            }
        }),
    )
    .expect("deliver");
}

impl Pair {
    fn new(proto: Protocol, server_tls: Option<TlsConfig>, client_tls: Option<TlsConfig>) -> Pair {
        let lp = Rc::new(MioEventloop::new().expect("loop"));
        let dyn_lp: Rc<dyn Eventloop> = lp.clone();
        let uas_leg = Leg::bind(spec(proto), options(server_tls)).expect("bind uas");
        let uac_leg = Leg::bind(spec(proto), options(client_tls)).expect("bind uac");
        let uas = Dispatcher::new(
            vec![uas_leg.clone()],
            Some(dyn_lp.clone()),
            DispatcherOptions::default(),
        )
        .expect("uas");
        uas.set_receiver(|d: &Dispatcher, p: Packet, _leg, _from: &_| {
            if let Packet::Request(req) = p {
                if *req.method() != Method::Ack {
                    let mut ok = Response::for_request(&req, 200, "OK");
                    ok.set_to_tag("uas1");
                    let _ = d.deliver(ok, DeliverOptions::default());
                }
            }
        });
        let uac = Dispatcher::new(
            vec![uac_leg.clone()],
            Some(dyn_lp),
            DispatcherOptions::default(),
        )
        .expect("uac");
        let addr: SocketAddr = uas_leg.local_addr();
        let uri = match proto {
            Protocol::Tls => format!("sips:bob@{addr}"),
            _ => format!("sip:bob@{addr};transport=tcp"),
        };
        Pair {
            lp,
            uac,
            uac_leg,
            uas_leg,
            _uas: uas,
            flow: Rc::new(Flow {
                uri,
                ..Flow::default()
            }),
        }
    }

    /// Completes `n` transactions with `w` in flight.
    fn run(&self, n: u64, w: u64) -> u64 {
        let f = &self.flow;
        let target = f.done.get() + n;
        f.limit.set(f.issued.get() + n);
        for _ in 0..w.min(n) {
            start_one(&self.uac, f);
        }
        self.lp
            .run(Some(LIMIT), &|| f.done.get() >= target)
            .expect("run");
        assert_eq!(f.done.get(), target, "all transactions completed");
        n
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let ca = pki::Ca::new("Bench CA");
    let server_tls = ca.leaf(&["127.0.0.1"]).config();
    let client_tls = TlsConfig::client()
        .with_ca_pem(ca.pem.as_bytes())
        .expect("CA");

    let (tcp, full, resumed) = handshakes(&ca, &server_tls);
    println!();
    println!("new connection + first OPTIONS/200 (per second, median of {ROUNDS} rounds):");
    println!("  {:<34} {:>10.0}", "TCP (no TLS)", tcp);
    println!("  {:<34} {:>10.0}", "TLS 1.3 full handshake", full);
    println!(
        "  {:<34} {:>10.0}",
        "TLS 1.3 resumed (session ticket)", resumed
    );

    let tcp_pair = Pair::new(Protocol::Tcp, None, None);
    let tls_pair = Pair::new(Protocol::Tls, Some(server_tls), Some(client_tls));
    println!();
    println!(
        "OPTIONS transactions over one reused connection (per second, median of {ROUNDS} rounds):"
    );
    println!(
        "  {:<8} {:>12} {:>12} {:>10}",
        "window", "TCP", "TLS", "TLS/TCP"
    );
    for w in [1u64, 64] {
        let batch = if w == 1 { 200 } else { 2_000 };
        let t = measure(|| tcp_pair.run(batch, w));
        let s = measure(|| tls_pair.run(batch, w));
        println!("  W={:<6} {:>12.0} {:>12.0} {:>10.3}", w, t, s, s / t);
    }
    for (name, p) in [("TCP", &tcp_pair), ("TLS", &tls_pair)] {
        assert_eq!(p.flow.failed.get(), 0, "{name}: every OPTIONS got its 200");
        assert_eq!(p.uac_leg.connection_count(), 1, "{name}: one connection");
        assert_eq!(
            p.uas_leg.stats().connections_opened,
            1,
            "{name}: one connection"
        );
    }
    println!(
        "  (each side kept one connection: {} transactions over TCP, {} over TLS)",
        tcp_pair.flow.done.get(),
        tls_pair.flow.done.get()
    );
}
