//! The Dispatcher: deliver, retransmit, cancel, receive, resolve (the
//! Net::SIP::Dispatcher man page, made real).
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use std::time::Duration;
//! use sip_dispatch::dispatcher::{DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions};
//! use sip_dispatch::eventloop::{Eventloop, MioEventloop};
//! use sip_dispatch::leg::{Leg, LegOptions, MemoryNetwork, Faults, Protocol};
//! use sip_dispatch::packet::{Packet, Response};
//!
//! // Two dispatchers on a simulated network, under virtual time.
//! let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new_virtual());
//! let net = MemoryNetwork::new(Faults::default(), 1);
//! let leg = |addr: &str| Leg::memory(&net, Protocol::Udp, addr.parse().unwrap(), LegOptions::default()).unwrap();
//! let uac = Dispatcher::new(vec![leg("10.0.0.1:5060")], Some(lp.clone()), DispatcherOptions::default()).unwrap();
//! let uas = Dispatcher::new(vec![leg("10.0.0.2:5060")], Some(lp.clone()), DispatcherOptions::default()).unwrap();
//! uas.set_receiver(|d: &Dispatcher, p: Packet, _leg, _from: &_| {
//!     if let Packet::Request(req) = p {
//!         let mut ok = Response::for_request(&req, 200, "OK");
//!         ok.set_to_tag("uas1");
//!         d.deliver(ok, DeliverOptions::default()).unwrap();
//!     }
//! });
//! let outcome = Rc::new(RefCell::new(None));
//! let o = outcome.clone();
//! let options = Packet::parse(b"OPTIONS sip:bob@10.0.0.2 SIP/2.0\r\n\
//!     From: <sip:alice@10.0.0.1>;tag=a1\r\nTo: <sip:bob@10.0.0.2>\r\n\
//!     Call-ID: doc-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").unwrap();
//! uac.deliver(options, DeliverOptions::with_callback(move |_, out| *o.borrow_mut() = Some(out))).unwrap();
//! lp.run(Some(Duration::from_secs(1)), &|| outcome.borrow().is_some()).unwrap();
//! assert_eq!(*outcome.borrow(), Some(DeliveryOutcome::Completed(200)));
//! ```

mod arena;
mod client;
mod core;
mod hash_slots;
mod index;
mod lookup;
mod options;
mod prefetch;
pub mod resolve;
mod route;
mod types;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::error::{Errno, Error};
use crate::eventloop::{Eventloop, MioEventloop, TimerCallback, TimerId, When};
use crate::leg::{Leg, LegEvent, ReceiveHook, SendHook, Source};
use crate::packet::{Packet, SipUri};

/// How many idle ticks the wheel's loop timer may fire early rather than be
/// replaced (a replacement allocates its callback).
const WHEEL_TIMER_SLACK: u64 = 4;

use self::core::{Core, Effect};
pub use crate::dns::{DnsAnswer, DnsQuery, DnsRecord, DnsResolver};
pub use options::{DispatcherOptions, Timers};
pub use resolve::ProxySpec;
pub use types::{
    Cancel, DeliverOptions, DeliveryCallback, DeliveryId, DeliveryOutcome, DispatcherStats,
    FailureCallback, LegFilter, LegId, Receiver, Target,
};

struct Inner {
    core: RefCell<Core>,
    lp: Rc<dyn Eventloop>,
    receiver: RefCell<Option<Rc<dyn Receiver>>>,
    resolver: crate::dns::DnsResolver,
    /// Callbacks waiting for the event loop's next turn.
    deferred: RefCell<VecDeque<(DeliveryCallback, DeliveryOutcome)>>,
    flush_armed: Cell<bool>,
    /// The one loop timer for the core's wheel, and the tick it fires at
    /// next. It repeats every millisecond once it fired, so that a wheel
    /// with something due every millisecond (server transactions expiring
    /// under load) keeps one loop timer instead of adding one per tick.
    wheel_timer: Cell<Option<(TimerId, u64)>>,
    /// The one-second `queue_expire` sweep, armed while anything is pending.
    tick_timer: Cell<Option<TimerId>>,
    /// Above zero while an event-loop callback runs (timers, legs):
    /// delivery callbacks may run then, unless an API call is in progress.
    in_loop: Cell<u32>,
    in_api: Cell<u32>,
    shut_down: Cell<bool>,
    /// Hooks given to every leg, present and future.
    hooks: RefCell<(Option<ReceiveHook>, Option<SendHook>)>,
}

