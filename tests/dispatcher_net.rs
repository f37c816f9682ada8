#![allow(clippy::type_complexity)]
//! The dispatcher over real loopback sockets (IPv4 and IPv6), failover,
//! routing of responses by Via, re-entrancy, and resolution order.

#[path = "common/dispatch.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::request;
use sip_dispatch::Errno;
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, DnsQuery, DnsRecord,
    DnsResolver, LegFilter, LegId, ProxySpec,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Leg, LegOptions, LegSpec, Protocol, Source};
use sip_dispatch::packet::{Packet, Response, SipUri};

fn bind(spec: &str) -> Leg {
    Leg::bind(spec.parse::<LegSpec>().unwrap(), LegOptions::default()).unwrap()
}

/// A UAS answering every non-ACK request with 200 and counting them.
fn answering(lp: &Rc<dyn Eventloop>, legs: Vec<Leg>) -> (Dispatcher, Rc<Cell<u32>>) {
    let uas = Dispatcher::new(legs, Some(lp.clone()), DispatcherOptions::default()).unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    uas.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Request(req) = p {
            if req.method().as_str() != "ACK" {
                c.set(c.get() + 1);
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("uas");
                d.deliver(ok, DeliverOptions::default()).unwrap();
            }
        }
    });
    (uas, count)
}

fn outcome_cell() -> (Rc<RefCell<Option<DeliveryOutcome>>>, DeliverOptions) {
    let cell: Rc<RefCell<Option<DeliveryOutcome>>> = Rc::default();
    let c = cell.clone();
    (
        cell,
        DeliverOptions::with_callback(move |_, o| *c.borrow_mut() = Some(o)),
    )
}

#[test]
fn options_between_two_dispatchers_over_udp_and_tcp_v4_and_v6() {
    for (proto, host) in [
        ("udp", "127.0.0.1"),
        ("udp", "[::1]"),
        ("tcp", "127.0.0.1"),
        ("tcp", "[::1]"),
    ] {
        let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
        let server_leg = bind(&format!("{proto}:{host}:0"));
        let port = server_leg.local_addr().port();
        let (_uas, count) = answering(&lp, vec![server_leg]);
        let uac = Dispatcher::new(
            vec![bind(&format!("{proto}:{host}:0"))],
            Some(lp.clone()),
            DispatcherOptions::default(),
        )
        .unwrap();
        let got: Rc<RefCell<Vec<Response>>> = Rc::default();
        let g = got.clone();
        uac.set_receiver(move |_: &Dispatcher, p: Packet, _: LegId, _: &Source| {
            if let Packet::Response(r) = p {
                g.borrow_mut().push(r);
            }
        });
        let (outcome, opts) = outcome_cell();
        let uri = format!("sip:bob@{host}:{port};transport={proto}");
        uac.deliver(
            request("OPTIONS", &uri, &format!("net-{proto}-{host}"), 1),
            opts,
        )
        .unwrap();
        lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
            .unwrap();
        assert_eq!(
            *outcome.borrow(),
            Some(DeliveryOutcome::Completed(200)),
            "{proto} {host}"
        );
        assert_eq!(count.get(), 1);
        let r = &got.borrow()[0];
        assert_eq!(r.code(), 200);
        assert_eq!(r.to_tag(), Some("uas"));
    }
}

