#![allow(clippy::type_complexity)]
//! Retransmission and transaction timers under virtual time (RFC 3261
//! 17.1.1.2, 17.1.2.2, 17.2.1, 13.3.1.4): the exact times are listed in
//! the assertions. The one-way delay of the simulated network is 1 ms.

#[path = "common/dispatch.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use sip_dispatch::Errno;
use sip_dispatch::dispatcher::{
    Cancel, DeliverOptions, DeliveryId, DeliveryOutcome, Dispatcher, DispatcherOptions, Timers,
};
use sip_dispatch::eventloop::Eventloop;
use sip_dispatch::leg::{Destination, Protocol, Source};
use sip_dispatch::packet::{Packet, Response};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn failed_with(o: &DeliveryOutcome) -> Option<Errno> {
    match o {
        DeliveryOutcome::Failed(e) => Some(e.errno()),
        _ => None,
    }
}

#[test]
fn invite_retransmits_at_t1_doubling_without_cap_then_times_out() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("INVITE", "sip:bob@10.0.0.2", "inv-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    // Sent at 0, then T1, 2T1, 4T1, 8T1, 16T1 after each (1 ms transit).
    assert_eq!(peer.times(), vec![1, 501, 1501, 3501, 7501, 15501, 31501]);
    let o = outcomes.borrow();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].0, 32_000, "Timer B = 64*T1");
    assert_eq!(failed_with(&o[0].1), Some(Errno::ETIMEDOUT));
    // Every copy is the same bytes: the same branch.
    let branches: Vec<String> = peer
        .got
        .borrow()
        .iter()
        .map(|(_, p, _)| p.top_via().unwrap().branch().unwrap().to_owned())
        .collect();
    assert!(
        branches
            .iter()
            .all(|b| *b == branches[0] && b.starts_with("z9hG4bK"))
    );
    assert_eq!(uac.stats().pending_deliveries, 0);
    assert_eq!(uac.stats().timers, 0);
}

#[test]
fn non_invite_retransmits_capped_at_t2() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "opt-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    assert_eq!(
        peer.times(),
        vec![
            1, 501, 1501, 3501, 7501, 11501, 15501, 19501, 23501, 27501, 31501
        ]
    );
    assert_eq!(outcomes.borrow()[0].0, 32_000, "Timer F = 64*T1");
    assert_eq!(failed_with(&outcomes.borrow()[0].1), Some(Errno::ETIMEDOUT));
}

#[test]
fn configured_t1_t2_scale_the_schedule() {
    let w = World::exact();
    let timers = Timers {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        ..Timers::default()
    };
    let uac = w.dispatcher(
        "10.0.0.1:5060",
        DispatcherOptions {
            timers,
            ..Default::default()
        },
    );
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("MESSAGE", "sip:bob@10.0.0.2", "msg-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    assert_eq!(
        peer.times(),
        vec![
            1, 101, 301, 701, 1101, 1501, 1901, 2301, 2701, 3101, 3501, 3901, 4301, 4701, 5101,
            5501, 5901, 6301
        ]
    );
    assert_eq!(outcomes.borrow()[0].0, 6400);
}

/// A UAS built on a dispatcher that answers with the given responses, in
/// order, after the given delays.
fn scripted_uas(
    w: &World,
    addr: &str,
    script: Vec<(u64, u16)>,
    options: DispatcherOptions,
) -> (Dispatcher, Rc<RefCell<Vec<(u64, Packet)>>>) {
    let uas = w.dispatcher(addr, options);
    let seen: Rc<RefCell<Vec<(u64, Packet)>>> = Rc::default();
    let (s, lp, start) = (seen.clone(), w.lp.clone(), w.start);
    uas.set_receiver(move |d: &Dispatcher, p: Packet, _leg, _from: &Source| {
        s.borrow_mut()
            .push(((lp.now() - start).as_millis() as u64, p.clone()));
        let Packet::Request(req) = p else { return };
        if req.method().as_str() == "ACK" {
            return;
        }
        for (after, code) in script.clone() {
            let mut resp =
                Response::for_request(&req, code, if code < 200 { "Ringing" } else { "Final" });
            if code > 100 {
                resp.set_to_tag("uas-tag");
            }
            let wd = d.downgrade();
            d.add_timer(
                sip_dispatch::eventloop::When::In(Duration::from_millis(after)),
                None,
                Box::new(move || {
                    if let Some(d) = wd.upgrade() {
                        d.deliver(resp.clone(), DeliverOptions::default()).unwrap();
                    }
                }),
            );
        }
    });
    (uas, seen)
}

