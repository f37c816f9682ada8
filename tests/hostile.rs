//! The hostile-input matrix: one input per case and its expected result,
//! over a UDP and a TCP leg on loopback. The attacker is a raw std socket;
//! the target a dispatcher whose receiver answers every request with 200.
//! Each case is answered with a 400 whose reason names the problem, or
//! dropped and counted by the right counter (or, on TCP, when the stream
//! cannot be framed any more, the connection is closed and counted), and
//! then a valid request still gets its 200.
//!
//! The valid request follows the hostile input at once (on the same socket
//! when it is still open): replies arrive in order, so "no answer" is
//! checked without waiting for a silence.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sip_dispatch::dispatcher::{
    DeliverOptions, Dispatcher, DispatcherOptions, DispatcherStats, LegId,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Leg, LegOptions, LegSpec, LegStats, Protocol, Source};
use sip_dispatch::packet::{Method, Packet, ParseLimits, Response, StreamFramer};

/// Upper bound of any wait for an answer (real clock).
const BOUND: Duration = Duration::from_secs(5);

/// What the target must do with a hostile input.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Answer with this status, the reason phrase containing the text.
    Answer(u16, &'static str),
    /// No answer; this counter goes up by one.
    Dropped(Counter),
    /// TCP: the stream cannot be framed; the connection is closed and
    /// counted as limited.
    Closed,
    /// The case does not apply to this transport.
    NotApplicable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    /// `LegStats::parse_errors`
    ParseErrors,
    /// `LegStats::dropped_no_via`
    NoVia,
    /// `LegStats::dropped_foreign_via`
    ForeignVia,
}

struct Case {
    name: &'static str,
    input: fn(&Peer) -> Vec<u8>,
    udp: Expect,
    tcp: Expect,
}

/// Who the attacker is, for writing its Via.
struct Peer {
    proto: Protocol,
    addr: SocketAddr,
    call_id: String,
}

impl Peer {
    fn via(&self) -> String {
        let rport = if self.proto == Protocol::Udp {
            ";rport"
        } else {
            ""
        };
        format!(
            "SIP/2.0/{} {};branch=z9hG4bK{}{rport}",
            self.proto.via_name(),
            self.addr,
            self.call_id
        )
    }

    /// A valid OPTIONS from this peer.
    fn valid(&self) -> String {
        format!(
            "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n\
             Via: {}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.1>;tag=a1\r\n\
             To: <sip:bob@127.0.0.1>\r\n\
             Call-ID: {}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            self.via(),
            self.call_id
        )
    }

    /// The valid request with one edit.
    fn edit(&self, from: &str, to: &str) -> Vec<u8> {
        let valid = self.valid();
        assert!(valid.contains(from), "{from:?}");
        valid.replacen(from, to, 1).into_bytes()
    }
}