#[test]
fn connection_refused_fails_over_to_the_next_srv_target() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let server_leg = bind("udp:127.0.0.1:0");
    let live_port = server_leg.local_addr().port();
    let (_uas, count) = answering(&lp, vec![server_leg]);
    let resolver: DnsResolver = Rc::new(move |q, answer| {
        let records = match q {
            DnsQuery::Srv(name) if name == "_sip._udp.failover.test" => vec![
                DnsRecord::Srv {
                    priority: 10,
                    weight: 0,
                    port: dead_port,
                    target: "127.0.0.1".into(),
                },
                DnsRecord::Srv {
                    priority: 20,
                    weight: 0,
                    port: live_port,
                    target: "127.0.0.1".into(),
                },
            ],
            _ => vec![],
        };
        answer(Ok(records));
    });
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            dns_resolver: Some(resolver),
            ..Default::default()
        },
    )
    .unwrap();
    let (outcome, opts) = outcome_cell();
    let t0 = std::time::Instant::now();
    uac.deliver(request("OPTIONS", "sip:bob@failover.test", "fo-1", 1), opts)
        .unwrap();
    lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
        .unwrap();
    assert_eq!(*outcome.borrow(), Some(DeliveryOutcome::Completed(200)));
    assert_eq!(count.get(), 1);
    // The ICMP error moved on at once, not after a retransmission timeout.
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn connection_refused_is_reported_when_nothing_else_is_left() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0"), bind("tcp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    for transport in ["udp", "tcp"] {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        let (outcome, opts) = outcome_cell();
        let uri = format!("sip:bob@127.0.0.1:{port};transport={transport}");
        uac.deliver(
            request("OPTIONS", &uri, &format!("refused-{transport}"), 1),
            opts,
        )
        .unwrap();
        lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
            .unwrap();
        match &*outcome.borrow() {
            Some(DeliveryOutcome::Failed(e)) => {
                assert_eq!(e.errno(), Errno::ECONNREFUSED, "{transport}: {e}")
            }
            other => panic!("{transport}: {other:?}"),
        }
    }
}

#[test]
fn responses_are_routed_by_via_without_server_transactions() {
    // A stateless element answers with deliver(response) and no leg or
    // destination: the response goes where the top Via says (rport).
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let stateless = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            server_transactions: Some(false),
            do_retransmits: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let port = stateless.get_legs(&LegFilter::default())[0]
        .1
        .local_addr()
        .port();
    stateless.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Request(req) = p {
            d.deliver(
                Response::for_request(&req, 404, "Not Here"),
                DeliverOptions::default(),
            )
            .unwrap();
        }
    });
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    let (outcome, opts) = outcome_cell();
    uac.deliver(
        request("OPTIONS", &format!("sip:x@127.0.0.1:{port}"), "via-1", 1),
        opts,
    )
    .unwrap();
    lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
        .unwrap();
    assert_eq!(*outcome.borrow(), Some(DeliveryOutcome::Completed(404)));
}

#[test]
fn receiver_may_deliver_cancel_and_remove_its_own_leg() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let server_leg = bind("udp:127.0.0.1:0");
    let port = server_leg.local_addr().port();
    let uas = Dispatcher::new(
        vec![server_leg],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let l = log.clone();
    uas.set_receiver(move |d: &Dispatcher, p: Packet, leg: LegId, _: &Source| {
        let Packet::Request(req) = p else { return };
        // deliver from inside receive ...
        let id = d
            .deliver(
                Response::for_request(&req, 200, "OK"),
                DeliverOptions::default(),
            )
            .unwrap();
        // ... cancel from inside receive (already sent over UDP: nothing to cancel) ...
        l.borrow_mut().push(format!(
            "cancel={}",
            d.cancel_delivery(sip_dispatch::dispatcher::Cancel::Entry(id))
        ));
        // ... and remove the leg the request came in on.
        l.borrow_mut()
            .push(format!("removed={}", d.remove_leg(leg)));
        l.borrow_mut()
            .push(format!("legs={}", d.get_legs(&LegFilter::default()).len()));
    });
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    let (outcome, opts) = outcome_cell();
    uac.deliver(
        request("OPTIONS", &format!("sip:x@127.0.0.1:{port}"), "reent", 1),
        opts,
    )
    .unwrap();
    lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
        .unwrap();
    assert_eq!(*outcome.borrow(), Some(DeliveryOutcome::Completed(200)));
    assert_eq!(
        *log.borrow(),
        vec!["cancel=false", "removed=true", "legs=0"]
    );
}

