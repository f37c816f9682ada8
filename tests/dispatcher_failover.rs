//! RFC 3263 4.3 failover under virtual time: a 503 moves to the next
//! target (not passed up; with Retry-After the target is blacklisted for
//! later deliveries), a timeout moves to the next target (which is then
//! greylisted: tried last for 32 s).

#[path = "common/dispatch.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::{Outcomes, World, recording, request};
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId,
};
use sip_dispatch::dns::{DnsQuery, DnsRecord, DnsResolver};
use sip_dispatch::eventloop::Eventloop;
use sip_dispatch::leg::Source;
use sip_dispatch::packet::{Packet, Response};

/// SRV for example.test: 10.0.0.2 (priority 10), then 10.0.0.3 (20).
fn two_targets() -> DnsResolver {
    Rc::new(|q, answer| {
        let records = match q {
            DnsQuery::Srv(name) if name == "_sip._udp.example.test" => vec![
                DnsRecord::Srv {
                    priority: 10,
                    weight: 0,
                    port: 5060,
                    target: "10.0.0.2".into(),
                },
                DnsRecord::Srv {
                    priority: 20,
                    weight: 0,
                    port: 5060,
                    target: "10.0.0.3".into(),
                },
            ],
            _ => vec![],
        };
        answer(Ok(records));
    })
}

/// A UAS that answers every request with `code` (plus `extra` headers)
/// and counts what it saw.
fn uas(
    w: &World,
    addr: &str,
    code: u16,
    extra: Option<(&'static str, &'static str)>,
) -> (Dispatcher, Rc<Cell<u32>>) {
    let d = w.dispatcher(addr, DispatcherOptions::default());
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    d.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        let Packet::Request(req) = p else { return };
        if req.method().as_str() == "ACK" {
            return;
        }
        s.set(s.get() + 1);
        let mut resp = Response::for_request(
            &req,
            code,
            if code == 200 {
                "OK"
            } else {
                "Service Unavailable"
            },
        );
        resp.set_to_tag("x");
        if let Some((n, v)) = extra {
            resp.headers_mut().push(n, v);
        }
        d.deliver(resp, DeliverOptions::default()).unwrap();
    });
    (d, seen)
}

#[test]
fn a_503_with_retry_after_fails_over_and_blacklists() {
    let w = World::exact();
    let (_a, seen_a) = uas(&w, "10.0.0.2:5060", 503, Some(("Retry-After", "60")));
    let (_b, seen_b) = uas(&w, "10.0.0.3:5060", 200, None);
    let uac = w.dispatcher(
        "10.0.0.1:5060",
        DispatcherOptions {
            dns_resolver: Some(two_targets()),
            ..Default::default()
        },
    );
    let codes: Rc<RefCell<Vec<u16>>> = Rc::default();
    let c = codes.clone();
    uac.set_receiver(move |_: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Response(r) = p {
            c.borrow_mut().push(r.code());
        }
    });
    let outcomes: Outcomes = Rc::default();
    for (i, at) in [(1, 0u64), (2, 1_000), (3, 62_000)] {
        let weak = uac.downgrade();
        let mut opts = Some(recording(&w, &outcomes));
        w.lp.add_timer(
            sip_dispatch::eventloop::When::In(Duration::from_millis(at)),
            None,
            Box::new(move || {
                if let (Some(d), Some(opts)) = (weak.upgrade(), opts.take()) {
                    d.deliver(
                        request("INVITE", "sip:bob@example.test", &format!("bl-{i}"), 1),
                        opts,
                    )
                    .unwrap();
                }
            }),
        );
    }
    w.run_until(Duration::from_secs(70), || outcomes.borrow().len() == 3);
    let o: Vec<DeliveryOutcome> = outcomes.borrow().iter().map(|(_, o)| o.clone()).collect();
    assert_eq!(o, vec![DeliveryOutcome::Completed(200); 3]);
    // First delivery: 503 from A (ACKed, not passed up), then B. Second:
    // A is blacklisted for 60 s: straight to B. Third, after 62 s: A again.
    assert_eq!((seen_a.get(), seen_b.get()), (2, 3));
    assert!(
        !codes.borrow().contains(&503),
        "the 503 that triggered failover is not passed up"
    );
}

