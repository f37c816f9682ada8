//! Running the example binaries (`uas`, `uac`, ...) from tests, and raw
//! SIP over UDP to talk to them: child processes killed on drop, bounded
//! waits everywhere, a small SIP message parser and request builder.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for waits that should end at once (a line, an exit, a
/// response); generous because the test machine is shared and slow.
pub const WAIT: Duration = Duration::from_secs(10);

/// The path of an example binary. Cargo builds the examples before the
/// integration tests, next to them: `target/debug/deps/TEST-HASH` ->
/// `target/debug/examples/NAME`.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/PROFILE/deps");
    let path = profile_dir.join("examples").join(name);
    // `cargo test` builds the examples, `cargo test --test NAME` does not:
    // refuse to test a missing or stale binary.
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}. Build the examples: `cargo build --examples` \
                 (a plain `cargo test` builds them, `cargo test --test NAME` does not)",
                path.display()
            )
        });
    // Stale: a source of the example changed after it was built. For the
    // library's sources only changes from before this test binary was
    // built count (a change made while the tests run, by someone editing
    // in parallel, makes this test binary just as old).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let test_built = std::fs::metadata(&exe).and_then(|m| m.modified()).ok();
    let sources = [
        (root.join("src"), test_built),
        (root.join("examples").join(format!("{name}.rs")), None),
        (root.join("examples").join("common"), None),
    ];
    let stale = sources
        .iter()
        .find_map(|(s, until)| changed_between(s, built, *until));
    if let Some(newer) = stale {
        panic!(
            "{} is older than {}: rebuild the examples with `cargo build --examples` \
             (a plain `cargo test` builds them, `cargo test --test NAME` does not)",
            path.display(),
            newer.display()
        );
    }
    path
}

/// A `.rs` file under `path` (or `path` itself) modified after `after`
/// (and not after `until`, when given).
fn changed_between(
    path: &std::path::Path,
    after: std::time::SystemTime,
    until: Option<std::time::SystemTime>,
) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        return std::fs::read_dir(path)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| changed_between(&e.path(), after, until));
    }
    let rust = path.extension().is_some_and(|e| e == "rs");
    let changed = meta
        .modified()
        .is_ok_and(|m| m > after && until.is_none_or(|u| m <= u));
    (rust && changed).then(|| path.to_owned())
}

/// A unique string per call, for Call-IDs, tags and branches.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
}

/// What a finished child left: exit status, stdout lines, stderr text.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Output {
    /// The exit code; panics (with the output) when killed by a signal.
    pub fn code(&self) -> i32 {
        match self.status.code() {
            Some(c) => c,
            None => panic!("killed by a signal: {self:?}"),
        }
    }
}

