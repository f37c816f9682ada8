//! The dispatcher's state, mutated through `&mut self`: deliveries and
//! their client transactions, server transactions (the response cache),
//! indexes for O(1) cancel and matching, and one timer wheel. It never
//! calls user code: what must happen outside (sending, callbacks, passing
//! packets up, DNS lookups) is queued as [`Effect`]s for the facade.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::{Errno, Error};
use crate::eventloop::{TimerKey, TimerWheel};
use crate::leg::{ConnId, Destination, Leg, Protocol, SendKind, SendStatus, SendToken, Source};
use crate::packet::{HeaderName, Method, Packet, Request, Response, TransactionKey};

mod server;

use server::{ServerState, ServerTx};

use super::Dispatcher;
use super::arena::Arena;
use super::client::build_ack;
use super::client::{Action, ClientState, ClientTimer, ClientTx};
use super::hash_slots::HashSlots;
use super::index::{DstIndex, Keys, MultiIndex};
use super::options::Settings;
use super::resolve::{Plan, Protocols, Resolved};
use super::route::{self, response_destination};
use super::types::{
    Cancel, DeliverOptions, DeliveryCallback, DeliveryId, DeliveryOutcome, DispatcherStats,
    FailureCallback, LegId, Target,
};

/// What the facade does after the core's borrow ends.
pub(crate) enum Effect {
    /// Send bytes on a leg; with `for_delivery`, report the status back.
    /// `kind` says how the leg counts it (a retransmission or not).
    Send {
        leg: Leg,
        bytes: Rc<[u8]>,
        dst: Destination,
        token: Option<SendToken>,
        for_delivery: Option<DeliveryId>,
        kind: SendKind,
    },
    /// Run a delivery callback.
    Callback(DeliveryCallback, DeliveryOutcome),
    /// Give a packet to the receiver. Boxed: every effect is as large as
    /// its largest variant, and the sends, the common effect, are a third
    /// of a packet's size (each effect is moved in and out of the queue).
    PassUp(Box<PassUp>),
    /// Resolve destinations for a delivery.
    Resolve(DeliveryId, Plan),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum TimerKind {
    Client(ClientTimer),
    ResponseRetransmit,
    ResponseTimeout,
    ServerExpire,
}

/// A timer's payload on the wheel: which entry, which timer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimerRef {
    index: u32,
    generation: u32,
    kind: TimerKind,
}

#[derive(Debug)]
enum Mode {
    /// A request with a client transaction.
    Client(ClientTx),
    /// Sent once: ACK, requests without retransmissions, plain responses.
    Oneshot,
    /// A final response to INVITE, retransmitted until its ACK.
    ResponseRetransmit {
        interval: Duration,
        is_2xx: bool,
        retransmit: bool,
    },
}

/// The Call-ID, CSeq number and To tag that an ACK for a 2xx matches.
type DialogKey = (Rc<str>, u32, Rc<str>);

/// An id or Call-ID given to `deliver` instead of the packet's own.
struct Labels {
    id: Option<Box<str>>,
    callid: Option<Box<str>>,
}

/// A delivery's targets, in the order to try. Most have one (a response,
/// a request to an IP literal or through an outgoing proxy): kept inline,
/// no allocation.
#[derive(Debug)]
enum Targets {
    None,
    One(Target),
    Many(Vec<Target>),
}

impl Targets {
    fn from_vec(mut targets: Vec<Target>) -> Targets {
        match targets.len() {
            0 => Targets::None,
            1 => targets.pop().map_or(Targets::None, Targets::One),
            _ => Targets::Many(targets),
        }
    }