/// Has `peer` send `bytes` to `dst` after `at` ms of virtual time.
fn send_at(w: &World, peer: &Peer, bytes: &Rc<[u8]>, dst: &Destination, at: u64) {
    let (leg, bytes, dst) = (peer.leg.clone(), bytes.clone(), dst.clone());
    w.lp.add_timer(
        sip_dispatch::eventloop::When::In(Duration::from_millis(at)),
        None,
        Box::new(move || {
            leg.send(bytes.clone(), &dst, None);
        }),
    );
}

#[test]
fn provisional_stops_invite_retransmissions_and_timer_c_ends_it() {
    let w = World::exact();
    let timers = Timers {
        timer_c: Some(secs(60)),
        ..Timers::default()
    };
    let uac = w.dispatcher(
        "10.0.0.1:5060",
        DispatcherOptions {
            timers,
            ..Default::default()
        },
    );
    // 180 after 700 ms (after the first retransmission at 500 ms), never a final.
    let (_uas, seen) = scripted_uas(
        &w,
        "10.0.0.2:5060",
        vec![(700, 180)],
        DispatcherOptions::default(),
    );
    let got: Rc<RefCell<Vec<(u64, u16)>>> = Rc::default();
    let (g, lp, start) = (got.clone(), w.lp.clone(), w.start);
    uac.set_receiver(move |_: &Dispatcher, p: Packet, _, _: &Source| {
        if let Packet::Response(r) = p {
            g.borrow_mut()
                .push(((lp.now() - start).as_millis() as u64, r.code()));
        }
    });
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("INVITE", "sip:bob@10.0.0.2", "inv-c", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(300), || !outcomes.borrow().is_empty());
    // The UAS saw the INVITE once: its retransmission at 500 ms was
    // absorbed by its server transaction, so only one 180 was scheduled.
    let invites: Vec<u64> = seen.borrow().iter().map(|(t, _)| *t).collect();
    assert_eq!(invites, vec![1]);
    assert_eq!(*got.borrow(), vec![(702, 180)]);
    let o = outcomes.borrow();
    assert_eq!(o[0].0, 702 + 60_000, "Timer C after the provisional");
    assert_eq!(failed_with(&o[0].1), Some(Errno::ETIMEDOUT));
}

#[test]
fn non_invite_provisional_slows_retransmissions_to_t2() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "opt-100", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    // Answer the first copy with 100 Trying at 600 ms (after the 500 ms
    // retransmission).
    let p = peer.leg.clone();
    let got = peer.got.clone();
    w.lp.add_timer(
        sip_dispatch::eventloop::When::In(Duration::from_millis(600)),
        None,
        Box::new(move || {
            let (_, first, from) = got.borrow()[0].clone();
            let Packet::Request(req) = first else {
                panic!()
            };
            let trying = Response::for_request(&req, 100, "Trying");
            p.send_response(&trying, &from.reply_destination(), None);
        }),
    );
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    // 1, 501 (T1); the 100 arrives at 601; the next retransmission was
    // already due at 1501 (interval 2*T1 = 1 s), and from then every T2.
    assert_eq!(
        peer.times(),
        vec![1, 501, 1501, 5501, 9501, 13501, 17501, 21501, 25501, 29501]
    );
    assert_eq!(
        outcomes.borrow()[0].0,
        32_000,
        "Timer F still applies in Proceeding"
    );
}

#[test]
fn final_response_completes_and_retransmissions_are_absorbed() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let seen: Rc<RefCell<Vec<u16>>> = Rc::default();
    let s = seen.clone();
    uac.set_receiver(move |_: &Dispatcher, p: Packet, _, _: &Source| {
        if let Packet::Response(r) = p {
            // Our own Via was removed before the receiver saw it.
            assert_eq!(r.vias().count(), 0);
            s.borrow_mut().push(r.code());
        }
    });
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "opt-ok", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(1), || !peer.got.borrow().is_empty());
    let (_, first, from) = peer.got.borrow()[0].clone();
    let Packet::Request(req) = first else {
        panic!()
    };
    let mut ok = Response::for_request(&req, 200, "OK");
    ok.set_to_tag("t1");
    // The final response, and two retransmissions of it.
    for _ in 0..3 {
        peer.leg.send_response(&ok, &from.reply_destination(), None);
    }
    w.run_until(secs(60), || false);
    assert_eq!(*seen.borrow(), vec![200]);
    assert_eq!(outcomes.borrow().len(), 1);
    assert_eq!(outcomes.borrow()[0], (2, DeliveryOutcome::Completed(200)));
    // No retransmission after the final response (it came at 2 ms).
    assert_eq!(peer.times(), vec![1]);
    assert_eq!(
        uac.stats().pending_deliveries,
        0,
        "Timer K ended the transaction"
    );
}