/// The dispatcher. The value [`Dispatcher::new`] returns owns it: dropping
/// it shuts the dispatcher down. Callbacks get a `&Dispatcher` to call back
/// in; closures that outlive a call keep a [`WeakDispatcher`].
pub struct Dispatcher {
    inner: Rc<Inner>,
    owner: bool,
}

/// A handle that does not keep the dispatcher alive.
#[derive(Clone)]
pub struct WeakDispatcher(Weak<Inner>);

impl WeakDispatcher {
    /// The dispatcher, if it still exists.
    pub fn upgrade(&self) -> Option<Dispatcher> {
        self.0.upgrade().map(|inner| Dispatcher {
            inner,
            owner: false,
        })
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Marks an API call: delivery callbacks wait for the event loop.
struct ApiGuard<'a>(&'a Inner);

impl<'a> ApiGuard<'a> {
    fn new(inner: &'a Inner) -> ApiGuard<'a> {
        inner.in_api.set(inner.in_api.get() + 1);
        ApiGuard(inner)
    }
}

impl Drop for ApiGuard<'_> {
    fn drop(&mut self) {
        self.0.in_api.set(self.0.in_api.get() - 1);
    }
}

/// Marks an event-loop callback.
struct LoopGuard<'a>(&'a Inner);

impl<'a> LoopGuard<'a> {
    fn new(inner: &'a Inner) -> LoopGuard<'a> {
        inner.in_loop.set(inner.in_loop.get() + 1);
        LoopGuard(inner)
    }
}

impl Drop for LoopGuard<'_> {
    fn drop(&mut self) {
        self.0.in_loop.set(self.0.in_loop.get() - 1);
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: still unique per process and time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32;
    }
    u64::from_le_bytes(b)
}

impl Dispatcher {
    /// A dispatcher with these legs, on this event loop (a new
    /// [`MioEventloop`] when `None`), with these options.
    pub fn new(
        legs: Vec<Leg>,
        eventloop: Option<Rc<dyn Eventloop>>,
        options: DispatcherOptions,
    ) -> io::Result<Dispatcher> {
        let lp: Rc<dyn Eventloop> = match eventloop {
            Some(lp) => lp,
            None => Rc::new(MioEventloop::new()?),
        };
        let dns_config = options.dns.clone();
        let settings: options::Settings = options.into();
        // The hook when one is given; else the built-in stub resolver on
        // this loop (with /etc/resolv.conf and /etc/hosts by default).
        let resolver = match settings.dns_resolver.clone() {
            Some(hook) => hook,
            None => {
                let config = dns_config.unwrap_or_else(crate::dns::DnsConfig::system);
                crate::dns::StubResolver::new(lp.clone(), config).hook()
            }
        };
        let inner = Rc::new(Inner {
            core: RefCell::new(Core::new(settings, lp.now(), random_seed())),
            lp,
            receiver: RefCell::new(None),
            resolver,
            deferred: RefCell::new(VecDeque::new()),
            flush_armed: Cell::new(false),
            wheel_timer: Cell::new(None),
            tick_timer: Cell::new(None),
            in_loop: Cell::new(0),
            in_api: Cell::new(0),
            shut_down: Cell::new(false),
            hooks: RefCell::new((None, None)),
        });
        let d = Dispatcher { inner, owner: true };
        for leg in legs {
            d.add_leg(leg)?;
        }
        Ok(d)
    }

    /// A handle that does not keep the dispatcher alive (for closures).
    pub fn downgrade(&self) -> WeakDispatcher {
        WeakDispatcher(Rc::downgrade(&self.inner))
    }

    /// The event loop.
    pub fn eventloop(&self) -> Rc<dyn Eventloop> {
        self.inner.lp.clone()
    }

    /// Runs the event loop (see [`Eventloop::run`]).
    pub fn run(&self, timeout: Option<Duration>, stop: &dyn Fn() -> bool) -> io::Result<()> {
        self.inner.lp.run(timeout, stop)
    }