/// A running child process: killed (and reaped) on drop. Its stdout is
/// read line by line by a thread; its stderr is collected.
pub struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line taken from the channel so far.
    pub seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts an example binary with arguments.
    pub fn example(name: &str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(example(name));
        cmd.args(args);
        Proc::spawn(name, cmd)
    }

    /// Starts a command with piped stdout and stderr and no stdin.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let stderr_thread = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn context(&self) -> String {
        format!(
            "{} stdout so far: {:#?}\nstderr: {}",
            self.name,
            self.seen,
            self.stderr()
        )
    }

    /// The next stdout line, waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Waits (at most [`WAIT`]) for a stdout line equal to `want`, among
    /// the lines seen already or new ones.
    pub fn expect_line(&mut self, want: &str) -> String {
        self.expect_line_matching(want, |l| l == want)
    }

    /// Waits (at most [`WAIT`]) for a stdout line that `pred` accepts.
    pub fn expect_line_matching(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let end = Instant::now() + WAIT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no line {what:?} ({e:?}); {}", self.context()),
            }
        }
    }

    /// Collects the stdout lines arriving within `d`.
    pub fn drain_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if self.next_line(left).is_none() {
                break;
            }
        }
    }

    /// Sends a signal (`libc::SIGTERM`, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; it has not been reaped
        // (reaping happens only in `wait_exit`/drop, which take `self`).
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits at most `timeout` for the child to exit, then collects the
    /// rest of its output. Panics (after killing it) when it does not.
    pub fn wait_exit(mut self, timeout: Duration) -> Output {
        let end = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break status,
                None if Instant::now() >= end => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.drain_for(Duration::from_millis(200));
                    panic!(
                        "{} still running after {timeout:?}; {}",
                        self.name,
                        self.context()
                    );
                }
                None => thread::sleep(Duration::from_millis(5)),
            }
        };
        // The pipes close with the process (no grandchildren here).
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            self.seen.push(line);
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        Output {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs an example to its end (at most `timeout`).
pub fn run(name: &str, args: &[&str], timeout: Duration) -> Output {
    Proc::example(name, args).wait_exit(timeout)
}

/// A running `uas` and the addresses it printed, in `--listen` order.
pub struct Uas {
    pub proc: Proc,
    /// `(proto, addr)`: `("udp", 127.0.0.1:40000)`.
    pub legs: Vec<(String, SocketAddr)>,
}

impl Uas {
    /// Starts `uas` with these arguments (which must contain the
    /// `--listen`s) and reads its `listening PROTO:ADDR` lines.
    pub fn start(args: &[&str]) -> Uas {
        let listens = args.iter().filter(|a| **a == "--listen").count();
        assert!(listens > 0, "give uas --listen with port 0");
        let mut proc = Proc::example("uas", args);
        let mut legs = Vec::new();
        for _ in 0..listens {
            let Some(line) = proc.next_line(WAIT) else {
                panic!("uas printed no listening line; {}", proc.context());
            };
            let rest = line
                .strip_prefix("listening ")
                .unwrap_or_else(|| panic!("unexpected uas line {line:?}"));
            let (proto, addr) = rest.split_once(':').expect("PROTO:ADDR");
            let addr: SocketAddr = addr
                .parse()
                .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
            assert_ne!(addr.port(), 0, "uas must print the real port: {line:?}");
            legs.push((proto.to_owned(), addr));
        }
        Uas { proc, legs }
    }

    /// Starts `uas` on one UDP leg on 127.0.0.1 with extra arguments.
    pub fn udp(extra: &[&str]) -> Uas {
        let mut args = vec!["--listen", "udp:127.0.0.1:0"];
        args.extend_from_slice(extra);
        Uas::start(&args)
    }

    /// The first leg of this protocol and family.
    pub fn addr(&self, proto: &str, v6: bool) -> SocketAddr {
        self.legs
            .iter()
            .find(|(p, a)| p == proto && a.is_ipv6() == v6)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {proto} leg (v6 {v6}) in {:?}", self.legs))
    }
}

/// A SIP message as text: start line, headers in order, body.
#[derive(Clone, Debug)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

/// Long form of a compact header name, lower case.
fn long_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let long = match lower.as_str() {
        "i" => "call-id",
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "m" => "contact",
        "c" => "content-type",
        "l" => "content-length",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        _ => return lower,
    };
    long.to_owned()
}

impl Msg {
    pub fn parse(bytes: &[u8]) -> Msg {
        let raw = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or("").to_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Msg {
            start,
            headers,
            body: body.to_owned(),
            raw,
        }
    }

    /// The first value of a header (case-insensitive, compact forms too).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header, comma-separated values not split.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let want = long_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| long_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The status code of a response.
    pub fn code(&self) -> Option<u16> {
        let rest = self.start.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> &str {
        self.start.get(12..).unwrap_or("")
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.start.starts_with("SIP/") {
            return None;
        }
        self.start.split(' ').next()
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        self.method()?;
        self.start.split(' ').nth(1)
    }

    /// The method in CSeq.
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    pub fn to_tag(&self) -> Option<String> {
        tag_param(self.header("To")?)
    }

    pub fn tag_of_from(&self) -> Option<String> {
        tag_param(self.header("From")?)
    }

    /// `code CSEQ-METHOD`, for compact assertions: `"180 INVITE"`.
    pub fn summary(&self) -> String {
        match self.code() {
            Some(c) => format!("{c} {}", self.cseq_method().unwrap_or("?")),
            None => self.method().unwrap_or("?").to_owned(),
        }
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_param(value: &str) -> Option<String> {
    // Parameters after the name-addr's closing '>' (or the whole value).
    let params = value.rsplit_once('>').map(|(_, p)| p).unwrap_or(value);
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_owned())
    })
}