#[test]
fn non_2xx_to_invite_is_acked_by_the_dispatcher_each_time() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let seen: Rc<RefCell<Vec<u16>>> = Rc::default();
    let s = seen.clone();
    uac.set_receiver(move |_: &Dispatcher, p: Packet, _, _: &Source| {
        if let Packet::Response(r) = p {
            s.borrow_mut().push(r.code());
        }
    });
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("INVITE", "sip:bob@10.0.0.2", "inv-486", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(1), || !peer.got.borrow().is_empty());
    let (_, first, from) = peer.got.borrow()[0].clone();
    let Packet::Request(invite) = first else {
        panic!()
    };
    let mut busy = Response::for_request(&invite, 486, "Busy Here");
    busy.set_to_tag("busy1");
    peer.leg
        .send_response(&busy, &from.reply_destination(), None);
    w.run_until(secs(1), || peer.got.borrow().len() >= 2);
    peer.leg
        .send_response(&busy, &from.reply_destination(), None);
    w.run_until(secs(60), || false);
    assert_eq!(peer.methods(), vec!["INVITE", "ACK", "ACK"]);
    let got = peer.got.borrow();
    let Packet::Request(ack) = &got[1].1 else {
        panic!()
    };
    // RFC 3261 17.1.1.3: same branch, same Request-URI, To with the tag,
    // CSeq number with method ACK.
    assert_eq!(
        ack.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    assert_eq!(ack.uri(), invite.uri());
    assert_eq!(ack.to_tag(), Some("busy1"));
    assert_eq!(ack.cseq().unwrap().to_string(), "1 ACK");
    assert_eq!(
        *seen.borrow(),
        vec![486],
        "the retransmitted 486 is absorbed"
    );
    assert_eq!(outcomes.borrow()[0].1, DeliveryOutcome::Completed(486));
    assert_eq!(uac.stats().pending_deliveries, 0, "Timer D ended it");
}

#[test]
fn server_absorbs_and_answers_retransmissions_from_the_cache() {
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let (uas, seen) = scripted_uas(
        &w,
        "10.0.0.2:5060",
        vec![(1000, 200)],
        DispatcherOptions::default(),
    );
    let req = request("OPTIONS", "sip:bob@10.0.0.2", "cache-1", 1);
    let Packet::Request(r) = req else { panic!() };
    let dst = Destination::new(Protocol::Udp, "10.0.0.2:5060".parse().unwrap());
    let bytes: Rc<[u8]> = Rc::from(client.leg.prepare_request(&r, "z9hG4bKcache1", &dst));
    // Three copies: before the answer (absorbed), then after it (cached).
    for at in [0u64, 500, 1500] {
        send_at(&w, &client, &bytes, &dst, at);
    }
    w.run_until(secs(10), || false);
    assert_eq!(seen.borrow().len(), 1, "the receiver saw the request once");
    // The 200 at 1001 (+1 ms), and again for the copy sent at 1500.
    assert_eq!(client.times(), vec![1002, 1502]);
    assert_eq!(client.methods(), vec!["200", "200"]);
    assert_eq!(uas.stats().absorbed_requests, 2);
    // Timer J keeps the answer for 64*T1, then forgets it.
    w.run_until(secs(40), || false);
    assert_eq!(uas.stats().server_transactions, 0);
}

