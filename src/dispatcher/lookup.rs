//! The RFC 3263 DNS walk for one [`Plan`]: NAPTR (SIP+D2U, SIP+D2T,
//! SIPS+D2T) -> SRV (RFC 2782 priority and weighted order) -> AAAA/A, with
//! the fallbacks of RFC 3263 4.1/4.2, through a [`DnsResolver`] hook. The
//! result is the ordered list of (protocol, address, port) to try.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use crate::dns::{DnsAnswer, DnsQuery, DnsRecord, DnsResolver};
use crate::error::{Errno, Error};
use crate::leg::Protocol;
use crate::packet::Host;

use super::resolve::{Plan, Protocols, Resolved};

/// Called once with the outcome of a lookup.
pub(crate) type LookupDone = Box<dyn FnOnce(Result<Vec<Resolved>, Error>)>;

/// The SRV name for a protocol (RFC 3263 4.2).
pub(crate) fn srv_name(proto: Protocol, domain: &str) -> String {
    match proto {
        Protocol::Udp => format!("_sip._udp.{domain}"),
        Protocol::Tcp => format!("_sip._tcp.{domain}"),
        Protocol::Tls => format!("_sips._tcp.{domain}"),
    }
}

/// The transport a NAPTR service names (RFC 3263 4.1).
fn naptr_protocol(services: &str) -> Option<Protocol> {
    if services.eq_ignore_ascii_case("SIP+D2U") {
        Some(Protocol::Udp)
    } else if services.eq_ignore_ascii_case("SIP+D2T") {
        Some(Protocol::Tcp)
    } else if services.eq_ignore_ascii_case("SIPS+D2T") {
        Some(Protocol::Tls)
    } else {
        None
    }
}

/// Orders SRV records by priority, and inside a priority by the weighted
/// random selection of RFC 2782. Records are (priority, weight, port,
/// target); the result is (port, target).
pub(crate) fn order_srv(
    mut records: Vec<(u16, u16, u16, String)>,
    rng: &mut impl FnMut() -> u64,
) -> Vec<(u16, String)> {
    records.sort_by_key(|r| r.0);
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let prio = records[i].0;
        let mut group: Vec<_> = records[i..]
            .iter()
            .take_while(|r| r.0 == prio)
            .cloned()
            .collect();
        i += group.len();
        // Zero-weight records first, as RFC 2782 asks, so that they get a
        // small chance when others have weight.
        group.sort_by_key(|r| r.1 != 0);
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| r.1 as u64).sum();
            let pick = if total == 0 {
                0
            } else {
                let roll = rng() % (total + 1);
                let mut run = 0u64;
                group
                    .iter()
                    .position(|r| {
                        run += r.1 as u64;
                        run >= roll
                    })
                    .unwrap_or(0)
            };
            let r = group.remove(pick);
            out.push((r.2, r.3));
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Naptr,
    Srv,
    Addresses,
    Finished,
}

/// Addresses of one host name, by family.
#[derive(Default)]
struct Addresses {
    v6: Vec<Ipv6Addr>,
    v4: Vec<Ipv4Addr>,
}

/// A lookup in progress. Its pending queries hold it; it finishes by
/// calling `done` once.
pub(crate) struct Lookup {
    plan: Plan,
    resolver: DnsResolver,
    prefer_ipv6: bool,
    rng: u64,
    phase: Phase,
    pending: usize,
    /// SRV names to ask, in order, with their transport.
    srv_names: Vec<(Protocol, String)>,
    /// Answers, index-aligned with `srv_names`.
    srv: Vec<Vec<DnsRecord>>,
    /// SRV mode (targets from SRV) or address mode (the host itself).
    from_srv: bool,
    addrs: HashMap<String, Addresses>,
    error: Option<Error>,
    done: Option<LookupDone>,
}

