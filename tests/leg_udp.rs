//! UDP legs through the public API, on loopback (IPv4 and IPv6): Via on
//! send, received/rport on receive, response filtering, bad input, keep-
//! alives, ICMP errors and hooks.

mod common;
#[path = "common/dead_port.rs"]
mod dead_port;

use dead_port::dead_port_on;

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use sip_dispatch::Errno;
use sip_dispatch::eventloop::MioEventloop;
use sip_dispatch::leg::{Destination, Leg, LegOptions, LegSpec, Protocol, SendStatus};
use sip_dispatch::packet::{Packet, Response};

fn udp_leg(v6: bool) -> Leg {
    Leg::bind(
        LegSpec {
            proto: Protocol::Udp,
            addr: loopback(v6),
        },
        LegOptions::default(),
    )
    .expect("bind udp leg")
}

fn raw_peer(v6: bool) -> UdpSocket {
    let s = UdpSocket::bind(loopback(v6)).expect("bind raw peer");
    s.set_read_timeout(Some(BOUND)).unwrap();
    s
}

fn host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

fn udp_dst(leg: &Leg) -> Destination {
    Destination::new(Protocol::Udp, leg.local_addr())
}

/// Sends a valid request from a raw peer and checks that it arrives: the
/// leg still serves.
fn still_serves(lp: &MioEventloop, leg: &Leg, events: &Events, peer: &UdpSocket, call_id: &str) {
    let before = events.packet_count();
    let text = raw_request(
        Protocol::Udp,
        &host(peer.local_addr().unwrap()),
        call_id,
        "",
    );
    peer.send_to(text.as_bytes(), leg.local_addr()).unwrap();
    assert!(
        run_until(lp, BOUND, || events.packet_count() > before),
        "the leg still serves"
    );
    let (p, _) = events.packets().pop().unwrap();
    assert_eq!(p.call_id(), Some(call_id));
}