    /// Sets the receiver of incoming packets (`None` drops them).
    pub fn set_receiver(&self, receiver: impl Receiver + 'static) {
        *self.inner.receiver.borrow_mut() = Some(Rc::new(receiver));
    }

    /// Removes the receiver: incoming packets are dropped.
    pub fn clear_receiver(&self) {
        *self.inner.receiver.borrow_mut() = None;
    }

    /// Adds a leg: it is attached to the event loop and what it receives
    /// comes here.
    pub fn add_leg(&self, leg: Leg) -> io::Result<LegId> {
        let (index, generation) = self.inner.core.borrow_mut().legs.insert(leg.clone());
        let id = LegId { index, generation };
        let weak = Rc::downgrade(&self.inner);
        let sink = Rc::new(move |_: &Leg, ev: LegEvent| {
            if let Some(inner) = weak.upgrade() {
                Dispatcher {
                    inner,
                    owner: false,
                }
                .on_leg_event(id, ev);
            }
        });
        if let Err(e) = leg.attach(self.inner.lp.clone(), sink) {
            self.inner.core.borrow_mut().legs.remove(index, generation);
            return Err(e);
        }
        let (receive, send) = self.inner.hooks.borrow().clone();
        if receive.is_some() {
            leg.set_receive_hook(receive);
        }
        if send.is_some() {
            leg.set_send_hook(send);
        }
        Ok(id)
    }

    /// Sets (or clears) a hook that sees every packet any leg of this
    /// dispatcher receives, now and for legs added later (trace, HEP
    /// export, ACLs): return false to drop the packet. It replaces the
    /// legs' own receive hooks.
    pub fn set_receive_hook(&self, hook: Option<ReceiveHook>) {
        self.inner.hooks.borrow_mut().0 = hook.clone();
        for (_, leg) in self.get_legs(&LegFilter::default()) {
            leg.set_receive_hook(hook.clone());
        }
    }

    /// Sets (or clears) a hook that sees every message any leg of this
    /// dispatcher sends, now and for legs added later: return false to
    /// drop it, as if lost on the network (the demo loses a packet this
    /// way). It replaces the legs' own send hooks.
    pub fn set_send_hook(&self, hook: Option<SendHook>) {
        self.inner.hooks.borrow_mut().1 = hook.clone();
        for (_, leg) in self.get_legs(&LegFilter::default()) {
            leg.set_send_hook(hook.clone());
        }
    }

    /// Removes a leg: it stops receiving, and the deliveries that use it
    /// fail with ENETDOWN. Returns false for an unknown id.
    pub fn remove_leg(&self, id: LegId) -> bool {
        let _api = ApiGuard::new(&self.inner);
        let leg = {
            let mut core = self.inner.core.borrow_mut();
            let Some(leg) = core.legs.remove(id.index, id.generation) else {
                return false;
            };
            core.fail_leg(id);
            leg
        };
        leg.detach();
        self.pump();
        true
    }

    /// The legs matching a filter, in the order they were added.
    pub fn get_legs(&self, filter: &LegFilter) -> Vec<(LegId, Leg)> {
        let legs: Vec<(LegId, Leg)> = self
            .inner
            .core
            .borrow()
            .legs
            .iter()
            .map(|(index, generation, leg)| (LegId { index, generation }, leg.clone()))
            .collect();
        legs.into_iter()
            .filter(|(_, leg)| filter.matches(leg))
            .collect()
    }

    /// One leg by id.
    pub fn leg(&self, id: LegId) -> Option<Leg> {
        self.inner.core.borrow().leg(id).cloned()
    }

    /// The id of a leg of this dispatcher.
    pub fn leg_id(&self, leg: &Leg) -> Option<LegId> {
        self.inner.core.borrow().leg_id(leg)
    }

    /// Adds a timer on the event loop (the man page's `add_timer`).
    pub fn add_timer(
        &self,
        when: When,
        repeat: Option<Duration>,
        callback: TimerCallback,
    ) -> TimerId {
        self.inner.lp.add_timer(when, repeat, callback)
    }

