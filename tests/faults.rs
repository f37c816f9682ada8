//! Faults on the simulated network (under virtual time), beyond loss:
//! partitions that cut a UAC from its UAS during traffic and heal, and peer
//! restarts (the UAS dispatcher dropped and created again at the same
//! address; or its leg removed and a new one added there). For every
//! delivery, on both sides and across restarts, exactly one outcome; and
//! after all outcomes nothing is left behind: no pending delivery, server
//! transaction, client key or timer in the dispatchers, no timer on the
//! loop.

#[path = "common/dispatch.rs"]
mod common;

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use common::{World, request};
use proptest::prelude::*;
use sip_dispatch::Errno;
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegFilter, LegId,
};
use sip_dispatch::eventloop::{Eventloop, When};
use sip_dispatch::leg::{Faults, Leg, LegOptions, Protocol, Source};
use sip_dispatch::packet::{Method, Packet, Response};
use sip_dispatch::ua::Dialog;

const UAC: &str = "10.0.0.1:5060";
const UAS: &str = "10.0.0.2:5060";

/// A delivery (what it was) and the outcomes it got.
type Entry = (String, Vec<DeliveryOutcome>);

/// Every delivery made, on any dispatcher, and the outcomes it got.
#[derive(Clone, Default)]
struct Ledger(Rc<RefCell<Vec<Entry>>>);

impl Ledger {
    /// Options whose callback records the outcome of a new entry.
    fn options(&self, what: String) -> DeliverOptions {
        let slot = {
            let mut l = self.0.borrow_mut();
            l.push((what, Vec::new()));
            l.len() - 1
        };
        let ledger = self.0.clone();
        DeliverOptions::with_callback(move |_, out| ledger.borrow_mut()[slot].1.push(out))
    }

    /// Forgets an entry whose `deliver` was refused (no outcome is due).
    fn refused(&self) {
        self.0.borrow_mut().pop();
    }

    fn assert_exactly_one_each(&self) {
        for (what, outcomes) in self.0.borrow().iter() {
            assert_eq!(outcomes.len(), 1, "{what}: {outcomes:?}");
        }
    }

    fn outcomes(&self) -> Vec<(String, DeliveryOutcome)> {
        self.0
            .borrow()
            .iter()
            .map(|(w, o)| (w.clone(), o[0].clone()))
            .collect()
    }
}

/// The UAS: 180 and, 300 ms later, 200 to INVITE; 200 to anything else;
/// every response a delivery in `ledger`.
fn uas(w: &World, ledger: &Ledger) -> Dispatcher {
    uas_on(w.dyn_loop(), w.leg(UAS), ledger)
}

/// The UAS on this leg (a new one after a restart).
fn uas_on(lp: Rc<dyn Eventloop>, leg: Leg, ledger: &Ledger) -> Dispatcher {
    let d = Dispatcher::new(vec![leg], Some(lp), DispatcherOptions::default()).unwrap();
    let ledger = ledger.clone();
    d.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        let Packet::Request(req) = p else { return };
        let call = req.call_id().unwrap_or_default().to_owned();
        let respond = |d: &Dispatcher, resp: Response| {
            let what = format!("uas {} to {call}", resp.code());
            if d.deliver(resp, ledger.options(what)).is_err() {
                ledger.refused();
            }
        };
        match req.method() {
            Method::Ack => {}
            Method::Invite => {
                let mut ringing = Response::for_request(&req, 180, "Ringing");
                ringing.set_to_tag("t");
                respond(d, ringing);
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("t");
                ok.headers_mut().push("Contact", "<sip:uas@10.0.0.2:5060>");
                let weak = d.downgrade();
                let ledger = ledger.clone();
                d.add_timer(
                    When::In(Duration::from_millis(300)),
                    None,
                    Box::new(move || {
                        // A UAS dropped meanwhile answers nothing.
                        if let Some(d) = weak.upgrade() {
                            let what = format!("uas 200 to {}", ok.call_id().unwrap_or_default());
                            if d.deliver(ok.clone(), ledger.options(what)).is_err() {
                                ledger.refused();
                            }
                        }
                    }),
                );
            }
            _ => {
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("t");
                respond(d, ok);
            }
        }
    });
    d
}

