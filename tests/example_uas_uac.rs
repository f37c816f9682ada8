//! The command-line contract of the `uas` and `uac` examples
//! (/work/shared/EXAMPLES.md), through the built binaries: `uas` driven by
//! raw SIP over UDP, `uac` against `uas` and against raw peers.

mod bins;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bins::{Got, Msg, Proc, Req, SDP, Uas, UdpPeer, WAIT, angle_uri, run, unique};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A raw client next to a `uas` on one UDP leg.
struct Fixture {
    uas: Uas,
    peer: UdpPeer,
    to: SocketAddr,
}

impl Fixture {
    fn new(extra: &[&str]) -> Fixture {
        let uas = Uas::udp(extra);
        let to = uas.addr("udp", false);
        Fixture {
            uas,
            peer: UdpPeer::bind("127.0.0.1"),
            to,
        }
    }

    fn uri(&self) -> String {
        format!("sip:bob@{}", self.to)
    }

    fn req(&self, method: &str) -> Req {
        Req::new(
            method,
            &self.uri(),
            self.peer.local(),
            &unique("cid-"),
            &unique("z9hG4bK-"),
        )
    }

    fn invite(&self) -> Req {
        self.req("INVITE").with_body("application/sdp", SDP)
    }

    fn send(&self, req: &Req) {
        self.peer.send_req(req, self.to);
    }

    /// Sends and waits for the final response (provisionals skipped).
    fn call(&self, req: &Req) -> Msg {
        self.send(req);
        let method = req.method.clone();
        self.peer
            .expect(&format!("a final response to {method}"), |m| {
                m.code().is_some_and(|c| c >= 200) && m.cseq_method() == Some(&method)
            })
            .0
            .msg
    }

    /// `METHOD CALL-ID -> CODE` on the uas's stdout.
    fn expect_line(&mut self, method: &str, call_id: &str, code: u16) {
        self.uas
            .proc
            .expect_line(&format!("{method} {call_id} -> {code}"));
    }
}

fn call_id(req: &Req) -> &str {
    req.call_id.as_deref().unwrap()
}

/// The ACK for a non-2xx final response: same branch (the INVITE's Via),
/// To with the response's tag (RFC 3261 17.1.1.3).
fn ack_non2xx(invite: &Req, resp: &Msg) -> Req {
    let mut ack = invite.follow("ACK", &invite.cseq.replace("INVITE", "ACK"));
    ack.to = resp.header("To").unwrap().to_owned();
    ack
}

/// The ACK for a 2xx: new branch, To with the tag, to the Contact.
fn ack_2xx(invite: &Req, resp: &Msg, local: SocketAddr) -> Req {
    let mut ack = invite.follow("ACK", &invite.cseq.replace("INVITE", "ACK"));
    ack.uri = angle_uri(resp.header("Contact").unwrap()).to_owned();
    ack.to = resp.header("To").unwrap().to_owned();
    ack.via = Some(format!(
        "SIP/2.0/UDP {local};branch={};rport",
        unique("z9hG4bK-ack")
    ));
    ack
}

fn starts(got: &[Got]) -> Vec<String> {
    got.iter().map(|g| g.msg.summary()).collect()
}

// ---------------------------------------------------------------- uas ----

#[test]
fn uas_prints_one_listening_line_per_leg_with_real_ports() {
    let uas = Uas::start(&[
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--listen",
        "udp:[::1]:0",
        "--listen",
        "tcp:[::1]:0",
    ]);
    let shape: Vec<(String, String)> = uas
        .legs
        .iter()
        .map(|(p, a)| (p.clone(), a.ip().to_string()))
        .collect();
    assert_eq!(
        shape,
        [
            ("udp".into(), "127.0.0.1".into()),
            ("tcp".into(), "127.0.0.1".into()),
            ("udp".into(), "::1".into()),
            ("tcp".into(), "::1".into()),
        ]
    );
}