macro_rules! both_families {
    ($($name:ident),* $(,)?) => {
        mod v4 { $( #[test] fn $name() { super::$name(false) } )* }
        mod v6 { $( #[test] fn $name() { super::$name(true) } )* }
    };
}

both_families!(
    request_carries_our_via_and_arrives_with_received_and_rport,
    response_with_our_via_goes_up_with_the_via_on,
    response_with_a_foreign_via_is_dropped_and_counted,
    truncated_request_is_answered_with_400_naming_the_problem,
    garbage_and_requests_without_via_are_dropped_and_counted,
    keepalives_are_counted_not_passed_up,
    send_to_a_closed_port_reports_unreachable,
    unreachable_is_reported_when_a_later_send_meets_the_icmp_error,
    receive_hook_false_drops_and_counts,
    send_hook_false_makes_the_datagram_vanish,
);

fn request_carries_our_via_and_arrives_with_received_and_rport(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (udp_leg(v6), udp_leg(v6));
    let _ea = attach(&a, &lp);
    let eb = attach(&b, &lp);

    let req = request_with_body("via-1", "hello");
    let original = req.to_bytes();
    let bytes = a.prepare_request(&req, "z9hG4bKours1", &udp_dst(&b));
    let (via, rest) = without_top_via(&bytes);
    let a_host = host(a.local_addr());
    assert_eq!(
        via,
        format!(
            "SIP/2.0/UDP {a_host}:{};branch=z9hG4bKours1;rport",
            a.local_addr().port()
        )
    );
    assert_eq!(rest.as_bytes(), &original[..], "only the Via is added");

    assert_eq!(
        a.send(Rc::from(bytes), &udp_dst(&b), None),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 1));
    let (packet, source) = eb.packets().pop().unwrap();
    assert_eq!(source.proto, Protocol::Udp);
    assert_eq!(source.addr, a.local_addr());
    assert_eq!(source.conn, None);
    let Packet::Request(got) = &packet else {
        panic!("a request: {packet}")
    };
    let top = got.top_via().unwrap();
    assert_eq!(top.transport(), "UDP");
    assert_eq!(top.host(), a_host);
    assert_eq!(top.port(), Some(a.local_addr().port()));
    assert_eq!(top.branch(), Some("z9hG4bKours1"));
    // RFC 3581 4: rport filled with the source port; then received is
    // added even though the sent-by host is the source address.
    assert_eq!(top.rport(), Some(Some(a.local_addr().port())));
    assert_eq!(
        top.received(),
        Some(a.local_addr().ip().to_string().as_str())
    );
    assert_eq!(got.vias().count(), 1);
    assert_eq!(got.body(), b"hello");
    let (stamped, rest) = without_top_via(&got.to_bytes());
    assert_eq!(
        stamped,
        format!(
            "SIP/2.0/UDP {a_host}:{port};branch=z9hG4bKours1;received={ip};rport={port}",
            port = a.local_addr().port(),
            ip = a.local_addr().ip()
        )
    );
    assert_eq!(
        rest.as_bytes(),
        &original[..],
        "everything but the Via byte for byte"
    );
    assert_eq!(a.stats().sent, 1);
    assert_eq!(b.stats().received, 1);
}

fn response_with_our_via_goes_up_with_the_via_on(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (udp_leg(v6), udp_leg(v6));
    let ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dst = udp_dst(&b);
    a.send(
        prepared(&a, &request("resp-1"), "z9hG4bKresp1", &dst),
        &dst,
        None,
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 1));
    let (packet, source) = eb.packets().pop().unwrap();
    let resp = Response::for_request(packet.as_request().unwrap(), 200, "OK");
    assert_eq!(
        b.send_response(&resp, &source.reply_destination(), None),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || ea.packet_count() == 1));
    let (packet, source) = ea.packets().pop().unwrap();
    assert_eq!(source.addr, b.local_addr());
    let Packet::Response(got) = &packet else {
        panic!("a response: {packet}")
    };
    assert_eq!(got.code(), 200);
    let top = got.top_via().unwrap();
    assert_eq!(
        top.branch(),
        Some("z9hG4bKresp1"),
        "the Via stays for the dispatcher to match"
    );
    assert_eq!(top.host(), host(a.local_addr()));
    assert_eq!(top.port(), Some(a.local_addr().port()));
    assert_eq!(a.stats().received, 1);
    assert_eq!(a.stats().dropped_foreign_via, 0);
}

fn response_with_a_foreign_via_is_dropped_and_counted(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = udp_leg(v6);
    let ea = attach(&a, &lp);
    let peer = raw_peer(v6);
    let response = |via: &str| {
        format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n\
             Call-ID: foreign\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let a_host = host(a.local_addr());
    let wrong_port = a.local_addr().port().wrapping_add(1).max(1);
    for via in [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKforeign".to_owned(),
        format!("SIP/2.0/UDP {a_host}:{wrong_port};branch=z9hG4bKforeign"),
        format!("SIP/2.0/UDP {a_host};branch=z9hG4bKforeign"),
    ] {
        peer.send_to(response(&via).as_bytes(), a.local_addr())
            .unwrap();
    }
    // The leg's own Via: passed up.
    let ours = format!(
        "SIP/2.0/UDP {a_host}:{};branch=z9hG4bKmine",
        a.local_addr().port()
    );
    peer.send_to(response(&ours).as_bytes(), a.local_addr())
        .unwrap();
    assert!(run_until(&lp, BOUND, || ea.packet_count() == 1));
    assert_eq!(a.stats().dropped_foreign_via, 3);
    assert_eq!(
        ea.packets()[0].0.top_via().unwrap().branch(),
        Some("z9hG4bKmine")
    );
    still_serves(&lp, &a, &ea, &peer, "after-foreign");
}

fn truncated_request_is_answered_with_400_naming_the_problem(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = udp_leg(v6);
    let ea = attach(&a, &lp);
    let peer = raw_peer(v6);
    let peer_host = host(peer.local_addr().unwrap());
    let bad = raw_request(Protocol::Udp, &peer_host, "trunc", "0123456789")
        .replace("Content-Length: 10", "Content-Length: 500");
    peer.send_to(bad.as_bytes(), a.local_addr()).unwrap();
    assert!(run_until(&lp, BOUND, || a.stats().bad_requests_answered == 1));
    assert_eq!(a.stats().parse_errors, 1);
    assert_eq!(ea.packet_count(), 0, "nothing goes up");

    let mut buf = [0u8; 65_536];
    let (n, from) = peer.recv_from(&mut buf).expect("the 400 arrives");
    assert_eq!(from, a.local_addr());
    let resp = Response::parse(&buf[..n]).expect("the 400 parses");
    assert_eq!(resp.code(), 400);
    assert!(
        resp.reason().contains("Content-Length 500"),
        "reason names the problem: {:?}",
        resp.reason()
    );
    assert_eq!(resp.top_via().unwrap().branch(), Some("z9hG4bKtrunc"));
    assert_eq!(resp.call_id(), Some("trunc"));
    assert_eq!(resp.cseq().unwrap().number, 1);
    still_serves(&lp, &a, &ea, &peer, "after-400");
}

fn garbage_and_requests_without_via_are_dropped_and_counted(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = udp_leg(v6);
    let ea = attach(&a, &lp);
    let peer = raw_peer(v6);
    peer.send_to(b"hello world, this is not SIP\r\n\r\n", a.local_addr())
        .unwrap();
    peer.send_to(&[0xff, 0xfe, 0x00, 0x41], a.local_addr())
        .unwrap();
    // A request that parses but has no Via: nowhere to answer.
    peer.send_to(request_text("no-via", "").as_bytes(), a.local_addr())
        .unwrap();
    // A truncated request without Via: not answerable either.
    let truncated = request_text("no-via-2", "").replace("Content-Length: 0", "Content-Length: 99");
    peer.send_to(truncated.as_bytes(), a.local_addr()).unwrap();
    still_serves(&lp, &a, &ea, &peer, "after-garbage");
    let s = a.stats();
    assert_eq!(s.parse_errors, 3);
    assert_eq!(s.dropped_no_via, 1);
    assert_eq!(s.bad_requests_answered, 0);
    assert_eq!(s.received, 1);
    peer.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    assert_eq!(
        peer.recv_from(&mut buf).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "garbage is not answered"
    );
}

fn keepalives_are_counted_not_passed_up(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = udp_leg(v6);
    let ea = attach(&a, &lp);
    let peer = raw_peer(v6);
    peer.send_to(b"\r\n\r\n", a.local_addr()).unwrap();
    peer.send_to(b"\r\n", a.local_addr()).unwrap();
    assert!(run_until(&lp, BOUND, || a.stats().keepalives == 2));
    assert_eq!(ea.len(), 0, "keep-alives are not passed up");
    assert_eq!(a.stats().parse_errors, 0);
    still_serves(&lp, &a, &ea, &peer, "after-keepalive");
}

fn send_to_a_closed_port_reports_unreachable(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = udp_leg(v6);
    let ea = attach(&a, &lp);
    let dead_sock = dead_port_on(v6);
    let dead = dead_sock.addr();
    let dst = Destination::new(Protocol::Udp, dead);
    assert_eq!(
        a.send(
            prepared(&a, &request("dead"), "z9hG4bKdead", &dst),
            &dst,
            None
        ),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || !ea.unreachable().is_empty()));
    let got = ea.unreachable();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.addr, dead);
    assert_eq!(got[0].0.proto, Protocol::Udp);
    assert_eq!(got[0].1, Errno::ECONNREFUSED);
    // The leg still sends and receives.
    let b = udp_leg(v6);
    let eb = attach(&b, &lp);
    let dst = udp_dst(&b);
    assert_eq!(
        a.send(
            prepared(&a, &request("alive"), "z9hG4bKalive", &dst),
            &dst,
            None
        ),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 1));
}