    /// Cancels a timer added with [`Dispatcher::add_timer`].
    pub fn cancel_timer(&self, id: TimerId) -> bool {
        self.inner.lp.cancel_timer(id)
    }

    /// Delivers a packet: resolves where it goes (unless `leg` and
    /// `dst_addr` say), sends it, and retransmits it as RFC 3261 says. The
    /// outcome comes to the callback once, from the event loop. Fails at
    /// once only when the queue is full (ENOBUFS) or the dispatcher is shut
    /// down (ECANCELED).
    ///
    /// A response that is sent once (not a retransmitted INVITE final),
    /// without callback, failure callback, id or Call-ID label, to a UDP
    /// destination, is sent at once without a pending delivery (how a UAS
    /// or a proxy answers most requests): it takes no room in the queue,
    /// its id names no pending delivery, and `cancel_delivery` of it
    /// returns false. So is a request sent once (an ACK, or
    /// `do_retransmits` off) with neither callback nor label, over UDP to
    /// a `leg` and `dst_addr` given (a stateless proxy's forward).
    pub fn deliver(
        &self,
        packet: impl Into<Packet>,
        options: DeliverOptions,
    ) -> Result<DeliveryId, Error> {
        if self.inner.shut_down.get() {
            return Err(Error::new(Errno::ECANCELED, "the dispatcher is shut down"));
        }
        let _api = ApiGuard::new(&self.inner);
        let now = self.inner.lp.now();
        let id = self
            .inner
            .core
            .borrow_mut()
            .deliver(packet.into(), options, now)?;
        self.pump();
        Ok(id)
    }

    /// Resolves a URI to destinations and legs, in the order to try
    /// (domain2proxy, outgoing proxy, maddr, IP literal, DNS).
    /// `allowed_proto` filters and orders the transports; `allowed_legs`
    /// restricts the legs. The callback runs from the event loop, also when
    /// no lookup was needed (see [`Dispatcher::resolve_uri_now`] for that
    /// case without the trip through the loop).
    pub fn resolve_uri(
        &self,
        uri: &SipUri,
        allowed_proto: &[crate::leg::Protocol],
        allowed_legs: Option<&[LegId]>,
        callback: impl FnOnce(&Dispatcher, Result<Vec<Target>, Error>) + 'static,
    ) {
        let plan = match self.plan(uri, allowed_proto) {
            Ok(plan) => plan,
            Err(e) => return self.defer_call(Box::new(move |d: &Dispatcher| callback(d, Err(e)))),
        };
        if let Some(ip) = plan.host.ip() {
            let result = self
                .inner
                .core
                .borrow()
                .direct_targets(&plan, ip, allowed_legs);
            return self.defer_call(Box::new(move |d: &Dispatcher| callback(d, result)));
        }
        let weak = self.downgrade();
        let allowed: Option<Vec<LegId>> = allowed_legs.map(<[LegId]>::to_vec);
        let done = move |result: Result<Vec<resolve::Resolved>, Error>| {
            let Some(d) = weak.upgrade() else { return };
            let result = result.and_then(|resolved| {
                let core = d.inner.core.borrow();
                let targets: Vec<Target> = core
                    .targets_for(&resolved, None)
                    .into_iter()
                    .filter(|t| allowed.as_ref().is_none_or(|a| a.contains(&t.leg)))
                    .collect();
                core::no_empty_targets(targets)
            });
            d.defer_call(Box::new(move |d: &Dispatcher| callback(d, result)));
        };
        self.start_lookup(plan, Box::new(done));
    }

    /// Starts the RFC 3263 lookups of `plan` with this dispatcher's
    /// resolver, address preference and a fresh seed.
    fn start_lookup(&self, plan: resolve::Plan, done: lookup::LookupDone) {
        let (seed, prefer_ipv6) = {
            let mut core = self.inner.core.borrow_mut();
            (core.seed(), core.s.prefer_ipv6)
        };
        lookup::Lookup::start(plan, self.inner.resolver.clone(), prefer_ipv6, seed, done);
    }