#[test]
fn uas_answers_options_message_info_with_200() {
    let mut f = Fixture::new(&[]);
    for method in ["OPTIONS", "MESSAGE", "INFO"] {
        let req = if method == "OPTIONS" {
            f.req(method)
        } else {
            f.req(method).with_body("text/plain", "hello")
        };
        let resp = f.call(&req);
        assert_eq!(resp.code(), Some(200), "{method}: {}", resp.raw);
        assert_eq!(resp.reason(), "OK");
        assert_eq!(resp.call_id(), req.call_id.as_deref());
        assert_eq!(resp.header("CSeq"), Some(format!("1 {method}").as_str()));
        assert!(resp.to_tag().is_some(), "{method}: 200 without To tag");
        assert_eq!(resp.tag_of_from(), bins::tag_param(&req.from));
        let via = resp.header("Via").unwrap();
        assert!(
            via.starts_with(req.via.as_deref().unwrap().split(";rport").next().unwrap()),
            "{via}"
        );
        assert!(
            via.contains(&format!("rport={}", f.peer.local().port())),
            "{via}"
        );
        if method == "OPTIONS" {
            assert!(resp.header("Allow").unwrap().contains("INVITE"));
        }
        f.expect_line(method, call_id(&req), 200);
    }
}

#[test]
fn uas_register_echoes_contact_and_expires() {
    let mut f = Fixture::new(&[]);
    let contact = format!("<sip:alice@{}>;expires=60", f.peer.local());
    let mut req = f.req("REGISTER").with("Expires: 1800");
    req.contact = Some(contact.clone());
    let resp = f.call(&req);
    assert_eq!(resp.code(), Some(200), "{}", resp.raw);
    assert_eq!(resp.header_all("Contact"), [contact.as_str()]);
    assert_eq!(resp.header("Expires"), Some("1800"));
    f.expect_line("REGISTER", call_id(&req), 200);
}

#[test]
fn uas_invite_rings_then_answers_with_sdp_and_retransmits_200_until_ack() {
    let mut f = Fixture::new(&["--t1-ms", "50", "--t2-ms", "200"]);
    let invite = f.invite();
    let sent = Instant::now();
    f.send(&invite);
    let (ok, before) = f.peer.expect("200 INVITE", |m| m.code() == Some(200));
    assert_eq!(starts(&before), ["100 INVITE", "180 INVITE"]);
    let (trying, ringing) = (&before[0].msg, &before[1].msg);
    assert_eq!(trying.to_tag(), None, "100 Trying carries no To tag");
    let tag = ringing.to_tag().expect("180 with a To tag");
    assert_eq!(ok.msg.to_tag().as_deref(), Some(tag.as_str()));
    assert_eq!(ok.msg.cseq_method(), Some("INVITE"));
    let contact = ok.msg.header("Contact").expect("Contact in the 200");
    assert_eq!(
        angle_uri(contact),
        format!("sip:uas@{}", f.to),
        "Contact reaches the uas leg"
    );
    assert_eq!(ringing.header("Contact"), Some(contact));
    assert_eq!(ok.msg.header("Content-Type"), Some("application/sdp"));
    assert!(ok.msg.body.starts_with("v=0\r\n"), "{:?}", ok.msg.body);
    assert!(ok.msg.body.contains("\r\nm=audio "), "{:?}", ok.msg.body);
    assert_eq!(
        ok.msg.header("Content-Length"),
        Some(ok.msg.body.len().to_string().as_str())
    );
    assert!(ok.at - sent < ms(1000), "answered at once by default");
    f.expect_line("INVITE", call_id(&invite), 200);

    // No ACK yet: the 2xx is retransmitted (T1 = 50 ms: +50, +150, ...).
    let again = f.peer.recv_for(ms(400));
    assert!(
        again.len() >= 2 && again.iter().all(|g| g.msg.summary() == "200 INVITE"),
        "2xx retransmissions: {:?}",
        starts(&again)
    );
    assert!(
        again
            .iter()
            .all(|g| g.msg.to_tag().as_deref() == Some(&tag))
    );
    let ack = ack_2xx(&invite, &ok.msg, f.peer.local());
    f.send(&ack);
    let acked = Instant::now();
    let late = f.peer.recv_for(ms(800));
    assert!(
        late.iter().all(|g| g.at - acked < ms(60)),
        "2xx retransmitted after the ACK: {:?}",
        late.iter().map(|g| g.at - acked).collect::<Vec<_>>()
    );

    // BYE in the call: 200; the same BYE again (new transaction) is
    // outside any dialog now: 481.
    let mut bye = invite.follow("BYE", "2 BYE");
    bye.uri = angle_uri(contact).to_owned();
    bye.to = ok.msg.header("To").unwrap().to_owned();
    bye.via = Some(format!(
        "SIP/2.0/UDP {};branch={};rport",
        f.peer.local(),
        unique("z9hG4bK-bye")
    ));
    let resp = f.call(&bye);
    assert_eq!(resp.summary(), "200 BYE", "{}", resp.raw);
    f.expect_line("BYE", call_id(&invite), 200);
    let mut bye2 = bye.clone();
    bye2.cseq = "3 BYE".into();
    bye2.via = Some(format!(
        "SIP/2.0/UDP {};branch={};rport",
        f.peer.local(),
        unique("z9hG4bK-bye")
    ));
    assert_eq!(f.call(&bye2).summary(), "481 BYE");
    f.expect_line("BYE", call_id(&invite), 481);
}

