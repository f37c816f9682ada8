#![allow(clippy::type_complexity)]
//! Per-leg counters ([`LegStats`]) through the public API: the exact
//! counts after known traffic. Retransmissions and timeouts under virtual
//! time on the memory network (1 ms one-way delay); packets and bytes on
//! real UDP, TCP and TLS legs on loopback; the connection gauge; the
//! `Display` line; and the `stats LEG: ...` lines the `uas` and
//! `stateless_proxy` examples write to stderr at exit.

mod bins;
mod common;
#[path = "common/dispatch.rs"]
mod dispatch;
#[cfg(feature = "tls")]
mod pki;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use bins::{Msg, Proc, Req, Uas, UdpPeer, WAIT, unique};
use common::{BOUND, attach, loopback, prepared, raw_request, read_message, run_until};
use dispatch::{Outcomes, World, recording};
use sip_dispatch::Errno;
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop, When};
use sip_dispatch::leg::{Destination, Leg, LegOptions, LegSpec, LegStats, Protocol, Source};
use sip_dispatch::packet::{Packet, Response};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A memory leg whose send hook records the length of every message it
/// lets through.
fn measured_leg(w: &World, addr: &str) -> (Leg, Rc<RefCell<Vec<usize>>>) {
    let leg = w.leg(addr);
    let lens: Rc<RefCell<Vec<usize>>> = Rc::default();
    let l = lens.clone();
    leg.set_send_hook(Some(Rc::new(move |bytes: &[u8], _: &Destination| {
        l.borrow_mut().push(bytes.len());
        true
    })));
    (leg, lens)
}

/// Delivers `method` to a silent peer over (memory) UDP and runs until
/// the delivery ends: returns the sending leg, the lengths it sent, the
/// peer, and the outcome.
fn to_silent_peer(method: &str) -> (Leg, Vec<usize>, dispatch::Peer, DeliveryOutcome) {
    let w = World::exact();
    let (leg, lens) = measured_leg(&w, "10.0.0.1:5060");
    let uac = dispatcher_on(&w, &leg);
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        dispatch::request(method, "sip:bob@10.0.0.2", &unique("silent-"), 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    assert_eq!(outcomes.borrow().len(), 1);
    assert_eq!(outcomes.borrow()[0].0, 32_000, "Timer B/F = 64*T1");
    let outcome = outcomes.borrow()[0].1.clone();
    let lens = lens.borrow().clone();
    (leg, lens, peer, outcome)
}

fn timed_out(o: &DeliveryOutcome) -> bool {
    matches!(o, DeliveryOutcome::Failed(e) if e.errno() == Errno::ETIMEDOUT)
}

/// INVITE over UDP to a peer that never answers: sent at 0, then Timer A
/// at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (T1 doubling without a cap),
/// Timer B at 32 s. Seven sends, six of them retransmissions, one
/// timeout, every copy the same bytes.
#[test]
fn invite_to_a_silent_peer_counts_six_retransmissions_and_one_timeout() {
    let (leg, lens, peer, outcome) = to_silent_peer("INVITE");
    assert!(timed_out(&outcome), "{outcome:?}");
    assert_eq!(lens.len(), 7, "{lens:?}");
    assert!(lens.iter().all(|&n| n == lens[0]), "{lens:?}");
    let len = lens[0] as u64;
    assert_eq!(
        leg.stats(),
        LegStats {
            sent: 7,
            bytes_sent: 7 * len,
            retransmissions: 6,
            timeouts: 1,
            ..LegStats::default()
        }
    );
    // The peer got the same datagrams: 7 of them, the same bytes.
    assert_eq!(peer.times().len(), 7);
    assert_eq!(
        peer.leg.stats(),
        LegStats {
            received: 7,
            bytes_received: 7 * len,
            ..LegStats::default()
        }
    );
}

/// OPTIONS over UDP to a peer that never answers: Timer E doubles from T1
/// up to T2 (4 s): sent at 0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5,
/// 27.5, 31.5 s, Timer F at 32 s. Eleven sends, ten retransmissions.
#[test]
fn options_to_a_silent_peer_counts_ten_retransmissions_and_one_timeout() {
    let (leg, lens, peer, outcome) = to_silent_peer("OPTIONS");
    assert!(timed_out(&outcome), "{outcome:?}");
    assert_eq!(
        peer.times(),
        [
            1, 501, 1501, 3501, 7501, 11501, 15501, 19501, 23501, 27501, 31501
        ]
    );
    assert_eq!(lens.len(), 11, "{lens:?}");
    assert!(lens.iter().all(|&n| n == lens[0]), "{lens:?}");
    let len = lens[0] as u64;
    assert_eq!(
        leg.stats(),
        LegStats {
            sent: 11,
            bytes_sent: 11 * len,
            retransmissions: 10,
            timeouts: 1,
            ..LegStats::default()
        }
    );
    assert_eq!(peer.leg.stats().bytes_received, 11 * len);
}

/// What a send hook drops is not sent, so not a retransmission either:
/// `retransmissions` counts only what `sent` counts.
#[test]
fn retransmissions_dropped_by_a_send_hook_are_not_counted() {
    let w = World::exact();
    let leg = w.leg("10.0.0.1:5060");
    leg.set_send_hook(Some(Rc::new(|_: &[u8], _: &Destination| false)));
    let uac = dispatcher_on(&w, &leg);
    let _peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        dispatch::request("INVITE", "sip:bob@10.0.0.2", "hooked", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    assert_eq!(
        leg.stats(),
        LegStats {
            dropped_by_hook: 7,
            timeouts: 1,
            ..LegStats::default()
        }
    );
    assert_eq!(uac.stats().retransmissions, 6, "the dispatcher's own count");
}

/// A dispatcher UAS on a memory leg that answers every request with 200
/// (a 200 to INVITE is retransmitted until its ACK).
fn answering_uas(w: &World, addr: &str) -> (Leg, Dispatcher, Outcomes) {
    let leg = w.leg(addr);
    let uas = dispatcher_on(w, &leg);
    let outcomes: Outcomes = Rc::default();
    let (oc, lp, start) = (outcomes.clone(), w.lp.clone(), w.start);
    uas.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Request(req) = p {
            let mut ok = Response::for_request(&req, 200, "OK");
            ok.set_to_tag("uas1");
            let (o, lp) = (oc.clone(), lp.clone());
            let opts = DeliverOptions::with_callback(move |_, out| {
                o.borrow_mut()
                    .push(((lp.now() - start).as_millis() as u64, out))
            });
            d.deliver(ok, opts).unwrap();
        }
    });
    (leg, uas, outcomes)
}