/// The ICMP error of a datagram can surface on the next send (the socket's
/// pending error): the leg must still report it for the right destination.
fn unreachable_is_reported_when_a_later_send_meets_the_icmp_error(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (udp_leg(v6), udp_leg(v6));
    let ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dead_sock = dead_port_on(v6);
    let dead = dead_sock.addr();
    let dead_dst = Destination::new(Protocol::Udp, dead);
    let live = udp_dst(&b);
    // No loop turn between the sends: loopback has queued the ICMP error
    // by the time the second send runs.
    assert_eq!(
        a.send(
            prepared(&a, &request("d1"), "z9hG4bKd1", &dead_dst),
            &dead_dst,
            None
        ),
        SendStatus::Sent
    );
    for i in 0..3 {
        let call_id = format!("live-{i}");
        assert_eq!(
            a.send(
                prepared(&a, &request(&call_id), "z9hG4bKl", &live),
                &live,
                None
            ),
            SendStatus::Sent
        );
    }
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 3
        && !ea.unreachable().is_empty()));
    let got = ea.unreachable();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0.addr, dead);
    assert_eq!(got[0].1, Errno::ECONNREFUSED);
    assert_eq!(a.stats().send_errors, 0);
}

fn receive_hook_false_drops_and_counts(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (udp_leg(v6), udp_leg(v6));
    let _ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    b.set_receive_hook(Some(Rc::new(
        move |p: &Packet, src: &sip_dispatch::leg::Source| {
            s.borrow_mut()
                .push((p.call_id().unwrap_or("").to_owned(), src.addr));
            p.call_id() != Some("drop-me")
        },
    )));
    let dst = udp_dst(&b);
    a.send(
        prepared(&a, &request("drop-me"), "z9hG4bK1", &dst),
        &dst,
        None,
    );
    a.send(
        prepared(&a, &request("keep-me"), "z9hG4bK2", &dst),
        &dst,
        None,
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 1
        && seen.borrow().len() == 2));
    assert_eq!(eb.packets()[0].0.call_id(), Some("keep-me"));
    assert_eq!(
        *seen.borrow(),
        vec![
            ("drop-me".to_owned(), a.local_addr()),
            ("keep-me".to_owned(), a.local_addr())
        ]
    );
    let s = b.stats();
    assert_eq!(s.dropped_by_hook, 1);
    assert_eq!(s.received, 1);
    // Cleared: everything goes up again.
    b.set_receive_hook(None);
    a.send(
        prepared(&a, &request("drop-me"), "z9hG4bK3", &dst),
        &dst,
        None,
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 2));
}

