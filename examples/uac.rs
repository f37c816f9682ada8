//! A user agent client: sends METHOD (default OPTIONS) to a URI through the
//! dispatcher, which resolves it (route map, outgoing proxy, IP literal,
//! DNS). An INVITE is ACKed on every 2xx and ended with BYE after
//! `--hold-ms`. Prints `CODE REASON` (or `error ERRNO: text`) per request,
//! and with `--count` a summary line with rate and latency percentiles.
//!
//! ```text
//! uac [--leg SPEC]... [--outgoing-proxy HOST:PORT] [--route ROUTE]...
//!     [--method METHOD] [--from URI] [--hold-ms N] [--count N] [--window W]
//!     [--t1-ms N] [--t2-ms N] [--tls-cert FILE --tls-key FILE] [--tls-ca FILE] URI
//! ```
//! Exit code: 0 if every request got a 2xx, 1 if any got another final
//! response, 2 if any delivery failed (2 wins over 1).

#[path = "common/mod.rs"]
mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Args, flag_name};
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId, ProxySpec,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop, When};
use sip_dispatch::leg::{Leg, LegSpec, Source};
use sip_dispatch::packet::{Method, Packet, Response, Uri};
use sip_dispatch::ua::{self, Dialog};

const USAGE: &str =
    "[--leg SPEC]... [--outgoing-proxy HOST:PORT] [--route ROUTE]... [--nameserver IP:PORT]
    [--method METHOD] [--from URI] [--hold-ms N] [--count N] [--window W] [--t1-ms N] [--t2-ms N]
    [--tls-cert FILE --tls-key FILE] [--tls-ca FILE] URI
  SPEC is [udp:|tcp:|tls:]HOST:PORT (default: UDP and TCP on free ports of 0.0.0.0 and [::], and
  with TLS a TLS leg on each that only connects out, or listens too with --tls-cert).
  TLS: sips: and ;transport=tls URIs; --tls-cert FILE --tls-key FILE (PEM; our certificate,
  offered as client certificate), --tls-ca FILE (roots to verify servers against; default the system's).
  ROUTE is DOMAIN=[PROTO:]HOST:PORT; DOMAIN may be * or *.example.com.
  --nameserver sends DNS queries (RFC 3263: NAPTR, SRV, A/AAAA) there instead of resolv.conf's.
  Prints CODE REASON (or error ERRNO: text) per request; with --count N (W in flight,
  --window) also sent=N ok=N failed=N elapsed_ms=N rate=N/s p50_us=N p99_us=N p999_us=N.
  Exit code: 0 all 2xx, 1 another final response, 2 a delivery failed.";

struct Config {
    uri: Uri,
    method: Method,
    from: String,
    hold: Duration,
    count: usize,
    window: usize,
}

struct Call {
    dialog: Dialog,
    started: Instant,
    invite_cseq: u32,
    /// Final responses seen, by CSeq method: (code, reason).
    finals: HashMap<String, (u16, String)>,
}

#[derive(Default)]
struct Totals {
    sent: usize,
    finished: usize,
    in_flight: usize,
    ok: usize,
    other_final: usize,
    failed: usize,
    latencies_us: Vec<u64>,
}

struct Uac {
    cfg: Config,
    calls: HashMap<String, Call>,
    totals: Totals,
    /// Set when the loop has ended (done or signalled): the shutdown fails
    /// what is in flight, and nothing new is started.
    stopping: bool,
}

type Shared = Rc<RefCell<Uac>>;

fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

fn offer() -> String {
    "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        .to_owned()
}

/// Starts requests until the window is full or all are sent.
fn launch(d: &Dispatcher, shared: &Shared) {
    loop {
        let (req, call_id) = {
            let mut u = shared.borrow_mut();
            if u.stopping || u.totals.in_flight >= u.cfg.window || u.totals.sent >= u.cfg.count {
                return;
            }
            u.totals.sent += 1;
            u.totals.in_flight += 1;
            let call_id = ua::new_call_id("uac.invalid");
            let mut dialog =
                Dialog::new_uac(&u.cfg.from, &u.cfg.uri, call_id.clone(), ua::new_tag());
            let mut req = dialog.request(u.cfg.method.clone());
            if u.cfg.method == Method::Invite {
                req.headers_mut().push("Content-Type", "application/sdp");
                req.set_body(offer());
            }
            let invite_cseq = dialog.local_cseq;
            u.calls.insert(
                call_id.clone(),
                Call {
                    dialog,
                    started: Instant::now(),
                    invite_cseq,
                    finals: HashMap::new(),
                },
            );
            (req, call_id)
        };
        let method = req.method().clone();
        let (s, cid) = (shared.clone(), call_id.clone());
        let opts = DeliverOptions::with_callback(move |d, outcome| {
            on_outcome(d, &s, &cid, &method, outcome)
        });
        if let Err(e) = d.deliver(req, opts) {
            finish(
                d,
                shared,
                &call_id,
                Err(format!("error {}: {}", e.errno(), e.context())),
            );
        }
    }
}

fn on_outcome(
    d: &Dispatcher,
    shared: &Shared,
    call_id: &str,
    method: &Method,
    outcome: DeliveryOutcome,
) {
    let is_bye = *method == Method::Bye;
    match outcome {
        DeliveryOutcome::Completed(code) => {
            let reason = shared
                .borrow()
                .calls
                .get(call_id)
                .and_then(|c| c.finals.get(method.as_str()).map(|(_, r)| r.clone()))
                .unwrap_or_default();
            if is_bye {
                line(&format!("{code} {reason}"));
                // The BYE is a request sent too: a non-2xx makes exit 1.
                if !(200..300).contains(&code) {
                    shared.borrow_mut().totals.other_final += 1;
                }
                finish(d, shared, call_id, Ok(()));
                return;
            }
            record_latency(shared, call_id);
            line(&format!("{code} {reason}"));
            let answered = (200..300).contains(&code);
            {
                let mut u = shared.borrow_mut();
                if answered {
                    u.totals.ok += 1;
                } else {
                    u.totals.other_final += 1;
                }
            }
            if answered && *method == Method::Invite {
                schedule_bye(d, shared, call_id);
            } else {
                finish(d, shared, call_id, Ok(()));
            }
        }
        DeliveryOutcome::Sent => finish(d, shared, call_id, Ok(())),
        DeliveryOutcome::Failed(e) => {
            if !is_bye {
                record_latency(shared, call_id);
            }
            finish(
                d,
                shared,
                call_id,
                Err(format!("error {}: {}", e.errno(), e.context())),
            );
        }
    }
}

fn record_latency(shared: &Shared, call_id: &str) {
    let mut u = shared.borrow_mut();
    if let Some(started) = u.calls.get(call_id).map(|c| c.started) {
        u.totals
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
    }
}

fn schedule_bye(d: &Dispatcher, shared: &Shared, call_id: &str) {
    let hold = shared.borrow().cfg.hold;
    let weak = d.downgrade();
    let (s, cid) = (shared.clone(), call_id.to_owned());
    d.add_timer(
        When::In(hold),
        None,
        Box::new(move || {
            let Some(d) = weak.upgrade() else { return };
            let req = {
                let mut u = s.borrow_mut();
                let Some(call) = u.calls.get_mut(&cid) else {
                    return;
                };
                call.dialog.request(Method::Bye)
            };
            let (s2, cid2) = (s.clone(), cid.clone());
            let opts = DeliverOptions::with_callback(move |d, outcome| {
                on_outcome(d, &s2, &cid2, &Method::Bye, outcome)
            });
            if let Err(e) = d.deliver(req, opts) {
                finish(
                    &d,
                    &s,
                    &cid,
                    Err(format!("error {}: {}", e.errno(), e.context())),
                );
            }
        }),
    );
}

fn finish(d: &Dispatcher, shared: &Shared, call_id: &str, result: Result<(), String>) {
    let failure = {
        let mut u = shared.borrow_mut();
        if u.calls.remove(call_id).is_none() {
            return;
        }
        u.totals.in_flight -= 1;
        u.totals.finished += 1;
        match result {
            Ok(()) => None,
            Err(text) => {
                u.totals.failed += 1;
                Some(text)
            }
        }
    };
    if let Some(text) = failure {
        line(&text);
    }
    launch(d, shared);
}

/// Responses: remember final reasons; ACK every 2xx to INVITE (13.2.2.4),
/// retransmissions included.
fn on_response(d: &Dispatcher, shared: &Shared, resp: Response) {
    let Some(call_id) = resp.call_id().map(str::to_owned) else {
        return;
    };
    let Some(method) = resp.method() else { return };
    let ack = {
        let mut u = shared.borrow_mut();
        let Some(call) = u.calls.get_mut(&call_id) else {
            log::debug!("response for an unknown call {call_id}");
            return;
        };
        if resp.code() >= 200 {
            call.finals
                .insert(method.to_string(), (resp.code(), resp.reason().to_owned()));
        }
        if method == Method::Invite && (200..300).contains(&resp.code()) {
            call.dialog.update_from_response(&resp);
            Some(call.dialog.ack_for_2xx(call.invite_cseq))
        } else {
            None
        }
    };
    if let Some(ack) = ack {
        if let Err(e) = d.deliver(ack, DeliverOptions::default()) {
            log::warn!("cannot send ACK for {call_id}: {e}");
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[i.saturating_sub(1).min(sorted.len() - 1)]
}

fn default_legs(args: &Args, tls: &common::TlsFlags) -> Vec<Leg> {
    let mut legs = Vec::new();
    let mut specs = vec!["udp:0.0.0.0:0", "tcp:0.0.0.0:0", "udp:[::]:0", "tcp:[::]:0"];
    if cfg!(feature = "tls") {
        specs.extend(["tls:0.0.0.0:0", "tls:[::]:0"]);
    }
    for spec in specs {
        let Ok(parsed) = spec.parse::<LegSpec>() else {
            continue;
        };
        match Leg::bind(parsed, tls.leg_options(args, parsed.proto)) {
            Ok(leg) => legs.push(leg),
            Err(e) => log::warn!("no default leg {spec}: {e}"),
        }
    }
    legs
}

fn main() {
    common::init_logging();
    let mut nameservers: Vec<std::net::SocketAddr> = Vec::new();
    let mut args = Args::from_env("uac", USAGE);
    let (mut leg_specs, mut routes) = (Vec::new(), Vec::new());
    let mut outgoing_proxy: Option<ProxySpec> = None;
    let (mut method, mut from, mut hold_ms, mut count, mut window) = (
        "OPTIONS".to_owned(),
        "sip:uac@localhost".to_owned(),
        0u64,
        1usize,
        1usize,
    );
    let (mut t1, mut t2, mut uri) = (None, None, None::<String>);
    let mut tls = common::TlsFlags::default();
    while let Some(arg) = args.next() {
        if tls.take(&mut args, &arg) {
            continue;
        }
        match flag_name(&arg) {
            "--leg" => leg_specs.push(args.value(&arg)),
            "--outgoing-proxy" => outgoing_proxy = Some(args.parsed(&arg)),
            "--route" => {
                let v = args.value(&arg);
                routes.push(common::parse_route(&args, &v));
            }
            "--nameserver" => nameservers.push(args.parsed::<std::net::SocketAddr>(&arg)),
            "--method" => method = args.value(&arg),
            "--from" => from = args.value(&arg),
            "--hold-ms" => hold_ms = args.parsed(&arg),
            "--count" => count = args.parsed(&arg),
            "--window" => window = args.parsed(&arg),
            "--t1-ms" => t1 = Some(args.parsed(&arg)),
            "--t2-ms" => t2 = Some(args.parsed(&arg)),
            s if s.starts_with("--") => args.fail(format!("unknown flag {s:?}")),
            _ if uri.is_some() => args.fail(format!("a second URI {arg:?}")),
            _ => uri = Some(arg),
        }
    }
    let Some(uri) = uri else {
        args.fail("the URI to call is missing")
    };
    let uri: Uri = match uri.parse() {
        Ok(u @ Uri::Sip(_)) => u,
        Ok(_) => args.fail(format!("{uri}: only sip: and sips: URIs can be called")),
        Err(e) => args.fail(format!("{uri}: {e}")),
    };
    let method = match sip_dispatch::packet::Method::parse(&method) {
        Some(Method::Ack | Method::Cancel) | None => {
            args.fail(format!("--method {method}: not a method to send alone"))
        }
        Some(m) => m,
    };
    if count == 0 || window == 0 {
        args.fail("--count and --window must be at least 1");
    }
    let legs = if leg_specs.is_empty() {
        default_legs(&args, &tls)
    } else {
        leg_specs
            .iter()
            .map(|s| common::bind_leg_tls(&args, s, &tls, false))
            .collect()
    };
    let lp: Rc<dyn Eventloop> = match MioEventloop::new() {
        Ok(lp) => Rc::new(lp),
        Err(e) => {
            eprintln!("uac: cannot create the event loop: {e}");
            std::process::exit(2);
        }
    };
    let options = DispatcherOptions {
        dns: common::dns_config(&nameservers),
        outgoing_proxy,
        domain2proxy: routes,
        timers: common::timers(t1, t2),
        ..Default::default()
    };
    let dispatcher = match Dispatcher::new(legs, Some(lp.clone()), options) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("uac: {e}");
            std::process::exit(2);
        }
    };
    let shared: Shared = Rc::new(RefCell::new(Uac {
        cfg: Config {
            uri,
            method,
            from,
            hold: Duration::from_millis(hold_ms),
            count,
            window,
        },
        calls: HashMap::new(),
        totals: Totals::default(),
        stopping: false,
    }));
    let s = shared.clone();
    dispatcher.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Response(resp) = p {
            on_response(d, &s, resp);
        }
    });
    let started = Instant::now();
    launch(&dispatcher, &shared);
    let stop = common::stop_on_signals();
    common::wake_on_signals(&*lp);
    let s = shared.clone();
    let done = move || {
        let u = s.borrow();
        u.totals.finished >= u.cfg.count
    };
    if let Err(e) = lp.run(None, &|| done() || stop()) {
        eprintln!("uac: event loop failed: {e}");
        std::process::exit(2);
    }
    let elapsed = started.elapsed();
    shared.borrow_mut().stopping = true;
    dispatcher.shutdown();
    let mut u = shared.borrow_mut();
    let t = &mut u.totals;
    if count > 1 {
        t.latencies_us.sort_unstable();
        let ms = elapsed.as_millis().max(1);
        line(&format!(
            "sent={} ok={} failed={} elapsed_ms={} rate={}/s p50_us={} p99_us={} p999_us={}",
            t.sent,
            t.ok,
            t.sent - t.ok,
            elapsed.as_millis(),
            (t.finished as u128 * 1000) / ms,
            percentile(&t.latencies_us, 0.50),
            percentile(&t.latencies_us, 0.99),
            percentile(&t.latencies_us, 0.999),
        ));
    }
    let _ = std::io::stdout().flush();
    let code = if t.failed > 0 || t.finished < count {
        2
    } else if t.other_final > 0 {
        1
    } else {
        0
    };
    std::process::exit(code);
}
