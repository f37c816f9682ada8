//! Shared helpers for dispatcher tests: virtual-time loops, memory
//! networks, silent peers that record what reaches them, message builders.
#![allow(dead_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sip_dispatch::dispatcher::{DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Faults, Leg, LegEvent, LegOptions, MemoryNetwork, Protocol, Source};
use sip_dispatch::packet::Packet;

pub struct World {
    pub lp: Rc<MioEventloop>,
    pub net: MemoryNetwork,
    pub start: Instant,
}

impl World {
    pub fn new(faults: Faults, seed: u64) -> World {
        let lp = Rc::new(MioEventloop::new_virtual());
        let start = lp.now();
        World {
            lp,
            net: MemoryNetwork::new(faults, seed),
            start,
        }
    }

    /// One-way delay of exactly 1 ms, no faults.
    pub fn exact() -> World {
        World::new(Faults::default(), 1)
    }

    pub fn dyn_loop(&self) -> Rc<dyn Eventloop> {
        self.lp.clone()
    }

    pub fn leg(&self, addr: &str) -> Leg {
        Leg::memory(
            &self.net,
            Protocol::Udp,
            addr.parse().unwrap(),
            LegOptions::default(),
        )
        .unwrap()
    }

    pub fn dispatcher(&self, addr: &str, options: DispatcherOptions) -> Dispatcher {
        Dispatcher::new(vec![self.leg(addr)], Some(self.dyn_loop()), options).unwrap()
    }

    /// Milliseconds since the world started.
    pub fn ms(&self) -> u64 {
        (self.lp.now() - self.start).as_millis() as u64
    }

    pub fn run_until(&self, limit: Duration, stop: impl Fn() -> bool) {
        self.lp.run(Some(limit), &stop).unwrap();
    }

    /// A peer that records every packet reaching it, with the time.
    pub fn silent_peer(&self, addr: &str) -> Peer {
        let leg = self.leg(addr);
        let got: Rc<RefCell<Vec<(u64, Packet, Source)>>> = Rc::default();
        let (g, lp, start) = (got.clone(), self.lp.clone(), self.start);
        leg.attach(
            self.dyn_loop(),
            Rc::new(move |_leg: &Leg, ev: LegEvent| {
                if let LegEvent::Packet(p, from) = ev {
                    g.borrow_mut()
                        .push(((lp.now() - start).as_millis() as u64, p, from));
                }
            }),
        )
        .unwrap();
        Peer { leg, got }
    }
}

pub struct Peer {
    pub leg: Leg,
    pub got: Rc<RefCell<Vec<(u64, Packet, Source)>>>,
}

impl Peer {
    pub fn times(&self) -> Vec<u64> {
        self.got.borrow().iter().map(|(t, _, _)| *t).collect()
    }

    pub fn methods(&self) -> Vec<String> {
        self.got
            .borrow()
            .iter()
            .map(|(_, p, _)| match p {
                Packet::Request(r) => r.method().to_string(),
                Packet::Response(r) => r.code().to_string(),
            })
            .collect()
    }

    pub fn addr(&self) -> SocketAddr {
        self.leg.local_addr()
    }
}

pub type Outcomes = Rc<RefCell<Vec<(u64, DeliveryOutcome)>>>;

/// Deliver options whose callback records the outcome with its time.
pub fn recording(world: &World, outcomes: &Outcomes) -> DeliverOptions {
    let (o, lp, start) = (outcomes.clone(), world.lp.clone(), world.start);
    DeliverOptions::with_callback(move |_, out| {
        o.borrow_mut()
            .push(((lp.now() - start).as_millis() as u64, out))
    })
}

pub fn request(method: &str, uri: &str, call_id: &str, cseq: u32) -> Packet {
    let text = format!(
        "{method} {uri} SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n\
         To: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    );
    Packet::parse(text.as_bytes()).unwrap()
}
