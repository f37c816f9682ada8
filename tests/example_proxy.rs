//! Black-box tests of `examples/stateless_proxy.rs`: the built binary runs
//! as a child process on loopback ports the kernel picks; the tests play
//! UAC and UAS with raw sockets, write SIP by hand and parse what arrives
//! with the crate's parser. Every wait is bounded; the child is killed when
//! a test ends, also when it fails.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use sip_dispatch::leg::{LegSpec, Protocol};
use sip_dispatch::packet::{
    Framing, HeaderName, Packet, ParseLimits, Request, Response, StreamFramer, Via,
    leading_line_ends,
};

/// Upper bound of any wait for something that should happen.
const BOUND: Duration = Duration::from_secs(5);
/// How long to watch for something that should not happen.
const QUIET: Duration = Duration::from_millis(300);

/// The example binary. `cargo test --test example_proxy` does not build
/// examples (a plain `cargo test` does), so build it once here; cargo makes
/// that a no-op when it is fresh.
fn proxy_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // target/<profile>/deps/example_proxy-HASH
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test binary in target/<profile>/deps");
        let bin = profile_dir.join("examples").join("stateless_proxy");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--example", "stateless_proxy"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            other => eprintln!("building the example failed ({other:?}); using what is there"),
        }
        assert!(bin.exists(), "{} is missing", bin.display());
        bin
    })
    .clone()
}

/// A running proxy: killed on drop (its log is printed when the test
/// failed).
struct Proxy {
    child: Child,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

impl Proxy {
    fn start(args: &[&str]) -> Proxy {
        let mut child = Command::new(proxy_bin())
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stateless_proxy");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let mut proxy = Proxy {
            child,
            udp: None,
            tcp: None,
            log: log.clone(),
        };
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let legs = args.iter().filter(|a| **a == "--listen").count().max(1);
        let deadline = Instant::now() + BOUND;
        for _ in 0..legs {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("a `listening ...` line from the proxy");
            let spec: LegSpec = line
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("unexpected output {line:?}"))
                .parse()
                .expect("a leg spec");
            assert_ne!(spec.addr.port(), 0, "the real port is printed");
            match spec.proto {
                Protocol::Udp => proxy.udp = Some(spec.addr),
                Protocol::Tcp => proxy.tcp = Some(spec.addr),
                Protocol::Tls => {}
            }
        }
        proxy
    }

    fn udp(&self) -> SocketAddr {
        self.udp.expect("a UDP leg")
    }

    fn udp_port(&self) -> u16 {
        self.udp().port()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("---- stateless_proxy log ----\n{log}");
        }
    }
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(BOUND)).expect("timeout");
    s
}

fn port(s: &UdpSocket) -> u16 {
    s.local_addr().expect("local addr").port()
}

fn send(s: &UdpSocket, to: SocketAddr, text: &str) {
    s.send_to(text.as_bytes(), to).expect("send");
}

