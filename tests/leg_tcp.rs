//! TCP legs through the public API, on loopback (IPv4 and IPv6): framing
//! of what a raw peer writes, keep-alive pongs, replies on the same
//! connection, connection reuse, limits and timeouts (under virtual time),
//! refused and reset connections, and large writes.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use sip_dispatch::Errno;
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Destination, Leg, LegOptions, Protocol, SendStatus, TcpOptions};
use sip_dispatch::packet::{Packet, ParseLimits, Response};

fn tcp_leg(v6: bool, opts: LegOptions) -> Leg {
    common::bind_loopback(Protocol::Tcp, v6, opts)
}

fn default_leg(v6: bool) -> Leg {
    tcp_leg(v6, LegOptions::default())
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, BOUND).expect("connect to the leg");
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn tcp_dst(addr: SocketAddr) -> Destination {
    Destination::new(Protocol::Tcp, addr)
}

fn host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// A request as the raw peer on `s` writes it.
fn peer_request(s: &TcpStream, call_id: &str, body: &str) -> String {
    raw_request(Protocol::Tcp, &host(s.local_addr().unwrap()), call_id, body)
}

fn call_ids(events: &Events) -> Vec<String> {
    events
        .packets()
        .iter()
        .map(|(p, _)| p.call_id().unwrap_or("").to_owned())
        .collect()
}

/// Reads until EOF (Ok(0)); an error (reset) is returned as such.
fn read_to_eof(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf)? {
            0 => return Ok(all),
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn virtual_loop() -> Rc<MioEventloop> {
    let lp = Rc::new(MioEventloop::new_virtual());
    // Loopback is synchronous, but give a loaded machine more than the
    // default 2 ms before the clock jumps.
    lp.set_virtual_grace(Duration::from_millis(20));
    lp
}

macro_rules! both_families {
    ($($name:ident),* $(,)?) => {
        mod v4 { $( #[test] fn $name() { super::$name(false) } )* }
        mod v6 { $( #[test] fn $name() { super::$name(true) } )* }
    };
}

both_families!(
    message_written_a_byte_at_a_time,
    two_messages_in_one_write,
    body_split_across_writes,
    content_length_with_space_before_colon_and_compact_form,
    message_followed_by_close_keeps_its_source,
    oversize_message_closes_the_connection,
    oversize_content_length_closes_the_connection,
    crlfcrlf_is_answered_with_crlf,
    bad_request_is_answered_400_on_its_connection,
    response_goes_back_over_the_same_connection,
    two_requests_reuse_one_connection,
    idle_connection_is_closed_under_virtual_time,
    slow_loris_is_closed_by_the_header_timeout,
    pipelined_traffic_is_not_a_slow_loris,
    connection_cap_closes_the_oldest_idle,
    connect_refused_is_econnrefused,
    reset_while_connecting_fails_the_queued_send,
    reset_while_in_use_reports_connection_closed,
    send_on_a_reset_connection_fails_once,
    reset_with_queued_data_fails_the_pending_send,
    large_message_is_queued_and_flushed_intact,
    connect_timeout_under_virtual_time,
);

fn message_written_a_byte_at_a_time(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let text = peer_request(&s, "bytewise", "hello");
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        s.write_all(std::slice::from_ref(b)).unwrap();
        s.flush().unwrap();
        spin(&lp, Duration::from_millis(1));
        if i + 1 < bytes.len() {
            assert_eq!(ev.packet_count(), 0, "nothing before the last byte ({i})");
        }
    }
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
    let (p, src) = ev.packets().pop().unwrap();
    assert_eq!(p.call_id(), Some("bytewise"));
    assert_eq!(p.body(), b"hello");
    assert_eq!(src.addr, s.local_addr().unwrap());
    assert_eq!(src.proto, Protocol::Tcp);
    assert!(src.conn.is_some());
    assert_eq!(leg.stats().parse_errors, 0);
    assert_eq!(leg.connection_count(), 1);
}

fn two_messages_in_one_write(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let both = format!(
        "{}{}",
        peer_request(&s, "first", "one"),
        peer_request(&s, "second", "two!")
    );
    s.write_all(both.as_bytes()).unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 2));
    assert_eq!(call_ids(&ev), ["first", "second"]);
    let bodies: Vec<Vec<u8>> = ev
        .packets()
        .iter()
        .map(|(p, _)| p.body().to_vec())
        .collect();
    assert_eq!(bodies, [b"one".to_vec(), b"two!".to_vec()]);
    let conns: Vec<_> = ev.packets().iter().map(|(_, s)| s.conn).collect();
    assert_eq!(conns[0], conns[1]);
}

fn body_split_across_writes(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let text = peer_request(&s, "split", "0123456789abcdef");
    let cut = text.len() - 7;
    s.write_all(&text.as_bytes()[..cut]).unwrap();
    spin(&lp, Duration::from_millis(20));
    assert_eq!(ev.packet_count(), 0, "the body is not complete");
    s.write_all(&text.as_bytes()[cut..]).unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
    assert_eq!(ev.packets()[0].0.body(), b"0123456789abcdef");
}

fn content_length_with_space_before_colon_and_compact_form(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let spaced =
        peer_request(&s, "spaced", "hello").replace("Content-Length: 5", "Content-Length  : 5");
    let compact = peer_request(&s, "compact", "world").replace("Content-Length: 5", "l: 5");
    assert!(spaced.contains("Content-Length  : 5") && compact.contains("\r\nl: 5\r\n"));
    s.write_all(spaced.as_bytes()).unwrap();
    s.write_all(compact.as_bytes()).unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 2));
    assert_eq!(call_ids(&ev), ["spaced", "compact"]);
    assert_eq!(ev.packets()[0].0.body(), b"hello");
    assert_eq!(ev.packets()[1].0.body(), b"world");
    assert_eq!(leg.stats().parse_errors, 0);
}

