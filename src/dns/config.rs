//! The stub resolver's configuration: resolv.conf, the hosts file, and the
//! limits that keep a flood of lookups in bounded memory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::hosts::HostsFile;

/// glibc's MAXNS: resolv.conf lines beyond the third nameserver are ignored.
const MAX_RESOLV_CONF_NAMESERVERS: usize = 3;
/// glibc's MAXDNSRCH.
const MAX_SEARCH_DOMAINS: usize = 6;

/// How answers are cached (see [`StubResolver`](super::StubResolver)).
///
/// ```
/// use std::time::Duration;
/// use sip_dispatch::dns::CacheOptions;
/// let off = CacheOptions { max_entries: 0, ..CacheOptions::default() };
/// assert_eq!(CacheOptions::default().max_ttl, Duration::from_secs(3600));
/// # let _ = off;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// Most cached questions; beyond it expired entries go first, then
    /// the oldest. `0` turns the cache off. Default 4096.
    pub max_entries: usize,
    /// Positive answers are kept for their TTL, at most this long.
    /// Default one hour.
    pub max_ttl: Duration,
    /// Negative answers (NXDOMAIN, no data) are kept for the SOA minimum
    /// of the authority section (RFC 2308), at most this long. Default
    /// five minutes.
    pub negative_max_ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            max_entries: 4096,
            max_ttl: Duration::from_secs(3600),
            negative_max_ttl: Duration::from_secs(300),
        }
    }
}

/// What the [`StubResolver`](super::StubResolver) asks, whom, how long it
/// waits and how much it keeps.
///
/// Defaults are glibc's: timeout 5 s, 2 attempts, `ndots` 1, and
/// 127.0.0.1:53 when no nameserver is given.
///
/// ```
/// use std::time::Duration;
/// use sip_dispatch::dns::DnsConfig;
/// let config = DnsConfig::with_nameservers(vec!["192.0.2.53:53".parse().unwrap()])
///     .timeout(Duration::from_secs(2))
///     .attempts(3)
///     .search(vec!["example.com".into()]);
/// assert_eq!(config.attempts, 3);
/// assert_eq!(config.ndots, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Servers asked, in order (each attempt tries them all).
    pub nameservers: Vec<SocketAddr>,
    /// Domains appended to names with fewer than `ndots` dots.
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as is first.
    pub ndots: u8,
    /// How long one server is given to answer one query.
    pub timeout: Duration,
    /// Rounds over all nameservers before a query fails with ETIMEDOUT.
    pub attempts: u32,
    /// Start each query at the next nameserver (round robin) instead of
    /// the first.
    pub rotate: bool,
    /// Send an EDNS(0) OPT record offering 1232-byte UDP answers
    /// (resolv.conf `options edns0`); without it servers truncate UDP
    /// answers at 512 bytes and the resolver retries over TCP.
    pub edns0: bool,
    /// A and AAAA questions for names listed here are answered from it.
    pub hosts: HostsFile,
    /// Most queries on the wire at once; more wait in a FIFO.
    pub max_in_flight: usize,
    /// Most queries waiting for a slot; beyond it a lookup fails with
    /// ENOBUFS.
    pub max_waiting: usize,
    /// Larger answers are rejected (UDP and TCP); the server counts as
    /// failed for that query.
    pub max_answer_size: usize,
    /// The answer cache.
    pub cache: CacheOptions,
}

impl Default for DnsConfig {
    /// glibc's defaults, asking 127.0.0.1:53, with an empty hosts file.
    fn default() -> DnsConfig {
        DnsConfig {
            nameservers: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            edns0: false,
            hosts: HostsFile::default(),
            max_in_flight: 256,
            max_waiting: 4096,
            max_answer_size: 65535,
            cache: CacheOptions::default(),
        }
    }
}

impl DnsConfig {
    /// The system's configuration: /etc/resolv.conf and /etc/hosts (a
    /// missing file counts as empty).
    pub fn system() -> DnsConfig {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut config = DnsConfig::parse_resolv_conf(&text);
        config.hosts = HostsFile::read("/etc/hosts");
        config
    }