/// The next datagram within `wait`, parsed.
fn recv_within(s: &UdpSocket, wait: Duration) -> Option<Packet> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.recv_from(&mut buf) {
            Ok((n, _)) => return Some(Packet::parse(&buf[..n]).expect("a SIP message")),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn recv(s: &UdpSocket) -> Packet {
    recv_within(s, BOUND).expect("a message within the bound")
}

fn recv_request(s: &UdpSocket) -> Request {
    match recv(s) {
        Packet::Request(r) => r,
        Packet::Response(r) => panic!("expected a request, got {} {}", r.code(), r.reason()),
    }
}

fn recv_response(s: &UdpSocket) -> Response {
    match recv(s) {
        Packet::Response(r) => r,
        Packet::Request(r) => panic!("expected a response, got {}", r.method()),
    }
}

/// A request from the UAC: `via` is its Via value, `extra` more header
/// lines (each ending in CRLF).
fn request(method: &str, uri: &str, via: &str, call_id: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: {via}\r\n{extra}From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:alice@127.0.0.1>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn uac_via(uac: &UdpSocket, branch: &str) -> String {
    format!("SIP/2.0/UDP 127.0.0.1:{};branch={branch};rport", port(uac))
}

fn vias(msg: &sip_dispatch::packet::Message) -> Vec<String> {
    msg.headers()
        .get_all(HeaderName::Via)
        .map(str::to_owned)
        .collect()
}

fn values(msg: &sip_dispatch::packet::Message, name: HeaderName) -> Vec<String> {
    msg.headers().get_all(name).map(str::to_owned).collect()
}

fn top_branch(msg: &sip_dispatch::packet::Message) -> String {
    msg.top_via()
        .expect("a Via")
        .branch()
        .expect("a branch")
        .to_owned()
}

/// Asserts that the top Via is the proxy's over `proto` at `addr`, with an
/// RFC 3261 branch and `rport`; returns the branch.
fn assert_proxy_via(msg: &sip_dispatch::packet::Message, proto: &str, addr: SocketAddr) -> String {
    let via = msg.top_via().expect("a Via");
    assert_eq!(via.transport(), proto);
    assert_eq!(via.host(), addr.ip().to_string());
    assert_eq!(via.port(), Some(addr.port()));
    assert!(via.has_rfc3261_branch(), "{via:?}");
    assert_eq!(via.rport(), Some(None));
    via.branch().expect("branch").to_owned()
}

/// The UAS's answer to a request, sent back to the proxy.
fn answer(uas: &UdpSocket, proxy: SocketAddr, req: &Request, code: u16, reason: &str) {
    let mut resp = Response::for_request(req, code, reason);
    resp.set_to_tag("uas1");
    uas.send_to(&resp.to_bytes(), proxy).expect("send");
}

#[test]
fn forwards_with_max_forwards_decremented_and_own_via() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    let sent = request(
        "OPTIONS",
        &uri,
        &uac_via(&uac, "z9hG4bKuac-1"),
        "fwd-1@test",
        "Max-Forwards: 70\r\n",
    );
    send(&uac, p.udp(), &sent);
    let req = recv_request(&uas);
    assert_eq!(req.uri().as_str(), uri);
    assert_eq!(req.max_forwards().unwrap(), Some(69));
    let branch = assert_proxy_via(&req, "UDP", p.udp());
    let all = vias(&req);
    assert_eq!(all.len(), 2, "{all:?}");
    let below = Via::parse(&all[1]).unwrap();
    assert_eq!(below.branch(), Some("z9hG4bKuac-1"));
    assert_eq!(below.received(), Some("127.0.0.1"));
    assert_eq!(below.rport(), Some(Some(port(&uac))));
    assert_eq!(req.call_id(), Some("fwd-1@test"));

    // Max-Forwards absent: 70 assumed, 69 forwarded.
    let sent = request(
        "OPTIONS",
        &uri,
        &uac_via(&uac, "z9hG4bKuac-2"),
        "fwd-2@test",
        "",
    );
    send(&uac, p.udp(), &sent);
    let req = recv_request(&uas);
    assert_eq!(req.max_forwards().unwrap(), Some(69));
    let other = assert_proxy_via(&req, "UDP", p.udp());
    assert_ne!(other, branch, "another transaction, another branch");
}

#[test]
fn max_forwards_zero_gets_483_and_is_not_forwarded() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    let sent = request(
        "INVITE",
        &uri,
        &uac_via(&uac, "z9hG4bKmf0"),
        "mf0@test",
        "Max-Forwards: 0\r\n",
    );
    send(&uac, p.udp(), &sent);
    let resp = recv_response(&uac);
    assert_eq!((resp.code(), resp.reason()), (483, "Too Many Hops"));
    assert_eq!(vias(&resp).len(), 1);
    assert_eq!(top_branch(&resp), "z9hG4bKmf0");
    assert!(resp.to_tag().is_some(), "a final response carries a To tag");
    assert_eq!(resp.call_id(), Some("mf0@test"));
    assert!(recv_within(&uas, QUIET).is_none(), "not forwarded");

    // An ACK is never answered: with Max-Forwards 0 it is dropped.
    let ack = request(
        "ACK",
        &uri,
        &uac_via(&uac, "z9hG4bKmf0"),
        "mf0@test",
        "Max-Forwards: 0\r\n",
    );
    send(&uac, p.udp(), &ack);
    assert!(recv_within(&uac, QUIET).is_none(), "no answer to an ACK");
    assert!(
        recv_within(&uas, Duration::from_millis(50)).is_none(),
        "not forwarded"
    );
}