fn send_hook_false_makes_the_datagram_vanish(v6: bool) {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (udp_leg(v6), udp_leg(v6));
    let _ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    a.set_send_hook(Some(Rc::new(move |bytes: &[u8], dst: &Destination| {
        s.borrow_mut().push(dst.addr);
        !bytes.windows(6).any(|w| w == b"vanish")
    })));
    let dst = udp_dst(&b);
    assert_eq!(
        a.send(
            prepared(&a, &request("vanish"), "z9hG4bK1", &dst),
            &dst,
            None
        ),
        SendStatus::Sent
    );
    assert_eq!(
        a.send(
            prepared(&a, &request("arrive"), "z9hG4bK2", &dst),
            &dst,
            None
        ),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 1));
    // Datagrams on loopback keep their order: had the first left, it would
    // be here before the second.
    let got: Vec<_> = eb
        .packets()
        .iter()
        .map(|(p, _)| p.call_id().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["arrive"]);
    assert_eq!(*seen.borrow(), vec![b.local_addr(), b.local_addr()]);
    assert_eq!(a.stats().dropped_by_hook, 1);
    assert_eq!(a.stats().sent, 1);
    assert_eq!(b.stats().received, 1);
}

#[test]
fn ipv4_and_ipv6_legs_do_not_cross() {
    let a4 = udp_leg(false);
    let a6 = udp_leg(true);
    assert!(a4.can_deliver_to(Protocol::Udp, &"127.0.0.1:5060".parse().unwrap()));
    assert!(!a4.can_deliver_to(Protocol::Udp, &"[::1]:5060".parse().unwrap()));
    assert!(a6.can_deliver_to(Protocol::Udp, &"[::1]:5060".parse().unwrap()));
    assert!(!a6.can_deliver_to(Protocol::Udp, &"127.0.0.1:5060".parse().unwrap()));
    assert!(!a4.can_deliver_to(Protocol::Tcp, &"127.0.0.1:5060".parse().unwrap()));
}

#[test]
fn many_datagrams_in_one_readiness_all_arrive() {
    // More than one read budget's worth, sent before the loop runs.
    let lp = Rc::new(MioEventloop::new().unwrap());
    let opts = LegOptions {
        recv_buffer_size: Some(4 << 20),
        ..LegOptions::default()
    };
    let a = udp_leg(false);
    let b = Leg::bind(
        LegSpec {
            proto: Protocol::Udp,
            addr: loopback(false),
        },
        opts,
    )
    .unwrap();
    let _ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dst = udp_dst(&b);
    let n = 600;
    for i in 0..n {
        let st = a.send(
            prepared(&a, &request(&format!("burst-{i}")), "z9hG4bKb", &dst),
            &dst,
            None,
        );
        assert_ne!(st, SendStatus::Queued, "loopback takes it");
    }
    assert!(
        run_until(&lp, BOUND, || eb.packet_count() == n),
        "got {}",
        eb.packet_count()
    );
    let _ = Duration::ZERO;
}