#[test]
fn uas_2xx_retransmitted_until_ack_and_fails_without_ack() {
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let uas = w.dispatcher("10.0.0.2:5060", DispatcherOptions::default());
    let outcomes: Outcomes = Rc::default();
    let oc = outcomes.clone();
    let (lp, start) = (w.lp.clone(), w.start);
    uas.set_receiver(move |d: &Dispatcher, p: Packet, _, _: &Source| {
        if let Packet::Request(req) = p {
            if req.method().as_str() == "INVITE" {
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("ok1");
                let (o, lp) = (oc.clone(), lp.clone());
                let opts = DeliverOptions::with_callback(move |_, out| {
                    o.borrow_mut()
                        .push(((lp.now() - start).as_millis() as u64, out))
                });
                d.deliver(ok, opts).unwrap();
            }
        }
    });
    let invite = request("INVITE", "sip:bob@10.0.0.2", "inv-2xx", 1);
    let Packet::Request(r) = invite else { panic!() };
    let dst = Destination::new(Protocol::Udp, "10.0.0.2:5060".parse().unwrap());
    client.leg.send(
        Rc::from(client.leg.prepare_request(&r, "z9hG4bKinv2xx", &dst)),
        &dst,
        None,
    );
    w.run_until(secs(60), || !outcomes.borrow().is_empty());
    // 200 sent at 1 ms, then T1 doubling to T2 until 64*T1.
    assert_eq!(
        client.times(),
        vec![
            2, 502, 1502, 3502, 7502, 11502, 15502, 19502, 23502, 27502, 31502
        ]
    );
    assert_eq!(outcomes.borrow()[0].0, 32_001);
    assert_eq!(failed_with(&outcomes.borrow()[0].1), Some(Errno::ETIMEDOUT));
}

#[test]
fn uas_2xx_retransmission_stops_at_the_ack_which_still_goes_up() {
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let (uas, seen) = scripted_uas(
        &w,
        "10.0.0.2:5060",
        vec![(0, 200)],
        DispatcherOptions::default(),
    );
    let invite = request("INVITE", "sip:bob@10.0.0.2", "inv-ack", 1);
    let Packet::Request(r) = invite else { panic!() };
    let dst = Destination::new(Protocol::Udp, "10.0.0.2:5060".parse().unwrap());
    client.leg.send(
        Rc::from(client.leg.prepare_request(&r, "z9hG4bKinvack", &dst)),
        &dst,
        None,
    );
    // ACK (new branch, To tag of the 200) sent at 1200 ms.
    let ack = "ACK sip:bob@10.0.0.2 SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@10.0.0.2>;tag=uas-tag\r\nCall-ID: inv-ack\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    let Packet::Request(ack) = Packet::parse(ack.as_bytes()).unwrap() else {
        panic!()
    };
    let (leg, d2) = (client.leg.clone(), dst.clone());
    w.lp.add_timer(
        sip_dispatch::eventloop::When::In(Duration::from_millis(1200)),
        None,
        Box::new(move || {
            leg.send(
                Rc::from(leg.prepare_request(&ack, "z9hG4bKack2xx", &d2)),
                &d2,
                None,
            );
        }),
    );
    w.run_until(secs(60), || false);
    assert_eq!(
        client.times(),
        vec![2, 502],
        "no retransmission after the ACK at 1201"
    );
    let methods: Vec<String> = seen
        .borrow()
        .iter()
        .map(|(_, p)| p.method().unwrap().to_string())
        .collect();
    assert_eq!(methods, vec!["INVITE", "ACK"], "the 2xx ACK is passed up");
    assert_eq!(uas.stats().pending_deliveries, 0);
}

#[test]
fn uas_non_2xx_retransmitted_until_ack_which_is_absorbed() {
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let (uas, seen) = scripted_uas(
        &w,
        "10.0.0.2:5060",
        vec![(0, 486)],
        DispatcherOptions::default(),
    );
    let invite = request("INVITE", "sip:bob@10.0.0.2", "inv-g", 1);
    let Packet::Request(r) = invite else { panic!() };
    let dst = Destination::new(Protocol::Udp, "10.0.0.2:5060".parse().unwrap());
    client.leg.send(
        Rc::from(client.leg.prepare_request(&r, "z9hG4bKinvg", &dst)),
        &dst,
        None,
    );
    w.run_until(secs(3), || client.got.borrow().len() >= 3);
    // ACK for the 486: the INVITE's branch.
    let busy = client.got.borrow()[0].1.clone();
    let Packet::Response(busy) = busy else {
        panic!()
    };
    let ack_text = format!(
        "ACK sip:bob@10.0.0.2 SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: {}\r\nCall-ID: inv-g\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        busy.headers().get("To").unwrap()
    );
    let Packet::Request(ack) = Packet::parse(ack_text.as_bytes()).unwrap() else {
        panic!()
    };
    client.leg.send(
        Rc::from(client.leg.prepare_request(&ack, "z9hG4bKinvg", &dst)),
        &dst,
        None,
    );
    w.run_until(secs(60), || false);
    // Timer G: 1, then 500, 1000 ... the ACK comes at about 1.5 s.
    assert_eq!(client.times(), vec![2, 502, 1502]);
    assert_eq!(seen.borrow().len(), 1, "the non-2xx ACK is absorbed");
    assert_eq!(uas.stats().server_transactions, 0, "Timer I ended it");
    assert_eq!(uas.stats().pending_deliveries, 0);
}

