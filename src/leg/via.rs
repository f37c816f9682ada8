//! Via handling at the transport (RFC 3261 18.1.1, 18.2.1, 18.1.2; RFC 3581).

use std::net::{IpAddr, SocketAddr};

use crate::packet::{HeaderName, Message, Request, Via, find_byte, trim_lws};

use super::addr::Protocol;

/// The Via value a leg writes on an outgoing request: transport, sent-by,
/// the dispatcher's branch, and a valueless `rport` (RFC 3581 3); over TLS
/// also `alias` (RFC 5923: the peer may send its requests to us over this
/// connection, once our certificate proves the sent-by).
#[cfg(test)]
pub(crate) fn outgoing_via(proto: Protocol, host: &str, port: u16, branch: &str) -> String {
    let mut v = String::new();
    push_outgoing_via(&mut v, proto, Host::Name(host), port, branch);
    v
}

/// The sent-by host of a Via a leg writes: a configured name, or the
/// leg's address.
pub(crate) enum Host<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

/// Appends the Via value of [`outgoing_via`] to `v`.
pub(crate) fn push_outgoing_via(
    v: &mut String,
    proto: Protocol,
    host: Host<'_>,
    port: u16,
    branch: &str,
) {
    v.push_str("SIP/2.0/");
    v.push_str(proto.via_name());
    v.push(' ');
    match host {
        Host::Name(h) => v.push_str(h),
        Host::Ip(ip) => push_ip_host(v, ip),
    }
    v.push(':');
    v.push_str(decimal_text(u64::from(port), &mut [0; 20]));
    v.push_str(";branch=");
    v.push_str(branch);
    v.push_str(";rport");
    if proto == Protocol::Tls {
        v.push_str(";alias");
    }
}

/// Room for the longest IP address text (an IPv6 with an embedded IPv4).
const IP_TEXT: usize = 45;