#[test]
fn oversize_datagram_fails_with_emsgsize() {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (a, b) = (udp_leg(false), udp_leg(false));
    let _ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    let dst = udp_dst(&b);
    let mut req = request("huge");
    req.set_body(vec![b'x'; 70_000]);
    let st = a.send(prepared(&a, &req, "z9hG4bKhuge", &dst), &dst, Some(1));
    let SendStatus::Failed(e) = st else {
        panic!("{st:?}")
    };
    assert_eq!(e.errno(), Errno::EMSGSIZE);
    assert_eq!(a.stats().send_errors, 1);
    assert_eq!(a.stats().sent, 0);
    // Nothing was queued; the next datagram goes out.
    let st = a.send(
        prepared(&a, &request("small"), "z9hG4bKs", &dst),
        &dst,
        None,
    );
    assert_eq!(st, SendStatus::Sent);
    assert!(run_until(&lp, BOUND, || eb.packet_count() == 1));
}

/// Events a send deferred to the loop's next turn go to the sink of the
/// attachment they arose in, and a detach before that turn does not keep
/// the next attachment from reporting its own.
#[test]
fn deferred_events_survive_a_detach_and_reattach() {
    let (a, b) = (udp_leg(false), udp_leg(false));
    let lp1 = Rc::new(MioEventloop::new().unwrap());
    let ea1 = attach(&a, &lp1);
    let dead_sock = dead_port_on(false);
    let dead = Destination::new(Protocol::Udp, dead_sock.addr());
    let live = udp_dst(&b);
    // The second send usually meets the first one's ICMP error: its
    // Unreachable is deferred to lp1's next turn, which never comes.
    a.send(prepared(&a, &request("d1"), "z9hG4bK1", &dead), &dead, None);
    a.send(prepared(&a, &request("l1"), "z9hG4bK2", &live), &live, None);
    a.detach();
    let on_lp1 = ea1.unreachable().len();
    assert!(on_lp1 <= 1);

    let lp2 = Rc::new(MioEventloop::new().unwrap());
    let ea2 = attach(&a, &lp2);
    let _eb = attach(&b, &lp2);
    a.send(prepared(&a, &request("d2"), "z9hG4bK3", &dead), &dead, None);
    a.send(prepared(&a, &request("l2"), "z9hG4bK4", &live), &live, None);
    assert!(run_until(&lp2, BOUND, || !ea2.unreachable().is_empty()));
    assert_eq!(ea2.unreachable().len(), 1, "only the new send's error");
    assert_eq!(ea2.unreachable()[0].0.addr, dead.addr);
}

/// An INVITE that starts here gets a Contact naming the leg; a forwarded
/// one (it has a Via) keeps its Contact-less form: a proxy must not add one.
#[test]
fn contact_added_only_to_invites_that_start_here() {
    use sip_dispatch::leg::{Destination, Leg, LegOptions, Protocol};
    use sip_dispatch::packet::Packet;
    let leg = Leg::bind("udp:127.0.0.1:0".parse().unwrap(), LegOptions::default()).unwrap();
    let dst = Destination::new(Protocol::Udp, "127.0.0.1:5999".parse().unwrap());
    let invite = |via: &str| {
        let text = format!(
            "INVITE sip:b@127.0.0.1 SIP/2.0\r\n{via}From: <sip:alice@example.com>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\n\
             Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let Packet::Request(r) = Packet::parse(text.as_bytes()).unwrap() else {
            unreachable!()
        };
        r
    };
    let local = Packet::parse(&leg.prepare_request(&invite(""), "z9hG4bKc1", &dst)).unwrap();
    let port = leg.local_addr().port();
    assert_eq!(
        local.headers().get("Contact"),
        Some(format!("<sip:alice@127.0.0.1:{port}>").as_str())
    );
    let forwarded = invite("Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKup\r\n");
    let out = Packet::parse(&leg.prepare_request(&forwarded, "z9hG4bKc2", &dst)).unwrap();
    assert_eq!(out.headers().get("Contact"), None);
    assert_eq!(out.vias().count(), 2);
}