#[test]
fn remove_leg_fails_its_pending_deliveries_with_enetdown() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new_virtual());
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    let leg = uac.get_legs(&LegFilter::default())[0].0;
    let (outcome, opts) = outcome_cell();
    uac.deliver(
        request("INVITE", &format!("sip:x@127.0.0.1:{port}"), "rm", 1),
        opts,
    )
    .unwrap();
    assert!(uac.remove_leg(leg));
    assert!(outcome.borrow().is_none(), "not inside remove_leg");
    lp.run(Some(Duration::from_secs(1)), &|| outcome.borrow().is_some())
        .unwrap();
    match &*outcome.borrow() {
        Some(DeliveryOutcome::Failed(e)) => assert_eq!(e.errno(), Errno::ENETDOWN),
        other => panic!("{other:?}"),
    }
    assert_eq!(uac.stats().pending_deliveries, 0);
}

#[test]
fn tcp_requests_are_not_retransmitted_but_time_out() {
    // A TCP listener that accepts and never answers, under virtual time.
    let lp = Rc::new(MioEventloop::new_virtual());
    let dlp: Rc<dyn Eventloop> = lp.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let uac = Dispatcher::new(
        vec![bind("tcp:127.0.0.1:0")],
        Some(dlp),
        DispatcherOptions::default(),
    )
    .unwrap();
    let (outcome, opts) = outcome_cell();
    let start = lp.now();
    uac.deliver(
        request(
            "OPTIONS",
            &format!("sip:x@127.0.0.1:{port};transport=tcp"),
            "tcp-to",
            1,
        ),
        opts,
    )
    .unwrap();
    let at: Rc<Cell<Option<Duration>>> = Rc::default();
    let (a, l2) = (at.clone(), lp.clone());
    lp.run(Some(Duration::from_secs(60)), &|| {
        if outcome.borrow().is_some() && a.get().is_none() {
            a.set(Some(l2.now() - start));
        }
        outcome.borrow().is_some()
    })
    .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = std::io::Read::read(&mut conn, &mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(
        text.matches("OPTIONS sip:").count(),
        1,
        "sent once, never retransmitted over TCP"
    );
    match &*outcome.borrow() {
        Some(DeliveryOutcome::Failed(e)) => assert_eq!(e.errno(), Errno::ETIMEDOUT),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        at.get(),
        Some(Duration::from_secs(32)),
        "Timer F = 64*T1 still applies"
    );
}

#[test]
fn large_requests_switch_to_tcp_when_udp_was_the_default() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    // The UAS listens on UDP and TCP on the same port number.
    let tcp_leg = bind("tcp:127.0.0.1:0");
    let port = tcp_leg.local_addr().port();
    let udp_leg = bind(&format!("udp:127.0.0.1:{port}"));
    let uas = Dispatcher::new(
        vec![udp_leg, tcp_leg],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    let transports: Rc<RefCell<Vec<Protocol>>> = Rc::default();
    let t = transports.clone();
    uas.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, from: &Source| {
        if let Packet::Request(req) = p {
            t.borrow_mut().push(from.proto);
            d.deliver(
                Response::for_request(&req, 200, "OK"),
                DeliverOptions::default(),
            )
            .unwrap();
        }
    });
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0"), bind("tcp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    for (size, call) in [(100usize, "small"), (2000, "large")] {
        let mut p = request("MESSAGE", &format!("sip:x@127.0.0.1:{port}"), call, 1);
        p.message_mut().set_body(vec![b'x'; size]);
        let (outcome, opts) = outcome_cell();
        uac.deliver(p, opts).unwrap();
        lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
            .unwrap();
        assert_eq!(
            *outcome.borrow(),
            Some(DeliveryOutcome::Completed(200)),
            "{call}"
        );
    }
    assert_eq!(*transports.borrow(), vec![Protocol::Udp, Protocol::Tcp]);
    // An explicit transport=udp is not switched (UDP fragments instead).
    let mut p = request(
        "MESSAGE",
        &format!("sip:x@127.0.0.1:{port};transport=udp"),
        "explicit",
        1,
    );
    p.message_mut().set_body(vec![b'x'; 2000]);
    let (outcome, opts) = outcome_cell();
    uac.deliver(p, opts).unwrap();
    lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
        .unwrap();
    assert_eq!(transports.borrow().last(), Some(&Protocol::Udp));
}

