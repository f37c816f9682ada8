//! Legs: local transport endpoints (UDP, TCP, TLS with the `tls` feature,
//! and an in-memory network for tests), with the transport's share of Via
//! handling, framing, connection management and limits.
//!
//! A [`Leg`] reads and parses what arrives, stamps `received`/`rport` on
//! requests, drops responses whose top Via is not its own, and hands the
//! rest to the closure it was attached with ([`LegSink`]). It writes its
//! Via on outgoing requests (the dispatcher chooses the branch) and sends.
//! A leg never calls the dispatcher except through that closure.

mod addr;
pub mod memory;
mod mmsg;
mod options;
mod source_addr;
mod tcp;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls_off.rs"]
mod tls;
mod udp;
mod via;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::{Rc, Weak};

use crate::error::Error;
use crate::eventloop::Eventloop;
use crate::packet::{Host, Packet, Request, Response, SipUri};

pub use addr::{ConnId, Destination, LegSpec, Protocol, Source};
pub use memory::{Faults, MemoryNetwork};
pub use options::{LegOptions, TcpOptions};
#[cfg(feature = "tls")]
pub use tls::{ClientAuth, TlsConfig};

/// Opaque number the sender attaches to a send; the outcome of a send that
/// could not finish at once comes back with it ([`LegEvent::Outcome`]).
pub type SendToken = u64;

/// What became of a send, as far as the leg knows at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// The kernel took the datagram, or the stream took all bytes.
    Sent,
    /// Queued (connecting, or the socket is full): the outcome arrives as
    /// [`LegEvent::Outcome`] with the token.
    Queued,
    /// It failed.
    Failed(Error),
}

/// What a leg reports to its sink.
// A packet moves through here once per message: boxing it would cost an
// allocation per message to save copying a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LegEvent {
    /// A packet arrived (requests already carry `received`/`rport`).
    Packet(Packet, Source),
    /// A send that was [`SendStatus::Queued`] finished or failed.
    Outcome(SendToken, Result<(), Error>),
    /// The network said a destination is unreachable (an ICMP error for a
    /// datagram sent earlier): deliveries to it can fail over at once.
    Unreachable(Destination, Error),
    /// A connection closed; responses can no longer use it.
    ConnectionClosed(ConnId, SocketAddr),
}

/// Where a leg sends what it receives: set by whoever attaches the leg
/// (the dispatcher). Called from the event loop, never while the leg holds
/// a borrow of its own state.
pub type LegSink = Rc<dyn Fn(&Leg, LegEvent)>;

/// Decides about each received packet before it goes up: return false to
/// drop it (ACLs, tracing, deliberate loss).
pub type ReceiveHook = Rc<dyn Fn(&Packet, &Source) -> bool>;

/// Decides about each outgoing message (its bytes and destination): return
/// false to drop it silently, as if lost on the network.
pub type SendHook = Rc<dyn Fn(&[u8], &Destination) -> bool>;