/// A leg bound to the wildcard address writes the address it sends from
/// towards the destination (learned from the routing table) into its Via
/// and Contact, never 0.0.0.0; responses to that address are its own.
#[test]
fn wildcard_leg_learns_its_source_address() {
    use sip_dispatch::leg::{Destination, Leg, LegOptions, Protocol};
    use sip_dispatch::packet::Packet;
    for (bind, dst) in [
        ("udp:0.0.0.0:0", "127.0.0.1:5999"),
        ("udp:[::]:0", "[::1]:5999"),
    ] {
        let leg = Leg::bind(bind.parse().unwrap(), LegOptions::default()).unwrap();
        assert!(leg.is_wildcard());
        let dst: std::net::SocketAddr = dst.parse().unwrap();
        let expected = if dst.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        };
        assert_eq!(leg.via_host_for(dst.ip()), expected);
        let text = "INVITE sip:b@x SIP/2.0\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:b@x>\r\n\
                    Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let Packet::Request(req) = Packet::parse(text.as_bytes()).unwrap() else {
            unreachable!()
        };
        let bytes = leg.prepare_request(&req, "z9hG4bKw", &Destination::new(Protocol::Udp, dst));
        let out = Packet::parse(&bytes).unwrap();
        let via = out.top_via().unwrap();
        assert_eq!(via.host(), expected);
        assert_eq!(via.port(), Some(leg.local_addr().port()));
        let port = leg.local_addr().port();
        assert_eq!(
            out.headers().get("Contact"),
            Some(format!("<sip:alice@{expected}:{port}>").as_str())
        );
    }
}

#[test]
fn sends_during_a_turn_go_out_together_in_order_when_it_ends() {
    use sip_dispatch::eventloop::Turn;
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = udp_leg(false);
    let _events = attach(&leg, &lp);
    let peer = raw_peer(false);
    peer.set_nonblocking(true).unwrap();
    let dst = Destination::new(Protocol::Udp, peer.local_addr().unwrap());
    let turn = Turn::begin();
    // 70 datagrams: two full batches go out on the way, 6 wait for the end.
    for i in 0..70u32 {
        let status = leg.send(Rc::from(format!("datagram {i}").into_bytes()), &dst, None);
        assert!(matches!(status, SendStatus::Sent), "{i}: {status:?}");
    }
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while let Ok((n, _)) = peer.recv_from(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(
        got.len(),
        64,
        "only the full batches left before the turn ended"
    );
    drop(turn);
    peer.set_nonblocking(false).unwrap();
    while got.len() < 70 {
        let (n, _) = peer.recv_from(&mut buf).expect("the rest arrives");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let want: Vec<String> = (0..70).map(|i| format!("datagram {i}")).collect();
    assert_eq!(got, want);
    assert_eq!(leg.stats().sent, 70);
}

#[test]
fn a_batched_send_the_kernel_refuses_is_reported_unreachable_and_the_rest_go() {
    use sip_dispatch::eventloop::Turn;
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = udp_leg(false);
    let events = attach(&leg, &lp);
    let peer = raw_peer(false);
    let good = Destination::new(Protocol::Udp, peer.local_addr().unwrap());
    // An IPv6 destination from an IPv4 socket: the kernel refuses it.
    let bad = Destination::new(Protocol::Udp, "[::1]:9".parse().unwrap());
    {
        let _turn = Turn::begin();
        leg.send(Rc::from(&b"one"[..]), &good, None);
        leg.send(Rc::from(&b"lost"[..]), &bad, None);
        leg.send(Rc::from(&b"two"[..]), &good, None);
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    for _ in 0..2 {
        let (n, _) = peer.recv_from(&mut buf).expect("datagram");
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(leg.stats().send_errors, 1);
    let unreachable = events.unreachable();
    assert_eq!(unreachable.len(), 1, "{unreachable:?}");
    assert_eq!(unreachable[0].0, bad);
}

#[test]
fn many_queued_requests_are_all_read_and_answered() {
    // recvmmsg reads in batches of 16 up to a budget of 256 per readiness:
    // 280 datagrams waiting at once all go up, none twice, in order. (280:
    // past the budget, and within what a default kernel's largest receive
    // buffer, 2 x 208 KiB, holds of them.)
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = Leg::bind(
        LegSpec {
            proto: Protocol::Udp,
            addr: loopback(false),
        },
        LegOptions {
            recv_buffer_size: Some(4 << 20),
            ..LegOptions::default()
        },
    )
    .unwrap();
    let events = attach(&leg, &lp);
    let peer = raw_peer(false);
    let via = host(peer.local_addr().unwrap());
    for i in 0..280 {
        let text = raw_request(Protocol::Udp, &via, &format!("many-{i}"), "");
        peer.send_to(text.as_bytes(), leg.local_addr()).unwrap();
    }
    assert!(run_until(&lp, BOUND, || events.packet_count() >= 280));
    let ids: Vec<String> = events
        .packets()
        .iter()
        .map(|(p, _)| p.call_id().unwrap_or_default().to_owned())
        .collect();
    let want: Vec<String> = (0..280).map(|i| format!("many-{i}")).collect();
    assert_eq!(ids, want);
}