    /// Parses resolv.conf text: `nameserver`, `search`, `domain` and
    /// `options ndots:N timeout:N attempts:N rotate edns0`, with glibc's
    /// caps (3 nameservers, 6 search domains, ndots 15, timeout 30 s,
    /// attempts 5). Unknown or malformed lines are ignored. The hosts file
    /// is left empty.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sip_dispatch::dns::DnsConfig;
    /// let c = DnsConfig::parse_resolv_conf(
    ///     "# comment\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch a.test b.test\noptions ndots:2 timeout:1 rotate\n",
    /// );
    /// assert_eq!(c.nameservers, vec!["192.0.2.1:53".parse().unwrap(), "[2001:db8::1]:53".parse().unwrap()]);
    /// assert_eq!(c.search, vec!["a.test", "b.test"]);
    /// assert_eq!((c.ndots, c.timeout, c.rotate), (2, Duration::from_secs(1), true));
    /// ```
    pub fn parse_resolv_conf(text: &str) -> DnsConfig {
        let mut config = DnsConfig {
            nameservers: Vec::new(),
            ..DnsConfig::default()
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scope (`fe80::1%eth0`) is not supported: skipped.
                    let ip = words.next().and_then(|w| w.parse::<IpAddr>().ok());
                    if let Some(ip) = ip {
                        if config.nameservers.len() < MAX_RESOLV_CONF_NAMESERVERS {
                            config.nameservers.push(SocketAddr::new(ip, 53));
                        }
                    }
                }
                // The last of `search` and `domain` wins, as in glibc.
                Some("domain") => {
                    config.search = words.next().map(domain_name).into_iter().collect();
                }
                Some("search") => {
                    config.search = words.take(MAX_SEARCH_DOMAINS).map(domain_name).collect();
                }
                Some("options") => {
                    for option in words {
                        config.apply_option(option);
                    }
                }
                _ => {}
            }
        }
        config.search.retain(|d| !d.is_empty());
        if config.nameservers.is_empty() {
            config.nameservers = DnsConfig::default().nameservers;
        }
        config
    }

    fn apply_option(&mut self, option: &str) {
        let (name, value) = match option.split_once(':') {
            Some((n, v)) => (n, v.parse::<u32>().ok()),
            None => (option, None),
        };
        match (name, value) {
            ("ndots", Some(n)) => self.ndots = n.min(15) as u8,
            ("timeout", Some(n)) => self.timeout = Duration::from_secs(u64::from(n.clamp(1, 30))),
            ("attempts", Some(n)) => self.attempts = n.clamp(1, 5),
            ("rotate", _) => self.rotate = true,
            ("edns0", _) => self.edns0 = true,
            _ => {}
        }
    }

    /// glibc's defaults with these nameservers, no search list and an
    /// empty hosts file: the start of a builder.
    pub fn with_nameservers(nameservers: Vec<SocketAddr>) -> DnsConfig {
        DnsConfig {
            nameservers,
            ..DnsConfig::default()
        }
    }

    /// Sets [`DnsConfig::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> DnsConfig {
        self.timeout = timeout;
        self
    }

    /// Sets [`DnsConfig::attempts`].
    pub fn attempts(mut self, attempts: u32) -> DnsConfig {
        self.attempts = attempts;
        self
    }

    /// Sets [`DnsConfig::ndots`].
    pub fn ndots(mut self, ndots: u8) -> DnsConfig {
        self.ndots = ndots;
        self
    }

    /// Sets [`DnsConfig::search`].
    pub fn search(mut self, search: Vec<String>) -> DnsConfig {
        self.search = search
            .iter()
            .map(|d| domain_name(d))
            .filter(|d| !d.is_empty())
            .collect();
        self
    }

    /// Sets [`DnsConfig::rotate`].
    pub fn rotate(mut self, rotate: bool) -> DnsConfig {
        self.rotate = rotate;
        self
    }

    /// Sets [`DnsConfig::edns0`].
    pub fn edns0(mut self, edns0: bool) -> DnsConfig {
        self.edns0 = edns0;
        self
    }

    /// Sets [`DnsConfig::hosts`].
    pub fn hosts(mut self, hosts: HostsFile) -> DnsConfig {
        self.hosts = hosts;
        self
    }

    /// Sets [`DnsConfig::max_in_flight`].
    pub fn max_in_flight(mut self, max: usize) -> DnsConfig {
        self.max_in_flight = max;
        self
    }

    /// Sets [`DnsConfig::max_waiting`].
    pub fn max_waiting(mut self, max: usize) -> DnsConfig {
        self.max_waiting = max;
        self
    }

    /// Sets [`DnsConfig::max_answer_size`].
    pub fn max_answer_size(mut self, max: usize) -> DnsConfig {
        self.max_answer_size = max;
        self
    }

    /// Sets [`DnsConfig::cache`].
    pub fn cache(mut self, cache: CacheOptions) -> DnsConfig {
        self.cache = cache;
        self
    }
}

/// A domain as the search list keeps it: lower case, no dots at the ends.
fn domain_name(d: &str) -> String {
    d.trim_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_glibcs() {
        let c = DnsConfig::parse_resolv_conf("");
        assert_eq!(c.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.attempts, 2);
        assert_eq!(c.ndots, 1);
        assert!(!c.rotate);
        assert!(c.search.is_empty());
    }

    #[test]
    fn last_of_domain_and_search_wins_and_caps_apply() {
        let c = DnsConfig::parse_resolv_conf(
            "search a.test b.test\ndomain Corp.Test.\n\
             nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n\
             nameserver fe80::1%eth0\nnameserver bogus\n\
             options ndots:99 timeout:0 attempts:9 edns0 unknown:3 ndots:x\n",
        );
        assert_eq!(c.search, vec!["corp.test"]);
        assert_eq!(c.nameservers.len(), 3);
        assert_eq!(c.ndots, 15);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.attempts, 5);
        assert!(c.edns0);
        let c = DnsConfig::parse_resolv_conf("domain x.test\nsearch a.test ; comment\n");
        assert_eq!(c.search, vec!["a.test"]);
    }
}
