//! A stateless proxy (RFC 3261 16.11) as a [`Receiver`]: set it as a
//! dispatcher's receiver and the dispatcher forwards.
//!
//! What it does to a request, in order:
//! - 416 for a Request-URI scheme other than sip/sips with no Route to
//!   follow, 483 Too Many Hops for Max-Forwards 0 (16.3 steps 2 and 3),
//!   420 for a Proxy-Require it does not support (step 5); an ACK is never
//!   answered, only dropped;
//! - Route processing (16.4): a Request-URI that is one of its own
//!   Record-Route entries (a strict router upstream) is replaced by the
//!   last Route; Route entries naming the proxy are removed from the top
//!   (both of them after a double Record-Route);
//! - loop detection (16.3 step 4): a Via with the proxy's sent-by whose
//!   branch is the one the proxy computes for the request now means the
//!   request came back unchanged: 482 Loop Detected. A spiral (Request-URI
//!   or Route changed in between) gets another branch and passes;
//! - the branch (16.11, 16.6 step 8): derived from the request, so that
//!   retransmissions, the CANCEL of an INVITE and the ACK of a non-2xx take
//!   the INVITE's branch (see `branch.rs`);
//! - a strict next hop (a top Route without `lr`, 16.6 step 6) gets the
//!   Request-URI moved to the end of the Route set and the Route in its
//!   place;
//! - Max-Forwards decremented (70 when absent); with `record_route` a
//!   Record-Route naming the outgoing leg, and, when the request leaves on
//!   another leg than it came in on, one for the incoming leg below it
//!   (RFC 5658 double Record-Route);
//! - the next hop is the top Route, else the Request-URI, resolved by the
//!   dispatcher; the first target is used. If nothing is found, or a
//!   connection to it fails (TCP, TLS): 502 Bad Gateway with the errno in
//!   the reason phrase. Over UDP the datagram is sent at once, without a
//!   delivery record; a send the kernel refuses is counted and logged by
//!   the leg, and the client retransmits as after any loss.
//!
//! Responses go back to the next Via after the proxy's own is removed. The
//! dispatcher must run without retransmissions and server transactions:
//! [`StatelessProxy::dispatcher_options`].
//!
//! ```
//! use std::rc::Rc;
//! use sip_dispatch::dispatcher::Dispatcher;
//! use sip_dispatch::eventloop::{Eventloop, MioEventloop};
//! use sip_dispatch::proxy::StatelessProxy;
//! let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new_virtual());
//! let d = Dispatcher::new(vec![], Some(lp), StatelessProxy::dispatcher_options(Default::default())).unwrap();
//! d.set_receiver(StatelessProxy::new(true));
//! ```

mod branch;

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use crate::dispatcher::{
    DeliverOptions, Dispatcher, DispatcherOptions, FailureCallback, LegFilter, LegId, Receiver,
    Target,
};
use crate::leg::{Leg, Protocol, Source};
use crate::packet::{HeaderName, Method, NameAddr, Packet, Request, Response, SipUri, Uri, Via};

use branch::{derive_branch, derived_tag};

/// Proxy-Require option tags this proxy supports (none).
const SUPPORTED: &[&str] = &[];

/// A stateless proxy. Cheap to clone; set it as the receiver of a
/// dispatcher created with [`StatelessProxy::dispatcher_options`].
#[derive(Clone)]
pub struct StatelessProxy {
    inner: Rc<Inner>,
}

impl StatelessProxy {
    /// A proxy; with `record_route` it stays in the path of dialogs.
    pub fn new(record_route: bool) -> StatelessProxy {
        StatelessProxy {
            inner: Rc::new(Inner {
                legs: RefCell::new(Vec::new()),
                record_route,
            }),
        }
    }

    /// What a stateless proxy's dispatcher needs: no retransmissions of its
    /// own and no server transactions (retransmissions and every response
    /// are forwarded), on top of `base` (routes, outgoing proxy, DNS).
    pub fn dispatcher_options(base: DispatcherOptions) -> DispatcherOptions {
        DispatcherOptions {
            do_retransmits: Some(false),
            server_transactions: Some(false),
            ..base
        }
    }
}

impl Receiver for StatelessProxy {
    fn receive(&self, d: &Dispatcher, packet: Packet, leg: LegId, from: &Source) {
        match packet {
            Packet::Request(req) => on_request(d, &self.inner, req, leg, from),
            Packet::Response(resp) => on_response(d, resp, from),
        }
    }
}

struct Inner {
    /// The dispatcher's legs, refreshed when an unknown one shows up.
    legs: RefCell<Vec<(LegId, Leg)>>,
    record_route: bool,
}

