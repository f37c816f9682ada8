//! The load generator of `bench/run`: keeps W SIP OPTIONS requests in
//! flight over UDP against one server and reports requests/s, latency
//! percentiles and its own CPU use.
//!
//! ```text
//! loadgen --target HOST:PORT [--mode uas|proxy] [--window W] [--duration S]
//!         [--warmup S] [--timeout-ms N] [--server-pid PID]...
//! ```
//!
//! - Requests are serialised once per window slot; each send patches a
//!   unique 16-hex-digit id (slot and generation) into fixed-width fields of
//!   the Via branch and the Call-ID, nothing else.
//! - A reply is matched by the branch of its top Via, whatever its start
//!   line: a response, or the request itself from a raw UDP echo.
//! - `sendmmsg`/`recvmmsg` on a level-triggered epoll: one `recvmmsg` per
//!   readiness, the requests it frees go out in one `sendmmsg`.
//! - `--mode proxy`: the Request-URI names a UAS inside this process (its
//!   own socket, answering 200 to every request it gets, in batches too), and
//!   the requests go to the target, a proxy. The back end costs the same for
//!   every proxy measured.
//! - A request unanswered after `--timeout-ms` (default 500) is counted
//!   lost and its slot reused with a new id.
//! - Warm-up (default 1 s) then the measurement (default 5 s): replies that
//!   arrive in the measurement count, with their latencies (send to match,
//!   nanoseconds, exact percentiles from a sorted vector).
//! - CPU: `getrusage` of this process over the measurement, as a fraction
//!   of the wall time (1.0: this core was saturated, so the generator may be
//!   the limit); with `--server-pid` (repeatable: Kamailio has several
//!   processes) also the server's, from `/proc/PID/stat`, and its RSS;
//!   and what the rest of the machine used meanwhile (`other_cpu`, in
//!   cores, from `/proc/stat`: other processes, interrupts, steal).
//!
//! Prints one line to stdout: `RESULT key=value ...` (see `Report::line`).
//! It is a tool of the benchmark suite, not an example program.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::exit;
use std::time::{Duration, Instant};

use socket2::SockAddr;

#[path = "common/wire.rs"]
mod wire;

use wire::{BRANCH_PREFIX, answer, find, put_hex, template};

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 64;
/// Receive buffer per datagram.
const DGRAM: usize = 4096;
/// Largest window: the slot number is 16 bits of the id.
const MAX_WINDOW: usize = 1 << 16;

const USAGE: &str = "usage: loadgen --target HOST:PORT [--mode uas|proxy] [--window W] [--duration S] [--warmup S] [--timeout-ms N] [--server-pid PID]...";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The target answers (a UAS, or an echo).
    Uas,
    /// The target forwards to the UAS in this process.
    Proxy,
}

struct Args {
    target: SocketAddr,
    mode: Mode,
    window: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    server_pids: Vec<u32>,
}

fn fail(msg: &str) -> ! {
    eprintln!("loadgen: {msg}");
    eprintln!("{USAGE}");
    exit(64)
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv == ["--bench"] {
        // `cargo bench` runs every bench target with `--bench`.
        println!("loadgen: a tool of bench/run (see bench/README.md); nothing to do");
        exit(0);
    }
    let mut a = Args {
        target: "127.0.0.1:5060".parse().expect("addr"),
        mode: Mode::Uas,
        window: 1,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        server_pids: Vec::new(),
    };
    let mut it = argv.into_iter();
    let secs = |v: &str| -> Duration {
        match v.parse::<f64>() {
            Ok(s) if s >= 0.0 && s.is_finite() => Duration::from_secs_f64(s),
            _ => fail(&format!("bad number of seconds {v:?}")),
        }
    };
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            exit(0);
        }
        if flag == "--bench" {
            continue;
        }
        let Some(v) = it.next() else {
            fail(&format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--target" => a.target = v.parse().unwrap_or_else(|_| fail("bad --target")),
            "--mode" => {
                a.mode = match v.as_str() {
                    "uas" => Mode::Uas,
                    "proxy" => Mode::Proxy,
                    _ => fail("--mode is uas or proxy"),
                }
            }
            "--window" => {
                a.window = v.parse().unwrap_or_else(|_| fail("bad --window"));
                if a.window == 0 || a.window > MAX_WINDOW {
                    fail("--window is 1 to 65536");
                }
            }
            "--duration" => a.duration = secs(&v),
            "--warmup" => a.warmup = secs(&v),
            "--timeout-ms" => {
                a.timeout =
                    Duration::from_millis(v.parse().unwrap_or_else(|_| fail("bad --timeout-ms")))
            }
            "--server-pid" => a
                .server_pids
                .push(v.parse().unwrap_or_else(|_| fail("bad --server-pid"))),
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    a
}

// ---- the request template ----

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.len() < 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in &s[..16] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

/// The id in the branch of the first Via (the first `branch=` of the
/// message: the start line never has one), when it is one of ours.
fn reply_id(msg: &[u8]) -> Option<u64> {
    let at = find(msg, b"branch=")? + b"branch=".len();
    let rest = &msg[at..];
    if !rest.starts_with(BRANCH_PREFIX) {
        return None;
    }
    parse_hex(&rest[BRANCH_PREFIX.len()..])
}

// ---- batched UDP ----

/// Buffers and headers for one `recvmmsg`.
struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new() -> RecvBatch {
        // SAFETY: plain C structs; all-zero is a valid value.
        let (addr, iov, hdr) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed(), std::mem::zeroed()) };
        RecvBatch {
            bufs: vec![0u8; BATCH * DGRAM],
            addrs: vec![addr; BATCH],
            iovs: vec![iov; BATCH],
            hdrs: vec![hdr; BATCH],
        }
    }

    /// One `recvmmsg` without waiting: the number of datagrams read.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * DGRAM..].as_mut_ptr().cast(),
                iov_len: DGRAM,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // An ICMP error for an earlier datagram (server not up yet).
                _ if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> &[u8] {
        &self.bufs[i * DGRAM..i * DGRAM + self.hdrs[i].msg_len as usize]
    }
}

