//! `uas --threads N` (issue #8): N dispatchers, one per thread, sharing
//! the listen ports with `SO_REUSEPORT`. Seen from outside it must be
//! one UAS: one `listening` line per leg with the real port, one answer
//! per request, a retransmission answered from the cache of the thread
//! that answered the original (the kernel sends one source port to one
//! thread), and one stdout line per transaction, whole, whichever thread
//! wrote it.

mod bins;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bins::{Msg, Req, Uas, UdpPeer, WAIT, run, unique};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How many threads the process runs (Linux: `/proc/PID/task`). The uas
/// starts every thread before it prints its listening lines.
fn thread_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"))
        .count()
}

/// The `branch` parameter of the top Via.
fn top_branch(msg: &Msg) -> Option<String> {
    msg.header("Via")?
        .split(',')
        .next()?
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("branch")
                .then(|| v.trim().to_owned())
        })
}

/// Every datagram already queued on `peer` after a pause, without
/// waiting for more: what arrived beyond the one expected answer.
fn extra_datagrams(peers: &[Client]) -> Vec<String> {
    std::thread::sleep(ms(300));
    let mut extra = Vec::new();
    let mut buf = vec![0u8; 65536];
    for c in peers {
        c.peer.sock.set_nonblocking(true).unwrap();
        // Bounded: a peer that floods still ends the loop.
        for _ in 0..16 {
            match c.peer.sock.recv_from(&mut buf) {
                Ok((n, _)) => extra.push(format!("{}: {}", c.call_id, Msg::parse(&buf[..n]).start)),
                Err(_) => break,
            }
        }
        c.peer.sock.set_nonblocking(false).unwrap();
    }
    extra
}

/// A client socket on its own kernel-chosen port, with its request.
struct Client {
    peer: UdpPeer,
    call_id: String,
    branch: String,
    /// The request's exact bytes: sent again as the retransmission.
    text: String,
}

impl Client {
    fn new(to: SocketAddr) -> Client {
        let peer = UdpPeer::bind("127.0.0.1");
        let (call_id, branch) = (unique("thr-"), unique("z9hG4bK-thr-"));
        let req = Req::new(
            "OPTIONS",
            &format!("sip:bob@{to}"),
            peer.local(),
            &call_id,
            &branch,
        );
        Client {
            peer,
            call_id,
            branch,
            text: req.text(),
        }
    }

    /// The next datagram: it must be the 200 to this client's OPTIONS.
    fn expect_200(&self, what: &str) -> Msg {
        let Some(got) = self.peer.recv(WAIT) else {
            panic!("{}: no answer to the {what} within {WAIT:?}", self.call_id);
        };
        let msg = got.msg;
        assert_eq!(msg.summary(), "200 OPTIONS", "{what}: {}", msg.raw);
        assert_eq!(msg.call_id(), Some(self.call_id.as_str()), "{}", msg.raw);
        assert_eq!(
            top_branch(&msg).as_deref(),
            Some(self.branch.as_str()),
            "{}",
            msg.raw
        );
        assert!(msg.to_tag().is_some(), "a To tag: {}", msg.raw);
        msg
    }
}

/// 64 source ports against two threads: each request answered exactly
/// once with its own Call-ID and branch; each retransmission answered
/// again, exactly once, byte for byte with the first answer (the To tag
/// is random per answer, so only the cache of the thread that answered
/// first can give the same bytes); one stdout line per Call-ID; SIGTERM
/// stops both threads with exit 0.
#[test]
fn two_threads_answer_64_source_ports_once_and_retransmissions_from_the_cache() {
    const CLIENTS: usize = 64;
    let mut uas = Uas::start(&["--threads", "2", "--listen", "udp:127.0.0.1:0"]);
    assert_eq!(thread_count(uas.proc.pid()), 2, "one thread per --threads");
    let to = uas.addr("udp", false);
    let clients: Vec<Client> = (0..CLIENTS).map(|_| Client::new(to)).collect();

    // All at once: both threads have work at the same time.
    for c in &clients {
        c.peer.send(&c.text, to);
    }
    let first: Vec<Msg> = clients.iter().map(|c| c.expect_200("OPTIONS")).collect();
    let extra = extra_datagrams(&clients);
    assert!(
        extra.is_empty(),
        "one answer per request, got more: {extra:?}"
    );

    for c in &clients {
        c.peer.send(&c.text, to);
    }
    for (c, first) in clients.iter().zip(&first) {
        let again = c.expect_200("retransmitted OPTIONS");
        assert_eq!(
            again.raw, first.raw,
            "{}: the cached answer, byte for byte",
            c.call_id
        );
    }
    let extra = extra_datagrams(&clients);
    assert!(
        extra.is_empty(),
        "one answer per retransmission, got more: {extra:?}"
    );

    // The lines are written when a thread goes idle: all there now.
    for c in &clients {
        uas.proc
            .expect_line(&format!("OPTIONS {} -> 200", c.call_id));
    }
    uas.proc.signal(libc::SIGTERM);
    let out = uas.proc.wait_exit(ms(3000));
    assert_eq!(out.code(), 0, "{out:?}");

    // Whole lines only (two threads never mix inside one), one listening
    // line for the one leg, one line per Call-ID.
    let mut per_call: HashMap<&str, usize> = HashMap::new();
    let mut listening = 0;
    for line in &out.stdout {
        if line.starts_with("listening ") {
            listening += 1;
            continue;
        }
        let call_id = line
            .strip_prefix("OPTIONS ")
            .and_then(|rest| rest.strip_suffix(" -> 200"))
            .unwrap_or_else(|| panic!("not a whole transaction line: {line:?}"));
        *per_call.entry(call_id).or_default() += 1;
    }
    assert_eq!(listening, 1, "{:?}", out.stdout);
    for c in &clients {
        assert_eq!(
            per_call.get(c.call_id.as_str()),
            Some(&1),
            "{}: {:?}",
            c.call_id,
            out.stdout
        );
    }
    assert_eq!(per_call.len(), CLIENTS, "{:?}", out.stdout);
}