#[test]
fn uas_answer_after_delays_the_200() {
    let f = Fixture::new(&["--answer-after-ms", "300"]);
    let invite = f.invite();
    let sent = Instant::now();
    f.send(&invite);
    let (ok, before) = f.peer.expect("200 INVITE", |m| m.code() == Some(200));
    assert_eq!(starts(&before), ["100 INVITE", "180 INVITE"]);
    assert!(before[1].at - sent < ms(200), "180 at once");
    let delay = ok.at - sent;
    assert!(
        delay >= ms(280) && delay < ms(1300),
        "200 after {delay:?}, expected about 300 ms"
    );
    f.send(&ack_2xx(&invite, &ok.msg, f.peer.local()));
}

#[test]
fn uas_final_486_is_retransmitted_until_its_ack() {
    let mut f = Fixture::new(&["--final", "486", "--t1-ms", "50", "--t2-ms", "200"]);
    let invite = f.invite();
    f.send(&invite);
    let (busy, before) = f.peer.expect("486", |m| m.code() == Some(486));
    assert_eq!(starts(&before), ["100 INVITE", "180 INVITE"]);
    assert_eq!(busy.msg.reason(), "Busy Here");
    assert_eq!(busy.msg.to_tag(), before[1].msg.to_tag());
    f.expect_line("INVITE", call_id(&invite), 486);
    // Timer G: +50, +150, +350 ms.
    let again = f.peer.recv_for(ms(400));
    assert!(
        again.len() >= 2 && again.iter().all(|g| g.msg.summary() == "486 INVITE"),
        "486 retransmissions: {:?}",
        starts(&again)
    );
    f.send(&ack_non2xx(&invite, &busy.msg));
    let acked = Instant::now();
    let late = f.peer.recv_for(ms(800));
    assert!(
        late.iter().all(|g| g.at - acked < ms(60)),
        "486 retransmitted after the ACK: {:?}",
        late.iter().map(|g| g.at - acked).collect::<Vec<_>>()
    );
}

#[test]
fn uas_ends_an_unacknowledged_call_with_bye_after_64_t1() {
    let mut f = Fixture::new(&["--t1-ms", "50", "--t2-ms", "200"]);
    let invite = f.invite();
    f.send(&invite);
    let (ok, _) = f.peer.expect("200 INVITE", |m| m.code() == Some(200));
    // 64*T1 = 3.2 s of 2xx retransmissions, then a BYE to our Contact.
    let (bye, retrans) = f.peer.expect("BYE", |m| m.method() == Some("BYE"));
    let after = bye.at - ok.at;
    assert!(
        after >= ms(3000) && after < ms(5000),
        "BYE after {after:?}, expected about 3.2 s"
    );
    assert!(
        retrans.len() >= 10 && retrans.iter().all(|g| g.msg.summary() == "200 INVITE"),
        "{:?}",
        starts(&retrans)
    );
    let m = &bye.msg;
    assert_eq!(
        m.request_uri(),
        Some(format!("sip:alice@{}", f.peer.local()).as_str())
    );
    assert_eq!(m.call_id(), invite.call_id.as_deref());
    assert_eq!(m.tag_of_from(), ok.msg.to_tag(), "BYE From is the uas side");
    assert_eq!(m.to_tag(), bins::tag_param(&invite.from));
    assert_eq!(m.cseq_method(), Some("BYE"));
    f.peer
        .send(&bins::response_to(m, 200, "OK", None), bye.from);
    f.expect_line("BYE", call_id(&invite), 200);
}

