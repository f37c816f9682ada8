//! The checks behind the fuzz targets, shared with the plain `cargo test`
//! that replays the seed corpora (`tests/fuzz_corpus.rs`): each function
//! takes the fuzzer's bytes and panics when an invariant breaks.
//!
//! Included with `#[path]` by `fuzz/fuzz_targets/*.rs` and by
//! `tests/fuzz_corpus.rs`, so that it stays out of the library's API.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId, Timers,
};
use sip_dispatch::dns::DnsResolver;
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{
    Destination, Faults, Leg, LegEvent, LegOptions, LegStats, MemoryNetwork, Protocol, Source,
};
use sip_dispatch::packet::{
    CSeq, Framing, HeaderName, Host, Message, Method, NameAddr, Packet, ParseErrorKind,
    ParseLimits, Request, Response, SipUri, StreamFramer, Uri, Via, leading_line_ends,
};

// ---------------------------------------------------------------------------
// parse_packet

/// Small limits, so that the limit paths are reached by short inputs.
const SMALL: ParseLimits = ParseLimits {
    max_message_size: 600,
    max_headers: 12,
    max_line_length: 160,
};

/// Parses `data` as a datagram and as a stream message, with the default
/// limits and small ones; exercises every typed accessor of what parsed,
/// writes it back and parses the written bytes again.
pub fn packet(data: &[u8]) {
    for limits in [ParseLimits::default(), SMALL] {
        for framing in [Framing::Datagram, Framing::Stream] {
            packet_with(data, &limits, framing);
        }
    }
}

fn packet_with(data: &[u8], limits: &ParseLimits, framing: Framing) {
    let trimmed = &data[leading_line_ends(data)..];
    let parsed = Packet::parse_with(data, limits, framing);
    if framing == Framing::Stream {
        framer_agrees(trimmed, limits, parsed.as_ref().ok().map(|_| trimmed.len()));
    }
    let packet = match parsed {
        Ok(p) => p,
        Err(e) => {
            let _ = (e.to_string(), e.kind());
            let reason = e.reason();
            assert!(
                !reason.contains(['\r', '\n']),
                "a reason phrase is one line: {reason:?}"
            );
            if let Some(partial) = e.partial_request() {
                message_accessors(partial);
                // What a leg answers a request it could not parse: the
                // peer must be able to read it.
                let resp = Response::for_message(partial, 400, &reason, false);
                let written = resp.to_bytes();
                let back = Packet::parse(&written)
                    .unwrap_or_else(|e| panic!("our 400 does not parse ({e}): {written:?}"));
                assert_eq!(back.as_response().map(Response::code), Some(400));
            }
            return;
        }
    };
    accessors(&packet);

    // Unmodified: written back byte for byte (a datagram may carry
    // octets after its body, which are not part of the message).
    let written = packet.to_bytes();
    match framing {
        Framing::Stream => assert_eq!(written, trimmed, "written back differs"),
        Framing::Datagram => assert!(
            trimmed.starts_with(&written),
            "written back is not a prefix of the input"
        ),
    }
    let again = Packet::parse_with(&written, limits, framing)
        .unwrap_or_else(|e| panic!("the written message does not parse again: {e}"));
    assert_eq!(again.to_bytes(), written, "second write differs");
    same_message(&packet, &again);

    // Edited: a header more and a new body; the message is rebuilt.
    let relaxed = ParseLimits {
        max_message_size: written.len() + 4096,
        max_headers: limits.max_headers + 4,
        max_line_length: limits.max_line_length.max(256),
    };
    let mut edited = packet.clone();
    edited.headers_mut().push("X-Fuzz", "1");
    top_via_agrees(edited.message());
    edited.set_body(b"fuzz".to_vec());
    let rebuilt = edited.to_bytes();
    for framing in [Framing::Datagram, Framing::Stream] {
        let back = Packet::parse_with(&rebuilt, &relaxed, framing).unwrap_or_else(|e| {
            panic!(
                "an edited message does not parse ({framing:?}): {e}\n{}",
                String::from_utf8_lossy(&rebuilt)
            )
        });
        assert_eq!(back.body(), b"fuzz");
        assert_eq!(back.content_length(), Some(4));
        assert_eq!(back.headers().get("X-Fuzz"), Some("1"));
        assert_eq!(back.is_request(), packet.is_request());
        assert_eq!(back.call_id(), packet.call_id());
    }

    // What a leg sends: the request with its Via on top.
    if let Packet::Request(req) = &packet {
        let via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz;rport";
        let mut out = Vec::new();
        req.write_with_top_headers(&mut out, &[("Via", via)]);
        let relaxed = ParseLimits {
            max_message_size: out.len() + 1,
            ..relaxed
        };
        let back = Packet::parse_with(&out, &relaxed, Framing::Datagram).unwrap_or_else(|e| {
            panic!(
                "a request with our Via does not parse: {e}\n{}",
                String::from_utf8_lossy(&out)
            )
        });
        let back = back.as_request().expect("still a request");
        assert_eq!(
            back.top_via().ok().and_then(|v| v.branch()),
            Some("z9hG4bKfuzz")
        );
        assert_eq!(back.method(), req.method());
        assert_eq!(back.body(), req.body());
    }
}

