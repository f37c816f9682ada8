//! RFC 5118 (SIP Torture Test Messages for IPv6): one test per message,
//! asserting what the message's section says. Fixtures are the RFC's
//! messages with CRLF line ends (tests/fixtures/rfc5118/README.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sip_dispatch::packet::{
    Host, NameAddr, Packet, ParseErrorKind, Request, SipUri, Uri, UriError, Via,
};

// ----------------------------------------------------------------------------
// Helpers

fn request(bytes: &[u8]) -> Request {
    match Packet::parse(bytes) {
        Ok(Packet::Request(r)) => r,
        Ok(Packet::Response(_)) => panic!("expected a request"),
        Err(e) => panic!("should parse: {e}"),
    }
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn sip(uri: &Uri) -> &SipUri {
    uri.as_sip().expect("a SIP URI")
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

fn contact(req: &Request) -> NameAddr<'_> {
    req.contacts()
        .next()
        .expect("a Contact")
        .expect("Contact parses")
}

fn assert_round_trip(written: Vec<u8>, input: &[u8]) {
    assert!(
        written == input,
        "written back differs:\n{}",
        String::from_utf8_lossy(&written)
    );
}

fn body_len(bytes: &[u8]) -> usize {
    bytes.len() - (bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4)
}

/// The message with its Content-Length set to the length of its body (see
/// the fixtures' README: the RFC's values are off).
fn with_true_length(bytes: &[u8], declared: usize) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let from = format!("\r\nContent-Length: {declared}\r\n");
    assert!(text.contains(&from));
    text.replace(
        &from,
        &format!("\r\nContent-Length: {}\r\n", body_len(bytes)),
    )
    .into_bytes()
}

/// The connection addresses of an SDP body's `o=` and `c=` lines: SDP
/// writes IPv6 addresses without brackets.
fn sdp_addresses(body: &[u8]) -> Vec<(String, IpAddr)> {
    std::str::from_utf8(body)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("o=") || l.starts_with("c="))
        .filter_map(|l| {
            let mut words = l.split_whitespace().rev();
            let address = words.next()?;
            let ip = match words.next()? {
                "IP6" => IpAddr::V6(address.parse().expect("IPv6 without brackets")),
                _ => IpAddr::V4(address.parse().ok()?),
            };
            Some((l[..2].to_owned(), ip))
        })
        .collect()
}

// ----------------------------------------------------------------------------
// Section 4