/// Reads one SIP message (framed by Content-Length) from a stream.
fn read_message(stream: &mut TcpStream) -> Msg {
    let end = Instant::now() + WAIT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head_len = head + 4;
            let len: usize = Msg::parse(&buf[..head_len])
                .header("Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= head_len + len {
                return Msg::parse(&buf[..head_len + len]);
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no whole message within {WAIT:?}: {buf:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        let n = stream.read(&mut chunk).expect("read a response");
        assert!(n > 0, "connection closed; read so far: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Two legs (UDP and TCP), three threads: one listening line per leg
/// with its real port, TCP connections spread over the threads' shared
/// listening port all answered, SIGINT stops every thread with exit 0.
#[test]
fn three_threads_print_one_listening_line_per_leg_and_share_tcp() {
    let mut uas = Uas::start(&[
        "--threads",
        "3",
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
    ]);
    assert_eq!(thread_count(uas.proc.pid()), 3);
    assert_eq!(uas.legs.len(), 2, "{:?}", uas.legs);
    let tcp = uas.addr("tcp", false);
    let mut call_ids = Vec::new();
    for _ in 0..12 {
        let mut stream = TcpStream::connect(tcp).expect("connect to the uas");
        let local = stream.local_addr().unwrap();
        let (call_id, branch) = (unique("thr-tcp-"), unique("z9hG4bK-tcp-"));
        let mut req = Req::new(
            "OPTIONS",
            &format!("sip:bob@{tcp}"),
            local,
            &call_id,
            &branch,
        );
        req.via = Some(format!("SIP/2.0/TCP {local};branch={branch}"));
        stream.write_all(req.text().as_bytes()).unwrap();
        let resp = read_message(&mut stream);
        assert_eq!(resp.summary(), "200 OPTIONS", "{}", resp.raw);
        assert_eq!(resp.call_id(), Some(call_id.as_str()), "{}", resp.raw);
        call_ids.push(call_id);
    }
    let udp = Client::new(uas.addr("udp", false));
    udp.peer.send(&udp.text, uas.addr("udp", false));
    udp.expect_200("OPTIONS over UDP");
    call_ids.push(udp.call_id.clone());
    for call_id in &call_ids {
        uas.proc.expect_line(&format!("OPTIONS {call_id} -> 200"));
    }
    uas.proc.signal(libc::SIGINT);
    let out = uas.proc.wait_exit(ms(3000));
    assert_eq!(out.code(), 0, "{out:?}");
    let listening: Vec<&String> = out
        .stdout
        .iter()
        .filter(|l| l.starts_with("listening "))
        .collect();
    assert_eq!(listening.len(), 2, "once per leg, not per thread: {out:?}");
    for call_id in &call_ids {
        let lines = bins::count_matching(&out.stdout, |l| l.contains(call_id.as_str()));
        assert_eq!(lines, 1, "{call_id}: {out:?}");
    }
}

/// Without `--threads` the uas stays a single thread (and keeps its port
/// to itself: no `SO_REUSEPORT`).
#[test]
fn one_thread_by_default_and_its_port_is_not_shared() {
    let uas = Uas::udp(&[]);
    assert_eq!(thread_count(uas.proc.pid()), 1);
    let addr = uas.addr("udp", false);
    // Another socket asking to share the port is refused.
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    socket.set_reuse_port(true).unwrap();
    assert!(socket.bind(&addr.into()).is_err(), "{addr} shared");
}

#[test]
fn bad_thread_counts_are_usage_errors_and_help_names_the_flag() {
    for n in ["0", "x", "-1", "1025"] {
        let out = run(
            "uas",
            &["--threads", n, "--listen", "udp:127.0.0.1:0"],
            WAIT,
        );
        assert_eq!(out.code(), 64, "--threads {n}: {out:?}");
        assert!(out.stdout.is_empty(), "--threads {n}: {out:?}");
        assert!(out.stderr.contains("usage: uas "), "--threads {n}: {out:?}");
    }
    let out = run("uas", &["--help"], WAIT);
    assert_eq!(out.code(), 0, "{out:?}");
    let help = out.stdout.join("\n");
    assert!(help.contains("--threads N"), "{help}");
    assert!(help.contains("SO_REUSEPORT"), "{help}");
}