#[test]
fn uas_cancel_of_a_pending_invite_gets_200_and_the_invite_487() {
    let mut f = Fixture::new(&["--answer-after-ms", "5000"]);
    let invite = f.invite();
    f.send(&invite);
    let ringing = f.peer.expect_response(180, "INVITE");
    // CANCEL: same Request-URI, Call-ID, From, To, CSeq number and branch.
    let cancel = invite.follow("CANCEL", "1 CANCEL");
    f.send(&cancel);
    let ok = f.peer.expect_response(200, "CANCEL");
    let terminated = f.peer.expect_response(487, "INVITE");
    assert_eq!(terminated.msg.reason(), "Request Terminated");
    let tag = ringing.msg.to_tag().unwrap();
    assert_eq!(terminated.msg.to_tag().as_deref(), Some(tag.as_str()));
    assert_eq!(
        ok.msg.to_tag().as_deref(),
        Some(tag.as_str()),
        "RFC 3261 9.2: the 200 to CANCEL has the To tag of the INVITE's responses"
    );
    f.send(&ack_non2xx(&invite, &terminated.msg));
    f.expect_line("CANCEL", call_id(&invite), 200);
    f.expect_line("INVITE", call_id(&invite), 487);
    // The answer timer is gone with the call: no 200 later.
    f.peer.expect_silence(ms(500));
}

#[test]
fn uas_cancel_without_invite_481_and_bye_outside_dialog_481() {
    let mut f = Fixture::new(&[]);
    let cancel = f.req("CANCEL");
    let resp = f.call(&cancel);
    assert_eq!(resp.summary(), "481 CANCEL");
    assert!(resp.to_tag().is_some(), "a final response gets a To tag");
    f.expect_line("CANCEL", call_id(&cancel), 481);

    let mut bye = f.req("BYE");
    bye.to = format!("<{}>;tag=nosuchdialog", f.uri());
    let resp = f.call(&bye);
    assert_eq!(resp.summary(), "481 BYE");
    assert_eq!(resp.reason(), "Call/Transaction Does Not Exist");
    f.expect_line("BYE", call_id(&bye), 481);
}

#[test]
fn uas_unknown_method_gets_501() {
    let mut f = Fixture::new(&[]);
    let req = f.req("FOO");
    let resp = f.call(&req);
    assert_eq!(resp.summary(), "501 FOO");
    assert_eq!(resp.reason(), "Not Implemented");
    f.expect_line("FOO", call_id(&req), 501);
}

#[test]
fn uas_missing_call_id_gets_400_naming_it() {
    let f = Fixture::new(&[]);
    let mut req = f.req("OPTIONS");
    req.call_id = None;
    let resp = f.call(&req);
    assert_eq!(resp.code(), Some(400), "{}", resp.raw);
    assert!(resp.reason().contains("Call-ID"), "{:?}", resp.reason());
}

#[test]
fn uas_drops_a_request_without_via() {
    let f = Fixture::new(&[]);
    let mut req = f.req("OPTIONS");
    req.via = None;
    f.send(&req);
    f.peer.expect_silence(ms(500));
    // Still alive and answering.
    let ok = f.call(&f.req("OPTIONS"));
    assert_eq!(ok.code(), Some(200));
    assert!(
        !f.uas.proc.seen.iter().any(|l| l.contains(call_id(&req))),
        "{:?}",
        f.uas.proc.seen
    );
}

#[test]
fn uas_answers_a_retransmitted_options_from_the_cache() {
    let mut f = Fixture::new(&[]);
    let req = f.req("OPTIONS");
    let first = f.call(&req);
    let second = f.call(&req);
    assert_eq!(first.code(), Some(200));
    assert_eq!(second.raw, first.raw, "the cached response, byte for byte");
    // A later request's line proves the retransmission's would be there.
    let later = f.req("OPTIONS");
    f.call(&later);
    f.expect_line("OPTIONS", call_id(&later), 200);
    let lines = bins::count_matching(&f.uas.proc.seen, |l| l.contains(call_id(&req)));
    assert_eq!(lines, 1, "{:?}", f.uas.proc.seen);
}

#[test]
fn uas_policy_responses_from_rfc_4475() {
    let mut f = Fixture::new(&[]);
    // Request-URI scheme it does not support: 416 (RFC 3261 8.2.2.1).
    let mut req = f.req("OPTIONS");
    req.uri = "tel:+1-201-555-0123".into();
    let resp = f.call(&req);
    assert_eq!(resp.code(), Some(416), "{}", resp.raw);
    f.expect_line("OPTIONS", call_id(&req), 416);
    // Require of an extension it does not know: 420 listing it in
    // Unsupported (RFC 3261 8.2.2.3).
    let req = f.req("OPTIONS").with("Require: foo");
    let resp = f.call(&req);
    assert_eq!(resp.code(), Some(420), "{}", resp.raw);
    assert_eq!(resp.header("Unsupported"), Some("foo"));
    f.expect_line("OPTIONS", call_id(&req), 420);
    // INVITE with a body it cannot read: 415 with Accept (8.2.3).
    let req = f.req("INVITE").with_body("text/plain", "not sdp");
    let resp = f.call(&req);
    assert_eq!(resp.code(), Some(415), "{}", resp.raw);
    assert_eq!(resp.header("Accept"), Some("application/sdp"));
    f.send(&ack_non2xx(&req, &resp));
    f.expect_line("INVITE", call_id(&req), 415);
    // Unknown SIP version: 505 (answered by the dispatcher's checks).
    let mut req = f.req("OPTIONS");
    req.version = "SIP/7.0".into();
    let resp = f.call(&req);
    assert_eq!(resp.code(), Some(505), "{}", resp.raw);
}

