//! Turning a request URI into destinations (RFC 3263 4 as far as this
//! module goes: domain2proxy, outgoing proxy, `maddr`, IP literals, SRV and
//! A/AAAA through a resolver hook), and the default resolver (IP literals
//! and /etc/hosts).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::str::FromStr;

use crate::error::{Errno, Error};
use crate::leg::Protocol;
use crate::packet::{Host, SipUri, Uri};

/// A DNS question the resolver hook is asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DnsQuery {
    /// SRV records of a name like `_sip._udp.example.com`.
    Srv(String),
    /// A records of a host name.
    A(String),
    /// AAAA records of a host name.
    Aaaa(String),
}

/// One record of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsRecord {
    /// An SRV record (RFC 2782).
    Srv {
        /// Lower is tried first.
        priority: u16,
        /// Relative weight among records of one priority.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host name (or an IP address, which is used as is).
        target: String,
    },
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
}

/// An answer: the records (none means "no such record"), or an error
/// (ETIMEDOUT for a DNS timeout, EHOSTUNREACH for a failed lookup).
pub type DnsAnswer = Result<Vec<DnsRecord>, Error>;

/// The resolver hook (the man page's `dnsresolv`): called with a question
/// and a callback that must be called once with the answer, now or later.
///
/// ```
/// use std::rc::Rc;
/// use sip_dispatch::dispatcher::{DnsQuery, DnsRecord, DnsResolver};
/// let resolver: DnsResolver = Rc::new(|q, answer| match q {
///     DnsQuery::A(name) if name == "proxy.test" => answer(Ok(vec![DnsRecord::A([127, 0, 0, 1].into())])),
///     _ => answer(Ok(vec![])),
/// });
/// # let _ = resolver;
/// ```
pub type DnsResolver = Rc<dyn Fn(DnsQuery, Box<dyn FnOnce(DnsAnswer)>)>;

/// A proxy in `outgoing_proxy` or `domain2proxy`: transport (optional),
/// host and port (optional).
///
/// ```
/// use sip_dispatch::dispatcher::ProxySpec;
/// use sip_dispatch::leg::Protocol;
/// let p: ProxySpec = "tcp:127.0.0.1:5070".parse().unwrap();
/// assert_eq!((p.proto, p.port), (Some(Protocol::Tcp), Some(5070)));
/// let p: ProxySpec = "sips:proxy.example.com".parse().unwrap();
/// assert_eq!(p.proto, Some(Protocol::Tls));
/// let p: ProxySpec = "[::1]:5060".parse().unwrap();
/// assert_eq!(p.proto, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySpec {
    /// The transport, if the spec names one.
    pub proto: Option<Protocol>,
    /// The host.
    pub host: Host,
    /// The port, if the spec names one.
    pub port: Option<u16>,
}

impl FromStr for ProxySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<ProxySpec, String> {
        let bad = || {
            format!("invalid proxy {s:?}: expected [udp:|tcp:|tls:]HOST[:PORT] or a sip:/sips: URI")
        };
        if let Ok(Uri::Sip(uri)) = Uri::parse(s) {
            if s.contains('@') || s.starts_with("sip:") || s.starts_with("sips:") {
                let proto = if uri.is_secure() {
                    Some(Protocol::Tls)
                } else {
                    uri.transport().and_then(Protocol::parse)
                };
                return Ok(ProxySpec {
                    proto,
                    host: uri.host(),
                    port: uri.port(),
                });
            }
        }
        let (proto, rest) = match s.split_once(':') {
            Some((p, rest)) if Protocol::parse(p).is_some() => (Protocol::parse(p), rest),
            _ => (None, s),
        };
        if let Ok(sa) = SocketAddr::from_str(rest) {
            return Ok(ProxySpec {
                proto,
                host: Host::from(sa.ip()),
                port: Some(sa.port()),
            });
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                (h, Some(p.parse::<u16>().map_err(|_| bad())?))
            }
            _ => (rest, None),
        };
        let host = Host::parse(host).map_err(|_| bad())?;
        Ok(ProxySpec { proto, host, port })
    }
}

