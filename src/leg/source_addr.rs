//! Learning which local address packets to a destination leave from, for
//! legs bound to a wildcard address (their Via sent-by and Contact must
//! name a real address).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// A cache of destination address -> local source address, filled by
/// asking the routing table (a connected UDP socket sends nothing).
#[derive(Default, Debug)]
pub(crate) struct SourceCache {
    by_dst: HashMap<IpAddr, IpAddr>,
}

/// Bound on the cache: a wildcard leg talking to very many peers keeps the
/// most recent answers only.
const MAX_ENTRIES: usize = 4096;

impl SourceCache {
    pub(crate) fn source_for(&mut self, dst: IpAddr) -> Option<IpAddr> {
        if let Some(ip) = self.by_dst.get(&dst) {
            return Some(*ip);
        }
        let ip = route_source(dst)?;
        if self.by_dst.len() >= MAX_ENTRIES {
            self.by_dst.clear();
        }
        self.by_dst.insert(dst, ip);
        Some(ip)
    }

    pub(crate) fn is_known_source(&self, ip: IpAddr) -> bool {
        self.by_dst.values().any(|v| *v == ip)
    }
}

fn route_source(dst: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.connect((dst, 9)).ok()?;
    Some(sock.local_addr().ok()?.ip())
}