/// Sends `method` (prepared by `client`'s leg with `branch`) to `to` at
/// each of the times given, in milliseconds.
fn send_copies(w: &World, client: &Leg, method: &str, branch: &str, to: &str, at: &[u64]) -> u64 {
    let Packet::Request(r) = dispatch::request(method, "sip:bob@10.0.0.2", "copies", 1) else {
        panic!("a request")
    };
    let dst = Destination::new(Protocol::Udp, to.parse().unwrap());
    let bytes = prepared(client, &r, branch, &dst);
    for &t in at {
        let (leg, bytes, dst) = (client.clone(), bytes.clone(), dst.clone());
        w.lp.add_timer(
            When::In(ms(t)),
            None,
            Box::new(move || {
                leg.send(bytes.clone(), &dst, None);
            }),
        );
    }
    bytes.len() as u64
}

/// A retransmitted request answered from the response cache: the cached
/// response sent again counts as a retransmission.
#[test]
fn a_response_resent_from_the_cache_is_a_retransmission() {
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let (leg, _uas, _) = answering_uas(&w, "10.0.0.2:5060");
    let req_len = send_copies(
        &w,
        &client.leg,
        "OPTIONS",
        "z9hG4bKcached",
        "10.0.0.2:5060",
        &[0, 1000, 2000],
    );
    w.run_until(secs(5), || false);
    assert_eq!(client.methods(), ["200", "200", "200"]);
    let resp_len = client.leg.stats().bytes_received / 3;
    assert_eq!(client.leg.stats().bytes_received, 3 * resp_len);
    assert_eq!(
        leg.stats(),
        LegStats {
            received: 3,
            sent: 3,
            bytes_received: 3 * req_len,
            bytes_sent: 3 * resp_len,
            retransmissions: 2,
            ..LegStats::default()
        }
    );
}

