//! A user agent server: answers OPTIONS, MESSAGE, INFO and REGISTER with
//! 200, rings and answers INVITEs (or rejects them with `--final`),
//! handles CANCEL and BYE, and prints one line per finished transaction:
//! `METHOD CALL-ID -> CODE`.
//!
//! ```text
//! uas [--listen SPEC]... [--threads N] [--answer-after-ms N] [--final CODE] [--t1-ms N] [--t2-ms N]
//! ```
//!
//! # Multi-core
//!
//! The dispatcher is single-threaded; `--threads N` runs N of them, each
//! on its own OS thread with its own event loop and its own legs, all
//! bound to the same addresses with `SO_REUSEPORT`. The kernel spreads
//! UDP datagrams over the threads by a hash of the source address and
//! port (and TCP connections as they are accepted), so one peer socket
//! always reaches the same thread: its retransmissions are answered from
//! that thread's response cache. Nothing else is shared: a dialog's later
//! requests that come from another source port (another socket, another
//! proxy) may reach a thread that does not know the call, and a BYE then
//! gets 481. It suits stateless-ish load: OPTIONS, REGISTER echo,
//! MESSAGE, one thread per core. A UAC or a proxy needs a port per
//! thread instead (responses come back to the port that sent the
//! request).
//!
//! The stdout lines are collected per thread and written when the
//! thread's event loop is about to wait (and at exit): one `write` per
//! batch of events, whole lines under the stdout lock, so lines of two
//! threads never mix.
//!
//! # Counters at exit
//!
//! When it stops (SIGINT, SIGTERM, or a failed event loop), the UAS writes
//! one line per `--listen` to stderr (never stdout, whose lines are the
//! contract), in `--listen` order, after every thread has shut down:
//!
//! ```text
//! stats udp:127.0.0.1:5060: received=3 sent=9 bytes_received=1234 ... connections_limited=0
//! ```
//!
//! The leg is named as on its `listening` line; the counters are
//! [`LegStats`](sip_dispatch::leg::LegStats) in its `Display` form. With
//! `--threads N` each line is the sum over the N legs (one per thread)
//! bound to that address.

#[path = "common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::{Args, flag_name};
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId, Timers,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop, TimerId, When};
use sip_dispatch::leg::{Leg, LegOptions, LegSpec, LegStats, Protocol, Source};
use sip_dispatch::packet::{HeaderName, Method, Packet, Request, Response, TransactionKey};
use sip_dispatch::ua::{self, Dialog};