// ---------------------------------------------------------------- uac ----

#[test]
fn uac_options_prints_200_ok_and_exits_0() {
    let mut uas = Uas::udp(&[]);
    let uri = format!("sip:bob@{}", uas.addr("udp", false));
    let out = run("uac", &[&uri], WAIT);
    assert_eq!(out.stdout, ["200 OK"], "{out:?}");
    assert_eq!(out.code(), 0, "{out:?}");
    uas.proc.expect_line_matching("OPTIONS ... -> 200", |l| {
        l.starts_with("OPTIONS ") && l.ends_with(" -> 200")
    });
}

/// `uac --method INVITE --hold-ms 100` against `uas`: INVITE and BYE.
fn invite_call(uas: &mut Uas, uri: &str) {
    let out = run(
        "uac",
        &["--method", "INVITE", "--hold-ms", "100", uri],
        WAIT,
    );
    assert_eq!(out.stdout, ["200 OK", "200 OK"], "{uri}: {out:?}");
    assert_eq!(out.code(), 0, "{uri}: {out:?}");
    let invite = uas.proc.expect_line_matching("INVITE ... -> 200", |l| {
        l.starts_with("INVITE ") && l.ends_with(" -> 200")
    });
    let call_id = invite.split(' ').nth(1).unwrap().to_owned();
    uas.proc.expect_line(&format!("BYE {call_id} -> 200"));
}

#[test]
fn uac_invite_call_over_udp_tcp_and_ipv6() {
    let mut uas = Uas::start(&[
        "--listen",
        "udp:127.0.0.1:0",
        "--listen",
        "tcp:127.0.0.1:0",
        "--listen",
        "udp:[::1]:0",
        "--listen",
        "tcp:[::1]:0",
    ]);
    let udp = uas.addr("udp", false);
    let tcp = uas.addr("tcp", false);
    let udp6 = uas.addr("udp", true);
    let tcp6 = uas.addr("tcp", true);
    invite_call(&mut uas, &format!("sip:bob@{udp}"));
    invite_call(&mut uas, &format!("sip:bob@{tcp};transport=tcp"));
    invite_call(&mut uas, &format!("sip:bob@{udp6}"));
    invite_call(&mut uas, &format!("sip:bob@{tcp6};transport=tcp"));
}

#[test]
fn uac_rejected_invite_prints_486_and_exits_1() {
    let uas = Uas::udp(&["--final", "486"]);
    let uri = format!("sip:bob@{}", uas.addr("udp", false));
    let out = run("uac", &["--method", "INVITE", &uri], WAIT);
    assert_eq!(out.stdout, ["486 Busy Here"], "{out:?}");
    assert_eq!(out.code(), 1, "{out:?}");
}

#[test]
fn uac_closed_port_is_econnrefused_exit_2() {
    let port = bins::closed_udp_port();
    let out = run("uac", &[&format!("sip:bob@127.0.0.1:{port}")], WAIT);
    assert_eq!(out.stdout.len(), 1, "{out:?}");
    assert!(out.stdout[0].starts_with("error ECONNREFUSED: "), "{out:?}");
    assert_eq!(out.code(), 2, "{out:?}");
}

#[test]
fn uac_silent_peer_is_etimedout_after_64_t1_exit_2() {
    let silent = UdpPeer::bind("127.0.0.1");
    let uri = format!("sip:bob@{}", silent.local());
    let started = Instant::now();
    let out = run("uac", &["--t1-ms", "20", &uri], WAIT);
    let took = started.elapsed();
    assert_eq!(out.stdout.len(), 1, "{out:?}");
    assert!(out.stdout[0].starts_with("error ETIMEDOUT: "), "{out:?}");
    assert_eq!(out.code(), 2, "{out:?}");
    // Timer F = 64*T1 = 1.28 s.
    assert!(
        took >= ms(1200) && took < ms(4000),
        "gave up after {took:?}, expected about 1.28 s"
    );
    // It did retransmit (T1 20 ms doubling to T2 4 s: 0, 20, 60, 140, ...).
    let got = silent.recv_for(ms(100));
    assert!(got.len() >= 5, "{} copies", got.len());
    assert!(got.iter().all(|g| g.msg.method() == Some("OPTIONS")));
}