/// A peer that sends a request and closes at once: the request still goes
/// up with the peer's address (the connection is gone by the time it is
/// handled), and no connection is opened back.
fn message_followed_by_close_keeps_its_source(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let peer = s.local_addr().unwrap();
    let text = format!("\r\n\r\n{}", peer_request(&s, "and-close", "bye"));
    s.write_all(text.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1
        && !ev.closed().is_empty()));
    let (p, src) = ev.packets().pop().unwrap();
    assert_eq!(src.addr, peer, "the source is the peer, not a placeholder");
    let Packet::Request(req) = p else {
        panic!("a request")
    };
    assert_eq!(
        req.top_via().unwrap().received(),
        None,
        "sent-by is the source address"
    );
    assert_eq!(ev.closed()[0].1, peer);
    // The packet goes up before the connection is reported closed.
    let order: Vec<bool> =
        ev.0.borrow()
            .iter()
            .map(|r| matches!(r.event, sip_dispatch::leg::LegEvent::Packet(..)))
            .collect();
    assert_eq!(order, [true, false]);
    assert_eq!(
        leg.stats().connections_opened,
        1,
        "no connection back for the pong"
    );
    assert_eq!(leg.connection_count(), 0);
}

fn small_limit() -> LegOptions {
    LegOptions {
        limits: ParseLimits {
            max_message_size: 512,
            ..ParseLimits::default()
        },
        ..LegOptions::default()
    }
}

fn oversize_message_closes_the_connection(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = tcp_leg(v6, small_limit());
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    // A header section that never ends, over the limit.
    let mut text = format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP {}\r\n",
        host(s.local_addr().unwrap())
    );
    while text.len() < 2000 {
        text.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    s.write_all(text.as_bytes()).unwrap();
    assert!(run_until(&lp, BOUND, || leg.connection_count() == 0
        && leg.stats().connections_opened == 1));
    assert_eq!(read_to_eof(&mut s).expect("the peer sees EOF"), b"");
    let st = leg.stats();
    assert_eq!(st.connections_limited, 1);
    assert_eq!(st.connections_closed, 1);
    assert_eq!(ev.packet_count(), 0);
    assert_eq!(ev.closed().len(), 1);
    // The leg keeps serving.
    let mut s2 = connect(leg.local_addr());
    s2.write_all(peer_request(&s2, "after-oversize", "").as_bytes())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
}

fn oversize_content_length_closes_the_connection(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = tcp_leg(v6, small_limit());
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let text = peer_request(&s, "big", "").replace("Content-Length: 0", "Content-Length: 100000");
    s.write_all(text.as_bytes()).unwrap();
    assert!(run_until(&lp, BOUND, || leg.connection_count() == 0
        && leg.stats().connections_opened == 1));
    assert_eq!(read_to_eof(&mut s).expect("the peer sees EOF"), b"");
    assert_eq!(leg.stats().connections_limited, 1);
    assert_eq!(ev.packet_count(), 0);
}