#[test]
fn cancel_delivery_stops_retransmissions_without_callback() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    let id = uac
        .deliver(
            request("INVITE", "sip:bob@10.0.0.2", "cx-1", 7),
            recording(&w, &outcomes),
        )
        .unwrap();
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "cx-2", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "cx-3", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(Duration::from_millis(700), || false);
    // Near misses of the tid "cx-1 7" (the sent request is kept only as
    // its bytes by now, so the tid is compared from its parts).
    for other in [
        "cx-1 70", "cx-1 ", "cx-1  7", "cx-17", "cx-1 8", "x-1 7", "cx-1 7 ",
    ] {
        assert!(
            !uac.cancel_delivery(Cancel::Id(other.into())),
            "{other:?} is not the tid"
        );
    }
    assert!(
        uac.cancel_delivery(Cancel::Id("cx-1 7".into())),
        "by id (tid: Call-ID and CSeq number)"
    );
    assert!(!uac.cancel_delivery(Cancel::Entry(id)), "already gone");
    assert!(uac.cancel_delivery(Cancel::CallId("cx-2".into())));
    w.run_until(secs(60), || false);
    // cx-1 and cx-2: 1 and 501 only; cx-3 runs its course.
    assert_eq!(peer.times().iter().filter(|t| **t <= 501).count(), 6);
    assert_eq!(peer.times().len(), 2 + 2 + 11);
    let o = outcomes.borrow();
    assert_eq!(o.len(), 1, "only cx-3 reports");
    assert_eq!(failed_with(&o[0].1), Some(Errno::ETIMEDOUT));
}

#[test]
fn queue_expire_returns_the_next_deadline() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let _peer = w.silent_peer("10.0.0.2:5060");
    assert_eq!(uac.queue_expire(w.lp.now()), None);
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "qe", 1),
        DeliverOptions::default(),
    )
    .unwrap();
    // Never later than the first retransmission (Timer E at 500 ms): the
    // start of the wheel slot that holds it. Calling again then walks on
    // to the exact time.
    let mut next = uac.queue_expire(w.lp.now()).unwrap();
    assert!(next - w.start <= Duration::from_millis(500));
    for _ in 0..4 {
        w.lp.advance(next - w.lp.now());
        next = uac.queue_expire(w.lp.now()).unwrap();
        if next - w.start == Duration::from_millis(500) {
            break;
        }
    }
    assert_eq!(
        next - w.start,
        Duration::from_millis(500),
        "the first retransmission (Timer E)"
    );
    // At 500 ms the retransmission is due: the next is Timer E again at 1.5 s.
    w.lp.advance(next - w.lp.now());
    let after = uac.queue_expire(w.lp.now()).unwrap();
    assert!(
        after - w.start > Duration::from_millis(500)
            && after - w.start <= Duration::from_millis(1500)
    );
}