const USAGE: &str = "[--listen SPEC]... [--threads N] [--answer-after-ms N] [--final CODE] [--t1-ms N] [--t2-ms N]
    [--tls-cert FILE --tls-key FILE] [--tls-ca FILE] [--tls-client-auth MODE]
  SPEC is [udp:|tcp:|tls:]HOST:PORT (IPv6 as [::1]:5060; port 0 picks a free port); default udp:127.0.0.1:5060.
  --threads N (default 1, at most 1024): N threads, each with its own event loop, legs and dispatcher,
  sharing every listen port (SO_REUSEPORT); the kernel picks a thread per source address and port (UDP)
  or per connection (TCP, TLS). For stateless-ish load (OPTIONS, REGISTER, MESSAGE), one thread per core.
  Threads share no state: a dialog's requests from another source port may reach a thread that does not
  know the call (a BYE then gets 481). A UAC or a proxy needs a port per thread instead.
  INVITE: 100 and 180 at once, then after --answer-after-ms (default 0) 200 with SDP, or --final CODE.
  TLS: --tls-cert FILE --tls-key FILE (PEM; needed for tls: specs), --tls-ca FILE (roots to verify
  peers against; default the system's), --tls-client-auth none|optional|required.";

/// Extensions this UAS supports (for Require, RFC 3261 8.2.2.3).
const SUPPORTED: &[&str] = &[];

thread_local! {
    /// The methods this UAS allows (RFC 3261 20.5), one shared text per
    /// thread: every answer to OPTIONS carries it without a copy.
    static ALLOW: Rc<str> = Rc::from("INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, REGISTER");
}

/// Most threads `--threads` takes: beyond the cores of any machine this
/// runs on, each thread only costs descriptors and memory.
const MAX_THREADS: usize = 1024;

/// A thread writes its buffered lines once they reach this size, even in
/// the middle of a batch of events: it bounds the buffer, and a reader
/// (a test, a pipe) does not wait for the end of a long batch.
const FLUSH_BYTES: usize = 16 * 1024;

/// How the UAS answers; the same for every thread.
#[derive(Clone, Copy)]
struct Config {
    answer_after: Duration,
    final_code: Option<u16>,
}

/// An INVITE this UAS has not answered finally yet, or a call.
struct Call {
    invite: Request,
    to_tag: String,
    leg: LegId,
    from: Source,
    answer_timer: Option<TimerId>,
    answered: bool,
    ended: bool,
}

#[derive(Default)]
struct State {
    /// By Call-ID.
    calls: HashMap<String, Call>,
    /// INVITE server transactions not finally answered: CANCEL finds them.
    pending: HashMap<TransactionKey, String>,
}

thread_local! {
    /// This thread's `METHOD CALL-ID -> CODE` lines not written yet. It
    /// only ever holds whole lines, so writing it whole under the stdout
    /// lock never splits a line between threads.
    static LINES: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Queues the line of a finished transaction; [`flush_lines`] writes it.
/// One `write` per line cost 2.4% of the CPU under load; one per batch of
/// events costs next to nothing.
fn print_line(method: &str, call_id: &str, code: u16) {
    let queued = LINES.try_with(|lines| {
        let mut lines = lines.borrow_mut();
        let _ = writeln!(lines, "{method} {call_id} -> {code}");
        lines.len() >= FLUSH_BYTES
    });
    match queued {
        Ok(false) => {}
        Ok(true) => flush_lines(),
        // The thread is being torn down (a callback run by a destructor):
        // no buffer any more, so the line goes out on its own.
        Err(_) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{method} {call_id} -> {code}");
            let _ = out.flush();
        }
    }
}

/// Writes this thread's queued lines to stdout: all of them under one
/// lock, then flushed, so a reader sees them now and another thread's
/// lines come before or after them, never inside one. Called whenever the
/// event loop is about to wait (its stop condition) and at exit.
fn flush_lines() {
    let _ = LINES.try_with(|lines| {
        // Busy only when a panic unwound out of `print_line`: nothing
        // whole to write then.
        let Ok(mut lines) = lines.try_borrow_mut() else {
            return;
        };
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        // Errors (a closed pipe) are not worth more than the lines: the
        // UAS goes on answering.
        let _ = out.write_all(lines.as_bytes()).and_then(|()| out.flush());
        lines.clear();
    });
}

fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Final",
    }
}