impl fmt::Display for ProxySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = self.proto {
            write!(f, "{p}:")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Finds the domain2proxy entry for a domain: the exact domain, then
/// `*.parent` for the domain and each parent, then `*`.
pub(crate) fn match_domain<'a>(
    map: &'a [(String, ProxySpec)],
    domain: &str,
) -> Option<&'a ProxySpec> {
    let find = |key: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    if let Some(p) = find(domain) {
        return Some(p);
    }
    let mut rest = domain;
    loop {
        if let Some(p) = find(&format!("*.{rest}")) {
            return Some(p);
        }
        match rest.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => rest = parent,
            _ => break,
        }
    }
    find("*")
}

/// A resolved destination, before a leg is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) proto: Protocol,
    pub(crate) addr: SocketAddr,
    /// The host name the address came from (TLS identity: the URI's host).
    pub(crate) host: Option<Rc<str>>,
}

/// What to look up for one URI, decided without DNS.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Protocols in the order to try.
    pub(crate) protos: Vec<Protocol>,
    pub(crate) host: Host,
    pub(crate) port: Option<u16>,
    /// Whether SRV may be used (a host name without explicit port).
    pub(crate) use_srv: bool,
    /// The identity for TLS: the URI's host.
    pub(crate) identity: Option<Rc<str>>,
    pub(crate) secure: bool,
}

/// RFC 3263 4.1 and the man page's order: domain2proxy, outgoing proxy,
/// maddr, the URI's own host.
pub(crate) fn plan(
    uri: &SipUri,
    domain2proxy: &[(String, ProxySpec)],
    outgoing_proxy: Option<&ProxySpec>,
    allowed: &[Protocol],
) -> Result<Plan, Error> {
    let secure = uri.is_secure();
    let identity: Option<Rc<str>> = Some(Rc::from(
        uri.host_str().trim_start_matches('[').trim_end_matches(']'),
    ));
    let uri_proto = match uri.transport() {
        Some(t) => match Protocol::parse(t) {
            // sips: with transport=tcp still means TLS (RFC 3261 26.2.2).
            Some(Protocol::Tcp) if secure => Some(Protocol::Tls),
            Some(p) => Some(p),
            None => {
                return Err(Error::new(
                    Errno::ENOPROTOOPT,
                    format!("{uri}: transport {t} is not supported"),
                ));
            }
        },
        None if secure => Some(Protocol::Tls),
        None => None,
    };
    let proxy = match uri.ip() {
        Some(_) => match_domain(domain2proxy, "*"),
        None => match_domain(domain2proxy, uri.host_str()),
    }
    .or(outgoing_proxy);
    let (host, port, protos, use_srv) = if let Some(p) = proxy {
        // A proxy entry that names no protocol: UDP then TCP (TLS for a
        // sips: request).
        let protos = match (p.proto, secure) {
            (Some(proto), _) => vec![proto],
            (None, true) => vec![Protocol::Tls],
            (None, false) => vec![Protocol::Udp, Protocol::Tcp],
        };
        (
            p.host.clone(),
            p.port,
            protos,
            p.port.is_none() && p.host.ip().is_none(),
        )
    } else {
        let (host, port) = match uri.maddr().map(Host::parse) {
            Some(Ok(h)) => (h, uri.port()),
            Some(Err(_)) => {
                return Err(Error::new(
                    Errno::EHOSTUNREACH,
                    format!("{uri}: invalid maddr"),
                ));
            }
            None => (uri.host(), uri.port()),
        };
        let use_srv = port.is_none() && host.ip().is_none();
        let protos = match uri_proto {
            Some(p) => vec![p],
            // A name without port: SRV decides among what we allow.
            None if use_srv => vec![Protocol::Udp, Protocol::Tcp, Protocol::Tls],
            // An IP literal or explicit port: UDP (RFC 3263 4.1).
            None => vec![Protocol::Udp],
        };
        (host, port, protos, use_srv)
    };
    let protos: Vec<Protocol> = if allowed.is_empty() {
        protos
    } else {
        allowed
            .iter()
            .copied()
            .filter(|p| protos.contains(p))
            .collect()
    };
    if protos.is_empty() {
        return Err(Error::new(
            Errno::ENOPROTOOPT,
            format!("{uri}: none of the allowed transports can be used"),
        ));
    }
    Ok(Plan {
        protos,
        host,
        port,
        use_srv,
        identity,
        secure,
    })
}

/// The SRV name for a protocol (RFC 3263 4.2).
fn srv_name(proto: Protocol, domain: &str) -> String {
    match proto {
        Protocol::Udp => format!("_sip._udp.{domain}"),
        Protocol::Tcp => format!("_sip._tcp.{domain}"),
        Protocol::Tls => format!("_sips._tcp.{domain}"),
    }
}