/// The stream framer and the stream parser agree on where a message ends:
/// when the parser takes the bytes as one stream message, the framer finds
/// exactly that length.
fn framer_agrees(trimmed: &[u8], limits: &ParseLimits, parsed_len: Option<usize>) {
    if trimmed.is_empty() {
        return;
    }
    let mut framer = StreamFramer::new(*limits);
    let framed = framer.message_len(trimmed);
    if let Some(len) = parsed_len {
        assert_eq!(
            framed.as_ref().ok().copied().flatten(),
            Some(len),
            "the parser took {len} bytes as a stream message; the framer says {framed:?}"
        );
    }
    if let Ok(Some(len)) = framed {
        assert!(len > 0 && len <= trimmed.len() && len <= limits.max_message_size);
        // What the framer cut is framed right for the parser.
        if let Err(e) = Packet::parse_with(&trimmed[..len], limits, Framing::Stream) {
            assert!(
                !matches!(
                    e.kind(),
                    ParseErrorKind::Incomplete
                        | ParseErrorKind::MissingContentLength
                        | ParseErrorKind::BodyTruncated { .. }
                ),
                "the framer cut {len} bytes the parser calls {e}"
            );
        }
    }
}

fn same_message(a: &Packet, b: &Packet) {
    assert_eq!(a.is_request(), b.is_request());
    assert_eq!(a.call_id(), b.call_id());
    assert_eq!(a.body(), b.body());
    assert_eq!(a.headers().len(), b.headers().len());
    assert_eq!(a.method(), b.method());
    assert_eq!(a.server_key(), b.server_key());
    assert_eq!(a.client_key(), b.client_key());
}

/// Every typed accessor: none may panic, whatever the input.
fn accessors(packet: &Packet) {
    message_accessors(packet.message());
    let _ = (packet.callid(), packet.method(), packet.to_string());
    let _ = (packet.server_key(), packet.client_key());
    match packet {
        Packet::Request(req) => request_accessors(req),
        Packet::Response(resp) => {
            let _ = (resp.code(), resp.reason(), resp.version());
            let _ = (resp.method(), resp.is_provisional());
            let _ = (resp.client_key(), resp.server_key());
            assert!((100..=699).contains(&resp.code()));
        }
    }
}

