//! The demo: a call from a UAC through a stateless proxy to a UAS, all in
//! one process on one event loop, on loopback. The UAC's first INVITE is
//! lost on purpose (dropped by a send hook) so that its retransmission,
//! T1 = 500 ms later, shows. Every message is drawn as it leaves, as a
//! ladder; a verdict line follows. Exit code 0 when the call completed.
//!
//! ```text
//! cargo run --release --example demo
//! ```

#[path = "common/mod.rs"]
mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId, ProxySpec,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop, When};
use sip_dispatch::leg::{Destination, Leg, LegOptions, Source};
use sip_dispatch::packet::{Method, Packet, Response, Uri};
use sip_dispatch::proxy::StatelessProxy;
use sip_dispatch::ua::{self, Dialog};

const USAGE: &str = "(no arguments)
  Runs a UAC, a stateless proxy and a UAS on 127.0.0.1, makes one call
  (INVITE, 100, 180, 200, ACK, BYE, 200) with one INVITE lost on purpose,
  and draws the ladder. Exit code 0 when the call completed.";

/// Columns of the three parts in the ladder.
const COLUMNS: [usize; 3] = [3, 28, 53];
const NAMES: [&str; 3] = ["uac", "proxy", "uas"];

/// What the ladder needs to know about the run.
struct Ladder {
    start: Instant,
    addrs: [SocketAddr; 3],
    seen: RefCell<HashSet<(usize, SocketAddr, u64)>>,
    lost: Cell<u32>,
    retransmissions: Cell<u32>,
    out: RefCell<std::io::Stdout>,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Ladder {
    fn part_of(&self, addr: SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|a| *a == addr)
    }

    /// One row: the arrow from one part to another, with the message's
    /// first words, and a note.
    fn row(&self, from: usize, to: usize, label: &str, lost: bool, note: &str) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let mut line: Vec<char> = vec![' '; COLUMNS[2] + 1];
        for c in COLUMNS {
            line[c] = '|';
        }
        let (a, b) = (COLUMNS[from.min(to)], COLUMNS[from.max(to)]);
        for cell in line.iter_mut().take(b).skip(a + 1) {
            *cell = '-';
        }
        let text: Vec<char> = format!(" {label} ").chars().collect();
        let room = b - a - 3;
        let text = &text[..text.len().min(room)];
        let at = a + 2 + (room - text.len()) / 2;
        line[at..at + text.len()].copy_from_slice(text);
        if to > from {
            line[b - 1] = '>';
        } else {
            line[a + 1] = '<';
        }
        if lost {
            // Cut short: it never arrives.
            let end = if to > from { b - 1 } else { a + 1 };
            line[end] = 'x';
            if to > from {
                for cell in line.iter_mut().take(b).skip(end + 1) {
                    *cell = ' ';
                }
            }
        }
        let line: String = line.into_iter().collect();
        let mut out = self.out.borrow_mut();
        let _ = writeln!(
            out,
            "{ms:8.1} {}{}",
            &line[..],
            if note.is_empty() {
                String::new()
            } else {
                format!("  {note}")
            }
        );
        let _ = out.flush();
    }
}

/// The first words of a message: `INVITE`, `200 OK`.
fn label(bytes: &[u8]) -> String {
    let first = bytes.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let first = String::from_utf8_lossy(first);
    if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        rest.to_owned()
    } else {
        first.split(' ').next().unwrap_or("?").to_owned()
    }
}

/// Watches every message a part sends; drops the first INVITE of the UAC.
fn watch(leg: &Leg, part: usize, ladder: &Rc<Ladder>, drop_first_invite: bool) {
    let ladder = ladder.clone();
    let dropped = Cell::new(false);
    leg.set_send_hook(Some(Rc::new(move |bytes: &[u8], dst: &Destination| {
        let Some(to) = ladder.part_of(dst.addr) else {
            return true;
        };
        let text = label(bytes);
        let lose = drop_first_invite && text == "INVITE" && !dropped.get();
        let again = !ladder
            .seen
            .borrow_mut()
            .insert((part, dst.addr, fnv(bytes)));
        let note = if lose {
            ladder.lost.set(ladder.lost.get() + 1);
            dropped.set(true);
            "lost on purpose"
        } else if again {
            ladder.retransmissions.set(ladder.retransmissions.get() + 1);
            "retransmission"
        } else {
            ""
        };
        ladder.row(part, to, &text, lose, note);
        !lose
    })));
}