impl Inner {
    /// Whether `leg` is reached at this host: its address (for a wildcard
    /// leg, any local address it sends from), or its configured Via name.
    fn host_is_leg(leg: &Leg, host: &str, ip: Option<IpAddr>) -> bool {
        if let Some(name) = &leg.options().via_host {
            if host.eq_ignore_ascii_case(name) {
                return true;
            }
        }
        match ip {
            Some(ip) => {
                let local = leg.local_addr().ip();
                ip == local || (leg.is_wildcard() && leg.local_addr_for(ip).ip() == ip)
            }
            None => false,
        }
    }

    /// Whether a Via's sent-by (and transport) is one of this proxy's legs.
    fn via_is_mine(&self, via: &Via<'_>) -> bool {
        let Some(proto) = Protocol::parse(via.transport()) else {
            return false;
        };
        let port = via.port().unwrap_or(proto.default_port());
        self.legs.borrow().iter().any(|(_, leg)| {
            leg.protocol() == proto
                && leg.local_addr().port() == port
                && Inner::host_is_leg(leg, via.host(), via.ip())
        })
    }

    /// Whether a URI names one of this proxy's legs: host and port, and
    /// the transport when the URI names one.
    fn uri_is_mine(&self, uri: &SipUri) -> bool {
        let proto = if uri.is_secure() {
            Some(Protocol::Tls)
        } else {
            uri.transport().and_then(Protocol::parse)
        };
        let port = uri
            .port()
            .unwrap_or(proto.unwrap_or(Protocol::Udp).default_port());
        self.legs.borrow().iter().any(|(_, leg)| {
            proto.is_none_or(|p| p == leg.protocol())
                && leg.local_addr().port() == port
                && Inner::host_is_leg(leg, uri.host_str(), uri.ip())
        })
    }

    fn route_is_mine(&self, route: &str) -> bool {
        route_uri(route).is_some_and(|u| self.uri_is_mine(&u))
    }

    /// RFC 3261 16.4: undoes a strict router upstream and removes the
    /// Route entries that name this proxy.
    fn preprocess_routes(&self, req: &mut Request) {
        let mut routes = route_values(req);
        let mut changed = false;
        // A strict router put our Record-Route URI into the Request-URI
        // (ours have no user part and carry `lr`): the real Request-URI is
        // the last Route.
        let strict_upstream = req
            .uri()
            .as_sip()
            .is_some_and(|u| u.user().is_none() && u.is_loose_route() && self.uri_is_mine(u));
        if strict_upstream {
            if let Some(uri) = routes.last().and_then(|r| route_uri(r)) {
                req.set_uri(Uri::Sip(uri.without_headers()));
                routes.pop();
                changed = true;
            }
        }
        // Our own entries on top: one, or two after a double Record-Route.
        while routes.first().is_some_and(|r| self.route_is_mine(r)) {
            routes.remove(0);
            changed = true;
        }
        if changed {
            set_routes(req, &routes);
        }
    }

    /// Whether the request was forwarded by this proxy before and came
    /// back unchanged (16.3 step 4): one of our Vias carries the branch we
    /// compute now for the Via below it (the one that was on top then).
    fn looped(&self, req: &Request) -> bool {
        // A loop needs one of our Vias above another: a request with a
        // single Via (straight from its UAC) has none, and costs no parse.
        let mut lines = req.headers().lines(HeaderName::Via);
        let single = match (lines.next(), lines.next()) {
            (None, _) => true,
            // One line without a comma: one Via, found without splitting.
            (Some(line), None) => crate::packet::find_byte(line, b',').is_none(),
            _ => false,
        };
        if single || req.headers().get_all(HeaderName::Via).nth(1).is_none() {
            return false;
        }
        let mut vias = req.vias().filter_map(Result::ok);
        let Some(mut above) = vias.next() else {
            return false;
        };
        for below in vias {
            if self.via_is_mine(&above)
                && above
                    .branch()
                    .is_some_and(|b| *b == *derive_branch(req, &below))
            {
                return true;
            }
            above = below;
        }
        false
    }

    /// One of the dispatcher's legs by id (refreshing the snapshot when
    /// the leg was added after it was taken).
    fn leg(&self, d: &Dispatcher, id: LegId) -> Option<Leg> {
        let found = self
            .legs
            .borrow()
            .iter()
            .find(|(l, _)| *l == id)
            .map(|(_, leg)| leg.clone());
        if found.is_some() {
            return found;
        }
        *self.legs.borrow_mut() = d.get_legs(&LegFilter::default());
        self.legs
            .borrow()
            .iter()
            .find(|(l, _)| *l == id)
            .map(|(_, leg)| leg.clone())
    }
}

/// The Route values, top first.
fn route_values(req: &Request) -> Vec<String> {
    req.headers()
        .get_all(HeaderName::Route)
        .map(|r| r.trim().to_owned())
        .collect()
}

