//! The driver of `bench/run`: starts each server pinned to its core, runs
//! the load generator pinned to the other, repeats, takes medians, and
//! writes the table, the CSVs and the plot; then runs the scale and
//! allocation measurements and, when `perf` works, profiles the uas and the
//! stateless proxy under load.
//!
//! `bench/run` builds everything and calls this with the paths of the
//! binaries; see `bench/README.md`. Options:
//!
//! ```text
//! suite --uas P --proxy P --echo P --loadgen P --scale P [--kamailio P|none]
//!       [--kamailio-cfg DIR] [--out DIR] [--duration S] [--warmup S]
//!       [--runs N] [--windows 1,64] [--server-cpu N] [--loadgen-cpu N]
//!       [--no-scale] [--no-profile] [--no-rt]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio, exit};
use std::time::{Duration, Instant};

#[path = "common/wire.rs"]
mod wire;

struct Opts {
    uas: PathBuf,
    proxy: PathBuf,
    echo: PathBuf,
    loadgen: PathBuf,
    scale: PathBuf,
    kamailio: Option<PathBuf>,
    kamailio_cfg: PathBuf,
    out: PathBuf,
    duration: f64,
    warmup: f64,
    runs: usize,
    windows: Vec<usize>,
    server_cpu: usize,
    loadgen_cpu: usize,
    scale_on: bool,
    profile_on: bool,
    rt: bool,
}

const USAGE: &str = "usage: suite --uas P --proxy P --echo P --loadgen P --scale P [--kamailio P|none] [--kamailio-cfg DIR] [--out DIR] [--duration S] [--warmup S] [--runs N] [--windows 1,64] [--server-cpu N] [--loadgen-cpu N] [--no-scale] [--no-profile] [--no-rt]";

fn usage(msg: &str) -> ! {
    eprintln!("suite: {msg}");
    eprintln!("{USAGE}");
    exit(64)
}

fn parse_opts() -> Opts {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv == ["--bench"] {
        // `cargo bench` runs every bench target with `--bench`.
        println!("suite: the driver of bench/run (see bench/README.md); run bench/run");
        exit(0);
    }
    let mut o = Opts {
        uas: PathBuf::new(),
        proxy: PathBuf::new(),
        echo: PathBuf::new(),
        loadgen: PathBuf::new(),
        scale: PathBuf::new(),
        kamailio: None,
        kamailio_cfg: PathBuf::from("bench/kamailio"),
        out: PathBuf::from("bench/results"),
        duration: 5.0,
        warmup: 1.0,
        runs: 3,
        windows: vec![1, 64],
        server_cpu: 1,
        loadgen_cpu: 0,
        scale_on: true,
        profile_on: true,
        rt: true,
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--no-scale" => {
                o.scale_on = false;
                continue;
            }
            "--no-profile" => {
                o.profile_on = false;
                continue;
            }
            "--no-rt" => {
                o.rt = false;
                continue;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                exit(0)
            }
            _ => {}
        }
        let v = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| -> f64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: bad number {v:?}")))
        };
        match flag.as_str() {
            "--uas" => o.uas = v.into(),
            "--proxy" => o.proxy = v.into(),
            "--echo" => o.echo = v.into(),
            "--loadgen" => o.loadgen = v.into(),
            "--scale" => o.scale = v.into(),
            "--kamailio" => o.kamailio = (v != "none" && !v.is_empty()).then(|| v.into()),
            "--kamailio-cfg" => o.kamailio_cfg = v.into(),
            "--out" => o.out = v.into(),
            "--duration" => o.duration = num(&v),
            "--warmup" => o.warmup = num(&v),
            "--runs" => o.runs = num(&v) as usize,
            "--windows" => {
                o.windows = v
                    .split(',')
                    .map(|w| {
                        w.parse()
                            .unwrap_or_else(|_| usage(&format!("bad window {w:?}")))
                    })
                    .collect()
            }
            "--server-cpu" => o.server_cpu = num(&v) as usize,
            "--loadgen-cpu" => o.loadgen_cpu = num(&v) as usize,
            _ => usage(&format!("unknown argument {flag:?}")),
        }
    }
    for (name, p) in [
        ("--uas", &o.uas),
        ("--proxy", &o.proxy),
        ("--echo", &o.echo),
        ("--loadgen", &o.loadgen),
        ("--scale", &o.scale),
    ] {
        if !p.is_file() {
            usage(&format!("{name} {}: no such file", p.display()));
        }
    }
    o.runs = o.runs.max(1);
    o
}

