//! A stateless SIP proxy (RFC 3261 16.11): forwards requests to the next
//! hop with Max-Forwards decremented and its own Via on top, whose branch
//! is derived from the incoming request, so that a retransmission, the
//! CANCEL of an INVITE and the ACK of a non-2xx final response all take
//! the same branch as the request they belong to. Responses go back to the
//! next Via after the proxy's own is removed. It keeps no state at all:
//! retransmissions and every response are simply forwarded again.
//!
//! ```text
//! stateless_proxy [--listen SPEC]... [--route ROUTE]... [--outgoing-proxy HOST:PORT]
//!                 [--nameserver IP:PORT] [--record-route]
//!                 [--tls-cert FILE --tls-key FILE] [--tls-ca FILE]
//! ```
//!
//! The proxy itself is [`sip_dispatch::proxy::StatelessProxy`]; this program
//! gives it legs, routes and a command line.
//!
//! When it stops (SIGINT, SIGTERM, or a failed event loop) it writes one
//! line per leg to stderr (never stdout, whose lines are the contract), in
//! `--listen` order, named as on the leg's `listening` line, with the
//! leg's counters ([`sip_dispatch::leg::LegStats`] in its `Display` form):
//!
//! ```text
//! stats udp:127.0.0.1:5060: received=4 sent=4 bytes_received=1800 ... connections_limited=0
//! ```

#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::rc::Rc;

use common::{Args, flag_name};
use sip_dispatch::dispatcher::{Dispatcher, DispatcherOptions, ProxySpec};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::Leg;
use sip_dispatch::proxy::StatelessProxy;

const USAGE: &str = "[--listen SPEC]... [--route ROUTE]... [--outgoing-proxy HOST:PORT] [--nameserver IP:PORT] [--record-route]
    [--tls-cert FILE --tls-key FILE] [--tls-ca FILE] [--tls-client-auth MODE]
  SPEC is [udp:|tcp:|tls:]HOST:PORT (IPv6 as [::1]:5060; port 0 picks a free port); default udp:127.0.0.1:5060.
  TLS: --tls-cert FILE --tls-key FILE (PEM; needed for tls: specs), --tls-ca FILE (roots to verify
  peers against; default the system's), --tls-client-auth none|optional|required.
  ROUTE is DOMAIN=[PROTO:]HOST:PORT; DOMAIN may be * (fallback) or *.example.com.
  --outgoing-proxy sends every request (not matched by --route) to that proxy.
  --record-route keeps the proxy in the path of dialogs (RFC 5658 double Record-Route across legs).";

fn main() {
    common::init_logging();
    let mut nameservers: Vec<std::net::SocketAddr> = Vec::new();
    let mut args = Args::from_env("stateless_proxy", USAGE);
    let mut listen = Vec::new();
    let mut routes = Vec::new();
    let mut outgoing_proxy: Option<ProxySpec> = None;
    let mut record_route = false;
    let mut tls = common::TlsFlags::default();
    while let Some(arg) = args.next() {
        if tls.take(&mut args, &arg) {
            continue;
        }
        match flag_name(&arg) {
            "--listen" => listen.push(args.value(&arg)),
            "--route" => {
                let v = args.value(&arg);
                routes.push(common::parse_route(&args, &v));
            }
            "--outgoing-proxy" => outgoing_proxy = Some(args.parsed(&arg)),
            "--nameserver" => nameservers.push(args.parsed::<std::net::SocketAddr>(&arg)),
            "--record-route" if arg.contains('=') => args.fail("--record-route takes no value"),
            "--record-route" => record_route = true,
            other => args.fail(format!("unknown argument {other:?}")),
        }
    }
    if listen.is_empty() {
        listen.push("udp:127.0.0.1:5060".to_owned());
    }
    let legs: Vec<Leg> = listen
        .iter()
        .map(|s| common::bind_leg_tls(&args, s, &tls, true))
        .collect();
    let lp: Rc<dyn Eventloop> = match MioEventloop::new() {
        Ok(lp) => Rc::new(lp),
        Err(e) => {
            eprintln!("stateless_proxy: cannot create the event loop: {e}");
            std::process::exit(1);
        }
    };
    let options = StatelessProxy::dispatcher_options(DispatcherOptions {
        dns: common::dns_config(&nameservers),
        domain2proxy: routes,
        outgoing_proxy,
        ..DispatcherOptions::default()
    });
    let dispatcher = match Dispatcher::new(legs.clone(), Some(lp.clone()), options) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("stateless_proxy: {e}");
            std::process::exit(1);
        }
    };
    // Before the `listening` lines: whoever reads them may signal at once.
    let stop = common::stop_on_signals();
    common::wake_on_signals(&*lp);
    {
        let mut out = std::io::stdout().lock();
        for leg in &legs {
            let _ = writeln!(out, "listening {leg}");
        }
        let _ = out.flush();
    }
    dispatcher.set_receiver(StatelessProxy::new(record_route));
    if let Err(e) = lp.run(None, &|| stop()) {
        eprintln!("stateless_proxy: event loop failed: {e}");
        print_stats(&legs);
        std::process::exit(1);
    }
    dispatcher.shutdown();
    print_stats(&legs);
}

/// Writes the `stats LEG: COUNTERS` lines to stderr, one per leg.
fn print_stats(legs: &[Leg]) {
    let mut err = std::io::stderr().lock();
    for leg in legs {
        let _ = writeln!(err, "stats {leg}: {}", leg.stats());
    }
    let _ = err.flush();
}
