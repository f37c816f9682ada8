//! What the example programs share: a small command-line parser (usage
//! errors exit with 64), leg creation from specs, logging and signals.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::exit;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sip_dispatch::dispatcher::{ProxySpec, Timers};
use sip_dispatch::eventloop::{Eventloop, Interest};
use sip_dispatch::leg::{Leg, LegOptions, LegSpec};

/// Exit code for a bad command line (sysexits.h EX_USAGE).
pub const EX_USAGE: i32 = 64;

/// Command-line arguments, consumed flag by flag.
pub struct Args {
    program: &'static str,
    usage: &'static str,
    args: Vec<String>,
    pos: usize,
}

impl Args {
    /// The process's arguments. `--help` prints the usage and exits 0.
    pub fn from_env(program: &'static str, usage: &'static str) -> Args {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            println!("usage: {program} {usage}");
            exit(0);
        }
        Args {
            program,
            usage,
            args,
            pos: 0,
        }
    }

    /// Prints the problem and the usage, and exits with 64.
    pub fn fail(&self, problem: impl std::fmt::Display) -> ! {
        eprintln!("{}: {problem}", self.program);
        eprintln!("usage: {} {}", self.program, self.usage);
        exit(EX_USAGE)
    }

    /// The next argument, if any.
    pub fn next(&mut self) -> Option<String> {
        let a = self.args.get(self.pos).cloned();
        self.pos += 1;
        a
    }

    /// The value of the flag just read (`--flag VALUE` or `--flag=VALUE`).
    pub fn value(&mut self, flag: &str) -> String {
        if let Some((_, v)) = flag.split_once('=') {
            return v.to_owned();
        }
        match self.next() {
            Some(v) => v,
            None => self.fail(format!("{flag} needs a value")),
        }
    }

    /// The value of the flag, parsed.
    pub fn parsed<T: std::str::FromStr>(&mut self, flag: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        let v = self.value(flag);
        match v.parse() {
            Ok(x) => x,
            Err(e) => self.fail(format!("{flag} {v:?}: {e}")),
        }
    }
}

/// The name of a flag without an inline `=value`.
pub fn flag_name(arg: &str) -> &str {
    arg.split_once('=').map(|(f, _)| f).unwrap_or(arg)
}

/// Binds a leg from a spec, or exits with a clear message.
pub fn bind_leg(args: &Args, spec: &str) -> Leg {
    let parsed: LegSpec = match spec.parse() {
        Ok(s) => s,
        Err(e) => args.fail(e),
    };
    match Leg::bind(parsed, LegOptions::default()) {
        Ok(leg) => leg,
        Err(e) => {
            eprintln!("{}: cannot bind {spec}: {e}", args.program);
            exit(1)
        }
    }
}

/// Parses `DOMAIN=[PROTO:]HOST:PORT` (a domain2proxy entry).
pub fn parse_route(args: &Args, s: &str) -> (String, ProxySpec) {
    let Some((domain, proxy)) = s.split_once('=') else {
        args.fail(format!("route {s:?}: expected DOMAIN=[PROTO:]HOST:PORT"))
    };
    match proxy.parse::<ProxySpec>() {
        Ok(p) => (domain.to_owned(), p),
        Err(e) => args.fail(format!("route {s:?}: {e}")),
    }
}

/// The resolver configuration for `--nameserver` (the system's, with these
/// nameservers instead of resolv.conf's); `None` without the flag.
pub fn dns_config(nameservers: &[std::net::SocketAddr]) -> Option<sip_dispatch::dns::DnsConfig> {
    if nameservers.is_empty() {
        return None;
    }
    let mut config = sip_dispatch::dns::DnsConfig::system();
    config.nameservers = nameservers.to_vec();
    Some(config)
}

/// Applies `--t1-ms` / `--t2-ms`.
pub fn timers(t1_ms: Option<u64>, t2_ms: Option<u64>) -> Timers {
    let mut t = Timers::default();
    if let Some(ms) = t1_ms {
        t.t1 = Duration::from_millis(ms);
    }
    if let Some(ms) = t2_ms {
        t.t2 = Duration::from_millis(ms);
    }
    t
}

/// Logging through `log`, configured by `RUST_LOG` (default: warnings).
pub fn init_logging() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
}

/// A flag that turns true on SIGINT or SIGTERM. The event loop's wait is
/// interrupted by the signal, so a `run` whose stop condition reads the
/// flag returns promptly.
pub fn stop_on_signals() -> Rc<dyn Fn() -> bool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            eprintln!("cannot handle signal {sig}: {e}");
        }
    }
    Rc::new(move || flag.load(Ordering::Relaxed))
}

/// Makes SIGINT and SIGTERM wake the event loop, so that the flag of
/// [`stop_on_signals`] is read at once. Without it a signal that arrives
/// after the loop checked the flag but before it blocked in the poll is
/// only seen at the next event or timer, which for an idle program may be
/// never. The signal handler writes a byte to a socket pair whose other
/// end the loop watches (the self-pipe trick).
pub fn wake_on_signals(lp: &dyn Eventloop) {
    let (rx, tx) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => {
            log::warn!("no wake-up socket for signals: {e}");
            return;
        }
    };
    if let Err(e) = rx.set_nonblocking(true).and(tx.set_nonblocking(true)) {
        log::warn!("no wake-up socket for signals: {e}");
        return;
    }
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = tx
            .try_clone()
            .and_then(|tx| signal_hook::low_level::pipe::register(sig, tx));
        if let Err(e) = registered {
            log::warn!("signal {sig} will not wake the loop: {e}");
        }
    }
    let fd = rx.as_raw_fd();
    let drain = move |_| {
        let mut buf = [0u8; 64];
        while matches!((&rx).read(&mut buf), Ok(n) if n > 0) {}
    };
    if let Err(e) = lp.add_fd(fd, Interest::READ, Box::new(drain)) {
        log::warn!("signals will not wake the loop: {e}");
    }
}