/// Counters a leg keeps: all monotonic except
/// [`connections_open`](LegStats::connections_open), a gauge.
///
/// `received` and `bytes_received` count what passed every check and went
/// up; what was dropped is counted once, under the reason. `sent` and
/// `bytes_sent` count what the leg handed to the kernel (a datagram) or to
/// a connection's write buffer (a stream), whether the write finished at
/// once or was queued; a send that failed at once is in `send_errors`
/// instead, and one a send hook dropped in `dropped_by_hook`.
///
/// Its [`Display`](fmt::Display) is one line of `name=value` pairs in a
/// fixed order, for logs and the examples' exit report:
///
/// ```
/// use sip_dispatch::leg::LegStats;
/// let mut s = LegStats::default();
/// s.received = 2;
/// s.bytes_received = 700;
/// assert_eq!(
///     s.to_string(),
///     "received=2 sent=0 bytes_received=700 bytes_sent=0 parse_errors=0 \
///      bad_requests_answered=0 dropped_no_via=0 dropped_foreign_via=0 dropped_by_hook=0 \
///      keepalives=0 send_errors=0 retransmissions=0 timeouts=0 connections_opened=0 \
///      connections_closed=0 connections_open=0 connections_limited=0"
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    /// Messages received and passed up.
    pub received: u64,
    /// Messages sent (datagrams, or messages written to a stream),
    /// retransmissions included. The CRLF pong a stream leg answers a
    /// CRLFCRLF keep-alive ping with is not a message and is not counted.
    pub sent: u64,
    /// Bytes of the messages counted in `received`: the SIP message as it
    /// arrived (a datagram's payload; on a stream, the framed message,
    /// start line to the end of its body). Application-level bytes: no IP,
    /// UDP or TCP headers, no TLS record overhead, no keep-alives.
    pub bytes_received: u64,
    /// Bytes of the messages counted in `sent`, as handed to the transport
    /// (a datagram's payload; on a stream, the message written). Like
    /// `bytes_received`, SIP bytes only: no TLS record overhead.
    pub bytes_sent: u64,
    /// Received messages that did not parse.
    pub parse_errors: u64,
    /// 400 responses sent for requests that did not parse.
    pub bad_requests_answered: u64,
    /// Requests dropped because they had no usable Via.
    pub dropped_no_via: u64,
    /// Responses dropped because their top Via was not this leg's.
    pub dropped_foreign_via: u64,
    /// Messages dropped by a hook.
    pub dropped_by_hook: u64,
    /// Keep-alives received (CRLF, CRLFCRLF).
    pub keepalives: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Retransmissions the dispatcher sent on this leg (each also counted
    /// in `sent` and `bytes_sent`): a request sent again by Timer A or E
    /// (RFC 3261 17.1.1.2, 17.1.2.2); a final response to INVITE sent
    /// again by Timer G or, for a 2xx, until its ACK (13.3.1.4); the
    /// latest response sent again from the response cache for a
    /// retransmitted request (17.2); and the ACK sent again for a
    /// retransmitted non-2xx final response (17.1.1.2). The first send of
    /// anything, a send to another target (failover) and a request a
    /// stateless proxy forwards again are not retransmissions here.
    pub retransmissions: u64,
    /// Client transactions that timed out (ETIMEDOUT from Timer B, F or
    /// C: no final response) whose target was reached through this leg.
    /// Each target counts, also when the delivery then fails over to the
    /// next one. A final response never ACKed (Timer H) is not counted.
    pub timeouts: u64,
    /// Connections accepted or opened (a connect in progress included).
    pub connections_opened: u64,
    /// Connections closed (for any reason).
    pub connections_closed: u64,
    /// Connections open now (a gauge: connecting, handshaking or
    /// established), `connections_opened - connections_closed`; always 0
    /// on a datagram leg.
    pub connections_open: u64,
    /// Connections closed because a limit was hit (size, buffer, count,
    /// idle, header timeout).
    pub connections_limited: u64,
}

impl fmt::Display for LegStats {
    /// `received=N sent=N bytes_received=N bytes_sent=N parse_errors=N
    /// bad_requests_answered=N dropped_no_via=N dropped_foreign_via=N
    /// dropped_by_hook=N keepalives=N send_errors=N retransmissions=N
    /// timeouts=N connections_opened=N connections_closed=N
    /// connections_open=N connections_limited=N` on one line, single
    /// spaces, in this order (new counters go at the end).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received={} sent={} bytes_received={} bytes_sent={} parse_errors={} \
             bad_requests_answered={} dropped_no_via={} dropped_foreign_via={} \
             dropped_by_hook={} keepalives={} send_errors={} retransmissions={} timeouts={} \
             connections_opened={} connections_closed={} connections_open={} \
             connections_limited={}",
            self.received,
            self.sent,
            self.bytes_received,
            self.bytes_sent,
            self.parse_errors,
            self.bad_requests_answered,
            self.dropped_no_via,
            self.dropped_foreign_via,
            self.dropped_by_hook,
            self.keepalives,
            self.send_errors,
            self.retransmissions,
            self.timeouts,
            self.connections_opened,
            self.connections_closed,
            self.connections_open,
            self.connections_limited,
        )
    }
}

