//! An in-memory network for tests and simulation: legs that exchange
//! datagrams through the event loop's timers, with seeded fault injection
//! (loss, duplication, reordering, delay), partitions, and ICMP-like errors
//! for addresses nobody listens on. Works under virtual time.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::error::{Errno, Error};
use crate::eventloop::{Eventloop, When};
use crate::packet::Framing;

use super::{Destination, Leg, LegEvent, LegInner, Protocol, SendStatus, Source};

/// What the network does to each datagram. Probabilities are in `0.0..=1.0`.
///
/// ```
/// use std::time::Duration;
/// use sip_dispatch::leg::Faults;
/// let lossy = Faults { loss: 0.2, delay: (Duration::from_millis(5), Duration::from_millis(40)), ..Faults::default() };
/// assert_eq!(lossy.duplicate, 0.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Chance a datagram is lost.
    pub loss: f64,
    /// Chance a datagram arrives twice.
    pub duplicate: f64,
    /// Chance a datagram is held back (an extra delay of up to the maximum
    /// delay again), so that later ones overtake it.
    pub reorder: f64,
    /// One-way delay, drawn uniformly between the two bounds.
    pub delay: (Duration, Duration),
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: (Duration::from_millis(1), Duration::from_millis(1)),
        }
    }
}

/// Counters of a [`MemoryNetwork`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Datagrams delivered (duplicates included).
    pub delivered: u64,
    /// Datagrams lost by fault injection or a partition.
    pub lost: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Datagrams to an address nobody listens on.
    pub unreachable: u64,
}

struct Net {
    endpoints: HashMap<SocketAddr, Weak<LegInner>>,
    faults: Faults,
    rng: u64,
    partitions: HashSet<(IpAddr, IpAddr)>,
    stats: NetworkStats,
}

/// A simulated network joining [`Leg::memory`] legs. Cheap to clone.
#[derive(Clone)]
pub struct MemoryNetwork {
    net: Rc<RefCell<Net>>,
}

impl MemoryNetwork {
    /// A network with these faults, and a seed for their random choices
    /// (same seed, same run).
    pub fn new(faults: Faults, seed: u64) -> MemoryNetwork {
        MemoryNetwork {
            net: Rc::new(RefCell::new(Net {
                endpoints: HashMap::new(),
                faults,
                rng: seed ^ 0x9e37_79b9_7f4a_7c15,
                partitions: HashSet::new(),
                stats: NetworkStats::default(),
            })),
        }
    }

    /// Changes the faults from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.net.borrow_mut().faults = faults;
    }

    /// Cuts traffic between two hosts, both ways, until [`MemoryNetwork::heal`].
    pub fn partition(&self, a: IpAddr, b: IpAddr) {
        let mut n = self.net.borrow_mut();
        n.partitions.insert((a, b));
        n.partitions.insert((b, a));
    }

    /// Removes all partitions.
    pub fn heal(&self) {
        self.net.borrow_mut().partitions.clear();
    }

    /// The network's counters.
    pub fn stats(&self) -> NetworkStats {
        self.net.borrow().stats
    }
}

/// splitmix64: small, fast, and good enough for fault injection.
fn next_random(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) struct MemoryTransport {
    network: MemoryNetwork,
    addr: SocketAddr,
}

impl MemoryTransport {
    pub(crate) fn new(network: &MemoryNetwork, addr: SocketAddr) -> io::Result<MemoryTransport> {
        let n = network.net.borrow();
        if n.endpoints.get(&addr).is_some_and(|w| w.strong_count() > 0) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is taken on this memory network"),
            ));
        }
        drop(n);
        Ok(MemoryTransport {
            network: network.clone(),
            addr,
        })
    }

    pub(crate) fn attach(&mut self, leg: Weak<LegInner>) {
        self.network
            .net
            .borrow_mut()
            .endpoints
            .insert(self.addr, leg);
    }

    pub(crate) fn detach(&mut self) {
        self.network.net.borrow_mut().endpoints.remove(&self.addr);
    }

    pub(crate) fn send(
        &mut self,
        proto: Protocol,
        bytes: Rc<[u8]>,
        dst: &Destination,
        lp: Option<&dyn Eventloop>,
    ) -> SendStatus {
        let Some(lp) = lp else {
            return SendStatus::Failed(Error::new(
                Errno::ENOTCONN,
                "memory leg is not attached to an event loop",
            ));
        };
        let from = self.addr;
        let to = dst.addr;
        // Decide the datagram's fate now (deterministic order of random
        // draws), deliver later.
        let (copies, listening, sender) = {
            let mut n = self.network.net.borrow_mut();
            n.stats.sent += 1;
            let faults = n.faults.clone();
            let partitioned = n.partitions.contains(&(from.ip(), to.ip()));
            let lost = partitioned || next_random(&mut n.rng) < faults.loss;
            let mut delays = Vec::new();
            if lost {
                n.stats.lost += 1;
            } else {
                let count = if next_random(&mut n.rng) < faults.duplicate {
                    2
                } else {
                    1
                };
                if count == 2 {
                    n.stats.duplicated += 1;
                }
                for _ in 0..count {
                    let (lo, hi) = faults.delay;
                    let span = hi.saturating_sub(lo);
                    let mut d = lo + span.mul_f64(next_random(&mut n.rng));
                    if next_random(&mut n.rng) < faults.reorder {
                        d += hi.mul_f64(next_random(&mut n.rng));
                    }
                    delays.push(d);
                }
            }
            let listening = n.endpoints.get(&to).and_then(Weak::upgrade).is_some();
            (delays, listening, n.endpoints.get(&from).cloned())
        };
        if copies.is_empty() {
            return SendStatus::Sent;
        }
        if !listening {
            // Like an ICMP port unreachable, after one trip.
            self.network.net.borrow_mut().stats.unreachable += 1;
            let sender = sender.unwrap_or_default();
            let dst = dst.clone();
            lp.add_timer(
                When::In(copies[0] * 2),
                None,
                Box::new(move || {
                    if let Some(leg) = Leg::upgrade(&sender) {
                        let err = Error::new(
                            Errno::ECONNREFUSED,
                            format!("memory network: nobody at {}", dst.addr),
                        );
                        leg.emit(vec![LegEvent::Unreachable(dst.clone(), err)]);
                    }
                }),
            );
            return SendStatus::Sent;
        }
        for delay in copies {
            let net = self.network.clone();
            let bytes = bytes.clone();
            lp.add_timer(
                When::In(delay),
                None,
                Box::new(move || {
                    let target = net.net.borrow().endpoints.get(&to).and_then(Weak::upgrade);
                    let Some(inner) = target else {
                        net.net.borrow_mut().stats.lost += 1;
                        return;
                    };
                    net.net.borrow_mut().stats.delivered += 1;
                    let leg = Leg { inner };
                    let source = Source {
                        proto,
                        addr: from,
                        conn: None,
                    };
                    if let Some(ev) = leg.accept_bytes(&bytes, source, Framing::Datagram) {
                        leg.emit(vec![ev]);
                    }
                }),
            );
        }
        SendStatus::Sent
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        if let Ok(mut n) = self.network.net.try_borrow_mut() {
            if n.endpoints
                .get(&self.addr)
                .is_some_and(|w| w.strong_count() == 0)
            {
                n.endpoints.remove(&self.addr);
            }
        }
    }
}
