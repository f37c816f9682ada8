//! Turning a request URI into destinations (RFC 3263 4 as far as this
//! module goes: domain2proxy, outgoing proxy, `maddr`, IP literals, SRV and
//! A/AAAA through a resolver hook), and the default resolver (IP literals
//! and /etc/hosts).

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::str::FromStr;

use crate::error::{Errno, Error};
use crate::leg::Protocol;
use crate::packet::{Host, SipUri, Uri};

/// A set of transports in insertion order, inline: resolution runs per
/// request, and there are only three transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Protocols {
    list: [Protocol; 3],
    /// A byte: four bytes in all, kept in every pending delivery.
    len: u8,
}

impl Default for Protocols {
    fn default() -> Protocols {
        Protocols {
            list: [Protocol::Udp; 3],
            len: 0,
        }
    }
}

impl Protocols {
    /// The set holding `p` alone.
    pub(crate) fn one(p: Protocol) -> Protocols {
        let mut v = Protocols::default();
        v.add(p);
        v
    }

    /// Adds `p` at the end unless it is already there.
    pub(crate) fn add(&mut self, p: Protocol) {
        let len = usize::from(self.len);
        if !self.contains(&p) && len < self.list.len() {
            self.list[len] = p;
            self.len += 1;
        }
    }

    /// Keeps the first `n`.
    pub(crate) fn truncate(&mut self, n: usize) {
        self.len = self.len.min(u8::try_from(n).unwrap_or(u8::MAX));
    }
}

impl std::ops::Deref for Protocols {
    type Target = [Protocol];
    fn deref(&self) -> &[Protocol] {
        &self.list[..usize::from(self.len)]
    }
}