impl std::ops::AddAssign for LegStats {
    /// Adds every counter of `other` (the gauge too): the totals of legs
    /// that share a port, e.g. one per thread with `SO_REUSEPORT`.
    fn add_assign(&mut self, other: LegStats) {
        let LegStats {
            received,
            sent,
            bytes_received,
            bytes_sent,
            parse_errors,
            bad_requests_answered,
            dropped_no_via,
            dropped_foreign_via,
            dropped_by_hook,
            keepalives,
            send_errors,
            retransmissions,
            timeouts,
            connections_opened,
            connections_closed,
            connections_open,
            connections_limited,
        } = other;
        self.received += received;
        self.sent += sent;
        self.bytes_received += bytes_received;
        self.bytes_sent += bytes_sent;
        self.parse_errors += parse_errors;
        self.bad_requests_answered += bad_requests_answered;
        self.dropped_no_via += dropped_no_via;
        self.dropped_foreign_via += dropped_foreign_via;
        self.dropped_by_hook += dropped_by_hook;
        self.keepalives += keepalives;
        self.send_errors += send_errors;
        self.retransmissions += retransmissions;
        self.timeouts += timeouts;
        self.connections_opened += connections_opened;
        self.connections_closed += connections_closed;
        self.connections_open += connections_open;
        self.connections_limited += connections_limited;
    }
}

#[derive(Default)]
struct StatCells {
    received: Cell<u64>,
    sent: Cell<u64>,
    bytes_received: Cell<u64>,
    bytes_sent: Cell<u64>,
    parse_errors: Cell<u64>,
    bad_requests_answered: Cell<u64>,
    dropped_no_via: Cell<u64>,
    dropped_foreign_via: Cell<u64>,
    dropped_by_hook: Cell<u64>,
    keepalives: Cell<u64>,
    send_errors: Cell<u64>,
    retransmissions: Cell<u64>,
    timeouts: Cell<u64>,
    connections_opened: Cell<u64>,
    connections_closed: Cell<u64>,
    connections_limited: Cell<u64>,
}

/// What a send is, for the counters ([`LegStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendKind {
    /// A message sent for the first time.
    Message,
    /// A message sent again (see [`LegStats::retransmissions`]).
    Retransmission,
    /// A keep-alive (CRLF pong): not a message.
    Keepalive,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn add(c: &Cell<u64>, n: usize) {
    c.set(c.get() + n as u64);
}

pub(crate) enum Transport {
    Udp(udp::UdpTransport),
    Tcp(Box<tcp::TcpTransport>),
    Memory(memory::MemoryTransport),
}

struct Attachment {
    lp: Rc<dyn Eventloop>,
    sink: LegSink,
}

pub(crate) struct LegInner {
    proto: Protocol,
    local: SocketAddr,
    options: LegOptions,
    stats: StatCells,
    receive_hook: RefCell<Option<ReceiveHook>>,
    send_hook: RefCell<Option<SendHook>>,
    sources: RefCell<source_addr::SourceCache>,
    transport: RefCell<Transport>,
    attachment: RefCell<Option<Attachment>>,
    deferred: RefCell<Vec<LegEvent>>,
    deferred_armed: Cell<bool>,
}

/// A local transport endpoint. Cheap to clone (a shared handle); two
/// handles are equal when they are the same leg.
///
/// ```no_run
/// use sip_dispatch::leg::{Leg, LegOptions, Protocol};
/// let leg = Leg::bind("udp:127.0.0.1:0".parse().unwrap(), LegOptions::default()).unwrap();
/// assert_eq!(leg.protocol(), Protocol::Udp);
/// assert_ne!(leg.local_addr().port(), 0);
/// ```
#[derive(Clone)]
pub struct Leg {
    inner: Rc<LegInner>,
}

impl crate::eventloop::turn::TurnEnd for LegInner {
    // The datagrams a UDP leg batched during the turn go out.
    fn turn_end(self: Rc<Self>) {
        Leg { inner: self }.flush_udp_batch();
    }
}

impl PartialEq for Leg {
    fn eq(&self, other: &Leg) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Leg {}

impl fmt::Debug for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Leg({}:{})", self.inner.proto, self.inner.local)
    }
}

impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.inner.proto, self.inner.local)
    }
}

impl Leg {
    fn from_transport(
        proto: Protocol,
        local: SocketAddr,
        options: LegOptions,
        transport: Transport,
    ) -> Leg {
        Leg {
            inner: Rc::new(LegInner {
                proto,
                local,
                options,
                stats: StatCells::default(),
                receive_hook: RefCell::new(None),
                send_hook: RefCell::new(None),
                sources: RefCell::new(source_addr::SourceCache::default()),
                transport: RefCell::new(transport),
                attachment: RefCell::new(None),
                deferred: RefCell::new(Vec::new()),
                deferred_armed: Cell::new(false),
            }),
        }
    }