/// Orders SRV records by priority, and inside a priority by the weighted
/// random selection of RFC 2782.
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

/// Called once with the outcome of a resolution.
pub(crate) type ResolutionDone = Box<dyn FnOnce(Result<Vec<Resolved>, Error>)>;

/// A lookup in progress: SRV queries for each protocol, then A/AAAA for
/// the targets (or for the host itself). Shared by the callbacks of its
/// queries; finishes by calling `done` once.
pub(crate) struct Resolution {
    plan: Plan,
    resolver: DnsResolver,
    pending: usize,
    /// SRV answers per protocol, in plan order.
    srv: Vec<(Protocol, Vec<DnsRecord>)>,
    srv_error: Option<Error>,
    /// Address answers per (host name, family).
    addrs: HashMap<String, Vec<IpAddr>>,
    addr_error: Option<Error>,
    phase: Phase,
    done: Option<ResolutionDone>,
    seed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Srv,
    Addresses,
    Finished,
}

impl Resolution {
    /// Starts resolving; `done` gets the ordered destinations. It may be
    /// called before this returns (a synchronous resolver).
    pub(crate) fn start(plan: Plan, resolver: DnsResolver, seed: u64, done: ResolutionDone) {
        let this = Rc::new(RefCell::new(Resolution {
            plan,
            resolver,
            pending: 0,
            srv: Vec::new(),
            srv_error: None,
            addrs: HashMap::new(),
            addr_error: None,
            phase: Phase::Srv,
            done: Some(done),
            seed,
        }));
        let (use_srv, domain, protos) = {
            let r = this.borrow();
            let domain = match &r.plan.host {
                Host::Domain(d) => Some(d.clone()),
                _ => None,
            };
            (r.plan.use_srv, domain, r.plan.protos.clone())
        };
        match (use_srv, domain) {
            (true, Some(domain)) => {
                this.borrow_mut().pending = protos.len();
                for proto in protos {
                    // The pending queries keep the resolution alive.
                    let this2 = this.clone();
                    let resolver = this.borrow().resolver.clone();
                    resolver(
                        DnsQuery::Srv(srv_name(proto, &domain)),
                        Box::new(move |answer| Resolution::on_srv(&this2, proto, answer)),
                    );
                }
            }
            _ => {
                this.borrow_mut().phase = Phase::Addresses;
                Resolution::lookup_addresses(&this);
            }
        }
    }

    fn on_srv(this: &Rc<RefCell<Resolution>>, proto: Protocol, answer: DnsAnswer) {
        let ready = {
            let mut r = this.borrow_mut();
            match answer {
                Ok(records) => r.srv.push((proto, records)),
                Err(e) => r.srv_error = Some(e),
            }
            r.pending -= 1;
            r.pending == 0
        };
        if ready {
            let no_srv = this.borrow().srv.iter().all(|(_, recs)| recs.is_empty());
            if no_srv {
                // No SRV records: A/AAAA of the host on the default port,
                // UDP for sip: and TLS for sips: (RFC 3263 4.2).
                let mut r = this.borrow_mut();
                let default = if r.plan.secure {
                    Protocol::Tls
                } else {
                    Protocol::Udp
                };
                if r.plan.protos.contains(&default) {
                    r.plan.protos = vec![default];
                } else {
                    r.plan.protos.truncate(1);
                }
                r.plan.use_srv = false;
            }
            this.borrow_mut().phase = Phase::Addresses;
            Resolution::lookup_addresses(this);
        }
    }

    /// The host names whose addresses are needed.
    fn names_needed(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.plan.use_srv {
            for (_, records) in &self.srv {
                for rec in records {
                    if let DnsRecord::Srv { target, .. } = rec {
                        let t = target.trim_end_matches('.').to_owned();
                        if t.parse::<IpAddr>().is_err() && !names.contains(&t) {
                            names.push(t);
                        }
                    }
                }
            }
        } else if let Host::Domain(d) = &self.plan.host {
            names.push(d.clone());
        }
        names
    }