fn sdp(leg: &Leg, from: &Source) -> String {
    let ip = leg.local_addr_for(from.addr.ip()).ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=uas 1 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// Sends a response to `req` (routed by the dispatcher's server
/// transaction) and prints the line when it is final. A response other
/// than 100 to a request without a To tag gets `tag`, or a new one
/// (RFC 3261 8.2.6.2).
fn respond(
    d: &Dispatcher,
    req: &Request,
    code: u16,
    tag: Option<&str>,
    extra: impl FnOnce(&mut Response),
) {
    let mut resp = Response::for_request(req, code, reason(code));
    match tag {
        Some(tag) => resp.set_to_tag(tag),
        None if code > 100 && req.to_tag().is_none() => resp.set_to_tag(ua::Tag::new().as_str()),
        None => {}
    }
    extra(&mut resp);
    if let Err(e) = d.deliver(resp, DeliverOptions::default()) {
        log::warn!("cannot send {code}: {e}");
    }
    if code >= 200 {
        print_line(req.method().as_str(), req.call_id().unwrap_or(""), code);
    }
}

fn contact_for(d: &Dispatcher, leg: LegId, from: &Source) -> Option<String> {
    Some(format!(
        "<{}>",
        d.leg(leg)?.contact(Some("uas"), from.addr.ip())
    ))
}

fn handle(
    d: &Dispatcher,
    state: &Rc<RefCell<State>>,
    cfg: &Rc<Config>,
    req: Request,
    leg: LegId,
    from: &Source,
) {
    let method = req.method().clone();
    if method == Method::Ack {
        if let Some(call) = state
            .borrow_mut()
            .calls
            .get_mut(req.call_id().unwrap_or(""))
        {
            log::info!("ACK for {}", req.call_id().unwrap_or(""));
            call.answered = true;
        }
        return;
    }
    // Policy checks the dispatcher leaves to the user agent (RFC 3261
    // 8.2.2.1, 8.2.2.3, 8.2.3; RFC 4475 3.3).
    if req.uri().as_sip().is_none() {
        respond(d, &req, 416, Some(ua::Tag::new().as_str()), |_| {});
        return;
    }
    let unsupported: Vec<String> = req
        .unsupported_require(SUPPORTED)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !unsupported.is_empty() {
        respond(d, &req, 420, Some(ua::Tag::new().as_str()), |r| {
            r.headers_mut().push("Unsupported", &unsupported.join(", "))
        });
        return;
    }
    match method {
        Method::Options | Method::Message | Method::Info => {
            respond(d, &req, 200, Some(ua::Tag::new().as_str()), |r| {
                if method == Method::Options {
                    r.headers_mut().push_shared("Allow", ALLOW.with(Rc::clone));
                }
            });
        }
        Method::Register => {
            let contacts: Vec<String> = req
                .headers()
                .get_all(HeaderName::Contact)
                .map(str::to_owned)
                .collect();
            let expires = req.headers().get(HeaderName::Expires).map(str::to_owned);
            respond(d, &req, 200, Some(ua::Tag::new().as_str()), |r| {
                for c in &contacts {
                    r.headers_mut().push("Contact", c);
                }
                if let Some(e) = &expires {
                    r.headers_mut().push("Expires", e);
                }
            });
        }
        Method::Bye => {
            let call_id = req.call_id().unwrap_or("").to_owned();
            let known = {
                let mut st = state.borrow_mut();
                match st.calls.get_mut(&call_id) {
                    Some(call) if !call.ended && req.to_tag() == Some(call.to_tag.as_str()) => {
                        call.ended = true;
                        if let Some(t) = call.answer_timer.take() {
                            d.cancel_timer(t);
                        }
                        true
                    }
                    _ => false,
                }
            };
            respond(d, &req, if known { 200 } else { 481 }, None, |_| {});
            if known {
                state.borrow_mut().calls.remove(&call_id);
            }
        }
        Method::Cancel => {
            let key = req.server_key().map(|k| k.with_method(Method::Invite));
            let call_id = key
                .as_ref()
                .and_then(|k| state.borrow_mut().pending.remove(k));
            match call_id {
                Some(call_id) => {
                    let call = state.borrow_mut().calls.remove(&call_id);
                    // The 200 to the CANCEL has the To tag of the INVITE's
                    // responses (RFC 3261 9.2).
                    let tag = call.as_ref().map(|c| c.to_tag.as_str());
                    respond(d, &req, 200, tag, |_| {});
                    if let Some(mut call) = call {
                        if let Some(t) = call.answer_timer.take() {
                            d.cancel_timer(t);
                        }
                        respond(d, &call.invite, 487, Some(&call.to_tag), |_| {});
                    }
                }
                None => respond(d, &req, 481, None, |_| {}),
            }
        }
        Method::Invite => invite(d, state, cfg, req, leg, from),
        _ => respond(d, &req, 501, Some(ua::Tag::new().as_str()), |_| {}),
    }
}

fn invite(
    d: &Dispatcher,
    state: &Rc<RefCell<State>>,
    cfg: &Rc<Config>,
    req: Request,
    leg: LegId,
    from: &Source,
) {
    let call_id = req.call_id().unwrap_or("").to_owned();
    // A body we cannot read (RFC 3261 8.2.3).
    if !req.body().is_empty() {
        let ctype = req.headers().get(HeaderName::ContentType).unwrap_or("");
        if !ctype
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
        {
            respond(d, &req, 415, Some(ua::Tag::new().as_str()), |r| {
                r.headers_mut().push("Accept", "application/sdp")
            });
            return;
        }
    }
    // A re-INVITE in a call we know: answer it at once.
    if let (Some(tag), Some(call)) = (req.to_tag(), state.borrow().calls.get(&call_id)) {
        if tag == call.to_tag {
            let (body, contact) = (d.leg(leg).map(|l| sdp(&l, from)), contact_for(d, leg, from));
            respond(d, &req, 200, None, |r| {
                if let Some(c) = &contact {
                    r.headers_mut().push("Contact", c);
                }
                if let Some(b) = body {
                    r.headers_mut().push("Content-Type", "application/sdp");
                    r.set_body(b);
                }
            });
            return;
        }
    }
    let to_tag = ua::new_tag();
    respond(d, &req, 100, None, |_| {});
    let contact = contact_for(d, leg, from);
    respond(d, &req, 180, Some(&to_tag), |r| {
        if let Some(c) = &contact {
            r.headers_mut().push("Contact", c);
        }
    });
    let key = req.server_key();
    let weak = d.downgrade();
    let (st, cfg2, cid) = (state.clone(), cfg.clone(), call_id.clone());
    let timer = d.add_timer(
        When::In(cfg.answer_after),
        None,
        Box::new(move || {
            if let Some(d) = weak.upgrade() {
                answer(&d, &st, &cfg2, &cid);
            }
        }),
    );
    let mut s = state.borrow_mut();
    if let Some(k) = key {
        s.pending.insert(k, call_id.clone());
    }
    s.calls.insert(
        call_id,
        Call {
            invite: req,
            to_tag,
            leg,
            from: from.clone(),
            answer_timer: Some(timer),
            answered: false,
            ended: false,
        },
    );
}

/// The final answer to a ringing INVITE.
fn answer(d: &Dispatcher, state: &Rc<RefCell<State>>, cfg: &Config, call_id: &str) {
    let (invite, to_tag, leg, from) = {
        let mut s = state.borrow_mut();
        let Some(call) = s.calls.get_mut(call_id) else {
            return;
        };
        call.answer_timer = None;
        let key = call.invite.server_key();
        let out = (
            call.invite.clone(),
            call.to_tag.clone(),
            call.leg,
            call.from.clone(),
        );
        if let Some(k) = key {
            s.pending.remove(&k);
        }
        out
    };
    let code = cfg.final_code.unwrap_or(200);
    if code >= 300 {
        respond(d, &invite, code, Some(&to_tag), |_| {});
        state.borrow_mut().calls.remove(call_id);
        return;
    }
    let mut ok = Response::for_request(&invite, code, reason(code));
    ok.set_to_tag(&to_tag);
    if let Some(c) = contact_for(d, leg, &from) {
        ok.headers_mut().push("Contact", &c);
    }
    if let Some(l) = d.leg(leg) {
        ok.headers_mut().push("Content-Type", "application/sdp");
        ok.set_body(sdp(&l, &from));
    }
    let (st, cid) = (state.clone(), call_id.to_owned());
    // The 2xx is retransmitted until the ACK; without one in 64*T1 the
    // call is ended with BYE (RFC 3261 13.3.1.4).
    let opts = DeliverOptions::with_callback(move |d, outcome| {
        if let DeliveryOutcome::Failed(e) = outcome {
            log::warn!("no ACK for the 2xx of {cid} ({e}): ending the call with BYE");
            let call = st.borrow_mut().calls.remove(&cid);
            if let Some(call) = call {
                if !call.ended {
                    bye(d, &call);
                }
            }
        }
    });
    if let Err(e) = d.deliver(ok, opts) {
        log::warn!("cannot send 200: {e}");
    }
    print_line("INVITE", call_id, code);
}

fn bye(d: &Dispatcher, call: &Call) {
    let Some(mut dialog) = Dialog::new_uas(&call.invite, &call.to_tag) else {
        log::warn!("cannot build a dialog from the INVITE (no Contact?): no BYE");
        return;
    };
    let req = dialog.request(Method::Bye);
    let call_id = dialog.call_id.clone();
    let opts = DeliverOptions::with_callback(move |_, outcome| match outcome {
        DeliveryOutcome::Completed(code) => print_line("BYE", &call_id, code),
        other => log::warn!("BYE for {call_id}: {other:?}"),
    });
    if let Err(e) = d.deliver(req, opts) {
        log::warn!("cannot send BYE: {e}");
    }
}

/// A listen spec with the options of its legs.
#[derive(Clone)]
struct Listen {
    /// As the user wrote it (for messages), or the bound address once the
    /// first thread resolved a port 0.
    text: String,
    spec: LegSpec,
    options: LegOptions,
}

/// Stops every thread: a flag their event loops read before each wait
/// (also set by SIGINT and SIGTERM), and a wake-up socket per loop so
/// that a loop blocked in its wait reads it at once.
struct Stopper {
    flag: Arc<AtomicBool>,
    /// Write ends of [`common::wake_pair`]s, one per thread.
    wakers: Vec<UnixStream>,
    /// A thread's event loop failed: the process exits with 1.
    failed: AtomicBool,
}

impl Stopper {
    fn stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Makes every thread stop (one whose loop failed takes the others
    /// with it: a UAS with a dead thread would lose the peers hashed to
    /// it).
    fn stop_all(&self) {
        self.flag.store(true, Ordering::Relaxed);
        for waker in &self.wakers {
            // A full socket has a wake-up pending already.
            let _ = (&*waker).write(&[1]);
        }
    }
}

/// One thread's UAS: its event loop, dispatcher and legs.
struct Worker {
    lp: Rc<dyn Eventloop>,
    dispatcher: Dispatcher,
    legs: Vec<Leg>,
}

/// Binds the legs of one thread.
fn bind_legs(listen: &[Listen]) -> Result<Vec<Leg>, String> {
    listen
        .iter()
        .map(|l| {
            Leg::bind(l.spec, l.options.clone()).map_err(|e| format!("cannot bind {}: {e}", l.text))
        })
        .collect()
}

/// Sets up one thread's UAS on its legs; `wake` is the read end of its
/// wake-up socket.
fn new_worker(
    legs: Vec<Leg>,
    wake: UnixStream,
    cfg: Config,
    timers: Timers,
) -> Result<Worker, String> {
    let lp: Rc<dyn Eventloop> = match MioEventloop::new() {
        Ok(lp) => Rc::new(lp),
        Err(e) => return Err(format!("cannot create the event loop: {e}")),
    };
    let options = DispatcherOptions {
        timers,
        ..Default::default()
    };
    let dispatcher =
        Dispatcher::new(legs.clone(), Some(lp.clone()), options).map_err(|e| e.to_string())?;
    let cfg = Rc::new(cfg);
    let state: Rc<RefCell<State>> = Rc::default();
    dispatcher.set_receiver(
        move |d: &Dispatcher, p: Packet, leg: LegId, from: &Source| {
            if let Packet::Request(req) = p {
                handle(d, &state, &cfg, req, leg, from);
            }
        },
    );
    common::watch_wakeups(&*lp, wake);
    Ok(Worker {
        lp,
        dispatcher,
        legs,
    })
}

/// Runs one thread's UAS until the stopper says stop, then shuts its
/// dispatcher down and writes its last lines. Returns the counters of its
/// legs (in `--listen` order) as they are at the end.
fn run_worker(worker: Worker, stopper: &Stopper) -> Vec<LegStats> {
    // Writes the last lines however this ends, a panic included.
    let _flush_at_end = FlushLinesOnDrop;
    // The stop condition is read each time the loop has run a batch of
    // events and timers and is about to wait: the moment to write the
    // batch's lines.
    let stop = || {
        flush_lines();
        stopper.stopped()
    };
    if let Err(e) = worker.lp.run(None, &stop) {
        eprintln!("uas: event loop failed: {e}");
        stopper.failed.store(true, Ordering::Relaxed);
        stopper.stop_all();
    }
    worker.dispatcher.shutdown();
    let legs = worker.legs.clone();
    // Before the guard writes: a line printed while the dispatcher is
    // dropped is still written.
    drop(worker);
    legs.iter().map(Leg::stats).collect()
}

/// Writes the `stats LEG: COUNTERS` lines to stderr, one per `--listen`:
/// each the sum over the threads' legs on that address.
fn print_stats(listen: &[Listen], per_thread: &[Vec<LegStats>]) {
    let mut err = std::io::stderr().lock();
    for (i, l) in listen.iter().enumerate() {
        let mut total = LegStats::default();
        for stats in per_thread {
            if let Some(s) = stats.get(i) {
                total += *s;
            }
        }
        let _ = writeln!(err, "stats {}: {total}", l.text);
    }
    let _ = err.flush();
}

/// Writes this thread's queued lines when dropped.
struct FlushLinesOnDrop;

impl Drop for FlushLinesOnDrop {
    fn drop(&mut self) {
        flush_lines();
    }
}

/// Prints the problem and exits with 1 (a start that failed: nothing was
/// answered yet, so no line is lost).
fn die(problem: impl std::fmt::Display) -> ! {
    eprintln!("uas: {problem}");
    std::process::exit(1)
}

fn main() {
    common::init_logging();
    let mut args = Args::from_env("uas", USAGE);
    let mut listen = Vec::new();
    let mut tls = common::TlsFlags::default();
    let (mut answer_after_ms, mut final_code, mut t1, mut t2) = (0u64, None, None, None);
    let mut threads = 1usize;
    while let Some(arg) = args.next() {
        if tls.take(&mut args, &arg) {
            continue;
        }
        match flag_name(&arg) {
            "--listen" => listen.push(args.value(&arg)),
            "--threads" => {
                threads = args.parsed(&arg);
                if !(1..=MAX_THREADS).contains(&threads) {
                    args.fail(format!("--threads {threads}: 1 to {MAX_THREADS}"));
                }
            }
            "--answer-after-ms" => answer_after_ms = args.parsed(&arg),
            "--final" => {
                let code: u16 = args.parsed(&arg);
                if !(200..700).contains(&code) {
                    args.fail(format!("--final {code}: a final status code is 200 to 699"));
                }
                final_code = Some(code);
            }
            "--t1-ms" => t1 = Some(args.parsed(&arg)),
            "--t2-ms" => t2 = Some(args.parsed(&arg)),
            other => args.fail(format!("unknown argument {other:?}")),
        }
    }
    if listen.is_empty() {
        listen.push("udp:127.0.0.1:5060".to_owned());
    }
    // Every usage error before anything is bound or started.
    let mut listen: Vec<Listen> = listen
        .into_iter()
        .map(|text| {
            let spec: LegSpec = match text.parse() {
                Ok(s) => s,
                Err(e) => args.fail(e),
            };
            if spec.proto == Protocol::Tls && !tls.has_certificate() {
                args.fail(format!(
                    "{text}: listening on TLS needs --tls-cert and --tls-key"
                ));
            }
            let mut options = tls.leg_options(&args, spec.proto);
            // Only with several threads: a single UAS keeps its port to
            // itself, as before.
            options.reuse_port = threads > 1;
            Listen {
                text,
                spec,
                options,
            }
        })
        .collect();
    let cfg = Config {
        answer_after: Duration::from_millis(answer_after_ms),
        final_code,
    };
    let timers = common::timers(t1, t2);

    // Signals and wake-ups exist before any thread, so that a signal
    // during the start is not lost.
    let flag = common::stop_flag_on_signals();
    let mut wake_reads = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (rx, tx) = common::wake_pair()
            .unwrap_or_else(|e| die(format_args!("cannot create a wake-up socket: {e}")));
        common::wake_writer_on_signals(&tx);
        wake_reads.push(rx);
        wakers.push(tx);
    }
    let stopper = Arc::new(Stopper {
        flag,
        wakers,
        failed: AtomicBool::new(false),
    });
    let mut wake_reads = wake_reads.into_iter();

    // The first thread (this one) binds first: a port 0 becomes a real
    // port, which the other threads then bind too.
    let Some(wake) = wake_reads.next() else {
        die("no thread to run")
    };
    let worker = bind_legs(&listen)
        .and_then(|legs| new_worker(legs, wake, cfg, timers.clone()))
        .unwrap_or_else(|e| die(e));
    for (l, leg) in listen.iter_mut().zip(&worker.legs) {
        l.spec = LegSpec {
            proto: leg.protocol(),
            addr: leg.local_addr(),
        };
        l.text = leg.to_string();
    }

    // The others bind and set up, report, and wait for the word to run:
    // the listening lines come before any transaction's line.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut starts = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for (index, wake) in (1..threads).zip(wake_reads) {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (listen, timers, ready, stopper) = (
            listen.clone(),
            timers.clone(),
            ready_tx.clone(),
            stopper.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("uas-{index}"))
            .spawn(move || {
                let worker =
                    bind_legs(&listen).and_then(|legs| new_worker(legs, wake, cfg, timers));
                let report = worker.as_ref().map(|_| ()).map_err(Clone::clone);
                let _ = ready.send(report);
                drop(ready);
                let Ok(worker) = worker else {
                    return Vec::new();
                };
                // No word (the start failed elsewhere and the process is
                // exiting): end quietly.
                if go_rx.recv().is_ok() {
                    run_worker(worker, &stopper)
                } else {
                    Vec::new()
                }
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(e) => die(format_args!("cannot start thread {index}: {e}")),
        }
        starts.push(go_tx);
    }
    drop(ready_tx);
    for _ in 1..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => die(e),
            Err(_) => die("a thread ended during its start"),
        }
    }

    for leg in &worker.legs {
        println!("listening {leg}");
    }
    let _ = std::io::stdout().flush();
    for go in starts {
        let _ = go.send(());
    }
    let mut per_thread = vec![run_worker(worker, &stopper)];
    // This thread stopped: so do the others (a no-op after a signal).
    stopper.stop_all();
    for handle in handles {
        match handle.join() {
            Ok(stats) => per_thread.push(stats),
            Err(_) => stopper.failed.store(true, Ordering::Relaxed),
        }
    }
    print_stats(&listen, &per_thread);
    if stopper.failed.load(Ordering::Relaxed) {
        std::process::exit(1);
    }
}