impl Lookup {
    /// Starts; `done` may be called before this returns (a synchronous
    /// resolver, or an IP literal).
    pub(crate) fn start(
        plan: Plan,
        resolver: DnsResolver,
        prefer_ipv6: bool,
        seed: u64,
        done: LookupDone,
    ) {
        if let Some(ip) = plan.host.ip() {
            // An IP literal: nothing to look up (no lookup state either).
            let out = direct_targets(&plan, &[ip]);
            done(if out.is_empty() {
                Err(no_address(&plan.host))
            } else {
                Ok(out)
            });
            return;
        }
        let this = Rc::new(RefCell::new(Lookup {
            plan,
            resolver,
            prefer_ipv6,
            rng: seed | 1,
            phase: Phase::Naptr,
            pending: 0,
            srv_names: Vec::new(),
            srv: Vec::new(),
            from_srv: false,
            addrs: HashMap::new(),
            error: None,
            done: Some(done),
        }));
        let (domain, use_srv, naptr) = {
            let l = this.borrow();
            let domain = match &l.plan.host {
                Host::Domain(d) => Some(d.trim_end_matches('.').to_owned()),
                _ => None,
            };
            (domain, l.plan.use_srv, l.plan.use_naptr)
        };
        match (domain, use_srv) {
            (Some(domain), true) if naptr => {
                this.borrow_mut().pending = 1;
                let t = this.clone();
                Self::ask(&this, DnsQuery::Naptr(domain.clone()), move |a| {
                    Lookup::on_naptr(&t, &domain, a)
                });
            }
            (Some(domain), true) => {
                let names = this
                    .borrow()
                    .plan
                    .protos
                    .iter()
                    .map(|p| (*p, srv_name(*p, &domain)))
                    .collect();
                Lookup::ask_srv(&this, names);
            }
            _ => Lookup::ask_addresses(&this),
        }
    }

    fn ask(this: &Rc<RefCell<Lookup>>, q: DnsQuery, f: impl FnOnce(DnsAnswer) + 'static) {
        let resolver = this.borrow().resolver.clone();
        resolver(q, Box::new(f));
    }

    fn on_naptr(this: &Rc<RefCell<Lookup>>, domain: &str, answer: DnsAnswer) {
        let names = {
            let mut l = this.borrow_mut();
            l.pending = 0;
            let mut records: Vec<(u16, u16, Protocol, String)> = match answer {
                Ok(recs) => recs
                    .into_iter()
                    .filter_map(|r| match r {
                        DnsRecord::Naptr {
                            order,
                            preference,
                            flags,
                            services,
                            replacement,
                        } => {
                            let proto = naptr_protocol(&services)?;
                            // Only transports we can use and the URI allows.
                            let usable =
                                flags.eq_ignore_ascii_case("s") && l.plan.protos.contains(&proto);
                            usable.then(|| {
                                (
                                    order,
                                    preference,
                                    proto,
                                    replacement.trim_end_matches('.').to_owned(),
                                )
                            })
                        }
                        _ => None,
                    })
                    .collect(),
                // A failed NAPTR lookup: go on as if there were none.
                Err(e) => {
                    log::debug!("NAPTR {domain}: {e}; trying SRV");
                    Vec::new()
                }
            };
            records.sort_by_key(|r| (r.0, r.1));
            if records.is_empty() {
                // RFC 3263 4.1: no NAPTR: SRV for each transport we support.
                l.plan
                    .protos
                    .iter()
                    .map(|p| (*p, srv_name(*p, domain)))
                    .collect()
            } else {
                records
                    .into_iter()
                    .map(|(_, _, p, name)| (p, name))
                    .collect::<Vec<_>>()
            }
        };
        Lookup::ask_srv(this, names);
    }

    fn ask_srv(this: &Rc<RefCell<Lookup>>, names: Vec<(Protocol, String)>) {
        {
            let mut l = this.borrow_mut();
            l.phase = Phase::Srv;
            l.srv = vec![Vec::new(); names.len()];
            l.srv_names = names.clone();
            l.pending = names.len();
        }
        if names.is_empty() {
            Lookup::after_srv(this);
            return;
        }
        for (i, (_, name)) in names.into_iter().enumerate() {
            let t = this.clone();
            Self::ask(this, DnsQuery::Srv(name), move |a| Lookup::on_srv(&t, i, a));
        }
    }

