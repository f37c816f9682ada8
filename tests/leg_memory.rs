//! Memory-network legs under virtual time: delay, loss, duplication,
//! seeded reproducibility, partitions and unreachable addresses.

mod common;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use sip_dispatch::Errno;
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{
    Destination, Faults, Leg, LegOptions, MemoryNetwork, Protocol, SendStatus,
};
use sip_dispatch::packet::{Packet, Response};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn mem_leg(net: &MemoryNetwork, at: &str) -> Leg {
    Leg::memory(net, Protocol::Udp, addr(at), LegOptions::default()).expect("memory leg")
}

fn dst_of(leg: &Leg) -> Destination {
    Destination::new(Protocol::Udp, leg.local_addr())
}

fn send(from: &Leg, to: &Destination, call_id: &str) -> SendStatus {
    from.send(
        prepared(from, &request(call_id), "z9hG4bKmem", to),
        to,
        None,
    )
}

/// Two legs on a fresh network and virtual-time loop.
fn pair(faults: Faults, seed: u64) -> (Rc<MioEventloop>, MemoryNetwork, Leg, Leg, Events, Events) {
    let lp = Rc::new(MioEventloop::new_virtual());
    let net = MemoryNetwork::new(faults, seed);
    let a = mem_leg(&net, "10.0.0.1:5060");
    let b = mem_leg(&net, "10.0.0.2:5060");
    let ea = attach(&a, &lp);
    let eb = attach(&b, &lp);
    (lp, net, a, b, ea, eb)
}

#[test]
fn delivers_after_the_configured_delay() {
    let faults = Faults {
        delay: (ms(25), ms(25)),
        ..Faults::default()
    };
    let (lp, net, a, b, _ea, eb) = pair(faults, 1);
    let t0 = lp.now();
    assert_eq!(send(&a, &dst_of(&b), "delay"), SendStatus::Sent);
    assert!(run_until(&lp, Duration::from_secs(1), || eb.packet_count() == 1));
    let (at, p) = eb.packet_times().pop().unwrap();
    assert_eq!(at - t0, ms(25));
    assert_eq!(lp.now() - t0, ms(25));
    let (_, src) = eb.packets().pop().unwrap();
    assert_eq!(src.addr, a.local_addr());
    let Packet::Request(req) = p else {
        panic!("a request")
    };
    let via = req.top_via().unwrap();
    assert_eq!(via.host(), "10.0.0.1");
    assert_eq!(via.rport(), Some(Some(5060)));
    assert_eq!(via.received(), Some("10.0.0.1"));
    let s = net.stats();
    assert_eq!((s.sent, s.delivered, s.lost), (1, 1, 0));
}

#[test]
fn delays_stay_within_their_bounds() {
    let faults = Faults {
        delay: (ms(5), ms(40)),
        ..Faults::default()
    };
    let (lp, _net, a, b, _ea, eb) = pair(faults, 2);
    let t0 = lp.now();
    for i in 0..50 {
        send(&a, &dst_of(&b), &format!("bounds-{i}"));
    }
    assert!(run_until(&lp, Duration::from_secs(1), || eb.packet_count() == 50));
    let delays: Vec<Duration> = eb.packet_times().iter().map(|(at, _)| *at - t0).collect();
    // Timers run on millisecond ticks, rounded up.
    assert!(
        delays.iter().all(|d| *d >= ms(5) && *d <= ms(41)),
        "{delays:?}"
    );
    assert!(
        delays.windows(2).all(|w| w[0] <= w[1]),
        "arrivals in time order"
    );
    assert!(delays.first() != delays.last(), "delays vary: {delays:?}");
}

#[test]
fn a_response_goes_back_to_the_sender() {
    let (lp, _net, a, b, ea, eb) = pair(Faults::default(), 3);
    send(&a, &dst_of(&b), "answer-me");
    assert!(run_until(&lp, Duration::from_secs(1), || eb.packet_count() == 1));
    let (p, src) = eb.packets().pop().unwrap();
    let resp = Response::for_request(p.as_request().unwrap(), 200, "OK");
    assert_eq!(
        b.send_response(&resp, &src.reply_destination(), None),
        SendStatus::Sent
    );
    assert!(run_until(&lp, Duration::from_secs(1), || ea.packet_count() == 1));
    let (p, _) = ea.packets().pop().unwrap();
    assert_eq!(p.as_response().unwrap().code(), 200);
    assert_eq!(p.top_via().unwrap().branch(), Some("z9hG4bKmem"));
    assert_eq!(a.stats().dropped_foreign_via, 0);
}

#[test]
fn loss_one_loses_everything() {
    let faults = Faults {
        loss: 1.0,
        ..Faults::default()
    };
    let (lp, net, a, b, ea, eb) = pair(faults, 4);
    for i in 0..20 {
        assert_eq!(
            send(&a, &dst_of(&b), &format!("lost-{i}")),
            SendStatus::Sent
        );
        assert_eq!(
            send(&b, &dst_of(&a), &format!("lost-back-{i}")),
            SendStatus::Sent
        );
    }
    lp.run(Some(Duration::from_secs(10)), &|| false).unwrap();
    assert_eq!(eb.len() + ea.len(), 0);
    let s = net.stats();
    assert_eq!((s.sent, s.lost, s.delivered, s.unreachable), (40, 40, 0, 0));
    assert_eq!(
        lp.pending_timers(),
        0,
        "nothing scheduled for lost datagrams"
    );
}