/// A datagram to send and its destination.
type Msg<'a> = (&'a [u8], *const libc::sockaddr, libc::socklen_t);

/// Sends datagrams with `sendmmsg`, each to its own address. Returns how
/// many went; a full socket buffer drops the rest (they time out).
fn send_batch(fd: RawFd, msgs: &[Msg]) -> usize {
    let mut iovs: [libc::iovec; BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: plain C struct; all-zero is a valid value.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut total = 0;
    for chunk in msgs.chunks(BATCH) {
        for (i, (bytes, addr, len)) in chunk.iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = *addr as *mut libc::c_void;
            h.msg_namelen = *len;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        let mut off = 0;
        let mut retries = 0;
        while off < chunk.len() {
            // SAFETY: headers point at live buffers and addresses.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs[off..].as_mut_ptr(),
                    (chunk.len() - off) as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                off += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            retries += 1;
            if retries > 100 {
                break;
            }
            match e.raw_os_error() {
                // The server is not up yet: the datagram drew an ICMP error.
                Some(libc::ECONNREFUSED) => {}
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    std::thread::yield_now()
                }
                _ => {
                    eprintln!("loadgen: sendmmsg: {e}");
                    break;
                }
            }
        }
        total += off;
    }
    total
}

fn udp_socket() -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_recv_buffer_size(4 << 20)?;
    s.set_send_buffer_size(4 << 20)?;
    s.bind(&SockAddr::from(
        "127.0.0.1:0".parse::<SocketAddr>().expect("addr"),
    ))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

// ---- the UAS inside the generator (proxy mode) ----

struct Uas {
    socket: UdpSocket,
    batch: RecvBatch,
    out: Vec<Vec<u8>>,
    answered: u64,
}

impl Uas {
    /// Answers what one `recvmmsg` brings.
    fn serve(&mut self) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let n = self.batch.recv(fd)?;
        let mut k = 0;
        let mut which = [0usize; BATCH];
        for i in 0..n {
            if answer(self.batch.datagram(i), &mut self.out[i]) {
                which[k] = i;
                k += 1;
            }
        }
        let mut msgs: [Msg; BATCH] = [(&[], std::ptr::null(), 0); BATCH];
        for (m, &i) in msgs.iter_mut().zip(&which[..k]) {
            *m = (
                self.out[i].as_slice(),
                (&self.batch.addrs[i] as *const libc::sockaddr_storage).cast(),
                self.batch.hdrs[i].msg_hdr.msg_namelen,
            );
        }
        send_batch(fd, &msgs[..k]);
        self.answered += k as u64;
        Ok(())
    }
}

// ---- CPU and memory of processes ----

fn rusage_self() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User + system CPU of the processes, from /proc (clock ticks).
fn cpu_of(pids: &[u32]) -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of proc(5); `after` starts at field 3.
        ticks += f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    }
    Some(Duration::from_secs_f64(ticks as f64 / hz))
}

/// Busy CPU time of the whole machine (all CPUs, steal included), from
/// /proc/stat.
fn machine_busy() -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(Duration::from_secs_f64(busy as f64 / hz))
}

fn rss_kb_of(pids: &[u32]) -> Option<u64> {
    let mut kb = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        kb += line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    }
    Some(kb)
}