/// An IP address as text (no brackets), in `buf`: IPv4 without the
/// formatter, since a leg writes one into every Via it sends or stamps.
fn ip_text(ip: IpAddr, buf: &mut [u8; IP_TEXT]) -> &str {
    let len = match ip {
        IpAddr::V4(a) => {
            // Byte by byte: a copy call per octet cost more than the
            // digits themselves.
            let mut len = 0;
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    buf[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    buf[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                buf[len] = b'0' + octet % 10;
                len += 1;
            }
            len
        }
        IpAddr::V6(a) => {
            use std::io::Write;
            let mut out = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(out, "{a}");
            usize::try_from(out.position()).unwrap_or(0)
        }
    };
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// A number as decimal text, in `buf`.
fn decimal_text(n: u64, buf: &mut [u8; 20]) -> &str {
    // Digits only: always UTF-8.
    std::str::from_utf8(crate::packet::decimal(n, buf)).unwrap_or("")
}

/// How an IP address is written as a host: IPv6 in brackets.
pub(crate) fn host_of(ip: IpAddr) -> String {
    let mut host = String::new();
    push_ip_host(&mut host, ip);
    host
}

fn push_ip_host(v: &mut String, ip: IpAddr) {
    let mut buf = [0; IP_TEXT];
    let text = ip_text(ip, &mut buf);
    if ip.is_ipv6() {
        v.push('[');
        v.push_str(text);
        v.push(']');
    } else {
        v.push_str(text);
    }
}

/// RFC 3261 18.2.1 and RFC 3581 4: on an incoming request, add `received`
/// when the sent-by host is not the source address (a host name always
/// differs), and fill a valueless `rport` with the source port (then
/// `received` is always added). Returns false when the request has no
/// usable top Via (the caller drops it).
pub(crate) fn stamp_received(req: &mut Request, from: SocketAddr) -> bool {
    let stamp = {
        // The parse the message remembers (the checks and the transaction
        // key read it again): carried over to the stamped value below.
        let Some(Ok(via)) = req.headers().top_via() else {
            return false;
        };
        let fill_rport = via.rport() == Some(None);
        let same_host = via
            .ip()
            .is_some_and(|ip| canonical(ip) == canonical(from.ip()));
        if same_host && !fill_rport {
            return true;
        }
        let Some(top) = req.headers().get(HeaderName::Via) else {
            return false;
        };
        // Built in the per-thread buffer: the header's copy is the one
        // allocation.
        crate::packet::with_scratch(|out| {
            let (written, carried) = stamp_value(top, from, fill_rport, out);
            let value = std::rc::Rc::<str>::from(std::str::from_utf8(out).unwrap_or(top));
            (value, carried, written)
        })
    };
    let (value, carried, written) = stamp;
    let headers = req.headers_mut();
    match carried {
        Some(removed) => {
            headers.stamp_top_via(value, removed, written.received, written.rport);
        }
        None => {
            headers.replace_first_shared(HeaderName::Via, value);
        }
    }
    true
}

/// Writes the stamped value of `top` into `out` (`received`, and `rport`
/// filled when `fill_rport`), exactly as [`rewrite_params`] writes it.
/// When the result is `top` with at most one parameter taken out (the
/// range returned) and the new ones appended, that is what it builds
/// directly, and the parse of `top` carries over.
fn stamp_value(
    top: &str,
    from: SocketAddr,
    fill_rport: bool,
    out: &mut Vec<u8>,
) -> (Written, Option<Option<(usize, usize)>>) {
    // Nothing white space could be trimmed from: `rewrite_params` keeps
    // every other byte as written.
    let plain = match find_byte(top, b';') {
        Some(semi) => {
            top.as_bytes()[semi..].iter().all(u8::is_ascii_graphic)
                && top.as_bytes()[..semi]
                    .last()
                    .is_some_and(u8::is_ascii_graphic)
        }
        None => false,
    };
    match plain.then(|| dropped_segment(top, fill_rport)).flatten() {
        Some(cut) => {
            let (a, b) = cut.unwrap_or((top.len(), top.len()));
            out.extend_from_slice(&top.as_bytes()[..a]);
            out.extend_from_slice(&top.as_bytes()[b..]);
            (append_stamp(out, from, true, fill_rport), Some(cut))
        }
        None => (rewrite_params(top, from, true, fill_rport, out), None),
    }
}

/// The one parameter segment (`;name[=value]`, from its `;`) that
/// [`rewrite_params`] drops from `top` when it stamps `received` (and
/// fills `rport`): `Some(None)` when it drops none, `None` when it drops
/// more than one.
fn dropped_segment(top: &str, rport: bool) -> Option<Option<(usize, usize)>> {
    let bytes = top.as_bytes();
    let mut found = None;
    // Byte-wise (this runs for every request received): each segment
    // from its `;` to the next, its name up to `=`, trimmed.
    let mut pos = bytes.iter().position(|&b| b == b';')?;
    loop {
        let end = bytes[pos + 1..]
            .iter()
            .position(|&b| b == b';')
            .map_or(bytes.len(), |e| pos + 1 + e);
        let segment = &top[pos + 1..end];
        if replaced_by_stamp(segment, true, rport) {
            if found.is_some() {
                return None;
            }
            found = Some((pos, end));
        }
        if end == bytes.len() {
            return Some(found);
        }
        pos = end;
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether a parameter segment (`name[=value]`, after its `;`) is one a
/// stamp writes anew: `received`, and `rport` when it is filled.
fn replaced_by_stamp(segment: &str, received: bool, rport: bool) -> bool {
    // A stamped Via parsed: its parameter names are tokens between LWS.
    let name = trim_lws(find_byte(segment, b'=').map_or(segment, |e| &segment[..e]));
    (received && name.eq_ignore_ascii_case("received"))
        || (rport && name.eq_ignore_ascii_case("rport"))
}

/// Where [`rewrite_params`] put the values it appended.
struct Written {
    received: Option<(usize, usize)>,
    rport: Option<(usize, usize)>,
}

/// Rewrites the parameters of one Via value: drops old `received` /
/// `rport` as needed and appends the new ones, keeping everything else as
/// written.
fn rewrite_params(
    top: &str,
    from: SocketAddr,
    received: bool,
    rport: bool,
    out: &mut Vec<u8>,
) -> Written {
    let mut parts = top.split(';');
    out.extend_from_slice(parts.next().unwrap_or("").trim_end().as_bytes());
    for p in parts {
        if replaced_by_stamp(p, received, rport) {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(p.trim().as_bytes());
    }
    append_stamp(out, from, received, rport)
}

/// Appends `;received=IP` and `;rport=PORT` as asked.
fn append_stamp(out: &mut Vec<u8>, from: SocketAddr, received: bool, rport: bool) -> Written {
    let mut written = Written {
        received: None,
        rport: None,
    };
    // Written straight into `out`: this runs for every request received.
    if received {
        // RFC 3261 grammar: received = IPv4address / IPv6address (no brackets).
        out.extend_from_slice(b";received=");
        let start = out.len();
        out.extend_from_slice(ip_text(canonical(from.ip()), &mut [0; IP_TEXT]).as_bytes());
        written.received = Some((start, out.len()));
    }
    if rport {
        out.extend_from_slice(b";rport=");
        let start = out.len();
        out.extend_from_slice(crate::packet::decimal(
            u64::from(from.port()),
            &mut [0u8; 20],
        ));
        written.rport = Some((start, out.len()));
    }
    written
}

/// RFC 3261 18.1.2: a response whose top Via sent-by does not name this
/// leg is not ours. `hosts` are the addresses and names this leg writes
/// into its Via.
pub(crate) fn response_is_ours(
    msg: &Message,
    port: u16,
    is_ours: impl Fn(&Via<'_>) -> bool,
) -> bool {
    let Ok(via) = msg.top_via() else { return false };
    via.port().unwrap_or(5060) == port && is_ours(&via)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;

    #[test]
    fn ip_text_writes_what_display_writes() {
        let mut buf = [0; IP_TEXT];
        for v in 0..=255u8 {
            for ip in [
                [v, 0, 0, 0],
                [1, v, 2, 3],
                [10, 0, v, 9],
                [255, 255, 255, v],
            ] {
                let ip = IpAddr::from(ip);
                assert_eq!(ip_text(ip, &mut buf), ip.to_string());
            }
        }
        for ip in ["::1", "2001:db8::7", "::ffff:192.0.2.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip, &mut buf), ip.to_string());
        }
    }

    fn req(via: &str) -> Request {
        let text = format!(
            "OPTIONS sip:b@example.com SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP other;branch=z9hG4bKo\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match Packet::parse(text.as_bytes()).unwrap() {
            Packet::Request(r) => r,
            Packet::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn same_ip_untouched() {
        let mut r = req("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1");
        assert!(stamp_received(&mut r, "192.0.2.1:5060".parse().unwrap()));
        assert!(!r.is_modified());
        // Ports are not compared (RFC 3261 18.2.1).
        let mut r = req("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1");
        assert!(stamp_received(&mut r, "192.0.2.1:7777".parse().unwrap()));
        assert!(!r.is_modified());
    }

    #[test]
    fn received_for_other_ip_and_host_names() {
        let mut r = req("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1");
        stamp_received(&mut r, "198.51.100.7:5060".parse().unwrap());
        assert_eq!(r.top_via().unwrap().received(), Some("198.51.100.7"));
        let mut r = req("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1");
        stamp_received(&mut r, "192.0.2.1:5060".parse().unwrap());
        assert_eq!(r.top_via().unwrap().received(), Some("192.0.2.1"));
        assert_eq!(r.vias().count(), 2, "the second Via stays");
    }

    #[test]
    fn rport_filled_and_received_always_added() {
        let mut r = req("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1");
        stamp_received(&mut r, "192.0.2.1:61000".parse().unwrap());
        let via = r.top_via().unwrap();
        assert_eq!(via.rport(), Some(Some(61000)));
        assert_eq!(via.received(), Some("192.0.2.1"));
        assert_eq!(via.branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn ipv6_received_without_brackets() {
        let mut r = req("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport");
        stamp_received(&mut r, "[2001:db8::2]:5062".parse().unwrap());
        let via = r.top_via().unwrap();
        assert_eq!(via.received(), Some("2001:db8::2"));
        assert_eq!(via.rport(), Some(Some(5062)));
    }

    #[test]
    fn the_stamped_via_keeps_its_parse_without_parsing_again() {
        let shapes = [
            ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", true),
            (
                "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1;maddr=192.0.2.9",
                true,
            ),
            ("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1", true),
            (
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=7;received=10.0.0.1",
                true,
            ),
            ("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport", true),
            (
                "SIP/2.0/UDP 192.0.2.1:5060;received=10.0.0.1;rport;branch=z9hG4bK1",
                false,
            ),
            (
                "SIP/2.0/UDP 192.0.2.1:5060 ; branch=z9hG4bK1 ; rport",
                false,
            ),
            (
                "SIP/2.0/UDP h;branch=z9hG4bK1;rport, SIP/2.0/TCP second;branch=z9hG4bK2",
                true,
            ),
        ];
        let sources = ["192.0.2.1:61000", "198.51.100.7:5060", "[2001:db8::2]:5062"];
        for (via, carried) in shapes {
            for from in sources {
                let mut r = req(via);
                assert!(stamp_received(&mut r, from.parse().unwrap()));
                if !r.is_modified() {
                    continue;
                }
                // Carried over when the rewrite only took out one stale
                // parameter and appended; parsed again otherwise.
                let remembered = r.headers().top_via_at(0).is_some();
                assert_eq!(remembered, carried, "{via} from {from}");
                let fresh = Via::parse(r.headers().get(HeaderName::Via).unwrap()).unwrap();
                let kept = r.top_via().unwrap();
                assert_eq!(
                    format!("{kept:?}"),
                    format!("{fresh:?}"),
                    "{via} from {from}"
                );
                assert_eq!(kept.rport(), fresh.rport());
                assert_eq!(kept.received(), fresh.received());
            }
        }
    }

    #[test]
    fn the_direct_stamp_writes_what_the_general_rewrite_writes() {
        let shapes = [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;RPORT;received=10.0.0.1",
            "SIP/2.0/UDP h;branch=z9hG4bK1;rport=5;Received=x",
            "SIP/2.0/UDP h;branch=z9hG4bK1",
            "SIP/2.0/UDP h ;branch=z9hG4bK1;rport",
            "SIP/2.0/UDP h;branch=z9hG4bK1; rport",
            "SIP/2.0/UDP h;branch=é;rport",
        ];
        for top in shapes {
            for from in [
                "192.0.2.7:61000",
                "[2001:db8::2]:5062",
                "[::ffff:192.0.2.9]:1",
            ] {
                let from: SocketAddr = from.parse().unwrap();
                for fill in [false, true] {
                    let (mut direct, mut general) = (Vec::new(), Vec::new());
                    let (a, _) = stamp_value(top, from, fill, &mut direct);
                    let b = rewrite_params(top, from, true, fill, &mut general);
                    assert_eq!(
                        String::from_utf8(direct).unwrap(),
                        String::from_utf8(general).unwrap(),
                        "{top} {from} {fill}"
                    );
                    assert_eq!((a.received, a.rport), (b.received, b.rport));
                }
            }
        }
    }

    #[test]
    fn no_via_is_refused() {
        let text = "OPTIONS sip:b@example.com SIP/2.0\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n";
        let Packet::Request(mut r) = Packet::parse(text.as_bytes()).unwrap() else {
            unreachable!()
        };
        assert!(!stamp_received(&mut r, "192.0.2.1:5060".parse().unwrap()));
    }

    #[test]
    fn outgoing() {
        assert_eq!(
            outgoing_via(Protocol::Tcp, "[::1]", 5070, "z9hG4bKabc"),
            "SIP/2.0/TCP [::1]:5070;branch=z9hG4bKabc;rport"
        );
        assert_eq!(
            outgoing_via(Protocol::Tls, "proxy.example", 5061, "z9hG4bKabc"),
            "SIP/2.0/TLS proxy.example:5061;branch=z9hG4bKabc;rport;alias"
        );
    }
}