/// The URI inside `<...>` of a name-addr value.
pub fn angle_uri(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// A request under construction, written as text. Defaults: From with a
/// tag, To without, `CSeq: 1 METHOD`, Max-Forwards 70, Contact and Via
/// on the local address, no body.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub uri: String,
    pub version: String,
    /// The whole Via value; None for none.
    pub via: Option<String>,
    pub from: String,
    pub to: String,
    pub call_id: Option<String>,
    pub cseq: String,
    pub contact: Option<String>,
    pub extra: Vec<String>,
    pub content_type: Option<String>,
    pub body: String,
}

impl Req {
    pub fn new(method: &str, uri: &str, local: SocketAddr, call_id: &str, branch: &str) -> Req {
        Req {
            method: method.to_owned(),
            uri: uri.to_owned(),
            version: "SIP/2.0".to_owned(),
            via: Some(format!("SIP/2.0/UDP {local};branch={branch};rport")),
            from: format!("<sip:alice@{}>;tag=a{}", host(local.ip()), unique("")),
            to: format!("<{uri}>"),
            call_id: Some(call_id.to_owned()),
            cseq: format!("1 {method}"),
            contact: Some(format!("<sip:alice@{local}>")),
            extra: Vec::new(),
            content_type: None,
            body: String::new(),
        }
    }

    /// Adds a header line (`"Require: foo"`).
    pub fn with(mut self, line: &str) -> Req {
        self.extra.push(line.to_owned());
        self
    }

    pub fn with_body(mut self, content_type: &str, body: &str) -> Req {
        self.content_type = Some(content_type.to_owned());
        self.body = body.to_owned();
        self
    }

    /// A request in the same transaction/dialog: same From, To, Call-ID,
    /// Via unless changed.
    pub fn follow(&self, method: &str, cseq: &str) -> Req {
        let mut r = self.clone();
        r.method = method.to_owned();
        r.cseq = cseq.to_owned();
        r.extra.clear();
        r.content_type = None;
        r.body.clear();
        r
    }

    pub fn text(&self) -> String {
        let mut s = format!("{} {} {}\r\n", self.method, self.uri, self.version);
        if let Some(v) = &self.via {
            s += &format!("Via: {v}\r\n");
        }
        s += &format!(
            "Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n",
            self.from, self.to
        );
        if let Some(c) = &self.call_id {
            s += &format!("Call-ID: {c}\r\n");
        }
        s += &format!("CSeq: {}\r\n", self.cseq);
        if let Some(c) = &self.contact {
            s += &format!("Contact: {c}\r\n");
        }
        for line in &self.extra {
            s += line;
            s += "\r\n";
        }
        if let Some(ct) = &self.content_type {
            s += &format!("Content-Type: {ct}\r\n");
        }
        s += &format!("Content-Length: {}\r\n\r\n{}", self.body.len(), self.body);
        s
    }
}

/// An IP as it appears in a URI host.
pub fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// An SDP offer for raw INVITEs.
pub const SDP: &str = "v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

/// A raw UDP endpoint speaking SIP as text.
pub struct UdpPeer {
    pub sock: UdpSocket,
}

/// A message received by a [`UdpPeer`], with its source and arrival time.
#[derive(Clone, Debug)]
pub struct Got {
    pub msg: Msg,
    pub from: SocketAddr,
    pub at: Instant,
}

impl UdpPeer {
    pub fn bind(ip: &str) -> UdpPeer {
        let sock = UdpSocket::bind((ip, 0)).expect("bind UDP");
        UdpPeer { sock }
    }