// ---- the cases ----

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Echo,
    Uas,
    Proxy,
    KamUas,
    KamProxy,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::Uas => "uas",
            Kind::Proxy => "stateless_proxy",
            Kind::KamUas => "kamailio_uas",
            Kind::KamProxy => "kamailio_proxy",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Echo => "raw UDP echo (mio)",
            Kind::Uas => "our uas (OPTIONS -> 200)",
            Kind::Proxy => "our stateless_proxy -> UAS",
            Kind::KamUas => "Kamailio sl_send_reply (1 worker, fm)",
            Kind::KamProxy => "Kamailio forward() -> UAS (1 worker, fm)",
        }
    }

    fn mode(self) -> &'static str {
        match self {
            Kind::Proxy | Kind::KamProxy => "proxy",
            _ => "uas",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Kind::Echo => "#9e9e9e",
            Kind::Uas => "#1f77b4",
            Kind::Proxy => "#2ca02c",
            Kind::KamUas => "#ff7f0e",
            Kind::KamProxy => "#d62728",
        }
    }
}

// ---- servers ----

/// Whether processes run at real-time priority (`chrt -f 50`): set once
/// at start.
static RT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A command that runs `prog` pinned to `cpu` (`taskset`), at real-time
/// priority when [`RT`] is set (`chrt -f 50`, inherited by Kamailio's
/// workers): on a shared VM the other processes' time slices would
/// otherwise decide the wake-up latencies of every run (p99 of 3 ms
/// instead of 0.1 ms, and whichever server needs more CPU losing most).
/// The servers and the generator block in epoll when idle, so they leave
/// the cores to the rest whenever they wait.
fn pinned(cpu: usize, prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd;
    if RT.load(std::sync::atomic::Ordering::Relaxed) {
        cmd = Command::new("chrt");
        cmd.args(["-f", "50", "taskset"]);
    } else {
        cmd = Command::new("taskset");
    }
    cmd.arg("-c").arg(cpu.to_string()).arg(prog);
    cmd
}

struct Server {
    child: Child,
    port: u16,
    pids: Vec<u32>,
}

fn free_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn log_file(o: &Opts, name: &str) -> Stdio {
    let dir = o.out.join("logs");
    let _ = std::fs::create_dir_all(&dir);
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
    {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

fn start_server(o: &Opts, kind: Kind, rundir: &Path) -> io::Result<Server> {
    let port = free_port()?;
    let listen = format!("udp:127.0.0.1:{port}");
    let prog = match kind {
        Kind::Echo => o.echo.clone(),
        Kind::Uas => o.uas.clone(),
        Kind::Proxy => o.proxy.clone(),
        Kind::KamUas | Kind::KamProxy => o.kamailio.clone().expect("kamailio"),
    };
    let mut cmd = pinned(o.server_cpu, prog);
    match kind {
        Kind::Echo | Kind::Uas | Kind::Proxy => cmd.args(["--listen", &listen]),
        Kind::KamUas | Kind::KamProxy => {
            let cfg = o.kamailio_cfg.join(if kind == Kind::KamUas {
                "uas.cfg"
            } else {
                "proxy.cfg"
            });
            std::fs::create_dir_all(rundir)?;
            cmd.arg("-f")
                .arg(cfg)
                .args([
                    "-l", &listen, "-x", "fm", "-m", "64", "-M", "16", "-DD", "-E",
                ])
                .arg("-Y")
                .arg(rundir)
        }
    };
    // The uas prints a line per transaction: to /dev/null, as a deployment
    // that does not read them would.
    cmd.stdin(Stdio::null())
        .stdout(match kind {
            Kind::Echo | Kind::Uas | Kind::Proxy => Stdio::null(),
            _ => log_file(o, kind.name()),
        })
        .stderr(log_file(o, kind.name()));
    let child = cmd.spawn()?;
    let mut s = Server {
        port,
        pids: vec![child.id()],
        child,
    };
    if let Err(e) = wait_ready(&mut s) {
        stop_server(&mut s);
        return Err(e);
    }
    // Kamailio's workers (taskset exec's the server: the child is it).
    s.pids = descendants(s.child.id());
    Ok(s)
}

/// Sends OPTIONS (Request-URI: the probe socket itself, so that a proxy
/// forwards it back) until anything comes back.
fn wait_ready(s: &mut Server) -> io::Result<()> {
    let probe = UdpSocket::bind("127.0.0.1:0")?;
    probe.set_read_timeout(Some(Duration::from_millis(50)))?;
    let me = probe.local_addr()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    let mut n = 0u32;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = s.child.try_wait() {
            return Err(io::Error::other(format!("server exited: {status}")));
        }
        n += 1;
        let msg = format!(
            "OPTIONS sip:probe@{me} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n};rport\r\n\
             Max-Forwards: 70\r\nTo: <sip:probe@{me}>\r\nFrom: <sip:probe@{me}>;tag=p\r\n\
             Call-ID: probe{n}@suite\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = probe.send_to(msg.as_bytes(), ("127.0.0.1", s.port));
        if probe.recv(&mut buf).is_ok() {
            return Ok(());
        }
    }
    Err(io::Error::other("server not answering after 15 s"))
}

/// `pid` and its descendants, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                if let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) {
                    if let Some(pp) = after.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                        parent.push((p, pp));
                    }
                }
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process id we started.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn stop_server(s: &mut Server) {
    let pids = descendants(s.child.id());
    signal(s.child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = s.child.kill();
                let _ = s.child.wait();
                break;
            }
        }
    }
    // Kamailio's workers normally go with the main process.
    std::thread::sleep(Duration::from_millis(50));
    for p in pids.into_iter().skip(1) {
        if Path::new(&format!("/proc/{p}")).exists() {
            signal(p, libc::SIGKILL);
        }
    }
}

