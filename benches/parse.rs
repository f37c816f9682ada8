//! SIP parsing and writing: `sip_dispatch` side by side with the `rsip`
//! crate (0.4), on the same bytes in the same run.
//!
//! Messages: a typical INVITE (~900 bytes, 12 headers, SDP offer) and the
//! `200 OK` answering it (~500 bytes, with an SDP answer).
//!
//! Groups:
//! - `parse/invite`, `parse/200ok`: bytes to message.
//! - `write/invite`, `write/200ok`: message to bytes. `sip_dispatch` writes
//!   an unmodified message (byte for byte) and, as `sip_dispatch_edited`, a
//!   message with a Via pushed on top (a proxy's edit, done once before
//!   timing); `rsip` formats its parsed message with `to_string()`.
//! - `parse_and_access/invite`: parse, then the top Via's branch, CSeq,
//!   Call-ID and From tag through each crate's typed access.
//! - `validate/options` (ours only): what a server does with every request
//!   before answering it: parse the load generator's OPTIONS, the RFC 3261
//!   checks of `Request::check` (400/505), and the server transaction key;
//!   `via/parse`: the top Via alone.
//!
//! Run with `cargo bench --bench parse`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rsip::prelude::{HeadersExt, ToTypedHeader, UntypedHeader};
use sip_dispatch::packet::Packet;
use std::hint::black_box;
use std::time::Duration;

/// A typical INVITE with an SDP offer: 12 headers, CRLF line ends.
const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9a3c1e8d2f70;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Bob Biloxi\" <sip:bob@biloxi.example.com>\r\n\
From: \"Alice Atlanta\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.101:5060;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE, MESSAGE\r\n\
Supported: replaces, timer, 100rel, path, outbound, gruu\r\n\
User-Agent: ExamplePhone/4.2.1 (Linux; build 2024.06.17)\r\n\
Content-Length: 264\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// The `200 OK` answering [`INVITE`], with an SDP answer: 8 headers.
const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9a3c1e8d2f70;rport=5060;received=192.0.2.101\r\n\
To: \"Bob Biloxi\" <sip:bob@biloxi.example.com>;tag=8321234356\r\n\
From: \"Alice Atlanta\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=bob 2808844564 2808844564 IN IP4 192.0.2.4\r\n\
s=-\r\n\
c=IN IP4 192.0.2.4\r\n\
t=0 0\r\n\
m=audio 3456 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// The Via a proxy pushes on top (the `write ... edited` case).
const PROXY_VIA: &str = "SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bKnashds8";

/// Start-up checks: sizes, CRLF line ends, Content-Length, and that both
/// crates parse both messages (and agree on the fields we access).
fn check_messages() {
    assert!(
        (850..=950).contains(&INVITE.len()),
        "INVITE is {} bytes",
        INVITE.len()
    );
    assert!(
        (400..=600).contains(&OK_200.len()),
        "200 OK is {} bytes",
        OK_200.len()
    );
    for msg in [INVITE, OK_200] {
        for (i, &b) in msg.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(msg[i - 1], b'\r', "bare LF at {i}");
            }
        }
        let ours = Packet::parse(msg).expect("sip_dispatch parses");
        let head = msg.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(
            ours.content_length(),
            Some(msg.len() - head),
            "Content-Length"
        );
        assert_eq!(ours.body(), &msg[head..]);
        assert_eq!(ours.to_bytes(), msg, "sip_dispatch writes back verbatim");
        let theirs = rsip::SipMessage::try_from(msg).expect("rsip parses");
        assert_eq!(theirs.body().as_slice(), ours.body());
        assert_eq!(
            theirs.call_id_header().unwrap().value(),
            ours.call_id().unwrap()
        );
    }
    let invite = Packet::parse(INVITE).unwrap();
    eprintln!(
        "INVITE: {} bytes (body {}), 200 OK: {} bytes (body {})",
        INVITE.len(),
        invite.body().len(),
        OK_200.len(),
        Packet::parse(OK_200).unwrap().body().len()
    );
    assert!(invite.is_request());
    assert_eq!(invite.headers().len(), 12);
    assert_eq!(our_access(&invite), rsip_access(INVITE));
    assert_eq!(Packet::parse(OK_200).unwrap().to_tag(), Some("8321234356"));
    let mut edited = Packet::parse(INVITE).unwrap();
    edited.headers_mut().prepend("Via", PROXY_VIA);
    let text = String::from_utf8(edited.to_bytes()).unwrap();
    assert!(text.contains(&format!(
        "\r\nVia: {PROXY_VIA}\r\nVia: SIP/2.0/UDP 192.0.2.101"
    )));
    assert_eq!(
        text.len(),
        INVITE.len() + "Via: \r\n".len() + PROXY_VIA.len()
    );
}