fn udp_leg(name: &str) -> Leg {
    match Leg::bind(
        "udp:127.0.0.1:0".parse().expect("a valid spec"),
        LegOptions::default(),
    ) {
        Ok(leg) => leg,
        Err(e) => {
            eprintln!("demo: cannot bind a UDP socket on 127.0.0.1 for the {name}: {e}");
            std::process::exit(1);
        }
    }
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";

/// The UAS: 100 and 180 at once, 200 after 50 ms, 200 to BYE.
fn uas_receiver(d: &Dispatcher, p: Packet, leg: LegId, from: &Source) {
    let Packet::Request(req) = p else { return };
    let tag = "uas-1";
    match req.method() {
        Method::Invite => {
            let _ = d.deliver(
                Response::for_request(&req, 100, "Trying"),
                DeliverOptions::default(),
            );
            let contact = d
                .leg(leg)
                .map(|l| format!("<{}>", l.contact(Some("bob"), from.addr.ip())));
            let mut ringing = Response::for_request(&req, 180, "Ringing");
            ringing.set_to_tag(tag);
            let _ = d.deliver(ringing, DeliverOptions::default());
            let mut ok = Response::for_request(&req, 200, "OK");
            ok.set_to_tag(tag);
            if let Some(c) = contact {
                ok.headers_mut().push("Contact", &c);
            }
            ok.headers_mut().push("Content-Type", "application/sdp");
            ok.set_body(SDP);
            let weak = d.downgrade();
            d.add_timer(
                When::In(Duration::from_millis(50)),
                None,
                Box::new(move || {
                    if let Some(d) = weak.upgrade() {
                        let _ = d.deliver(ok.clone(), DeliverOptions::default());
                    }
                }),
            );
        }
        Method::Bye => {
            let _ = d.deliver(
                Response::for_request(&req, 200, "OK"),
                DeliverOptions::default(),
            );
        }
        _ => {}
    }
}

/// What the UAC saw.
#[derive(Default)]
struct Call {
    dialog: Option<Dialog>,
    invite: Option<u16>,
    acked: bool,
    bye: Option<u16>,
    failure: Option<String>,
}

fn main() {
    common::init_logging();
    let mut args = common::Args::from_env("demo", USAGE);
    if let Some(a) = args.next() {
        args.fail(format!("unexpected argument {a:?}"));
    }
    let lp: Rc<dyn Eventloop> = match MioEventloop::new() {
        Ok(lp) => Rc::new(lp),
        Err(e) => {
            eprintln!("demo: cannot create the event loop: {e}");
            std::process::exit(1);
        }
    };
    let (uac_leg, proxy_leg, uas_leg) = (udp_leg("uac"), udp_leg("proxy"), udp_leg("uas"));
    let addrs = [
        uac_leg.local_addr(),
        proxy_leg.local_addr(),
        uas_leg.local_addr(),
    ];
    let ladder = Rc::new(Ladder {
        start: Instant::now(),
        addrs,
        seen: RefCell::new(HashSet::new()),
        lost: Cell::new(0),
        retransmissions: Cell::new(0),
        out: RefCell::new(std::io::stdout()),
    });
    watch(&uac_leg, 0, &ladder, true);
    watch(&proxy_leg, 1, &ladder, false);
    watch(&uas_leg, 2, &ladder, false);

    let route = |to: SocketAddr| ProxySpec {
        proto: None,
        host: to.ip().into(),
        port: Some(to.port()),
    };
    let make = |leg: Leg, options: DispatcherOptions| match Dispatcher::new(
        vec![leg],
        Some(lp.clone()),
        options,
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(1);
        }
    };
    let uas = make(uas_leg, DispatcherOptions::default());
    uas.set_receiver(uas_receiver);
    let proxy = make(
        proxy_leg,
        StatelessProxy::dispatcher_options(DispatcherOptions {
            domain2proxy: vec![("biloxi.example".into(), route(addrs[2]))],
            ..Default::default()
        }),
    );
    proxy.set_receiver(StatelessProxy::new(true));
    let uac = make(
        uac_leg,
        DispatcherOptions {
            outgoing_proxy: Some(route(addrs[1])),
            ..Default::default()
        },
    );

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sip-dispatch demo: alice calls bob through a stateless proxy, on loopback"
        );
        for (name, addr) in NAMES.iter().zip(addrs) {
            let _ = writeln!(out, "  {name:<6} udp:{addr}");
        }
        let _ = writeln!(out);
        let mut header = vec![' '; COLUMNS[2] + 6];
        for (c, name) in COLUMNS.iter().zip(NAMES) {
            let start = c.saturating_sub(name.len() / 2);
            for (i, ch) in name.chars().enumerate() {
                header[start + i] = ch;
            }
        }
        let _ = writeln!(
            out,
            " time ms {}",
            header.into_iter().collect::<String>().trim_end()
        );
    }

    // The UAC: INVITE, ACK on every 2xx, BYE after 100 ms.
    let call: Rc<RefCell<Call>> = Rc::default();
    let target: Uri = "sip:bob@biloxi.example".parse().expect("a valid URI");
    let mut dialog = Dialog::new_uac(
        "sip:alice@atlanta.example",
        &target,
        ua::new_call_id("atlanta.example"),
        ua::new_tag(),
    );
    let mut invite = dialog.request(Method::Invite);
    invite.headers_mut().push("Content-Type", "application/sdp");
    invite.set_body(SDP);
    call.borrow_mut().dialog = Some(dialog);
    {
        let c = call.clone();
        uac.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
            let Packet::Response(r) = p else { return };
            if r.method() != Some(Method::Invite) || !(200..300).contains(&r.code()) {
                return;
            }
            let ack = {
                let mut call = c.borrow_mut();
                let Some(dialog) = call.dialog.as_mut() else {
                    return;
                };
                dialog.update_from_response(&r);
                call.acked = true;
                call.dialog.as_ref().map(|d| d.ack_for_2xx(1))
            };
            if let Some(ack) = ack {
                let _ = d.deliver(ack, DeliverOptions::default());
            }
        });
    }
    let c = call.clone();
    let on_invite = move |d: &Dispatcher, outcome: DeliveryOutcome| match outcome {
        DeliveryOutcome::Completed(code) => {
            c.borrow_mut().invite = Some(code);
            if !(200..300).contains(&code) {
                return;
            }
            let (weak, c) = (d.downgrade(), c.clone());
            d.add_timer(
                When::In(Duration::from_millis(100)),
                None,
                Box::new(move || {
                    let Some(d) = weak.upgrade() else { return };
                    let bye = c
                        .borrow_mut()
                        .dialog
                        .as_mut()
                        .map(|dl| dl.request(Method::Bye));
                    let Some(bye) = bye else { return };
                    let c2 = c.clone();
                    let opts = DeliverOptions::with_callback(move |_, outcome| match outcome {
                        DeliveryOutcome::Completed(code) => c2.borrow_mut().bye = Some(code),
                        other => c2.borrow_mut().failure = Some(format!("BYE: {other:?}")),
                    });
                    if let Err(e) = d.deliver(bye, opts) {
                        c.borrow_mut().failure = Some(format!("BYE: {e}"));
                    }
                }),
            );
        }
        other => c.borrow_mut().failure = Some(format!("INVITE: {other:?}")),
    };
    if let Err(e) = uac.deliver(invite, DeliverOptions::with_callback(on_invite)) {
        eprintln!("demo: cannot send the INVITE: {e}");
        std::process::exit(1);
    }

    let stop = common::stop_on_signals();
    let done = {
        let c = call.clone();
        move || {
            let c = c.borrow();
            c.bye.is_some() || c.failure.is_some() || c.invite.is_some_and(|code| code >= 300)
        }
    };
    if let Err(e) = lp.run(Some(Duration::from_secs(10)), &|| done() || stop()) {
        eprintln!("demo: event loop failed: {e}");
        std::process::exit(1);
    }
    // Let the last messages (the proxy forwarding the BYE's 200) be drawn.
    let _ = lp.run(Some(Duration::from_millis(20)), &|| false);

    let c = call.borrow();
    let ok = c.invite == Some(200) && c.acked && c.bye == Some(200) && c.failure.is_none();
    let lost = ladder.lost.get();
    let recovered = ladder.retransmissions.get();
    println!();
    if ok {
        println!(
            "verdict: call completed: INVITE 200, ACK, BYE 200; lost {lost}, retransmitted {recovered}"
        );
    } else {
        println!(
            "verdict: call FAILED: INVITE {:?}, ACK {}, BYE {:?}{}",
            c.invite,
            if c.acked { "sent" } else { "not sent" },
            c.bye,
            c.failure
                .as_ref()
                .map(|f| format!(", {f}"))
                .unwrap_or_default()
        );
    }
    drop(c);
    uac.shutdown();
    proxy.shutdown();
    uas.shutdown();
    std::process::exit(if ok { 0 } else { 1 });
}
