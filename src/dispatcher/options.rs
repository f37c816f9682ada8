//! Dispatcher options: routing, retransmission timers, limits.

use std::time::Duration;

use super::resolve::ProxySpec;
use crate::dns::DnsResolver;

/// RFC 3261 timer values. Defaults are the RFC's; change them for slow
/// links (a larger T1) or fast failover (a smaller one).
///
/// ```
/// use std::time::Duration;
/// use sip_dispatch::dispatcher::Timers;
/// let t = Timers { t1: Duration::from_millis(100), ..Timers::default() };
/// assert_eq!(t.timeout(), Duration::from_millis(6400)); // 64*T1: Timers B, F, H, J
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, the first retransmission interval. Default 500 ms.
    pub t1: Duration,
    /// Cap of the retransmission interval for non-INVITE requests and
    /// INVITE responses. Default 4 s.
    pub t2: Duration,
    /// How long the network holds a message. Default 5 s (Timers I, K).
    pub t4: Duration,
    /// Timer D: how long an INVITE client transaction absorbs retransmitted
    /// final responses over UDP. Default 32 s (not scaled by T1); zero on
    /// reliable transports.
    pub timer_d: Duration,
    /// Timer C: an INVITE that has had a provisional response but no final
    /// one for this long ends with ETIMEDOUT. Default 180 s; `None`: never.
    pub timer_c: Option<Duration>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            timer_c: Some(Duration::from_secs(180)),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J and the end of 2xx retransmission.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// How a [`Dispatcher`](super::Dispatcher) behaves. Names follow the
/// Net::SIP man page.
#[derive(Clone, Default)]
pub struct DispatcherOptions {
    /// Where every request goes unless `domain2proxy` says otherwise
    /// (`HOST:PORT`, `tcp:HOST:PORT`, `sip:host;transport=tcp`).
    pub outgoing_proxy: Option<ProxySpec>,
    /// Per-domain proxies: exact domain, `*.example.com` (the domain and
    /// its subdomains) or `*` (fallback).
    pub domain2proxy: Vec<(String, ProxySpec)>,
    /// Retransmit as RFC 3261 says (default on; `Some(false)` for a
    /// stateless proxy). Per delivery it can be overridden.
    pub do_retransmits: Option<bool>,
    /// Keep server transactions: absorb retransmitted requests and answer
    /// them from the response cache (default on; off for a stateless
    /// proxy, which forwards retransmissions).
    pub server_transactions: Option<bool>,
    /// Answer requests that fail [`Request::check`](crate::packet::Request::check)
    /// with 400/505 instead of passing them up (default on).
    pub validate_requests: Option<bool>,
    /// The DNS lookups behind RFC 3263 resolution: a hook of your own.
    /// Default: the built-in [`StubResolver`](crate::dns::StubResolver) on
    /// the dispatcher's event loop, configured by `dns`.
    pub dns_resolver: Option<DnsResolver>,
    /// Configuration of the built-in resolver (default:
    /// [`DnsConfig::system`](crate::dns::DnsConfig::system), from
    /// /etc/resolv.conf and /etc/hosts). Ignored when `dns_resolver` is set.
    pub dns: Option<crate::dns::DnsConfig>,
    /// RFC 3261 timers.
    pub timers: Timers,
    /// Requests larger than this (bytes, Via included) go over TCP when UDP
    /// was chosen by default and a TCP leg reaches the destination
    /// (RFC 3261 18.1.1). Default 1300.
    pub udp_size_threshold: Option<usize>,
    /// Try IPv6 addresses of a name before its IPv4 ones (default on; the
    /// other family follows either way, for failover).
    pub prefer_ipv6: Option<bool>,
    /// Most pending deliveries; beyond it `deliver` fails with ENOBUFS.
    /// Default 1,000,000.
    pub max_deliveries: Option<usize>,
    /// Most server transactions remembered (the response cache); beyond
    /// it the oldest finished one is forgotten. Default 100,000.
    pub max_server_transactions: Option<usize>,
}

impl std::fmt::Debug for DispatcherOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherOptions")
            .field("outgoing_proxy", &self.outgoing_proxy)
            .field("domain2proxy", &self.domain2proxy)
            .field("do_retransmits", &self.do_retransmits)
            .field("server_transactions", &self.server_transactions)
            .field("validate_requests", &self.validate_requests)
            .field("dns_resolver", &self.dns_resolver.is_some())
            .field("dns", &self.dns)
            .field("timers", &self.timers)
            .field("udp_size_threshold", &self.udp_size_threshold)
            .field("prefer_ipv6", &self.prefer_ipv6)
            .field("max_deliveries", &self.max_deliveries)
            .field("max_server_transactions", &self.max_server_transactions)
            .finish()
    }
}

/// The options with every default filled in.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) outgoing_proxy: Option<ProxySpec>,
    pub(crate) domain2proxy: Vec<(String, ProxySpec)>,
    pub(crate) do_retransmits: bool,
    pub(crate) server_transactions: bool,
    pub(crate) validate_requests: bool,
    pub(crate) dns_resolver: Option<DnsResolver>,
    pub(crate) timers: Timers,
    pub(crate) udp_size_threshold: usize,
    pub(crate) prefer_ipv6: bool,
    pub(crate) max_deliveries: usize,
    pub(crate) max_server_transactions: usize,
}

impl From<DispatcherOptions> for Settings {
    fn from(o: DispatcherOptions) -> Settings {
        Settings {
            outgoing_proxy: o.outgoing_proxy,
            domain2proxy: o.domain2proxy,
            do_retransmits: o.do_retransmits.unwrap_or(true),
            server_transactions: o.server_transactions.unwrap_or(true),
            validate_requests: o.validate_requests.unwrap_or(true),
            dns_resolver: o.dns_resolver,
            timers: o.timers,
            udp_size_threshold: o.udp_size_threshold.unwrap_or(1300),
            prefer_ipv6: o.prefer_ipv6.unwrap_or(true),
            max_deliveries: o.max_deliveries.unwrap_or(1_000_000),
            max_server_transactions: o.max_server_transactions.unwrap_or(100_000),
        }
    }
}
