//! The event loop through its public API: timers under virtual and real
//! time, repeat and cancel (also from inside callbacks), descriptors on a
//! loopback UDP socket, and `run`'s timeout and stop condition.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use sip_dispatch::eventloop::{Eventloop, Interest, MioEventloop, TimerId, When};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Log = Rc<RefCell<Vec<(&'static str, Duration)>>>;

fn record(
    lp: &Rc<MioEventloop>,
    log: &Log,
    start: Instant,
    label: &'static str,
) -> Box<dyn FnMut()> {
    let (lp, log) = (Rc::downgrade(lp), log.clone());
    Box::new(move || {
        if let Some(lp) = lp.upgrade() {
            log.borrow_mut().push((label, lp.now() - start));
        }
    })
}

#[test]
fn virtual_timers_fire_in_deadline_order_exactly_on_time() {
    let lp = Rc::new(MioEventloop::new_virtual());
    let log: Log = Rc::default();
    let start = lp.now();
    // Deadlines across several wheel levels, added out of order.
    for (label, d) in [
        ("32s", ms(32_000)),
        ("500ms", ms(500)),
        ("0", ms(0)),
        ("1h", ms(3_600_000)),
        ("4s", ms(4_000)),
        ("64ms", ms(64)),
        ("1ms", ms(1)),
        ("4095ms", ms(4095)),
    ] {
        lp.add_timer(When::In(d), None, record(&lp, &log, start, label));
    }
    lp.run(None, &|| false).unwrap();
    let got = log.borrow().clone();
    assert_eq!(
        got,
        vec![
            ("0", ms(0)),
            ("1ms", ms(1)),
            ("64ms", ms(64)),
            ("500ms", ms(500)),
            ("4s", ms(4000)),
            ("4095ms", ms(4095)),
            ("32s", ms(32_000)),
            ("1h", ms(3_600_000)),
        ]
    );
    assert_eq!(lp.pending_timers(), 0);
}

#[test]
fn real_timers_are_never_early_and_not_much_late() {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let fired: Rc<RefCell<Vec<(Duration, Duration)>>> = Rc::default();
    let start = Instant::now();
    for d in [5, 17, 30, 1, 45] {
        let fired = fired.clone();
        lp.add_timer(
            When::In(ms(d)),
            None,
            Box::new(move || fired.borrow_mut().push((ms(d), start.elapsed()))),
        );
    }
    lp.run(Some(ms(500)), &|| fired.borrow().len() == 5)
        .unwrap();
    let fired = fired.borrow();
    assert_eq!(fired.len(), 5);
    for (want, got) in fired.iter() {
        assert!(got >= want, "timer for {want:?} fired early at {got:?}");
        // A loose bound: these machines are shared and noisy.
        assert!(
            *got < *want + ms(20),
            "timer for {want:?} fired late at {got:?}"
        );
    }
    let order: Vec<_> = fired.iter().map(|(w, _)| w.as_millis()).collect();
    assert_eq!(order, vec![1, 5, 17, 30, 45]);
}

#[test]
fn repeat_and_cancel_from_inside_the_callback() {
    let lp = Rc::new(MioEventloop::new_virtual());
    let start = lp.now();
    let times: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let id: Rc<Cell<Option<TimerId>>> = Rc::default();
    let cb = {
        let (lp2, times, id) = (Rc::downgrade(&lp), times.clone(), id.clone());
        Box::new(move || {
            let lp = lp2.upgrade().unwrap();
            times.borrow_mut().push(lp.now() - start);
            if times.borrow().len() == 3 {
                assert!(
                    lp.cancel_timer(id.get().unwrap()),
                    "cancelling the running repeat timer"
                );
            }
        })
    };
    id.set(Some(lp.add_timer(When::In(ms(250)), Some(ms(1000)), cb)));
    lp.run(Some(ms(10_000)), &|| false).unwrap();
    assert_eq!(*times.borrow(), vec![ms(250), ms(1250), ms(2250)]);
    assert_eq!(lp.pending_timers(), 0);
    assert!(!lp.cancel_timer(id.get().unwrap()), "already cancelled");
}