fn crlfcrlf_is_answered_with_crlf(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    s.write_all(b"\r\n\r\n").unwrap();
    assert!(run_until(&lp, BOUND, || leg.stats().keepalives >= 1));
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    assert_eq!(ev.len(), 0, "keep-alives are not passed up");
    // The connection still carries messages.
    s.write_all(peer_request(&s, "after-ping", "").as_bytes())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
    assert_eq!(leg.connection_count(), 1);
}

fn bad_request_is_answered_400_on_its_connection(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    // Framed correctly, but a header line has no colon.
    let bad = peer_request(&s, "bad-line", "").replace("Max-Forwards: 70", "Max-Forwards 70");
    s.write_all(bad.as_bytes()).unwrap();
    assert!(run_until(&lp, BOUND, || leg.stats().bad_requests_answered == 1));
    let got = read_message(&mut s, &mut Vec::new()).expect("the 400 arrives");
    let resp = Response::parse(&got).unwrap();
    assert_eq!(resp.code(), 400);
    assert!(resp.reason().contains("header line"), "{:?}", resp.reason());
    assert_eq!(resp.call_id(), Some("bad-line"));
    assert_eq!(leg.stats().parse_errors, 1);
    assert_eq!(ev.packet_count(), 0);
    // The connection stays up and carries the next message.
    s.write_all(peer_request(&s, "good-line", "").as_bytes())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
    assert_eq!(leg.connection_count(), 1);
    assert_eq!(leg.stats().connections_opened, 1);
}

fn response_goes_back_over_the_same_connection(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = default_leg(v6);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    s.write_all(peer_request(&s, "reply-me", "").as_bytes())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
    let (p, src) = ev.packets().pop().unwrap();
    let dst = src.reply_destination();
    assert_eq!(dst.conn, src.conn);
    let resp = Response::for_request(p.as_request().unwrap(), 200, "OK");
    assert_eq!(leg.send_response(&resp, &dst, Some(1)), SendStatus::Sent);
    let mut buf = Vec::new();
    let got =
        read_message(&mut s, &mut buf).expect("the response arrives on the peer's connection");
    let got = Response::parse(&got).unwrap();
    assert_eq!(got.code(), 200);
    assert_eq!(got.call_id(), Some("reply-me"));
    assert_eq!(got.top_via().unwrap().branch(), Some("z9hG4bKreply-me"));
    spin(&lp, Duration::from_millis(5));
    assert_eq!(leg.connection_count(), 1);
    assert_eq!(leg.stats().connections_opened, 1);
    assert_eq!(
        ev.outcomes(),
        [],
        "a send that finished at once has no outcome"
    );
}

fn two_requests_reuse_one_connection(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (default_leg(v6), default_leg(v6));
    let ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dst = tcp_dst(b.local_addr());
    let s1 = a.send(
        prepared(&a, &request("reuse-1"), "z9hG4bKr1", &dst),
        &dst,
        Some(1),
    );
    let s2 = a.send(
        prepared(&a, &request("reuse-2"), "z9hG4bKr2", &dst),
        &dst,
        Some(2),
    );
    assert!(
        matches!(s1, SendStatus::Sent | SendStatus::Queued),
        "{s1:?}"
    );
    assert!(
        matches!(s2, SendStatus::Sent | SendStatus::Queued),
        "{s2:?}"
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 2));
    assert_eq!(call_ids(&eb), ["reuse-1", "reuse-2"]);
    for (t, s) in [(1, &s1), (2, &s2)] {
        if *s == SendStatus::Queued {
            assert!(run_until(&lp, BOUND, || ea.outcome(t).is_some()));
            assert_eq!(ea.outcome(t), Some(Ok(())));
        }
    }
    let (p, src) = eb.packets().pop().unwrap();
    let top = p.top_via().unwrap();
    assert_eq!(top.transport(), "TCP");
    assert_eq!(
        top.port(),
        Some(a.local_addr().port()),
        "Via names A's listening port"
    );
    assert_ne!(
        src.addr,
        a.local_addr(),
        "the connection comes from an ephemeral port"
    );
    assert_eq!(src.addr.ip(), a.local_addr().ip(), "bound to A's address");
    // B answers over that connection; A takes the response as its own.
    let resp = Response::for_request(p.as_request().unwrap(), 200, "OK");
    assert_eq!(
        b.send_response(&resp, &src.reply_destination(), None),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || ea.packet_count() == 1));
    assert_eq!(
        ea.packets()[0].0.top_via().unwrap().branch(),
        Some("z9hG4bKr2")
    );
    for leg in [&a, &b] {
        assert_eq!(leg.connection_count(), 1, "{leg}");
        assert_eq!(leg.stats().connections_opened, 1, "{leg}");
    }
}