/// A 2xx to INVITE never ACKed: retransmitted T1 doubling to T2 until
/// 64*T1 (ten retransmissions, as for a non-INVITE request), then the
/// delivery fails with ETIMEDOUT, which is not a client transaction
/// timing out: `timeouts` stays 0.
#[test]
fn a_2xx_retransmitted_until_64_t1_is_ten_retransmissions_and_no_timeout() {
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let (leg, _uas, outcomes) = answering_uas(&w, "10.0.0.2:5060");
    let req_len = send_copies(
        &w,
        &client.leg,
        "INVITE",
        "z9hG4bKnoack",
        "10.0.0.2:5060",
        &[0],
    );
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    assert_eq!(outcomes.borrow()[0].0, 32_001);
    assert!(timed_out(&outcomes.borrow()[0].1));
    assert_eq!(
        client.times(),
        [
            2, 502, 1502, 3502, 7502, 11502, 15502, 19502, 23502, 27502, 31502
        ]
    );
    let resp_bytes = client.leg.stats().bytes_received;
    assert_eq!(resp_bytes % 11, 0);
    assert_eq!(
        leg.stats(),
        LegStats {
            received: 1,
            sent: 11,
            bytes_received: req_len,
            bytes_sent: resp_bytes,
            retransmissions: 10,
            ..LegStats::default()
        }
    );
}