/// Branch, CSeq number, Call-ID length and From tag length: what a
/// transaction layer reads first, through `sip_dispatch`'s typed access.
fn our_access(p: &Packet) -> (usize, u32, usize, usize) {
    let via = p.top_via().expect("Via");
    let branch = via.branch().expect("branch");
    let cseq = p.cseq().expect("CSeq");
    let call_id = p.call_id().expect("Call-ID");
    let tag = p.from_tag().expect("From tag");
    (branch.len(), cseq.number, call_id.len(), tag.len())
}

/// The same through `rsip`'s typed headers (parse included).
fn rsip_access(bytes: &[u8]) -> (usize, u32, usize, usize) {
    let msg = rsip::SipMessage::try_from(bytes).expect("rsip parses");
    let via = msg.via_header().expect("Via").typed().expect("typed Via");
    let branch = via.branch().expect("branch").value();
    let cseq = msg
        .cseq_header()
        .expect("CSeq")
        .typed()
        .expect("typed CSeq");
    let call_id = msg.call_id_header().expect("Call-ID").value();
    let from = msg
        .from_header()
        .expect("From")
        .typed()
        .expect("typed From");
    let tag = from.tag().expect("From tag").value();
    (branch.len(), cseq.seq, call_id.len(), tag.len())
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .without_plots()
}

fn parse(c: &mut Criterion) {
    check_messages();
    for (name, msg) in [("invite", INVITE), ("200ok", OK_200)] {
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("sip_dispatch", |b| {
            b.iter(|| Packet::parse(black_box(msg)).unwrap())
        });
        g.bench_function("rsip", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(msg)).unwrap())
        });
        g.finish();
    }
}

fn write(c: &mut Criterion) {
    for (name, msg) in [("invite", INVITE), ("200ok", OK_200)] {
        let ours = Packet::parse(msg).unwrap();
        let mut edited = ours.clone();
        edited.headers_mut().prepend("Via", PROXY_VIA);
        let theirs = rsip::SipMessage::try_from(msg).unwrap();
        let mut g = c.benchmark_group(format!("write/{name}"));
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function("sip_dispatch", |b| b.iter(|| black_box(&ours).to_bytes()));
        g.bench_function("sip_dispatch_edited", |b| {
            b.iter(|| black_box(&edited).to_bytes())
        });
        g.bench_function("rsip", |b| {
            b.iter(|| black_box(&theirs).to_string().into_bytes())
        });
        g.finish();
    }
}

fn parse_and_access(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_and_access/invite");
    g.throughput(Throughput::Bytes(INVITE.len() as u64));
    g.bench_function("sip_dispatch", |b| {
        b.iter(|| our_access(&Packet::parse(black_box(INVITE)).unwrap()))
    });
    g.bench_function("rsip", |b| b.iter(|| rsip_access(black_box(INVITE))));
    g.finish();
}

/// The load generator's OPTIONS (bench/common/wire.rs), as a server
/// receives it.
const OPTIONS: &[u8] = b"OPTIONS sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKlg00000000000004d2;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@127.0.0.1:5060>\r\n\
From: <sip:loadgen@127.0.0.1:40000>;tag=4a7f1c2e\r\n\
Call-ID: 00000000000004d2@loadgen.bench\r\n\
CSeq: 1 OPTIONS\r\n\
Contact: <sip:loadgen@127.0.0.1:40000>\r\n\
Accept: application/sdp\r\n\
User-Agent: sip-dispatch-loadgen\r\n\
Content-Length: 0\r\n\r\n";

fn validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("validate/options");
    g.bench_function("parse", |b| {
        b.iter(|| Packet::parse(black_box(OPTIONS)).unwrap())
    });
    g.bench_function("parse_check_key", |b| {
        b.iter(|| {
            let p = Packet::parse(black_box(OPTIONS)).unwrap();
            let req = p.as_request().unwrap();
            assert!(req.check().is_ok());
            req.server_key().unwrap()
        })
    });
    g.finish();
    let via = "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKlg00000000000004d2;rport=40000;received=127.0.0.2";
    c.bench_function("via/parse", |b| {
        b.iter(|| {
            sip_dispatch::packet::Via::parse(black_box(via))
                .unwrap()
                .branch()
                .map(str::len)
        })
    });
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse, write, parse_and_access, validate
}
criterion_main!(benches);