#[test]
fn retransmission_cancel_and_ack_take_the_invites_branch() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    let via = uac_via(&uac, "z9hG4bKinv-1");
    let invite = request("INVITE", &uri, &via, "br-1@test", "Max-Forwards: 70\r\n");
    send(&uac, p.udp(), &invite);
    let first = assert_proxy_via(&recv_request(&uas), "UDP", p.udp());
    // A retransmission is forwarded again (stateless), with the same branch.
    send(&uac, p.udp(), &invite);
    let again = recv_request(&uas);
    assert_eq!(assert_proxy_via(&again, "UDP", p.udp()), first);
    // The CANCEL carries the INVITE's Via branch: the proxy's is the INVITE's.
    let cancel = request("CANCEL", &uri, &via, "br-1@test", "Max-Forwards: 70\r\n");
    send(&uac, p.udp(), &cancel);
    let fwd_cancel = recv_request(&uas);
    assert_eq!(fwd_cancel.method().as_str(), "CANCEL");
    assert_eq!(assert_proxy_via(&fwd_cancel, "UDP", p.udp()), first);
    // So does the ACK of a non-2xx final response (To tag added).
    let ack = request("ACK", &uri, &via, "br-1@test", "Max-Forwards: 70\r\n").replace(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag=uas1",
    );
    send(&uac, p.udp(), &ack);
    let fwd_ack = recv_request(&uas);
    assert_eq!(fwd_ack.method().as_str(), "ACK");
    assert_eq!(assert_proxy_via(&fwd_ack, "UDP", p.udp()), first);
    // Another INVITE transaction gets another branch.
    let other = request(
        "INVITE",
        &uri,
        &uac_via(&uac, "z9hG4bKinv-2"),
        "br-2@test",
        "",
    );
    send(&uac, p.udp(), &other);
    assert_ne!(assert_proxy_via(&recv_request(&uas), "UDP", p.udp()), first);

    // The branch does not depend on the process: another proxy derives
    // the same one from the same request.
    let p2 = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    send(&uac, p2.udp(), &invite);
    assert_eq!(
        assert_proxy_via(&recv_request(&uas), "UDP", p2.udp()),
        first
    );
}

#[test]
fn rfc2543_request_gets_a_stable_derived_branch() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    let via = format!("SIP/2.0/UDP 127.0.0.1:{}", port(&uac));
    let invite = request("INVITE", &uri, &via, "old-1@test", "");
    send(&uac, p.udp(), &invite);
    let first = assert_proxy_via(&recv_request(&uas), "UDP", p.udp());
    send(&uac, p.udp(), &invite);
    assert_eq!(assert_proxy_via(&recv_request(&uas), "UDP", p.udp()), first);
    let cancel = request("CANCEL", &uri, &via, "old-1@test", "");
    send(&uac, p.udp(), &cancel);
    assert_eq!(assert_proxy_via(&recv_request(&uas), "UDP", p.udp()), first);
}

#[test]
fn response_goes_back_without_proxy_via_to_the_rport() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas, decoy) = (udp(), udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    // The sent-by port is the decoy's; rport asks for the source port.
    let via = format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKresp;rport",
        port(&decoy)
    );
    send(
        &uac,
        p.udp(),
        &request("INVITE", &uri, &via, "resp@test", ""),
    );
    let req = recv_request(&uas);
    let top = req.top_via().unwrap();
    // The UAS sends to the proxy's top Via.
    let to = SocketAddr::new(top.ip().unwrap(), top.port().unwrap());
    assert_eq!(to, p.udp());
    for (code, reason) in [(180, "Ringing"), (200, "OK")] {
        answer(&uas, to, &req, code, reason);
        let resp = recv_response(&uac);
        assert_eq!((resp.code(), resp.reason()), (code, reason));
        let left = vias(&resp);
        assert_eq!(left.len(), 1, "the proxy's Via is removed: {left:?}");
        let v = Via::parse(&left[0]).unwrap();
        assert_eq!(v.branch(), Some("z9hG4bKresp"));
        assert_eq!(v.rport(), Some(Some(port(&uac))));
        assert_eq!(resp.to_tag(), Some("uas1"));
    }
    assert!(
        recv_within(&decoy, QUIET).is_none(),
        "rport wins over the sent-by port"
    );
}