/// The UAC, which ACKs every 2xx to INVITE (RFC 3261 13.2.2.4); the ACKs
/// are deliveries in `ledger` too.
fn uac(w: &World, ledger: &Ledger) -> Dispatcher {
    let d = w.dispatcher(UAC, DispatcherOptions::default());
    let ledger = ledger.clone();
    d.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        let Packet::Response(r) = p else { return };
        if r.method() == Some(Method::Invite) && r.code() == 200 {
            let target = format!("sip:bob@{UAS}").parse().unwrap();
            let call = r.call_id().unwrap_or_default().to_owned();
            let mut dialog =
                Dialog::new_uac("sip:alice@example.com", &target, call.clone(), "a1".into());
            dialog.update_from_response(&r);
            if d.deliver(
                dialog.ack_for_2xx(1),
                ledger.options(format!("uac ACK {call}")),
            )
            .is_err()
            {
                ledger.refused();
            }
        }
    });
    d
}

/// How the UAS goes down and comes back.
#[derive(Clone, Copy, Debug)]
enum Restart {
    /// The dispatcher is dropped (its deliveries fail with ECANCELED) and
    /// a new one created at the same address.
    Dispatcher,
    /// Its leg is removed (deliveries on it fail with ENETDOWN) and a new
    /// leg added at the same address.
    Leg,
}

/// A scenario: traffic from the UAC, and faults scheduled during it.
#[derive(Clone, Debug)]
struct Scenario {
    faults: Faults,
    seed: u64,
    /// Requests, one every `spacing`.
    requests: usize,
    spacing: Duration,
    /// Partitions of UAC and UAS: (start, length).
    partitions: Vec<(Duration, Duration)>,
    /// UAS restarts: (when, downtime, how).
    restarts: Vec<(Duration, Duration, Restart)>,
}

struct Run {
    world: World,
    uac: Dispatcher,
    uas: Rc<RefCell<Option<Dispatcher>>>,
    /// The UAC's requests, in order.
    requests: Ledger,
    /// Everything else: responses and ACKs.
    others: Ledger,
}

fn ip(addr: &str) -> IpAddr {
    addr.parse::<std::net::SocketAddr>().unwrap().ip()
}