    fn len(&self) -> usize {
        match self {
            Targets::None => 0,
            Targets::One(_) => 1,
            Targets::Many(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<&Target> {
        match self {
            Targets::None => None,
            Targets::One(t) => (i == 0).then_some(t),
            Targets::Many(v) => v.get(i),
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Target> {
        match self {
            Targets::None => None,
            Targets::One(t) => (i == 0).then_some(t),
            Targets::Many(v) => v.get_mut(i),
        }
    }
}

/// A delivery's packet. A request kept for retransmission drops its
/// parsed form once sent: its prepared bytes (`Delivery::bytes`) hold it,
/// under our Via, and the rare paths that need it parsed (another target,
/// a new branch, the ACK of a non-2xx) parse it again. The header index is
/// most of a parsed packet's memory, and a million may be pending.
// Unboxed: a delivery that is answered at once (a response, a request
// on a fast path) would pay an allocation for it.
#[allow(clippy::large_enum_variant)]
enum Stored {
    Parsed(Packet),
    Sent {
        method: Method,
        call_id: Box<str>,
        cseq: u32,
        /// The leg wrote a Contact into the bytes (an INVITE that starts
        /// here without one): it belongs to that leg and goes on re-reading.
        added_contact: bool,
    },
}

impl Stored {
    fn method(&self) -> Option<&Method> {
        match self {
            Stored::Parsed(Packet::Request(r)) => Some(r.method()),
            Stored::Parsed(Packet::Response(_)) => None,
            Stored::Sent { method, .. } => Some(method),
        }
    }

    fn response(&self) -> Option<&Response> {
        match self {
            Stored::Parsed(Packet::Response(r)) => Some(r),
            _ => None,
        }
    }

    fn call_id(&self) -> &str {
        match self {
            Stored::Parsed(p) => p.callid(),
            Stored::Sent { call_id, .. } => call_id,
        }
    }

    /// The parts of the packet's tid: Call-ID and CSeq number.
    fn tid_parts(&self) -> (&str, u32) {
        match self {
            Stored::Parsed(p) => (
                p.callid(),
                p.message().cseq().map(|c| c.number).unwrap_or(0),
            ),
            Stored::Sent { call_id, cseq, .. } => (call_id, *cseq),
        }
    }
}

struct Delivery {
    packet: Stored,
    /// Keys of the id and Call-ID indexes (hashes of the strings).
    id_key: u64,
    callid_key: u64,
    /// The key `Core::client_keys` holds it under while `client_indexed`
    /// (kept: removing it then reads neither the branch nor the method,
    /// each a cache miss with a million pending).
    client_key: u64,
    client_indexed: bool,
    /// An id or Call-ID the caller gave instead of the packet's.
    labels: Option<Box<Labels>>,
    callback: Option<DeliveryCallback>,
    /// Called instead of `callback` on failure, with the packet (kept
    /// parsed while this is set).
    on_failure: Option<FailureCallback>,
    mode: Mode,
    targets: Targets,
    target_index: usize,
    allowed_legs: Option<LegId>,
    /// In order of preference, each once (there are three).
    allowed_proto: Protocols,
    branch: Option<Rc<str>>,
    bytes: Option<Rc<[u8]>>,
    ack_bytes: Option<Rc<[u8]>>,
    timers: [Option<TimerKey>; 3],
    /// UDP was chosen by default: the 1300-byte rule may switch to TCP.
    default_udp: bool,
    /// The 1300-byte rule switched to this TCP target; on a transport
    /// error go back to UDP once.
    size_fallback: Option<LegId>,
    indexed: bool,
    /// Listed in `Core::by_dst` under its current target.
    by_dst: bool,
    dialog: Option<Box<DialogKey>>,
    server: Option<(u32, u32)>,
    resolving: bool,
}

impl Delivery {
    /// The request, parsed (again, from the prepared bytes, when only
    /// those are kept); `None` for a response.
    fn request(&self) -> Option<std::borrow::Cow<'_, Request>> {
        match &self.packet {
            Stored::Parsed(Packet::Request(r)) => Some(std::borrow::Cow::Borrowed(r)),
            Stored::Parsed(Packet::Response(_)) => None,
            Stored::Sent { added_contact, .. } => {
                let bytes = self.bytes.as_ref()?;
                // Our own bytes: whatever size the caller built, so no
                // limits meant for peers.
                let unlimited = crate::packet::ParseLimits {
                    max_message_size: usize::MAX,
                    max_headers: usize::MAX,
                    max_line_length: usize::MAX,
                };
                let parsed =
                    Packet::parse_with(bytes, &unlimited, crate::packet::Framing::Datagram);
                let mut req = match parsed {
                    Ok(Packet::Request(r)) => r,
                    Ok(Packet::Response(_)) => {
                        log::error!("a sent request was read again as a response");
                        return None;
                    }
                    Err(e) => {
                        // Our own serialisation: cannot happen; a delivery
                        // that could not be re-read fails its next step.
                        log::error!("a sent request could not be read again: {e}");
                        return None;
                    }
                };
                req.headers_mut().remove_first(HeaderName::Via);
                if *added_contact {
                    req.headers_mut().remove_first(HeaderName::Contact);
                }
                Some(std::borrow::Cow::Owned(req))
            }
        }
    }

    /// Keeps only what a pending request needs once its bytes are
    /// prepared (see [`Stored`]).
    fn compact(&mut self) {
        if self.bytes.is_none() {
            return;
        }
        if let Stored::Parsed(Packet::Request(req)) = &self.packet {
            // Mirrors the leg's rule for writing a Contact.
            let added_contact = *req.method() == Method::Invite
                && !req.headers().contains(HeaderName::Contact)
                && !req.headers().contains(HeaderName::Via);
            self.packet = Stored::Sent {
                method: req.method().clone(),
                call_id: req.call_id().unwrap_or("").into(),
                cseq: req.cseq().map(|c| c.number).unwrap_or(0),
                added_contact,
            };
        }
    }

    /// The (transport, address) of the current target.
    fn dst_key(&self) -> Option<(Protocol, SocketAddr)> {
        self.targets
            .get(self.target_index)
            .map(|t| (t.dst.proto, t.dst.addr))
    }

    /// Whether `key` is this delivery's id for [`Cancel::Id`]: the
    /// caller's, or the packet's tid (`Call-ID CSeq-number`, compared
    /// without being built).
    fn has_id(&self, key: &str) -> bool {
        if let Some(id) = self.labels.as_ref().and_then(|l| l.id.as_deref()) {
            return id == key;
        }
        let (call_id, number) = self.packet.tid_parts();
        let mut digits = [0u8; 20];
        let number = crate::packet::decimal(u64::from(number), &mut digits);
        key.len() == call_id.len() + 1 + number.len()
            && key.as_bytes().starts_with(call_id.as_bytes())
            && key.as_bytes()[call_id.len()] == b' '
            && key.as_bytes().ends_with(number)
    }

    /// The Call-ID for [`Cancel::CallId`]: the caller's, or the packet's.
    fn callid(&self) -> &str {
        self.labels
            .as_ref()
            .and_then(|l| l.callid.as_deref())
            .unwrap_or(self.packet.call_id())
    }
}

pub(crate) struct Core {
    pub(crate) s: Settings,
    origin: Instant,
    pub(crate) legs: Arena<Leg>,
    deliveries: Arena<Delivery>,
    keys: Keys,
    by_id: MultiIndex,
    by_callid: MultiIndex,
    /// Client transactions by (branch, method) hash.
    client_keys: MultiIndex,
    dialogs: HashMap<DialogKey, DeliveryId>,
    queued_tokens: HashMap<SendToken, DeliveryId>,
    by_dst: HashMap<(Protocol, SocketAddr), DstIndex>,
    servers: Arena<ServerTx>,
    /// Server transactions by the hash of their key (`Keys::of_transaction`
    /// of the key's id and method); a hit is confirmed against the key.
    server_keys: HashSlots,
    server_order: VecDeque<(u32, u32)>,
    /// The server transaction created last (a hint for `route_response`).
    last_server: Option<(u32, u32)>,
    /// Server transactions by the stream connection their request came on,
    /// so that a closing connection touches only its own transactions.
    server_by_conn: HashMap<(LegId, ConnId), server::ConnTxs>,
    /// The expiries of server transactions that end `timeout` (64*T1)
    /// after being armed (most of them: Timers J, H and L, and an
    /// unanswered non-INVITE), in order: every one is armed for "now plus
    /// the same duration", so a FIFO queue holds them sorted, at no wheel
    /// insert or cancel per transaction. See `server::ServerFifo`.
    server_fifo: server::ServerFifo,
    wheel: TimerWheel<TimerRef>,
    /// Targets not to use until the instant (503 with Retry-After).
    blacklist: HashMap<(Protocol, SocketAddr), Instant>,
    /// Targets to try last until the instant (they timed out).
    greylist: HashMap<(Protocol, SocketAddr), Instant>,
    next_token: SendToken,
    /// The last id handed out for a response sent without a record.
    settled: u32,
    rng: u64,
    pub(crate) effects: VecDeque<Effect>,
    stats: DispatcherStats,
}

/// A received packet on its way up to the receiver: the packet, its leg
/// and its source.
pub(crate) type PassUp = (Packet, LegId, Source);

fn did(index: u32, generation: u32) -> DeliveryId {
    DeliveryId { index, generation }
}

impl Core {
    pub(crate) fn new(s: Settings, origin: Instant, seed: u64) -> Core {
        Core {
            s,
            origin,
            legs: Arena::default(),
            deliveries: Arena::default(),
            keys: Keys(std::collections::hash_map::RandomState::new()),
            by_id: MultiIndex::default(),
            by_callid: MultiIndex::default(),
            client_keys: MultiIndex::default(),
            dialogs: HashMap::new(),
            queued_tokens: HashMap::new(),
            by_dst: HashMap::new(),
            servers: Arena::default(),
            server_keys: HashSlots::default(),
            server_order: VecDeque::new(),
            last_server: None,
            server_by_conn: HashMap::new(),
            server_fifo: server::ServerFifo::default(),
            wheel: TimerWheel::new(),
            blacklist: HashMap::new(),
            greylist: HashMap::new(),
            next_token: 1,
            settled: 0,
            rng: seed | 1,
            effects: VecDeque::new(),
            stats: DispatcherStats::default(),
        }
    }

    // ---- time ----

    fn tick_at(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin);
        let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    pub(crate) fn now_tick(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn instant_of(&self, tick: u64) -> Instant {
        self.origin + Duration::from_millis(tick)
    }

    pub(crate) fn next_expiration(&self) -> Option<u64> {
        match (
            self.wheel.next_expiration(),
            self.server_fifo.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: branches only need to be unique and unguessable
        // enough; the seed comes from the OS.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn seed(&mut self) -> u64 {
        self.random()
    }

    fn new_branch(&mut self) -> Rc<str> {
        let r = self.random();
        // z9hG4bK and 16 hex digits, formatted on the stack: one
        // allocation, the Rc itself.
        let mut buf = [0u8; 23];
        buf[..7].copy_from_slice(b"z9hG4bK");
        for (i, b) in buf[7..].iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((r >> (60 - 4 * i)) & 0xf) as usize];
        }
        Rc::from(std::str::from_utf8(&buf).unwrap_or("z9hG4bK"))
    }

    // ---- stats ----

    pub(crate) fn stats(&self) -> DispatcherStats {
        DispatcherStats {
            pending_deliveries: self.deliveries.len(),
            server_transactions: self.servers.len(),
            timers: self.wheel.len() + self.server_fifo.live(),
            client_keys: self.client_keys.len(),
            id_keys: self.by_id.len() + self.by_callid.len(),
            ..self.stats
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.deliveries.len() + self.servers.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.deliveries.table_bytes()
            + self.servers.table_bytes()
            + self.wheel.memory_bytes()
            + self.server_fifo.memory_bytes()
            + self.server_keys.memory_bytes()
    }

    /// The transports there are legs for.
    /// The transports there are legs for, in the order first seen (at
    /// most the three there are; no allocation: this runs per resolution).
    pub(crate) fn available_protocols(&self) -> Protocols {
        let mut v = Protocols::default();
        for (_, _, leg) in self.legs.iter() {
            v.add(leg.protocol());
        }
        v
    }

    pub(crate) fn leg(&self, id: LegId) -> Option<&Leg> {
        self.legs.get(id.index, id.generation)
    }

    fn leg_id_of(&self, leg: &Leg) -> Option<LegId> {
        self.legs
            .iter()
            .find(|(_, _, l)| *l == leg)
            .map(|(i, g, _)| LegId {
                index: i,
                generation: g,
            })
    }

    // ---- deliver ----

    pub(crate) fn deliver(
        &mut self,
        packet: Packet,
        opts: DeliverOptions,
        now: Instant,
    ) -> Result<DeliveryId, Error> {
        let retransmits = opts.do_retransmits.unwrap_or(self.s.do_retransmits);
        // Nobody waits for its outcome nor can name it: a send sent once
        // needs no record then.
        let plain = opts.callback.is_none()
            && opts.on_failure.is_none()
            && opts.id.is_none()
            && opts.callid.is_none();
        // A response sent once, plainly: no record, so no queue limit.
        if let Packet::Response(resp) = &packet {
            let once =
                !(retransmits && resp.code() >= 200 && resp.method() == Some(Method::Invite));
            if once && plain && opts.dst_addr.is_none() {
                if let Some(id) = self.send_response_at_once(resp, opts.leg, now) {
                    return Ok(id);
                }
            }
        }
        // A request sent once, plainly, over UDP to a given leg and
        // destination (a stateless proxy's forward): no record either.
        if let (Packet::Request(req), Some(leg), Some(dst)) = (&packet, opts.leg, &opts.dst_addr) {
            let once = *req.method() == Method::Ack || !retransmits;
            if once && plain {
                if let Some(id) = self.send_request_at_once(req, leg, dst, opts.branch.as_ref()) {
                    return Ok(id);
                }
            }
        }
        if self.deliveries.len() >= self.s.max_deliveries {
            return Err(Error::new(
                Errno::ENOBUFS,
                format!(
                    "{} deliveries pending (limit max_deliveries)",
                    self.deliveries.len()
                ),
            ));
        }
        let mut packet = packet;
        let mode = match &packet {
            Packet::Request(r) if *r.method() == Method::Ack || !retransmits => Mode::Oneshot,
            Packet::Request(r) => Mode::Client(ClientTx::new(
                *r.method() == Method::Invite,
                true,
                false,
                &self.s.timers,
            )),
            Packet::Response(r)
                if retransmits && r.code() >= 200 && r.method() == Some(Method::Invite) =>
            {
                Mode::ResponseRetransmit {
                    interval: self.s.timers.t1,
                    is_2xx: r.code() < 300,
                    retransmit: true,
                }
            }
            Packet::Response(_) => Mode::Oneshot,
        };
        if !matches!(mode, Mode::Oneshot) {
            // Kept until the transaction ends: no spare capacity.
            packet.headers_mut().shrink_to_fit();
        }
        // Only deliveries that stay pending are indexed by id and Call-ID
        // (`cancel_delivery`); a one-shot send needs neither hash.
        let (id_key, callid_key) = if matches!(mode, Mode::Oneshot) {
            (0, 0)
        } else {
            let id_key = match &opts.id {
                Some(id) => self.keys.of(id),
                None => self.keys.of_tid(
                    packet.call_id().unwrap_or(""),
                    packet.cseq().map(|c| c.number).unwrap_or(0),
                ),
            };
            (
                id_key,
                self.keys
                    .of(opts.callid.as_deref().unwrap_or(packet.callid())),
            )
        };
        let labels = (opts.id.is_some() || opts.callid.is_some()).then(|| {
            Box::new(Labels {
                id: opts.id.map(String::into_boxed_str),
                callid: opts.callid.map(String::into_boxed_str),
            })
        });
        let branch = match (&packet, opts.branch) {
            (Packet::Request(_), Some(b)) => Some(b),
            (Packet::Request(_), None) => Some(self.new_branch()),
            (Packet::Response(_), _) => None,
        };
        let is_request = packet.is_request();
        let dialog = match &packet {
            Packet::Response(r)
                if matches!(mode, Mode::ResponseRetransmit { is_2xx: true, .. }) =>
            {
                let cseq = r.cseq().map(|c| c.number).unwrap_or(0);
                Some((
                    Rc::from(r.call_id().unwrap_or("")),
                    cseq,
                    Rc::from(r.to_tag().unwrap_or("")),
                ))
            }
            _ => None,
        };
        let (index, generation) = self.deliveries.insert(Delivery {
            packet: Stored::Parsed(packet),
            id_key,
            callid_key,
            client_key: 0,
            client_indexed: false,
            labels,
            callback: opts.callback,
            on_failure: opts.on_failure,
            mode,
            targets: Targets::None,
            target_index: 0,
            allowed_legs: opts.leg,
            allowed_proto: opts.allowed_proto.into_iter().collect(),
            branch,
            bytes: None,
            ack_bytes: None,
            timers: [None; 3],
            default_udp: false,
            size_fallback: None,
            indexed: false,
            by_dst: false,
            dialog: None,
            server: None,
            resolving: false,
        });
        let id = did(index, generation);
        if !matches!(
            self.deliveries.get(index, generation).map(|d| &d.mode),
            Some(Mode::Oneshot)
        ) {
            self.index(id);
        }
        if let Some(key) = dialog {
            self.dialogs.insert(key.clone(), id);
            if let Some(d) = self.get_mut(id) {
                d.dialog = Some(Box::new(key));
            }
        }

        // Explicit leg and destination: no resolution.
        let leg_ok = |core: &Core, l: LegId| core.leg(l).is_some();
        match (opts.leg, opts.dst_addr) {
            (Some(leg), Some(dst)) => {
                if !leg_ok(self, leg) {
                    self.finish(
                        id,
                        DeliveryOutcome::Failed(Error::new(
                            Errno::ENETDOWN,
                            "the leg given to deliver is gone",
                        )),
                    );
                    return Ok(id);
                }
                self.set_targets(id, Targets::One(Target { leg, dst }), now);
            }
            (leg, Some(dst)) => {
                let found = self.first_leg_for(dst.proto, &dst.addr, leg);
                match found {
                    Some(l) => self.set_targets(id, Targets::One(Target { leg: l, dst }), now),
                    None => self.finish(
                        id,
                        DeliveryOutcome::Failed(Error::new(
                            Errno::EHOSTUNREACH,
                            format!("no leg can send to {dst}"),
                        )),
                    ),
                }
            }
            (_, None) if is_request => self.start_resolution(id),
            (_, None) => self.route_response(id, now),
        }
        Ok(id)
    }

    fn get_mut(&mut self, id: DeliveryId) -> Option<&mut Delivery> {
        self.deliveries.get_mut(id.index, id.generation)
    }

    fn get(&self, id: DeliveryId) -> Option<&Delivery> {
        self.deliveries.get(id.index, id.generation)
    }

    fn index(&mut self, id: DeliveryId) {
        let Some(d) = self.get_mut(id) else { return };
        if d.indexed {
            return;
        }
        d.indexed = true;
        let (key, callid) = (d.id_key, d.callid_key);
        self.by_id.add(key, id);
        self.by_callid.add(callid, id);
    }

    /// The first leg that can send to `addr` over `proto` (only `only`,
    /// when given).
    pub(crate) fn first_leg_for(
        &self,
        proto: Protocol,
        addr: &SocketAddr,
        only: Option<LegId>,
    ) -> Option<LegId> {
        self.legs
            .iter()
            .find(|(i, g, leg)| {
                only.is_none_or(|o| o.index == *i && o.generation == *g)
                    && leg.can_deliver_to(proto, addr)
            })
            .map(|(i, g, _)| LegId {
                index: i,
                generation: g,
            })
    }

    fn start_resolution(&mut self, id: DeliveryId) {
        let Some(d) = self.get(id) else { return };
        let Some(req) = d.request() else {
            return;
        };
        // RFC 3261 8.1.2 / 16.12: the first Route, else the Request-URI.
        let target_uri: Result<crate::packet::Uri, Error> = match req.routes().next() {
            Some(Ok(route)) => route
                .uri()
                .map_err(|e| Error::new(Errno::EHOSTUNREACH, format!("Route: {e}"))),
            Some(Err(e)) => Err(Error::new(
                Errno::EHOSTUNREACH,
                format!("unusable Route header: {e}"),
            )),
            None => Ok(req.uri().clone()),
        };
        let uri = match target_uri {
            Ok(crate::packet::Uri::Sip(u)) => u,
            Ok(other) => {
                let e = Error::new(
                    Errno::EHOSTUNREACH,
                    format!("cannot route to a {}: URI", other.scheme()),
                );
                self.finish(id, DeliveryOutcome::Failed(e));
                return;
            }
            Err(e) => {
                self.finish(id, DeliveryOutcome::Failed(e));
                return;
            }
        };
        let Some(d) = self.get(id) else { return };
        let allowed = d.allowed_proto;
        let available = self.available_protocols();
        match super::resolve::plan(
            &uri,
            &self.s.domain2proxy,
            self.s.outgoing_proxy.as_ref(),
            &allowed,
            &available,
        ) {
            Ok(plan) => {
                let default_udp =
                    uri.transport().is_none() && !uri.is_secure() && allowed.is_empty();
                if let Some(d) = self.get_mut(id) {
                    d.resolving = true;
                    d.default_udp = default_udp;
                }
                self.effects.push_back(Effect::Resolve(id, plan));
            }
            Err(e) => self.finish(id, DeliveryOutcome::Failed(e)),
        }
    }

    /// Turns resolved addresses into targets (with legs) for a delivery.
    pub(crate) fn on_resolved(
        &mut self,
        id: DeliveryId,
        result: Result<Vec<Resolved>, Error>,
        now: Instant,
    ) {
        let Some(d) = self.get_mut(id) else { return };
        if !d.resolving {
            return;
        }
        d.resolving = false;
        let only = d.allowed_legs;
        let resolved = match result {
            Ok(r) => r,
            Err(e) => {
                // The error names the host (NXDOMAIN, no usable record,
                // a DNS timeout).
                log::info!("{id}: cannot resolve where to send it: {e}");
                self.finish(id, DeliveryOutcome::Failed(e));
                return;
            }
        };
        let targets = self.order_by_health(self.targets_for(&resolved, only), now);
        if targets.is_empty() {
            let what: Vec<String> = resolved
                .iter()
                .map(|r| format!("{}:{}", r.proto, r.addr))
                .collect();
            let e = Error::new(
                Errno::EHOSTUNREACH,
                format!("no leg can send to {}", what.join(", ")),
            );
            self.finish(id, DeliveryOutcome::Failed(e));
            return;
        }
        self.set_targets(id, Targets::from_vec(targets), now);
    }

    /// RFC 3263 4.3 across deliveries: blacklisted targets (503 with
    /// Retry-After) are left out while others remain; greylisted ones (they
    /// timed out) go last.
    fn order_by_health(&mut self, targets: Vec<Target>, now: Instant) -> Vec<Target> {
        if self.blacklist.is_empty() && self.greylist.is_empty() {
            return targets;
        }
        self.blacklist.retain(|_, until| *until > now);
        self.greylist.retain(|_, until| *until > now);
        let key = |t: &Target| (t.dst.proto, t.dst.addr);
        let (black, usable): (Vec<Target>, Vec<Target>) = targets
            .into_iter()
            .partition(|t| self.blacklist.contains_key(&key(t)));
        if usable.is_empty() {
            // Nothing else: a blacklisted target beats no target.
            return black;
        }
        let (grey, good): (Vec<Target>, Vec<Target>) = usable
            .into_iter()
            .partition(|t| self.greylist.contains_key(&key(t)));
        good.into_iter().chain(grey).collect()
    }

    /// Puts the current target of a delivery on a list until `until`.
    fn list_current_target(&mut self, id: DeliveryId, black: bool, until: Instant) {
        const MAX_LISTED: usize = 4096;
        let Some(t) = self
            .get(id)
            .and_then(|d| d.targets.get(d.target_index))
            .map(|t| (t.dst.proto, t.dst.addr))
        else {
            return;
        };
        let list = if black {
            &mut self.blacklist
        } else {
            &mut self.greylist
        };
        if list.len() >= MAX_LISTED {
            let oldest = list.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k);
            if let Some(k) = oldest {
                list.remove(&k);
            }
        }
        list.insert(t, until);
    }

    pub(crate) fn targets_for(&self, resolved: &[Resolved], only: Option<LegId>) -> Vec<Target> {
        let mut targets = Vec::with_capacity(resolved.len());
        for r in resolved {
            if let Some(leg) = self.first_leg_for(r.proto, &r.addr, only) {
                targets.push(Target {
                    leg,
                    dst: Destination {
                        proto: r.proto,
                        addr: r.addr,
                        host: r.host.clone(),
                        conn: None,
                    },
                });
            }
        }
        targets
    }

    /// The targets for a plan whose host is the IP address `ip`: every
    /// planned transport to it, on the planned port, over the first leg
    /// that can send there, kept when `allowed` has that leg. What
    /// `lookup::direct_targets` then `targets_for` give, without the list
    /// between them (this runs for every request a proxy forwards).
    pub(crate) fn direct_targets(
        &self,
        plan: &Plan,
        ip: std::net::IpAddr,
        allowed: Option<&[LegId]>,
    ) -> Result<Vec<Target>, Error> {
        let mut targets = Vec::with_capacity(plan.protos.len());
        for &proto in plan.protos.iter() {
            let addr = SocketAddr::new(ip, plan.port.unwrap_or(proto.default_port()));
            let Some(leg) = self.first_leg_for(proto, &addr, None) else {
                continue;
            };
            if allowed.is_some_and(|a| !a.contains(&leg)) {
                continue;
            }
            targets.push(Target {
                leg,
                dst: Destination {
                    proto,
                    addr,
                    host: plan.identity.clone(),
                    conn: None,
                },
            });
        }
        no_empty_targets(targets)
    }

    fn set_targets(&mut self, id: DeliveryId, targets: Targets, now: Instant) {
        self.unindex_dst(id);
        let Some(d) = self.get_mut(id) else { return };
        d.targets = targets;
        d.target_index = 0;
        self.send_current(id, now);
    }

    /// Where a response without explicit leg and destination goes: its
    /// server transaction's connection or address, else the top Via.
    /// The server transaction a response answers. Most responses answer
    /// the request that arrived last: its transaction is tried before
    /// hashing the key. Without server transactions (a stateless proxy's)
    /// there is no key to build.
    fn server_of_response(&self, resp: &Response) -> Option<(u32, u32)> {
        if self.servers.len() == 0 {
            return None;
        }
        // A response built from the request carries its stamped Via line
        // itself: the same text, so the same branch and sent-by.
        if let (Some(s), Some(via)) = (self.last_server, resp.headers().first_via_shared()) {
            let same = self.servers.get(s.0, s.1).is_some_and(|tx| {
                tx.via.as_ref().is_some_and(|v| Rc::ptr_eq(v, via))
                    && resp.cseq().is_ok_and(|c| tx.key.method_is(&c.method))
            });
            if same {
                return Some(s);
            }
        }
        resp.with_server_key(|key, method| {
            self.last_server
                .filter(|s| {
                    self.servers
                        .get(s.0, s.1)
                        .is_some_and(|tx| tx.key.is(key, method))
                })
                .or_else(|| self.find_server(key, method))
        })
        .flatten()
    }

    /// Sends a response that needs no delivery record: sent once, with no
    /// callback and no id or Call-ID label, over UDP, to where its server
    /// transaction or its Via says. It has no outcome to report and
    /// nothing to retransmit; a send that fails is counted by the leg,
    /// as a failed one-shot send without callback would be. The id
    /// returned names no pending delivery. `None` when the response needs
    /// the full path (a stream, no route: the record reports those).
    fn send_response_at_once(
        &mut self,
        resp: &Response,
        only: Option<LegId>,
        now: Instant,
    ) -> Option<DeliveryId> {
        let (sid, Target { leg, dst }) = self.response_target(resp, only).ok()?;
        if dst.proto != Protocol::Udp || dst.conn.is_some() {
            return None;
        }
        let leg = self.leg(leg)?.clone();
        let bytes: Rc<[u8]> = resp.to_shared_bytes();
        let id = self.send_at_once(leg, bytes.clone(), dst);
        if let Some(sid) = sid {
            self.note_server_response(sid, bytes, resp.code(), None, now);
        }
        Some(id)
    }

    /// Sends a request that needs no delivery record: sent once, with no
    /// callback, failure callback or label, over UDP, on `leg` to `dst`
    /// (a stateless proxy's forward). As for a response sent at once, a
    /// send the kernel refuses is counted by the leg, and the id returned
    /// names no pending delivery. `None` when the request needs the full
    /// path (not UDP, a connection, a leg that is gone).
    fn send_request_at_once(
        &mut self,
        req: &Request,
        leg: LegId,
        dst: &Destination,
        branch: Option<&Rc<str>>,
    ) -> Option<DeliveryId> {
        if dst.proto != Protocol::Udp || dst.conn.is_some() {
            return None;
        }
        let leg = self.leg(leg)?.clone();
        if leg.protocol() != Protocol::Udp {
            return None;
        }
        let branch = match branch {
            Some(b) => Rc::clone(b),
            None => self.new_branch(),
        };
        let bytes = leg.prepare_request_shared(req, &branch, dst);
        Some(self.send_at_once(leg, bytes, dst.clone()))
    }

    /// Queues a send with no delivery behind it; the id names none.
    fn send_at_once(&mut self, leg: Leg, bytes: Rc<[u8]>, dst: Destination) -> DeliveryId {
        self.effects.push_back(Effect::Send {
            leg,
            bytes,
            dst,
            token: None,
            for_delivery: None,
            kind: SendKind::Message,
        });
        // Unique, and never a slot: the arena's indexes stay far below.
        self.settled = self.settled.wrapping_add(1);
        did(u32::MAX, self.settled)
    }

    /// Where a response goes, and the server transaction it answers if
    /// any: that transaction's connection or address, else the top Via
    /// over the first leg (of `only`) that reaches it.
    fn response_target(
        &self,
        resp: &Response,
        only: Option<LegId>,
    ) -> Result<(Option<(u32, u32)>, Target), Error> {
        let server = self
            .server_of_response(resp)
            .and_then(|sid| Some((sid, self.servers.get(sid.0, sid.1)?)));
        if let Some((sid, tx)) = server {
            let dst = response_destination(&tx.source, resp);
            return Ok((Some(sid), Target { leg: tx.leg, dst }));
        }
        let (proto, addr) = route::via_destination(resp)?;
        let leg = self.first_leg_for(proto, &addr, only).ok_or_else(|| {
            Error::new(
                Errno::EHOSTUNREACH,
                format!("no leg can send to {proto}:{addr}"),
            )
        })?;
        Ok((
            None,
            Target {
                leg,
                dst: Destination::new(proto, addr),
            },
        ))
    }

    fn route_response(&mut self, id: DeliveryId, now: Instant) {
        let Some(d) = self.get(id) else { return };
        let Some(resp) = d.packet.response() else {
            return;
        };
        match self.response_target(resp, d.allowed_legs) {
            Ok((sid, target)) => {
                if let Some(d) = self.get_mut(id) {
                    d.server = sid;
                }
                self.set_targets(id, Targets::One(target), now);
            }
            Err(e) => self.finish(id, DeliveryOutcome::Failed(e)),
        }
    }

    /// Sends a delivery to its current target and starts its timers.
    fn send_current(&mut self, id: DeliveryId, now: Instant) {
        // Off `by_dst` while the target may change (the 1300-byte rule).
        self.unindex_dst(id);
        let threshold = self.s.udp_size_threshold;
        let Some(d) = self.deliveries.get(id.index, id.generation) else {
            return;
        };
        let Some(mut target) = d.targets.get(d.target_index).cloned() else {
            self.finish(
                id,
                DeliveryOutcome::Failed(Error::new(Errno::EHOSTUNREACH, "no destination left")),
            );
            return;
        };
        let Some(mut leg) = self.leg(target.leg).cloned() else {
            self.finish(
                id,
                DeliveryOutcome::Failed(Error::new(Errno::ENETDOWN, "leg removed")),
            );
            return;
        };
        // A request kept only as its prepared bytes is read again (another
        // target, a new branch): rare, and owned, so no borrow is held.
        let reparsed: Option<Request> = match &d.packet {
            Stored::Sent { .. } => match d.request() {
                Some(r) => Some(r.into_owned()),
                None => {
                    self.finish(
                        id,
                        DeliveryOutcome::Failed(Error::new(
                            Errno::EINVAL,
                            "the request could not be read again for its next target",
                        )),
                    );
                    return;
                }
            },
            Stored::Parsed(_) => None,
        };
        let bytes: Rc<[u8]> = match (&reparsed, &d.packet) {
            (Some(req), _) | (None, Stored::Parsed(Packet::Request(req))) => {
                let branch: Rc<str> = d.branch.clone().unwrap_or_default();
                let mut bytes = leg.prepare_request_shared(req, &branch, &target.dst);
                // RFC 3261 18.1.1: too large for UDP, and UDP was only the
                // default: TCP, if a TCP leg reaches the destination.
                if d.default_udp
                    && d.size_fallback.is_none()
                    && target.dst.proto == Protocol::Udp
                    && bytes.len() > threshold
                {
                    if let Some(tcp) = self.first_leg_for(Protocol::Tcp, &target.dst.addr, None) {
                        if let Some(tcp_leg) = self.leg(tcp).cloned() {
                            let udp_leg = target.leg;
                            target = Target {
                                leg: tcp,
                                dst: Destination {
                                    proto: Protocol::Tcp,
                                    ..target.dst.clone()
                                },
                            };
                            bytes = tcp_leg.prepare_request_shared(req, &branch, &target.dst);
                            leg = tcp_leg;
                            if let Some(d) = self.deliveries.get_mut(id.index, id.generation) {
                                d.size_fallback = Some(udp_leg);
                                let i = d.target_index;
                                if let Some(t) = d.targets.get_mut(i) {
                                    *t = target.clone();
                                }
                            }
                        }
                    }
                }
                bytes
            }
            (None, Stored::Parsed(Packet::Response(resp))) => resp.to_shared_bytes(),
            (None, Stored::Sent { .. }) => return,
        };
        let token = self.next_token;
        self.next_token += 1;
        let reliable = target.dst.proto.is_reliable();
        let timers = self.s.timers.clone();
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return;
        };
        d.bytes = Some(bytes.clone());
        // A failure callback gets the packet back: it stays parsed.
        if matches!(d.mode, Mode::Client(_)) && d.on_failure.is_none() {
            d.compact();
        }
        let mut start_actions = None;
        let mut resp_timers: Option<(Option<Duration>, Duration)> = None;
        match &mut d.mode {
            Mode::Client(tx) => {
                let retransmit = tx.retransmit || !tx.reliable;
                *tx = ClientTx::new(tx.invite, retransmit, reliable, &timers);
                start_actions = Some(tx.start(&timers));
            }
            Mode::ResponseRetransmit {
                interval,
                is_2xx,
                retransmit,
            } => {
                // 2xx on every transport (13.3.1.4); other finals only
                // over UDP (17.2.1, Timer G).
                *retransmit = *is_2xx || !reliable;
                *interval = timers.t1;
                let timeout = timers.timeout();
                resp_timers = Some(((*retransmit).then_some(timers.t1), timeout));
            }
            Mode::Oneshot => {}
        }
        // Index the client transaction by its (new) branch.
        if let (Mode::Client(_), Some(method), Some(branch)) =
            (&d.mode, d.packet.method(), &d.branch)
        {
            let key = self.keys.of_transaction(branch, method);
            if !(d.client_indexed && d.client_key == key) {
                self.client_keys.add(key, id);
                (d.client_key, d.client_indexed) = (key, true);
            }
        }
        // Only what waits for an answer moves on when the destination
        // turns out unreachable; a one-shot send is done once sent.
        if !matches!(d.mode, Mode::Oneshot) {
            self.index_dst(id);
        }
        self.effects.push_back(Effect::Send {
            leg,
            bytes,
            dst: target.dst,
            token: Some(token),
            for_delivery: Some(id),
            kind: SendKind::Message,
        });
        if let Some(actions) = start_actions {
            self.apply(id, actions, None, now);
        }
        if self.get(id).is_some_and(|d| d.server.is_some()) {
            self.note_response_sent(id, now);
        }
        if let Some((retransmit, timeout)) = resp_timers {
            if let Some(r) = retransmit {
                self.start_timer(id, TimerKind::ResponseRetransmit, r, now);
            }
            self.start_timer(id, TimerKind::ResponseTimeout, timeout, now);
        }
    }

    /// Lists a delivery under its current target in `by_dst`.
    fn index_dst(&mut self, id: DeliveryId) {
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return;
        };
        let Some(k) = d.dst_key().filter(|_| !d.by_dst) else {
            return;
        };
        d.by_dst = true;
        let entry = self.by_dst.entry(k).or_insert_with(|| DstIndex {
            ids: Vec::new(),
            live: 0,
        });
        if entry.ids.len() >= 2 * entry.live + 8 {
            let deliveries = &self.deliveries;
            entry.ids.retain(|i| {
                deliveries
                    .get(i.index, i.generation)
                    .is_some_and(|d| d.by_dst && d.dst_key() == Some(k))
            });
        }
        entry.ids.push(id);
        entry.live += 1;
    }

    /// Takes a delivery off `by_dst`: before its target changes, when it
    /// no longer waits for a first answer, and when it goes.
    fn unindex_dst(&mut self, id: DeliveryId) {
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return;
        };
        if !d.by_dst {
            return;
        }
        d.by_dst = false;
        let Some(k) = d.dst_key() else { return };
        if let Some(entry) = self.by_dst.get_mut(&k) {
            entry.live -= 1;
            if entry.live == 0 {
                self.by_dst.remove(&k);
            }
        }
    }

    /// What the leg said about a send.
    pub(crate) fn on_send_status(
        &mut self,
        id: DeliveryId,
        token: SendToken,
        status: SendStatus,
        now: Instant,
    ) {
        match status {
            SendStatus::Sent => {
                if matches!(self.get(id).map(|d| &d.mode), Some(Mode::Oneshot)) {
                    self.finish(id, DeliveryOutcome::Sent);
                }
            }
            SendStatus::Queued => {
                if self.get(id).is_some() {
                    self.queued_tokens.insert(token, id);
                }
            }
            SendStatus::Failed(e) => self.transport_error(id, e, now),
        }
    }

    /// A queued send finished.
    pub(crate) fn on_send_outcome(
        &mut self,
        token: SendToken,
        result: Result<(), Error>,
        now: Instant,
    ) {
        let Some(id) = self.queued_tokens.remove(&token) else {
            return;
        };
        match result {
            Ok(()) => {
                if matches!(self.get(id).map(|d| &d.mode), Some(Mode::Oneshot)) {
                    self.finish(id, DeliveryOutcome::Sent);
                }
            }
            Err(e) => self.transport_error(id, e, now),
        }
    }

    /// The network said a destination is unreachable: deliveries waiting
    /// for a first answer from it move on at once.
    pub(crate) fn on_unreachable(&mut self, dst: &Destination, error: Error, now: Instant) {
        let key = (dst.proto, dst.addr);
        let Some(ids) = self.by_dst.get(&key).map(|e| e.ids.clone()) else {
            return;
        };
        for id in ids {
            // Skip ids left behind by lazy removal, or moved elsewhere.
            if self
                .get(id)
                .is_none_or(|d| !d.by_dst || d.dst_key() != Some(key))
            {
                continue;
            }
            let early = match self.get(id).map(|d| &d.mode) {
                Some(Mode::Client(tx)) => {
                    matches!(tx.state, ClientState::Calling | ClientState::Trying)
                }
                Some(Mode::ResponseRetransmit { .. }) => true,
                _ => false,
            };
            if early {
                self.transport_error(id, error.clone(), now);
            }
        }
    }

    /// A transport error for a delivery: UDP once after a size switch,
    /// the next target, or failure.
    fn transport_error(&mut self, id: DeliveryId, error: Error, now: Instant) {
        // Before the target changes.
        self.unindex_dst(id);
        let Some(d) = self.get_mut(id) else { return };
        if let Some(udp_leg) = d.size_fallback.take() {
            // 18.1.1: "if the TCP connect fails, UDP once".
            let i = d.target_index;
            if let Some(t) = d.targets.get_mut(i) {
                t.leg = udp_leg;
                t.dst.proto = Protocol::Udp;
            }
            d.default_udp = false;
            log::debug!("{id}: TCP for a large request failed ({error}); trying UDP");
            self.restart(id, now, false);
            return;
        }
        let more = matches!(d.mode, Mode::Client(_)) && d.target_index + 1 < d.targets.len();
        if more {
            d.target_index += 1;
            log::debug!("{id}: {error}; trying the next destination");
            self.restart(id, now, true);
        } else {
            self.finish(id, DeliveryOutcome::Failed(error));
        }
    }

    /// Sends again to the current target after a failover (with a new
    /// branch: a new transaction, RFC 3263 4.3).
    fn restart(&mut self, id: DeliveryId, now: Instant, new_branch: bool) {
        self.stop_all_timers(id);
        if new_branch {
            // The old transaction's key goes; send_current indexes the new.
            if let Some(d) = self.deliveries.get_mut(id.index, id.generation) {
                if d.client_indexed {
                    d.client_indexed = false;
                    self.client_keys.remove(d.client_key, id);
                }
            }
            let b = self.new_branch();
            if let Some(d) = self.get_mut(id) {
                d.branch = Some(b);
            }
        }
        self.send_current(id, now);
    }

    // ---- timers ----

    fn slot(kind: TimerKind) -> usize {
        match kind {
            TimerKind::Client(ClientTimer::Retransmit) | TimerKind::ResponseRetransmit => 0,
            TimerKind::Client(ClientTimer::Timeout) | TimerKind::ResponseTimeout => 1,
            TimerKind::Client(ClientTimer::TimerC | ClientTimer::Linger)
            | TimerKind::ServerExpire => 2,
        }
    }

    fn start_timer(&mut self, id: DeliveryId, kind: TimerKind, after: Duration, now: Instant) {
        let deadline = self.tick_at(now + after);
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return;
        };
        let slot = Self::slot(kind);
        if let Some(old) = d.timers[slot].take() {
            self.wheel.cancel(old);
        }
        let key = self.wheel.insert(
            deadline,
            TimerRef {
                index: id.index,
                generation: id.generation,
                kind,
            },
        );
        if let Some(d) = self.deliveries.get_mut(id.index, id.generation) {
            d.timers[slot] = Some(key);
        }
    }