    fn lookup_addresses(this: &Rc<RefCell<Resolution>>) {
        let names = this.borrow().names_needed();
        if names.is_empty() {
            Resolution::finish(this);
            return;
        }
        this.borrow_mut().pending = names.len() * 2;
        for name in names {
            for query in [DnsQuery::Aaaa(name.clone()), DnsQuery::A(name.clone())] {
                let this2 = this.clone();
                let resolver = this.borrow().resolver.clone();
                let name = name.clone();
                resolver(
                    query,
                    Box::new(move |answer| Resolution::on_addresses(&this2, &name, answer)),
                );
            }
        }
    }

    fn on_addresses(this: &Rc<RefCell<Resolution>>, name: &str, answer: DnsAnswer) {
        let ready = {
            let mut r = this.borrow_mut();
            match answer {
                Ok(records) => {
                    let ips = r.addrs.entry(name.to_owned()).or_default();
                    for rec in records {
                        match rec {
                            DnsRecord::A(a) => ips.push(IpAddr::V4(a)),
                            DnsRecord::Aaaa(a) => ips.push(IpAddr::V6(a)),
                            DnsRecord::Srv { .. } => {}
                        }
                    }
                }
                Err(e) => r.addr_error = Some(e),
            }
            r.pending -= 1;
            r.pending == 0
        };
        if ready {
            Resolution::finish(this);
        }
    }

    fn finish(this: &Rc<RefCell<Resolution>>) {
        let (result, done) = {
            let mut r = this.borrow_mut();
            if r.phase == Phase::Finished {
                return;
            }
            r.phase = Phase::Finished;
            (r.collect(), r.done.take())
        };
        if let Some(done) = done {
            done(result);
        }
    }

    fn collect(&mut self) -> Result<Vec<Resolved>, Error> {
        let mut out: Vec<Resolved> = Vec::new();
        let push = |out: &mut Vec<Resolved>,
                    proto: Protocol,
                    ip: IpAddr,
                    port: u16,
                    host: Option<Rc<str>>| {
            let r = Resolved {
                proto,
                addr: SocketAddr::new(ip, port),
                host,
            };
            if !out.contains(&r) {
                out.push(r);
            }
        };
        let identity = self.plan.identity.clone();
        if self.plan.use_srv {
            let mut state = self.seed | 1;
            let mut rng = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for (proto, records) in &self.srv {
                let recs: Vec<_> = records
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
                    let port = self.plan.port.unwrap_or(port);
                    match target.parse::<IpAddr>() {
                        Ok(ip) => push(&mut out, *proto, ip, port, identity.clone()),
                        Err(_) => {
                            for ip in self.addrs.get(&target).into_iter().flatten() {
                                push(&mut out, *proto, *ip, port, identity.clone());
                            }
                        }
                    }
                }
            }
        } else {
            let ips: Vec<IpAddr> = match &self.plan.host {
                Host::Domain(d) => self.addrs.get(d).cloned().unwrap_or_default(),
                h => h.ip().into_iter().collect(),
            };
            for proto in &self.plan.protos {
                let port = self.plan.port.unwrap_or(proto.default_port());
                for ip in &ips {
                    push(&mut out, *proto, *ip, port, identity.clone());
                }
            }
        }
        if out.is_empty() {
            let host = &self.plan.host;
            return Err(match (self.addr_error.take(), self.srv_error.take()) {
                (Some(e), _) | (None, Some(e)) => e,
                (None, None) => {
                    Error::new(Errno::EHOSTUNREACH, format!("no address found for {host}"))
                }
            });
        }
        Ok(out)
    }
}

/// The default resolver: answers A/AAAA from /etc/hosts (read once per
/// dispatcher) and nothing else; the built-in DNS client replaces it.
pub(crate) fn hosts_resolver() -> DnsResolver {
    let hosts = Rc::new(read_hosts("/etc/hosts"));
    Rc::new(move |q, answer| {
        let records = match &q {
            DnsQuery::A(name) => lookup_hosts(&hosts, name, true),
            DnsQuery::Aaaa(name) => lookup_hosts(&hosts, name, false),
            DnsQuery::Srv(_) => Vec::new(),
        };
        answer(Ok(records));
    })
}