#[test]
fn resolution_order_domain2proxy_then_outgoing_proxy_then_ip() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let mk = |lp: &Rc<dyn Eventloop>| {
        let leg = bind("udp:127.0.0.1:0");
        let port = leg.local_addr().port();
        let (d, count) = answering(lp, vec![leg]);
        (d, count, port)
    };
    let (_p1, by_domain, p1) = mk(&lp);
    let (_p2, by_proxy, p2) = mk(&lp);
    let (_p3, by_ip, p3) = mk(&lp);
    let spec = |p: u16| format!("127.0.0.1:{p}").parse::<ProxySpec>().unwrap();
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            domain2proxy: vec![("*.example.com".into(), spec(p1))],
            outgoing_proxy: Some(spec(p2)),
            ..Default::default()
        },
    )
    .unwrap();
    for (uri, call) in [
        ("sip:a@example.com".to_owned(), "d1"),
        ("sip:a@sub.example.com".to_owned(), "d2"),
        ("sip:a@other.org".to_owned(), "d3"),
        (format!("sip:a@127.0.0.1:{p3}"), "d4"),
    ] {
        let (outcome, opts) = outcome_cell();
        uac.deliver(request("OPTIONS", &uri, call, 1), opts)
            .unwrap();
        lp.run(Some(Duration::from_secs(5)), &|| outcome.borrow().is_some())
            .unwrap();
        assert_eq!(
            *outcome.borrow(),
            Some(DeliveryOutcome::Completed(200)),
            "{uri}"
        );
    }
    // An IP literal URI still goes to the outgoing proxy (it comes first).
    assert_eq!((by_domain.get(), by_proxy.get(), by_ip.get()), (2, 2, 0));

    // resolve_uri: allowed protocols in order, only legs that can.
    let got: Rc<RefCell<Option<Vec<(Protocol, SocketAddr)>>>> = Rc::default();
    let g = got.clone();
    let plain = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0"), bind("tcp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            outgoing_proxy: Some("127.0.0.1:5099".parse().unwrap()),
            ..Default::default()
        },
    )
    .unwrap();
    plain.resolve_uri(
        &SipUri::parse("sip:x@example.net").unwrap(),
        &[Protocol::Tcp, Protocol::Udp],
        None,
        move |_, r| {
            *g.borrow_mut() = Some(
                r.unwrap()
                    .into_iter()
                    .map(|t| (t.dst.proto, t.dst.addr))
                    .collect(),
            )
        },
    );
    lp.run(Some(Duration::from_secs(1)), &|| got.borrow().is_some())
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:5099".parse().unwrap();
    assert_eq!(
        got.borrow().clone().unwrap(),
        vec![(Protocol::Tcp, addr), (Protocol::Udp, addr)]
    );
}

/// What `resolve_uri` hands its callback, after running the loop.
fn resolve_via_loop(
    lp: &Rc<dyn Eventloop>,
    d: &Dispatcher,
    uri: &SipUri,
    allowed_proto: &[Protocol],
    allowed_legs: Option<&[LegId]>,
) -> Result<Vec<(LegId, Protocol, SocketAddr)>, Errno> {
    let got: Rc<RefCell<Option<Result<Vec<_>, Errno>>>> = Rc::default();
    let g = got.clone();
    d.resolve_uri(uri, allowed_proto, allowed_legs, move |_, r| {
        *g.borrow_mut() = Some(
            r.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.leg, t.dst.proto, t.dst.addr))
                    .collect()
            })
            .map_err(|e| e.errno()),
        );
    });
    // Not inside the call, even without a lookup.
    assert!(got.borrow().is_none(), "{uri}: callback inside resolve_uri");
    lp.run(Some(Duration::from_secs(2)), &|| got.borrow().is_some())
        .unwrap();
    got.borrow_mut().take().unwrap()
}

