//! Shared helpers for the leg tests: a sink that records what a leg
//! reports, bounded loop runs, message builders, and a blocking reader
//! for raw stream peers.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sip_dispatch::Errno;
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{ConnId, Destination, Leg, LegEvent, LegSink, Protocol, SendToken, Source};
use sip_dispatch::packet::{Packet, ParseLimits, Request, StreamFramer};

/// Upper bound for any wait on real sockets under the real clock.
pub const BOUND: Duration = Duration::from_secs(5);

/// One event a leg reported, with the loop time it arrived at.
#[derive(Debug)]
pub struct Recorded {
    pub at: Instant,
    pub event: LegEvent,
}

/// What a recording sink saw, shared with the test.
#[derive(Clone, Default)]
pub struct Events(pub Rc<RefCell<Vec<Recorded>>>);

impl Events {
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Received packets with their sources.
    pub fn packets(&self) -> Vec<(Packet, Source)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|r| match &r.event {
                LegEvent::Packet(p, s) => Some((p.clone(), s.clone())),
                _ => None,
            })
            .collect()
    }

    /// Received packets with their arrival times.
    pub fn packet_times(&self) -> Vec<(Instant, Packet)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|r| match &r.event {
                LegEvent::Packet(p, _) => Some((r.at, p.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn packet_count(&self) -> usize {
        self.0
            .borrow()
            .iter()
            .filter(|r| matches!(r.event, LegEvent::Packet(..)))
            .count()
    }

    /// `(token, Ok(()) | Err(errno))` of every outcome.
    pub fn outcomes(&self) -> Vec<(SendToken, Result<(), Errno>)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|r| match &r.event {
                LegEvent::Outcome(t, res) => {
                    Some((*t, res.as_ref().map(|_| ()).map_err(|e| e.errno())))
                }
                _ => None,
            })
            .collect()
    }

    pub fn outcome(&self, token: SendToken) -> Option<Result<(), Errno>> {
        self.outcomes()
            .into_iter()
            .find(|(t, _)| *t == token)
            .map(|(_, r)| r)
    }

    /// `(destination, errno)` of every unreachable report.
    pub fn unreachable(&self) -> Vec<(Destination, Errno)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|r| match &r.event {
                LegEvent::Unreachable(d, e) => Some((d.clone(), e.errno())),
                _ => None,
            })
            .collect()
    }

    pub fn closed(&self) -> Vec<(ConnId, SocketAddr)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|r| match &r.event {
                LegEvent::ConnectionClosed(c, a) => Some((*c, *a)),
                _ => None,
            })
            .collect()
    }
}

/// A sink recording every event with the loop's time, and its record.
pub fn recorder(lp: &Rc<MioEventloop>) -> (LegSink, Events) {
    let events = Events::default();
    let log = events.0.clone();
    let lp = Rc::downgrade(lp);
    let sink: LegSink = Rc::new(move |_leg: &Leg, ev: LegEvent| {
        let at = lp.upgrade().map(|l| l.now()).unwrap_or_else(Instant::now);
        log.borrow_mut().push(Recorded { at, event: ev });
    });
    (sink, events)
}

/// Attaches `leg` to `lp` with a recording sink.
pub fn attach(leg: &Leg, lp: &Rc<MioEventloop>) -> Events {
    let (sink, events) = recorder(lp);
    leg.attach(lp.clone(), sink).expect("attach");
    events
}

/// Runs the loop until `pred` holds or `limit` (loop time) has passed;
/// returns whether `pred` holds.
pub fn run_until(lp: &MioEventloop, limit: Duration, pred: impl Fn() -> bool) -> bool {
    lp.run(Some(limit), &pred).expect("event loop");
    pred()
}

/// Runs the loop briefly (real clock): lets ready descriptors be handled.
pub fn spin(lp: &MioEventloop, d: Duration) {
    lp.run(Some(d), &|| false).expect("event loop");
}

/// An OPTIONS request without Via (the leg adds its own).
pub fn request_text(call_id: &str, body: &str) -> String {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn request(call_id: &str) -> Request {
    Request::parse(request_text(call_id, "").as_bytes()).expect("test request parses")
}

pub fn request_with_body(call_id: &str, body: &str) -> Request {
    Request::parse(request_text(call_id, body).as_bytes()).expect("test request parses")
}

/// A request as a raw peer writes it, with its own Via on top.
pub fn raw_request(proto: Protocol, via_host: &str, call_id: &str, body: &str) -> String {
    let text = request_text(call_id, body);
    let (line, rest) = text.split_once("\r\n").unwrap();
    format!(
        "{line}\r\nVia: SIP/2.0/{} {via_host};branch=z9hG4bK{call_id}\r\n{rest}",
        proto.via_name()
    )
}

/// The request line, Via and the rest, for asserting that only the Via
/// changed.
pub fn without_top_via(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let (line, rest) = text.split_once("\r\n").unwrap();
    let (via, rest) = rest.split_once("\r\n").unwrap();
    assert!(via.starts_with("Via: "), "top header is a Via: {via}");
    (via["Via: ".len()..].to_owned(), format!("{line}\r\n{rest}"))
}

/// Makes a leg's prepared request shareable.
pub fn prepared(leg: &Leg, req: &Request, branch: &str, dst: &Destination) -> Rc<[u8]> {
    Rc::from(leg.prepare_request(req, branch, dst))
}

/// Reads one SIP message from a blocking stream (read timeout set by the
/// caller), framed by Content-Length.
pub fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut framer = StreamFramer::new(ParseLimits {
        max_message_size: 1 << 20,
        ..ParseLimits::default()
    });
    loop {
        let skip = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        buf.drain(..skip);
        if !buf.is_empty() {
            if let Some(len) = framer
                .message_len(buf)
                .map_err(|e| std::io::Error::other(e.to_string()))?
            {
                return Ok(buf.drain(..len).collect());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The loopback address of a family.
pub fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    }
}

/// A leg of `proto` bound to a kernel-chosen loopback port.
pub fn bind_loopback(proto: Protocol, v6: bool, opts: sip_dispatch::leg::LegOptions) -> Leg {
    Leg::bind(
        sip_dispatch::leg::LegSpec {
            proto,
            addr: loopback(v6),
        },
        opts,
    )
    .expect("bind a loopback leg")
}