    /// Resolves a URI at once when no DNS lookup is needed: an IP literal
    /// (or `maddr`), or a `domain2proxy`/`outgoing_proxy` entry given as an
    /// IP address. The order, filters and errors are those of
    /// [`Dispatcher::resolve_uri`]. `None` when a lookup is needed: then
    /// call `resolve_uri`. A stateless proxy forwards this way without a
    /// trip through the event loop.
    ///
    /// ```
    /// use sip_dispatch::dispatcher::{Dispatcher, DispatcherOptions};
    /// use sip_dispatch::leg::{Leg, LegOptions};
    /// use sip_dispatch::packet::SipUri;
    ///
    /// let leg = Leg::bind("udp:127.0.0.1:0".parse().unwrap(), LegOptions::default()).unwrap();
    /// let d = Dispatcher::new(vec![leg], None, DispatcherOptions::default()).unwrap();
    /// let leg = d.get_legs(&Default::default())[0].0;
    /// let ip: SipUri = "sip:bob@127.0.0.1:5070".parse().unwrap();
    /// let targets = d.resolve_uri_now(&ip, &[], None).unwrap().unwrap();
    /// assert_eq!((targets[0].leg, targets[0].dst.addr.port()), (leg, 5070));
    /// let name: SipUri = "sip:bob@example.com".parse().unwrap();
    /// assert!(d.resolve_uri_now(&name, &[], None).is_none());
    /// ```
    pub fn resolve_uri_now(
        &self,
        uri: &SipUri,
        allowed_proto: &[crate::leg::Protocol],
        allowed_legs: Option<&[LegId]>,
    ) -> Option<Result<Vec<Target>, Error>> {
        let plan = match self.plan(uri, allowed_proto) {
            Ok(plan) => plan,
            Err(e) => return Some(Err(e)),
        };
        let ip = plan.host.ip()?;
        Some(
            self.inner
                .core
                .borrow()
                .direct_targets(&plan, ip, allowed_legs),
        )
    }

    /// RFC 3263's plan for `uri`: what to look up, over which transports.
    fn plan(
        &self,
        uri: &SipUri,
        allowed_proto: &[crate::leg::Protocol],
    ) -> Result<resolve::Plan, Error> {
        let core = self.inner.core.borrow();
        resolve::plan(
            uri,
            &core.s.domain2proxy,
            core.s.outgoing_proxy.as_ref(),
            allowed_proto,
            &core.available_protocols(),
        )
    }

    /// Cancels deliveries: by id, by Call-ID, or one entry. Returns whether
    /// something was cancelled; a cancelled delivery gets no callback.
    pub fn cancel_delivery(&self, which: Cancel) -> bool {
        let _api = ApiGuard::new(&self.inner);
        let any = self.inner.core.borrow_mut().cancel(&which);
        self.pump();
        any
    }

    /// Handles a packet as if a leg had received it (the man page's
    /// `receive`): requests are matched to server transactions (absorbed
    /// or answered from the cache) and otherwise passed to the receiver;
    /// responses drive their client transaction.
    pub fn receive(&self, packet: Packet, leg: LegId, from: Source) {
        let now = self.inner.lp.now();
        let up = self.inner.core.borrow_mut().receive(packet, leg, from, now);
        self.pump_then_pass_up(up);
    }

    /// Runs every timer due at `now` (retransmissions, timeouts, cache
    /// expiry) and returns when to call it again: a time never later than
    /// the earliest pending expiry (exact when that expiry is within the
    /// timer wheel's first level, 64 ms; else the start of the wheel slot
    /// that holds it), `None` when nothing is pending. O(1): it does not
    /// depend on how many deliveries are pending. The dispatcher runs its
    /// timers itself, each on time; calling this is only needed when
    /// driving time by hand.
    pub fn queue_expire(&self, now: Instant) -> Option<Instant> {
        self.inner.core.borrow_mut().expire(now);
        self.pump();
        let core = self.inner.core.borrow();
        core.next_expiration().map(|t| core.instant_of(t))
    }

    /// The sweep behind the one-second timer: due timers only.
    fn sweep(&self) {
        let now = self.inner.lp.now();
        self.inner.core.borrow_mut().expire(now);
        self.pump();
    }

    /// Counters and sizes.
    pub fn stats(&self) -> DispatcherStats {
        self.inner.core.borrow().stats()
    }