#[test]
fn resolve_uri_now_agrees_with_resolve_uri_and_declines_names() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let mk = |legs: &[&str], options: DispatcherOptions| {
        Dispatcher::new(
            legs.iter().map(|s| bind(s)).collect(),
            Some(lp.clone()),
            options,
        )
        .unwrap()
    };
    let plain = mk(&["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], Default::default());
    let tcp_only = mk(&["tcp:127.0.0.1:0"], Default::default());
    let mapped = mk(
        &["udp:127.0.0.1:0", "tcp:127.0.0.1:0"],
        DispatcherOptions {
            domain2proxy: vec![(
                "*.example.com".into(),
                "tcp:127.0.0.1:5071".parse().unwrap(),
            )],
            outgoing_proxy: Some("[::1]:5072".parse().unwrap()),
            ..Default::default()
        },
    );
    let v6 = mk(&["udp:[::1]:0"], Default::default());
    let udp_leg = plain.get_legs(&LegFilter::default())[0].0;
    let tcp_leg = plain.get_legs(&LegFilter::default())[1].0;
    let a = |s: &str| s.parse::<SocketAddr>().unwrap();
    let cases: Vec<(
        &Dispatcher,
        &str,
        Vec<Protocol>,
        Option<Vec<LegId>>,
        Result<Vec<(Protocol, SocketAddr)>, Errno>,
    )> = vec![
        // RFC 3263 4.1: an IP literal without transport is UDP.
        (
            &plain,
            "sip:a@127.0.0.1:5070",
            vec![],
            None,
            Ok(vec![(Protocol::Udp, a("127.0.0.1:5070"))]),
        ),
        // The allowed transports decide, in their order (an IP literal
        // without transport: the first of them only, RFC 3263 4.1).
        (
            &plain,
            "sip:a@127.0.0.1",
            vec![Protocol::Tcp, Protocol::Udp],
            None,
            Ok(vec![(Protocol::Tcp, a("127.0.0.1:5060"))]),
        ),
        (
            &plain,
            "sip:a@127.0.0.1;transport=tcp",
            vec![],
            None,
            Ok(vec![(Protocol::Tcp, a("127.0.0.1:5060"))]),
        ),
        // maddr wins over the host.
        (
            &plain,
            "sip:a@example.org;maddr=127.0.0.9",
            vec![],
            None,
            Ok(vec![(Protocol::Udp, a("127.0.0.9:5060"))]),
        ),
        // Only TCP legs: TCP, not an error.
        (
            &tcp_only,
            "sip:a@127.0.0.1:5070",
            vec![],
            None,
            Ok(vec![(Protocol::Tcp, a("127.0.0.1:5070"))]),
        ),
        // No TLS leg for a sips: URI.
        (
            &plain,
            "sips:a@127.0.0.1",
            vec![],
            None,
            Err(Errno::ENOPROTOOPT),
        ),
        // No leg of that address family.
        (
            &v6,
            "sip:a@127.0.0.1",
            vec![],
            None,
            Err(Errno::EHOSTUNREACH),
        ),
        // Allowed legs restrict the targets.
        (
            &plain,
            "sip:a@127.0.0.1",
            vec![],
            Some(vec![udp_leg]),
            Ok(vec![(Protocol::Udp, a("127.0.0.1:5060"))]),
        ),
        (
            &plain,
            "sip:a@127.0.0.1",
            vec![Protocol::Udp],
            Some(vec![tcp_leg]),
            Err(Errno::EHOSTUNREACH),
        ),
        // A name mapped to a proxy given as an IP, and the outgoing proxy.
        (
            &mapped,
            "sip:a@b.example.com",
            vec![],
            None,
            Ok(vec![(Protocol::Tcp, a("127.0.0.1:5071"))]),
        ),
        (
            &mapped,
            "sip:a@127.0.0.1:5070",
            vec![],
            None,
            Err(Errno::EHOSTUNREACH),
        ),
        (
            &v6,
            "sip:a@[::1]:5070",
            vec![],
            None,
            Ok(vec![(Protocol::Udp, a("[::1]:5070"))]),
        ),
    ];
    for (d, uri, protos, legs, want) in cases {
        let uri = SipUri::parse(uri).unwrap();
        let now = d
            .resolve_uri_now(&uri, &protos, legs.as_deref())
            .unwrap_or_else(|| panic!("{uri}: needs no lookup"))
            .map(|ts| {
                ts.into_iter()
                    .map(|t| (t.leg, t.dst.proto, t.dst.addr))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.errno());
        let later = resolve_via_loop(&lp, d, &uri, &protos, legs.as_deref());
        assert_eq!(now, later, "{uri}");
        let without_legs = now.map(|ts| ts.into_iter().map(|(_, p, a)| (p, a)).collect::<Vec<_>>());
        assert_eq!(without_legs, want, "{uri}");
    }
    // A name needs DNS (the outgoing proxy is an IPv6 literal with no
    // IPv6 leg, so `mapped` still answers at once, with an error).
    for (d, uri) in [
        (&plain, "sip:a@example.net"),
        (&plain, "sip:a@example.net:5070"),
    ] {
        assert!(
            d.resolve_uri_now(&SipUri::parse(uri).unwrap(), &[], None)
                .is_none(),
            "{uri}"
        );
    }
    assert!(
        mapped
            .resolve_uri_now(&SipUri::parse("sip:a@example.net").unwrap(), &[], None)
            .is_some()
    );
}

#[test]
fn a_response_whose_connection_closed_opens_a_new_one_to_the_via() {
    // RFC 3261 18.2.2: the request came over TCP, the client closed that
    // connection before the answer; the server opens a connection to the
    // Via's received address and sent-by port and sends the answer there.
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let server_leg = bind("tcp:127.0.0.1:0");
    let server_addr = server_leg.local_addr();
    let uas = Dispatcher::new(
        vec![server_leg.clone()],
        Some(lp.clone()),
        DispatcherOptions::default(),
    )
    .unwrap();
    let pending: Rc<RefCell<Vec<sip_dispatch::packet::Request>>> = Rc::default();
    let p = pending.clone();
    uas.set_receiver(
        move |_: &Dispatcher, packet: Packet, _: LegId, _: &Source| {
            if let Packet::Request(req) = packet {
                p.borrow_mut().push(req);
            }
        },
    );
    // The client's own listener: where the Via says responses go.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let via_port = listener.local_addr().unwrap().port();
    let text = format!(
        "OPTIONS sip:x@{server_addr} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:{via_port};branch=z9hG4bK-closed-1\r\n\
         From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:x@{server_addr}>\r\n\
         Call-ID: closed-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let mut first = TcpStream::connect(server_addr).unwrap();
    first.write_all(text.as_bytes()).unwrap();
    lp.run(Some(Duration::from_secs(5)), &|| {
        !pending.borrow().is_empty()
    })
    .unwrap();
    drop(first);
    lp.run(Some(Duration::from_secs(5)), &|| {
        server_leg.stats().connections_closed >= 1
    })
    .unwrap();
    assert_eq!(server_leg.stats().connections_closed, 1);
    let req = pending.borrow_mut().pop().unwrap();
    let mut ok = Response::for_request(&req, 200, "OK");
    ok.set_to_tag("uas");
    uas.deliver(ok, DeliverOptions::default()).unwrap();
    // Accept the new connection and read the answer, pumping the loop.
    let mut stream = None;
    let mut got = Vec::new();
    for _ in 0..500 {
        lp.run(Some(Duration::from_millis(10)), &|| false).unwrap();
        if stream.is_none() {
            if let Ok((s, _)) = listener.accept() {
                s.set_nonblocking(true).unwrap();
                stream = Some(s);
            }
        }
        if let Some(s) = stream.as_mut() {
            let mut buf = [0u8; 4096];
            if let Ok(n) = s.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text:?}");
    assert!(text.contains("branch=z9hG4bK-closed-1"), "{text:?}");
}