fn cases() -> Vec<Case> {
    use Counter::*;
    use Expect::*;
    vec![
        Case {
            name: "garbage",
            input: |_| b"hello there, this is not SIP at all\r\n\r\n".to_vec(),
            udp: Dropped(ParseErrors),
            tcp: Closed,
        },
        Case {
            name: "binary",
            input: |_| {
                let mut b: Vec<u8> = (0..=255u8).rev().collect();
                b.extend_from_slice(b"\r\n\r\n");
                b
            },
            udp: Dropped(ParseErrors),
            tcp: Closed,
        },
        Case {
            name: "truncated start line",
            input: |p| p.edit("sip:bob@127.0.0.1 SIP/2.0\r\n", "sip:bob@127.0.0.1\r\n"),
            udp: Answer(400, "invalid start line: missing SIP version"),
            tcp: Answer(400, "invalid start line: missing SIP version"),
        },
        Case {
            name: "header without colon",
            input: |p| p.edit("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n"),
            udp: Answer(400, "invalid header line 3"),
            tcp: Answer(400, "invalid header line 3"),
        },
        Case {
            name: "huge header line",
            input: |p| {
                let line = format!("Subject: {}\r\n", "x".repeat(10_000));
                p.edit(
                    "Max-Forwards: 70\r\n",
                    &format!("Max-Forwards: 70\r\n{line}"),
                )
            },
            udp: Dropped(ParseErrors),
            tcp: Dropped(ParseErrors),
        },
        Case {
            name: "10,000 headers",
            input: |p| {
                let many = "X:1\r\n".repeat(10_000);
                p.edit(
                    "Max-Forwards: 70\r\n",
                    &format!("Max-Forwards: 70\r\n{many}"),
                )
            },
            udp: Dropped(ParseErrors),
            tcp: Dropped(ParseErrors),
        },
        Case {
            name: "Content-Length negative",
            input: |p| p.edit("Content-Length: 0", "Content-Length: -5"),
            udp: Answer(400, "invalid Content-Length"),
            tcp: Closed,
        },
        Case {
            name: "Content-Length not a number",
            input: |p| p.edit("Content-Length: 0", "Content-Length: twelve"),
            udp: Answer(400, "invalid Content-Length"),
            tcp: Closed,
        },
        Case {
            name: "Content-Length larger than the datagram",
            input: |p| {
                p.edit(
                    "Content-Length: 0\r\n\r\n",
                    "Content-Length: 100\r\n\r\nabc",
                )
            },
            udp: Answer(
                400,
                "Content-Length 100 larger than the 3 body bytes received",
            ),
            // On a stream that is a message still arriving: the header
            // timeout's business (tests/limits.rs).
            tcp: NotApplicable,
        },
        Case {
            name: "Content-Length enormous",
            input: |p| {
                p.edit(
                    "Content-Length: 0",
                    "Content-Length: 99999999999999999999999",
                )
            },
            udp: Answer(400, "message size limit exceeded"),
            tcp: Closed,
        },
        Case {
            name: "duplicate Content-Length",
            input: |p| {
                p.edit(
                    "Content-Length: 0\r\n\r\n",
                    "Content-Length: 2\r\nl: 3\r\n\r\nabc",
                )
            },
            udp: Answer(400, "conflicting Content-Length headers"),
            tcp: Closed,
        },
        Case {
            name: "missing Via",
            input: |p| {
                let via = format!("Via: {}\r\n", p.via());
                p.edit(&via, "")
            },
            udp: Dropped(NoVia),
            tcp: Dropped(NoVia),
        },
        Case {
            name: "missing Call-ID",
            input: |p| {
                let line = format!("Call-ID: {}\r\n", p.call_id);
                p.edit(&line, "")
            },
            udp: Answer(400, "Bad Request (missing Call-ID)"),
            tcp: Answer(400, "Bad Request (missing Call-ID)"),
        },
        Case {
            name: "missing CSeq",
            input: |p| p.edit("CSeq: 1 OPTIONS\r\n", ""),
            udp: Answer(400, "Bad Request (missing CSeq)"),
            tcp: Answer(400, "Bad Request (missing CSeq)"),
        },
        Case {
            name: "missing From",
            input: |p| p.edit("From: <sip:alice@127.0.0.1>;tag=a1\r\n", ""),
            udp: Answer(400, "Bad Request (missing From)"),
            tcp: Answer(400, "Bad Request (missing From)"),
        },
        Case {
            name: "missing To",
            input: |p| p.edit("To: <sip:bob@127.0.0.1>\r\n", ""),
            udp: Answer(400, "Bad Request (missing To)"),
            tcp: Answer(400, "Bad Request (missing To)"),
        },
        Case {
            name: "CSeq method mismatch",
            input: |p| p.edit("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            udp: Answer(400, "CSeq method does not match the request method"),
            tcp: Answer(400, "CSeq method does not match the request method"),
        },
        Case {
            name: "response with a foreign top Via",
            input: |p| {
                format!(
                    "SIP/2.0 200 OK\r\n\
                     Via: SIP/2.0/{} 192.0.2.99:5060;branch=z9hG4bKforeign\r\n\
                     From: <sip:alice@127.0.0.1>;tag=a1\r\n\
                     To: <sip:bob@127.0.0.1>;tag=b1\r\n\
                     Call-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                    p.proto.via_name(),
                    p.call_id
                )
                .into_bytes()
            },
            udp: Dropped(ForeignVia),
            tcp: Dropped(ForeignVia),
        },
        Case {
            name: "Via with a bogus host",
            input: |p| {
                let via = format!("Via: {}", p.via());
                let bogus = format!(
                    "Via: SIP/2.0/{} exa$mple..com:5060;branch=z9hG4bKbogus",
                    p.proto.via_name()
                );
                p.edit(&via, &bogus)
            },
            udp: Dropped(NoVia),
            tcp: Dropped(NoVia),
        },
        Case {
            name: "URI with a bad IPv6 literal",
            input: |p| p.edit("sip:bob@127.0.0.1 SIP/2.0", "sip:bob@[2001:db8::1 SIP/2.0"),
            udp: Answer(400, "invalid Request-URI"),
            tcp: Answer(400, "invalid Request-URI"),
        },
        Case {
            name: "NUL bytes",
            input: |p| {
                let line = format!("Call-ID: {}\r\n", p.call_id);
                let nul = format!("Call-ID: {}\0x\r\n", p.call_id);
                p.edit(&line, &nul)
            },
            udp: Answer(400, "Bad Request (Call-ID header: invalid)"),
            tcp: Answer(400, "Bad Request (Call-ID header: invalid)"),
        },
        Case {
            name: "invalid UTF-8 in a header",
            input: |p| {
                let mut b = p.edit(
                    "Max-Forwards: 70\r\n",
                    "Max-Forwards: 70\r\nSubject: \u{1}\r\n",
                );
                let at = b.iter().position(|&c| c == 1).unwrap();
                b.splice(at..=at, [0xc3, 0x28, 0xff]);
                b
            },
            udp: Dropped(ParseErrors),
            tcp: Dropped(ParseErrors),
        },
    ]
}

// ---------------------------------------------------------------------------
// The target

struct Target {
    lp: Rc<MioEventloop>,
    dispatcher: Dispatcher,
    udp: Leg,
    tcp: Leg,
    /// Requests the receiver saw (Call-IDs).
    seen: Rc<RefCell<Vec<String>>>,
}

impl Target {
    fn new() -> Target {
        let lp = Rc::new(MioEventloop::new().expect("event loop"));
        let bind = |proto| {
            Leg::bind(
                LegSpec {
                    proto,
                    addr: "127.0.0.1:0".parse().unwrap(),
                },
                LegOptions::default(),
            )
            .expect("bind")
        };
        let (udp, tcp) = (bind(Protocol::Udp), bind(Protocol::Tcp));
        let options = DispatcherOptions {
            dns_resolver: Some(Rc::new(|_, answer| answer(Ok(Vec::new())))),
            ..DispatcherOptions::default()
        };
        let dispatcher = Dispatcher::new(
            vec![udp.clone(), tcp.clone()],
            Some(lp.clone() as Rc<dyn Eventloop>),
            options,
        )
        .expect("dispatcher");
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let s = seen.clone();
        dispatcher.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
            let Packet::Request(req) = p else { return };
            s.borrow_mut()
                .push(req.call_id().unwrap_or_default().to_owned());
            if *req.method() != Method::Ack {
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("target");
                d.deliver(ok, DeliverOptions::default()).expect("deliver");
            }
        });
        Target {
            lp,
            dispatcher,
            udp,
            tcp,
            seen,
        }
    }

    fn leg(&self, proto: Protocol) -> &Leg {
        match proto {
            Protocol::Udp => &self.udp,
            _ => &self.tcp,
        }
    }

    /// Runs the loop until `done` holds (or the bound passes).
    fn run_until(&self, done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while !done() && start.elapsed() < BOUND {
            self.lp
                .run(Some(Duration::from_millis(5)), &|| done())
                .expect("loop");
        }
        done()
    }
}

