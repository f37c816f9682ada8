//! Leg options: socket options, parser limits, TCP limits, TLS.

use std::time::Duration;

use crate::packet::ParseLimits;

/// How a leg is set up. Every limit has a default; change what you need.
///
/// ```
/// use std::time::Duration;
/// use sip_dispatch::leg::{LegOptions, TcpOptions};
/// let opts = LegOptions {
///     reuse_port: true,
///     tcp: TcpOptions { idle_timeout: Duration::from_secs(30), ..TcpOptions::default() },
///     ..LegOptions::default()
/// };
/// assert!(opts.reuse_address);
/// ```
#[derive(Clone, Debug)]
pub struct LegOptions {
    /// `SO_REUSEADDR` (default on).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` (default off): several legs, one per thread, on one
    /// port.
    pub reuse_port: bool,
    /// `IPV6_V6ONLY` for IPv6 binds (default on: an IPv6 leg does not take
    /// IPv4 traffic; bind a second leg for that).
    pub ipv6_only: bool,
    /// `SO_RCVBUF`, when set.
    pub recv_buffer_size: Option<usize>,
    /// `SO_SNDBUF`, when set.
    pub send_buffer_size: Option<usize>,
    /// Parser limits for received messages.
    pub limits: ParseLimits,
    /// The host written in Via and Contact instead of the address (a name
    /// that resolves to this host, needed for TLS).
    pub via_host: Option<String>,
    /// Most datagrams queued while the socket is full (EAGAIN/ENOBUFS);
    /// beyond it a send fails with ENOBUFS. Default 1,024.
    pub max_queued_datagrams: usize,
    /// Stream transport limits (TCP and TLS).
    pub tcp: TcpOptions,
    /// TLS certificate, roots and handshake settings: required for a TLS
    /// leg (feature `tls`).
    #[cfg(feature = "tls")]
    pub tls: Option<super::TlsConfig>,
}

impl Default for LegOptions {
    fn default() -> Self {
        LegOptions {
            reuse_address: true,
            reuse_port: false,
            ipv6_only: true,
            recv_buffer_size: None,
            send_buffer_size: None,
            limits: ParseLimits::default(),
            via_host: None,
            max_queued_datagrams: 1024,
            tcp: TcpOptions::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Limits of a stream (TCP, TLS) leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    /// Most open connections (accepted and opened); at the limit the
    /// connection idle the longest is closed. Default 1,024.
    pub max_connections: usize,
    /// A connection without traffic for this long is closed. Default 120 s
    /// (Kamailio's `tcp_connection_lifetime`).
    pub idle_timeout: Duration,
    /// An outgoing connect not finished in this time fails with ETIMEDOUT.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// A message whose header section has not arrived completely this long
    /// after its first byte closes the connection (slow-loris defence).
    /// Default 32 s.
    pub header_timeout: Duration,
    /// Most bytes queued for writing on one connection; beyond it the
    /// connection is closed and its pending sends fail with ENOBUFS.
    /// Default 1 MiB.
    pub max_write_buffer: usize,
    /// Listen backlog. Default 128.
    pub backlog: i32,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(32),
            max_write_buffer: 1 << 20,
            backlog: 128,
        }
    }
}