fn request_accessors(req: &Request) {
    let _ = (req.method(), req.uri().as_str(), req.version());
    let _ = (req.server_key(), req.client_key());
    let _ = req.unsupported_require(&["100rel", "timer"]);
    let _ = req.unsupported_proxy_require(&[]);
    let _ = req.unsupported_uri_scheme(&["sip", "sips"]);
    let _ = req.unsupported_content_type(&["application/sdp"]);
    let _ = req.max_forwards_exhausted();
    if let Some(sip) = req.uri().as_sip() {
        sip_uri_accessors(sip);
    }
    match req.check() {
        Ok(()) => {
            // A request that passes the checks has what a server
            // transaction needs.
            assert!(req.top_via().is_ok());
            assert!(req.cseq().is_ok());
            assert!(req.server_key().is_some());
        }
        Err(rejection) => {
            assert!(matches!(rejection.status, 400 | 505), "{rejection}");
            assert!(!rejection.reason.contains(['\r', '\n']));
            // The answer a dispatcher sends parses.
            let mut resp = Response::for_request(req, rejection.status, &rejection.reason);
            resp.set_to_tag("fuzz");
            let written = resp.to_bytes();
            let back = Packet::parse(&written)
                .unwrap_or_else(|e| panic!("our {rejection} does not parse ({e}): {written:?}"));
            assert_eq!(
                back.as_response().map(Response::code),
                Some(rejection.status)
            );
        }
    }
    // A response to it, as a UAS builds one.
    let mut ok = Response::for_request(req, 200, "OK");
    ok.set_to_tag("fuzz");
    top_via_agrees(&ok);
    let written = ok.to_bytes();
    if let Err(e) = Packet::parse(&written) {
        panic!("a 200 for a parsed request does not parse ({e}): {written:?}");
    }
}

/// The top Via is remembered after the first parse: reading it again
/// gives exactly what a fresh parse of the first Via value gives.
fn top_via_agrees(m: &Message) {
    let fresh = m
        .headers()
        .get(HeaderName::Via)
        .map(|v| Via::parse(v).map_err(|e| e.to_string()));
    let first = m.top_via().map_err(|e| e.to_string());
    let again = m.top_via().map_err(|e| e.to_string());
    assert_eq!(first, again, "the remembered top Via differs");
    if let Some(fresh) = fresh {
        assert_eq!(first, fresh, "the top Via differs from a fresh parse");
    }
}

fn message_accessors(m: &Message) {
    let _ = (
        m.call_id(),
        m.cseq(),
        m.from(),
        m.to(),
        m.from_tag(),
        m.to_tag(),
    );
    let _ = (m.max_forwards(), m.content_length(), m.body(), m.tid());
    let _ = m.is_modified();
    if let Ok(via) = m.top_via() {
        via_accessors(&via);
    }
    top_via_agrees(m);
    for via in m.vias().flatten() {
        via_accessors(&via);
    }
    for name_addr in m
        .routes()
        .chain(m.record_routes())
        .chain(m.contacts())
        .chain([m.from(), m.to()])
        .flatten()
    {
        name_addr_accessors(&name_addr);
    }
    for (name, value) in m.headers().iter() {
        let _ = (m.headers().get(name), m.headers().count(name), value.len());
    }
}

fn via_accessors(via: &Via<'_>) {
    let _ = (via.protocol(), via.version(), via.transport(), via.host());
    let _ = (via.ip(), via.port(), via.branch(), via.has_rfc3261_branch());
    let _ = (via.received(), via.rport(), via.maddr(), via.ttl());
    let _ = via.sent_by().to_string();
    let _ = via.params().count();
}

fn name_addr_accessors(n: &NameAddr<'_>) {
    let _ = (n.display_name(), n.uri_str(), n.is_bracketed(), n.tag());
    let _ = n.params().count();
    if let Ok(Uri::Sip(sip)) = n.uri() {
        sip_uri_accessors(&sip);
    }
}

fn sip_uri_accessors(u: &SipUri) {
    let _ = (u.is_secure(), u.scheme(), u.user(), u.user_unescaped());
    let _ = (u.password(), u.host_str(), u.host(), u.ip(), u.port());
    let _ = (u.transport(), u.maddr(), u.is_loose_route(), u.headers());
    let _ = u.params().count();
}

// ---------------------------------------------------------------------------
// parse_uri

