//! DNS for RFC 3263: the questions the dispatcher asks and the answers it
//! expects, as a hook anybody can implement ([`DnsResolver`]), and the
//! built-in [`StubResolver`] (resolv.conf, /etc/hosts, a cache; queries
//! over UDP and TCP from the event loop, in hickory-proto's wire format).

mod cache;
mod client;
mod config;
mod hosts;
mod wire;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;

use crate::error::Error;

pub use client::{DnsStats, StubResolver};
pub use config::{CacheOptions, DnsConfig};
pub use hosts::{HostsFile, hosts_resolver};

/// A DNS question the resolver hook is asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DnsQuery {
    /// NAPTR records of a domain (RFC 3263 4.1).
    Naptr(String),
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
    /// A NAPTR record (RFC 3403), as RFC 3263 uses it.
    Naptr {
        /// Lower is used first.
        order: u16,
        /// Lower is preferred among records of one order.
        preference: u16,
        /// Flags (`s` for "the replacement is an SRV name").
        flags: String,
        /// Service (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, ...).
        services: String,
        /// The replacement domain (an SRV name for SIP).
        replacement: String,
    },
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
/// Names are fully qualified (no search list); CNAMEs are followed by the
/// resolver, so answers hold records of the type asked.
///
/// ```
/// use std::rc::Rc;
/// use sip_dispatch::dns::{DnsQuery, DnsRecord, DnsResolver};
/// let resolver: DnsResolver = Rc::new(|q, answer| match q {
///     DnsQuery::A(name) if name == "proxy.test" => answer(Ok(vec![DnsRecord::A([127, 0, 0, 1].into())])),
///     _ => answer(Ok(vec![])),
/// });
/// # let _ = resolver;
/// ```
pub type DnsResolver = Rc<dyn Fn(DnsQuery, Box<dyn FnOnce(DnsAnswer)>)>;
