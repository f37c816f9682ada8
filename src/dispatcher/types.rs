//! The dispatcher's public value types: ids, outcomes, delivery options,
//! filters, the receiver trait.

use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;

use crate::error::Error;
use crate::leg::{Destination, Leg, Protocol, Source};
use crate::packet::Packet;

use super::Dispatcher;

/// A leg added to a dispatcher. Carries a generation: the id of a removed
/// leg never names a leg added later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// A delivery, as returned by [`Dispatcher::deliver`]. Carries a
/// generation, like [`LegId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "delivery#{}.{}", self.index, self.generation)
    }
}

/// How a delivery ended. Every delivery ends in exactly one outcome,
/// reported once to its callback (none after a successful
/// [`Dispatcher::cancel_delivery`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A request's transaction ended with this final status.
    Completed(u16),
    /// Sent: an ACK, a response, or a delivery without retransmissions
    /// (the kernel took the datagram, or the stream drained); for a 2xx to
    /// INVITE, its ACK arrived.
    Sent,
    /// It failed: ETIMEDOUT, EHOSTUNREACH, ECONNREFUSED, ECONNRESET,
    /// ENETDOWN (leg removed), ECANCELED (shutdown) ...
    Failed(Error),
}

/// Called once with a delivery's outcome, from the event loop.
pub type DeliveryCallback = Box<dyn FnOnce(&Dispatcher, DeliveryOutcome)>;

/// Called, from the event loop, when a delivery fails: with the error and
/// the packet as it was given to [`Dispatcher::deliver`] (see
/// [`DeliverOptions::on_failure`]).
pub type FailureCallback = Box<dyn FnOnce(&Dispatcher, Error, Packet)>;

/// Hints for [`Dispatcher::deliver`] (the man page's `%ARGS`).
#[derive(Default)]
pub struct DeliverOptions {
    /// Id for [`Cancel::Id`]; default: the packet's `tid()` (Call-ID and
    /// CSeq number, so a request, its CANCEL and ACK share it).
    pub id: Option<String>,
    /// Call-ID for [`Cancel::CallId`]; default: the packet's.
    pub callid: Option<String>,
    /// Called once with the outcome (but see `on_failure`).
    pub callback: Option<DeliveryCallback>,
    /// Called instead of `callback` when the delivery fails
    /// ([`DeliveryOutcome::Failed`]), with the error and the packet given
    /// to `deliver` (a request without the Via the leg added), so that
    /// the caller need not keep a copy to answer with: a stateless proxy's
    /// 502, as PJSIP's send callback gets its message back. The packet is
    /// kept parsed until the outcome. Not called after a successful
    /// [`Dispatcher::cancel_delivery`], nor for the other outcomes (which
    /// go to `callback`, if any). A closure that captures nothing costs
    /// no allocation.
    ///
    /// ```
    /// use sip_dispatch::dispatcher::DeliverOptions;
    /// let options = DeliverOptions {
    ///     on_failure: Some(Box::new(|_dispatcher, error, packet| {
    ///         eprintln!("{} not delivered: {error}", packet.callid());
    ///     })),
    ///     ..DeliverOptions::default()
    /// };
    /// # drop(options);
    /// ```
    pub on_failure: Option<FailureCallback>,
    /// The leg to send on.
    pub leg: Option<LegId>,
    /// Where to send (with `leg`, no resolution at all).
    pub dst_addr: Option<Destination>,
    /// Overrides the dispatcher's `do_retransmits` for this delivery.
    pub do_retransmits: Option<bool>,
    /// The Via branch to use (a proxy's derived branch; a CANCEL or a
    /// non-2xx ACK reusing the INVITE's), e.g. `Some("z9hG4bK...".into())`;
    /// shared, not copied, by the delivery. Default: a new one.
    pub branch: Option<Rc<str>>,
    /// Transports allowed for this delivery, in order of preference.
    pub allowed_proto: Vec<Protocol>,
}

impl DeliverOptions {
    /// Options with a callback.
    pub fn with_callback(
        callback: impl FnOnce(&Dispatcher, DeliveryOutcome) + 'static,
    ) -> DeliverOptions {
        DeliverOptions {
            callback: Some(Box::new(callback)),
            ..DeliverOptions::default()
        }
    }
}

impl fmt::Debug for DeliverOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliverOptions")
            .field("id", &self.id)
            .field("callid", &self.callid)
            .field("callback", &self.callback.is_some())
            .field("on_failure", &self.on_failure.is_some())
            .field("leg", &self.leg)
            .field("dst_addr", &self.dst_addr)
            .field("do_retransmits", &self.do_retransmits)
            .field("branch", &self.branch)
            .field("allowed_proto", &self.allowed_proto)
            .finish()
    }
}

/// What [`Dispatcher::cancel_delivery`] cancels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// Every delivery with this id (see [`DeliverOptions::id`]).
    Id(String),
    /// Every delivery of this call.
    CallId(String),
    /// This one delivery.
    Entry(DeliveryId),
}

/// A test on a leg, for [`LegFilter::predicate`].
pub type LegPredicate = Box<dyn Fn(&Leg) -> bool>;

/// Which legs [`Dispatcher::get_legs`] returns: all conditions given must
/// hold.
#[derive(Default)]
pub struct LegFilter {
    /// The leg's local address.
    pub addr: Option<IpAddr>,
    /// The leg's local port.
    pub port: Option<u16>,
    /// The leg's protocol.
    pub proto: Option<Protocol>,
    /// Any other test.
    pub predicate: Option<LegPredicate>,
}

impl LegFilter {
    pub(crate) fn matches(&self, leg: &Leg) -> bool {
        let local = leg.local_addr();
        self.addr.is_none_or(|a| a == local.ip())
            && self.port.is_none_or(|p| p == local.port())
            && self.proto.is_none_or(|p| p == leg.protocol())
            && self.predicate.as_ref().is_none_or(|f| f(leg))
    }
}

/// A destination and the leg that reaches it: what
/// [`Dispatcher::resolve_uri`] returns, in the order to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The leg.
    pub leg: LegId,
    /// The destination.
    pub dst: Destination,
}

/// Gets every packet the dispatcher does not handle itself: new requests,
/// responses (each once; 2xx to INVITE also when retransmitted), ACKs.
pub trait Receiver {
    /// A packet arrived on `leg` from `from`.
    fn receive(&self, dispatcher: &Dispatcher, packet: Packet, leg: LegId, from: &Source);
}

impl<F: Fn(&Dispatcher, Packet, LegId, &Source)> Receiver for F {
    fn receive(&self, dispatcher: &Dispatcher, packet: Packet, leg: LegId, from: &Source) {
        self(dispatcher, packet, leg, from)
    }
}

/// Counters and sizes, for monitoring and leak checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Deliveries not yet finished.
    pub pending_deliveries: usize,
    /// Server transactions remembered (the response cache).
    pub server_transactions: usize,
    /// Pending timers: on the dispatcher's wheel, and the expiries of
    /// server transactions (queued in the order they are due).
    pub timers: usize,
    /// Client transaction keys indexed.
    pub client_keys: usize,
    /// Ids and Call-IDs indexed.
    pub id_keys: usize,
    /// Retransmissions sent (requests and responses).
    pub retransmissions: u64,
    /// Retransmitted requests absorbed or answered from the cache.
    pub absorbed_requests: u64,
    /// Requests answered with 400/505 because they failed the checks.
    pub rejected_requests: u64,
    /// Responses that matched no client transaction (passed up).
    pub stray_responses: u64,
}