/// Parses `data` as a URI (and as the header values that carry URIs and
/// hosts); what parses is written back as it was, its parts are consistent
/// and edits of it parse again.
pub fn uri(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = Uri::parse(s) {
        assert_eq!(uri.as_str(), s);
        assert_eq!(uri.to_string(), s);
        assert!(s.starts_with(uri.scheme()));
        if let Some(sip) = uri.as_sip() {
            sip_uri(sip);
        }
    }
    if let Ok(host) = Host::parse(s) {
        let written = host.to_string();
        let back =
            Host::parse(&written).unwrap_or_else(|e| panic!("host {written:?} written back: {e}"));
        assert_eq!(back, host, "{s:?}");
    }
    if let Ok(n) = NameAddr::parse("To", s) {
        name_addr_accessors(&n);
    }
    if let Ok(via) = Via::parse(s) {
        via_accessors(&via);
    }
    if let Ok(cseq) = CSeq::parse(s) {
        assert!(cseq.number < 1 << 31, "{cseq:?}");
    }
}

fn sip_uri(u: &SipUri) {
    sip_uri_accessors(u);
    let s = u.as_str();
    assert!(u.equivalent(u), "a URI is equivalent to itself: {s}");
    let reparsed = SipUri::parse(s).expect("a parsed URI parses again");
    assert!(reparsed.equivalent(u));
    if let Some(user) = u.user() {
        assert!(s.contains(user));
    }
    assert!(s.contains(u.host_str()));
    // Edits give URIs that parse.
    let with = u.with_param("fuzz", Some("1"));
    SipUri::parse(with.as_str()).expect("with_param parses");
    if with.as_str() != s {
        assert_eq!(with.param("fuzz"), Some(Some("1")), "{}", with.as_str());
    }
    for edited in [
        u.without_param("transport"),
        u.without_param("lr"),
        u.without_headers(),
    ] {
        SipUri::parse(edited.as_str())
            .unwrap_or_else(|e| panic!("{} edited to {}: {e}", s, edited.as_str()));
    }
    assert_eq!(u.without_headers().headers(), None, "{s}");
    let host = u.host();
    let rebuilt = SipUri::new(u.is_secure(), u.user(), &host, u.port());
    let back = SipUri::parse(rebuilt.as_str()).expect("SipUri::new parses");
    assert_eq!(back.port(), u.port());
    assert_eq!(back.ip(), u.ip());
}

// ---------------------------------------------------------------------------
// stream_framer

/// A byte stream cut into messages the way a TCP leg does (leading line
/// ends skipped, the framer asked after each read), once with the stream
/// arriving in chunks of fuzzer-chosen sizes and once in one piece: both
/// cut the same messages and end the same way.
pub fn stream_framer(data: &[u8]) {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let limits = if control & 0x80 != 0 {
        SMALL
    } else {
        ParseLimits::default()
    };
    let whole = frame(stream, &limits, &[stream.len().max(1)]);
    // Chunk sizes 1..=32 from a small generator seeded by the first byte.
    let mut state = u32::from(control) | 0x100;
    let sizes: Vec<usize> = (0..64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 32) as usize + 1
        })
        .collect();
    let chunked = frame(stream, &limits, &sizes);
    let one_byte = frame(stream, &limits, &[1]);
    assert_eq!(chunked, whole, "chunked and whole framing differ");
    assert_eq!(one_byte, whole, "byte-at-a-time and whole framing differ");
    for m in &whole.messages {
        assert!(!m.is_empty() && m.len() <= limits.max_message_size);
        assert!(!matches!(m[0], b'\r' | b'\n'));
        if let Ok(p) = Packet::parse_with(m, &limits, Framing::Stream) {
            assert_eq!(&p.to_bytes(), m, "a framed message written back differs");
        }
    }
    let total: usize = whole.messages.iter().map(Vec::len).sum();
    assert!(total + whole.skipped + whole.rest <= stream.len());
}

#[derive(Debug, PartialEq)]
struct Framed {
    messages: Vec<Vec<u8>>,
    /// Keep-alive line ends skipped.
    skipped: usize,
    /// Bytes left over (an incomplete message), or at the error.
    rest: usize,
    error: Option<ParseErrorKind>,
}