#[test]
fn outcome_is_never_reported_inside_deliver() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let outcomes: Outcomes = Rc::default();
    // No leg reaches IPv6: fails, but not inside deliver.
    uac.deliver(
        request("OPTIONS", "sip:bob@[2001:db8::1]", "nr", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    assert!(outcomes.borrow().is_empty());
    uac.deliver(
        request("OPTIONS", "tel:+123", "nr2", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    assert!(outcomes.borrow().is_empty());
    w.run_until(secs(1), || outcomes.borrow().len() == 2);
    let o = outcomes.borrow();
    assert_eq!(failed_with(&o[0].1), Some(Errno::EHOSTUNREACH));
    assert_eq!(failed_with(&o[1].1), Some(Errno::EHOSTUNREACH));
    assert_eq!(o[0].0, 0, "on the loop's next turn, at once");
}

#[test]
fn no_duplicate_sends_while_resolution_is_pending() {
    use sip_dispatch::dispatcher::{DnsQuery, DnsRecord, DnsResolver};
    let w = World::exact();
    let lp = w.lp.clone();
    let queries: Rc<RefCell<Vec<DnsQuery>>> = Rc::default();
    let q = queries.clone();
    // A slow DNS: every answer comes 10 s later.
    let resolver: DnsResolver = Rc::new(move |query, answer| {
        q.borrow_mut().push(query.clone());
        let records = match &query {
            DnsQuery::A(name) if name == "slow.test" => vec![DnsRecord::A([10, 0, 0, 2].into())],
            _ => vec![],
        };
        let mut answer = Some(answer);
        lp.add_timer(
            sip_dispatch::eventloop::When::In(secs(10)),
            None,
            Box::new(move || {
                if let Some(a) = answer.take() {
                    a(Ok(records.clone()))
                }
            }),
        );
    });
    let uac = w.dispatcher(
        "10.0.0.1:5060",
        DispatcherOptions {
            dns_resolver: Some(resolver),
            ..Default::default()
        },
    );
    let peer = w.silent_peer("10.0.0.2:5060");
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("OPTIONS", "sip:bob@slow.test", "dns-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(80), || !outcomes.borrow().is_empty());
    // One resolution: NAPTR (10 s), SRV for UDP, the only transport
    // with a leg (20 s), then
    // AAAA and A (30 s). Then one send and its own schedule.
    assert_eq!(queries.borrow().len(), 4);
    assert_eq!(peer.times()[..3], [30_001, 30_501, 31_501]);
    assert_eq!(peer.times().len(), 11);
}

#[test]
fn dispatcher_hooks_see_every_leg_and_can_lose_a_packet() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let sent: Rc<RefCell<Vec<String>>> = Rc::default();
    let s = sent.clone();
    let dropped = Rc::new(std::cell::Cell::new(false));
    let d2 = dropped.clone();
    uac.set_send_hook(Some(Rc::new(move |bytes: &[u8], _dst: &Destination| {
        s.borrow_mut()
            .push(String::from_utf8_lossy(&bytes[..6]).into_owned());
        // Lose the first copy only.
        d2.replace(true)
    })));
    // A leg added later gets the hook too.
    uac.add_leg(w.leg("10.0.0.9:5060")).unwrap();
    assert_eq!(
        uac.get_legs(&sip_dispatch::dispatcher::LegFilter::default())
            .len(),
        2
    );
    let outcomes: Outcomes = Rc::default();
    uac.deliver(
        request("INVITE", "sip:bob@10.0.0.2", "hook-1", 1),
        recording(&w, &outcomes),
    )
    .unwrap();
    w.run_until(secs(2), || peer.got.borrow().len() == 2);
    // The first INVITE was lost: the peer's first copy is the retransmission.
    assert_eq!(peer.times(), vec![501, 1501]);
    assert_eq!(sent.borrow().len(), 3);
    uac.set_send_hook(None);
}

#[test]
fn server_transactions_answered_late_expire_timer_j_after_the_answer_not_the_request() {
    // A non-INVITE transaction's expiry is armed when it arrives (64*T1,
    // for a receiver that never answers) and again when it is answered:
    // the first one must not end it.
    let w = World::exact();
    let client = w.silent_peer("10.0.0.1:5060");
    let (uas, seen) = scripted_uas(
        &w,
        "10.0.0.2:5060",
        vec![(1000, 200)],
        DispatcherOptions::default(),
    );
    let dst = Destination::new(Protocol::Udp, "10.0.0.2:5060".parse().unwrap());
    for (at, call) in [(0u64, "late-1"), (5, "late-2")] {
        let Packet::Request(r) = request("OPTIONS", "sip:bob@10.0.0.2", call, 1) else {
            panic!()
        };
        let bytes: Rc<[u8]> = Rc::from(client.leg.prepare_request(
            &r,
            &format!("z9hG4bK{call}"),
            &dst,
        ));
        send_at(&w, &client, &bytes, &dst, at);
    }
    w.run_until(secs(2), || false);
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!(client.methods(), vec!["200", "200"]);
    let s = uas.stats();
    assert_eq!((s.server_transactions, s.timers), (2, 2));
    // 32.5 s: past 64*T1 from the requests, not from the answers.
    w.run_until(Duration::from_millis(30_500), || false);
    let s = uas.stats();
    assert_eq!((s.server_transactions, s.timers), (2, 2), "kept until J");
    // 33.1 s: past 64*T1 from both answers (sent at 1001 and 1006 ms).
    w.run_until(Duration::from_millis(600), || false);
    let s = uas.stats();
    assert_eq!(
        (s.server_transactions, s.timers),
        (0, 0),
        "Timer J ended them"
    );
    assert!(
        uas.queue_expire(w.lp.now()).is_none(),
        "nothing left to expire"
    );
}

/// A dispatcher at 10.0.0.2 with room for one pending delivery, taken by
/// a request to 10.0.0.1 (returned).
fn with_a_full_queue(w: &World) -> (Dispatcher, DeliveryId) {
    let d = w.dispatcher(
        "10.0.0.2:5060",
        DispatcherOptions {
            max_deliveries: Some(1),
            ..DispatcherOptions::default()
        },
    );
    let pending = d
        .deliver(
            request("OPTIONS", "sip:bob@10.0.0.1", "fill-1", 1),
            DeliverOptions::default(),
        )
        .unwrap();
    (d, pending)
}

#[test]
fn a_one_shot_response_without_callback_is_sent_at_once_and_leaves_nothing_pending() {
    let w = World::exact();
    let peer = w.silent_peer("10.0.0.1:5060");
    let (d, pending) = with_a_full_queue(&w);
    let full = d.deliver(
        request("OPTIONS", "sip:bob@10.0.0.1", "fill-2", 1),
        DeliverOptions::default(),
    );
    assert_eq!(full.err().map(|e| e.errno()), Some(Errno::ENOBUFS));
    let response = |call: &str| {
        let Packet::Request(mut r) = request("OPTIONS", "sip:bob@10.0.0.2", call, 1) else {
            panic!()
        };
        r.headers_mut()
            .prepend("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKone;rport");
        let mut resp = Response::for_request(&r, 200, "OK");
        resp.set_to_tag("t1");
        resp
    };
    // Responses take no room: they go out while the queue is full.
    let a = d
        .deliver(response("once-1"), DeliverOptions::default())
        .unwrap();
    let b = d
        .deliver(response("once-2"), DeliverOptions::default())
        .unwrap();
    assert_ne!(a, b, "each delivery has its own id");
    assert_eq!(d.stats().pending_deliveries, 1, "the request only");
    assert!(
        !d.cancel_delivery(Cancel::Entry(a)),
        "nothing left to cancel"
    );
    w.run_until(Duration::from_millis(10), || false);
    assert_eq!(peer.methods(), vec!["OPTIONS", "200", "200"]);
    assert!(d.cancel_delivery(Cancel::Entry(pending)));
    // With a callback it is a delivery like any other: one outcome.
    let outcome: Rc<RefCell<Option<DeliveryOutcome>>> = Rc::default();
    let o = outcome.clone();
    let c = d
        .deliver(
            response("once-3"),
            DeliverOptions {
                callback: Some(Box::new(move |_, out| *o.borrow_mut() = Some(out))),
                ..DeliverOptions::default()
            },
        )
        .unwrap();
    assert_ne!(c, a);
    w.run_until(Duration::from_millis(10), || outcome.borrow().is_some());
    assert_eq!(*outcome.borrow(), Some(DeliveryOutcome::Sent));
    w.run_until(Duration::from_millis(10), || false);
    assert_eq!(peer.methods(), vec!["OPTIONS", "200", "200", "200"]);
}

/// Deliver options with both callbacks: the plain one records into
/// `outcomes`, the failure one its time, error and packet into `failures`.
fn with_failure_callback(
    w: &World,
    outcomes: &Outcomes,
    failures: &Rc<RefCell<Vec<(u64, Errno, Packet)>>>,
) -> DeliverOptions {
    let (f, lp, start) = (failures.clone(), w.lp.clone(), w.start);
    DeliverOptions {
        on_failure: Some(Box::new(move |_, e, packet| {
            f.borrow_mut()
                .push(((lp.now() - start).as_millis() as u64, e.errno(), packet))
        })),
        ..recording(w, outcomes)
    }
}

#[test]
fn a_failure_goes_to_on_failure_with_the_packet_as_given() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let peer = w.silent_peer("10.0.0.2:5060");
    let (outcomes, failures): (Outcomes, _) = (Rc::default(), Rc::default());
    let given = request("INVITE", "sip:bob@10.0.0.2", "fail-1", 3);
    let given_bytes = given.to_bytes();
    uac.deliver(given, with_failure_callback(&w, &outcomes, &failures))
        .unwrap();
    w.run_until(secs(60), || !failures.borrow().is_empty());
    w.run_until(secs(61), || false);
    assert_eq!(peer.times().len(), 7, "retransmitted as usual");
    let f = failures.borrow();
    assert_eq!(f.len(), 1, "once");
    assert_eq!((f[0].0, f[0].1), (32_000, Errno::ETIMEDOUT), "Timer B");
    // The request as it was given: no Via (the leg's), byte for byte.
    assert_eq!(f[0].2.to_bytes(), given_bytes);
    assert!(f[0].2.top_via().is_err());
    assert!(outcomes.borrow().is_empty(), "not also the plain callback");
    assert_eq!(uac.stats().pending_deliveries, 0);
}

#[test]
fn on_failure_is_not_called_on_success_nor_after_a_cancel() {
    let w = World::exact();
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    let _peer = w.silent_peer("10.0.0.2:5060");
    let (outcomes, failures): (Outcomes, _) = (Rc::default(), Rc::default());
    // Sent once without retransmissions: the kernel took it.
    let once = DeliverOptions {
        do_retransmits: Some(false),
        ..with_failure_callback(&w, &outcomes, &failures)
    };
    uac.deliver(request("OPTIONS", "sip:bob@10.0.0.2", "ok-1", 1), once)
        .unwrap();
    // Cancelled while retransmitting.
    uac.deliver(
        request("OPTIONS", "sip:bob@10.0.0.2", "cx-1", 1),
        with_failure_callback(&w, &outcomes, &failures),
    )
    .unwrap();
    w.run_until(Duration::from_millis(700), || false);
    assert!(uac.cancel_delivery(Cancel::CallId("cx-1".into())));
    w.run_until(secs(60), || false);
    assert!(failures.borrow().is_empty());
    let o = outcomes.borrow();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].1, DeliveryOutcome::Sent);
    assert_eq!(uac.stats().pending_deliveries, 0);
}