    fn on_srv(this: &Rc<RefCell<Lookup>>, index: usize, answer: DnsAnswer) {
        let ready = {
            let mut l = this.borrow_mut();
            match answer {
                Ok(recs) => {
                    if let Some(slot) = l.srv.get_mut(index) {
                        *slot = recs
                            .into_iter()
                            .filter(|r| matches!(r, DnsRecord::Srv { .. }))
                            .collect();
                    }
                }
                Err(e) => l.error = Some(e),
            }
            l.pending = l.pending.saturating_sub(1);
            l.pending == 0 && l.phase == Phase::Srv
        };
        if ready {
            Lookup::after_srv(this);
        }
    }

    fn after_srv(this: &Rc<RefCell<Lookup>>) {
        {
            let mut l = this.borrow_mut();
            if l.srv.iter().any(|r| !r.is_empty()) {
                l.from_srv = true;
            } else {
                // RFC 3263 4.2: no SRV: A/AAAA of the domain on the default
                // port, UDP for sip: and TLS for sips: (or the one transport
                // the URI names).
                let default = if l.plan.secure {
                    Protocol::Tls
                } else {
                    Protocol::Udp
                };
                let proto = if l.plan.protos.contains(&default) {
                    default
                } else {
                    l.plan.protos[0]
                };
                l.plan.protos = Protocols::one(proto);
                l.error = None;
            }
        }
        Lookup::ask_addresses(this);
    }

    /// Host names whose addresses are needed.
    fn names_needed(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        if self.from_srv {
            for records in &self.srv {
                for rec in records {
                    if let DnsRecord::Srv { target, .. } = rec {
                        let t = target.trim_end_matches('.');
                        if t.parse::<IpAddr>().is_err() && !names.iter().any(|n| n == t) {
                            names.push(t.to_owned());
                        }
                    }
                }
            }
        } else if let Host::Domain(d) = &self.plan.host {
            names.push(d.trim_end_matches('.').to_owned());
        }
        names
    }

    fn ask_addresses(this: &Rc<RefCell<Lookup>>) {
        let names = {
            let mut l = this.borrow_mut();
            l.phase = Phase::Addresses;
            let names = l.names_needed();
            l.pending = names.len() * 2;
            names
        };
        if names.is_empty() {
            Lookup::finish(this);
            return;
        }
        for name in names {
            for q in [DnsQuery::Aaaa(name.clone()), DnsQuery::A(name.clone())] {
                let (t, n) = (this.clone(), name.clone());
                Self::ask(this, q, move |a| Lookup::on_addresses(&t, &n, a));
            }
        }
    }

    fn on_addresses(this: &Rc<RefCell<Lookup>>, name: &str, answer: DnsAnswer) {
        let ready = {
            let mut l = this.borrow_mut();
            match answer {
                Ok(recs) => {
                    let entry = l.addrs.entry(name.to_owned()).or_default();
                    for r in recs {
                        match r {
                            DnsRecord::A(a) => entry.v4.push(a),
                            DnsRecord::Aaaa(a) => entry.v6.push(a),
                            _ => {}
                        }
                    }
                }
                Err(e) => l.error = Some(e),
            }
            l.pending = l.pending.saturating_sub(1);
            l.pending == 0 && l.phase == Phase::Addresses
        };
        if ready {
            Lookup::finish(this);
        }
    }

    fn finish(this: &Rc<RefCell<Lookup>>) {
        let (result, done) = {
            let mut l = this.borrow_mut();
            if l.phase == Phase::Finished {
                return;
            }
            l.phase = Phase::Finished;
            (l.collect(), l.done.take())
        };
        if let Some(done) = done {
            done(result);
        }
    }