#[test]
fn a_timeout_fails_over_and_greylists() {
    let w = World::exact();
    let _silent = w.silent_peer("10.0.0.2:5060");
    let (_b, seen_b) = uas(&w, "10.0.0.3:5060", 200, None);
    let uac = w.dispatcher(
        "10.0.0.1:5060",
        DispatcherOptions {
            dns_resolver: Some(two_targets()),
            ..Default::default()
        },
    );
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("OPTIONS", "sip:bob@example.test", "gl-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(Duration::from_secs(60), || !outcomes.borrow().is_empty());
    assert_eq!(
        outcomes.borrow()[0],
        (32_002, DeliveryOutcome::Completed(200)),
        "Timer F on A, then B"
    );
    // A timed out: for 32 s it is tried last, so B answers at once.
    uac.deliver(
        request("OPTIONS", "sip:bob@example.test", "gl-2", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(Duration::from_secs(1), || outcomes.borrow().len() == 2);
    assert_eq!(outcomes.borrow()[1].1, DeliveryOutcome::Completed(200));
    assert_eq!(outcomes.borrow()[1].0 - outcomes.borrow()[0].0, 2);
    assert_eq!(seen_b.get(), 2);
}

/// The INVITE that fails over keeps exactly one Via, and the Contact the
/// first leg wrote into it gives way to the next leg's: a pending request
/// is kept as its sent bytes and read again for the next target.
#[test]
fn a_request_failing_over_to_another_leg_carries_that_legs_via_and_contact() {
    use sip_dispatch::leg::{Leg, LegOptions, Protocol};
    let w = World::exact();
    let (_a, seen_a) = uas(&w, "10.0.0.2:5060", 503, None);
    // B listens on TCP only.
    let tcp_leg = |addr: &str| {
        Leg::memory(
            &w.net,
            Protocol::Tcp,
            addr.parse().unwrap(),
            LegOptions::default(),
        )
        .unwrap()
    };
    let b = Dispatcher::new(
        vec![tcp_leg("10.0.0.3:5060")],
        Some(w.dyn_loop()),
        DispatcherOptions::default(),
    )
    .unwrap();
    /// The Via and Contact values of each request B saw.
    type Seen = Vec<(Vec<String>, Vec<String>)>;
    let seen_b: Rc<RefCell<Seen>> = Rc::default();
    let s = seen_b.clone();
    b.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        let Packet::Request(req) = p else { return };
        if req.method().as_str() == "ACK" {
            return;
        }
        let all = |name| {
            req.headers()
                .get_all(name)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        s.borrow_mut().push((
            all(sip_dispatch::packet::HeaderName::Via),
            all(sip_dispatch::packet::HeaderName::Contact),
        ));
        let mut resp = Response::for_request(&req, 200, "OK");
        resp.set_to_tag("x");
        d.deliver(resp, DeliverOptions::default()).unwrap();
    });
    let resolver: DnsResolver = Rc::new(|q, answer| {
        let srv = |target: &str| {
            vec![DnsRecord::Srv {
                priority: 10,
                weight: 0,
                port: 5060,
                target: target.into(),
            }]
        };
        let records = match q {
            DnsQuery::Srv(name) if name == "_sip._udp.example.test" => srv("10.0.0.2"),
            DnsQuery::Srv(name) if name == "_sip._tcp.example.test" => srv("10.0.0.3"),
            _ => vec![],
        };
        answer(Ok(records));
    });
    let uac = Dispatcher::new(
        vec![w.leg("10.0.0.1:5060"), tcp_leg("10.0.0.1:5070")],
        Some(w.dyn_loop()),
        DispatcherOptions {
            dns_resolver: Some(resolver),
            ..Default::default()
        },
    )
    .unwrap();
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("INVITE", "sip:bob@example.test", "fo-legs", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(Duration::from_secs(40), || outcomes.borrow().len() == 1);
    let o: Vec<DeliveryOutcome> = outcomes.borrow().iter().map(|(_, o)| o.clone()).collect();
    assert_eq!(o, vec![DeliveryOutcome::Completed(200)]);
    assert_eq!(seen_a.get(), 1);
    let seen = seen_b.borrow();
    assert_eq!(seen.len(), 1, "B saw the INVITE once: {seen:?}");
    let (vias, contacts) = &seen[0];
    assert_eq!(vias.len(), 1, "one Via: {vias:?}");
    assert!(
        vias[0].starts_with("SIP/2.0/TCP 10.0.0.1:5070;"),
        "the TCP leg's Via: {vias:?}"
    );
    assert_eq!(contacts.len(), 1, "one Contact: {contacts:?}");
    assert!(
        contacts[0].contains("10.0.0.1:5070") && contacts[0].contains("transport=tcp"),
        "the TCP leg's Contact: {contacts:?}"
    );
}