#[test]
fn a_one_shot_request_to_a_given_udp_destination_is_sent_at_once() {
    let w = World::exact();
    let peer = w.silent_peer("10.0.0.1:5060");
    let (d, _) = with_a_full_queue(&w);
    let leg = d.get_legs(&Default::default())[0].0;
    let dst = Destination::new(Protocol::Udp, "10.0.0.1:5060".parse().unwrap());
    // A stateless forward: once, to a given leg and destination, with a
    // given branch. It takes no room in the full queue.
    let forward = |branch: &str| DeliverOptions {
        leg: Some(leg),
        dst_addr: Some(dst.clone()),
        branch: Some(branch.into()),
        do_retransmits: Some(false),
        ..DeliverOptions::default()
    };
    let a = d
        .deliver(
            request("OPTIONS", "sip:bob@10.0.0.1", "fwd-1", 1),
            forward("z9hG4bKfwd1"),
        )
        .unwrap();
    let b = d
        .deliver(
            request("MESSAGE", "sip:bob@10.0.0.1", "fwd-2", 1),
            forward("z9hG4bKfwd2"),
        )
        .unwrap();
    assert_ne!(a, b, "each delivery has its own id");
    assert_eq!(d.stats().pending_deliveries, 1, "the first request only");
    assert!(!d.cancel_delivery(Cancel::Entry(a)), "nothing to cancel");
    // An ACK is sent once whatever `do_retransmits` says.
    d.deliver(
        request("ACK", "sip:bob@10.0.0.1", "fwd-3", 1),
        DeliverOptions {
            do_retransmits: None,
            ..forward("z9hG4bKfwd3")
        },
    )
    .unwrap();
    // With a callback, a failure callback or retransmissions it needs a
    // record: the full queue refuses it.
    let refused = [
        DeliverOptions {
            do_retransmits: Some(true),
            ..forward("z9hG4bKr1")
        },
        DeliverOptions {
            callback: Some(Box::new(|_, _| {})),
            ..forward("z9hG4bKr2")
        },
        DeliverOptions {
            on_failure: Some(Box::new(|_, _, _| {})),
            ..forward("z9hG4bKr3")
        },
    ];
    for options in refused {
        let r = d.deliver(request("OPTIONS", "sip:bob@10.0.0.1", "r", 1), options);
        assert_eq!(r.err().map(|e| e.errno()), Some(Errno::ENOBUFS));
    }
    w.run_until(Duration::from_millis(10), || false);
    assert_eq!(peer.methods(), vec!["OPTIONS", "OPTIONS", "MESSAGE", "ACK"]);
    let got = peer.got.borrow();
    let via = |i: usize| {
        let v = got[i].1.top_via().unwrap();
        (
            v.branch().unwrap().to_owned(),
            v.host().to_owned(),
            v.port(),
        )
    };
    assert_eq!(
        via(1),
        ("z9hG4bKfwd1".into(), "10.0.0.2".into(), Some(5060))
    );
    assert_eq!(via(2).0, "z9hG4bKfwd2");
    assert_eq!(via(3).0, "z9hG4bKfwd3");
}
