//! Workload helpers shared by the benchmarks (included with `#[path]`):
//! a seeded random number generator, and a client dispatcher whose every
//! datagram is lost (a silent network), for pending-delivery workloads.
#![allow(dead_code)]

use std::rc::Rc;

use sip_dispatch::dispatcher::{Dispatcher, DispatcherOptions};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Faults, Leg, LegOptions, MemoryNetwork, Protocol};

/// SplitMix64: seeded, reproducible, good enough to pick workloads.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The client side's address on the silent network.
pub const UAC_ADDR: &str = "10.0.0.1:5060";

/// A dispatcher on a virtual-time loop with one memory leg at
/// [`UAC_ADDR`] on a network that loses everything: what it delivers
/// stays pending.
pub struct SilentUac {
    pub lp: Rc<MioEventloop>,
    pub net: MemoryNetwork,
    pub leg: Leg,
    pub d: Dispatcher,
}

impl SilentUac {
    pub fn new(options: DispatcherOptions) -> SilentUac {
        let lp = Rc::new(MioEventloop::new_virtual());
        let net = MemoryNetwork::new(
            Faults {
                loss: 1.0,
                ..Faults::default()
            },
            1,
        );
        let leg = Leg::memory(
            &net,
            Protocol::Udp,
            UAC_ADDR.parse().expect("addr"),
            LegOptions::default(),
        )
        .expect("memory leg");
        let dyn_lp: Rc<dyn Eventloop> = lp.clone();
        let d = Dispatcher::new(vec![leg.clone()], Some(dyn_lp), options).expect("dispatcher");
        SilentUac { lp, net, leg, d }
    }
}
