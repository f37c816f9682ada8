//! Where a response goes (RFC 3261 18.2.2, RFC 3581 4): back on the
//! connection its request came on, else to the top Via's `maddr`, or to
//! `received` (or the sent-by host) at `rport` (or the sent-by port).

use std::net::SocketAddr;

use crate::error::{Errno, Error};
use crate::leg::Protocol;
use crate::leg::{Destination, Source};
use crate::packet::Response;
use crate::packet::{Message, Via};

/// The transport and address the top Via of a response asks for.
pub(crate) fn via_destination(msg: &Message) -> Result<(Protocol, SocketAddr), Error> {
    let via = msg.top_via().map_err(|e| {
        Error::new(
            Errno::EHOSTUNREACH,
            format!("response without usable Via: {e}"),
        )
    })?;
    via_target(&via)
}

pub(crate) fn via_target(via: &Via<'_>) -> Result<(Protocol, SocketAddr), Error> {
    let proto = Protocol::parse(via.transport()).ok_or_else(|| {
        Error::new(
            Errno::ENOPROTOOPT,
            format!("Via transport {} is not supported", via.transport()),
        )
    })?;
    let default_port = proto.default_port();
    let parse_ip =
        |s: &str| crate::packet::parse_ip(s.trim_start_matches('[').trim_end_matches(']'));
    if let Some(maddr) = via.maddr().and_then(parse_ip) {
        return Ok((
            proto,
            SocketAddr::new(maddr, via.port().unwrap_or(default_port)),
        ));
    }
    let ip = via
        .received()
        .and_then(parse_ip)
        .or(via.ip())
        .ok_or_else(|| {
            Error::new(
                Errno::EHOSTUNREACH,
                format!(
                    "Via sent-by {} is a name and there is no received",
                    via.host()
                ),
            )
        })?;
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port().unwrap_or(default_port),
    };
    Ok((proto, SocketAddr::new(ip, port)))
}

/// Where a response to a request from `source` goes (18.2.2): the same
/// connection on streams; over UDP the source address when the request
/// asked for rport, else the source IP and the Via's sent-by port.
pub(crate) fn response_destination(source: &Source, resp: &Response) -> Destination {
    let mut dst = source.reply_destination();
    if source.proto == Protocol::Udp || dst.conn.is_none() {
        if let Ok(via) = resp.top_via() {
            let no_rport = !matches!(via.rport(), Some(Some(_)));
            if no_rport {
                let port = via.port().unwrap_or(source.proto.default_port());
                dst.addr.set_port(port);
            }
            if let Some(maddr) = via.maddr().and_then(|m| m.parse().ok()) {
                dst.addr =
                    SocketAddr::new(maddr, via.port().unwrap_or(source.proto.default_port()));
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(v: &str) -> Result<(Protocol, SocketAddr), Error> {
        via_target(&Via::parse(v).unwrap())
    }

    #[test]
    fn rules() {
        let t = |v| target(v).unwrap();
        assert_eq!(
            t("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK1"),
            (Protocol::Udp, "192.0.2.1:5062".parse().unwrap())
        );
        assert_eq!(
            t("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"),
            (Protocol::Udp, "192.0.2.1:5060".parse().unwrap())
        );
        assert_eq!(
            t("SIP/2.0/UDP 192.0.2.1:5062;received=198.51.100.1;rport=40000"),
            (Protocol::Udp, "198.51.100.1:40000".parse().unwrap())
        );
        assert_eq!(
            t("SIP/2.0/UDP host.example.com:5062;received=198.51.100.1"),
            (Protocol::Udp, "198.51.100.1:5062".parse().unwrap())
        );
        assert_eq!(
            t("SIP/2.0/TLS [2001:db8::1]"),
            (Protocol::Tls, "[2001:db8::1]:5061".parse().unwrap())
        );
        assert_eq!(
            t("SIP/2.0/UDP 192.0.2.1;maddr=239.255.255.1;ttl=1"),
            (Protocol::Udp, "239.255.255.1:5060".parse().unwrap())
        );
        assert_eq!(
            target("SIP/2.0/UDP host.example.com").unwrap_err().errno(),
            Errno::EHOSTUNREACH
        );
        assert_eq!(
            target("SIP/2.0/SCTP 192.0.2.1").unwrap_err().errno(),
            Errno::ENOPROTOOPT
        );
    }
}