fn idle_connection_is_closed_under_virtual_time(v6: bool) {
    let lp = virtual_loop();
    let opts = LegOptions {
        tcp: TcpOptions {
            idle_timeout: Duration::from_secs(30),
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let (a, b) = (tcp_leg(v6, opts.clone()), tcp_leg(v6, opts));
    let ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dst = tcp_dst(b.local_addr());
    a.send(
        prepared(&a, &request("idle"), "z9hG4bKi", &dst),
        &dst,
        Some(1),
    );
    assert!(run_until(&lp, Duration::from_secs(5), || eb.packet_count() == 1));
    let t0 = lp.now();
    assert!(run_until(&lp, Duration::from_secs(120), || a
        .connection_count()
        == 0
        && b.connection_count() == 0));
    let waited = lp.now() - t0;
    assert!(
        waited >= Duration::from_secs(29) && waited <= Duration::from_secs(31),
        "closed after {waited:?}"
    );
    assert_eq!(ea.closed().len(), 1);
    assert_eq!(eb.closed().len(), 1);
    // Idle is one of the limits (LegStats::connections_limited); both
    // ends may time out in the same tick, or one may see the other's EOF.
    let limited = [a.stats().connections_limited, b.stats().connections_limited];
    assert!(
        limited.iter().all(|&n| n <= 1) && limited.iter().sum::<u64>() >= 1,
        "{limited:?}"
    );
    assert_eq!(a.stats().connections_closed, 1);
    assert_eq!(b.stats().connections_closed, 1);
}

fn slow_loris_is_closed_by_the_header_timeout(v6: bool) {
    let lp = virtual_loop();
    let opts = LegOptions {
        tcp: TcpOptions {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let leg = tcp_leg(v6, opts);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let text = peer_request(&s, "loris", "");
    s.write_all(&text.as_bytes()[..text.len() / 2]).unwrap();
    let t0 = lp.now();
    assert!(run_until(&lp, Duration::from_secs(1), || leg
        .stats()
        .connections_opened
        == 1));
    assert!(run_until(&lp, Duration::from_secs(100), || leg
        .connection_count()
        == 0));
    let waited = lp.now() - t0;
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
    assert_eq!(leg.stats().connections_limited, 1);
    assert_eq!(ev.packet_count(), 0);
    assert_eq!(read_to_eof(&mut s).expect("the peer sees EOF"), b"");
}

/// A busy connection whose reads often end in the middle of a message is
/// making progress: the header timeout counts from the first byte of the
/// message still incomplete, not from the first incomplete read ever.
fn pipelined_traffic_is_not_a_slow_loris(v6: bool) {
    let lp = virtual_loop();
    let opts = LegOptions {
        tcp: TcpOptions {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let leg = tcp_leg(v6, opts);
    let ev = attach(&leg, &lp);
    let mut s = connect(leg.local_addr());
    let msgs: Vec<String> = (0..5)
        .map(|i| peer_request(&s, &format!("pipe-{i}"), ""))
        .collect();
    let half = |m: &String| m.len() / 2;
    s.write_all(&msgs[0].as_bytes()[..half(&msgs[0])]).unwrap();
    for i in 0..4 {
        // Every 3 s: the rest of message i and half of message i + 1.
        run_until(&lp, Duration::from_secs(3), || false);
        let mut chunk = msgs[i].as_bytes()[half(&msgs[i])..].to_vec();
        chunk.extend_from_slice(&msgs[i + 1].as_bytes()[..half(&msgs[i + 1])]);
        s.write_all(&chunk).unwrap();
        assert!(
            run_until(&lp, Duration::from_secs(1), || ev.packet_count() == i + 1),
            "message {i}"
        );
        assert_eq!(leg.connection_count(), 1, "still open after message {i}");
    }
    assert_eq!(leg.stats().connections_limited, 0);
}

fn connection_cap_closes_the_oldest_idle(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let opts = LegOptions {
        tcp: TcpOptions {
            max_connections: 2,
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let leg = tcp_leg(v6, opts);
    let ev = attach(&leg, &lp);
    let mut c1 = connect(leg.local_addr());
    assert!(run_until(&lp, BOUND, || leg.connection_count() == 1));
    let mut c2 = connect(leg.local_addr());
    assert!(run_until(&lp, BOUND, || leg.connection_count() == 2));
    // c1 talks: c2 is now the one idle the longest.
    c1.write_all(peer_request(&c1, "c1", "").as_bytes())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 1));
    let mut c3 = connect(leg.local_addr());
    assert!(run_until(&lp, BOUND, || leg.stats().connections_opened == 3));
    assert_eq!(leg.connection_count(), 2);
    assert_eq!(leg.stats().connections_limited, 1);
    assert_eq!(
        ev.closed().iter().map(|c| c.1).collect::<Vec<_>>(),
        [c2.local_addr().unwrap()]
    );
    assert_eq!(read_to_eof(&mut c2).expect("c2 sees EOF"), b"");
    // c1 and c3 still work.
    c1.write_all(peer_request(&c1, "c1-again", "").as_bytes())
        .unwrap();
    c3.write_all(peer_request(&c3, "c3", "").as_bytes())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ev.packet_count() == 3));
    assert_eq!(call_ids(&ev)[1..].len(), 2);
}

fn connect_refused_is_econnrefused(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = default_leg(v6);
    let ea = attach(&a, &lp);
    let dead = TcpListener::bind(loopback(v6))
        .unwrap()
        .local_addr()
        .unwrap();
    let dst = tcp_dst(dead);
    let status = a.send(
        prepared(&a, &request("refused"), "z9hG4bKref", &dst),
        &dst,
        Some(9),
    );
    match status {
        SendStatus::Failed(e) => assert_eq!(e.errno(), Errno::ECONNREFUSED),
        SendStatus::Queued => {
            assert!(run_until(&lp, BOUND, || ea.outcome(9).is_some()));
            assert_eq!(ea.outcome(9), Some(Err(Errno::ECONNREFUSED)));
        }
        SendStatus::Sent => panic!("nothing listens there"),
    }
    spin(&lp, Duration::from_millis(5));
    assert_eq!(
        ea.outcomes().len(),
        usize::from(ea.outcome(9).is_some()),
        "one outcome"
    );
    assert_eq!(a.connection_count(), 0);
}

/// A raw listener that accepts and resets (SO_LINGER 0) every connection.
fn accept_and_reset(listener: &TcpListener) {
    let (s, _) = listener.accept().unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

fn reset_while_connecting_fails_the_queued_send(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = default_leg(v6);
    let ea = attach(&a, &lp);
    let listener = TcpListener::bind(loopback(v6)).unwrap();
    let dst = tcp_dst(listener.local_addr().unwrap());
    let status = a.send(
        prepared(&a, &request("rst-1"), "z9hG4bKrst", &dst),
        &dst,
        Some(3),
    );
    assert_eq!(status, SendStatus::Queued, "connecting");
    // The kernel finished the handshake; the peer resets before our loop
    // ever saw the connection complete.
    accept_and_reset(&listener);
    assert!(run_until(&lp, BOUND, || ea.outcome(3).is_some()));
    let got = ea.outcome(3).unwrap();
    assert!(
        matches!(got, Err(Errno::ECONNRESET | Errno::EPIPE)),
        "{got:?}"
    );
    assert!(run_until(&lp, BOUND, || a.connection_count() == 0));
    assert_eq!(ea.closed().len(), 1);
}

fn reset_while_in_use_reports_connection_closed(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = default_leg(v6);
    let ea = attach(&a, &lp);
    let listener = TcpListener::bind(loopback(v6)).unwrap();
    let dst = tcp_dst(listener.local_addr().unwrap());
    a.send(
        prepared(&a, &request("in-use"), "z9hG4bKu", &dst),
        &dst,
        Some(1),
    );
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    assert!(run_until(&lp, BOUND, || ea.outcome(1).is_some()));
    assert_eq!(ea.outcome(1), Some(Ok(())));
    let mut buf = Vec::new();
    let got = read_message(&mut peer, &mut buf).unwrap();
    assert_eq!(Packet::parse(&got).unwrap().call_id(), Some("in-use"));
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    assert!(run_until(&lp, BOUND, || !ea.closed().is_empty()));
    assert_eq!(ea.closed()[0].1, dst.addr);
    assert_eq!(a.connection_count(), 0);
    // A new send opens a new connection.
    let st = a.send(
        prepared(&a, &request("again"), "z9hG4bKa", &dst),
        &dst,
        Some(2),
    );
    assert_ne!(st, SendStatus::Sent);
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(BOUND)).unwrap();
    assert!(run_until(&lp, BOUND, || ea.outcome(2).is_some()));
    assert_eq!(ea.outcome(2), Some(Ok(())));
    let got = read_message(&mut peer, &mut Vec::new()).unwrap();
    assert_eq!(Packet::parse(&got).unwrap().call_id(), Some("again"));
    assert_eq!(a.stats().connections_opened, 2);
}

/// The peer reset a connection our loop has not noticed yet: the next send
/// fails at once, and its token gets no second outcome later.
fn send_on_a_reset_connection_fails_once(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = default_leg(v6);
    let ea = attach(&a, &lp);
    let listener = TcpListener::bind(loopback(v6)).unwrap();
    let dst = tcp_dst(listener.local_addr().unwrap());
    a.send(
        prepared(&a, &request("first"), "z9hG4bKf", &dst),
        &dst,
        Some(1),
    );
    let (peer, _) = listener.accept().unwrap();
    assert!(run_until(&lp, BOUND, || ea.outcome(1).is_some()));
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    // No loop turn: the leg still thinks the connection is open.
    let st = a.send(
        prepared(&a, &request("second"), "z9hG4bKs", &dst),
        &dst,
        Some(2),
    );
    let SendStatus::Failed(e) = st else {
        panic!("the write meets the reset: {st:?}")
    };
    assert!(matches!(e.errno(), Errno::ECONNRESET | Errno::EPIPE), "{e}");
    assert!(run_until(&lp, BOUND, || !ea.closed().is_empty()));
    spin(&lp, Duration::from_millis(5));
    assert_eq!(
        ea.outcome(2),
        None,
        "a failed send has no outcome besides its status"
    );
    assert_eq!(a.stats().send_errors, 1);
}

fn reset_with_queued_data_fails_the_pending_send(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let opts = LegOptions {
        tcp: TcpOptions {
            max_write_buffer: 64 << 20,
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let a = tcp_leg(v6, opts);
    let ea = attach(&a, &lp);
    let listener = socket2::Socket::new(
        socket2::Domain::for_address(loopback(v6)),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    listener.set_recv_buffer_size(4096).unwrap();
    listener.bind(&loopback(v6).into()).unwrap();
    listener.listen(8).unwrap();
    let listener: TcpListener = listener.into();
    let dst = tcp_dst(listener.local_addr().unwrap());
    a.send(
        prepared(&a, &request("fill-0"), "z9hG4bKf", &dst),
        &dst,
        Some(0),
    );
    let (peer, _) = listener.accept().unwrap();
    assert!(run_until(&lp, BOUND, || ea.outcome(0).is_some()));
    // The peer reads nothing: fill the pipe until a send has to queue.
    let body = "x".repeat(60_000);
    let mut queued = None;
    for token in 1..=400u64 {
        let req = request_with_body(&format!("fill-{token}"), &body);
        match a.send(prepared(&a, &req, "z9hG4bKf", &dst), &dst, Some(token)) {
            SendStatus::Sent => {}
            SendStatus::Queued => {
                queued = Some(token);
                break;
            }
            SendStatus::Failed(e) => panic!("send {token}: {e}"),
        }
    }
    let token = queued.expect("a send queued once the socket was full");
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    assert!(run_until(&lp, BOUND, || ea.outcome(token).is_some()));
    let got = ea.outcome(token).unwrap();
    assert!(
        matches!(got, Err(Errno::ECONNRESET | Errno::EPIPE)),
        "{got:?}"
    );
    assert!(run_until(&lp, BOUND, || a.connection_count() == 0));
    assert_eq!(ea.closed().len(), 1);
}

fn large_message_is_queued_and_flushed_intact(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let opts = LegOptions {
        tcp: TcpOptions {
            max_write_buffer: 16 << 20,
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let (a, b) = (tcp_leg(v6, opts.clone()), tcp_leg(v6, opts));
    let ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dst = tcp_dst(b.local_addr());
    // One 60 KB message, then many more than the kernel buffers hold
    // before the receiver gets a turn.
    let n = 40u64;
    let mut queued = Vec::new();
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            (0..60_000)
                .map(|j| char::from(b'a' + ((i as usize + j) % 26) as u8))
                .collect()
        })
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let req = request_with_body(&format!("big-{i}"), body);
        let bytes = prepared(&a, &req, "z9hG4bKbig", &dst);
        assert!(bytes.len() > 60_000 && bytes.len() < b.options().limits.max_message_size);
        match a.send(bytes, &dst, Some(i as u64)) {
            SendStatus::Queued => queued.push(i as u64),
            SendStatus::Sent => {}
            SendStatus::Failed(e) => panic!("send {i}: {e}"),
        }
    }
    assert!(!queued.is_empty(), "at least one write would have blocked");
    assert!(run_until(&lp, Duration::from_secs(20), || eb
        .packet_count()
        == n as usize));
    let got = eb.packets();
    for (i, (p, _)) in got.iter().enumerate() {
        assert_eq!(p.call_id(), Some(format!("big-{i}").as_str()));
        assert!(p.body() == bodies[i].as_bytes(), "body {i} intact");
    }
    assert!(run_until(&lp, BOUND, || ea.outcomes().len() == queued.len()));
    assert!(
        ea.outcomes()
            .iter()
            .all(|(t, r)| queued.contains(t) && r.is_ok()),
        "{:?}",
        ea.outcomes()
    );
    assert_eq!(a.connection_count(), 1);
    assert_eq!(b.stats().parse_errors, 0);
}

fn connect_timeout_under_virtual_time(v6: bool) {
    let lp = virtual_loop();
    let opts = LegOptions {
        tcp: TcpOptions {
            connect_timeout: Duration::from_secs(10),
            ..TcpOptions::default()
        },
        ..LegOptions::default()
    };
    let a = tcp_leg(v6, opts);
    let ea = attach(&a, &lp);
    // A listener whose accept queue is full drops further SYNs: the
    // connect never completes.
    let listener = socket2::Socket::new(
        socket2::Domain::for_address(loopback(v6)),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    listener.bind(&loopback(v6).into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _filler =
        TcpStream::connect_timeout(&addr, BOUND).expect("the one connection the queue holds");
    let dst = tcp_dst(addr);
    let t0 = lp.now();
    assert_eq!(
        a.send(
            prepared(&a, &request("timeout"), "z9hG4bKt", &dst),
            &dst,
            Some(5)
        ),
        SendStatus::Queued
    );
    assert!(run_until(&lp, Duration::from_secs(60), || ea
        .outcome(5)
        .is_some()));
    assert_eq!(ea.outcome(5), Some(Err(Errno::ETIMEDOUT)));
    let waited = lp.now() - t0;
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "failed after {waited:?}"
    );
    assert_eq!(a.connection_count(), 0);
}

#[test]
fn send_without_event_loop_fails_with_enotconn() {
    let a = default_leg(false);
    let dst = tcp_dst("127.0.0.1:9".parse().unwrap());
    let st = a.send(Rc::from(&b"x"[..]), &dst, None);
    let SendStatus::Failed(e) = st else {
        panic!("{st:?}")
    };
    assert_eq!(e.errno(), Errno::ENOTCONN);
}

#[test]
fn detach_fails_pending_sends_and_closes_connections() {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = default_leg(false);
    let ea = attach(&a, &lp);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dst = tcp_dst(listener.local_addr().unwrap());
    assert_eq!(
        a.send(
            prepared(&a, &request("pending"), "z9hG4bKp", &dst),
            &dst,
            Some(4)
        ),
        SendStatus::Queued
    );
    a.detach();
    assert_eq!(ea.outcome(4), Some(Err(Errno::ENETDOWN)));
    assert_eq!(a.connection_count(), 0);
    assert_eq!(lp.registered_fds(), 0);
}