/// `sent=N ok=N failed=N elapsed_ms=N rate=N/s p50_us=N p99_us=N p999_us=N`
fn parse_summary(line: &str) -> Vec<(String, u64)> {
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("{kv:?} in {line:?}"));
            let v = v.strip_suffix("/s").unwrap_or(v);
            let v: u64 = v
                .parse()
                .unwrap_or_else(|e| panic!("{kv:?} in {line:?}: {e}"));
            (k.to_owned(), v)
        })
        .collect()
}

#[test]
fn uac_count_and_window_print_the_summary() {
    let mut uas = Uas::udp(&[]);
    let uri = format!("sip:bob@{}", uas.addr("udp", false));
    let out = run("uac", &["--count", "20", "--window", "5", &uri], WAIT);
    assert_eq!(out.code(), 0, "{out:?}");
    let (summary, per_request) = out.stdout.split_last().unwrap();
    assert_eq!(per_request.len(), 20, "{out:?}");
    assert!(per_request.iter().all(|l| l == "200 OK"), "{out:?}");
    let fields = parse_summary(summary);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "sent",
            "ok",
            "failed",
            "elapsed_ms",
            "rate",
            "p50_us",
            "p99_us",
            "p999_us"
        ]
    );
    let v = |k: &str| fields.iter().find(|(n, _)| n == k).unwrap().1;
    assert_eq!((v("sent"), v("ok"), v("failed")), (20, 20, 0));
    assert!(v("elapsed_ms") < 10_000);
    assert!(v("rate") > 0);
    assert!(v("p50_us") > 0 && v("p50_us") <= v("p99_us") && v("p99_us") <= v("p999_us"));
    assert!(v("p999_us") <= v("elapsed_ms") * 1000 + 1000);
    // 20 distinct calls reached the uas.
    for _ in 0..20 {
        uas.proc
            .next_line(WAIT)
            .expect("an OPTIONS line per request");
    }
    let calls: std::collections::HashSet<&str> = uas
        .proc
        .seen
        .iter()
        .filter(|l| l.starts_with("OPTIONS ") && l.ends_with(" -> 200"))
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(calls.len(), 20, "{:?}", uas.proc.seen);
}

#[test]
fn uac_route_and_outgoing_proxy_send_a_domain_uri_to_the_uas() {
    let uas = Uas::udp(&[]);
    let at = uas.addr("udp", false);
    for args in [
        vec![
            "--route".to_owned(),
            format!("example.test=127.0.0.1:{}", at.port()),
        ],
        vec![
            "--route".to_owned(),
            format!("*.test=udp:127.0.0.1:{}", at.port()),
        ],
        vec!["--route".to_owned(), format!("*=127.0.0.1:{}", at.port())],
        vec![
            "--outgoing-proxy".to_owned(),
            format!("127.0.0.1:{}", at.port()),
        ],
    ] {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push("sip:bob@example.test");
        let out = run("uac", &args, WAIT);
        assert_eq!(out.stdout, ["200 OK"], "{args:?}: {out:?}");
        assert_eq!(out.code(), 0, "{args:?}: {out:?}");
    }
    // The request keeps its Request-URI: seen by a raw peer.
    let peer = UdpPeer::bind("127.0.0.1");
    let proc = Proc::example(
        "uac",
        &[
            "--route",
            &format!("example.test={}", peer.local()),
            "sip:bob@example.test",
        ],
    );
    let (req, _) = peer.expect("OPTIONS", |m| m.method() == Some("OPTIONS"));
    assert_eq!(req.msg.request_uri(), Some("sip:bob@example.test"));
    peer.send(
        &bins::response_to(&req.msg, 200, "OK", Some("t1")),
        req.from,
    );
    let out = proc.wait_exit(WAIT);
    assert_eq!(out.stdout, ["200 OK"], "{out:?}");
    // No route: the reserved domain (RFC 2606) does not resolve; bounded
    // loosely in case a DNS lookup has to time out on a machine without
    // a reachable name server.
    let out = run("uac", &["sip:bob@example.test"], Duration::from_secs(60));
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stdout[0].starts_with("error "), "{out:?}");
}

