//! RFC 4475 (SIP Torture Test Messages): one test per message, asserting
//! what the message's section says an element must see or do.
//!
//! Fixtures are the RFC's messages byte for byte (tests/fixtures/rfc4475).
//! Section 3.1.1 messages are valid: they parse, the values the section
//! names are asserted, `check()` passes for requests, and the message is
//! written back byte for byte. Section 3.1.2 messages are invalid: the
//! parser rejects them with a precise kind, or they parse and the flaw is
//! reported by `check()` or by the typed accessor that meets it. Sections
//! 3.2 to 3.4 parse, and what the section says an element must do is
//! detectable through the API.

use std::net::{IpAddr, Ipv4Addr};

use sip_dispatch::packet::{
    BRANCH_MAGIC_COOKIE, Framing, HeaderName, Method, NameAddr, Packet, ParseError, ParseErrorKind,
    ParseLimits, Rejection, Request, Response, SipUri, StreamFramer, Uri, UriError, Via,
    percent_decode, unquote,
};

// ----------------------------------------------------------------------------
// Helpers

fn packet(bytes: &[u8]) -> Packet {
    Packet::parse(bytes).unwrap_or_else(|e| panic!("should parse: {e}"))
}

fn request(bytes: &[u8]) -> Request {
    match packet(bytes) {
        Packet::Request(r) => r,
        Packet::Response(_) => panic!("expected a request"),
    }
}

fn response(bytes: &[u8]) -> Response {
    match packet(bytes) {
        Packet::Response(r) => r,
        Packet::Request(_) => panic!("expected a response"),
    }
}

fn parse_error(bytes: &[u8]) -> ParseError {
    match Packet::parse(bytes) {
        Ok(_) => panic!("should not parse"),
        Err(e) => e,
    }
}

/// The message written back is the input, byte for byte.
fn assert_round_trip(written: Vec<u8>, input: &[u8]) {
    if written != input {
        panic!(
            "written back differs:\n--- written\n{}\n--- input\n{}",
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(input)
        );
    }
}

fn sip(uri: &Uri) -> &SipUri {
    uri.as_sip()
        .unwrap_or_else(|| panic!("not a SIP URI: {uri}"))
}

fn sip_uri(name_addr: &NameAddr<'_>) -> SipUri {
    match name_addr.uri().expect("URI parses") {
        Uri::Sip(u) => u,
        Uri::Other(u) => panic!("not a SIP URI: {}", u.as_str()),
    }
}

fn vias(req: &Request) -> Vec<Via<'_>> {
    req.vias().map(|v| v.expect("Via parses")).collect()
}

fn contacts(req: &Request) -> Vec<NameAddr<'_>> {
    req.contacts().map(|c| c.expect("Contact parses")).collect()
}

fn rejection(req: &Request) -> Rejection {
    req.check().expect_err("check() should reject")
}

fn bad_request(why: &str) -> Rejection {
    Rejection {
        status: 400,
        reason: format!("Bad Request ({why})"),
    }
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
}

// ----------------------------------------------------------------------------
// 3.1.1 Valid messages