#[test]
fn response_with_foreign_top_via_is_dropped() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let uac_v = format!(
        "SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKx;received=127.0.0.1;rport={}",
        port(&uac),
        port(&uac)
    );
    let foreign = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKforeign\r\nVia: {uac_v}\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b\r\n\
         Call-ID: foreign@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    send(&uas, p.udp(), &foreign);
    assert!(recv_within(&uac, QUIET).is_none(), "not forwarded");
    // The proxy's own Via and nothing below it: nowhere to go, dropped.
    let own = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKown\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b\r\n\
         Call-ID: own@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        p.udp()
    );
    send(&uas, p.udp(), &own);
    // Still serving.
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            &uri,
            &uac_via(&uac, "z9hG4bKalive"),
            "alive@test",
            "",
        ),
    );
    assert_eq!(recv_request(&uas).call_id(), Some("alive@test"));
    assert!(recv_within(&uac, Duration::from_millis(50)).is_none());
}

#[test]
fn request_routed_back_to_the_proxy_unchanged_gets_482() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let uac = udp();
    // The Route names the proxy (it is removed), and the Request-URI
    // names the proxy too: the request comes back with the proxy's Via and
    // the branch it derives for it again.
    let uri = format!("sip:bob@{}", p.udp());
    let route = format!("Route: <sip:{};lr>\r\n", p.udp());
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            &uri,
            &uac_via(&uac, "z9hG4bKloop"),
            "loop@test",
            &route,
        ),
    );
    let resp = recv_response(&uac);
    assert_eq!((resp.code(), resp.reason()), (482, "Loop Detected"));
    let left = vias(&resp);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(top_branch(&resp), "z9hG4bKloop");
    assert!(recv_within(&uac, QUIET).is_none(), "one answer");
}

#[test]
fn spiral_with_a_new_request_uri_passes_and_an_unchanged_return_is_482() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    // `q` plays a proxy downstream that sends the request back through
    // this one; `uas` is where the spiral ends.
    let (uac, q, uas) = (udp(), udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&q));
    send(
        &uac,
        p.udp(),
        &request("INVITE", &uri, &uac_via(&uac, "z9hG4bKsp"), "sp@test", ""),
    );
    let at_q = recv_request(&q);
    let first = assert_proxy_via(&at_q, "UDP", p.udp());
    let q_via = format!("SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKq1", port(&q));

    // A new Request-URI: a spiral, forwarded with another branch.
    let mut spiral = at_q.clone();
    spiral.set_uri(
        format!("sip:carol@127.0.0.1:{}", port(&uas))
            .parse()
            .unwrap(),
    );
    spiral.headers_mut().prepend("Via", &q_via);
    q.send_to(&spiral.to_bytes(), p.udp()).unwrap();
    let at_uas = recv_request(&uas);
    let second = assert_proxy_via(&at_uas, "UDP", p.udp());
    assert_ne!(second, first);
    assert_eq!(vias(&at_uas).len(), 4);

    // The same request back unchanged: a loop.
    let mut looped = at_q.clone();
    looped
        .headers_mut()
        .prepend("Via", &q_via.replace("q1", "q2"));
    q.send_to(&looped.to_bytes(), p.udp()).unwrap();
    let resp = recv_response(&q);
    assert_eq!((resp.code(), resp.reason()), (482, "Loop Detected"));
    assert_eq!(top_branch(&resp), "z9hG4bKq2");
    assert!(recv_within(&uas, QUIET).is_none(), "not forwarded");
}

#[test]
fn record_route_udp_to_udp_adds_one_entry() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0", "--record-route"]);
    let (uac, uas) = (udp(), udp());
    let uri = format!("sip:bob@127.0.0.1:{}", port(&uas));
    send(
        &uac,
        p.udp(),
        &request("INVITE", &uri, &uac_via(&uac, "z9hG4bKrr1"), "rr1@test", ""),
    );
    let req = recv_request(&uas);
    assert_eq!(
        values(&req, HeaderName::RecordRoute),
        [format!("<sip:127.0.0.1:{};lr>", p.udp_port())]
    );
    // The 200 carries it back to the UAC.
    answer(&uas, p.udp(), &req, 200, "OK");
    let ok = recv_response(&uac);
    assert_eq!(ok.code(), 200);
    assert_eq!(values(&ok, HeaderName::RecordRoute).len(), 1);
    // REGISTER creates no dialog: no Record-Route.
    send(
        &uac,
        p.udp(),
        &request(
            "REGISTER",
            &uri,
            &uac_via(&uac, "z9hG4bKreg"),
            "reg@test",
            "",
        ),
    );
    let reg = recv_request(&uas);
    assert!(values(&reg, HeaderName::RecordRoute).is_empty());
}