fn run(s: &Scenario) -> Run {
    let world = World::new(s.faults.clone(), s.seed);
    let others = Ledger::default();
    let requests = Ledger::default();
    let uas_slot = Rc::new(RefCell::new(Some(uas(&world, &others))));
    let uac = uac(&world, &others);
    let lp = world.lp.clone();

    for i in 0..s.requests {
        let method = if i % 3 == 0 { "INVITE" } else { "OPTIONS" };
        let weak = uac.downgrade();
        let requests = requests.clone();
        lp.add_timer(
            When::In(s.spacing * i as u32),
            None,
            Box::new(move || {
                let Some(d) = weak.upgrade() else { return };
                let what = format!("uac {method} faults-{i}");
                let packet = request(method, &format!("sip:bob@{UAS}"), &format!("faults-{i}"), 1);
                d.deliver(packet, requests.options(what))
                    .expect("the queue has room");
            }),
        );
    }
    for &(start, length) in &s.partitions {
        let net = world.net.clone();
        lp.add_timer(
            When::In(start),
            None,
            Box::new(move || net.partition(ip(UAC), ip(UAS))),
        );
        let net = world.net.clone();
        lp.add_timer(When::In(start + length), None, Box::new(move || net.heal()));
    }
    for &(when, downtime, how) in &s.restarts {
        let slot = uas_slot.clone();
        let (net, up_lp, others) = (world.net.clone(), world.dyn_loop(), others.clone());
        let new_leg = move || {
            Leg::memory(
                &net,
                Protocol::Udp,
                UAS.parse().unwrap(),
                LegOptions::default(),
            )
            .expect("the address is free again")
        };
        match how {
            Restart::Dispatcher => {
                let down = slot.clone();
                // Dropped: its pending deliveries fail (ECANCELED) now.
                lp.add_timer(
                    When::In(when),
                    None,
                    Box::new(move || drop(down.borrow_mut().take())),
                );
                lp.add_timer(
                    When::In(when + downtime),
                    None,
                    Box::new(move || {
                        if slot.borrow().is_none() {
                            let d = uas_on(up_lp.clone(), new_leg(), &others);
                            *slot.borrow_mut() = Some(d);
                        }
                    }),
                );
            }
            Restart::Leg => {
                let removed = Rc::new(std::cell::Cell::new(false));
                let (slot_down, removed_down) = (slot.clone(), removed.clone());
                lp.add_timer(
                    When::In(when),
                    None,
                    Box::new(move || {
                        // The handle is taken out while remove_leg runs
                        // callbacks, so that none finds the slot borrowed.
                        let d = slot_down.borrow_mut().take();
                        if let Some(d) = &d {
                            for (id, _) in d.get_legs(&LegFilter::default()) {
                                d.remove_leg(id);
                                removed_down.set(true);
                            }
                        }
                        *slot_down.borrow_mut() = d;
                    }),
                );
                lp.add_timer(
                    When::In(when + downtime),
                    None,
                    Box::new(move || {
                        let d = slot.borrow_mut().take();
                        if let Some(d) = &d {
                            // A dispatcher restarted meanwhile came back
                            // with its own leg on the address.
                            let has_leg = !d.get_legs(&LegFilter::default()).is_empty();
                            if removed.replace(false) && !has_leg {
                                d.add_leg(new_leg()).expect("add the new leg");
                            }
                        }
                        *slot.borrow_mut() = d;
                    }),
                );
            }
        }
    }
    // Long enough for every timer: the traffic, 64*T1, Timer D (32 s),
    // Timer C (180 s) for an INVITE whose UAS vanished after its 180.
    let end = s.spacing * s.requests as u32 + Duration::from_secs(400);
    world.run_until(end, || false);
    Run {
        world,
        uac,
        uas: uas_slot,
        requests,
        others,
    }
}

/// Exactly one outcome each, nothing left behind.
fn assert_clean(r: &Run) {
    r.requests.assert_exactly_one_each();
    r.others.assert_exactly_one_each();
    let uas = r.uas.borrow();
    for d in std::iter::once(&r.uac).chain(uas.as_ref()) {
        let s = d.stats();
        assert_eq!(
            (
                s.pending_deliveries,
                s.server_transactions,
                s.timers,
                s.client_keys,
                s.id_keys
            ),
            (0, 0, 0, 0, 0),
            "left behind: {s:?}"
        );
    }
    assert_eq!(r.world.lp.pending_timers(), 0, "loop timers left behind");
}

fn errno(o: &DeliveryOutcome) -> Option<Errno> {
    match o {
        DeliveryOutcome::Failed(e) => Some(e.errno()),
        _ => None,
    }
}

#[test]
fn a_long_partition_times_out_what_it_cuts_off_and_healing_restores_service() {
    let secs = Duration::from_secs;
    // A request every 2 s from 0 s (INVITE, OPTIONS, OPTIONS, ...); UAC
    // and UAS cut from each other from 10 s to 50 s.
    let s = Scenario {
        faults: Faults::default(),
        seed: 1,
        requests: 30,
        spacing: secs(2),
        partitions: vec![(secs(10), secs(40))],
        restarts: vec![],
    };
    let r = run(&s);
    assert_clean(&r);
    for (i, (what, outcome)) in r.requests.outcomes().iter().enumerate() {
        let start = 2 * i as u64;
        // Started before the cut: completed. Started in it: retransmitted
        // (T1, 2T1, ... capped at T2 for OPTIONS; doubling for INVITE),
        // the last time 31.5 s after the start; Timer B/F at 32 s. Early in
        // the cut (up to 18 s), that is all before the heal at 50 s: timed
        // out. Later, a retransmission crosses after the heal: completed.
        if (10..=18).contains(&start) {
            assert_eq!(
                errno(outcome),
                Some(Errno::ETIMEDOUT),
                "{what} at {start} s: {outcome:?}"
            );
        } else {
            assert_eq!(
                outcome,
                &DeliveryOutcome::Completed(200),
                "{what} at {start} s"
            );
        }
    }
    let lost = r.world.net.stats().lost;
    assert!(lost > 0, "the partition dropped something");
}