#[test]
fn bad_command_lines_exit_64_and_help_exits_0() {
    for (prog, args) in [
        ("uac", vec![]),
        ("uac", vec!["--bogus", "sip:a@127.0.0.1"]),
        ("uac", vec!["--count", "x", "sip:a@127.0.0.1"]),
        ("uac", vec!["--count", "0", "sip:a@127.0.0.1"]),
        ("uac", vec!["--method", "ACK", "sip:a@127.0.0.1"]),
        ("uac", vec!["tel:+123"]),
        ("uac", vec!["sip:a@127.0.0.1", "sip:b@127.0.0.1"]),
        ("uac", vec!["--route", "nonsense", "sip:a@127.0.0.1"]),
        ("uac", vec!["sip:a@127.0.0.1", "--hold-ms"]),
        ("uas", vec!["--bogus"]),
        ("uas", vec!["--final", "100"]),
        ("uas", vec!["--listen", "nonsense"]),
        ("uas", vec!["--answer-after-ms", "-1"]),
    ] {
        let out = run(prog, &args, WAIT);
        assert_eq!(out.code(), 64, "{prog} {args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{prog} {args:?}: {out:?}");
        assert!(
            out.stderr.contains(&format!("usage: {prog} ")),
            "{prog} {args:?}: {out:?}"
        );
    }
    for prog in ["uas", "uac"] {
        let out = run(prog, &["--help"], WAIT);
        assert_eq!(out.code(), 0, "{out:?}");
        assert!(
            out.stdout[0].starts_with(&format!("usage: {prog} ")),
            "{out:?}"
        );
    }
}

/// Answers an INVITE from `uac` on `peer` with 200 (Contact: the peer).
fn answer_invite(peer: &UdpPeer, invite: &Got, tag: &str) {
    let ok = bins::response_to(&invite.msg, 200, "OK", Some(tag)).replace(
        "Content-Length: 0\r\n",
        &format!(
            "Contact: <sip:peer@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n",
            peer.local(),
            SDP.len()
        ),
    ) + SDP;
    peer.send(&ok, invite.from);
}

/// The BYE is a request too: a 481 to it makes the exit code 1.
#[test]
fn uac_rejected_bye_prints_it_and_exits_1() {
    let peer = UdpPeer::bind("127.0.0.1");
    let proc = Proc::example(
        "uac",
        &["--method", "INVITE", &format!("sip:bob@{}", peer.local())],
    );
    let (invite, _) = peer.expect("INVITE", |m| m.method() == Some("INVITE"));
    answer_invite(&peer, &invite, "p3");
    let (bye, _) = peer.expect("BYE", |m| m.method() == Some("BYE"));
    peer.send(
        &bins::response_to(&bye.msg, 481, "Call/Transaction Does Not Exist", None),
        bye.from,
    );
    let out = proc.wait_exit(WAIT);
    assert_eq!(
        out.stdout,
        ["200 OK", "481 Call/Transaction Does Not Exist"],
        "{out:?}"
    );
    assert_eq!(out.code(), 1, "{out:?}");
}

// ------------------------------------------------- timing from outside ----

/// Asserts arrival times (relative to the first) within ±40 ms.
fn assert_schedule(arrivals: &[Instant], expected_ms: &[u64]) {
    let got: Vec<u64> = arrivals
        .iter()
        .map(|t| (*t - arrivals[0]).as_millis() as u64)
        .collect();
    assert_eq!(got.len(), expected_ms.len(), "arrivals {got:?}");
    for (g, e) in got.iter().zip(expected_ms) {
        assert!(
            g.abs_diff(*e) <= 40,
            "arrivals at {got:?} ms, expected {expected_ms:?} (±40 ms)"
        );
    }
}

/// Receives `n` copies of one request (retransmissions: same branch,
/// Call-ID and CSeq) and returns the last with the arrival times.
fn receive_copies(peer: &UdpPeer, method: &str, n: usize) -> (Got, Vec<Instant>) {
    let mut times = Vec::new();
    let mut first: Option<Got> = None;
    loop {
        let g = peer
            .recv(WAIT)
            .unwrap_or_else(|| panic!("copy {} of {method} missing", times.len() + 1));
        assert_eq!(g.msg.method(), Some(method), "{}", g.msg.raw);
        if let Some(f) = &first {
            for h in ["Via", "Call-ID", "CSeq", "From"] {
                assert_eq!(g.msg.header(h), f.msg.header(h), "{h} of a retransmission");
            }
        }
        times.push(g.at);
        first.get_or_insert_with(|| g.clone());
        if times.len() == n {
            return (g, times);
        }
    }
}