/// A non-2xx final response to INVITE that arrives again: the dispatcher
/// sends the same ACK again, a retransmission; the INVITE itself was
/// answered before Timer A, so it went out once.
#[test]
fn the_ack_sent_again_for_a_retransmitted_non_2xx_is_a_retransmission() {
    let w = World::exact();
    let (leg, lens) = measured_leg(&w, "10.0.0.1:5060");
    let uac = dispatcher_on(&w, &leg);
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        dispatch::request("INVITE", "sip:bob@10.0.0.2", "busy-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(1), || !peer.got.borrow().is_empty());
    let (invite, from) = match &peer.got.borrow()[0] {
        (_, Packet::Request(r), from) => (r.clone(), from.clone()),
        other => panic!("{other:?}"),
    };
    let mut busy = Response::for_request(&invite, 486, "Busy Here");
    busy.set_to_tag("busy");
    // The 486 at once, and again at 300 ms (as Timer G would).
    for t in [0, 300] {
        let (pl, busy, dst) = (peer.leg.clone(), busy.clone(), from.reply_destination());
        w.lp.add_timer(
            When::In(ms(t)),
            None,
            Box::new(move || {
                pl.send_response(&busy, &dst, None);
            }),
        );
    }
    w.run_until(secs(2), || false);
    assert_eq!(outcomes.borrow()[0].1, DeliveryOutcome::Completed(486));
    assert_eq!(peer.methods(), ["INVITE", "ACK", "ACK"]);
    let lens = lens.borrow().clone();
    assert_eq!(lens.len(), 3, "{lens:?}");
    assert_eq!(lens[1], lens[2], "the same ACK twice");
    let busy_len = peer.leg.stats().bytes_sent / 2;
    assert_eq!(
        leg.stats(),
        LegStats {
            received: 2,
            sent: 3,
            bytes_received: 2 * busy_len,
            bytes_sent: lens.iter().map(|&n| n as u64).sum(),
            retransmissions: 1,
            ..LegStats::default()
        }
    );
}

// ------------------------------------------------------ real sockets ----

fn receive_datagram(sock: &UdpSocket) -> Vec<u8> {
    sock.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("a datagram");
    buf.truncate(n);
    buf
}

/// Real UDP on 127.0.0.1: one request in, one response out, counted with
/// the exact datagram sizes.
#[test]
fn udp_counts_one_request_in_and_one_response_out_with_their_bytes() {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = Leg::bind("udp:127.0.0.1:0".parse().unwrap(), LegOptions::default()).unwrap();
    let d = Dispatcher::new(
        vec![leg.clone()],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    d.set_receiver(|d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Request(req) = p {
            let mut ok = Response::for_request(&req, 200, "OK");
            ok.set_to_tag("udp1");
            d.deliver(ok, DeliverOptions::default()).unwrap();
        }
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let text = raw_request(
        Protocol::Udp,
        &client.local_addr().unwrap().to_string(),
        "udp-stats",
        "hello",
    );
    client.send_to(text.as_bytes(), leg.local_addr()).unwrap();
    assert!(run_until(&lp, BOUND, || leg.stats().sent == 1));
    let resp = receive_datagram(&client);
    assert!(resp.starts_with(b"SIP/2.0 200 OK\r\n"));
    assert_eq!(
        leg.stats(),
        LegStats {
            received: 1,
            sent: 1,
            bytes_received: text.len() as u64,
            bytes_sent: resp.len() as u64,
            ..LegStats::default()
        }
    );
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, BOUND).expect("connect to the leg");
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// TCP on loopback: the gauge goes 0 -> 1 when a client connects and back
/// to 0 when it closes; a keep-alive ping and its pong are no messages;
/// the request and response are counted with their framed bytes.
#[test]
fn tcp_connections_open_follows_a_client_and_bytes_are_the_framed_messages() {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = common::bind_loopback(Protocol::Tcp, false, LegOptions::default());
    let events = attach(&leg, &lp);
    assert_eq!(leg.stats().connections_open, 0);

    let mut client = connect(leg.local_addr());
    assert!(run_until(&lp, BOUND, || leg.stats().connections_open == 1));
    assert_eq!(leg.connection_count(), 1);

    // CRLFCRLF ping, CRLF pong (RFC 5626 3.5.1).
    client.write_all(b"\r\n\r\n").unwrap();
    assert!(run_until(&lp, BOUND, || leg.stats().keepalives == 1));
    let mut pong = [0u8; 2];
    std::io::Read::read_exact(&mut client, &mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");

    let text = raw_request(
        Protocol::Tcp,
        &client.local_addr().unwrap().to_string(),
        "tcp-stats",
        "body",
    );
    client.write_all(text.as_bytes()).unwrap();
    assert!(run_until(&lp, BOUND, || events.packet_count() == 1));
    let (p, src) = events.packets().pop().unwrap();
    let resp = Response::for_message(&p, 200, "OK", true);
    let resp_len = resp.to_shared_bytes().len() as u64;
    leg.send_response(&resp, &src.reply_destination(), None);
    let mut buf = Vec::new();
    let got = read_message(&mut client, &mut buf).unwrap();
    assert_eq!(got.len() as u64, resp_len);
    assert_eq!(
        leg.stats(),
        LegStats {
            received: 1,
            sent: 1,
            bytes_received: text.len() as u64,
            bytes_sent: resp_len,
            keepalives: 1,
            connections_opened: 1,
            connections_open: 1,
            ..LegStats::default()
        }
    );

    drop(client);
    assert!(run_until(&lp, BOUND, || leg.stats().connections_open == 0));
    let s = leg.stats();
    assert_eq!(
        (
            s.connections_opened,
            s.connections_closed,
            s.connections_open
        ),
        (1, 1, 0)
    );
    assert_eq!(leg.connection_count(), 0);
}

/// TLS on loopback: the bytes counted are the SIP messages, not the TLS
/// records that carried them (handshake, record headers, MACs).
#[cfg(feature = "tls")]
#[test]
fn tls_counts_sip_bytes_not_tls_records() {
    use sip_dispatch::leg::TlsConfig;

    let ca = pki::Ca::new("Test CA");
    let leaf = ca.leaf(&["127.0.0.1"]);
    let bind = |tls: TlsConfig| {
        Leg::bind(
            LegSpec {
                proto: Protocol::Tls,
                addr: loopback(false),
            },
            LegOptions {
                tls: Some(tls),
                ..LegOptions::default()
            },
        )
        .unwrap()
    };
    let server = bind(leaf.config());
    let client = bind(TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap());
    let lp = Rc::new(MioEventloop::new().unwrap());
    let sev = attach(&server, &lp);
    let cev = attach(&client, &lp);
    let to = Destination::new(Protocol::Tls, server.local_addr());
    let bytes = prepared(&client, &common::request("tls-stats"), "z9hG4bKtls", &to);
    let req_len = bytes.len() as u64;
    client.send(bytes, &to, Some(1));
    assert!(run_until(&lp, BOUND, || sev.packet_count() == 1));
    let (p, src) = sev.packets().pop().unwrap();
    let resp = Response::for_message(&p, 200, "OK", true);
    let resp_len = resp.to_shared_bytes().len() as u64;
    server.send_response(&resp, &src.reply_destination(), None);
    assert!(run_until(&lp, BOUND, || cev.packet_count() == 1));
    let open = |s: LegStats| LegStats {
        connections_opened: 1,
        connections_open: 1,
        ..s
    };
    assert_eq!(
        server.stats(),
        open(LegStats {
            received: 1,
            sent: 1,
            bytes_received: req_len,
            bytes_sent: resp_len,
            ..LegStats::default()
        })
    );
    assert_eq!(
        client.stats(),
        open(LegStats {
            received: 1,
            sent: 1,
            bytes_received: resp_len,
            bytes_sent: req_len,
            ..LegStats::default()
        })
    );
}

// ------------------------------------------------------------ Display ----

#[test]
fn display_is_one_line_of_name_value_pairs_in_a_fixed_order() {
    let s = LegStats {
        received: 1,
        sent: 2,
        bytes_received: 3,
        bytes_sent: 4,
        parse_errors: 5,
        bad_requests_answered: 6,
        dropped_no_via: 7,
        dropped_foreign_via: 8,
        dropped_by_hook: 9,
        keepalives: 10,
        send_errors: 11,
        retransmissions: 12,
        timeouts: 13,
        connections_opened: 14,
        connections_closed: 15,
        connections_open: 16,
        connections_limited: 17,
    };
    assert_eq!(
        s.to_string(),
        "received=1 sent=2 bytes_received=3 bytes_sent=4 parse_errors=5 \
         bad_requests_answered=6 dropped_no_via=7 dropped_foreign_via=8 dropped_by_hook=9 \
         keepalives=10 send_errors=11 retransmissions=12 timeouts=13 connections_opened=14 \
         connections_closed=15 connections_open=16 connections_limited=17"
    );
    assert_eq!(
        LegStats::default().to_string(),
        "received=0 sent=0 bytes_received=0 bytes_sent=0 parse_errors=0 \
         bad_requests_answered=0 dropped_no_via=0 dropped_foreign_via=0 dropped_by_hook=0 \
         keepalives=0 send_errors=0 retransmissions=0 timeouts=0 connections_opened=0 \
         connections_closed=0 connections_open=0 connections_limited=0"
    );
    let mut sum = s;
    sum += s;
    assert_eq!(sum.received, 2);
    assert_eq!(sum.connections_limited, 34);
    assert_eq!(sum.connections_open, 32);
}

// ----------------------------------------------------------- examples ----

/// The expected `stats LEG: ...` line for UDP traffic.
fn udp_stats_line(leg: &str, received: u64, sent: u64, bytes: (u64, u64), rtx: u64) -> String {
    let s = LegStats {
        received,
        sent,
        bytes_received: bytes.0,
        bytes_sent: bytes.1,
        retransmissions: rtx,
        ..LegStats::default()
    };
    format!("stats {leg}: {s}")
}

/// The `stats ` lines of a stderr text.
fn stats_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("stats ")).collect()
}

/// Three OPTIONS and a retransmission of the first: the uas writes one
/// stats line for its leg on stderr at exit (SIGTERM) with the exact
/// counts; stdout keeps only its contract lines.
#[test]
fn uas_prints_its_leg_counters_on_stderr_at_exit() {
    let uas = Uas::udp(&[]);
    let to = uas.addr("udp", false);
    let peer = UdpPeer::bind("127.0.0.1");
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut first = None;
    let mut lines = vec![format!("listening udp:{to}")];
    for _ in 0..3 {
        let call_id = unique("counted-");
        let req = Req::new(
            "OPTIONS",
            &format!("sip:bob@{to}"),
            peer.local(),
            &call_id,
            &unique("z9hG4bK-"),
        );
        lines.push(format!("OPTIONS {call_id} -> 200"));
        peer.send_req(&req, to);
        let ok = peer.expect_response(200, "OPTIONS");
        bytes_in += req.text().len() as u64;
        bytes_out += ok.msg.raw.len() as u64;
        first.get_or_insert((req, ok.msg));
    }
    let (req, ok) = first.unwrap();
    peer.send_req(&req, to);
    let again: Msg = peer.expect_response(200, "OPTIONS").msg;
    assert_eq!(again.raw, ok.raw, "answered from the cache");
    bytes_in += req.text().len() as u64;
    bytes_out += again.raw.len() as u64;

    uas.proc.signal(libc::SIGTERM);
    let out = uas.proc.wait_exit(WAIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        stats_lines(&out.stderr),
        [udp_stats_line(
            &format!("udp:{to}"),
            4,
            4,
            (bytes_in, bytes_out),
            1
        )],
        "{out:?}"
    );
    assert_eq!(out.stdout, lines, "stdout keeps its contract");
}

/// `--threads 2`: one line for the one `--listen`, the sum over both
/// threads' legs.
#[test]
fn uas_with_threads_prints_one_summed_line_per_listen() {
    let uas = Uas::start(&["--threads", "2", "--listen", "udp:127.0.0.1:0"]);
    let to = uas.addr("udp", false);
    let peers: Vec<UdpPeer> = (0..8).map(|_| UdpPeer::bind("127.0.0.1")).collect();
    let mut bytes = (0u64, 0u64);
    for peer in &peers {
        let req = Req::new(
            "OPTIONS",
            &format!("sip:bob@{to}"),
            peer.local(),
            &unique("threads-"),
            &unique("z9hG4bK-"),
        );
        peer.send_req(&req, to);
        let ok = peer.expect_response(200, "OPTIONS");
        bytes.0 += req.text().len() as u64;
        bytes.1 += ok.msg.raw.len() as u64;
    }
    uas.proc.signal(libc::SIGTERM);
    let out = uas.proc.wait_exit(WAIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(
        stats_lines(&out.stderr),
        [udp_stats_line(&format!("udp:{to}"), 8, 8, bytes, 0)],
        "{out:?}"
    );
}

/// A request through the stateless proxy and its response back: the
/// proxy's leg received and sent two messages each, with the bytes the
/// peers sent and saw; printed on stderr at SIGTERM.
#[test]
fn stateless_proxy_prints_its_leg_counters_on_stderr_at_exit() {
    let mut proxy = Proc::example("stateless_proxy", &["--listen", "udp:127.0.0.1:0"]);
    let line = proxy.next_line(WAIT).expect("a listening line");
    let spec = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    let at: SocketAddr = spec.strip_prefix("udp:").unwrap().parse().unwrap();
    let (uac, uas) = (UdpPeer::bind("127.0.0.1"), UdpPeer::bind("127.0.0.1"));
    let req = Req::new(
        "OPTIONS",
        &format!("sip:bob@{}", uas.local()),
        uac.local(),
        &unique("proxied-"),
        &unique("z9hG4bK-"),
    );
    uac.send_req(&req, at);
    let (fwd, _) = uas.expect("the forwarded OPTIONS", |m| m.method() == Some("OPTIONS"));
    let resp = bins::response_to(&fwd.msg, 200, "OK", Some("uas1"));
    uas.send(&resp, fwd.from);
    let back = uac.expect_response(200, "OPTIONS");
    proxy.signal(libc::SIGTERM);
    let out = proxy.wait_exit(WAIT);
    assert_eq!(out.code(), 0, "{out:?}");
    let bytes_in = (req.text().len() + resp.len()) as u64;
    let bytes_out = (fwd.msg.raw.len() + back.msg.raw.len()) as u64;
    assert_eq!(
        stats_lines(&out.stderr),
        [udp_stats_line(&spec, 2, 2, (bytes_in, bytes_out), 0)],
        "{out:?}"
    );
    assert_eq!(out.stdout, [line], "stdout keeps its contract: {out:?}");
}

/// A dispatcher with default options on `leg` in the world's loop.
fn dispatcher_on(w: &World, leg: &Leg) -> Dispatcher {
    Dispatcher::new(
        vec![leg.clone()],
        Some(w.dyn_loop()),
        DispatcherOptions::default(),
    )
    .unwrap()
}