#[test]
fn duplicate_one_delivers_twice() {
    let faults = Faults {
        duplicate: 1.0,
        delay: (ms(1), ms(10)),
        ..Faults::default()
    };
    let (lp, net, a, b, _ea, eb) = pair(faults, 5);
    for i in 0..10 {
        send(&a, &dst_of(&b), &format!("dup-{i}"));
    }
    lp.run(Some(Duration::from_secs(1)), &|| false).unwrap();
    assert_eq!(eb.packet_count(), 20);
    for i in 0..10 {
        let id = format!("dup-{i}");
        let n = eb
            .packets()
            .iter()
            .filter(|(p, _)| p.call_id() == Some(id.as_str()))
            .count();
        assert_eq!(n, 2, "{id}");
    }
    let s = net.stats();
    assert_eq!((s.sent, s.duplicated, s.delivered, s.lost), (10, 10, 20, 0));
    assert_eq!(b.stats().received, 20);
}

/// 100 datagrams, one per virtual millisecond, through loss, reordering
/// and a variable delay: what arrives, and when.
fn seeded_run(seed: u64) -> (Vec<(Duration, String)>, u64) {
    let faults = Faults {
        loss: 0.3,
        reorder: 0.3,
        duplicate: 0.0,
        delay: (ms(1), ms(50)),
    };
    let (lp, net, a, b, _ea, eb) = pair(faults, seed);
    let t0 = lp.now();
    for i in 0..100 {
        send(&a, &dst_of(&b), &format!("seq-{i}"));
        lp.run(Some(ms(1)), &|| false).unwrap();
    }
    lp.run(Some(Duration::from_secs(1)), &|| false).unwrap();
    let arrivals = eb
        .packet_times()
        .into_iter()
        .map(|(at, p)| (at - t0, p.call_id().unwrap().to_owned()))
        .collect();
    (arrivals, net.stats().lost)
}

#[test]
fn a_seeded_run_is_reproducible() {
    let (first, lost) = seeded_run(42);
    let (again, lost_again) = seeded_run(42);
    assert_eq!(first, again, "same seed, same arrivals at the same times");
    assert_eq!(lost, lost_again);
    assert_eq!(first.len() as u64 + lost, 100);
    assert!((10..=50).contains(&lost), "about 30% lost: {lost}");
    let order: Vec<usize> = first
        .iter()
        .map(|(_, id)| id["seq-".len()..].parse().unwrap())
        .collect();
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "some datagrams overtake others"
    );
    let (other, _) = seeded_run(43);
    assert_ne!(first, other, "another seed, another run");
}

#[test]
fn partition_cuts_both_ways_until_healed() {
    let (lp, net, a, b, ea, eb) = pair(Faults::default(), 6);
    let c = mem_leg(&net, "10.0.0.3:5060");
    let ec = attach(&c, &lp);
    net.partition(a.local_addr().ip(), b.local_addr().ip());
    send(&a, &dst_of(&b), "cut-ab");
    send(&b, &dst_of(&a), "cut-ba");
    send(&a, &dst_of(&c), "a-to-c");
    send(&b, &dst_of(&c), "b-to-c");
    lp.run(Some(Duration::from_secs(1)), &|| false).unwrap();
    assert_eq!((ea.len(), eb.len()), (0, 0));
    assert_eq!(ec.packet_count(), 2, "other hosts still reach both");
    assert_eq!(net.stats().lost, 2);
    net.heal();
    send(&a, &dst_of(&b), "healed-ab");
    send(&b, &dst_of(&a), "healed-ba");
    assert!(run_until(&lp, Duration::from_secs(1), || ea.packet_count()
        == 1
        && eb.packet_count() == 1));
    assert_eq!(ea.packets()[0].0.call_id(), Some("healed-ba"));
    assert_eq!(eb.packets()[0].0.call_id(), Some("healed-ab"));
}

#[test]
fn nobody_listening_is_unreachable_econnrefused() {
    let faults = Faults {
        delay: (ms(10), ms(10)),
        ..Faults::default()
    };
    let (lp, net, a, _b, ea, _eb) = pair(faults, 7);
    let nobody = Destination::new(Protocol::Udp, addr("10.0.0.9:5060"));
    let t0 = lp.now();
    assert_eq!(send(&a, &nobody, "void"), SendStatus::Sent);
    assert!(run_until(&lp, Duration::from_secs(1), || !ea
        .unreachable()
        .is_empty()));
    let got = ea.unreachable();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.addr, nobody.addr);
    assert_eq!(got[0].1, Errno::ECONNREFUSED);
    assert_eq!(lp.now() - t0, ms(20), "after one round trip");
    assert_eq!(net.stats().unreachable, 1);
}

#[test]
fn a_detached_leg_is_unreachable_and_its_address_free_again() {
    let (lp, net, a, b, ea, _eb) = pair(Faults::default(), 8);
    let at = b.local_addr();
    assert!(
        Leg::memory(&net, Protocol::Udp, at, LegOptions::default()).is_err(),
        "address in use"
    );
    b.detach();
    send(&a, &dst_of(&b), "gone");
    assert!(run_until(&lp, Duration::from_secs(1), || !ea
        .unreachable()
        .is_empty()));
    assert_eq!(ea.unreachable()[0].1, Errno::ECONNREFUSED);
    drop(b);
    let b2 = Leg::memory(&net, Protocol::Udp, at, LegOptions::default()).expect("free again");
    let eb2 = attach(&b2, &lp);
    send(&a, &dst_of(&b2), "back");
    assert!(run_until(&lp, Duration::from_secs(1), || eb2
        .packet_count()
        == 1));
}

#[test]
fn send_before_attach_fails_with_enotconn() {
    let net = MemoryNetwork::new(Faults::default(), 9);
    let a = mem_leg(&net, "10.0.0.1:5060");
    let dst = Destination::new(Protocol::Udp, addr("10.0.0.2:5060"));
    let SendStatus::Failed(e) = send(&a, &dst, "early") else {
        panic!("not attached")
    };
    assert_eq!(e.errno(), Errno::ENOTCONN);
}