// ---- the generator ----

struct Slot {
    /// The request, its id fields patched at each send.
    buf: Vec<u8>,
    generation: u64,
    /// When the request in flight was sent (None: not in flight).
    sent: Option<Instant>,
}

#[derive(Default)]
struct Counts {
    completed: u64,
    ok_2xx: u64,
    other_response: u64,
    echoed_request: u64,
    lost: u64,
    stale: u64,
}

struct Epoll(RawFd);

impl Epoll {
    fn new(fds: &[RawFd]) -> io::Result<Epoll> {
        // SAFETY: plain syscalls on descriptors we own.
        unsafe {
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if ep < 0 {
                return Err(io::Error::last_os_error());
            }
            for &fd in fds {
                let mut ev = libc::epoll_event {
                    events: libc::EPOLLIN as u32,
                    u64: fd as u64,
                };
                if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(Epoll(ep))
        }
    }

    /// Waits (level-triggered) and returns the ready descriptors.
    fn wait(&self, out: &mut Vec<RawFd>, timeout_ms: i32) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: evs is a live array of the length given.
        let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), 4, timeout_ms) };
        out.clear();
        for ev in evs.iter().take(n.max(0) as usize) {
            out.push(ev.u64 as RawFd);
        }
    }
}

fn main() {
    let args = parse_args();
    if let Err(e) = run(&args) {
        eprintln!("loadgen: {e}");
        exit(1);
    }
}