#[test]
fn one_shot_cannot_be_cancelled_once_running_and_others_can() {
    let lp = Rc::new(MioEventloop::new_virtual());
    let later_ran = Rc::new(Cell::new(false));
    let later = {
        let later_ran = later_ran.clone();
        lp.add_timer(
            When::In(ms(20)),
            None,
            Box::new(move || later_ran.set(true)),
        )
    };
    let own: Rc<Cell<Option<TimerId>>> = Rc::default();
    let results: Rc<RefCell<Vec<bool>>> = Rc::default();
    let first = {
        let (lp2, own, results) = (Rc::downgrade(&lp), own.clone(), results.clone());
        lp.add_timer(
            When::In(ms(10)),
            None,
            Box::new(move || {
                let lp = lp2.upgrade().unwrap();
                results
                    .borrow_mut()
                    .push(lp.cancel_timer(own.get().unwrap()));
                results.borrow_mut().push(lp.cancel_timer(later));
                // A timer added from inside a callback, due at once.
                let results = results.clone();
                lp.add_timer(
                    When::In(ms(0)),
                    None,
                    Box::new(move || results.borrow_mut().push(true)),
                );
            }),
        )
    };
    own.set(Some(first));
    lp.run(None, &|| false).unwrap();
    assert_eq!(*results.borrow(), vec![false, true, true]);
    assert!(!later_ran.get());
}

#[test]
fn wall_clock_deadlines() {
    let lp = Rc::new(MioEventloop::new_virtual());
    let log: Log = Rc::default();
    let start = lp.now();
    let at = lp.wall_now() + ms(1500);
    lp.add_timer(When::At(at), None, record(&lp, &log, start, "at"));
    lp.add_timer(
        When::At(SystemTime::UNIX_EPOCH),
        None,
        record(&lp, &log, start, "past"),
    );
    lp.run(None, &|| false).unwrap();
    assert_eq!(*log.borrow(), vec![("past", ms(0)), ("at", ms(1500))]);
}

#[test]
fn run_honours_timeout_and_stop_condition() {
    // Virtual: the clock moves by exactly the timeout when nothing happens.
    let lp = MioEventloop::new_virtual();
    let start = lp.now();
    lp.run(Some(ms(32_000)), &|| false).unwrap();
    assert_eq!(lp.now() - start, ms(32_000));

    // Real: returns after the timeout, not before, and not much after.
    let lp = MioEventloop::new().unwrap();
    let t0 = Instant::now();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let h = lp
        .add_fd(sock.as_raw_fd(), Interest::READ, Box::new(|_| {}))
        .unwrap();
    lp.run(Some(ms(50)), &|| false).unwrap();
    let took = t0.elapsed();
    assert!(took >= ms(50) && took < ms(250), "run(50ms) took {took:?}");
    assert!(lp.del_fd(h));

    // A stop condition set by a timer ends the run before the timeout.
    let lp = Rc::new(MioEventloop::new_virtual());
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    lp.add_timer(When::In(ms(700)), None, Box::new(move || d.set(true)));
    lp.add_timer(
        When::In(ms(5000)),
        None,
        Box::new(|| panic!("must not run")),
    );
    let start = lp.now();
    lp.run(Some(ms(60_000)), &|| done.get()).unwrap();
    assert_eq!(lp.now() - start, ms(700));

    // Nothing registered and no timeout: returns at once.
    let lp = MioEventloop::new_virtual();
    lp.run(None, &|| false).unwrap();
}