/// 4.1 Valid SIP Message with an IPv6 Reference: "The request below is
/// well-formatted according to the grammar in [RFC3261]. An IPv6 reference
/// appears in the R-URI (Request-URI), Via header field, and Contact header
/// field."
#[test]
fn s4_1_ipv6_good() {
    let bytes = include_bytes!("fixtures/rfc5118/ipv6-good.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.host_str(), "[2001:db8::10]");
    assert_eq!(uri.host(), Host::Ipv6("2001:db8::10".parse().unwrap()));
    assert_eq!(uri.port(), None);
    let via = req.top_via().unwrap();
    assert_eq!(via.host(), "[2001:db8::9:1]");
    assert_eq!(via.ip(), Some(v6("2001:db8::9:1")));
    assert_eq!(via.branch(), Some("z9hG4bKas3-111"));
    let contact = contact(&req);
    assert_eq!(contact.display_name().as_deref(), Some("Caller"));
    assert_eq!(sip_uri(&contact).ip(), Some(v6("2001:db8::1")));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.2 Invalid SIP Message with an IPv6 Reference: "The IPv6 reference in
/// the R-URI does not contain the mandated delimiters for an IPv6
/// reference ("[" and "]"). A SIP implementation receiving this request
/// should respond with a 400 Bad Request error."
#[test]
fn s4_2_ipv6_bad() {
    let bytes = include_bytes!("fixtures/rfc5118/ipv6-bad.dat");
    let err = Packet::parse(bytes).unwrap_err();
    assert_eq!(
        err.kind(),
        &ParseErrorKind::InvalidRequestUri(UriError("IPv6 address without brackets"))
    );
    assert_eq!(
        err.reason(),
        "Bad Request (invalid Request-URI: IPv6 address without brackets)"
    );
    // The 400 goes back to the (well-formed) Via.
    let partial = err.partial_request().expect("headers for a 400");
    assert_eq!(partial.top_via().unwrap().ip(), Some(v6("2001:db8::9:1")));
}

/// 4.3 Port Ambiguous in a SIP URI: "From a parsing perspective, the
/// request below is well-formed. However, from a semantic point of view, it
/// will not yield the desired result." Everything inside the brackets is
/// the address: 2001:db8::10:5070, and no port.
#[test]
fn s4_3_port_ambiguous() {
    let bytes = include_bytes!("fixtures/rfc5118/port-ambiguous.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.ip(), Some(v6("2001:db8::10:5070")));
    assert_ne!(uri.ip(), Some(v6("2001:db8::10")));
    assert_eq!(uri.port(), None);
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.4 Port Unambiguous in a SIP URI: "the following REGISTER request
/// leaves no ambiguity whatsoever on where the IPv6 address ends and the
/// port number begins. This REGISTER request is well formatted per the
/// grammar in [RFC3261]."
#[test]
fn s4_4_port_unambiguous() {
    let bytes = include_bytes!("fixtures/rfc5118/port-unambiguous.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.ip(), Some(v6("2001:db8::10")));
    assert_eq!(uri.port(), Some(5070));
    assert_eq!(uri.host_str(), "[2001:db8::10]");
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.5 IPv6 Reference Delimiters in Via Header, first message: "Even
/// though this is not a valid request based on a strict interpretation of
/// the grammar in [RFC3261], robust implementations must nonetheless be
/// able to parse the topmost Via header field and continue processing the
/// request."
#[test]
fn s4_5_via_received_param_with_delim() {
    let bytes = include_bytes!("fixtures/rfc5118/via-received-param-with-delim.dat");
    let req = request(bytes);
    let via = req.top_via().unwrap();
    assert_eq!(via.ip(), Some(v6("2001:db8::9:1")));
    assert_eq!(via.received(), Some("[2001:db8::9:255]"));
    assert_eq!(
        Host::parse(via.received().unwrap()).unwrap().ip(),
        Some(v6("2001:db8::9:255"))
    );
    assert_eq!(via.branch(), Some("z9hG4bKas3-111"));
    assert_eq!(req.to_tag(), Some("bd76ya"));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.5 IPv6 Reference Delimiters in Via Header, second message: the
/// received parameter "without the adorning "[" and "]". This request is
/// valid according to the grammar in [RFC3261]." Both forms name the same
/// address.
#[test]
fn s4_5_via_received_param_no_delim() {
    let bytes = include_bytes!("fixtures/rfc5118/via-received-param-no-delim.dat");
    let req = request(bytes);
    let via = req.top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::9:255"));
    assert_eq!(
        Host::parse(via.received().unwrap()).unwrap().ip(),
        Some(v6("2001:db8::9:255"))
    );
    assert_eq!(via.branch(), Some("z9hG4bKas3"));
    assert_eq!(sip_uri(&contact(&req)).ip(), Some(v6("2001:db8::9:1")));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.6 SIP Request with IPv6 Addresses in SDP Body: "This request below is
/// valid and well-formed according to the grammar in [RFC3261]. Note that
/// the IPv6 addresses in the SDP [RFC4566] body do not have the delimiting
/// "[" and "]"." As printed, its Content-Length (268) exceeds its body
/// (251): on a datagram that is RFC 3261 18.3's error, with the headers
/// kept for the 400.
#[test]
fn s4_6_ipv6_in_sdp() {
    let bytes = include_bytes!("fixtures/rfc5118/ipv6-in-sdp.dat");
    let err = Packet::parse(bytes).unwrap_err();
    assert_eq!(
        err.kind(),
        &ParseErrorKind::BodyTruncated {
            declared: 268,
            available: 251
        }
    );
    let partial = err.partial_request().expect("headers for a 400");
    assert_eq!(partial.top_via().unwrap().ip(), Some(v6("2001:db8::20")));

    let fixed = with_true_length(bytes, 268);
    let req = request(&fixed);
    assert_eq!(sip(req.uri()).ip(), Some(v6("2001:db8::10")));
    assert_eq!(sip_uri(&req.to().unwrap()).ip(), Some(v6("2001:db8::10")));
    assert_eq!(req.top_via().unwrap().ip(), Some(v6("2001:db8::20")));
    assert_eq!(sip_uri(&contact(&req)).ip(), Some(v6("2001:db8::20")));
    assert_eq!(
        sdp_addresses(req.body()),
        [
            ("o=".to_owned(), v6("2001:db8::20")),
            ("c=".to_owned(), v6("2001:db8::20")),
        ]
    );
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), &fixed);
}

/// 4.7 Multiple IP Addresses in SIP Headers: "This request is valid and
/// well-formed according to the grammar in [RFC3261]. The Via list
/// contains a mix of IPv4 addresses and IPv6 references."
#[test]
fn s4_7_mult_ip_in_header() {
    let bytes = include_bytes!("fixtures/rfc5118/mult-ip-in-header.dat");
    let req = request(bytes);
    let vias: Vec<_> = vias(&req)
        .iter()
        .map(|v| (v.transport(), v.ip(), v.port(), v.received()))
        .collect();
    assert_eq!(
        vias,
        [
            ("UDP", Some(v6("2001:db8::9:1")), Some(6050), None),
            (
                "UDP",
                Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                None,
                None
            ),
            (
                "TCP",
                Some(v6("2001:db8::9:255")),
                None,
                Some("192.0.2.200")
            ),
        ]
    );
    assert_eq!(sip(req.uri()).ip(), None);
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.8 Multiple IP Addresses in SDP: "The SDP contains multiple media
/// lines, and each media line is identified by a different network
/// connection address." As printed, Content-Length (181) is shorter than
/// the body (189): on a datagram the rest is discarded (RFC 3261 18.3).
#[test]
fn s4_8_mult_ip_in_sdp() {
    let bytes = include_bytes!("fixtures/rfc5118/mult-ip-in-sdp.dat");
    let req = request(bytes);
    assert_eq!(req.body().len(), 181);
    assert_round_trip(req.to_bytes(), &bytes[..bytes.len() - (189 - 181)]);

    let fixed = with_true_length(bytes, 181);
    let req = request(&fixed);
    assert_eq!(sip(req.uri()).ip(), Some(v6("2001:db8::10")));
    assert_eq!(req.top_via().unwrap().ip(), Some(v6("2001:db8::9:1")));
    assert_eq!(
        sdp_addresses(req.body()),
        [
            ("c=".to_owned(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            ("c=".to_owned(), v6("2001:db8::1")),
        ]
    );
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), &fixed);
}

/// 4.9 IPv4-Mapped IPv6 Addresses: "The Via list contains two Via headers,
/// both of which include an IPv4-mapped IPv6 address. An IPv4-mapped IPv6
/// address also appears in the Contact header and the SDP. The topmost Via
/// header includes a port number that is appropriately delimited by "]"."
/// As printed, Content-Length (236) is shorter than the body (245).
#[test]
fn s4_9_ipv4_mapped_ipv6() {
    let bytes = include_bytes!("fixtures/rfc5118/ipv4-mapped-ipv6.dat");
    let req = request(bytes);
    assert_eq!(req.body().len(), 236);

    let fixed = with_true_length(bytes, 236);
    let req = request(&fixed);
    let vias: Vec<_> = vias(&req).iter().map(|v| (v.ip(), v.port())).collect();
    assert_eq!(
        vias,
        [
            (Some(v6("::ffff:192.0.2.10")), Some(19823)),
            (Some(v6("::ffff:192.0.2.2")), None),
        ]
    );
    let contact = contact(&req);
    assert_eq!(contact.display_name().as_deref(), Some("T. desk phone"));
    let mapped = v6("::ffff:192.0.2.2");
    assert_eq!(sip_uri(&contact).ip(), Some(mapped));
    let IpAddr::V6(m) = mapped else {
        unreachable!()
    };
    assert_eq!(m.to_ipv4_mapped(), Some(Ipv4Addr::new(192, 0, 2, 2)));
    assert_eq!(
        sdp_addresses(req.body()),
        [("o=".to_owned(), mapped), ("c=".to_owned(), mapped)]
    );
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), &fixed);
}

/// 4.10 IPv6 Reference Bug in RFC 3261 ABNF, first message: "A SIP
/// implementation receiving such a message may exhibit robustness by
/// successfully parsing the IPv6 reference (it can choose to ignore the
/// extra colon when parsing the IPv6 reference"; "following the Robustness
/// Principle [RFC1122], an implementation must tolerate both of the above
/// constructs". The address is the two-colon one; the text is kept.
#[test]
fn s4_10_ipv6_bug_abnf_3_colons() {
    let bytes = include_bytes!("fixtures/rfc5118/ipv6-bug-abnf-3-colons.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.ip(), Some(v6("2001:db8::192.0.2.1")));
    assert_eq!(uri.host_str(), "[2001:db8:::192.0.2.1]");
    assert_eq!(
        sip_uri(&req.to().unwrap()).ip(),
        Some(v6("2001:db8::192.0.2.1"))
    );
    let correct = request(include_bytes!(
        "fixtures/rfc5118/ipv6-correct-abnf-2-colons.dat"
    ));
    assert!(uri.equivalent(sip(correct.uri())));
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}

/// 4.10 IPv6 Reference Bug in RFC 3261 ABNF, second message: "The next
/// message has the correct syntax for the IPv6 reference in the R-URI."
#[test]
fn s4_10_ipv6_correct_abnf_2_colons() {
    let bytes = include_bytes!("fixtures/rfc5118/ipv6-correct-abnf-2-colons.dat");
    let req = request(bytes);
    let uri = sip(req.uri());
    assert_eq!(uri.ip(), Some(v6("2001:db8::c000:201")));
    assert_eq!(uri.user(), Some("user"));
    assert_eq!(
        sip_uri(&req.to().unwrap()).ip(),
        Some(v6("2001:db8::192.0.2.1"))
    );
    assert_eq!(req.top_via().unwrap().host(), "lab1.east.example.com");
    assert_eq!(req.check(), Ok(()));
    assert_round_trip(req.to_bytes(), bytes);
}
