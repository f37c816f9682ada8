//! Transport protocols, destinations, sources and leg specs.

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::str::FromStr;

/// A SIP transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// UDP (RFC 3261 18).
    Udp,
    /// TCP (RFC 3261 18).
    Tcp,
    /// TLS over TCP (RFC 3261 26.2, RFC 5630).
    Tls,
}

impl Protocol {
    /// The name in Via headers: `UDP`, `TCP`, `TLS`.
    pub fn via_name(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
        }
    }

    /// The name in URIs and specs: `udp`, `tcp`, `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
        }
    }

    /// Whether the transport is reliable (no request retransmissions,
    /// Timers D, I, J, K zero: RFC 3261 17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Protocol::Udp)
    }

    /// The default port: 5060, or 5061 for TLS (RFC 3261 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Tls => 5061,
            _ => 5060,
        }
    }

    /// Parses a protocol name, case-insensitively (`udp`, `TCP`, ...).
    pub fn parse(s: &str) -> Option<Protocol> {
        if s.eq_ignore_ascii_case("udp") {
            Some(Protocol::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Some(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("tls") {
            Some(Protocol::Tls)
        } else {
            None
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection of a stream leg, as seen by the dispatcher: responses go
/// back on the connection their request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// A connection id from its raw value (for custom transports).
    pub fn from_raw(raw: u64) -> ConnId {
        ConnId(raw)
    }

    /// The raw value.
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// Where a packet goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The transport.
    pub proto: Protocol,
    /// Address and port.
    pub addr: SocketAddr,
    /// The host name this destination was resolved from: the TLS identity
    /// (RFC 5922) and what logs show.
    pub host: Option<Rc<str>>,
    /// A connection to send on, when one is known (responses).
    pub conn: Option<ConnId>,
}

impl Destination {
    /// A destination without host name or connection.
    pub fn new(proto: Protocol, addr: SocketAddr) -> Destination {
        Destination {
            proto,
            addr,
            host: None,
            conn: None,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)?;
        if let Some(h) = &self.host {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Where a received packet came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The transport it came over.
    pub proto: Protocol,
    /// The peer's address and port.
    pub addr: SocketAddr,
    /// The connection it came on (stream transports).
    pub conn: Option<ConnId>,
}

impl Source {
    /// The destination that answers go to over the same path: the same
    /// connection on streams, the source address on datagrams.
    pub fn reply_destination(&self) -> Destination {
        Destination {
            proto: self.proto,
            addr: self.addr,
            host: None,
            conn: self.conn,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}

/// What a leg is bound to: `[udp:|tcp:|tls:]HOST:PORT` (IPv6 in brackets;
/// port 0 picks a free port; UDP by default).
///
/// ```
/// use sip_dispatch::leg::{LegSpec, Protocol};
/// let spec: LegSpec = "tcp:[::1]:0".parse().unwrap();
/// assert_eq!(spec.proto, Protocol::Tcp);
/// assert_eq!(spec.addr, "[::1]:0".parse().unwrap());
/// let spec: LegSpec = "127.0.0.1:5060".parse().unwrap();
/// assert_eq!(spec.proto, Protocol::Udp);
/// assert!("udp:localhost".parse::<LegSpec>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegSpec {
    /// The transport.
    pub proto: Protocol,
    /// The local address and port.
    pub addr: SocketAddr,
}

impl FromStr for LegSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<LegSpec, String> {
        let (proto, rest) = match s.split_once(':') {
            Some((p, rest)) if Protocol::parse(p).is_some() => {
                (Protocol::parse(p).unwrap_or(Protocol::Udp), rest)
            }
            _ => (Protocol::Udp, s),
        };
        let addr = SocketAddr::from_str(rest).map_err(|_| {
            format!("invalid leg spec {s:?}: expected [udp:|tcp:|tls:]IP:PORT (IPv6 as [::1]:5060)")
        })?;
        Ok(LegSpec { proto, addr })
    }
}

impl fmt::Display for LegSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.proto, self.addr)
    }
}