/// What the attacker read back.
#[derive(Default)]
struct Inbox {
    messages: Vec<Response>,
    eof: bool,
}

/// The attacker's socket.
enum Attacker {
    Udp(UdpSocket),
    Tcp(TcpStream, RefCell<Vec<u8>>),
}

impl Attacker {
    fn open(proto: Protocol, target: &Target) -> Attacker {
        let to = target.leg(proto).local_addr();
        match proto {
            Protocol::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(to).unwrap();
                s.set_nonblocking(true).unwrap();
                Attacker::Udp(s)
            }
            _ => {
                let s = TcpStream::connect_timeout(&to, BOUND).expect("connect");
                s.set_nodelay(true).unwrap();
                Attacker::Tcp(s, RefCell::default())
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Attacker::Udp(s) => s.local_addr().unwrap(),
            Attacker::Tcp(s, _) => s.local_addr().unwrap(),
        }
    }

    /// Sends while the target's loop runs (a large write on TCP needs the
    /// target reading).
    fn send(&self, target: &Target, bytes: &[u8]) {
        match self {
            Attacker::Udp(s) => {
                s.send(bytes).expect("udp send");
            }
            Attacker::Tcp(s, _) => {
                s.set_nonblocking(true).unwrap();
                let mut done = 0;
                let start = Instant::now();
                while done < bytes.len() {
                    match (&*s).write(&bytes[done..]) {
                        Ok(n) => done += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            target
                                .lp
                                .run(Some(Duration::from_millis(1)), &|| false)
                                .unwrap();
                        }
                        // The target closed the connection on us.
                        Err(_) => return,
                    }
                    assert!(start.elapsed() < BOUND, "write stuck");
                }
            }
        }
    }

    /// Reads what has arrived, without blocking.
    fn poll(&self, inbox: &mut Inbox) {
        let mut buf = [0u8; 65_536];
        match self {
            Attacker::Udp(s) => {
                while let Ok(n) = s.recv(&mut buf) {
                    match Packet::parse(&buf[..n]) {
                        Ok(Packet::Response(r)) => inbox.messages.push(r),
                        other => panic!("the target sent something odd: {other:?}"),
                    }
                }
            }
            Attacker::Tcp(s, pending) => {
                let mut pending = pending.borrow_mut();
                loop {
                    match (&*s).read(&mut buf) {
                        Ok(0) => {
                            inbox.eof = true;
                            break;
                        }
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            inbox.eof = true;
                            break;
                        }
                    }
                }
                let mut framer = StreamFramer::new(ParseLimits::default());
                loop {
                    let skip = pending.iter().take_while(|b| b"\r\n".contains(b)).count();
                    pending.drain(..skip);
                    if pending.is_empty() {
                        break;
                    }
                    match framer.message_len(&pending) {
                        Ok(Some(len)) => {
                            let m: Vec<u8> = pending.drain(..len).collect();
                            match Packet::parse(&m) {
                                Ok(Packet::Response(r)) => inbox.messages.push(r),
                                other => panic!("the target sent something odd: {other:?}"),
                            }
                            framer.reset();
                        }
                        Ok(None) => break,
                        Err(e) => panic!("the target's stream does not frame: {e}"),
                    }
                }
            }
        }
    }
}