#[test]
fn udp_readiness_on_loopback() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let lp = Rc::new(MioEventloop::new().unwrap());
        let rx = Rc::new(std::net::UdpSocket::bind(bind).unwrap());
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind(bind).unwrap();
        let got: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let handle: Rc<Cell<Option<sip_dispatch::eventloop::FdHandle>>> = Rc::default();
        let cb = {
            let (rx, got, lp2, handle) =
                (rx.clone(), got.clone(), Rc::downgrade(&lp), handle.clone());
            Box::new(move |r: sip_dispatch::eventloop::Readiness| {
                assert!(r.readable);
                let mut buf = [0u8; 64];
                // Edge-triggered: drain until it would block.
                while let Ok((n, _)) = rx.recv_from(&mut buf) {
                    got.borrow_mut().push(buf[..n].to_vec());
                }
                if got.borrow().len() == 2 {
                    // Removing the descriptor from inside its own callback.
                    assert!(lp2.upgrade().unwrap().del_fd(handle.get().unwrap()));
                }
            })
        };
        handle.set(Some(lp.add_fd(rx.as_raw_fd(), Interest::READ, cb).unwrap()));
        let to = rx.local_addr().unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two", to).unwrap();
        lp.run(Some(Duration::from_secs(2)), &|| got.borrow().len() == 2)
            .unwrap();
        assert_eq!(*got.borrow(), vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(lp.registered_fds(), 0);
        assert!(!lp.del_fd(handle.get().unwrap()), "stale handle");
    }
}

#[test]
fn writability_and_modify_fd() {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let sock = Rc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    sock.set_nonblocking(true).unwrap();
    let events: Rc<RefCell<Vec<(bool, bool)>>> = Rc::default();
    let e = events.clone();
    let h = lp
        .add_fd(
            sock.as_raw_fd(),
            Interest::WRITE,
            Box::new(move |r| e.borrow_mut().push((r.readable, r.writable))),
        )
        .unwrap();
    lp.run(Some(ms(200)), &|| !events.borrow().is_empty())
        .unwrap();
    assert_eq!(events.borrow()[0], (false, true));
    // Switch to read interest; a datagram to ourselves makes it readable.
    lp.modify_fd(h, Interest::READ).unwrap();
    events.borrow_mut().clear();
    sock.send_to(b"x", sock.local_addr().unwrap()).unwrap();
    lp.run(Some(ms(200)), &|| !events.borrow().is_empty())
        .unwrap();
    assert!(events.borrow()[0].0);
    assert!(
        lp.modify_fd(
            h,
            Interest {
                read: false,
                write: false
            }
        )
        .is_err()
    );
}

/// The same schedule (timers adding and cancelling timers) gives the same
/// sequence of events under virtual time and on the real clock. Deadlines
/// are at least 8 ms apart, so a late wake-up on a busy machine cannot
/// reorder timers added relative to a late callback.
#[test]
fn virtual_time_gives_the_same_sequence_as_real_time() {
    fn scenario(lp: Rc<MioEventloop>) -> Vec<&'static str> {
        let log: Rc<RefCell<Vec<&'static str>>> = Rc::default();
        let push = |label: &'static str| {
            let log = log.clone();
            Box::new(move || log.borrow_mut().push(label)) as Box<dyn FnMut()>
        };
        let doomed = lp.add_timer(When::In(ms(40)), None, push("doomed"));
        lp.add_timer(When::In(ms(30)), None, push("c30"));
        lp.add_timer(When::In(ms(5)), Some(ms(40)), push("tick"));
        {
            let (lp2, log) = (Rc::downgrade(&lp), log.clone());
            lp.add_timer(
                When::In(ms(10)),
                None,
                Box::new(move || {
                    let lp = lp2.upgrade().unwrap();
                    log.borrow_mut().push("a10");
                    lp.cancel_timer(doomed);
                    let log = log.clone();
                    lp.add_timer(
                        When::In(ms(12)),
                        None,
                        Box::new(move || log.borrow_mut().push("a10+12")),
                    );
                }),
            );
        }
        lp.add_timer(When::In(ms(100)), None, push("end"));
        let l = log.clone();
        lp.run(Some(ms(1000)), &move || l.borrow().last() == Some(&"end"))
            .unwrap();
        log.take()
    }
    let real = scenario(Rc::new(MioEventloop::new().unwrap()));
    let virt = scenario(Rc::new(MioEventloop::new_virtual()));
    assert_eq!(
        virt,
        vec!["tick", "a10", "a10+12", "c30", "tick", "tick", "end"]
    );
    assert_eq!(real, virt);
}