/// The SIP URI of a Route value.
fn route_uri(route: &str) -> Option<SipUri> {
    match NameAddr::parse("Route", route).ok()?.uri().ok()? {
        Uri::Sip(u) => Some(u),
        Uri::Other(_) => None,
    }
}

/// Replaces the Route header lines by `routes`, one line each, where the
/// first Route line was.
fn set_routes(req: &mut Request, routes: &[String]) {
    let at = req
        .headers()
        .iter()
        .position(|(name, _)| HeaderName::parse(name) == Some(HeaderName::Route));
    let h = req.headers_mut();
    h.remove(HeaderName::Route);
    match at {
        Some(at) => {
            for (i, r) in routes.iter().enumerate() {
                h.insert(at + i, "Route", r);
            }
        }
        None => {
            for r in routes {
                h.push("Route", r);
            }
        }
    }
}

/// One log word for a request: `INVITE sip:a@x -> sip:b@y`.
fn describe(req: &Request) -> String {
    let from = req.from().map(|f| f.uri_str()).unwrap_or("?");
    let to = req.to().map(|t| t.uri_str()).unwrap_or("?");
    format!("{} {from} -> {to}", req.method())
}

/// Answers a request statelessly: the response goes where its top Via
/// says (received, rport). An ACK is never answered.
/// The To tag is derived from the request (the same for its
/// retransmissions), only when an answer is made.
fn answer(d: &Dispatcher, req: &Request, code: u16, reason: &str) {
    if *req.method() == Method::Ack {
        log::info!("dropping {} (would answer {code} {reason})", describe(req));
        return;
    }
    log::info!("answering {} with {code} {reason}", describe(req));
    let mut resp = Response::for_request(req, code, reason);
    if let Ok(top) = req.top_via() {
        resp.set_to_tag(&derived_tag(&derive_branch(req, &top)));
    }
    if code == 420 {
        let unsupported = req.unsupported_proxy_require(SUPPORTED).join(", ");
        resp.headers_mut().push("Unsupported", &unsupported);
    }
    if let Err(e) = d.deliver(resp, DeliverOptions::default()) {
        log::warn!("cannot send {code}: {e}");
    }
}

fn on_request(d: &Dispatcher, proxy: &Rc<Inner>, mut req: Request, in_leg: LegId, from: &Source) {
    // Make sure the leg snapshot knows the leg this came in on.
    let _ = proxy.leg(d, in_leg);
    log::debug!("request from {from}: {}", describe(&req));
    if req.top_via().is_err() {
        // The leg drops requests without a usable Via; keep it that way.
        log::warn!("dropping a request without Via from {from}");
        return;
    }
    // 16.3 step 2: a scheme we cannot route.
    if req.unsupported_uri_scheme(&["sip", "sips"]).is_some() && req.routes().next().is_none() {
        answer(d, &req, 416, "Unsupported URI Scheme");
        return;
    }
    // 16.3 step 3.
    let max_forwards = match req.max_forwards() {
        Ok(mf) => mf.unwrap_or(70),
        Err(e) => {
            answer(d, &req, 400, &format!("Bad Request ({e})"));
            return;
        }
    };
    if max_forwards == 0 {
        answer(d, &req, 483, "Too Many Hops");
        return;
    }
    // 16.3 step 5.
    if !req.unsupported_proxy_require(SUPPORTED).is_empty() {
        answer(d, &req, 420, "Bad Extension");
        return;
    }
    // 16.4, then 16.3 step 4 on the request as it will be routed: our own
    // Route entries do not decide where it goes, so they do not count.
    // Without Route there is nothing to take off (one look for both).
    let has_routes = req.headers().get(HeaderName::Route).is_some();
    if has_routes {
        proxy.preprocess_routes(&mut req);
    }
    if proxy.looped(&req) {
        answer(d, &req, 482, "Loop Detected");
        return;
    }
    let branch = match req.top_via() {
        Ok(top) => derive_branch(&req, &top),
        Err(_) => return,
    };
    // 16.6 step 6: a strict router next: it wants the Request-URI it
    // routes on in the Request-URI. Step 7: that Request-URI, else the top
    // Route, else the Request-URI is where the request goes.
    let mut routes = if has_routes {
        route_values(&req)
    } else {
        Vec::new()
    };
    let top_route = match routes.first() {
        Some(r) => match route_uri(r) {
            Some(u) => Some(u),
            None => {
                answer(d, &req, 400, "Bad Request (unusable Route)");
                return;
            }
        },
        None => None,
    };
    let next_hop = match top_route {
        Some(first) if first.is_loose_route() => first,
        Some(first) => {
            routes.push(format!("<{}>", req.uri()));
            routes.remove(0);
            let uri = first.without_headers();
            req.set_uri(Uri::Sip(uri.clone()));
            set_routes(&mut req, &routes);
            uri
        }
        None => match req.uri().as_sip() {
            Some(u) => u.clone(),
            None => {
                answer(d, &req, 416, "Unsupported URI Scheme");
                return;
            }
        },
    };
    // 16.6 step 3.
    let mut digits = [0u8; 20];
    let decremented = crate::packet::decimal(u64::from(max_forwards - 1), &mut digits);
    req.headers_mut().set(
        HeaderName::MaxForwards,
        std::str::from_utf8(decremented).unwrap_or("0"),
    );
    // An IP next hop (or proxy) needs no lookup: forward at once.
    if let Some(result) = d.resolve_uri_now(&next_hop, &[], None) {
        return forward_resolved(d, proxy, req, branch, in_leg, from, result);
    }
    let proxy = proxy.clone();
    let from = from.clone();
    d.resolve_uri(&next_hop, &[], None, move |d, result| {
        forward_resolved(d, &proxy, req, branch, in_leg, &from, result);
    });
}