/// 3.1.1.1 A Short Tortuous INVITE: "All elements should treat this as a
/// well-formed request." Folding, escaped quotes, an empty Subject, LWS
/// everywhere, compact and long forms, unknown headers and parameters,
/// leading zeros.
#[test]
fn s3_1_1_1_wsinv() {
    let bytes = include_bytes!("fixtures/rfc4475/wsinv.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Invite);
    let uri = sip(req.uri());
    assert_eq!(uri.user(), Some("vivekg"));
    assert_eq!(uri.host_str(), "chair-dnrc.example.com");
    // "a uri parameter with no value"
    assert_eq!(uri.param("unknownparam"), Some(None));

    let to = req.to().unwrap();
    assert_eq!(to.display_name(), None);
    assert_eq!(to.uri_str(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));

    // "escaped characters within quotes": "J Rosenberg \\\"" is J Rosenberg \"
    let from = req.from().unwrap();
    assert_eq!(from.display_name().as_deref(), Some(r#"J Rosenberg \""#));
    assert_eq!(from.uri_str(), "sip:jdrosen@example.com");
    assert_eq!(from.tag(), Some("98asjd8"));

    // "integer fields (Max-Forwards and CSeq) with leading zeros"
    assert_eq!(req.max_forwards(), Ok(Some(68)));
    let cseq = req.cseq().unwrap();
    assert_eq!((cseq.number, cseq.method), (9, Method::Invite));

    assert_eq!(req.call_id(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(req.content_length(), Some(150));
    assert_eq!(req.body().len(), 150);
    assert_eq!(header(&req, "Content-Type"), "application/sdp");

    // "both comma separated and separately listed header field values" and
    // "a mix of short and long form for the same header field name".
    let vias = vias(&req);
    assert_eq!(vias.len(), 3);
    let summary: Vec<_> = vias
        .iter()
        .map(|v| {
            (
                v.protocol(),
                v.version(),
                v.transport(),
                v.host(),
                v.port(),
                v.branch(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("SIP", "2.0", "UDP", "192.0.2.2", None, Some("390skdjuw")),
            (
                "SIP",
                "2.0",
                "TCP",
                "spindle.example.com",
                None,
                Some("z9hG4bK9ikj8")
            ),
            (
                "SIP",
                "2.0",
                "UDP",
                "192.168.255.111",
                None,
                Some("z9hG4bK30239")
            ),
        ]
    );
    assert!(!vias[0].has_rfc3261_branch());
    assert!(vias[1].has_rfc3261_branch());

    // "an empty subject"
    assert_eq!(req.headers().get(HeaderName::Subject), Some(""));
    // "unknown header fields", folded value unfolded to one line
    assert_eq!(
        header(&req, "newfangledheader"),
        "newfangled value continued newfangled value"
    );
    // Kept as a plain value: "it must parse it as a header value".
    assert_eq!(header(&req, "UnknownHeaderWithUnusualValue"), ";;,,;;,;");

    // "unknown parameters of a known header field"
    let routes: Vec<_> = req.routes().map(Result::unwrap).collect();
    assert_eq!(routes.len(), 1);
    let route = sip_uri(&routes[0]);
    assert!(route.is_loose_route());
    assert_eq!(route.param("unknownwith"), Some(Some("value")));
    assert_eq!(route.param("unknown-no-value"), Some(None));

    // "a header parameter with no value"
    let contacts = contacts(&req);
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].display_name().as_deref(),
        Some(r#"Quoted string """#)
    );
    assert_eq!(contacts[0].uri_str(), "sip:jdrosen@example.com");
    let params = contacts[0].params();
    assert_eq!(params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(params.get("secondparam"), Some(None));
    assert_eq!(params.get("q"), Some(Some("0.33")));

    assert_eq!(req.headers().len(), 14);
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.2 Wide Range of Valid Characters: the method, Request-URI, branch,
/// display names, parameters, Call-ID and an extension header use every
/// unusual character their productions allow.
#[test]
fn s3_1_1_2_intmeth() {
    let bytes = include_bytes!("fixtures/rfc4475/intmeth.dat");
    let req = request(bytes);
    // "A method of IN%56ITE is an unknown method."
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(req.method(), &Method::Extension(method.into()));

    let uri = sip(req.uri());
    let user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*";
    assert_eq!(uri.user(), Some(user));
    assert_eq!(
        uri.password(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(uri.host_str(), "example.com");

    // "A branch parameter contains all non-alphanum characters from token."
    let via = req.top_via().unwrap();
    assert_eq!((via.transport(), via.host()), ("TCP", "host1.example.com"));
    assert_eq!(via.branch(), Some("z9hG4bK-.!%66*_+`'~"));

    // "quoted-pair expansions, including a quoted NULL character"
    let to = req.to().unwrap();
    assert_eq!(
        to.display_name().as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
    );
    assert_eq!(sip_uri(&to).user(), Some(user));

    // "multiple tokens (instead of a quoted string)", an unknown parameter
    // with a UTF-8 value, a tag of token characters.
    let from = req.from().unwrap();
    assert_eq!(
        from.display_name().as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    let value = from.params().get("fromParam''~+*_!.-%").unwrap().unwrap();
    assert_eq!(unquote(value), "работающий");
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));

    // "% is not an escape character", quotes and brackets need not balance.
    assert_eq!(
        req.call_id(),
        Some(r#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#)
    );
    let cseq = req.cseq().unwrap();
    assert_eq!(cseq.number, 139122385);
    assert_eq!(&cseq.method, req.method());
    assert_eq!(req.max_forwards(), Ok(Some(255)));
    assert_eq!(header(&req, "extensionHeader-!.%*+_`'~"), "\u{feff}大停電");
    assert_eq!(req.content_length(), Some(0));

    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.3 Valid Use of the % Escaping Mechanism: "The application using
/// the message must treat the % HEX HEX expansions as equivalent to the
/// character being encoded", never recursively.
#[test]
fn s3_1_1_3_esc01() {
    let bytes = include_bytes!("fixtures/rfc4475/esc01.dat");
    let req = request(bytes);
    // "The request-URI has sips:user@example.com embedded in its userpart."
    let uri = sip(req.uri());
    assert_eq!(uri.user(), Some("sips%3Auser%40example.com"));
    assert_eq!(
        uri.user_unescaped().as_deref(),
        Some(&b"sips:user@example.com"[..])
    );
    assert_eq!(uri.host_str(), "example.net");

    // "The From and To URIs have escaped characters in their userparts."
    let to = sip_uri(&req.to().unwrap());
    assert_eq!(to.user_unescaped().as_deref(), Some(&b"user"[..]));
    let from = req.from().unwrap();
    assert_eq!(
        sip_uri(&from).user_unescaped().as_deref(),
        Some(&b"I have spaces"[..])
    );
    assert_eq!(from.tag(), Some("938"));

    // Compact forms i: and C:.
    assert_eq!(req.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(header(&req, "Content-Type"), "application/sdp");

    // "The Contact URI has escaped characters in the URI parameters. Note
    // that the "name" uri-parameter has a value of "value%41", which is NOT
    // equivalent to "valueA"."
    let contacts = contacts(&req);
    let contact = sip_uri(&contacts[0]);
    assert_eq!(contact.user_unescaped().as_deref(), Some(&b"caller"[..]));
    let params: Vec<_> = contact
        .params()
        .map(|(n, v)| {
            (
                percent_decode(n).into_owned(),
                v.map(|v| percent_decode(v).into_owned()),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            (b"lr".to_vec(), None),
            (b"name".to_vec(), Some(b"value%41".to_vec())),
        ]
    );

    assert_eq!(req.content_length(), Some(150));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.4 Escaped Nulls in URIs: "take special care when unescaping the
/// Address-of-Record (AOR) in this request so as to not prematurely
/// shorten the username. This request registers two distinct contact
/// URIs."
#[test]
fn s3_1_1_4_escnull() {
    let bytes = include_bytes!("fixtures/rfc4475/escnull.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Register);
    let aor = sip_uri(&req.to().unwrap());
    assert_eq!(aor.user_unescaped().as_deref(), Some(&b"null-\0-null"[..]));
    let from = req.from().unwrap();
    assert_eq!(
        sip_uri(&from).user_unescaped().as_deref(),
        Some(&b"null-\0-null"[..])
    );
    assert_eq!(from.tag(), Some("839923423"));

    let contacts: Vec<SipUri> = contacts(&req).iter().map(sip_uri).collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].user_unescaped().as_deref(), Some(&b"\0"[..]));
    assert_eq!(contacts[1].user_unescaped().as_deref(), Some(&b"\0\0"[..]));
    assert!(!contacts[0].equivalent(&contacts[1]));

    assert_eq!(req.content_length(), Some(0));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.5 Use of % When It Is Not an Escape: "The request method is
/// unknown. It is NOT equivalent to REGISTER." "The display name portion of
/// the To and From header fields is "%Z%45"." "This message has two Contact
/// header field values, not three."
#[test]
fn s3_1_1_5_esc02() {
    let bytes = include_bytes!("fixtures/rfc4475/esc02.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Extension("RE%47IST%45R".into()));
    assert_ne!(req.method(), &Method::Register);
    assert_eq!(req.to().unwrap().display_name().as_deref(), Some("%Z%45"));
    assert_eq!(req.from().unwrap().display_name().as_deref(), Some("%Z%45"));
    assert_eq!(req.from_tag(), Some("f232jadfj23"));
    assert_eq!(
        req.top_via().unwrap().branch(),
        Some("z9hG4bK209%fzsnel234")
    );
    assert_eq!(&req.cseq().unwrap().method, req.method());

    let contacts: Vec<_> = contacts(&req).iter().map(|c| c.uri_str()).collect();
    assert_eq!(
        contacts,
        [
            "sip:alias1@host1.example.com",
            "sip:alias3@host3.example.com"
        ]
    );
    // <sip:alias2@host2.example.com> is a C%6Fntact header field value.
    assert_eq!(header(&req, "C%6Fntact"), "<sip:alias2@host2.example.com>");

    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.6 Message with No LWS between Display Name and <: "Elements
/// should accept this request as well formed."
#[test]
fn s3_1_1_6_lwsdisp() {
    let bytes = include_bytes!("fixtures/rfc4475/lwsdisp.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Options);
    let from = req.from().unwrap();
    assert_eq!(from.display_name().as_deref(), Some("caller"));
    assert_eq!(from.uri_str(), "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.7 Long Values in Header Fields: a long display name and URI
/// parameters in To, long header parameters and tag in From, a long
/// Call-ID, a long unknown header, and 34 Via values in every spelling.
#[test]
fn s3_1_1_7_longreq() {
    let bytes = include_bytes!("fixtures/rfc4475/longreq.dat");
    let req = request(bytes);
    let long = |s: &str, n: usize| s.repeat(n);

    let to = req.to().unwrap();
    assert_eq!(
        to.display_name().as_deref(),
        Some(format!("I have a user name of {} proportion", long("extreme", 10)).as_str())
    );
    let to_uri = sip_uri(&to);
    assert_eq!(to_uri.port(), Some(6000));
    let unknown1 = format!("very{}value", long("long", 20));
    assert_eq!(to_uri.param("unknownparam1"), Some(Some(unknown1.as_str())));
    let name = format!("longparam{}", long("name", 25));
    assert_eq!(to_uri.param(&name), Some(Some("shortvalue")));
    let name = format!("very{}ParameterNameWithNoValue", long("long", 25));
    assert_eq!(to_uri.param(&name), Some(None));

    let from = req.from().unwrap();
    let user = long("amazinglylongcallername", 5);
    assert_eq!(sip_uri(&from).user(), Some(user.as_str()));
    let tag = format!("12{}424", long("982", 50));
    assert_eq!(from.tag(), Some(tag.as_str()));
    let name = format!("unknownheaderparam{}", long("name", 20));
    let value = format!("unknowheaderparam{}", long("value", 15));
    assert_eq!(from.params().get(&name), Some(Some(value.as_str())));
    let name = format!("unknownValueless{}", long("paramname", 10));
    assert_eq!(from.params().get(&name), Some(None));

    let call_id = format!("longreq.one{}longcallid", long("really", 20));
    assert_eq!(req.call_id(), Some(call_id.as_str()));

    let name = format!("Unknown-{}-Name", long("Long", 20));
    let word = format!("unknown-{}", long("long", 20));
    assert_eq!(
        header(&req, &name),
        format!("{word}-value; {word}-parameter-name = {word}-parameter-value")
    );

    let vias = vias(&req);
    assert_eq!(vias.len(), 34);
    for (i, via) in vias[..33].iter().enumerate() {
        assert_eq!(via.transport(), "TCP");
        assert_eq!(via.host(), format!("sip{}.example.com", 33 - i));
        assert_eq!(via.params().count(), 0);
    }
    let last = &vias[33];
    assert_eq!(last.host(), "host.example.com");
    assert_eq!(last.received(), Some("192.0.2.5"));
    let branch = format!("very{}branchvalue", long("long", 50));
    assert_eq!(last.branch(), Some(branch.as_str()));
    assert!(!last.has_rfc3261_branch());

    let contacts = contacts(&req);
    assert_eq!(sip_uri(&contacts[0]).user(), Some(user.as_str()));
    assert_eq!(req.content_length(), Some(150));
    assert_eq!(req.body().len(), 150);
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.8 Extra Trailing Octets in a UDP Datagram: the octets after the
/// REGISTER "are just spurious noise that must be ignored"; "If the
/// element is a proxy choosing to forward the REGISTER, the INVITE octets
/// would not appear in the forwarded request."
#[test]
fn s3_1_1_8_dblreq() {
    let bytes = include_bytes!("fixtures/rfc4475/dblreq.dat");
    let first = &bytes[..bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4];
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Register);
    assert_eq!(
        req.call_id(),
        Some("dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    );
    assert_eq!(req.max_forwards(), Ok(Some(8)));
    assert_eq!(req.content_length(), Some(0));
    assert!(req.body().is_empty());
    assert_eq!(contacts(&req)[0].uri_str(), "sip:j.user@host.example.com");
    assert_eq!(req.top_via().unwrap().branch(), Some("z9hG4bKkdjuw23492"));
    assert_eq!(req.check(), Ok(()));
    // The first message only, without the INVITE octets.
    assert_round_trip(req.to_bytes(), first);
    assert!(first.len() < bytes.len());
}

/// 3.1.1.9 Semicolon-Separated Parameters in URI User Part: "The
/// Request-URI will parse so that the user part is
/// "user;par=u@example.net"."
#[test]
fn s3_1_1_9_semiuri() {
    let bytes = include_bytes!("fixtures/rfc4475/semiuri.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.user(), Some("user;par=u%40example.net"));
    assert_eq!(
        uri.user_unescaped().as_deref(),
        Some(&b"user;par=u@example.net"[..])
    );
    assert_eq!(uri.host_str(), "example.com");
    assert_eq!(uri.params().count(), 0);
    // The folded Accept header is one list of six values.
    let accept: Vec<_> = req.headers().get_all("Accept").collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.10 Varied and Unknown Transport Types: "Parsers must accept this
/// message as well formed."
#[test]
fn s3_1_1_10_transports() {
    let bytes = include_bytes!("fixtures/rfc4475/transports.dat");
    let req = request(bytes);
    let vias: Vec<_> = vias(&req)
        .iter()
        .map(|v| (v.transport(), v.host()))
        .collect();
    assert_eq!(
        vias,
        [
            ("UDP", "t1.example.com"),
            ("SCTP", "t2.example.com"),
            ("TLS", "t3.example.com"),
            ("UNKNOWN", "t4.example.com"),
            ("TCP", "t5.example.com"),
        ]
    );
    assert_eq!(req.call_id(), Some("transports.kijh4akdnaqjkwendsasfdj"));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.11 Multipart MIME Message: "The second part is binary encoded and
/// contains null (0x00) characters. Receivers must take care to frame the
/// received message properly."
#[test]
fn s3_1_1_11_mpart01() {
    let bytes = include_bytes!("fixtures/rfc4475/mpart01.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Message);
    assert_eq!(
        header(&req, "Content-Type"),
        "multipart/mixed;boundary=7a9cbec02ceef655"
    );
    assert_eq!(req.content_length(), Some(553));
    let body = req.body();
    assert_eq!(body.len(), 553);
    assert!(body.contains(&0));
    assert!(body.starts_with(b"--7a9cbec02ceef655\r\n"));
    assert!(body.ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert_eq!(body, &bytes[bytes.len() - 553..]);

    let via = req.top_via().unwrap();
    assert_eq!((via.host(), via.port()), ("127.0.0.1", Some(5070)));
    assert_eq!(via.rport(), Some(None));
    let route = sip_uri(&req.routes().next().unwrap().unwrap());
    assert_eq!((route.host_str(), route.port()), ("127.0.0.1", Some(5080)));
    assert!(header(&req, "Identity").starts_with("r5mwreLuyDRYBi/0TiPwEsY3rEVsk"));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.1.12 Unusual Reason Phrase: "This particular response contains
/// unreserved and non-ascii UTF-8 characters. This response is well
/// formed. A parser must accept this message."
#[test]
fn s3_1_1_12_unreason() {
    let bytes = include_bytes!("fixtures/rfc4475/unreason.dat");
    let resp = response(bytes);
    assert_eq!(resp.code(), 200);
    assert_eq!(
        resp.reason(),
        "= 2**3 * 5**2 но сто девяносто девять - простое"
    );
    assert_eq!(resp.to_tag(), Some("2229"));
    assert_eq!(resp.method(), Some(Method::Invite));
    assert_eq!(resp.body().len(), 154);
    assert_round_trip(resp.to_bytes(), bytes);
}

/// 3.1.1.13 Empty Reason Phrase: "This well-formed response contains no
/// reason phrase. A parser must accept this message."
#[test]
fn s3_1_1_13_noreason() {
    let bytes = include_bytes!("fixtures/rfc4475/noreason.dat");
    assert!(bytes.starts_with(b"SIP/2.0 100 \r\n"));
    let resp = response(bytes);
    assert_eq!(resp.code(), 100);
    assert_eq!(resp.reason(), "");
    assert!(resp.is_provisional());
    assert_eq!(resp.to_tag(), Some("902jndnke3"));
    assert_round_trip(resp.to_bytes(), bytes);
}

// ----------------------------------------------------------------------------
// 3.1.2 Invalid messages

/// 3.1.2.1 Extraneous Header Field Separators: "This message is
/// syntactically invalid. An element receiving this request should respond
/// with a 400 Bad Request error." The parser keeps the message; the Via
/// with empty parameters is what `check()` reports.
#[test]
fn s3_1_2_1_badinv01() {
    let bytes = include_bytes!("fixtures/rfc4475/badinv01.dat");
    let req = request(bytes);
    assert_eq!(req.top_via().unwrap_err().reason, "empty parameter");
    assert_eq!(rejection(&req), bad_request("Via header: empty parameter"));
    // Still written back as received (a 400 copies its Via).
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.2.2 Content Length Larger Than Message: "When sent over UDP (as this
/// message ostensibly was), the receiving element should respond with a 400
/// Bad Request error. If this message arrived over a stream-based
/// transport, such as TCP, there's not much the receiving party could do
/// but wait for more data".
#[test]
fn s3_1_2_2_clerr() {
    let bytes = include_bytes!("fixtures/rfc4475/clerr.dat");
    let err = parse_error(bytes);
    let body = bytes.len() - (bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
    assert_eq!(
        err.kind(),
        &ParseErrorKind::BodyTruncated {
            declared: 9999,
            available: body
        }
    );
    // Enough of the request is there to answer 400 to its Via.
    let partial = err.partial_request().expect("headers for a 400");
    assert_eq!(partial.call_id(), Some("clerr.0ha0isndaksdjweiafasdk3"));
    assert_eq!(
        partial.top_via().unwrap().branch(),
        Some("z9hG4bK-39234-23523")
    );
    assert!(err.reason().starts_with("Bad Request ("));

    // On a stream: wait for more.
    let mut framer = StreamFramer::new(ParseLimits::default());
    assert_eq!(framer.message_len(bytes).unwrap(), None);
    assert_eq!(
        Packet::parse_with(bytes, &ParseLimits::default(), Framing::Stream)
            .unwrap_err()
            .kind(),
        &ParseErrorKind::Incomplete
    );
}

/// 3.1.2.3 Negative Content-Length: "An element receiving this message
/// should respond with an error. ... If a request like this arrives over
/// TCP, the framing error is not recoverable, and the connection should be
/// closed."
#[test]
fn s3_1_2_3_ncl() {
    let bytes = include_bytes!("fixtures/rfc4475/ncl.dat");
    let err = parse_error(bytes);
    assert_eq!(err.kind(), &ParseErrorKind::InvalidContentLength);
    let partial = err.partial_request().expect("headers for a 400");
    assert_eq!(partial.call_id(), Some("ncl.0ha0isndaksdj2193423r542w35"));
    // On a stream the framer gives up: the connection is closed.
    let mut framer = StreamFramer::new(ParseLimits::default());
    assert_eq!(
        framer.message_len(bytes).unwrap_err().kind(),
        &ParseErrorKind::InvalidContentLength
    );
    // "Content-Length: five" is the same error.
    let five = String::from_utf8_lossy(bytes).replace("-999", "five");
    assert_eq!(
        parse_error(five.as_bytes()).kind(),
        &ParseErrorKind::InvalidContentLength
    );
}

/// 3.1.2.4 Request Scalar Fields with Overlarge Values: "An element
/// receiving this request should respond with a 400 Bad Request due to the
/// CSeq error." Max-Forwards > 255 and Expires > 2**32-1 are out of range
/// too; `check()` reports each when it is the first error. (The Contact
/// expires parameter is left to the registrar: "If only the expiry values
/// were in error, the element could treat them as if they contained the
/// default values".)
#[test]
fn s3_1_2_4_scalar02() {
    let bytes = include_bytes!("fixtures/rfc4475/scalar02.dat");
    let req = request(bytes);
    assert_eq!(req.cseq().unwrap_err().reason, "sequence number too large");
    assert_eq!(req.max_forwards().unwrap_err().reason, "larger than 255");
    assert_eq!(
        rejection(&req),
        bad_request("CSeq header: sequence number too large")
    );

    let mut req = req;
    req.headers_mut().set("CSeq", "36 REGISTER");
    assert_eq!(
        rejection(&req),
        bad_request("Max-Forwards header: larger than 255")
    );
    req.headers_mut().set("Max-Forwards", "70");
    assert_eq!(
        rejection(&req),
        bad_request("Expires header: larger than 2**32-1")
    );
    let contact = req.contacts().next().unwrap().unwrap();
    assert_eq!(
        contact.params().get("expires"),
        Some(Some("280297596632815"))
    );
    req.headers_mut().set("Expires", "3600");
    assert_eq!(req.check(), Ok(()));
}

/// 3.1.2.5 Response Scalar Fields with Overlarge Values: "An element
/// receiving this response will simply discard it." Its CSeq does not
/// parse, so it matches no client transaction.
#[test]
fn s3_1_2_5_scalarlg() {
    let bytes = include_bytes!("fixtures/rfc4475/scalarlg.dat");
    let resp = response(bytes);
    assert_eq!(resp.code(), 503);
    assert_eq!(resp.cseq().unwrap_err().reason, "sequence number too large");
    assert_eq!(resp.client_key(), None);
    assert_eq!(resp.method(), None);
    // Kept as received: no range is defined for Retry-After, and the
    // warn-code has more than three digits.
    assert_eq!(
        resp.headers().get("Retry-After"),
        Some("949302838503028349304023988")
    );
    assert_eq!(
        resp.headers().get("Warning"),
        Some("1812 overture \"In Progress\"")
    );
}

/// 3.1.2.6 Unterminated Quoted String in Display Name: "An element
/// receiving this request should return a 400 Bad Request error." The To
/// accessor meets the flaw; nothing infers a terminating quote.
#[test]
fn s3_1_2_6_quotbal() {
    let bytes = include_bytes!("fixtures/rfc4475/quotbal.dat");
    let req = request(bytes);
    assert_eq!(
        req.to().unwrap_err().reason,
        "unterminated quoted display name"
    );
    assert_eq!(req.to_tag(), None);
    assert_eq!(
        rejection(&req),
        bad_request("To header: unterminated quoted display name")
    );
}

/// 3.1.2.7 <> Enclosing Request-URI: "It is reasonable always to reject a
/// request with this error with a 400 Bad Request."
#[test]
fn s3_1_2_7_ltgtruri() {
    let bytes = include_bytes!("fixtures/rfc4475/ltgtruri.dat");
    let err = parse_error(bytes);
    assert_eq!(
        err.kind(),
        &ParseErrorKind::InvalidRequestUri(UriError("URI enclosed in <>"))
    );
    let partial = err.partial_request().expect("headers for a 400");
    assert_eq!(partial.call_id(), Some("ltgtruri.1@192.0.2.5"));
    assert_eq!(
        err.reason(),
        "Bad Request (invalid Request-URI: URI enclosed in <>)"
    );
}

/// 3.1.2.8 Malformed SIP Request-URI (embedded LWS): "An element receiving
/// this request should respond with a 400 Bad Request."
#[test]
fn s3_1_2_8_lwsruri() {
    let bytes = include_bytes!("fixtures/rfc4475/lwsruri.dat");
    let err = parse_error(bytes);
    assert_eq!(
        err.kind(),
        &ParseErrorKind::InvalidRequestUri(UriError("white space in the Request-URI"))
    );
    assert!(err.partial_request().is_some());
}

/// 3.1.2.9 Multiple SP Separating Request-Line Elements: "It is acceptable
/// to reject this request as malformed." We reject it (the liberal reading
/// is allowed, not required).
#[test]
fn s3_1_2_9_lwsstart() {
    let bytes = include_bytes!("fixtures/rfc4475/lwsstart.dat");
    let err = parse_error(bytes);
    assert_eq!(
        err.kind(),
        &ParseErrorKind::InvalidStartLine("more than one SP between request line elements")
    );
    assert!(err.partial_request().is_some());
}

/// 3.1.2.10 SP Characters at End of Request-Line: "It is acceptable to
/// reject this request as malformed." We reject it.
#[test]
fn s3_1_2_10_trws() {
    let bytes = include_bytes!("fixtures/rfc4475/trws.dat");
    assert!(bytes.starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"));
    let err = parse_error(bytes);
    assert_eq!(
        err.kind(),
        &ParseErrorKind::InvalidStartLine("white space in or after the SIP version")
    );
    assert!(err.partial_request().is_some());
}

/// 3.1.2.11 Escaped Headers in SIP Request-URI: "It is acceptable for an
/// element to reject this request with a 400 Bad Request. An element could
/// choose to be liberal in what it accepts and ignore the escaped headers.
/// If the element is a proxy, the escaped headers must not appear in the
/// Request-URI of the forwarded request". We are liberal: the request
/// passes `check()`, the headers part is visible and removable.
#[test]
fn s3_1_2_11_escruri() {
    let bytes = include_bytes!("fixtures/rfc4475/escruri.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.headers(), Some("Route=%3Csip:example.com%3E"));
    assert_eq!(uri.without_headers().as_str(), "sip:user@example.com");
    assert_eq!(req.headers().get("Route"), None);
    assert_eq!(req.check(), Ok(()));

    let mut forwarded = req.clone();
    forwarded.set_uri(Uri::Sip(uri.without_headers()));
    assert!(
        forwarded
            .to_bytes()
            .starts_with(b"INVITE sip:user@example.com SIP/2.0\r\n")
    );
}

/// 3.1.2.12 Invalid Time Zone in Date Header Field: "It is acceptable to
/// reject this request as malformed (though an element shouldn't do that
/// unless the contents of the Date header field were actually important to
/// its processing)." The dispatcher does not use Date: it passes.
#[test]
fn s3_1_2_12_baddate() {
    let bytes = include_bytes!("fixtures/rfc4475/baddate.dat");
    let req = request(bytes);
    assert_eq!(
        req.headers().get(HeaderName::Date),
        Some("Fri, 01 Jan 2010 16:00:00 EST")
    );
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.2.13 Failure to Enclose name-addr URI in <>: "It is reasonable for
/// an element receiving this request to respond with a 400 Bad Request."
/// The Contact accessor meets the flaw (a registrar's business: `check()`
/// does not read Contact).
#[test]
fn s3_1_2_13_regbadct() {
    let bytes = include_bytes!("fixtures/rfc4475/regbadct.dat");
    let req = request(bytes);
    let contact = req.contacts().next().unwrap();
    assert_eq!(
        contact.unwrap_err().reason,
        "URI with '?', ',' or white space needs <>"
    );
    assert_eq!(req.check(), Ok(()));
}

/// 3.1.2.14 Spaces within addr-spec: "Parsers receiving this request must
/// not break. It is reasonable to reject this request with a 400 Bad
/// Request response."
#[test]
fn s3_1_2_14_badaspec() {
    let bytes = include_bytes!("fixtures/rfc4475/badaspec.dat");
    let req = request(bytes);
    // The From display name with a comma is quoted, hence fine.
    assert_eq!(
        req.from().unwrap().display_name().as_deref(),
        Some("Bell, Alexander")
    );
    assert_eq!(req.to().unwrap_err().reason, "white space inside <>");
    assert_eq!(
        rejection(&req),
        bad_request("To header: white space inside <>")
    );
}

/// 3.1.2.15 Non-token Characters in Display Name: "It is reasonable always
/// to reject this kind of error with a 400 Bad Request response."
#[test]
fn s3_1_2_15_baddn() {
    let bytes = include_bytes!("fixtures/rfc4475/baddn.dat");
    let req = request(bytes);
    let why = "display name is not a token list (quote it)";
    assert_eq!(req.from().unwrap_err().reason, why);
    assert_eq!(req.to().unwrap_err().reason, why);
    assert_eq!(rejection(&req), bad_request(&format!("From header: {why}")));
}

/// 3.1.2.16 Unknown Protocol Version: "The element should respond to the
/// request with a 505 Version Not Supported error."
#[test]
fn s3_1_2_16_badvers() {
    let bytes = include_bytes!("fixtures/rfc4475/badvers.dat");
    let req = request(bytes);
    assert_eq!(req.version(), "SIP/7.0");
    assert_eq!(
        rejection(&req),
        Rejection {
            status: 505,
            reason: "Version Not Supported".into()
        }
    );
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.1.2.17 Start Line and CSeq Method Mismatch: "Any element receiving
/// this request will respond with a 400 Bad Request."
#[test]
fn s3_1_2_17_mismatch01() {
    let bytes = include_bytes!("fixtures/rfc4475/mismatch01.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Options);
    assert_eq!(req.cseq().unwrap().method, Method::Invite);
    assert_eq!(
        rejection(&req),
        bad_request("CSeq method does not match the request method")
    );
}

/// 3.1.2.18 Unknown Method with CSeq Method Mismatch: "Any element
/// receiving this response should respond with a 501 Not Implemented. A
/// 400 Bad Request is also acceptable". `check()` runs before method
/// dispatch, so it gives the 400.
#[test]
fn s3_1_2_18_mismatch02() {
    let bytes = include_bytes!("fixtures/rfc4475/mismatch02.dat");
    let req = request(bytes);
    assert_eq!(req.method(), &Method::Extension("NEWMETHOD".into()));
    assert_eq!(req.cseq().unwrap().method, Method::Invite);
    assert_eq!(
        rejection(&req),
        bad_request("CSeq method does not match the request method")
    );
}

/// 3.1.2.19 Overlarge Response Code: "An element receiving this response
/// should simply drop it." A response gets no partial request: nothing to
/// answer.
#[test]
fn s3_1_2_19_bigcode() {
    let bytes = include_bytes!("fixtures/rfc4475/bigcode.dat");
    let err = parse_error(bytes);
    assert_eq!(err.kind(), &ParseErrorKind::InvalidStatusCode);
    assert!(err.partial_request().is_none());
}

// ----------------------------------------------------------------------------
// 3.2 Transaction layer semantics

/// 3.2.1 Missing Transaction Identifier: "A parser must not break when
/// receiving this message. An element receiving this request could reject
/// the request with a 400 Response ..., or it could fall back to the RFC
/// 2543-style transaction identifier." We fall back: a bare cookie is not
/// an RFC 3261 branch.
#[test]
fn s3_2_1_badbranch() {
    let bytes = include_bytes!("fixtures/rfc4475/badbranch.dat");
    let req = request(bytes);
    let via = req.top_via().unwrap();
    assert_eq!(via.branch(), Some(BRANCH_MAGIC_COOKIE));
    assert!(!via.has_rfc3261_branch());
    assert_eq!(req.check(), Ok(()));

    // RFC 2543 matching: another request from the same source with the same
    // empty branch but another Call-ID is another transaction...
    let other = String::from_utf8_lossy(bytes).replace("badbranch.sadonfo", "badbranch.other");
    let other = request(other.as_bytes());
    let key = req.server_key().unwrap();
    assert_ne!(Some(&key), other.server_key().as_ref());
    // ... while a retransmission matches.
    assert_eq!(Some(key), request(bytes).server_key());
    assert_round_trip(req.to_bytes(), bytes);
}

// ----------------------------------------------------------------------------
// 3.3 Application layer semantics

/// 3.3.1 Missing Required Header Fields: "An element receiving this message
/// must not break because of the missing information. Ideally, it will
/// respond with a 400 Bad Request error."
#[test]
fn s3_3_1_insuf() {
    let bytes = include_bytes!("fixtures/rfc4475/insuf.dat");
    let req = request(bytes);
    assert_eq!(req.call_id(), None);
    assert_eq!(req.from().unwrap_err().reason, "missing");
    assert_eq!(req.to().unwrap_err().reason, "missing");
    assert_eq!(req.from_tag(), None);
    assert_eq!(req.tid(), " 193942");
    assert!(req.server_key().is_some());
    assert_eq!(rejection(&req), bad_request("missing From"));
}

/// 3.3.2 Request-URI with Unknown Scheme: "A parser must accept this as a
/// well-formed SIP request. An element receiving this request will reject
/// it with a 416 Unsupported URI Scheme response." The To header contains
/// no routing information.
#[test]
fn s3_3_2_unkscm() {
    let bytes = include_bytes!("fixtures/rfc4475/unkscm.dat");
    let req = request(bytes);
    let Uri::Other(uri) = req.uri() else {
        panic!("not an opaque URI")
    };
    assert_eq!(uri.scheme(), "nobodyKnowsThisScheme");
    assert_eq!(uri.as_str(), "nobodyKnowsThisScheme:totallyopaquecontent");
    assert_eq!(
        req.unsupported_uri_scheme(&["sip", "sips"]),
        Some("nobodyKnowsThisScheme")
    );
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.3.3 Request-URI with Known but Atypical Scheme: "A parser must accept
/// this as a well-formed SIP request. If an element will never accept this
/// scheme as meaningful in a Request-URI, it is appropriate to treat it as
/// unknown and return a 416".
#[test]
fn s3_3_3_novelsc() {
    let bytes = include_bytes!("fixtures/rfc4475/novelsc.dat");
    let req = request(bytes);
    assert_eq!(req.uri().scheme(), "soap.beep");
    assert_eq!(req.uri().as_str(), "soap.beep://192.0.2.103:3002");
    assert!(req.uri().as_sip().is_none());
    assert_eq!(
        req.unsupported_uri_scheme(&["sip", "sips"]),
        Some("soap.beep")
    );
    assert_eq!(req.unsupported_uri_scheme(&["SOAP.BEEP"]), None);
    assert_eq!(req.check(), Ok(()));
}

/// 3.3.4 Unknown URI Schemes in Header Fields: "The message is
/// syntactically valid. Parsers must not fail when receiving this message.
/// ... A registrar would reject this request with a 400 Bad Request
/// response, since the To: header field is required to contain a SIP or
/// SIPS URI as an AOR."
#[test]
fn s3_3_4_unksm2() {
    let bytes = include_bytes!("fixtures/rfc4475/unksm2.dat");
    let req = request(bytes);
    let to = req.to().unwrap().uri().unwrap();
    assert_eq!(to.scheme(), "isbn");
    assert!(to.as_sip().is_none(), "a registrar sees a non-SIP AOR");
    assert_eq!(req.from().unwrap().uri().unwrap().scheme(), "http");
    assert_eq!(req.from_tag(), Some("3234233"));
    assert_eq!(contacts(&req)[0].uri().unwrap().as_str(), "name:John_Smith");
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 3.3.5 Proxy-Require and Require: "Any element receiving this request
/// will respond with a 420 Bad Extension response, containing an
/// Unsupported header field listing these features from either the Require
/// or Proxy-Require header field, depending on the role".
#[test]
fn s3_3_5_bext01() {
    let bytes = include_bytes!("fixtures/rfc4475/bext01.dat");
    let req = request(bytes);
    assert_eq!(
        req.unsupported_require(&["100rel", "timer"]),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    assert_eq!(
        req.unsupported_proxy_require(&["path"]),
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    );
    assert_eq!(req.check(), Ok(()));
    assert_eq!(req.top_via().unwrap().transport(), "TLS");
}

/// 3.3.6 Unknown Content-Type: "A proxy receiving this request would
/// process it just like any other INVITE. An endpoint receiving this
/// request would reject it with a 415 Unsupported Media Type error."
#[test]
fn s3_3_6_invut() {
    let bytes = include_bytes!("fixtures/rfc4475/invut.dat");
    let req = request(bytes);
    assert_eq!(
        req.unsupported_content_type(&["application/sdp"]),
        Some("application/unknownformat")
    );
    assert_eq!(req.body().len(), 40);
    assert_eq!(req.check(), Ok(()));
}

/// 3.3.7 Unknown Authorization Scheme: "A parser must not fail when
/// receiving it. A proxy will treat this request as any other REGISTER. If
/// it forwards the request, it will include this Authorization header field
/// unmodified".
#[test]
fn s3_3_7_regaut01() {
    let bytes = include_bytes!("fixtures/rfc4475/regaut01.dat");
    let mut req = request(bytes);
    assert_eq!(
        header(&req, "Authorization"),
        "NoOneKnowsThisScheme opaque-data=here"
    );
    assert_eq!(req.content_length(), Some(0));
    assert_eq!(req.check(), Ok(()));
    // Forwarded: Max-Forwards decremented, Authorization line untouched.
    req.headers_mut().set("Max-Forwards", "7");
    let forwarded = String::from_utf8(req.to_bytes()).unwrap();
    assert!(forwarded.contains("\r\nAuthorization: NoOneKnowsThisScheme opaque-data=here\r\n"));
    assert!(forwarded.contains("\r\nMax-Forwards: 7\r\n"));
}

/// 3.3.8 Multiple Values in Single Value Required Fields: "This request
/// contains multiple Call-ID, To, From, Max-Forwards, and CSeq values. An
/// element receiving this request must not break. An element would respond
/// to this request with a 400 Bad Request error."
#[test]
fn s3_3_8_multi01() {
    let bytes = include_bytes!("fixtures/rfc4475/multi01.dat");
    let req = request(bytes);
    let twice = "appears more than once";
    assert_eq!(req.from().unwrap_err().reason, twice);
    assert_eq!(req.to().unwrap_err().reason, twice);
    assert_eq!(req.cseq().unwrap_err().reason, twice);
    assert_eq!(req.headers().lines(HeaderName::CallId).count(), 2);
    assert_eq!(req.headers().lines(HeaderName::MaxForwards).count(), 2);
    assert_eq!(
        rejection(&req),
        bad_request("From header: appears more than once")
    );

    // Each duplicate alone is reported too.
    let only = |keep_first: &[&str]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for line in keep_first {
            text = text.replacen(line, "", 1);
        }
        request(text.as_bytes())
    };
    let fixed = only(&[
        "From: sip:caller@example.net;tag=2923420123\r\n",
        "To: sip:other@example.net\r\n",
    ]);
    assert_eq!(
        rejection(&fixed),
        bad_request("Call-ID header: appears more than once")
    );
    let fixed = only(&[
        "From: sip:caller@example.net;tag=2923420123\r\n",
        "To: sip:other@example.net\r\n",
        "Call-ID: multi01.98asdh@192.0.2.2\r\n",
        "CSeq: 59 INVITE\r\n",
    ]);
    assert_eq!(
        rejection(&fixed),
        bad_request("Max-Forwards header: appears more than once")
    );
}

/// 3.3.9 Multiple Content-Length Values: "From a framing perspective, this
/// situation is equivalent to an invalid Content-Length value (or no value
/// at all). An element receiving this message should respond with an
/// error."
#[test]
fn s3_3_9_mcl01() {
    let bytes = include_bytes!("fixtures/rfc4475/mcl01.dat");
    let err = parse_error(bytes);
    assert_eq!(err.kind(), &ParseErrorKind::ConflictingContentLength);
    let partial = err.partial_request().expect("headers for a 400");
    assert_eq!(
        partial.call_id(),
        Some("mcl01.fhn2323orihawfdoa3o4r52o3irsdf")
    );
    let mut framer = StreamFramer::new(ParseLimits::default());
    assert_eq!(
        framer.message_len(bytes).unwrap_err().kind(),
        &ParseErrorKind::ConflictingContentLength
    );
}

/// 3.3.10 200 OK Response with Broadcast Via Header Field Value: "an
/// endpoint receiving this message should simply discard it. ... proxies
/// should drop such responses." The broadcast sent-by is visible.
#[test]
fn s3_3_10_bcast() {
    let bytes = include_bytes!("fixtures/rfc4475/bcast.dat");
    let resp = response(bytes);
    assert_eq!(resp.code(), 200);
    let vias: Vec<_> = resp.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(
        vias[0].ip(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 198)))
    );
    assert_eq!(vias[1].ip(), Some(IpAddr::V4(Ipv4Addr::BROADCAST)));
    assert_round_trip(resp.to_bytes(), bytes);
}

/// 3.3.11 Max-Forwards of Zero: "A proxy should not forward the request and
/// should respond 483 (Too Many Hops). An endpoint should process the
/// request as if the Max-Forwards field value were still positive."
#[test]
fn s3_3_11_zeromf() {
    let bytes = include_bytes!("fixtures/rfc4475/zeromf.dat");
    let req = request(bytes);
    assert_eq!(req.max_forwards(), Ok(Some(0)));
    assert!(req.max_forwards_exhausted());
    assert_eq!(req.check(), Ok(()));
}

/// 3.3.12 REGISTER with a Contact Header Parameter: "the 'unknownparam'
/// parameter must be interpreted as a contact-param and not a url-param."
#[test]
fn s3_3_12_cparam01() {
    let bytes = include_bytes!("fixtures/rfc4475/cparam01.dat");
    let req = request(bytes);
    let contacts = contacts(&req);
    assert!(!contacts[0].is_bracketed());
    assert_eq!(contacts[0].uri_str(), "sip:+19725552222@gw1.example.net");
    assert_eq!(contacts[0].params().get("unknownparam"), Some(None));
    assert_eq!(sip_uri(&contacts[0]).params().count(), 0);
    assert_eq!(req.check(), Ok(()));
}

/// 3.3.13 REGISTER with a url-parameter: the contact URI has an unknown
/// parameter, which a later retrieval "must include ... as a
/// url-parameter".
#[test]
fn s3_3_13_cparam02() {
    let bytes = include_bytes!("fixtures/rfc4475/cparam02.dat");
    let req = request(bytes);
    let contacts = contacts(&req);
    assert!(contacts[0].is_bracketed());
    assert_eq!(contacts[0].params().count(), 0);
    let uri = sip_uri(&contacts[0]);
    assert_eq!(uri.param("unknownparam"), Some(None));
    assert_eq!(
        uri.as_str(),
        "sip:+19725552222@gw1.example.net;unknownparam"
    );
    assert_eq!(req.check(), Ok(()));
}

/// 3.3.14 REGISTER with a URL Escaped Header: "The register should succeed
/// and a subsequent retrieval of the registration must include the escaped
/// Route header in the contact URI for this binding."
#[test]
fn s3_3_14_regescrt() {
    let bytes = include_bytes!("fixtures/rfc4475/regescrt.dat");
    let req = request(bytes);
    let contacts = contacts(&req);
    let uri = sip_uri(&contacts[0]);
    assert_eq!(uri.headers(), Some("Route=%3Csip:sip.example.com%3E"));
    assert_eq!(
        uri.as_str(),
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
    assert_eq!(req.content_length(), Some(0));
    assert_eq!(req.check(), Ok(()));
}

/// 3.3.15 Unacceptable Accept Offering: the Accept header does not contain
/// application/sdp, so the response may not carry SDP; the recipient
/// decides (406 or otherwise). The request itself is valid.
#[test]
fn s3_3_15_sdp01() {
    let bytes = include_bytes!("fixtures/rfc4475/sdp01.dat");
    let req = request(bytes);
    let accept: Vec<_> = req.headers().get_all(HeaderName::Accept).collect();
    assert_eq!(accept, ["text/nobodyKnowsThis"]);
    assert_eq!(req.unsupported_content_type(&["application/sdp"]), None);
    assert_eq!(req.check(), Ok(()));
}

// ----------------------------------------------------------------------------
// 3.4 Backward compatibility

/// 3.4.1 INVITE with RFC 2543 Syntax: "a legal message per RFC 2543 ...
/// that should be accepted by RFC 3261 elements": no branch, no From tag,
/// no Content-Length (the body is the rest of the datagram), no
/// Max-Forwards.
#[test]
fn s3_4_1_inv2543() {
    let bytes = include_bytes!("fixtures/rfc4475/inv2543.dat");
    let req = request(bytes);
    let via = req.top_via().unwrap();
    assert_eq!(via.branch(), None);
    assert_eq!(req.from_tag(), None);
    assert_eq!(req.content_length(), None);
    assert!(req.body().starts_with(b"v=0\r\n"));
    assert!(req.body().ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
    assert_eq!(req.max_forwards(), Ok(None));
    assert_eq!(req.check(), Ok(()));

    // RFC 2543 transaction matching (RFC 3261 17.2.3): the ACK of a
    // non-2xx response, with the To tag the server added, matches the
    // INVITE; a request with another CSeq does not.
    let text = String::from_utf8_lossy(bytes);
    let ack = text
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("CSeq: 56 INVITE", "CSeq: 56 ACK")
        .replace(";user=phone\r\nCall-ID", ";user=phone;tag=srv1\r\nCall-ID");
    let key = req.server_key().unwrap();
    assert_eq!(key.method(), &Method::Invite);
    assert_eq!(request(ack.as_bytes()).server_key(), Some(key.clone()));
    let next = text.replace("CSeq: 56 INVITE", "CSeq: 57 INVITE");
    assert_ne!(request(next.as_bytes()).server_key(), Some(key));
    assert_round_trip(req.to_bytes(), bytes);
}