    pub fn local(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    pub fn send(&self, text: &str, to: SocketAddr) {
        self.sock.send_to(text.as_bytes(), to).expect("send_to");
    }

    pub fn send_req(&self, req: &Req, to: SocketAddr) {
        self.send(&req.text(), to)
    }

    /// The next datagram within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Got> {
        let mut buf = vec![0u8; 65536];
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    return Some(Got {
                        msg: Msg::parse(&buf[..n]),
                        from,
                        at: Instant::now(),
                    });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                // ICMP errors from earlier sends; keep waiting.
                Err(_) => continue,
            }
        }
    }

    /// Every datagram arriving within `d`.
    pub fn recv_for(&self, d: Duration) -> Vec<Got> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(g) => out.push(g),
                None => break,
            }
        }
        out
    }

    /// Waits (at most [`WAIT`]) for a message `pred` accepts; others are
    /// returned too, in order, in the second element.
    pub fn expect(&self, what: &str, pred: impl Fn(&Msg) -> bool) -> (Got, Vec<Got>) {
        let end = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(g) if pred(&g.msg) => return (g, before),
                Some(g) => before.push(g),
                None => panic!(
                    "no {what} within {WAIT:?}; got {:?}",
                    before
                        .iter()
                        .map(|g| g.msg.start.clone())
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for the response with this code and CSeq method.
    pub fn expect_response(&self, code: u16, cseq_method: &str) -> Got {
        self.expect(&format!("{code} {cseq_method}"), |m| {
            m.code() == Some(code) && m.cseq_method() == Some(cseq_method)
        })
        .0
    }

    /// Asserts that nothing arrives within `d`.
    pub fn expect_silence(&self, d: Duration) {
        let got = self.recv_for(d);
        assert!(
            got.is_empty(),
            "expected nothing, got {:?}",
            got.iter().map(|g| g.msg.start.clone()).collect::<Vec<_>>()
        );
    }
}

/// A response to a request received raw: Via, From, To (with `to_tag`
/// added when given), Call-ID, CSeq copied.
pub fn response_to(req: &Msg, code: u16, reason: &str, to_tag: Option<&str>) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.header_all("Via") {
        s += &format!("Via: {v}\r\n");
    }
    s += &format!("From: {}\r\n", req.header("From").unwrap_or(""));
    let to = req.header("To").unwrap_or("");
    match to_tag {
        Some(t) if tag_param(to).is_none() => s += &format!("To: {to};tag={t}\r\n"),
        _ => s += &format!("To: {to}\r\n"),
    }
    s += &format!(
        "Call-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        req.call_id().unwrap_or(""),
        req.header("CSeq").unwrap_or("")
    );
    s
}

/// A UDP port on 127.0.0.1 that nothing listens on (bound, then closed).
pub fn closed_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// How many lines `pred` accepts.
pub fn count_matching(lines: &[String], pred: impl Fn(&str) -> bool) -> usize {
    lines.iter().filter(|l| pred(l)).count()
}

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(&format!("sip-dispatch-{prefix}-")));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes a file in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 free for both UDP and TCP right now (for peers
/// that cannot be told to pick one and print it). Another process may
/// take it before the peer binds it: callers retry.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether something has bound `port` on 127.0.0.1 (or the wildcard
/// address) for this protocol: our own bind attempt fails.
pub fn port_taken(proto: &str, port: u16) -> bool {
    match proto {
        "udp" => UdpSocket::bind(("127.0.0.1", port)).is_err(),
        _ => std::net::TcpListener::bind(("127.0.0.1", port)).is_err(),
    }
}

/// Panics with what to install unless `cmd args` can be run (and, with
/// `need_success`, succeeds): interop tests must not pass without their
/// peer.
pub fn require_peer(cmd: &str, args: &[&str], need_success: bool, install: &str) {
    let ok = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success() || !need_success);
    assert!(
        ok,
        "interop peer missing: `{cmd} {}` failed. Install it: `apt-get install {install}` \
         (scripts/install-peers does this)",
        args.join(" ")
    );
}