/// Forwards to the first target, or answers 502 when there is none.
fn forward_resolved(
    d: &Dispatcher,
    proxy: &Inner,
    req: Request,
    branch: Rc<str>,
    in_leg: LegId,
    from: &Source,
    result: Result<Vec<Target>, crate::error::Error>,
) {
    // Stateless: no failover, the first target is the one (16.11).
    match result.as_deref().map(<[Target]>::first) {
        Ok(Some(target)) => forward(d, proxy, req, branch, in_leg, from, target),
        Ok(None) => answer(d, &req, 502, "Bad Gateway (EHOSTUNREACH)"),
        Err(e) => {
            log::warn!("{}: no route to its next hop: {e}", describe(&req));
            answer(d, &req, 502, &format!("Bad Gateway ({})", e.errno()));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn forward(
    d: &Dispatcher,
    proxy: &Inner,
    mut req: Request,
    branch: Rc<str>,
    in_leg: LegId,
    from: &Source,
    target: &Target,
) {
    let method = req.method().clone();
    if proxy.record_route && !matches!(method, Method::Register | Method::Cancel | Method::Ack) {
        if let Some(out) = proxy.leg(d, target.leg) {
            // RFC 5658: the upstream side must reach the entry it uses (the
            // bottom one of ours), the downstream side the top one.
            if target.leg != in_leg {
                if let Some(inl) = proxy.leg(d, in_leg) {
                    let uri = inl.contact(None, from.addr.ip()).with_param("lr", None);
                    req.headers_mut()
                        .prepend("Record-Route", &format!("<{uri}>"));
                }
            }
            let uri = out
                .contact(None, target.dst.addr.ip())
                .with_param("lr", None);
            req.headers_mut()
                .prepend("Record-Route", &format!("<{uri}>"));
        }
    }
    log::info!("{} forwarded to {}", describe(&req), target.dst);
    // A connection that fails (a TCP connect refused) is answered like a
    // resolution failure, with the request the dispatcher gives back (no
    // copy kept per forward, no allocation: the closure captures nothing).
    // Over UDP a datagram is sent at once, without a delivery record: a
    // send the kernel refuses is counted and logged by the leg, and the
    // client retransmits, as after any loss.
    let on_failure: Option<FailureCallback> = (target.dst.proto != Protocol::Udp).then(|| {
        Box::new(|d: &Dispatcher, e: crate::error::Error, packet: Packet| {
            if let Packet::Request(req) = packet {
                log::warn!("{}: forwarding failed: {e}", describe(&req));
                if *req.method() != Method::Ack {
                    answer(d, &req, 502, &format!("Bad Gateway ({})", e.errno()));
                }
            }
        }) as FailureCallback
    });
    let options = DeliverOptions {
        leg: Some(target.leg),
        dst_addr: Some(target.dst.clone()),
        branch: Some(branch),
        do_retransmits: Some(false),
        on_failure,
        ..DeliverOptions::default()
    };
    if let Err(e) = d.deliver(req, options) {
        log::warn!("cannot forward {method}: {e}");
    }
}

fn on_response(d: &Dispatcher, mut resp: Response, from: &Source) {
    // The leg passed it up because the top Via is ours: remove it (16.7
    // step 3), and what is left says where it goes.
    resp.headers_mut().drop_first(HeaderName::Via);
    let next = match resp.top_via() {
        Ok(via) => via.sent_by(),
        Err(_) => {
            log::info!(
                "dropping {} {} from {from}: no Via left after ours",
                resp.code(),
                resp.reason()
            );
            return;
        }
    };
    log::info!(
        "{} {} ({}) from {from} forwarded to {next}",
        resp.code(),
        resp.reason(),
        resp.method().map(|m| m.to_string()).unwrap_or_default()
    );
    if let Err(e) = d.deliver(resp, DeliverOptions::default()) {
        log::warn!("cannot forward a response: {e}");
    }
}