// ---- one measurement ----

#[derive(Clone, Debug, Default)]
struct Sample {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    lg_cpu: f64,
    server_cpu: f64,
    server_rss_kb: f64,
    other_cpu: f64,
    completed: f64,
    lost: f64,
    bad: f64,
}

fn parse_result(line: &str) -> Option<Sample> {
    let kv: BTreeMap<&str, &str> = line
        .strip_prefix("RESULT ")?
        .split_whitespace()
        .filter_map(|t| t.split_once('='))
        .collect();
    let f = |k: &str| -> f64 {
        kv.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Some(Sample {
        rps: f("rps"),
        p50: f("p50_us"),
        p99: f("p99_us"),
        p999: f("p999_us"),
        lg_cpu: f("lg_cpu"),
        server_cpu: f("server_cpu"),
        server_rss_kb: f("server_rss_kb"),
        other_cpu: f("other_cpu"),
        completed: f("completed"),
        lost: f("lost"),
        bad: f("other_response"),
    })
}

fn run_loadgen(
    o: &Opts,
    s: &Server,
    kind: Kind,
    window: usize,
    duration: f64,
) -> io::Result<Sample> {
    let mut cmd = pinned(o.loadgen_cpu, &o.loadgen);
    cmd.args(["--target", &format!("127.0.0.1:{}", s.port)])
        .args(["--mode", kind.mode()])
        .args(["--window", &window.to_string()])
        .args(["--duration", &duration.to_string()])
        .args(["--warmup", &o.warmup.to_string()]);
    for p in &s.pids {
        cmd.args(["--server-pid", &p.to_string()]);
    }
    let out = cmd.stderr(Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(parse_result)
        .ok_or_else(|| io::Error::other(format!("loadgen failed ({}): {text}", out.status)))
}

/// Busy CPU seconds of the whole machine, from /proc/stat.
fn machine_busy() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    (g(0) + g(1) + g(2) + g(5) + g(6) + g(7)) as f64 / hz
}

/// The most the whole suite waits for a quiet machine.
const QUIET_BUDGET: Duration = Duration::from_secs(60);

/// Waits (up to `max`) until the machine's other load is below 0.25 of a
/// core over 400 ms; returns how long it waited.
fn wait_quiet(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let t0 = Instant::now();
    loop {
        let b0 = machine_busy();
        std::thread::sleep(Duration::from_millis(400));
        let busy = (machine_busy() - b0) / 0.4;
        if busy < 0.25 || t0.elapsed() + Duration::from_secs(1) > max {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(600));
    }
}

fn measure(o: &Opts, kind: Kind, window: usize) -> io::Result<Sample> {
    let rundir = std::env::temp_dir().join(format!("sip-bench-kamailio-{}", std::process::id()));
    let mut s = start_server(o, kind, &rundir)?;
    let r = run_loadgen(o, &s, kind, window, o.duration);
    stop_server(&mut s);
    r
}

// ---- statistics and reports ----

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

#[derive(Clone, Debug)]
struct Agg {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    lg_cpu: f64,
    server_cpu: f64,
    server_rss_mb: f64,
    other_cpu: f64,
    lost: f64,
    bad: f64,
    runs: Vec<f64>,
}

fn aggregate(samples: &[Sample]) -> Agg {
    let m = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Agg {
        rps: m(&|s| s.rps),
        p50: m(&|s| s.p50),
        p99: m(&|s| s.p99),
        p999: m(&|s| s.p999),
        lg_cpu: m(&|s| s.lg_cpu),
        server_cpu: m(&|s| s.server_cpu),
        server_rss_mb: m(&|s| s.server_rss_kb / 1024.0),
        other_cpu: m(&|s| s.other_cpu),
        lost: samples.iter().map(|s| s.lost).sum(),
        bad: samples.iter().map(|s| s.bad).sum(),
        runs: samples.iter().map(|s| s.rps).collect(),
    }
}

fn cmd_out(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            }
            s
        })
        .unwrap_or_default()
}

/// A ratio for the CSV: empty when there is nothing to compare with.
fn csv_num(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        format!("{x:.3}")
    }
}

fn fmt_ratio(x: f64) -> String {
    fmt_ratio_places(x, 2)
}