impl FromIterator<Protocol> for Protocols {
    fn from_iter<I: IntoIterator<Item = Protocol>>(iter: I) -> Protocols {
        let mut v = Protocols::default();
        for p in iter {
            v.add(p);
        }
        v
    }
}

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
    if map.is_empty() {
        return None;
    }
    let find = |key: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    if let Some(p) = find(domain) {
        return Some(p);
    }
    // `*.rest`, compared without building it.
    let wildcard = |rest: &str| {
        map.iter()
            .find(|(k, _)| {
                k.strip_prefix("*.")
                    .is_some_and(|suffix| suffix.eq_ignore_ascii_case(rest))
            })
            .map(|(_, v)| v)
    };
    let mut rest = domain;
    loop {
        if let Some(p) = wildcard(rest) {
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
    pub(crate) protos: Protocols,
    pub(crate) host: Host,
    pub(crate) port: Option<u16>,
    /// Whether SRV may be used (a host name without explicit port).
    pub(crate) use_srv: bool,
    /// Whether NAPTR may be used (SRV allowed, and no transport named).
    pub(crate) use_naptr: bool,
    /// The identity for TLS: the URI's host.
    pub(crate) identity: Option<Rc<str>>,
    pub(crate) secure: bool,
}

/// RFC 3263 4.1 and the man page's order: domain2proxy, outgoing proxy,
/// maddr, the URI's own host.
///
/// `allowed` filters and orders the transports (empty: all); `available`
/// are the transports there are legs for (RFC 3263: only those are looked
/// up).
pub(crate) fn plan(
    uri: &SipUri,
    domain2proxy: &[(String, ProxySpec)],
    outgoing_proxy: Option<&ProxySpec>,
    allowed: &[Protocol],
    available: &[Protocol],
) -> Result<Plan, Error> {
    let secure = uri.is_secure();
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
    let naming_transport = uri_proto.is_some();
    let (host, port, protos, use_srv) = if let Some(p) = proxy {
        // A proxy entry that names no protocol: UDP then TCP (TLS for a
        // sips: request).
        let protos = match (p.proto, secure) {
            (Some(proto), _) => Protocols::one(proto),
            (None, true) => Protocols::one(Protocol::Tls),
            (None, false) => [Protocol::Udp, Protocol::Tcp].into_iter().collect(),
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
            Some(p) => Protocols::one(p),
            // A name without port: SRV decides among what we allow.
            None if use_srv => [Protocol::Udp, Protocol::Tcp, Protocol::Tls]
                .into_iter()
                .collect(),
            // An IP literal or explicit port: UDP (RFC 3263 4.1); TCP
            // only when there is no UDP leg (trimmed below).
            None => [Protocol::Udp, Protocol::Tcp].into_iter().collect(),
        };
        (host, port, protos, use_srv)
    };
    let first_available_only = proxy.is_none() && !use_srv && uri_proto.is_none();
    let use_naptr = use_srv && !naming_transport && proxy.is_none_or(|p| p.proto.is_none());
    let protos: Protocols = protos
        .iter()
        .copied()
        .filter(|p| available.is_empty() || available.contains(p))
        .collect();
    let mut protos: Protocols = if allowed.is_empty() {
        protos
    } else {
        allowed
            .iter()
            .copied()
            .filter(|p| protos.contains(p))
            .collect()
    };
    if first_available_only {
        protos.truncate(1);
    }
    if protos.is_empty() {
        return Err(Error::new(
            Errno::ENOPROTOOPT,
            format!("{uri}: none of the allowed transports can be used"),
        ));
    }
    // RFC 5922: the identity is the host of the URI resolved (the proxy's
    // when a proxy is used), never what DNS returns. Only TLS checks it.
    let identity: Option<Rc<str>> = protos.contains(&Protocol::Tls).then(|| {
        Rc::from(
            host.to_string()
                .trim_start_matches('[')
                .trim_end_matches(']'),
        )
    });
    Ok(Plan {
        protos,
        host,
        port,
        use_srv,
        use_naptr,
        identity,
        secure,
    })
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
        let p = plan(&u("sip:a@192.0.2.1"), &[], None, &[], &[]).unwrap();
        assert_eq!(
            (p.protos.to_vec(), p.port, p.use_srv),
            (vec![Protocol::Udp], None, false)
        );
        // An IP literal: UDP, or TCP when there is no UDP leg.
        let p = plan(&u("sip:a@192.0.2.1"), &[], None, &[], &[Protocol::Tcp]).unwrap();
        assert_eq!(p.protos.to_vec(), vec![Protocol::Tcp]);
        let p = plan(&u("sip:a@192.0.2.1"), &[], None, &[Protocol::Tcp], &[]).unwrap();
        assert_eq!(p.protos.to_vec(), vec![Protocol::Tcp]);
        let p = plan(&u("sips:a@192.0.2.1"), &[], None, &[], &[]).unwrap();
        assert_eq!(p.protos.to_vec(), vec![Protocol::Tls]);
        let p = plan(&u("sips:a@192.0.2.1;transport=tcp"), &[], None, &[], &[]).unwrap();
        assert_eq!(p.protos.to_vec(), vec![Protocol::Tls]);
        let p = plan(
            &u("sip:a@example.com"),
            &[],
            None,
            &[Protocol::Tcp, Protocol::Udp],
            &[],
        )
        .unwrap();
        assert_eq!(p.protos.to_vec(), vec![Protocol::Tcp, Protocol::Udp]);
        assert!(p.use_srv && p.use_naptr);
        // Only transports there are legs for.
        let p = plan(&u("sip:a@example.com"), &[], None, &[], &[Protocol::Udp]).unwrap();
        assert_eq!(p.protos.to_vec(), vec![Protocol::Udp]);
        assert!(
            plan(
                &u("sip:a@example.com;transport=tcp"),
                &[],
                None,
                &[],
                &[Protocol::Udp]
            )
            .is_err()
        );
        let p = plan(
            &u("sip:a@example.com:5080;transport=TCP"),
            &[],
            None,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            (p.protos.to_vec(), p.port, p.use_srv),
            (vec![Protocol::Tcp], Some(5080), false)
        );
        assert!(plan(&u("sip:a@example.com;transport=sctp"), &[], None, &[], &[]).is_err());
        assert!(
            plan(
                &u("sip:a@example.com;transport=udp"),
                &[],
                None,
                &[Protocol::Tcp],
                &[]
            )
            .is_err()
        );
        // maddr wins over the host.
        let p = plan(
            &u("sip:a@example.com:7070;maddr=10.9.9.9"),
            &[],
            None,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            (p.host.to_string(), p.port),
            ("10.9.9.9".to_owned(), Some(7070))
        );
        // Outgoing proxy without protocol: UDP then TCP, its own port.
        let op = spec("10.1.1.1:5090");
        let p = plan(&u("sip:a@example.com:7070"), &[], Some(&op), &[], &[]).unwrap();
        assert_eq!(
            (p.protos.to_vec(), p.port),
            (vec![Protocol::Udp, Protocol::Tcp], Some(5090))
        );
        // domain2proxy wins over the outgoing proxy.
        let map = vec![("example.com".to_owned(), spec("tcp:10.2.2.2:5070"))];
        let p = plan(&u("sip:a@example.com"), &map, Some(&op), &[], &[]).unwrap();
        assert_eq!(
            (p.protos.to_vec(), p.host.to_string()),
            (vec![Protocol::Tcp], "10.2.2.2".to_owned())
        );
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