    fn stop_timer(&mut self, id: DeliveryId, kind: TimerKind) {
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return;
        };
        if let Some(old) = d.timers[Self::slot(kind)].take() {
            self.wheel.cancel(old);
        }
    }

    fn stop_all_timers(&mut self, id: DeliveryId) {
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return;
        };
        for t in d.timers.iter_mut() {
            if let Some(k) = t.take() {
                self.wheel.cancel(k);
            }
        }
    }

    /// Runs every timer due at `now`; returns the next deadline.
    pub(crate) fn expire(&mut self, now: Instant) {
        let now_tick = self.now_tick(now);
        // Bounded by the number of expiries due; each is removed as it
        // fires.
        while let Some(sid) = self.server_fifo.pop_due(now_tick, &self.servers) {
            self.server_expired(sid);
        }
        while let Some((_, r)) = self.wheel.poll(now_tick) {
            self.fire(r, now);
        }
    }

    fn fire(&mut self, r: TimerRef, now: Instant) {
        if r.kind == TimerKind::ServerExpire {
            self.server_expired((r.index, r.generation));
            return;
        }
        let id = did(r.index, r.generation);
        let Some(d) = self.deliveries.get_mut(r.index, r.generation) else {
            return;
        };
        d.timers[Self::slot(r.kind)] = None;
        let timers = self.s.timers.clone();
        match r.kind {
            TimerKind::Client(ClientTimer::Retransmit) => {
                let Mode::Client(tx) = &mut d.mode else {
                    return;
                };
                let actions = tx.on_retransmit(&timers);
                self.apply(id, actions, None, now);
            }
            TimerKind::Client(t) => {
                let Mode::Client(tx) = &mut d.mode else {
                    return;
                };
                let actions = tx.on_timer(t);
                self.apply(id, actions, None, now);
            }
            TimerKind::ResponseRetransmit => {
                let Mode::ResponseRetransmit { interval, .. } = &mut d.mode else {
                    return;
                };
                *interval = (*interval * 2).min(timers.t2);
                let next = *interval;
                self.resend(id);
                self.start_timer(id, TimerKind::ResponseRetransmit, next, now);
            }
            TimerKind::ResponseTimeout => {
                let what = match &d.mode {
                    Mode::ResponseRetransmit { is_2xx: true, .. } => {
                        "no ACK for the 2xx within 64*T1"
                    }
                    _ => "no ACK for the final response within 64*T1 (Timer H)",
                };
                self.finish(
                    id,
                    DeliveryOutcome::Failed(Error::new(Errno::ETIMEDOUT, what)),
                );
            }
            TimerKind::ServerExpire => {}
        }
    }

    /// Sends a delivery's bytes again to its current target.
    fn resend(&mut self, id: DeliveryId) {
        let Some(d) = self.get(id) else { return };
        let (Some(bytes), Some(target)) = (d.bytes.clone(), d.targets.get(d.target_index).cloned())
        else {
            return;
        };
        let Some(leg) = self.leg(target.leg).cloned() else {
            return;
        };
        self.stats.retransmissions += 1;
        self.effects.push_back(Effect::Send {
            leg,
            bytes,
            dst: target.dst,
            token: None,
            for_delivery: None,
            kind: SendKind::Retransmission,
        });
    }

    /// Applies a client transaction's actions. `response` is the response
    /// that caused them, with where it came from.
    fn apply(
        &mut self,
        id: DeliveryId,
        actions: super::client::Actions,
        response: Option<(&Response, LegId, &Source)>,
        now: Instant,
    ) {
        for action in actions.iter() {
            match action {
                Action::Resend => self.resend(id),
                Action::Start(t, d) => self.start_timer(id, TimerKind::Client(t), d, now),
                Action::Stop(t) => self.stop_timer(id, TimerKind::Client(t)),
                Action::SendAck => {
                    if let Some((resp, _, _)) = response {
                        self.send_ack(id, resp);
                    }
                }
                Action::PassUp => {
                    if let Some((resp, leg, source)) = response {
                        // Matched: our Via goes before the receiver sees it.
                        let mut resp = resp.clone();
                        resp.headers_mut().remove_first(HeaderName::Via);
                        self.effects.push_back(Effect::PassUp(Box::new((
                            Packet::Response(resp),
                            leg,
                            source.clone(),
                        ))));
                    }
                }
                Action::Completed(code) => {
                    // The callback now; the entry may linger (Timer D/K).
                    self.unindex_dst(id);
                    let d = self.get_mut(id);
                    let cb = d.and_then(|d| {
                        // Completed: no failure can follow.
                        d.on_failure = None;
                        d.callback.take()
                    });
                    if let Some(cb) = cb {
                        self.effects
                            .push_back(Effect::Callback(cb, DeliveryOutcome::Completed(code)));
                    }
                }
                Action::TimedOut => {
                    // Counted on the leg of the target that timed out,
                    // before a failover moves to the next one.
                    if let Some(leg) = self
                        .get(id)
                        .and_then(|d| d.targets.get(d.target_index))
                        .and_then(|t| self.leg(t.leg))
                    {
                        leg.count_timeout();
                    }
                    // Greylisted for 32 s: later deliveries try it last.
                    self.list_current_target(id, false, now + Duration::from_secs(32));
                    let more = self
                        .get(id)
                        .is_some_and(|d| d.target_index + 1 < d.targets.len());
                    let e = Error::new(
                        Errno::ETIMEDOUT,
                        "no final response within 64*T1 (Timer B/F) or Timer C",
                    );
                    if more {
                        self.transport_error(id, e, now);
                    } else {
                        self.finish(id, DeliveryOutcome::Failed(e));
                    }
                }
                Action::Terminate => self.remove(id),
            }
        }
    }

    /// RFC 3261 17.1.1.3: the ACK of a non-2xx final response, sent to the
    /// same target with the INVITE's branch.
    fn send_ack(&mut self, id: DeliveryId, resp: &Response) {
        let Some(d) = self.get(id) else { return };
        let Some(target) = d.targets.get(d.target_index).cloned() else {
            return;
        };
        let Some(leg) = self.leg(target.leg).cloned() else {
            return;
        };
        // The ACK built before goes out again for a retransmitted final.
        let (bytes, kind) = match (&d.ack_bytes, d.request()) {
            (Some(b), _) => (b.clone(), SendKind::Retransmission),
            (None, Some(invite)) => {
                let ack = build_ack(&invite, resp);
                let branch: Rc<str> = d.branch.clone().unwrap_or_default();
                let bytes: Rc<[u8]> = leg.prepare_request_shared(&ack, &branch, &target.dst);
                if let Some(d) = self.get_mut(id) {
                    d.ack_bytes = Some(bytes.clone());
                }
                (bytes, SendKind::Message)
            }
            _ => return,
        };
        self.effects.push_back(Effect::Send {
            leg,
            bytes,
            dst: target.dst,
            token: None,
            for_delivery: None,
            kind,
        });
    }

    /// Ends a delivery with an outcome (its callback, if it still has one,
    /// is queued) and removes it.
    pub(crate) fn finish(&mut self, id: DeliveryId, outcome: DeliveryOutcome) {
        let Some(d) = self.get_mut(id) else { return };
        if !(matches!(outcome, DeliveryOutcome::Failed(_)) && d.on_failure.is_some()) {
            if let Some(cb) = d.callback.take() {
                self.effects.push_back(Effect::Callback(cb, outcome));
            }
            self.remove(id);
            return;
        }
        // The failure callback and the packet, moved out of the record
        // (never compacted to its bytes while `on_failure` is set).
        let Some(d) = self.take(id) else { return };
        let report: DeliveryCallback = match (d.packet, d.on_failure) {
            (Stored::Parsed(packet), Some(on_failure)) => {
                Box::new(move |disp: &Dispatcher, outcome: DeliveryOutcome| {
                    if let DeliveryOutcome::Failed(e) = outcome {
                        on_failure(disp, e, packet);
                    }
                })
            }
            _ => {
                log::error!("a failed delivery kept no packet for its failure callback");
                match d.callback {
                    Some(cb) => cb,
                    None => return,
                }
            }
        };
        self.effects.push_back(Effect::Callback(report, outcome));
    }

    /// Removes a delivery and everything that points to it.
    fn remove(&mut self, id: DeliveryId) {
        if self.unlink(id) {
            self.deliveries.discard(id.index, id.generation);
        }
    }

    /// Removes a delivery and everything that points to it, and returns it.
    fn take(&mut self, id: DeliveryId) -> Option<Delivery> {
        if self.unlink(id) {
            self.deliveries.remove(id.index, id.generation)
        } else {
            None
        }
    }

    /// Removes what points to a delivery (timers, indexes, dialog, server
    /// transaction), leaving the record itself; false when it is gone.
    fn unlink(&mut self, id: DeliveryId) -> bool {
        self.stop_all_timers(id);
        self.unindex_dst(id);
        // What points to the delivery, read in place: the delivery itself
        // (several hundred bytes) is not moved for it.
        let Some(d) = self.deliveries.get_mut(id.index, id.generation) else {
            return false;
        };
        let indexed = d.indexed.then_some((d.id_key, d.callid_key));
        let client_key = d.client_indexed.then_some(d.client_key);
        let dialog = d.dialog.take();
        let server = d.server;
        if let Some((id_key, callid_key)) = indexed {
            self.by_id.remove(id_key, id);
            self.by_callid.remove(callid_key, id);
        }
        if let Some(key) = client_key {
            self.client_keys.remove(key, id);
        }
        if let Some(key) = dialog {
            if self.dialogs.get(&*key) == Some(&id) {
                self.dialogs.remove(&*key);
            }
        }
        if let Some(sid) = server {
            if let Some(tx) = self.servers.get_mut(sid.0, sid.1) {
                if tx.response_delivery == Some(id) {
                    tx.response_delivery = None;
                }
            }
        }
        true
    }

    // ---- cancel ----

    pub(crate) fn cancel(&mut self, which: &Cancel) -> bool {
        // The indexes hold hashes: a hit is confirmed against the delivery.
        let ids: Vec<DeliveryId> = match which {
            Cancel::Id(key) => {
                let h = self.keys.of(key);
                self.by_id
                    .get(h)
                    .filter(|i| self.get(*i).is_some_and(|d| d.has_id(key)))
                    .collect()
            }
            Cancel::CallId(key) => {
                let h = self.keys.of(key);
                self.by_callid
                    .get(h)
                    .filter(|i| self.get(*i).is_some_and(|d| d.callid() == key.as_str()))
                    .collect()
            }
            Cancel::Entry(id) => vec![*id],
        };
        let mut any = false;
        for id in ids {
            if self.get(id).is_some() {
                any = true;
                // No callback after a successful cancel: `remove` reports
                // nothing.
                self.remove(id);
            }
        }
        any
    }

    /// Fails the deliveries that use a leg (it is being removed).
    pub(crate) fn fail_leg(&mut self, leg: LegId) {
        let ids: Vec<DeliveryId> = self
            .deliveries
            .iter()
            .filter(|(_, _, d)| {
                d.allowed_legs == Some(leg)
                    || d.targets.get(d.target_index).is_some_and(|t| t.leg == leg)
            })
            .map(|(i, g, _)| did(i, g))
            .collect();
        for id in ids {
            self.finish(
                id,
                DeliveryOutcome::Failed(Error::new(Errno::ENETDOWN, "the leg was removed")),
            );
        }
        let sids: Vec<(u32, u32)> = self
            .servers
            .iter()
            .filter(|(_, _, s)| s.leg == leg)
            .map(|(i, g, _)| (i, g))
            .collect();
        for sid in sids {
            self.server_expired(sid);
        }
    }

    /// Fails every delivery (shutdown).
    pub(crate) fn fail_all(&mut self, error: Error) {
        let ids: Vec<DeliveryId> = self.deliveries.iter().map(|(i, g, _)| did(i, g)).collect();
        for id in ids {
            self.finish(id, DeliveryOutcome::Failed(error.clone()));
        }
        let sids: Vec<(u32, u32)> = self.servers.iter().map(|(i, g, _)| (i, g)).collect();
        for sid in sids {
            self.server_expired(sid);
        }
    }

    // ---- receive ----

    /// Handles a received packet; returns it when it goes up to the
    /// receiver, which the caller does after carrying out the effects
    /// queued (it is not queued itself: a packet is a few hundred bytes,
    /// and most received packets go up).
    pub(crate) fn receive(
        &mut self,
        packet: Packet,
        leg: LegId,
        from: Source,
        now: Instant,
    ) -> Option<PassUp> {
        match packet {
            Packet::Request(req) => self.receive_request(req, leg, from, now),
            Packet::Response(resp) => self.receive_response(resp, leg, from, now),
        }
    }

    /// The client transaction a response belongs to (RFC 3261 17.1.3: top
    /// Via branch and CSeq method).
    fn match_client(&self, resp: &Response) -> Option<DeliveryId> {
        // No client transaction (a stateless proxy's case): nothing to hash.
        if self.client_keys.len() == 0 {
            return None;
        }
        let via = resp.top_via().ok()?;
        let branch = via.branch()?;
        let method = resp.cseq().ok()?.method;
        let key = self.keys.of_transaction(branch, &method);
        self.client_keys.get(key).find(|id| {
            self.get(*id).is_some_and(|d| {
                d.branch.as_deref() == Some(branch) && d.packet.method() == Some(&method)
            })
        })
    }

    fn receive_response(
        &mut self,
        resp: Response,
        leg: LegId,
        from: Source,
        now: Instant,
    ) -> Option<PassUp> {
        let id = self.match_client(&resp);
        let Some(id) = id else {
            self.stats.stray_responses += 1;
            return Some((Packet::Response(resp), leg, from));
        };
        let code = resp.code();
        let timers = self.s.timers.clone();
        let d = self.get_mut(id)?;
        // RFC 3263 4.3: a 503 moves to the next target (ACKed, not passed
        // up) while targets remain.
        let early = matches!(&d.mode, Mode::Client(tx) if tx.state != ClientState::Completed);
        if code == 503 && early {
            if let Some(secs) = retry_after(&resp) {
                self.list_current_target(id, true, now + Duration::from_secs(secs));
            }
        }
        let d = self.get_mut(id)?;
        if code == 503 && early && d.target_index + 1 < d.targets.len() {
            let invite = matches!(&d.mode, Mode::Client(tx) if tx.invite);
            if invite {
                self.send_ack(id, &resp);
            }
            self.unindex_dst(id);
            if let Some(d) = self.get_mut(id) {
                d.target_index += 1;
                d.ack_bytes = None;
            }
            self.restart(id, now, true);
            return None;
        }
        let Mode::Client(tx) = &mut d.mode else {
            return None;
        };
        let actions = tx.on_response(code, &timers);
        self.apply(id, actions, Some((&resp, leg, &from)), now);
        None
    }

    fn receive_request(
        &mut self,
        req: Request,
        leg: LegId,
        from: Source,
        now: Instant,
    ) -> Option<PassUp> {
        let is_ack = *req.method() == Method::Ack;
        if self.s.validate_requests && !is_ack {
            if let Err(rejection) = req.check() {
                self.stats.rejected_requests += 1;
                log::info!(
                    "rejecting request from {from}: {} {}",
                    rejection.status,
                    rejection.reason
                );
                let mut resp = Response::for_request(&req, rejection.status, &rejection.reason);
                // RFC 3261 8.2.6.2: a tag when the request had none.
                let tag = format!("{:012x}", self.random() >> 16);
                resp.set_to_tag(&tag);
                if let Some(l) = self.leg(leg).cloned() {
                    let bytes: Rc<[u8]> = resp.to_shared_bytes();
                    let dst = response_destination(&from, &resp);
                    self.effects.push_back(Effect::Send {
                        leg: l,
                        bytes,
                        dst,
                        token: None,
                        for_delivery: None,
                        kind: SendKind::Message,
                    });
                }
                return None;
            }
        }
        if is_ack {
            self.receive_ack(req, leg, from, now);
            return None;
        }
        if self.s.server_transactions {
            // Looked up without building the key; built (once) only for a
            // new transaction.
            let found = req.with_server_key(|key, method| {
                let hash = self.keys.of_transaction(key, method);
                self.find_server_hashed(hash, key, method)
                    .ok_or_else(|| (TransactionKey::from_parts(key, method.clone()), hash))
            });
            let Some(found) = found else {
                return Some((Packet::Request(req), leg, from));
            };
            if let Ok(sid) = found {
                self.stats.absorbed_requests += 1;
                let tx = self.servers.get(sid.0, sid.1)?;
                // A retransmission: absorbed before any answer, else the
                // latest response again (the response cache).
                if let (Some(bytes), Some(l)) =
                    (tx.last_response.clone(), self.leg(tx.leg).cloned())
                {
                    let dst = from.reply_destination();
                    // 17.2.1, 17.2.2: the response is retransmitted.
                    self.effects.push_back(Effect::Send {
                        leg: l,
                        bytes,
                        dst,
                        token: None,
                        for_delivery: None,
                        kind: SendKind::Retransmission,
                    });
                }
                return None;
            }
            if let Err((key, hash)) = found {
                self.new_server_tx(key, hash, &req, leg, &from, now);
            }
        }
        Some((Packet::Request(req), leg, from))
    }

    /// The server transaction with this key (id text and method).
    fn find_server(&self, key: &str, method: &Method) -> Option<(u32, u32)> {
        self.find_server_hashed(self.keys.of_transaction(key, method), key, method)
    }

    /// [`Core::find_server`] with the key's hash already computed.
    fn find_server_hashed(&self, hash: u64, key: &str, method: &Method) -> Option<(u32, u32)> {
        let sid = self.server_keys.get(hash)?;
        self.servers
            .get(sid.0, sid.1)
            .filter(|tx| tx.key.is(key, method))
            .map(|_| sid)
    }

    fn receive_ack(&mut self, ack: Request, leg: LegId, from: Source, now: Instant) {
        // The ACK of a non-2xx final: same branch as the INVITE.
        let sid = ack
            .with_server_key(|key, method| self.find_server(key, method))
            .flatten();
        if let Some(sid) = sid {
            let Some(tx) = self.servers.get_mut(sid.0, sid.1) else {
                return;
            };
            if tx.state == ServerState::Completed {
                tx.state = ServerState::Confirmed;
                let reliable = tx.source.proto.is_reliable();
                let rd = tx.response_delivery.take();
                if let Some(rd) = rd {
                    self.finish(rd, DeliveryOutcome::Sent);
                }
                let linger = if reliable {
                    Duration::ZERO
                } else {
                    self.s.timers.t4
                };
                self.arm_server_expire(sid, linger, now);
            }
            self.stats.absorbed_requests += 1;
            return;
        }
        // The ACK of a 2xx: matched by dialog (13.3.1.4).
        let cseq = ack.cseq().map(|c| c.number).unwrap_or(0);
        let key: DialogKey = (
            Rc::from(ack.call_id().unwrap_or("")),
            cseq,
            Rc::from(ack.to_tag().unwrap_or("")),
        );
        if let Some(id) = self.dialogs.remove(&key) {
            self.finish(id, DeliveryOutcome::Sent);
        }
        self.effects
            .push_back(Effect::PassUp(Box::new((Packet::Request(ack), leg, from))));
    }

    pub(crate) fn leg_id(&self, leg: &Leg) -> Option<LegId> {
        self.leg_id_of(leg)
    }
}