fn lookup_hosts(hosts: &[(IpAddr, Vec<String>)], name: &str, v4: bool) -> Vec<DnsRecord> {
    let name = name.trim_end_matches('.');
    hosts
        .iter()
        .filter(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .filter_map(|(ip, _)| match ip {
            IpAddr::V4(a) if v4 => Some(DnsRecord::A(*a)),
            IpAddr::V6(a) if !v4 => Some(DnsRecord::Aaaa(*a)),
            _ => None,
        })
        .collect()
}

fn read_hosts(path: &str) -> Vec<(IpAddr, Vec<String>)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let mut parts = line.split_whitespace();
            let ip = parts.next()?.parse::<IpAddr>().ok()?;
            Some((ip, parts.map(str::to_owned).collect()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ProxySpec {
        s.parse().unwrap()
    }

    #[test]
    fn domain_matching() {
        let map = vec![
            ("example.com".to_owned(), spec("10.0.0.1:5060")),
            ("*.example.org".to_owned(), spec("10.0.0.2:5060")),
            ("*".to_owned(), spec("10.0.0.3:5060")),
        ];
        let m = |d| match_domain(&map, d).map(|p| p.host.to_string());
        assert_eq!(m("example.com").as_deref(), Some("10.0.0.1"));
        assert_eq!(m("EXAMPLE.COM").as_deref(), Some("10.0.0.1"));
        assert_eq!(m("a.b.example.org").as_deref(), Some("10.0.0.2"));
        // `*.domain` covers the domain itself too.
        assert_eq!(m("example.org").as_deref(), Some("10.0.0.2"));
        assert_eq!(m("sub.example.com").as_deref(), Some("10.0.0.3"));
        assert_eq!(m("other.net").as_deref(), Some("10.0.0.3"));
        assert_eq!(match_domain(&map[..2], "other.net"), None);
    }

    #[test]
    fn plans() {
        let u = |s: &str| SipUri::parse(s).unwrap();
        let p = plan(&u("sip:a@192.0.2.1"), &[], None, &[]).unwrap();
        assert_eq!(
            (p.protos.clone(), p.port, p.use_srv),
            (vec![Protocol::Udp], None, false)
        );
        let p = plan(&u("sips:a@192.0.2.1"), &[], None, &[]).unwrap();
        assert_eq!(p.protos, vec![Protocol::Tls]);
        let p = plan(&u("sips:a@192.0.2.1;transport=tcp"), &[], None, &[]).unwrap();
        assert_eq!(p.protos, vec![Protocol::Tls]);
        let p = plan(
            &u("sip:a@example.com"),
            &[],
            None,
            &[Protocol::Tcp, Protocol::Udp],
        )
        .unwrap();
        assert_eq!(p.protos, vec![Protocol::Tcp, Protocol::Udp]);
        assert!(p.use_srv);
        let p = plan(&u("sip:a@example.com:5080;transport=TCP"), &[], None, &[]).unwrap();
        assert_eq!(
            (p.protos.clone(), p.port, p.use_srv),
            (vec![Protocol::Tcp], Some(5080), false)
        );
        assert!(plan(&u("sip:a@example.com;transport=sctp"), &[], None, &[]).is_err());
        assert!(
            plan(
                &u("sip:a@example.com;transport=udp"),
                &[],
                None,
                &[Protocol::Tcp]
            )
            .is_err()
        );
        // maddr wins over the host.
        let p = plan(&u("sip:a@example.com:7070;maddr=10.9.9.9"), &[], None, &[]).unwrap();
        assert_eq!(
            (p.host.to_string(), p.port),
            ("10.9.9.9".to_owned(), Some(7070))
        );
        // Outgoing proxy without protocol: UDP then TCP, its own port.
        let op = spec("10.1.1.1:5090");
        let p = plan(&u("sip:a@example.com:7070"), &[], Some(&op), &[]).unwrap();
        assert_eq!(
            (p.protos.clone(), p.port),
            (vec![Protocol::Udp, Protocol::Tcp], Some(5090))
        );
        // domain2proxy wins over the outgoing proxy.
        let map = vec![("example.com".to_owned(), spec("tcp:10.2.2.2:5070"))];
        let p = plan(&u("sip:a@example.com"), &map, Some(&op), &[]).unwrap();
        assert_eq!(
            (p.protos.clone(), p.host.to_string()),
            (vec![Protocol::Tcp], "10.2.2.2".to_owned())
        );
    }

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
    fn proxy_specs() {
        assert_eq!(
            spec("sip:proxy.example.com:5070;transport=tcp").proto,
            Some(Protocol::Tcp)
        );
        assert_eq!(
            spec("udp:[::1]:5070").host,
            Host::Ipv6("::1".parse().unwrap())
        );
        assert_eq!(spec("proxy.example.com").port, None);
        assert!("tcp:".parse::<ProxySpec>().is_err());
    }
}