/// Dropping a callback may run code that calls back into the loop (a
/// captured dispatcher shutting down): cancel_timer and del_fd must not
/// hold their borrow while the callback is dropped.
#[test]
fn dropping_a_callback_may_call_back_into_the_loop() {
    struct CallsBack(Rc<MioEventloop>, Rc<Cell<u32>>);
    impl Drop for CallsBack {
        fn drop(&mut self) {
            let n = self.1.clone();
            self.0
                .add_timer(When::In(ms(1)), None, Box::new(move || n.set(n.get() + 1)));
        }
    }
    let lp = Rc::new(MioEventloop::new_virtual());
    let fired = Rc::new(Cell::new(0));
    let guard = CallsBack(lp.clone(), fired.clone());
    let t = lp.add_timer(
        When::In(ms(100)),
        None,
        Box::new(move || {
            let _keep = &guard;
        }),
    );
    assert!(lp.cancel_timer(t));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let guard = CallsBack(lp.clone(), fired.clone());
    let h = lp
        .add_fd(
            sock.as_raw_fd(),
            Interest::READ,
            Box::new(move |_| {
                let _keep = &guard;
            }),
        )
        .unwrap();
    assert!(lp.del_fd(h));
    lp.run(Some(ms(10)), &|| fired.get() == 2).unwrap();
    assert_eq!(fired.get(), 2);
}

#[test]
fn a_zero_delay_timer_runs_on_the_next_turn_not_the_next_tick() {
    // Real time, so "now" is almost never on a millisecond boundary: a
    // zero delay rounded up to the next tick would not be due within a
    // zero timeout. Deferred work (the dispatcher's callbacks) relies on it.
    let lp = MioEventloop::new().unwrap();
    for round in 0..20 {
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        lp.add_timer(
            When::In(Duration::ZERO),
            None,
            Box::new(move || f.set(true)),
        );
        let past = lp.now().checked_sub(ms(5)).unwrap_or(lp.now());
        let f2 = Rc::new(Cell::new(false));
        let g = f2.clone();
        lp.add_timer(When::Deadline(past), None, Box::new(move || g.set(true)));
        lp.run(Some(Duration::ZERO), &|| false).unwrap();
        assert!(fired.get(), "round {round}: zero delay did not run");
        assert!(f2.get(), "round {round}: past deadline did not run");
    }
}

#[test]
fn now_inside_a_descriptor_callback_is_its_start_and_a_nested_run_refreshes_it() {
    // Virtual time: the clock only moves in `run`, so the values are exact.
    let lp = Rc::new(MioEventloop::new_virtual());
    let rx = Rc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    rx.set_nonblocking(true).unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = lp.now();
    // (in the callback, in a timer of the nested run, after the nested run)
    let seen: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let cb = {
        let (rx, seen, weak) = (rx.clone(), seen.clone(), Rc::downgrade(&lp));
        Box::new(move |_: sip_dispatch::eventloop::Readiness| {
            let mut buf = [0u8; 16];
            while rx.recv_from(&mut buf).is_ok() {}
            let Some(lp) = weak.upgrade() else { return };
            if !seen.borrow().is_empty() {
                return;
            }
            seen.borrow_mut().push(lp.now() - start);
            let s = seen.clone();
            let w = Rc::downgrade(&lp);
            lp.add_timer(
                When::In(ms(30)),
                None,
                Box::new(move || {
                    let lp = w.upgrade().unwrap();
                    s.borrow_mut().push(lp.now() - start);
                }),
            );
            lp.run(Some(ms(50)), &|| false).unwrap();
            seen.borrow_mut().push(lp.now() - start);
        })
    };
    let _h = lp.add_fd(rx.as_raw_fd(), Interest::READ, cb).unwrap();
    // Virtual time moves by 7 ms before the datagram is seen.
    lp.run(Some(ms(7)), &|| false).unwrap();
    tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
    lp.run(Some(Duration::from_secs(1)), &|| seen.borrow().len() == 3)
        .unwrap();
    assert_eq!(*seen.borrow(), vec![ms(7), ms(37), ms(57)]);
    // Outside callbacks: the clock itself.
    assert_eq!(lp.now(), start + ms(57));
}