    /// Heap bytes of the dispatcher's tables (slot tables, timer wheel and
    /// the server transactions' expiry queue; not the packets or hash
    /// indexes).
    pub fn table_bytes(&self) -> usize {
        self.inner.core.borrow().memory_bytes()
    }

    /// Shuts down: every pending delivery fails with ECANCELED (callbacks
    /// run now), legs are detached, timers cancelled. Later `deliver`s fail.
    pub fn shutdown(&self) {
        if self.inner.shut_down.replace(true) {
            return;
        }
        let legs: Vec<Leg> = {
            let mut core = self.inner.core.borrow_mut();
            core.fail_all(Error::new(Errno::ECANCELED, "dispatcher shut down"));
            core.legs.iter().map(|(_, _, l)| l.clone()).collect()
        };
        // Callbacks run now: the loop may never turn again.
        let _loop = LoopGuard::new(&self.inner);
        self.pump();
        let deferred: Vec<_> = self.inner.deferred.borrow_mut().drain(..).collect();
        for (cb, outcome) in deferred {
            cb(self, outcome);
        }
        for leg in legs {
            leg.detach();
        }
        if let Some((t, _)) = self.inner.wheel_timer.take() {
            self.inner.lp.cancel_timer(t);
        }
        if let Some(t) = self.inner.tick_timer.take() {
            self.inner.lp.cancel_timer(t);
        }
    }

    // ---- from the event loop ----

    fn on_leg_event(&self, leg: LegId, ev: LegEvent) {
        let _loop = LoopGuard::new(&self.inner);
        let now = self.inner.lp.now();
        let up = {
            let mut core = self.inner.core.borrow_mut();
            match ev {
                LegEvent::Packet(p, from) => core.receive(p, leg, from, now),
                LegEvent::Outcome(token, result) => {
                    core.on_send_outcome(token, result, now);
                    None
                }
                LegEvent::Unreachable(dst, e) => {
                    core.on_unreachable(&dst, e, now);
                    None
                }
                LegEvent::ConnectionClosed(conn, _) => {
                    core.on_connection_closed(leg, conn);
                    None
                }
            }
        };
        self.pump_then_pass_up(up);
    }

    /// Carries out what receiving queued, then gives the packet (if it
    /// goes up) to the receiver, and carries out what that queued.
    fn pump_then_pass_up(&self, up: Option<core::PassUp>) {
        self.pump();
        if let Some((packet, leg, from)) = up {
            self.pass_up(packet, leg, &from);
            self.pump();
        }
    }

    /// Gives a received packet to the receiver.
    fn pass_up(&self, packet: Packet, leg: LegId, from: &Source) {
        let receiver = self.inner.receiver.borrow().clone();
        match receiver {
            Some(r) => r.receive(self, packet, leg, from),
            None => log::debug!("no receiver: dropping a packet from {from}"),
        }
    }

    fn on_wheel_timer(&self) {
        let _loop = LoopGuard::new(&self.inner);
        let now = self.inner.lp.now();
        // The timer repeats on the millisecond grid: it fires next one tick
        // from now (missed periods are skipped, see `Eventloop::add_timer`).
        let next_fire = self.inner.core.borrow().now_tick(now).saturating_add(1);
        if let Some((t, _)) = self.inner.wheel_timer.get() {
            self.inner.wheel_timer.set(Some((t, next_fire)));
        }
        self.inner.core.borrow_mut().expire(now);
        self.pump();
    }

    fn flush_deferred(&self) {
        let _loop = LoopGuard::new(&self.inner);
        self.inner.flush_armed.set(false);
        let items: Vec<_> = self.inner.deferred.borrow_mut().drain(..).collect();
        for (cb, outcome) in items {
            cb(self, outcome);
        }
        self.pump();
    }

    /// Runs `f` on the event loop's next turn.
    fn defer_call(&self, f: Box<dyn FnOnce(&Dispatcher)>) {
        let weak = self.downgrade();
        self.inner.lp.add_timer(
            When::In(Duration::ZERO),
            None,
            Box::new({
                let mut f = Some(f);
                move || {
                    if let (Some(d), Some(f)) = (weak.upgrade(), f.take()) {
                        let _loop = LoopGuard::new(&d.inner);
                        f(&d);
                    }
                }
            }),
        );
    }