/// Reads one message from a stream (keep-alive line ends skipped).
fn read_stream(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Packet {
    let mut framer = StreamFramer::new(ParseLimits::default());
    loop {
        let skip = leading_line_ends(buf);
        buf.drain(..skip);
        if !buf.is_empty() {
            if let Some(len) = framer.message_len(buf).expect("framing") {
                let msg: Vec<u8> = buf.drain(..len).collect();
                return Packet::parse_with(&msg, &ParseLimits::default(), Framing::Stream)
                    .expect("a SIP message");
            }
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read within the bound: {e}"),
        }
    }
}

fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + BOUND;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(BOUND)).expect("timeout");
                return s;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                assert!(Instant::now() < deadline, "no connection from the proxy");
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn udp_in_tcp_out_gets_double_record_route_and_the_response_comes_back() {
    let uas = TcpListener::bind("127.0.0.1:0").expect("bind");
    let uas_addr = uas.local_addr().unwrap();
    let route = format!("tcp.test=tcp:{uas_addr}");
    let p = Proxy::start(&[
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--route",
        &route,
        "--record-route",
    ]);
    let tcp = p.tcp.expect("a TCP leg");
    let uac = udp();
    let rr_tcp = format!("<sip:127.0.0.1:{};transport=tcp;lr>", tcp.port());
    let rr_udp = format!("<sip:127.0.0.1:{};lr>", p.udp_port());
    send(
        &uac,
        p.udp(),
        &request(
            "INVITE",
            "sip:bob@tcp.test",
            &uac_via(&uac, "z9hG4bKtcp"),
            "tcp@test",
            "Max-Forwards: 70\r\n",
        ),
    );
    let mut stream = accept(&uas);
    let mut buf = Vec::new();
    let Packet::Request(req) = read_stream(&mut stream, &mut buf) else {
        panic!("expected the INVITE")
    };
    assert_eq!(req.uri().as_str(), "sip:bob@tcp.test");
    assert_eq!(req.max_forwards().unwrap(), Some(69));
    assert_proxy_via(&req, "TCP", tcp);
    // RFC 5658: the top entry is reachable from downstream (TCP), the
    // second from upstream (UDP).
    assert_eq!(
        values(&req, HeaderName::RecordRoute),
        [rr_tcp.clone(), rr_udp.clone()]
    );

    // The response comes back over TCP and leaves over UDP.
    let mut ok = Response::for_request(&req, 200, "OK");
    ok.set_to_tag("uas1");
    ok.headers_mut().push("Contact", "<sip:bob@tcp.test>");
    stream.write_all(&ok.to_bytes()).expect("write");
    let resp = recv_response(&uac);
    assert_eq!(resp.code(), 200);
    assert_eq!(vias(&resp).len(), 1);
    assert_eq!(top_branch(&resp), "z9hG4bKtcp");
    assert_eq!(
        values(&resp, HeaderName::RecordRoute),
        [rr_tcp.clone(), rr_udp.clone()]
    );

    // In the dialog the UAC's route set is the reverse: both entries name
    // the proxy and both are removed; the request goes on to the
    // Request-URI over TCP.
    let routes = format!("Route: {rr_udp}, {rr_tcp}\r\n");
    let bye = request(
        "BYE",
        "sip:bob@tcp.test",
        &uac_via(&uac, "z9hG4bKbye"),
        "tcp@test",
        &routes,
    )
    .replace(
        "To: <sip:bob@example.com>",
        "To: <sip:bob@example.com>;tag=uas1",
    )
    .replace("CSeq: 1 BYE", "CSeq: 2 BYE");
    send(&uac, p.udp(), &bye);
    let Packet::Request(fwd) = read_stream(&mut stream, &mut buf) else {
        panic!("expected the BYE")
    };
    assert_eq!(fwd.method().as_str(), "BYE");
    assert!(
        values(&fwd, HeaderName::Route).is_empty(),
        "{:?}",
        values(&fwd, HeaderName::Route)
    );
    assert_proxy_via(&fwd, "TCP", tcp);
}

