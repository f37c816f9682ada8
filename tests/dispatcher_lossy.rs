//! A property test over a simulated lossy network (seeded): random loss,
//! duplication, reordering and delay between a UAC and a UAS dispatcher.
//! Every delivery ends in exactly one outcome; transactions succeed when
//! the loss is below what the retransmission schedule covers; nothing is
//! left behind (deliveries, server transactions, timers) at the end.

#[path = "common/dispatch.rs"]
mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{World, request};
use proptest::prelude::*;
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId,
};
use sip_dispatch::eventloop::{Eventloop, When};
use sip_dispatch::leg::{Faults, Source};
use sip_dispatch::packet::{Method, Packet, Response};
use sip_dispatch::ua::Dialog;

fn uas(w: &World) -> Dispatcher {
    let uas = w.dispatcher("10.0.0.2:5060", DispatcherOptions::default());
    uas.set_receiver(|d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        let Packet::Request(req) = p else { return };
        match req.method() {
            Method::Ack => {}
            Method::Invite => {
                let mut ringing = Response::for_request(&req, 180, "Ringing");
                ringing.set_to_tag("t");
                d.deliver(ringing, DeliverOptions::default()).unwrap();
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("t");
                ok.headers_mut().push("Contact", "<sip:uas@10.0.0.2:5060>");
                let weak = d.downgrade();
                d.add_timer(
                    When::In(Duration::from_millis(300)),
                    None,
                    Box::new(move || {
                        if let Some(d) = weak.upgrade() {
                            // Its own outcome (ACK arrived, or 64*T1 without).
                            let _ = d.deliver(ok.clone(), DeliverOptions::default());
                        }
                    }),
                );
            }
            _ => {
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("t");
                d.deliver(ok, DeliverOptions::default()).unwrap();
            }
        }
    });
    uas
}

/// Runs `n` transactions through a network with these faults; returns the
/// outcomes per delivery (in order of delivery).
fn run(
    faults: Faults,
    seed: u64,
    n: usize,
) -> (Vec<Vec<DeliveryOutcome>>, Dispatcher, Dispatcher, World) {
    let w = World::new(faults, seed);
    let uas = uas(&w);
    let uac = w.dispatcher("10.0.0.1:5060", DispatcherOptions::default());
    // The UAC acknowledges every 2xx to INVITE (13.2.2.4).
    uac.set_receiver(|d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        let Packet::Response(r) = p else { return };
        if r.method() == Some(Method::Invite) && r.code() == 200 {
            let target = "sip:bob@10.0.0.2".parse().unwrap();
            let mut dialog = Dialog::new_uac(
                "sip:alice@example.com",
                &target,
                r.call_id().unwrap().into(),
                "a1".into(),
            );
            dialog.update_from_response(&r);
            let _ = d.deliver(dialog.ack_for_2xx(1), DeliverOptions::default());
        }
    });
    let outcomes: Rc<RefCell<Vec<Vec<DeliveryOutcome>>>> =
        Rc::new(RefCell::new(vec![Vec::new(); n]));
    for i in 0..n {
        let method = if i % 3 == 0 { "INVITE" } else { "OPTIONS" };
        let o = outcomes.clone();
        // Start them a little apart.
        let weak = uac.downgrade();
        w.lp.add_timer(
            When::In(Duration::from_millis(37 * i as u64)),
            None,
            Box::new(move || {
                let Some(d) = weak.upgrade() else { return };
                let o = o.clone();
                let opts = DeliverOptions::with_callback(move |_, out| o.borrow_mut()[i].push(out));
                d.deliver(
                    request(method, "sip:bob@10.0.0.2", &format!("lossy-{i}"), 1),
                    opts,
                )
                .unwrap();
            }),
        );
    }
    // Long enough for every timer: 64*T1, Timer D (32 s), Timer C not
    // reached (a final always comes), server expiry.
    w.run_until(Duration::from_secs(400), || false);
    let out = outcomes.borrow().clone();
    (out, uac, uas, w)
}

fn exactly_one_and_clean(
    outcomes: &[Vec<DeliveryOutcome>],
    uac: &Dispatcher,
    uas: &Dispatcher,
    w: &World,
) {
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.len(), 1, "delivery {i}: {o:?}");
    }
    for d in [uac, uas] {
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
            "{s:?}"
        );
    }
    assert_eq!(w.lp.pending_timers(), 0, "no loop timer left behind");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn exactly_one_outcome_whatever_the_network_does(
        seed in any::<u64>(),
        loss in 0.0f64..0.6,
        duplicate in 0.0f64..0.3,
        reorder in 0.0f64..0.3,
        max_delay in 1u64..300,
    ) {
        let faults = Faults { loss, duplicate, reorder, delay: (Duration::from_millis(1), Duration::from_millis(max_delay)) };
        let (outcomes, uac, uas, w) = run(faults, seed, 12);
        exactly_one_and_clean(&outcomes, &uac, &uas, &w);
        // Each outcome is a final status or a timeout, never anything else.
        for o in outcomes.iter().flatten() {
            match o {
                DeliveryOutcome::Completed(200) => {}
                DeliveryOutcome::Failed(e) => prop_assert_eq!(e.errno(), sip_dispatch::Errno::ETIMEDOUT),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn moderate_loss_is_covered_by_retransmissions(
        seed in any::<u64>(),
        loss in 0.0f64..0.15,
        duplicate in 0.0f64..0.2,
        reorder in 0.0f64..0.2,
    ) {
        let faults = Faults { loss, duplicate, reorder, delay: (Duration::from_millis(1), Duration::from_millis(80)) };
        let (outcomes, uac, uas, w) = run(faults, seed, 12);
        exactly_one_and_clean(&outcomes, &uac, &uas, &w);
        for (i, o) in outcomes.iter().enumerate() {
            prop_assert_eq!(&o[0], &DeliveryOutcome::Completed(200), "delivery {}", i);
        }
    }
}

#[test]
fn a_lossless_network_completes_everything_and_counts_no_retransmission() {
    let (outcomes, uac, uas, w) = run(Faults::default(), 7, 30);
    exactly_one_and_clean(&outcomes, &uac, &uas, &w);
    assert!(
        outcomes
            .iter()
            .all(|o| o[0] == DeliveryOutcome::Completed(200))
    );
    assert_eq!(uac.stats().retransmissions, 0);
    assert_eq!(uas.stats().retransmissions, 0, "every 2xx ACKed before T1");
}

#[test]
fn heavy_loss_shows_retransmissions_and_some_timeouts() {
    let faults = Faults {
        loss: 0.7,
        duplicate: 0.1,
        reorder: 0.2,
        delay: (Duration::from_millis(1), Duration::from_millis(100)),
    };
    let (outcomes, uac, uas, w) = run(faults, 42, 30);
    exactly_one_and_clean(&outcomes, &uac, &uas, &w);
    let timeouts = outcomes
        .iter()
        .filter(|o| matches!(o[0], DeliveryOutcome::Failed(_)))
        .count();
    assert!(uac.stats().retransmissions > 30, "{:?}", uac.stats());
    assert!(
        timeouts > 0 && timeouts < 30,
        "timeouts {timeouts} {:?} {:?} {:?}",
        w.net.stats(),
        uac.stats(),
        uas.stats()
    );
    assert!(w.net.stats().lost > 0 && w.net.stats().duplicated > 0);
}