fn run(args: &Args) -> io::Result<()> {
    let client = udp_socket()?;
    let local = client.local_addr()?;
    let mut uas = match args.mode {
        Mode::Proxy => Some(Uas {
            socket: udp_socket()?,
            batch: RecvBatch::new(),
            out: (0..BATCH).map(|_| Vec::with_capacity(DGRAM)).collect(),
            answered: 0,
        }),
        Mode::Uas => None,
    };
    let ruri = match &uas {
        Some(u) => u.socket.local_addr()?,
        None => args.target,
    };
    let tpl = template(local, ruri);
    let target = SockAddr::from(args.target);
    let (tptr, tlen) = (target.as_ptr().cast::<libc::sockaddr>(), target.len());
    let cfd = client.as_raw_fd();
    let mut fds = vec![cfd];
    if let Some(u) = &uas {
        fds.push(u.socket.as_raw_fd());
    }
    let ep = Epoll::new(&fds)?;
    let mut ready = Vec::with_capacity(4);
    let mut rx = RecvBatch::new();

    // Wait until the server answers (it may still be starting).
    let mut probe = tpl.bytes.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seq = 0u64;
    'prime: loop {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "no answer from {} within 10 s",
                args.target
            )));
        }
        // Slot 0xffff is never a window slot (window < 65536 here).
        seq += 1;
        let id = (seq << 16) | 0xffff;
        put_hex(&mut probe[tpl.branch_at..], id);
        put_hex(&mut probe[tpl.callid_at..], id);
        send_batch(cfd, &[(&probe, tptr, tlen)]);
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            ep.wait(&mut ready, 10);
            for &fd in &ready {
                if fd == cfd {
                    let n = rx.recv(cfd)?;
                    if (0..n).any(|i| reply_id(rx.datagram(i)).is_some()) {
                        break 'prime;
                    }
                } else if let Some(u) = uas.as_mut() {
                    u.serve()?;
                }
            }
        }
    }
    // Late answers to probes are ignored (slot 0xffff is no slot).

    let w = args.window;
    let mut slots: Vec<Slot> = (0..w)
        .map(|_| Slot {
            buf: tpl.bytes.clone(),
            generation: 0,
            sent: None,
        })
        .collect();
    let mut latencies: Vec<u32> = Vec::with_capacity(1 << 22);
    let mut counts = Counts::default();
    let mut to_send: Vec<usize> = (0..w).collect();
    let start = Instant::now();
    let t_measure = start + args.warmup;
    let t_end = t_measure + args.duration;
    let mut measuring = false;
    let (mut cpu0, mut srv0, mut wall0) = (Duration::ZERO, None, start);
    let mut busy0 = None;
    let mut next_sweep = start + Duration::from_millis(10);
    loop {
        // Send what the last round freed.
        if !to_send.is_empty() {
            let now = Instant::now();
            for &s in &to_send {
                let slot = &mut slots[s];
                let id = (slot.generation << 16) | s as u64;
                put_hex(&mut slot.buf[tpl.branch_at..], id);
                put_hex(&mut slot.buf[tpl.callid_at..], id);
                slot.sent = Some(now);
            }
            let mut msgs: [Msg; BATCH] = [(&[], tptr, tlen); BATCH];
            for chunk in to_send.chunks(BATCH) {
                for (m, &s) in msgs.iter_mut().zip(chunk) {
                    *m = (slots[s].buf.as_slice(), tptr, tlen);
                }
                send_batch(cfd, &msgs[..chunk.len()]);
            }
            to_send.clear();
        }
        ep.wait(&mut ready, 5);
        let now = Instant::now();
        if !measuring && now >= t_measure {
            measuring = true;
            cpu0 = rusage_self();
            srv0 = cpu_of(&args.server_pids);
            busy0 = machine_busy();
            wall0 = now;
        }
        if now >= t_end {
            break;
        }
        for &fd in &ready {
            if fd != cfd {
                if let Some(u) = uas.as_mut() {
                    u.serve()?;
                }
                continue;
            }
            let n = rx.recv(cfd)?;
            let now = Instant::now();
            for i in 0..n {
                let msg = rx.datagram(i);
                let Some(id) = reply_id(msg) else { continue };
                let (s, generation) = ((id & 0xffff) as usize, id >> 16);
                let Some(slot) = slots.get_mut(s) else {
                    continue;
                };
                match slot.sent {
                    Some(sent) if slot.generation == generation => {
                        if measuring {
                            let ns = (now - sent).as_nanos().min(u32::MAX as u128) as u32;
                            latencies.push(ns);
                            counts.completed += 1;
                            if msg.starts_with(b"SIP/2.0 2") {
                                counts.ok_2xx += 1;
                            } else if msg.starts_with(b"SIP/2.0 ") {
                                counts.other_response += 1;
                            } else {
                                counts.echoed_request += 1;
                            }
                        }
                        slot.sent = None;
                        slot.generation += 1;
                        to_send.push(s);
                    }
                    _ => counts.stale += 1,
                }
            }
        }
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(10);
            for (s, slot) in slots.iter_mut().enumerate() {
                if let Some(sent) = slot.sent {
                    if now - sent > args.timeout {
                        if measuring {
                            counts.lost += 1;
                        }
                        slot.sent = None;
                        slot.generation += 1;
                        to_send.push(s);
                    }
                }
            }
        }
    }
    let wall = Instant::now() - wall0;
    let cpu = rusage_self().saturating_sub(cpu0);
    let srv = match (srv0, cpu_of(&args.server_pids)) {
        (Some(a), Some(b)) if !args.server_pids.is_empty() => Some(b.saturating_sub(a)),
        _ => None,
    };
    // What the rest of the machine used meanwhile (other processes,
    // interrupts, steal), in cores: these VMs are shared.
    let other = match (busy0, machine_busy()) {
        (Some(a), Some(b)) => Some(
            (b.saturating_sub(a).as_secs_f64()
                - cpu.as_secs_f64()
                - srv.map_or(0.0, |d| d.as_secs_f64()))
            .max(0.0),
        ),
        _ => None,
    };
    let rss = if args.server_pids.is_empty() {
        None
    } else {
        rss_kb_of(&args.server_pids)
    };
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let k = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[k - 1] as f64 / 1000.0
    };
    let mean = if latencies.is_empty() {
        f64::NAN
    } else {
        latencies.iter().map(|&x| x as f64).sum::<f64>() / latencies.len() as f64 / 1000.0
    };
    let secs = wall.as_secs_f64();
    let fmt_opt = |v: Option<f64>| v.map_or("NA".to_owned(), |x| format!("{x:.3}"));
    println!(
        "RESULT mode={mode} window={w} seconds={secs:.3} completed={c} rps={rps:.0} \
         p50_us={p50:.1} p99_us={p99:.1} p999_us={p999:.1} mean_us={mean:.1} \
         ok_2xx={ok} other_response={other} echoed_request={echo} lost={lost} stale={stale} \
         lg_cpu={lg:.3} server_cpu={srv} other_cpu={oth} server_rss_kb={rss} uas_answered={ua}",
        mode = if args.mode == Mode::Uas {
            "uas"
        } else {
            "proxy"
        },
        c = counts.completed,
        rps = counts.completed as f64 / secs,
        p50 = pct(0.50),
        p99 = pct(0.99),
        p999 = pct(0.999),
        ok = counts.ok_2xx,
        other = counts.other_response,
        echo = counts.echoed_request,
        lost = counts.lost,
        stale = counts.stale,
        lg = cpu.as_secs_f64() / secs,
        srv = fmt_opt(srv.map(|d| d.as_secs_f64() / secs)),
        oth = fmt_opt(other.map(|d| d / secs)),
        rss = rss.map_or("NA".to_owned(), |k| k.to_string()),
        ua = uas.as_ref().map_or(0, |u| u.answered),
    );
    Ok(())
}