/// Runs one case on one transport; returns what went wrong, if anything.
fn run_case(
    target: &Target,
    proto: Protocol,
    n: usize,
    case: &Case,
    expect: Expect,
) -> Result<(), String> {
    let mut attacker = Attacker::open(proto, target);
    let peer = Peer {
        proto,
        addr: attacker.addr(),
        call_id: format!("hostile-{}-{n}", proto.as_str()),
    };
    let leg = target.leg(proto);
    let (leg_before, disp_before) = (leg.stats(), target.dispatcher.stats());
    if proto == Protocol::Tcp {
        // The connection is accepted before the input arrives.
        let opened = leg_before.connections_opened;
        target.run_until(|| leg.stats().connections_opened > opened);
    }
    let input = (case.input)(&peer);
    attacker.send(target, &input);

    // Then a valid request: on the same socket while it is open.
    let inbox = RefCell::new(Inbox::default());
    if matches!(expect, Expect::Closed) {
        let closed = target.run_until(|| {
            attacker_poll(&attacker, &inbox);
            inbox.borrow().eof
        });
        if !closed {
            return Err("the connection was not closed".into());
        }
        attacker = Attacker::open(proto, target);
    }
    let probe = Peer {
        proto,
        addr: attacker.addr(),
        call_id: format!("valid-{}-{n}", proto.as_str()),
    };
    attacker.send(target, probe.valid().as_bytes());
    let answered = |inbox: &Inbox| {
        inbox
            .messages
            .iter()
            .any(|r| r.call_id() == Some(probe.call_id.as_str()))
    };
    target.run_until(|| {
        attacker_poll(&attacker, &inbox);
        answered(&inbox.borrow())
    });
    let inbox = inbox.into_inner();
    let (leg_after, disp_after) = (leg.stats(), target.dispatcher.stats());
    let delta = |f: fn(&LegStats) -> u64| f(&leg_after) - f(&leg_before);
    let rejected = disp_after.rejected_requests - disp_before.rejected_requests;

    // The valid request got its 200, as the last thing that came back.
    match inbox.messages.last() {
        Some(r) if r.code() == 200 && r.call_id() == Some(probe.call_id.as_str()) => {}
        _ => {
            return Err(format!(
                "the valid request after it got no 200: {:?}",
                codes(&inbox)
            ));
        }
    }
    let before_probe = &inbox.messages[..inbox.messages.len() - 1];
    match expect {
        Expect::Answer(status, reason) => {
            let [r] = before_probe else {
                return Err(format!("expected one answer, got {:?}", codes(&inbox)));
            };
            if r.code() != status || !r.reason().contains(reason) {
                return Err(format!(
                    "expected {status} with {reason:?}, got {} {:?}",
                    r.code(),
                    r.reason()
                ));
            }
            // (It echoes the request's Call-ID, NUL byte and all.)
            if r.call_id().is_some_and(|c| !c.starts_with(&peer.call_id)) {
                return Err(format!("answer for another call: {:?}", r.call_id()));
            }
            // Counted where it was decided: by the leg (did not parse) or
            // by the dispatcher (parsed, failed the checks).
            let by_leg = delta(|s| s.bad_requests_answered);
            if by_leg + rejected != 1 || (by_leg == 1 && delta(|s| s.parse_errors) != 1) {
                return Err(format!(
                    "answer not counted once: leg {by_leg}, dispatcher {rejected}"
                ));
            }
        }
        Expect::Dropped(counter) => {
            if !before_probe.is_empty() {
                return Err(format!("expected no answer, got {:?}", codes(&inbox)));
            }
            let counted = match counter {
                Counter::ParseErrors => delta(|s| s.parse_errors),
                Counter::NoVia => delta(|s| s.dropped_no_via),
                Counter::ForeignVia => delta(|s| s.dropped_foreign_via),
            };
            if counted != 1 {
                return Err(format!("{counter:?} went up by {counted}, not 1"));
            }
            if delta(|s| s.bad_requests_answered) != 0 || rejected != 0 {
                return Err("counted as answered".into());
            }
        }
        Expect::Closed => {
            if !before_probe.is_empty() {
                return Err(format!("expected no answer, got {:?}", codes(&inbox)));
            }
            if delta(|s| s.connections_limited) != 1 {
                return Err(format!(
                    "connections_limited went up by {}",
                    delta(|s| s.connections_limited)
                ));
            }
        }
        Expect::NotApplicable => unreachable!(),
    }
    // The hostile input never reached the receiver.
    if target.seen.borrow().contains(&peer.call_id) {
        return Err("the hostile input reached the receiver".into());
    }
    Ok(())
}

