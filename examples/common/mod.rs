//! What the example programs share: a small command-line parser (usage
//! errors exit with 64), leg creation from specs (TLS from the
//! `--tls-cert`/`--tls-key`/`--tls-ca` flags), logging and signals.
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
use sip_dispatch::leg::{Leg, LegOptions, LegSpec, Protocol};

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

/// Usage text for the TLS flags every program takes.
pub const TLS_USAGE: &str =
    "  TLS (tls: specs, sips: and ;transport=tls URIs): --tls-cert FILE --tls-key FILE (PEM, our
  certificate: needed to listen, offered as client certificate), --tls-ca FILE (PEM roots to verify
  peers against; default the system's), --tls-client-auth none|optional|required (ask listening
  TLS legs' clients for a certificate; default none).";

/// The TLS flags: `--tls-cert FILE --tls-key FILE [--tls-ca FILE]
/// [--tls-client-auth none|optional|required]`.
#[derive(Default)]
pub struct TlsFlags {
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    client_auth: Option<String>,
}

impl TlsFlags {
    /// Takes `arg` (and its value) when it is a TLS flag; returns whether
    /// it was.
    pub fn take(&mut self, args: &mut Args, arg: &str) -> bool {
        let slot = match flag_name(arg) {
            "--tls-cert" => &mut self.cert,
            "--tls-key" => &mut self.key,
            "--tls-ca" => &mut self.ca,
            "--tls-client-auth" => &mut self.client_auth,
            _ => return false,
        };
        *slot = Some(args.value(arg));
        if cfg!(not(feature = "tls")) {
            args.fail(format!(
                "{}: this build has no TLS (cargo feature `tls`)",
                flag_name(arg)
            ));
        }
        true
    }

    /// Whether a certificate was given (TLS legs can listen).
    pub fn has_certificate(&self) -> bool {
        self.cert.is_some()
    }

    /// The leg options for `proto`: for TLS the configuration from the
    /// flags. A bad flag combination is a usage error; a file that cannot
    /// be used exits 1.
    #[cfg(feature = "tls")]
    pub fn leg_options(&self, args: &Args, proto: Protocol) -> LegOptions {
        use sip_dispatch::leg::{ClientAuth, TlsConfig};
        if proto != Protocol::Tls {
            return LegOptions::default();
        }
        let fail = |e: sip_dispatch::Error| -> ! {
            eprintln!("{}: {}", args.program, e.context());
            exit(1)
        };
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                TlsConfig::from_pem_files(cert, key).unwrap_or_else(|e| fail(e))
            }
            (None, None) => TlsConfig::client(),
            _ => args.fail("--tls-cert and --tls-key go together"),
        };
        if let Some(ca) = &self.ca {
            config = config.with_ca_file(ca).unwrap_or_else(|e| fail(e));
        }
        let auth = match self.client_auth.as_deref() {
            None | Some("none") => ClientAuth::None,
            Some("optional") => ClientAuth::Optional,
            Some("required") => ClientAuth::Required,
            Some(other) => args.fail(format!(
                "--tls-client-auth {other:?}: expected none, optional or required"
            )),
        };
        LegOptions {
            tls: Some(config.with_client_auth(auth)),
            ..LegOptions::default()
        }
    }

    /// The leg options for `proto` (no TLS in this build).
    #[cfg(not(feature = "tls"))]
    pub fn leg_options(&self, _args: &Args, _proto: Protocol) -> LegOptions {
        LegOptions::default()
    }
}

/// Binds a leg from a spec, or exits with a clear message.
pub fn bind_leg(args: &Args, spec: &str) -> Leg {
    bind_leg_tls(args, spec, &TlsFlags::default(), false)
}

/// Binds a leg from a spec with the TLS flags, or exits with a clear
/// message. `listen`: the leg must accept connections (a `tls:` spec then
/// needs `--tls-cert`).
pub fn bind_leg_tls(args: &Args, spec: &str, tls: &TlsFlags, listen: bool) -> Leg {
    let parsed: LegSpec = match spec.parse() {
        Ok(s) => s,
        Err(e) => args.fail(e),
    };
    if parsed.proto == Protocol::Tls && listen && !tls.has_certificate() {
        args.fail(format!(
            "{spec}: listening on TLS needs --tls-cert and --tls-key"
        ));
    }
    match Leg::bind(parsed, tls.leg_options(args, parsed.proto)) {
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
    let flag = stop_flag_on_signals();
    Rc::new(move || flag.load(Ordering::Relaxed))
}

/// The flag of [`stop_on_signals`] itself, for programs whose threads all
/// stop on the same signal (`uas --threads N`).
pub fn stop_flag_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            eprintln!("cannot handle signal {sig}: {e}");
        }
    }
    flag
}

/// Makes SIGINT and SIGTERM wake the event loop, so that the flag of
/// [`stop_on_signals`] is read at once. Without it a signal that arrives
/// after the loop checked the flag but before it blocked in the poll is
/// only seen at the next event or timer, which for an idle program may be
/// never. The signal handler writes a byte to a socket pair whose other
/// end the loop watches (the self-pipe trick).
pub fn wake_on_signals(lp: &dyn Eventloop) {
    let (rx, tx) = match wake_pair() {
        Ok(pair) => pair,
        Err(e) => {
            log::warn!("no wake-up socket for signals: {e}");
            return;
        }
    };
    wake_writer_on_signals(&tx);
    watch_wakeups(lp, rx);
}

/// A non-blocking socket pair for the self-pipe trick: a byte written to
/// the second end wakes the loop that watches the first
/// ([`watch_wakeups`]), from a signal handler or another thread.
pub fn wake_pair() -> std::io::Result<(UnixStream, UnixStream)> {
    let (rx, tx) = UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    // Non-blocking: a writer never waits; a full socket wakes the loop
    // just as well.
    tx.set_nonblocking(true)?;
    Ok((rx, tx))
}

/// Writes a byte to `tx` on SIGINT and SIGTERM (from the signal handler).
pub fn wake_writer_on_signals(tx: &UnixStream) {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = tx
            .try_clone()
            .and_then(|tx| signal_hook::low_level::pipe::register(sig, tx));
        if let Err(e) = registered {
            log::warn!("signal {sig} will not wake the loop: {e}");
        }
    }
}

/// Watches the read end of a [`wake_pair`]: a byte written to the other
/// end ends the loop's wait, so it checks its stop condition again. The
/// bytes themselves mean nothing and are drained.
pub fn watch_wakeups(lp: &dyn Eventloop, rx: UnixStream) {
    let fd = rx.as_raw_fd();
    let drain = move |_| {
        let mut buf = [0u8; 64];
        while matches!((&rx).read(&mut buf), Ok(n) if n > 0) {}
    };
    if let Err(e) = lp.add_fd(fd, Interest::READ, Box::new(drain)) {
        log::warn!("signals will not wake the loop: {e}");
    }
}