/// A peer that ignores the first 4 OPTIONS and answers the 5th: the uac
/// retransmits at T1 = 500 ms doubling (Timer E: 0, 500, 1500, 3500,
/// 7500 ms), then prints the answer.
#[test]
fn uac_options_retransmission_schedule_seen_by_a_peer() {
    let peer = UdpPeer::bind("127.0.0.1");
    let proc = Proc::example("uac", &[&format!("sip:bob@{}", peer.local())]);
    let (last, times) = receive_copies(&peer, "OPTIONS", 5);
    assert_schedule(&times, &[0, 500, 1500, 3500, 7500]);
    peer.send(
        &bins::response_to(&last.msg, 200, "OK", Some("p1")),
        last.from,
    );
    let out = proc.wait_exit(WAIT);
    assert_eq!(out.stdout, ["200 OK"], "{out:?}");
    assert_eq!(out.code(), 0, "{out:?}");
}

/// The same for an INVITE (Timer A: 0, 500, 1500, 3500 ms), answered with
/// 200 on the 4th copy: the uac ACKs it and hangs up with BYE.
#[test]
fn uac_invite_retransmission_schedule_seen_by_a_peer() {
    let peer = UdpPeer::bind("127.0.0.1");
    let proc = Proc::example(
        "uac",
        &["--method", "INVITE", &format!("sip:bob@{}", peer.local())],
    );
    let (last, times) = receive_copies(&peer, "INVITE", 4);
    assert_schedule(&times, &[0, 500, 1500, 3500]);
    answer_invite(&peer, &last, "p2");
    let (ack, before) = peer.expect("ACK", |m| m.method() == Some("ACK"));
    assert!(before.is_empty(), "{:?}", starts(&before));
    assert_eq!(
        ack.msg.request_uri(),
        Some(format!("sip:peer@{}", peer.local()).as_str())
    );
    assert_eq!(ack.msg.to_tag().as_deref(), Some("p2"));
    let (bye, _) = peer.expect("BYE", |m| m.method() == Some("BYE"));
    peer.send(&bins::response_to(&bye.msg, 200, "OK", None), bye.from);
    let out = proc.wait_exit(WAIT);
    assert_eq!(out.stdout, ["200 OK", "200 OK"], "{out:?}");
    assert_eq!(out.code(), 0, "{out:?}");
}

// ------------------------------------------------------------ signals ----

#[test]
fn uas_exits_0_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let uas = Uas::udp(&[]);
        // Busy with a ringing call, or idle: either way it stops.
        let peer = UdpPeer::bind("127.0.0.1");
        let to = uas.addr("udp", false);
        peer.send_req(
            &Req::new(
                "INVITE",
                &format!("sip:bob@{to}"),
                peer.local(),
                "sig",
                "z9hG4bKsig",
            ),
            to,
        );
        let _ = peer.expect("200", |m| m.code() == Some(200));
        std::thread::sleep(ms(100));
        uas.proc.signal(sig);
        let out = uas.proc.wait_exit(ms(3000));
        assert_eq!(out.code(), 0, "signal {sig}: {out:?}");
    }
}

/// The uac stops at once on SIGTERM and exits 2: the request it was
/// waiting for did not finish (the contract's "a delivery failed").
#[test]
fn uac_stops_on_sigterm_with_exit_2() {
    let silent = UdpPeer::bind("127.0.0.1");
    let uri = format!("sip:bob@{}", silent.local());
    let proc = Proc::example("uac", &["--count", "3", &uri]);
    let _ = silent.expect("OPTIONS", |m| m.method() == Some("OPTIONS"));
    std::thread::sleep(ms(100));
    let signalled = Instant::now();
    proc.signal(libc::SIGTERM);
    let out = proc.wait_exit(ms(3000));
    assert!(signalled.elapsed() < ms(2000));
    assert_eq!(out.code(), 2, "{out:?}");
    // The request in flight is reported as cancelled, no new one is
    // started, and the summary says what was done.
    assert_eq!(out.stdout.len(), 2, "{out:?}");
    assert!(out.stdout[0].starts_with("error ECANCELED: "), "{out:?}");
    let summary = &out.stdout[1];
    let fields = parse_summary(summary);
    assert_eq!(fields[0], ("sent".to_owned(), 1), "{summary}");
    assert_eq!(fields[1], ("ok".to_owned(), 0), "{summary}");
}