    /// Carries out what the core queued, outside its borrow.
    fn pump(&self) {
        loop {
            let effect = self.inner.core.borrow_mut().effects.pop_front();
            let Some(effect) = effect else { break };
            match effect {
                Effect::Send {
                    leg,
                    bytes,
                    dst,
                    token,
                    for_delivery,
                    kind,
                } => {
                    let status = leg.send_as(bytes, &dst, token, kind);
                    if let (Some(id), Some(token)) = (for_delivery, token) {
                        let now = self.inner.lp.now();
                        self.inner
                            .core
                            .borrow_mut()
                            .on_send_status(id, token, status, now);
                    } else if let crate::leg::SendStatus::Failed(e) = status {
                        log::debug!("{leg}: send to {dst} failed: {e}");
                    }
                }
                Effect::Callback(cb, outcome) => {
                    if self.inner.in_loop.get() > 0 && self.inner.in_api.get() == 0 {
                        cb(self, outcome);
                    } else {
                        self.inner.deferred.borrow_mut().push_back((cb, outcome));
                        self.arm_flush();
                    }
                }
                Effect::PassUp(up) => {
                    let (packet, leg, from) = *up;
                    self.pass_up(packet, leg, &from)
                }
                Effect::Resolve(id, plan) => {
                    let weak = self.downgrade();
                    let done = move |result| {
                        if let Some(d) = weak.upgrade() {
                            let now = d.inner.lp.now();
                            d.inner.core.borrow_mut().on_resolved(id, result, now);
                            d.pump();
                        }
                    };
                    self.start_lookup(plan, Box::new(done));
                }
            }
        }
        self.rearm();
    }

    fn arm_flush(&self) {
        if self.inner.flush_armed.replace(true) {
            return;
        }
        let weak = self.downgrade();
        self.inner.lp.add_timer(
            When::In(Duration::ZERO),
            None,
            Box::new(move || {
                if let Some(d) = weak.upgrade() {
                    d.flush_deferred();
                }
            }),
        );
    }

    /// Keeps one loop timer at the wheel's next expiration (or at most
    /// [`WHEEL_TIMER_SLACK`] ticks before it), and the
    /// one-second sweep while anything is pending.
    fn rearm(&self) {
        if self.inner.shut_down.get() {
            return;
        }
        let (next, pending) = {
            let core = self.inner.core.borrow();
            (
                core.next_expiration().map(|t| (t, core.instant_of(t))),
                core.pending(),
            )
        };
        let armed = self.inner.wheel_timer.get();
        match (next, armed) {
            // Fires in time, or a few idle milliseconds early (each of
            // those firings finds nothing due and costs next to nothing).
            (Some((tick, _)), Some((_, armed_tick)))
                if tick >= armed_tick && tick - armed_tick <= WHEEL_TIMER_SLACK => {}
            (next, armed) => {
                if let Some((t, _)) = armed {
                    self.inner.lp.cancel_timer(t);
                    self.inner.wheel_timer.set(None);
                }
                if let Some((tick, at)) = next {
                    let weak = self.downgrade();
                    let t = self.inner.lp.add_timer(
                        When::Deadline(at),
                        Some(Duration::from_millis(1)),
                        Box::new(move || {
                            if let Some(d) = weak.upgrade() {
                                d.on_wheel_timer();
                            }
                        }),
                    );
                    self.inner.wheel_timer.set(Some((t, tick)));
                }
            }
        }
        match (pending > 0, self.inner.tick_timer.get()) {
            (true, None) => {
                let weak = self.downgrade();
                let t = self.inner.lp.add_timer(
                    When::In(Duration::from_secs(1)),
                    Some(Duration::from_secs(1)),
                    Box::new(move || {
                        if let Some(d) = weak.upgrade() {
                            let _loop = LoopGuard::new(&d.inner);
                            d.sweep();
                        }
                    }),
                );
                self.inner.tick_timer.set(Some(t));
            }
            (false, Some(t)) => {
                self.inner.lp.cancel_timer(t);
                self.inner.tick_timer.set(None);
            }
            _ => {}
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        if self.owner {
            self.shutdown();
        }
    }
}