fn fmt_ratio_places(x: f64, places: usize) -> String {
    if x.is_nan() {
        "n/a".to_owned()
    } else {
        format!("{x:.places$}x")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

fn main() {
    let o = parse_opts();
    std::fs::create_dir_all(&o.out).expect("output directory");
    let rt_ok = o.rt
        && Command::new("chrt")
            .args(["-f", "50", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    RT.store(rt_ok, std::sync::atomic::Ordering::Relaxed);
    if o.rt && !rt_ok {
        eprintln!(
            "suite: cannot use real-time priority (chrt -f needs root): runs at normal priority"
        );
    }
    let _ = std::fs::remove_dir_all(o.out.join("logs"));
    let t_start = Instant::now();
    let mut kinds = vec![Kind::Echo, Kind::Uas, Kind::Proxy];
    let kam_version = o
        .kamailio
        .as_ref()
        .map(|k| cmd_out(&k.to_string_lossy(), &["-v"]))
        .and_then(|v| v.lines().next().map(str::to_owned));
    if o.kamailio.is_some() {
        kinds.extend([Kind::KamUas, Kind::KamProxy]);
    } else {
        eprintln!("suite: Kamailio is not installed: its cases are skipped");
    }

    // Every case of a round back to back, rounds repeated: the machine's
    // drift hits every server alike.
    let mut samples: BTreeMap<(Kind, usize), Vec<Sample>> = BTreeMap::new();
    let mut runs_csv = String::from(
        "run,case,mode,window,rps,p50_us,p99_us,p999_us,loadgen_cpu,server_cpu,other_cpu,server_rss_kb,completed,lost,non_2xx\n",
    );
    let total = o.runs * o.windows.len() * kinds.len();
    let mut waited_total = Duration::ZERO;
    let mut k = 0;
    for run in 1..=o.runs {
        for &w in &o.windows {
            for &kind in &kinds {
                k += 1;
                eprint!("[{k}/{total}] run {run} W={w:<3} {:<16} ", kind.name());
                let _ = io::stderr().flush();
                let left = QUIET_BUDGET.saturating_sub(waited_total);
                let waited = wait_quiet(left.min(Duration::from_secs(10)));
                waited_total += waited;
                if waited > Duration::from_secs(1) {
                    eprint!(
                        "(waited {:.0} s for a quiet machine) ",
                        waited.as_secs_f64()
                    );
                }
                match measure(&o, kind, w) {
                    Ok(s) => {
                        eprintln!(
                            "{:>9.0} req/s  p50 {:>7.1} us  p99 {:>7.1} us  p999 {:>8.1} us  cpu: loadgen {:.2} server {:.2} others {:.2}{}",
                            s.rps,
                            s.p50,
                            s.p99,
                            s.p999,
                            s.lg_cpu,
                            s.server_cpu,
                            s.other_cpu,
                            if s.lost > 0.0 {
                                format!("  lost {}", s.lost)
                            } else {
                                String::new()
                            }
                        );
                        let _ = writeln!(
                            runs_csv,
                            "{run},{},{},{w},{:.0},{:.1},{:.1},{:.1},{:.3},{:.3},{:.3},{:.0},{:.0},{:.0},{:.0}",
                            kind.name(),
                            kind.mode(),
                            s.rps,
                            s.p50,
                            s.p99,
                            s.p999,
                            s.lg_cpu,
                            s.server_cpu,
                            s.other_cpu,
                            s.server_rss_kb,
                            s.completed,
                            s.lost,
                            s.bad
                        );
                        samples.entry((kind, w)).or_default().push(s);
                    }
                    Err(e) => eprintln!("failed: {e}"),
                }
            }
        }
    }
    std::fs::write(o.out.join("runs.csv"), &runs_csv).expect("runs.csv");
    let agg: BTreeMap<(Kind, usize), Agg> =
        samples.iter().map(|(k, v)| (*k, aggregate(v))).collect();
    let get = |kind: Kind, w: usize| agg.get(&(kind, w));
    let ratio = |a: Option<&Agg>, b: Option<&Agg>, f: fn(&Agg) -> f64| match (a, b) {
        (Some(a), Some(b)) => f(a) / f(b),
        _ => f64::NAN,
    };
    let wmax = *o.windows.iter().max().expect("a window");
    let wmin = *o.windows.iter().min().expect("a window");

    // results.csv
    let mut csv = String::from(
        "case,mode,window,rps_median,rps_runs,p50_us,p99_us,p999_us,loadgen_cpu,server_cpu,other_cpu,server_rss_mb,lost,non_2xx,rps_vs_echo,rps_vs_kamailio,p99_vs_echo\n",
    );
    for ((kind, w), a) in &agg {
        let kam = match kind {
            Kind::Uas => get(Kind::KamUas, *w),
            Kind::Proxy => get(Kind::KamProxy, *w),
            _ => None,
        };
        let _ = writeln!(
            csv,
            "{},{},{},{:.0},{},{:.1},{:.1},{:.1},{:.3},{:.3},{:.3},{:.1},{:.0},{:.0},{},{},{}",
            kind.name(),
            kind.mode(),
            w,
            a.rps,
            a.runs
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(";"),
            a.p50,
            a.p99,
            a.p999,
            a.lg_cpu,
            a.server_cpu,
            a.other_cpu,
            a.server_rss_mb,
            a.lost,
            a.bad,
            csv_num(ratio(Some(a), get(Kind::Echo, *w), |x| x.rps)),
            csv_num(ratio(Some(a), kam, |x| x.rps)),
            csv_num(ratio(Some(a), get(Kind::Echo, *w), |x| x.p99)),
        );
    }
    std::fs::write(o.out.join("results.csv"), &csv).expect("results.csv");
    std::fs::write(o.out.join("throughput.svg"), svg(&agg, &o.windows, &kinds))
        .expect("throughput.svg");

    // results.md
    let mut md = String::new();
    let _ = writeln!(md, "# bench/run results\n");
    let _ = writeln!(
        md,
        "Generated by `bench/run` on {} — commit `{}`{}; {}; kernel {}; {} ({} cores); {}.\n",
        cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cmd_out("git", &["rev-parse", "--short", "HEAD"]),
        if cmd_out("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
            ""
        } else {
            " (with uncommitted changes)"
        },
        cmd_out("rustc", &["--version"]),
        cmd_out("uname", &["-r"]),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kam_version
            .as_deref()
            .unwrap_or("Kamailio not installed: its cases skipped"),
    );
    let _ = writeln!(
        md,
        "Every server pinned to CPU {} (`taskset`), the load generator to CPU {}, {}; UDP on loopback; \
         OPTIONS of {} bytes; windows {:?}; median of {} runs of {} s (after {} s of warm-up), \
         a fresh server per run, the cases of a round back to back. For the proxies, the back-end \
         UAS runs inside the load generator (same for ours and Kamailio's). \
         Ratios are of medians measured in this run; absolute numbers are this noisy VM's.\n",
        o.server_cpu,
        o.loadgen_cpu,
        if rt_ok {
            "both at real-time priority (`chrt -f 50`: the shared VM's other processes only get \
             a core while ours wait)"
        } else {
            "at normal priority (no `chrt`: other processes on this VM share the cores)"
        },
        options_len(),
        o.windows,
        o.runs,
        o.duration,
        o.warmup
    );
    let _ = writeln!(
        md,
        "| case | W | req/s | vs echo | vs Kamailio | p50 µs | p99 µs | p999 µs | p99 vs echo | loadgen CPU | server CPU | others' CPU | server RSS MB | runs (req/s) |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for &w in &o.windows {
        for &kind in &kinds {
            let Some(a) = get(kind, w) else { continue };
            let kam = match kind {
                Kind::Uas => get(Kind::KamUas, w),
                Kind::Proxy => get(Kind::KamProxy, w),
                _ => None,
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {:.2}{} | {:.2} | {:.2} | {:.0} | {} |",
                kind.label(),
                w,
                a.rps,
                fmt_ratio(ratio(Some(a), get(Kind::Echo, w), |x| x.rps)),
                if kam.is_some() {
                    fmt_ratio(ratio(Some(a), kam, |x| x.rps))
                } else {
                    "".into()
                },
                a.p50,
                a.p99,
                a.p999,
                fmt_ratio(ratio(Some(a), get(Kind::Echo, w), |x| x.p99)),
                a.lg_cpu,
                if a.lg_cpu >= 0.9 { " ⚠" } else { "" },
                a.server_cpu,
                a.other_cpu,
                a.server_rss_mb,
                a.runs
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    let lost: f64 = agg.values().map(|a| a.lost + a.bad).sum();
    let _ = writeln!(
        md,
        "\nLoad generator CPU: share of its core over the measurement (⚠ at 0.9 or more: the \
         generator may be the limit of that row). Server CPU: user+system of the server's \
         processes per second of wall time. Others' CPU: what the rest of the machine used \
         meanwhile, in cores (other processes, interrupts, steal; this VM is shared, and a \
         run waits up to 10 s for it to go quiet first, 60 s in all). {}\n",
        if lost > 0.0 {
            format!("{lost:.0} requests were lost or answered with a non-2xx (see runs.csv).")
        } else {
            "No request was lost or answered with a non-2xx.".to_owned()
        }
    );
    let _ = writeln!(md, "![requests/s by window](throughput.svg)\n");

    // Targets.
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | verdict |\n|---|---:|---|");
    let target = |md: &mut String, what: &str, x: f64, bound: f64, at_least: bool| {
        let ok = if at_least { x >= bound } else { x <= bound };
        // Three decimals: two could round a ratio onto its bound (0.399x
        // shown as 0.40x beside "not met").
        let _ = writeln!(
            md,
            "| {what} | {} | {} |",
            fmt_ratio_places(x, 3),
            if x.is_nan() {
                "not measured"
            } else {
                verdict(ok)
            }
        );
    };
    let rps = |x: &Agg| x.rps;
    let p99 = |x: &Agg| x.p99;
    target(
        &mut md,
        &format!("uas OPTIONS W={wmax}: ≥ 0.6x raw echo req/s"),
        ratio(get(Kind::Uas, wmax), get(Kind::Echo, wmax), rps),
        0.6,
        true,
    );
    target(
        &mut md,
        &format!("uas OPTIONS W={wmax}: ≥ 1.5x Kamailio (1 worker) req/s"),
        ratio(get(Kind::Uas, wmax), get(Kind::KamUas, wmax), rps),
        1.5,
        true,
    );
    target(
        &mut md,
        &format!("stateless_proxy W={wmax}: ≥ 0.4x raw echo req/s"),
        ratio(get(Kind::Proxy, wmax), get(Kind::Echo, wmax), rps),
        0.4,
        true,
    );
    target(
        &mut md,
        &format!("stateless_proxy W={wmax}: ≥ 1.5x Kamailio forward() req/s"),
        ratio(get(Kind::Proxy, wmax), get(Kind::KamProxy, wmax), rps),
        1.5,
        true,
    );
    target(
        &mut md,
        &format!("uas p99 at W={wmin}: ≤ 1.5x raw echo's p99"),
        ratio(get(Kind::Uas, wmin), get(Kind::Echo, wmin), p99),
        1.5,
        false,
    );
    target(
        &mut md,
        &format!(
            "stateless_proxy p99 at W={wmin}: ≤ 1.5x raw echo's p99 (two hops: 4 datagrams per request against 2)"
        ),
        ratio(get(Kind::Proxy, wmin), get(Kind::Echo, wmin), p99),
        1.5,
        false,
    );
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Kamailio for reference, same run: its UAS at {} of the echo, its proxy at {} (W={wmax}).\n",
        fmt_ratio(ratio(get(Kind::KamUas, wmax), get(Kind::Echo, wmax), rps)),
        fmt_ratio(ratio(get(Kind::KamProxy, wmax), get(Kind::Echo, wmax), rps))
    );

    // Scale and allocations.
    if o.scale_on {
        eprintln!(
            "suite: scale and allocation measurements (pinned to CPU {}) ...",
            o.server_cpu
        );
        let st = pinned(o.server_cpu, &o.scale)
            .arg("--out")
            .arg(&o.out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        match st {
            Ok(st) if st.success() => {
                let scale_md = std::fs::read_to_string(o.out.join("scale.md")).unwrap_or_default();
                let _ = writeln!(md, "## Scale and allocations\n\n{scale_md}");
            }
            other => {
                eprintln!("suite: scale failed: {other:?}");
                let _ = writeln!(
                    md,
                    "## Scale and allocations\n\nThe scale measurement failed: {other:?}\n"
                );
            }
        }
    }

    // Profiles.
    if o.profile_on {
        match profile(&o) {
            Ok(text) => {
                let _ = writeln!(md, "## Profiles (perf, W={wmax})\n\n{text}");
            }
            Err(e) => {
                eprintln!("suite: no profile: {e}");
                let _ = writeln!(md, "## Profiles\n\nNot taken: {e}\n");
            }
        }
    }
    let _ = writeln!(
        md,
        "Files: `results.csv` (medians and ratios), `runs.csv` (every run), `throughput.svg`, \
         `scale.csv`; server logs in `logs/`. The whole run took {:.0} s.",
        t_start.elapsed().as_secs_f64()
    );
    std::fs::write(o.out.join("results.md"), &md).expect("results.md");
    println!("{md}");
}

/// The size of the load generator's OPTIONS on loopback (5-digit ports).
fn options_len() -> usize {
    let local = "127.0.0.1:40000".parse().expect("address");
    let ruri = "127.0.0.1:40001".parse().expect("address");
    wire::template(local, ruri).bytes.len()
}

// ---- profiles ----

fn perf_works() -> bool {
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the time goes, as inclusive shares of the server's samples: a
/// label and the symbol substrings whose largest "children" share is
/// shown (several substrings: the shares are added, for disjoint entry
/// points; `=` before a pattern: the whole symbol, possibly inlined).
const PHASES: &[(&str, &[&str])] = &[
    (
        "event loop: epoll_wait (mio Poll::poll)",
        &["mio::poll::Poll::poll"],
    ),
    ("UDP receive: recvfrom", &["__libc_recvfrom"]),
    (
        "UDP send: sendto (the loopback delivery to the peer and its wake-up included)",
        &["__libc_sendto"],
    ),
    (
        "leg: accept_bytes (parse, Via checks, received/rport)",
        &["sip_dispatch::leg::Leg::accept_bytes"],
    ),
    (
        "  parse (Packet::parse)",
        &["sip_dispatch::packet::parse::parse"],
    ),
    (
        "dispatcher: Core::receive (validation, transactions)",
        &["sip_dispatch::dispatcher::core::Core::receive"],
    ),
    (
        "  request validation (Request::check)",
        &["Request>::check"],
    ),
    (
        "  transaction keys (server_key)",
        &["sip_dispatch::packet::key::server_key"],
    ),
    (
        "receiver (the uas handler / StatelessProxy, its deliver included)",
        &["Receiver>::receive"],
    ),
    (
        "  proxy: resolution of the next hop (resolve_uri_now; resolve_uri for a name)",
        &[
            "=sip_dispatch::dispatcher::Dispatcher::resolve_uri_now",
            "=sip_dispatch::dispatcher::Dispatcher::resolve_uri",
        ],
    ),
    (
        "  proxy: forward (its deliver included)",
        &["=sip_dispatch::proxy::forward_resolved"],
    ),
    (
        "event loop: due timers (retransmissions, expiries; a forward to a name after DNS)",
        &["MioEventloop::fire_due_timers"],
    ),
    (
        "  proxy: derive_branch",
        &["sip_dispatch::proxy::branch::derive_branch"],
    ),
    (
        "  proxy: on_response (a response back to the client)",
        &["sip_dispatch::proxy::on_response"],
    ),
    (
        "dispatcher: Core::deliver (route, serialise; not the send)",
        &["sip_dispatch::dispatcher::core::Core::deliver"],
    ),
    (
        "uas: print_line (a stdout write per transaction)",
        &["uas::print_line"],
    ),
    (
        "Via parsing, wherever called (Via::parse)",
        &["sip_dispatch::packet::via::Via::parse"],
    ),
    ("formatting (core::fmt::write)", &["core::fmt::write"]),
    (
        "allocator (malloc + free + realloc)",
        &[
            "__GI___libc_malloc (inlined)",
            "__GI___libc_free (inlined)",
            "__GI___libc_realloc (inlined)",
        ],
    ),
    (
        "hash tables growing (hashbrown reserve_rehash)",
        &["reserve_rehash"],
    ),
    (
        "SipHash (std HashMap's hasher)",
        &["<core::hash::sip::Hasher<S> as core::hash::Hasher>::write"],
    ),
];

/// Lines of a `perf report --stdio` without comments and perf's empty
/// trailing columns.
fn report_lines(data: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("perf")
        .args(["report", "--stdio", "-g", "none"])
        .args(args)
        .arg("-i")
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut l = l.trim_end();
            while let Some(x) = l.strip_suffix('-') {
                l = x.trim_end();
            }
            l.to_owned()
        })
        .collect()
}

/// Profiles our uas and proxy under the largest window: `perf record` on
/// the server's process (cpu-clock samples, this VM has no hardware
/// counters; DWARF call graphs) while the generator runs; inclusive
/// shares of the phases, then the top symbols by self time.
fn profile(o: &Opts) -> Result<String, String> {
    if !perf_works() {
        return Err("`perf record -e cpu-clock` does not work here (install linux-perf)".into());
    }
    let w = *o.windows.iter().max().expect("window");
    let mut md = String::new();
    for kind in [Kind::Uas, Kind::Proxy] {
        eprintln!("suite: profiling {} at W={w} ...", kind.name());
        let rundir = std::env::temp_dir().join("sip-bench-profile");
        let mut s = start_server(o, kind, &rundir).map_err(|e| e.to_string())?;
        let data = o.out.join(format!("perf-{}.data", kind.name()));
        let secs = 3.0;
        let lg = {
            let (o2, port, pids) = (o.loadgen.clone(), s.port, s.pids.clone());
            let (cpu, warm) = (o.loadgen_cpu, o.warmup);
            std::thread::spawn(move || {
                let mut cmd = pinned(cpu, o2);
                cmd.args(["--target", &format!("127.0.0.1:{port}")])
                    .args(["--mode", kind.mode()])
                    .args(["--window", &w.to_string()])
                    .args(["--duration", &(secs + 1.0).to_string()])
                    .args(["--warmup", &warm.to_string()]);
                for p in &pids {
                    cmd.args(["--server-pid", &p.to_string()]);
                }
                cmd.stderr(Stdio::inherit()).output()
            })
        };
        std::thread::sleep(Duration::from_secs_f64(o.warmup + 0.5));
        let rec = Command::new("taskset")
            .arg("-c")
            .arg(o.loadgen_cpu.to_string())
            .args(["perf", "record", "-e", "cpu-clock", "-F", "999"])
            .args(["--call-graph", "dwarf,16384", "-p"])
            .arg(s.child.id().to_string())
            .arg("-o")
            .arg(&data)
            .args(["--", "sleep", &secs.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let lg_out = lg.join().ok().and_then(|r| r.ok());
        stop_server(&mut s);
        if !rec.is_ok_and(|s| s.success()) {
            return Err("perf record failed".into());
        }
        let under = lg_out
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(parse_result)
            })
            .map(|r| {
                format!(
                    "{:.0} req/s under perf, server CPU {:.2}, others' CPU {:.2}",
                    r.rps, r.server_cpu, r.other_cpu
                )
            })
            .unwrap_or_default();
        // Inclusive shares.
        let children: Vec<(f64, String)> = report_lines(
            &data,
            &["--children", "--sort", "symbol", "--percent-limit", "0.3"],
        )
        .iter()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let c = it.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
            let _self = it.next()?;
            let _kind = it.next()?;
            let sym = it.collect::<Vec<_>>().join(" ");
            Some((c, sym))
        })
        .collect();
        let mut phases =
            String::from("| phase | share of the server's CPU samples (inclusive) |\n|---|---:|\n");
        for (label, pats) in PHASES {
            let share: f64 = pats
                .iter()
                .map(|p| {
                    children
                        .iter()
                        .filter(|(_, sym)| match p.strip_prefix('=') {
                            Some(exact) => sym.strip_suffix(" (inlined)").unwrap_or(sym) == exact,
                            None => sym.contains(p),
                        })
                        .map(|(c, _)| *c)
                        .fold(0.0f64, f64::max)
                })
                .sum();
            if share > 0.0 {
                let _ = writeln!(phases, "| {label} | {share:.1}% |");
            }
        }
        let by_dso = report_lines(
            &data,
            &["--no-children", "--sort", "dso", "--percent-limit", "0.5"],
        );
        let by_sym = report_lines(
            &data,
            &[
                "--no-children",
                "--sort",
                "dso,symbol",
                "--percent-limit",
                "0.5",
            ],
        );
        let text = format!(
            "{} at W={w} ({under})\n\n{phases}\n{}\n\n{}\n",
            kind.label(),
            by_dso.join("\n"),
            by_sym.join("\n")
        );
        std::fs::write(o.out.join(format!("profile-{}.txt", kind.name())), &text)
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&data);
        let top: Vec<&str> = by_sym.iter().map(String::as_str).take(20).collect();
        let _ = writeln!(
            md,
            "### {} ({under})\n\n{phases}\nBy object (self time): {}\n\nTop symbols by self time (all in `profile-{}.txt`):\n\n```\n{}\n```\n",
            kind.label(),
            by_dso
                .iter()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", "),
            kind.name(),
            top.join("\n")
        );
    }
    Ok(md)
}

// ---- the plot ----

fn svg(agg: &BTreeMap<(Kind, usize), Agg>, windows: &[usize], kinds: &[Kind]) -> String {
    // One panel per window, each with its own axis (window 1 is an order
    // of magnitude below window 64).
    let panel_w = 360.0;
    let (left, gap, top, plot_h) = (64.0, 40.0, 50.0, 260.0);
    let w = left + windows.len() as f64 * (panel_w + gap);
    let h = top + plot_h + 40.0 + 18.0 * kinds.len().div_ceil(2) as f64 + 20.0;
    let k = |v: f64| {
        if v >= 10_000.0 {
            format!("{:.0}k", v / 1000.0)
        } else if v >= 1000.0 {
            format!("{:.1}k", v / 1000.0)
        } else {
            format!("{v:.0}")
        }
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">OPTIONS requests/s over loopback UDP by window (medians; server on CPU 1, load generator on CPU 0)</text>"#,
        w / 2.0
    );
    for (pi, &win) in windows.iter().enumerate() {
        let x0 = left + pi as f64 * (panel_w + gap);
        let max = kinds
            .iter()
            .filter_map(|kd| agg.get(&(*kd, win)))
            .map(|a| a.rps)
            .fold(0.0f64, f64::max)
            .max(1.0);
        let mag = 10f64.powf(max.log10().floor());
        let axis_max = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|&v| v >= max * 1.08)
            .unwrap_or(10.0 * mag);
        for i in 0..=5 {
            let v = axis_max * i as f64 / 5.0;
            let y = top + plot_h - plot_h * i as f64 / 5.0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + panel_w,
                x0 - 6.0,
                y + 4.0,
                k(v)
            );
        }
        let bar_w = panel_w * 0.9 / kinds.len() as f64;
        for (ki, &kind) in kinds.iter().enumerate() {
            let Some(a) = agg.get(&(kind, win)) else {
                continue;
            };
            let bh = plot_h * a.rps / axis_max;
            let x = x0 + panel_w * 0.05 + bar_w * ki as f64;
            let y = top + plot_h - bh;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{}: {:.0} req/s</title></rect>"#,
                bar_w * 0.9,
                kind.color(),
                kind.label(),
                a.rps
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                x + bar_w * 0.45,
                y - 4.0,
                k(a.rps)
            );
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">window {win}</text>"##,
            top + plot_h,
            x0 + panel_w,
            top + plot_h,
            x0 + panel_w / 2.0,
            top + plot_h + 20.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">requests/s</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (ki, &kind) in kinds.iter().enumerate() {
        let (col, row) = (ki % 2, ki / 2);
        let x = left + col as f64 * 380.0;
        let y = top + plot_h + 50.0 + row as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y - 10.0,
            kind.color(),
            x + 18.0,
            y,
            kind.label()
        );
    }
    s.push_str("</svg>\n");
    s
}