fn attacker_poll(attacker: &Attacker, inbox: &RefCell<Inbox>) {
    attacker.poll(&mut inbox.borrow_mut());
}

fn codes(inbox: &Inbox) -> Vec<(u16, String)> {
    inbox
        .messages
        .iter()
        .map(|r| (r.code(), r.reason().to_owned()))
        .collect()
}

fn matrix(proto: Protocol) {
    let target = Target::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (n, case) in cases().iter().enumerate() {
        let expect = match proto {
            Protocol::Udp => case.udp,
            _ => case.tcp,
        };
        if matches!(expect, Expect::NotApplicable) {
            continue;
        }
        ran += 1;
        if let Err(e) = run_case(&target, proto, n, case, expect) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{proto:?}: {} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing the matrix did is a leak: the dispatcher only holds server
    // transactions for the valid requests and the rejected ones.
    let DispatcherStats {
        pending_deliveries, ..
    } = target.dispatcher.stats();
    assert!(pending_deliveries <= ran, "{:?}", target.dispatcher.stats());
}

#[test]
fn hostile_inputs_over_udp() {
    matrix(Protocol::Udp);
}

#[test]
fn hostile_inputs_over_tcp() {
    matrix(Protocol::Tcp);
}

/// Every case of the matrix names a result for both transports, and every
/// case that applies to TCP is framed (ends its header section) so that a
/// result is reached without a timeout.
#[test]
fn the_matrix_covers_the_issue_list() {
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    for want in [
        "garbage",
        "binary",
        "truncated start line",
        "header without colon",
        "huge header line",
        "10,000 headers",
        "Content-Length negative",
        "Content-Length not a number",
        "Content-Length larger than the datagram",
        "Content-Length enormous",
        "duplicate Content-Length",
        "missing Via",
        "missing Call-ID",
        "missing CSeq",
        "missing From",
        "missing To",
        "CSeq method mismatch",
        "response with a foreign top Via",
        "Via with a bogus host",
        "URI with a bad IPv6 literal",
        "NUL bytes",
        "invalid UTF-8 in a header",
    ] {
        assert!(names.contains(&want), "{want}");
    }
    let peer = Peer {
        proto: Protocol::Tcp,
        addr: "127.0.0.1:5060".parse().unwrap(),
        call_id: "x".into(),
    };
    for case in cases() {
        let input = (case.input)(&peer);
        assert!(
            input.windows(4).any(|w| w == b"\r\n\r\n"),
            "{}: no end of header section",
            case.name
        );
    }
}