/// Cuts `stream` into messages, reading it in chunks of `sizes` (cycled).
fn frame(stream: &[u8], limits: &ParseLimits, sizes: &[usize]) -> Framed {
    let mut framer = StreamFramer::new(*limits);
    let mut out = Framed {
        messages: Vec::new(),
        skipped: 0,
        rest: 0,
        error: None,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut sizes = sizes.iter().cycle();
    while pos < stream.len() {
        let n = (*sizes.next().unwrap_or(&1)).min(stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        loop {
            let skip = leading_line_ends(&buf);
            if skip > 0 {
                out.skipped += skip;
                buf.drain(..skip);
                framer.reset();
                continue;
            }
            if buf.is_empty() {
                break;
            }
            match framer.message_len(&buf) {
                Ok(Some(len)) => {
                    assert!(len > 0 && len <= buf.len(), "framer length {len}");
                    out.messages.push(buf.drain(..len).collect());
                    framer.reset();
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be resynchronised: a leg closes it.
                    out.error = Some(e.kind().clone());
                    out.rest = buf.len() + (stream.len() - pos);
                    return out;
                }
            }
        }
    }
    out.rest = buf.len();
    out
}

// ---------------------------------------------------------------------------
// leg_receive

/// Fast RFC 3261 timers, so that everything ends quickly in virtual time.
fn fast_timers() -> Timers {
    Timers {
        t1: Duration::from_millis(20),
        t2: Duration::from_millis(80),
        t4: Duration::from_millis(100),
        timer_d: Duration::from_millis(640),
        timer_c: Some(Duration::from_secs(2)),
    }
}

/// A resolver hook that knows no name: nothing leaves the process.
fn no_dns() -> DnsResolver {
    Rc::new(|_query, answer| answer(Ok(Vec::new())))
}

/// Separates datagrams in a `leg_receive` input: two bytes that cannot
/// appear in UTF-8 text.
pub const DATAGRAM_SEPARATOR: &[u8] = b"\xff\xfe";

/// The datagrams of a `leg_receive` input.
pub fn datagrams(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest
        .windows(DATAGRAM_SEPARATOR.len())
        .position(|w| w == DATAGRAM_SEPARATOR)
    {
        out.push(&rest[..i]);
        rest = &rest[i + DATAGRAM_SEPARATOR.len()..];
    }
    out.push(rest);
    out
}

/// What the attacker's leg got back.
#[derive(Default)]
struct Replies {
    responses: RefCell<Vec<Response>>,
}

const TARGET: &str = "10.0.0.2:5060";
const ATTACKER: &str = "10.0.0.1:5060";

/// The whole receive path of a leg: the input's datagrams (split at
/// [`DATAGRAM_SEPARATOR`]) arrive at a dispatcher's leg on a memory network
/// from an attacker's leg, twice (the second time as retransmissions); a
/// receiver answers every request. Afterwards: every datagram is counted
/// once by the leg that got it, every delivery the receiver made has had
/// exactly one outcome, nothing is left behind (deliveries, server
/// transactions, timers), and a valid request still gets its 200.
pub fn leg_receive(data: &[u8]) {
    let lp = Rc::new(MioEventloop::new_virtual());
    let dyn_lp: Rc<dyn Eventloop> = lp.clone();
    let net = MemoryNetwork::new(Faults::default(), 1);
    let addr = |s: &str| -> SocketAddr { s.parse().expect("address") };
    let leg =
        Leg::memory(&net, Protocol::Udp, addr(TARGET), LegOptions::default()).expect("target leg");
    let options = DispatcherOptions {
        timers: fast_timers(),
        dns_resolver: Some(no_dns()),
        max_server_transactions: Some(64),
        ..DispatcherOptions::default()
    };
    let target =
        Dispatcher::new(vec![leg.clone()], Some(dyn_lp.clone()), options).expect("dispatcher");
    let deliveries = Rc::new(Cell::new(0u64));
    let outcomes = Rc::new(RefCell::new(Vec::<DeliveryOutcome>::new()));
    {
        let (deliveries, outcomes) = (deliveries.clone(), outcomes.clone());
        target.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
            let Packet::Request(req) = p else { return };
            if *req.method() == Method::Ack {
                return;
            }
            let codes: &[u16] = if *req.method() == Method::Invite {
                &[180, 200]
            } else {
                &[200]
            };
            for &code in codes {
                let mut resp = Response::for_request(&req, code, "Fuzz");
                resp.set_to_tag("fuzz");
                let o = outcomes.clone();
                let opts = DeliverOptions::with_callback(move |_, out| o.borrow_mut().push(out));
                match d.deliver(resp, opts) {
                    Ok(_) => deliveries.set(deliveries.get() + 1),
                    Err(e) => panic!("deliver refused: {e}"),
                }
            }
        });
    }
    let attacker = Leg::memory(&net, Protocol::Udp, addr(ATTACKER), LegOptions::default())
        .expect("attacker leg");
    let replies = Rc::new(Replies::default());
    {
        let replies = replies.clone();
        attacker
            .attach(
                dyn_lp.clone(),
                Rc::new(move |_: &Leg, ev: LegEvent| {
                    if let LegEvent::Packet(Packet::Response(r), _) = ev {
                        replies.responses.borrow_mut().push(r);
                    }
                }),
            )
            .expect("attach attacker");
    }
    let dst = Destination::new(Protocol::Udp, addr(TARGET));
    let grams = datagrams(data);
    for round in 0..2 {
        for g in &grams {
            attacker.send(Rc::from(*g), &dst, None);
        }
        // Long enough for every timer of the fast schedule.
        lp.run(Some(Duration::from_secs(10 + round)), &|| false)
            .expect("loop");
    }
    lp.run(Some(Duration::from_secs(30)), &|| false)
        .expect("loop");

    // Every datagram the network delivered was counted once, by a leg.
    let counted = |s: LegStats| {
        s.received + s.parse_errors + s.dropped_no_via + s.dropped_foreign_via + s.dropped_by_hook
    };
    assert_eq!(
        net.stats().delivered,
        counted(leg.stats()) + counted(attacker.stats()),
        "target {:?} attacker {:?} network {:?}",
        leg.stats(),
        attacker.stats(),
        net.stats()
    );
    assert!(leg.stats().bad_requests_answered <= leg.stats().parse_errors);
    // Exactly one outcome per delivery, and nothing left behind.
    assert_eq!(
        outcomes.borrow().len() as u64,
        deliveries.get(),
        "{:?}",
        outcomes.borrow()
    );
    let s = target.stats();
    assert_eq!(
        (
            s.pending_deliveries,
            s.server_transactions,
            s.timers,
            s.client_keys,
            s.id_keys
        ),
        (0, 0, 0, 0, 0),
        "left behind: {s:?}"
    );
    assert_eq!(lp.pending_timers(), 0, "loop timers left behind");

    // The leg still serves.
    let before = replies.responses.borrow().len();
    let probe = format!(
        "OPTIONS sip:fuzz@{TARGET} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ATTACKER};branch=z9hG4bKprobe.{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{ATTACKER}>;tag=p\r\n\
         To: <sip:fuzz@{TARGET}>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        data.len(),
        deliveries.get()
    );
    attacker.send(Rc::from(probe.as_bytes()), &dst, None);
    let answered = || {
        replies.responses.borrow()[before..]
            .iter()
            .any(|r| r.code() == 200 && r.call_id().is_some_and(|c| c.starts_with("probe-")))
    };
    lp.run(Some(Duration::from_secs(5)), &answered)
        .expect("loop");
    assert!(answered(), "a valid request got no 200 after the input");
    drop(target);
    assert_eq!(
        outcomes.borrow().len() as u64,
        deliveries.get(),
        "exactly one outcome each, shutdown included"
    );
}