#[test]
fn restarted_peers_answer_again_and_every_delivery_has_one_outcome() {
    let secs = Duration::from_secs;
    for how in [Restart::Dispatcher, Restart::Leg] {
        let s = Scenario {
            faults: Faults::default(),
            seed: 2,
            requests: 40,
            spacing: Duration::from_millis(500),
            // The 200 to the INVITE of 3 s is lost in a partition, so the
            // UAS is still retransmitting it when it goes down at 5 s.
            partitions: vec![(Duration::from_millis(3_200), Duration::from_millis(2_800))],
            restarts: vec![
                (secs(5), secs(3), how),
                (Duration::from_millis(12_150), Duration::ZERO, how),
            ],
        };
        let r = run(&s);
        assert_clean(&r);
        let outcomes = r.requests.outcomes();
        // While the UAS is down, a request is refused at once (the
        // network's port unreachable); before and after, answered.
        for (what, outcome) in &outcomes {
            assert!(
                matches!(outcome, DeliveryOutcome::Completed(200))
                    || matches!(errno(outcome), Some(Errno::ECONNREFUSED | Errno::ETIMEDOUT)),
                "{how:?} {what}: {outcome:?}"
            );
        }
        let completed = outcomes
            .iter()
            .filter(|(_, o)| *o == DeliveryOutcome::Completed(200))
            .count();
        let refused = outcomes
            .iter()
            .filter(|(_, o)| errno(o) == Some(Errno::ECONNREFUSED))
            .count();
        assert!(
            completed >= 25,
            "{how:?}: {completed} completed: {outcomes:?}"
        );
        assert!(refused >= 4, "{how:?}: {refused} refused: {outcomes:?}");
        // The UAS side: what the restart cut short failed (ECANCELED for a
        // dropped dispatcher, ENETDOWN for a removed leg), the rest sent.
        let cut_short = match how {
            Restart::Dispatcher => Errno::ECANCELED,
            Restart::Leg => Errno::ENETDOWN,
        };
        assert!(
            r.others
                .outcomes()
                .iter()
                .any(|(_, o)| errno(o) == Some(cut_short)),
            "{how:?}: no UAS delivery cut short: {:?}",
            r.others.outcomes()
        );
        for (what, outcome) in r.others.outcomes() {
            assert!(
                matches!(outcome, DeliveryOutcome::Sent)
                    || matches!(
                        errno(&outcome),
                        Some(Errno::ECANCELED | Errno::ENETDOWN | Errno::ETIMEDOUT)
                    ),
                "{how:?} {what}: {outcome:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Loss, duplication, reordering, partitions and restarts together.
    #[test]
    fn exactly_one_outcome_and_no_leak_whatever_the_faults(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        duplicate in 0.0f64..0.2,
        reorder in 0.0f64..0.2,
        max_delay in 1u64..200,
        partitions in prop::collection::vec((0u64..30_000, 1u64..40_000), 0..4),
        restarts in prop::collection::vec((0u64..30_000, 0u64..5_000, any::<bool>()), 0..3),
    ) {
        let ms = Duration::from_millis;
        let s = Scenario {
            faults: Faults { loss, duplicate, reorder, delay: (ms(1), ms(max_delay)) },
            seed,
            requests: 24,
            spacing: ms(1_250),
            partitions: partitions.into_iter().map(|(a, l)| (ms(a), ms(l))).collect(),
            restarts: restarts
                .into_iter()
                .map(|(at, down, leg)| (ms(at), ms(down), if leg { Restart::Leg } else { Restart::Dispatcher }))
                .collect(),
        };
        let r = run(&s);
        assert_clean(&r);
        for (what, outcome) in r.requests.outcomes() {
            prop_assert!(
                matches!(outcome, DeliveryOutcome::Completed(200))
                    || matches!(errno(&outcome), Some(Errno::ETIMEDOUT | Errno::ECONNREFUSED)),
                "{} {:?}", what, outcome
            );
        }
    }
}