    /// Binds a leg as the spec says (`udp:127.0.0.1:5060`, `tcp:[::1]:0`,
    /// `tls:0.0.0.0:5061`). A TLS leg needs [`LegOptions::tls`] (feature
    /// `tls`): with a certificate it listens, without one it only connects
    /// out.
    pub fn bind(spec: LegSpec, options: LegOptions) -> io::Result<Leg> {
        match spec.proto {
            Protocol::Udp => {
                let t = udp::UdpTransport::bind(spec.addr, &options)?;
                let local = t.local_addr()?;
                Ok(Leg::from_transport(
                    Protocol::Udp,
                    local,
                    options,
                    Transport::Udp(t),
                ))
            }
            Protocol::Tcp => {
                let t = tcp::TcpTransport::bind(spec.addr, &options, None)?;
                let local = t.local_addr()?;
                Ok(Leg::from_transport(
                    Protocol::Tcp,
                    local,
                    options,
                    Transport::Tcp(Box::new(t)),
                ))
            }
            #[cfg(feature = "tls")]
            Protocol::Tls => {
                let Some(config) = &options.tls else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{spec}: a TLS leg needs LegOptions::tls (a TlsConfig with \
                             certificate and key, or TlsConfig::client() to only connect out)"
                        ),
                    ));
                };
                let ctx = config
                    .build()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                let t = tcp::TcpTransport::bind(spec.addr, &options, Some(ctx))?;
                let local = t.local_addr()?;
                Ok(Leg::from_transport(
                    Protocol::Tls,
                    local,
                    options,
                    Transport::Tcp(Box::new(t)),
                ))
            }
            #[cfg(not(feature = "tls"))]
            Protocol::Tls => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS legs need the `tls` feature (not enabled in this build)",
            )),
        }
    }

    /// A UDP leg on a socket the caller created (any options already set).
    pub fn from_udp_socket(socket: std::net::UdpSocket, options: LegOptions) -> io::Result<Leg> {
        let t = udp::UdpTransport::from_socket(socket)?;
        let local = t.local_addr()?;
        Ok(Leg::from_transport(
            Protocol::Udp,
            local,
            options,
            Transport::Udp(t),
        ))
    }

    /// A TCP leg on a listener the caller created.
    pub fn from_tcp_listener(
        listener: std::net::TcpListener,
        options: LegOptions,
    ) -> io::Result<Leg> {
        let t = tcp::TcpTransport::from_listener(listener, &options)?;
        let local = t.local_addr()?;
        Ok(Leg::from_transport(
            Protocol::Tcp,
            local,
            options,
            Transport::Tcp(Box::new(t)),
        ))
    }

    /// A leg on an in-memory network, at `addr` (for tests and simulation
    /// under virtual time). `proto` is what the leg claims to be: UDP
    /// semantics (loss, reordering) apply whatever it claims.
    pub fn memory(
        network: &MemoryNetwork,
        proto: Protocol,
        addr: SocketAddr,
        options: LegOptions,
    ) -> io::Result<Leg> {
        let t = memory::MemoryTransport::new(network, addr)?;
        Ok(Leg::from_transport(
            proto,
            addr,
            options,
            Transport::Memory(t),
        ))
    }

    pub(crate) fn downgrade(&self) -> Weak<LegInner> {
        Rc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &Weak<LegInner>) -> Option<Leg> {
        weak.upgrade().map(|inner| Leg { inner })
    }

    /// The transport protocol.
    pub fn protocol(&self) -> Protocol {
        self.inner.proto
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Whether the leg is bound to a wildcard address (`0.0.0.0`, `::`):
    /// then its Via and Contact use the source address learned per
    /// destination.
    pub fn is_wildcard(&self) -> bool {
        self.inner.local.ip().is_unspecified()
    }

    /// The leg's options.
    pub fn options(&self) -> &LegOptions {
        &self.inner.options
    }

    /// The local address packets to `dst` leave from: the bound address,
    /// or for a wildcard leg the one the routing table picks.
    pub fn local_addr_for(&self, dst: IpAddr) -> SocketAddr {
        let local = self.inner.local;
        if !local.ip().is_unspecified() {
            return local;
        }
        let ip = self
            .inner
            .sources
            .borrow_mut()
            .source_for(dst)
            .unwrap_or(local.ip());
        SocketAddr::new(ip, local.port())
    }

    /// The host written in Via and Contact towards `dst`: the configured
    /// name ([`LegOptions::via_host`]) or the local address.
    pub fn via_host_for(&self, dst: IpAddr) -> String {
        match &self.inner.options.via_host {
            Some(h) => h.clone(),
            None => via::host_of(self.local_addr_for(dst).ip()),
        }
    }

    /// A Contact URI for this leg towards `dst`: `sip:user@host:port`,
    /// with `;transport=tcp` on TCP (`sips:` on TLS).
    pub fn contact(&self, user: Option<&str>, dst: IpAddr) -> SipUri {
        let host = match &self.inner.options.via_host {
            Some(h) => Host::parse(h).unwrap_or(Host::from(self.local_addr_for(dst).ip())),
            None => Host::from(self.local_addr_for(dst).ip()),
        };
        let port = Some(self.inner.local.port());
        let uri = SipUri::new(self.inner.proto == Protocol::Tls, user, &host, port);
        match self.inner.proto {
            Protocol::Tcp => uri.with_param("transport", Some("tcp")),
            _ => uri,
        }
    }

    /// Whether this leg can send to `addr` over `proto`: same protocol and
    /// same address family (an IPv6 leg that is not v6-only also reaches
    /// IPv4 through mapped addresses).
    pub fn can_deliver_to(&self, proto: Protocol, addr: &SocketAddr) -> bool {
        if proto != self.inner.proto {
            return false;
        }
        let local = self.inner.local;
        match (local.is_ipv4(), addr.is_ipv4()) {
            (true, true) | (false, false) => {}
            (false, true) => {
                if self.inner.options.ipv6_only || !local.ip().is_unspecified() {
                    return false;
                }
            }
            (true, false) => return false,
        }
        // A leg bound to loopback cannot reach other hosts, and the other
        // way round.
        let local_ip = local.ip();
        local_ip.is_unspecified() || local_ip.is_loopback() == addr.ip().is_loopback()
    }

    /// Sets (or clears) the hook that sees every received packet.
    pub fn set_receive_hook(&self, hook: Option<ReceiveHook>) {
        *self.inner.receive_hook.borrow_mut() = hook;
    }

    /// Sets (or clears) the hook that sees every outgoing message.
    pub fn set_send_hook(&self, hook: Option<SendHook>) {
        *self.inner.send_hook.borrow_mut() = hook;
    }

    /// The leg's counters.
    pub fn stats(&self) -> LegStats {
        let s = &self.inner.stats;
        // Every connection a stream transport keeps was counted opened
        // when it was added and is counted closed when it is removed.
        let (opened, closed) = (s.connections_opened.get(), s.connections_closed.get());
        LegStats {
            received: s.received.get(),
            sent: s.sent.get(),
            bytes_received: s.bytes_received.get(),
            bytes_sent: s.bytes_sent.get(),
            parse_errors: s.parse_errors.get(),
            bad_requests_answered: s.bad_requests_answered.get(),
            dropped_no_via: s.dropped_no_via.get(),
            dropped_foreign_via: s.dropped_foreign_via.get(),
            dropped_by_hook: s.dropped_by_hook.get(),
            keepalives: s.keepalives.get(),
            send_errors: s.send_errors.get(),
            retransmissions: s.retransmissions.get(),
            timeouts: s.timeouts.get(),
            connections_opened: opened,
            connections_closed: closed,
            connections_open: opened.saturating_sub(closed),
            connections_limited: s.connections_limited.get(),
        }
    }

    /// Number of open connections (stream legs; 0 for datagram legs).
    pub fn connection_count(&self) -> usize {
        match &*self.inner.transport.borrow() {
            Transport::Tcp(t) => t.connection_count(),
            _ => 0,
        }
    }

    /// Starts receiving: registers the leg's descriptors with the event
    /// loop; everything received goes to `sink`.
    pub fn attach(&self, lp: Rc<dyn Eventloop>, sink: LegSink) -> io::Result<()> {
        self.detach();
        let weak = self.downgrade();
        {
            let mut t = self.inner.transport.borrow_mut();
            match &mut *t {
                Transport::Udp(u) => u.attach(&*lp, weak)?,
                Transport::Tcp(c) => c.attach(&*lp, weak)?,
                Transport::Memory(m) => m.attach(weak),
            }
        }
        *self.inner.attachment.borrow_mut() = Some(Attachment { lp, sink });
        Ok(())
    }

    /// Stops receiving: removes the descriptors from the event loop and
    /// closes connections. The leg can still be attached again.
    pub fn detach(&self) {
        let Some(att) = self.inner.attachment.borrow_mut().take() else {
            return;
        };
        let events = {
            let mut t = self.inner.transport.borrow_mut();
            match &mut *t {
                Transport::Udp(u) => {
                    u.detach(&*att.lp);
                    Vec::new()
                }
                Transport::Tcp(c) => c.detach(&*att.lp),
                Transport::Memory(m) => {
                    m.detach();
                    Vec::new()
                }
            }
        };
        // Events deferred to the old loop's next turn belong to the old
        // sink too; and the flag that a flush is armed must not outlive
        // the attachment (that loop may never run again, and a set flag
        // would keep the next attachment from arming its own flush).
        let mut events = events;
        events.splice(0..0, std::mem::take(&mut *self.inner.deferred.borrow_mut()));
        self.inner.deferred_armed.set(false);
        // Pending sends on closed connections fail; nobody listens any more
        // except through the sink we just removed, so report to it once.
        for ev in events {
            (att.sink)(self, ev);
        }
    }

    fn eventloop(&self) -> Option<Rc<dyn Eventloop>> {
        self.inner
            .attachment
            .borrow()
            .as_ref()
            .map(|a| a.lp.clone())
    }

    fn sink(&self) -> Option<LegSink> {
        self.inner
            .attachment
            .borrow()
            .as_ref()
            .map(|a| a.sink.clone())
    }

    /// Writes a request with this leg's Via on top (branch chosen by the
    /// caller, sent-by and transport by the leg, a valueless `rport`). An
    /// INVITE that starts here (no Via yet) without Contact gets one naming
    /// this leg (the user part of From), as Net::SIP's legs do: only the
    /// leg knows its address towards the destination.
    pub fn prepare_request(&self, request: &Request, branch: &str, dst: &Destination) -> Vec<u8> {
        let mut out = Vec::with_capacity(request.headers().len() * 40 + request.body().len() + 128);
        self.write_prepared(request, branch, dst, &mut out);
        out
    }

    /// [`Leg::prepare_request`] as shared bytes in one allocation of the
    /// exact size: what the dispatcher sends and keeps for retransmission.
    pub fn prepare_request_shared(
        &self,
        request: &Request,
        branch: &str,
        dst: &Destination,
    ) -> Rc<[u8]> {
        crate::packet::with_scratch(|out| {
            self.write_prepared(request, branch, dst, out);
            Rc::from(&out[..])
        })
    }

    fn write_prepared(
        &self,
        request: &Request,
        branch: &str,
        dst: &Destination,
        out: &mut Vec<u8>,
    ) {
        // The Via is put together in a per-thread buffer (no allocation).
        crate::packet::with_scratch_text(|via| {
            let host = match &self.inner.options.via_host {
                Some(h) => via::Host::Name(h),
                None => via::Host::Ip(self.local_addr_for(dst.addr.ip()).ip()),
            };
            via::push_outgoing_via(via, self.inner.proto, host, self.inner.local.port(), branch);
            self.write_with_via(request, via, dst, out);
        });
    }

    fn write_with_via(&self, request: &Request, via: &str, dst: &Destination, out: &mut Vec<u8>) {
        // Only for a request that starts here (no Via yet): a proxy
        // forwards an INVITE's Contact as it is.
        let needs_contact = *request.method() == crate::packet::Method::Invite
            && !request
                .headers()
                .contains(crate::packet::HeaderName::Contact)
            && !request.headers().contains(crate::packet::HeaderName::Via);
        if needs_contact {
            let user = request
                .from()
                .ok()
                .and_then(|f| f.uri().ok())
                .and_then(|u| u.as_sip().and_then(|s| s.user().map(str::to_owned)));
            let contact = format!("<{}>", self.contact(user.as_deref(), dst.addr.ip()));
            request.write_with_top_headers(out, &[("Via", via), ("Contact", &contact)]);
        } else {
            request.write_with_top_headers(out, &[("Via", via)]);
        }
    }

    /// Sends bytes (a message written by [`Leg::prepare_request`] or a
    /// response's bytes) to `dst`. A send that cannot finish at once is
    /// [`SendStatus::Queued`]; its outcome comes back through the sink with
    /// `token` (when given).
    pub fn send(&self, bytes: Rc<[u8]>, dst: &Destination, token: Option<SendToken>) -> SendStatus {
        self.send_as(bytes, dst, token, SendKind::Message)
    }

    /// [`Leg::send`], counted as `kind` says.
    pub(crate) fn send_as(
        &self,
        bytes: Rc<[u8]>,
        dst: &Destination,
        token: Option<SendToken>,
        kind: SendKind,
    ) -> SendStatus {
        let len = bytes.len();
        let hook = self.inner.send_hook.borrow().clone();
        if let Some(hook) = hook {
            if !hook(&bytes, dst) {
                bump(&self.inner.stats.dropped_by_hook);
                // Lost on the wire: the sender cannot know.
                return SendStatus::Sent;
            }
        }
        let lp = self.eventloop();
        let mut icmp = Vec::new();
        let mut batch_started = false;
        let mut batch_failed = Vec::new();
        let status = {
            let mut t = self.inner.transport.borrow_mut();
            match &mut *t {
                Transport::Udp(u) if u.can_batch(bytes.len()) => {
                    (batch_started, batch_failed) = u.push_batch(bytes, dst.addr, lp.as_deref());
                    icmp = u.take_unreachable(self.inner.proto);
                    SendStatus::Sent
                }
                Transport::Udp(u) => {
                    let status = u.send(bytes, dst, token, lp.as_deref());
                    // ICMP errors for earlier datagrams that this send
                    // found: reported from the loop, not inside this call.
                    icmp = u.take_unreachable(self.inner.proto);
                    status
                }
                Transport::Tcp(c) => c.send(self, bytes, dst, token, lp.as_deref()),
                Transport::Memory(m) => m.send(self.inner.proto, bytes, dst, lp.as_deref()),
            }
        };
        if batch_started {
            let weak: Weak<dyn crate::eventloop::turn::TurnEnd> = self.downgrade();
            crate::eventloop::Turn::at_end(weak);
        }
        // From a full batch sent inside this call: reported from the loop.
        for (addr, e) in batch_failed {
            bump(&self.inner.stats.send_errors);
            log::debug!("{self}: {e}");
            icmp.push(LegEvent::Unreachable(
                Destination::new(self.inner.proto, addr),
                e,
            ));
        }
        self.defer(icmp);
        let stats = &self.inner.stats;
        match (&status, kind) {
            (SendStatus::Failed(_), _) => bump(&stats.send_errors),
            (_, SendKind::Keepalive) => {}
            (_, SendKind::Message) => {
                bump(&stats.sent);
                add(&stats.bytes_sent, len);
            }
            (_, SendKind::Retransmission) => {
                bump(&stats.sent);
                add(&stats.bytes_sent, len);
                bump(&stats.retransmissions);
            }
        }
        status
    }

    /// Sends a response to `dst` (no Via added).
    pub fn send_response(
        &self,
        response: &Response,
        dst: &Destination,
        token: Option<SendToken>,
    ) -> SendStatus {
        self.send(response.to_shared_bytes(), dst, token)
    }

    /// Handles one received message: parse, Via processing, hook; returns
    /// the event to pass up, or answers/drops it. Shared by the transports.
    pub(crate) fn accept_bytes(
        &self,
        bytes: &[u8],
        source: Source,
        framing: crate::packet::Framing,
    ) -> Option<LegEvent> {
        let stats = &self.inner.stats;
        let mut packet = match Packet::parse_with(bytes, &self.inner.options.limits, framing) {
            Ok(p) => p,
            Err(e) => {
                bump(&stats.parse_errors);
                if let Some(partial) = e.partial_request() {
                    if partial.top_via().is_ok() {
                        let resp = Response::for_message(partial, 400, &e.reason(), false);
                        log::warn!("{self}: bad request from {source}: {e}; answering 400");
                        bump(&stats.bad_requests_answered);
                        let _ = self.send_response(&resp, &source.reply_destination(), None);
                        return None;
                    }
                }
                log::warn!("{self}: dropping unparsable message from {source}: {e}");
                return None;
            }
        };
        // Checked and stamped in place: a packet is a few hundred bytes,
        // and each move is a copy.
        match &mut packet {
            Packet::Request(req) => {
                if !via::stamp_received(req, source.addr) {
                    bump(&stats.dropped_no_via);
                    log::warn!("{self}: dropping request without usable Via from {source}");
                    return None;
                }
            }
            Packet::Response(resp) => {
                let port = self.inner.local.port();
                let ours = via::response_is_ours(resp, port, |via| self.via_names_us(via));
                if !ours {
                    bump(&stats.dropped_foreign_via);
                    log::warn!("{self}: dropping response from {source} whose top Via is not ours");
                    return None;
                }
            }
        }
        let hook = self.inner.receive_hook.borrow().clone();
        if let Some(hook) = hook {
            if !hook(&packet, &source) {
                bump(&stats.dropped_by_hook);
                return None;
            }
        }
        bump(&stats.received);
        add(&stats.bytes_received, bytes.len());
        Some(LegEvent::Packet(packet, source))
    }

    /// Whether a Via's sent-by host is one this leg writes.
    fn via_names_us(&self, via: &crate::packet::Via<'_>) -> bool {
        if let Some(h) = &self.inner.options.via_host {
            if via.host().eq_ignore_ascii_case(h) {
                return true;
            }
        }
        match via.ip() {
            Some(ip) => {
                let local = self.inner.local.ip();
                ip == local
                    || (local.is_unspecified() && self.inner.sources.borrow().is_known_source(ip))
            }
            None => false,
        }
    }

    /// Passes events to the sink, outside any borrow of the leg's state.
    pub(crate) fn emit(&self, events: Vec<LegEvent>) {
        if events.is_empty() {
            return;
        }
        let Some(sink) = self.sink() else { return };
        for ev in events {
            sink(self, ev);
        }
    }

    /// One event to the sink (no vector for the common case of one).
    pub(crate) fn emit_one(&self, ev: LegEvent) {
        if let Some(sink) = self.sink() {
            sink(self, ev);
        }
    }

    pub(crate) fn count_parse_error(&self) {
        bump(&self.inner.stats.parse_errors);
    }

    /// Sends the UDP datagrams gathered during the turn (see
    /// [`crate::eventloop::Turn`]) and reports what the kernel refused.
    fn flush_udp_batch(&self) {
        let lp = self.eventloop();
        let (failed, icmp) = {
            let mut t = self.inner.transport.borrow_mut();
            match &mut *t {
                Transport::Udp(u) => (
                    u.flush_batch(lp.as_deref()),
                    u.take_unreachable(self.inner.proto),
                ),
                _ => return,
            }
        };
        self.report_batch_failures(failed);
        self.emit(icmp);
    }

    /// Batched sends the kernel refused: counted, logged, and reported as
    /// the destination being unreachable (they were reported `Sent`).
    fn report_batch_failures(&self, failed: Vec<(SocketAddr, Error)>) {
        for (addr, e) in failed {
            bump(&self.inner.stats.send_errors);
            log::debug!("{self}: {e}");
            self.emit_one(LegEvent::Unreachable(
                Destination::new(self.inner.proto, addr),
                e,
            ));
        }
    }

    pub(crate) fn count_keepalive(&self) {
        bump(&self.inner.stats.keepalives);
    }

    /// A client transaction whose target this leg reaches timed out (see
    /// [`LegStats::timeouts`]).
    pub(crate) fn count_timeout(&self) {
        bump(&self.inner.stats.timeouts);
    }

    pub(crate) fn count_opened(&self) {
        bump(&self.inner.stats.connections_opened);
    }

    pub(crate) fn count_closed(&self) {
        bump(&self.inner.stats.connections_closed);
    }

    pub(crate) fn count_limited(&self) {
        bump(&self.inner.stats.connections_limited);
    }

    /// Queues events to pass up on the event loop's next turn: for events
    /// that arise inside a send, which runs inside somebody's call.
    pub(crate) fn defer(&self, events: Vec<LegEvent>) {
        if events.is_empty() {
            return;
        }
        // Not attached: nobody to tell. (Queueing them would arm nothing,
        // leave `deferred_armed` set, and so silence every later event.)
        let Some(lp) = self.eventloop() else { return };
        self.inner.deferred.borrow_mut().extend(events);
        if self.inner.deferred_armed.replace(true) {
            return;
        }
        let weak = self.downgrade();
        lp.add_timer(
            crate::eventloop::When::In(std::time::Duration::ZERO),
            None,
            Box::new(move || {
                if let Some(leg) = Leg::upgrade(&weak) {
                    leg.inner.deferred_armed.set(false);
                    let events = std::mem::take(&mut *leg.inner.deferred.borrow_mut());
                    leg.emit(events);
                }
            }),
        );
    }

    pub(crate) fn with_transport<R>(&self, f: impl FnOnce(&mut Transport, &Leg) -> R) -> R {
        let mut t = self.inner.transport.borrow_mut();
        f(&mut t, self)
    }
}