    /// The addresses of a name (or IP literal), in the preferred order.
    fn ips_of(&self, name: &str) -> Vec<IpAddr> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return vec![ip];
        }
        let Some(a) = self.addrs.get(name) else {
            return Vec::new();
        };
        let v6 = a.v6.iter().map(|x| IpAddr::V6(*x));
        let v4 = a.v4.iter().map(|x| IpAddr::V4(*x));
        if self.prefer_ipv6 {
            v6.chain(v4).collect()
        } else {
            v4.chain(v6).collect()
        }
    }

    fn collect(&mut self) -> Result<Vec<Resolved>, Error> {
        let mut out: Vec<Resolved> = Vec::new();
        let identity = self.plan.identity.clone();
        let mut push = |proto: Protocol, ip: IpAddr, port: u16| {
            let r = Resolved {
                proto,
                addr: SocketAddr::new(ip, port),
                host: identity.clone(),
            };
            if !out.contains(&r) {
                out.push(r);
            }
        };
        if self.from_srv {
            let mut state = self.rng;
            let mut rng = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for (i, (proto, _)) in self.srv_names.iter().enumerate() {
                let recs: Vec<_> = self.srv[i]
                    .iter()
                    .filter_map(|r| match r {
                        DnsRecord::Srv {
                            priority,
                            weight,
                            port,
                            target,
                        } => Some((
                            *priority,
                            *weight,
                            *port,
                            target.trim_end_matches('.').to_owned(),
                        )),
                        _ => None,
                    })
                    .collect();
                for (port, target) in order_srv(recs, &mut rng) {
                    // A target of "." means "no service here" (RFC 2782).
                    if target.is_empty() {
                        continue;
                    }
                    for ip in self.ips_of(&target) {
                        push(*proto, ip, port);
                    }
                }
            }
        } else {
            let ips = match &self.plan.host {
                Host::Domain(d) => self.ips_of(d.trim_end_matches('.')),
                h => h.ip().into_iter().collect(),
            };
            out = direct_targets(&self.plan, &ips);
        }
        if out.is_empty() {
            return Err(self
                .error
                .take()
                .unwrap_or_else(|| no_address(&self.plan.host)));
        }
        Ok(out)
    }
}

/// Every planned transport to every address, on the planned port (or the
/// transport's default), without duplicates.
fn direct_targets(plan: &Plan, ips: &[IpAddr]) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = Vec::with_capacity(plan.protos.len() * ips.len());
    for proto in plan.protos.iter() {
        let port = plan.port.unwrap_or(proto.default_port());
        for ip in ips {
            let r = Resolved {
                proto: *proto,
                addr: SocketAddr::new(*ip, port),
                host: plan.identity.clone(),
            };
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

fn no_address(host: &Host) -> Error {
    Error::new(Errno::EHOSTUNREACH, format!("no address found for {host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_order_by_priority_and_weight() {
        let recs = vec![
            (20, 0, 5080, "b".to_owned()),
            (10, 60, 5060, "a1".to_owned()),
            (10, 40, 5062, "a2".to_owned()),
        ];
        let mut state = 42u64;
        let mut rng = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        let mut first_a1 = 0;
        for _ in 0..1000 {
            let order = order_srv(recs.clone(), &mut rng);
            assert_eq!(order.len(), 3);
            assert_eq!(order[2].1, "b");
            if order[0].1 == "a1" {
                first_a1 += 1;
            }
        }
        // 60:40 weights: a1 first about 60% of the time.
        assert!((520..=680).contains(&first_a1), "{first_a1}");
    }

    #[test]
    fn naptr_services() {
        assert_eq!(naptr_protocol("SIP+D2U"), Some(Protocol::Udp));
        assert_eq!(naptr_protocol("sips+d2t"), Some(Protocol::Tls));
        assert_eq!(naptr_protocol("SIP+D2S"), None);
    }
}