/// What a resolution that found destinations but no leg for any of them
/// returns.
pub(crate) fn no_empty_targets(targets: Vec<Target>) -> Result<Vec<Target>, Error> {
    if targets.is_empty() {
        Err(Error::new(
            Errno::EHOSTUNREACH,
            "no leg can send to any resolved destination",
        ))
    } else {
        Ok(targets)
    }
}

/// The seconds of a Retry-After header (RFC 3261 20.33), capped at a day.
fn retry_after(resp: &Response) -> Option<u64> {
    let v = resp.headers().get(HeaderName::RetryAfter)?;
    let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u64>().ok().map(|s| s.min(86_400))
}

#[cfg(test)]
mod size_tests {
    /// A guard on the per-delivery footprint (a million may be pending):
    /// the packet's own struct is 280 bytes of it (72 of them the
    /// remembered top Via, which saves three Via parses per transaction),
    /// and a single target is inline (no heap `Vec` of one).
    #[test]
    fn delivery_stays_small() {
        assert!(
            std::mem::size_of::<super::Delivery>() <= 592,
            "{}",
            std::mem::size_of::<super::Delivery>()
        );
        assert!(std::mem::size_of::<crate::packet::Packet>() <= 280);
        assert_eq!(std::mem::size_of::<super::TimerRef>(), 12);
        // Each effect is moved into and out of the queue: a send's size,
        // not a packet's.
        assert!(
            std::mem::size_of::<super::Effect>() <= 128,
            "{}",
            std::mem::size_of::<super::Effect>()
        );
    }
}