#[test]
fn loose_route_naming_the_proxy_is_removed_and_the_next_is_used() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let next = format!("<sip:127.0.0.1:{};lr>", port(&uas));
    let routes = format!(
        "Route: <sip:127.0.0.1:{};lr>\r\nRoute: {next}\r\n",
        p.udp_port()
    );
    // The Request-URI does not resolve: only the Route can be the next hop.
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            "sip:bob@nowhere.invalid",
            &uac_via(&uac, "z9hG4bKlr"),
            "lr@test",
            &routes,
        ),
    );
    let req = recv_request(&uas);
    assert_eq!(req.uri().as_str(), "sip:bob@nowhere.invalid");
    assert_eq!(values(&req, HeaderName::Route), [next]);
    assert_proxy_via(&req, "UDP", p.udp());
}

#[test]
fn strict_next_hop_gets_the_request_uri_in_the_route_set() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    let strict = format!("sip:127.0.0.1:{}", port(&uas));
    let routes = format!("Route: <{strict}>\r\n");
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            "sip:bob@nowhere.invalid",
            &uac_via(&uac, "z9hG4bKsr"),
            "sr@test",
            &routes,
        ),
    );
    let req = recv_request(&uas);
    assert_eq!(req.uri().as_str(), strict);
    assert_eq!(
        values(&req, HeaderName::Route),
        ["<sip:bob@nowhere.invalid>"]
    );
}

#[test]
fn strict_router_upstream_gets_the_request_uri_restored() {
    let p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let (uac, uas) = (udp(), udp());
    // A strict router put the proxy's Record-Route URI into the
    // Request-URI and the remote target into the last Route.
    let rr = format!("sip:127.0.0.1:{};lr", p.udp_port());
    let target = format!("sip:bob@127.0.0.1:{}", port(&uas));
    let routes = format!("Route: <{target}>\r\n");
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            &rr,
            &uac_via(&uac, "z9hG4bKsu"),
            "su@test",
            &routes,
        ),
    );
    let req = recv_request(&uas);
    assert_eq!(req.uri().as_str(), target);
    assert!(values(&req, HeaderName::Route).is_empty());
}

#[test]
fn no_route_to_the_next_hop_gets_502() {
    // A TCP target nobody listens on: the connect is refused.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let route = format!("dead.test=tcp:{dead}");
    let p = Proxy::start(&[
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--route",
        &route,
    ]);
    let uac = udp();
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            "sip:bob@nowhere.invalid",
            &uac_via(&uac, "z9hG4bKnr"),
            "nr@test",
            "",
        ),
    );
    let resp = recv_response(&uac);
    assert_eq!(resp.code(), 502);
    assert!(
        resp.reason().starts_with("Bad Gateway (E"),
        "{}",
        resp.reason()
    );
    send(
        &uac,
        p.udp(),
        &request(
            "OPTIONS",
            "sip:bob@dead.test",
            &uac_via(&uac, "z9hG4bKdead"),
            "dead@test",
            "",
        ),
    );
    let resp = recv_response(&uac);
    assert_eq!(
        (resp.code(), resp.reason()),
        (502, "Bad Gateway (ECONNREFUSED)")
    );
    assert_eq!(top_branch(&resp), "z9hG4bKdead");
}

fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(proxy_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

#[test]
fn help_prints_usage_and_exits_0() {
    let (status, out, _) = run(&["--help"]);
    assert_eq!(status.code(), Some(0));
    assert!(out.starts_with("usage: stateless_proxy"), "{out}");
    for flag in [
        "--listen",
        "--route",
        "--outgoing-proxy",
        "--nameserver",
        "--record-route",
    ] {
        assert!(out.contains(flag), "{flag} in {out}");
    }
}

#[test]
fn bad_command_lines_exit_64_with_usage() {
    for args in [
        &["--bogus"][..],
        &["--listen"],
        &["--listen", "udp:localhost"],
        &["--route", "no-equals-sign"],
        &["--outgoing-proxy", "not a proxy"],
        &["--record-route=yes"],
        &["--nameserver", "not-an-address"],
    ] {
        let (status, out, err) = run(args);
        assert_eq!(status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains("usage: stateless_proxy"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn sigterm_ends_it_cleanly() {
    let mut p = Proxy::start(&["--listen", "udp:127.0.0.1:0"]);
    let pid = p.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(s) = p.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
}
