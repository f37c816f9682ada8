//! The Via header (RFC 3261 20.42, RFC 3581).

use std::fmt;
use std::net::IpAddr;

use super::HeaderError;
use super::text::{Params, find_byte, is_lws, is_token, params, trim_lws};
use super::uri::parse_hostport;

/// The magic cookie that starts RFC 3261 branch parameters.
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value, borrowed from the message.
///
/// ```
/// use sip_dispatch::packet::Via;
/// let via = Via::parse("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776;rport").unwrap();
/// assert_eq!(via.transport(), "UDP");
/// assert_eq!(via.host(), "192.0.2.1");
/// assert_eq!(via.port(), Some(5062));
/// assert_eq!(via.branch(), Some("z9hG4bK776"));
/// assert_eq!(via.rport(), Some(None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    protocol: &'a str,
    version: &'a str,
    transport: &'a str,
    host: &'a str,
    ip: Option<IpAddr>,
    port: Option<u16>,
    params: &'a str,
    /// The parameters the stack reads on every message, found while the
    /// parameters are checked (first occurrence, as `Params::get`): each
    /// accessor is then O(1) instead of another walk of the list.
    branch: Option<Option<&'a str>>,
    received: Option<Option<&'a str>>,
    rport: Option<Option<&'a str>>,
    maddr: Option<Option<&'a str>>,
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma list). Linear white space is
    /// allowed around `/`, `:` and `;` as RFC 3261 permits.
    pub fn parse(value: &'a str) -> Result<Via<'a>, HeaderError> {
        let err = |reason| HeaderError {
            header: "Via",
            reason,
        };
        let (protocol, rest) = split_at_byte(value, b'/').ok_or(err("missing protocol name"))?;
        let (version, rest) = split_at_byte(rest, b'/').ok_or(err("missing protocol version"))?;
        let rest = trim_lws(rest);
        let t_end = rest
            .bytes()
            .position(is_lws)
            .ok_or(err("missing sent-by"))?;
        let transport = &rest[..t_end];
        let protocol = trim_lws(protocol);
        let version = trim_lws(version);
        if !is_token(protocol) || !is_token(version) || !is_token(transport) {
            return Err(err("invalid sent-protocol"));
        }
        let rest = trim_lws(&rest[t_end..]);
        let p_start = find_byte(rest, b';').unwrap_or(rest.len());
        let sent_by = trim_lws(&rest[..p_start]);
        let (host, ip, port) = parse_hostport(sent_by).map_err(|e| err(e.0))?;
        let params_str = &rest[p_start..];
        let (mut branch, mut received, mut rport, mut maddr) = (None, None, None, None);
        let mut named = 0usize;
        for (name, value) in params(params_str) {
            named += 1;
            if !is_token(name) {
                return Err(err("invalid parameter name"));
            }
            let slot = if name.eq_ignore_ascii_case("branch") {
                &mut branch
            } else if name.eq_ignore_ascii_case("received") {
                &mut received
            } else if name.eq_ignore_ascii_case("rport") {
                if let Some(v) = value {
                    v.parse::<u16>().map_err(|_| err("invalid rport"))?;
                }
                &mut rport
            } else if name.eq_ignore_ascii_case("maddr") {
                &mut maddr
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        // Anything between the parameters must be parameters: `;;,;` junk
        // leaves an empty name, which `params` skips, so look for stray
        // characters explicitly.
        // As many `;` as named parameters: each began one, none is empty
        // (the usual case, told by a count that vectorizes); otherwise
        // look.
        let semicolons = params_str.bytes().filter(|&b| b == b';').count();
        if semicolons != named && has_empty_parameter(params_str) {
            return Err(err("empty parameter"));
        }
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            ip,
            port,
            params: params_str,
            branch,
            received,
            rport,
            maddr,
        })
    }

    /// The protocol name, normally `SIP`.
    pub fn protocol(&self) -> &'a str {
        self.protocol
    }

    /// The protocol version, normally `2.0`.
    pub fn version(&self) -> &'a str {
        self.version
    }

    /// The transport as written (`UDP`, `TCP`, `TLS`, ...).
    pub fn transport(&self) -> &'a str {
        self.transport
    }

    /// The sent-by host as written (IPv6 in brackets).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The sent-by host's IP address, when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The sent-by port, if written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        params(self.params)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.branch.flatten()
    }

    /// Whether the branch is an RFC 3261 transaction id: the magic cookie
    /// followed by an identifier. A bare `z9hG4bK` identifies nothing
    /// (RFC 4475 3.2.1): transactions fall back to RFC 2543 matching.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| {
            b.len() > BRANCH_MAGIC_COOKIE.len() && b.starts_with(BRANCH_MAGIC_COOKIE)
        })
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        self.received.flatten()
    }

    /// The `rport` parameter: `None` when absent, `Some(None)` when present
    /// without a value (a request asking for it), `Some(Some(port))` when
    /// filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport.map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.maddr.flatten()
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params()
            .get("ttl")
            .flatten()
            .and_then(|t| t.parse().ok())
    }

    /// The sent-by as `host[:port]`, used in transaction keys.
    pub fn sent_by(&self) -> SentBy<'a> {
        SentBy {
            host: self.host,
            port: self.port,
        }
    }
}

/// A byte range of a Via value (u16: a value longer than 64 KiB is not
/// remembered, only parsed).
type Span = (u16, u16);

/// Where the parts of a parsed Via lie in its value: the message keeps
/// them for its top Via, so that the stack's many readers of the top Via
/// (received stamping, transaction keys, response routing) parse it once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViaSpans {
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    params: Span,
    ip: Option<IpAddr>,
    port: Option<u16>,
    branch: Option<Option<Span>>,
    received: Option<Option<Span>>,
    rport: Option<Option<Span>>,
    maddr: Option<Option<Span>>,
}

/// Whether some `;` of `params` is followed by nothing but white space
/// before the next `;` or the end (quotes not considered: `;;` is junk
/// wherever it is).
fn has_empty_parameter(params: &str) -> bool {
    // Byte-wise: after each `;`, anything but white space before the next
    // `;` (or the end) makes the segment non-empty.
    let bytes = params.as_bytes();
    let Some(mut i) = bytes.iter().position(|&b| b == b';') else {
        return false;
    };
    loop {
        let rest = &bytes[i + 1..];
        match rest.iter().position(|&b| !is_lws(b)) {
            None => return true,
            Some(p) if rest[p] == b';' => return true,
            Some(p) => match rest[p..].iter().position(|&b| b == b';') {
                Some(q) => i = i + 1 + p + q,
                None => return false,
            },
        }
    }
}

impl ViaSpans {
    /// The spans of a Via value rewritten as a leg stamps it: the old
    /// value with the byte range `removed` taken out (a stale parameter),
    /// then parameters appended up to `new_len`, among them `received`
    /// and `rport` with their values at the given ranges (`None`: the
    /// parameter is not among the appended ones). `None` when a part the
    /// old parse found overlaps `removed`.
    pub(crate) fn stamped(
        &self,
        removed: Option<(usize, usize)>,
        new_len: usize,
        received: Option<(usize, usize)>,
        rport: Option<(usize, usize)>,
    ) -> Option<ViaSpans> {
        let span = |r: (usize, usize)| -> Option<Span> {
            Some((u16::try_from(r.0).ok()?, u16::try_from(r.1).ok()?))
        };
        // Nothing removed: an empty cut past every part.
        let (a, b) = match removed {
            Some(r) => span(r)?,
            None => (u16::MAX, u16::MAX),
        };
        let shift = |sp: Span| -> Option<Span> {
            if sp.1 <= a {
                Some(sp)
            } else if sp.0 >= b {
                Some((sp.0 - (b - a), sp.1 - (b - a)))
            } else {
                None
            }
        };
        let shift_param = |p: Option<Option<Span>>| -> Option<Option<Option<Span>>> {
            Some(match p {
                None => None,
                Some(None) => Some(None),
                Some(Some(sp)) => Some(Some(shift(sp)?)),
            })
        };
        let params_start = if self.params.0 >= b {
            self.params.0 - (b - a)
        } else {
            self.params.0
        };
        Some(ViaSpans {
            protocol: shift(self.protocol)?,
            version: shift(self.version)?,
            transport: shift(self.transport)?,
            host: shift(self.host)?,
            params: (params_start, u16::try_from(new_len).ok()?),
            ip: self.ip,
            port: self.port,
            branch: shift_param(self.branch)?,
            received: match received {
                Some(r) => Some(Some(span(r)?)),
                None => shift_param(self.received)?,
            },
            rport: match rport {
                Some(r) => Some(Some(span(r)?)),
                None => shift_param(self.rport)?,
            },
            maddr: shift_param(self.maddr)?,
        })
    }
}

/// The range of `part` inside `base` (`part` must be a slice of it).
fn span_of(base: &str, part: &str) -> Option<Span> {
    let start = (part.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    if end > base.len() {
        return None;
    }
    Some((u16::try_from(start).ok()?, u16::try_from(end).ok()?))
}

fn at(value: &str, span: Span) -> Option<&str> {
    value.get(span.0 as usize..span.1 as usize)
}

fn param_span(value: &str, p: Option<Option<&str>>) -> Option<Option<Option<Span>>> {
    Some(match p {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(span_of(value, v)?)),
    })
}

fn param_at(value: &str, p: Option<Option<Span>>) -> Option<Option<Option<&str>>> {
    Some(match p {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(at(value, s)?)),
    })
}

impl<'a> Via<'a> {
    /// Where this Via's parts lie in `value`, the text it was parsed from;
    /// `None` when a part is not inside it or the value is too long.
    pub(crate) fn spans(&self, value: &str) -> Option<ViaSpans> {
        Some(ViaSpans {
            protocol: span_of(value, self.protocol)?,
            version: span_of(value, self.version)?,
            transport: span_of(value, self.transport)?,
            host: span_of(value, self.host)?,
            params: span_of(value, self.params)?,
            ip: self.ip,
            port: self.port,
            branch: param_span(value, self.branch)?,
            received: param_span(value, self.received)?,
            rport: param_span(value, self.rport)?,
            maddr: param_span(value, self.maddr)?,
        })
    }

    /// The Via parsed before from `value`, rebuilt from its spans without
    /// parsing; `None` when a span does not fit `value`.
    pub(crate) fn from_spans(value: &'a str, s: &ViaSpans) -> Option<Via<'a>> {
        Some(Via {
            protocol: at(value, s.protocol)?,
            version: at(value, s.version)?,
            transport: at(value, s.transport)?,
            host: at(value, s.host)?,
            ip: s.ip,
            port: s.port,
            params: at(value, s.params)?,
            branch: param_at(value, s.branch)?,
            received: param_at(value, s.received)?,
            rport: param_at(value, s.rport)?,
            maddr: param_at(value, s.maddr)?,
        })
    }
}

/// The sent-by part of a Via, for display and comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentBy<'a> {
    /// Host as written.
    pub host: &'a str,
    /// Port, if written.
    pub port: Option<u16>,
}

impl fmt::Display for SentBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|c| c == b)?;
    Some((&s[..i], &s[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semicolon_per_named_parameter_means_none_is_empty() {
        // The shortcut in `Via::parse`: when the `;` count equals the
        // parameters `params` names, `has_empty_parameter` must say no.
        let alphabet = [';', ';', ' ', '\t', 'a', 'b', '=', '"', '\\'];
        let mut generated = crate::packet::generated::Generated::new(0x005e_ed0f_5e51);
        let mut checked = 0;
        for _ in 0..200_000 {
            let text = format!(";{}", generated.string(&alphabet, 12));
            let named = params(&text).count();
            let semicolons = text.bytes().filter(|&b| b == b';').count();
            if semicolons == named {
                assert!(!has_empty_parameter(&text), "{text:?}");
                checked += 1;
            }
        }
        assert!(checked > 1_000, "{checked} strings took the shortcut");
    }

    #[test]
    fn empty_parameter_check_agrees_with_splitting() {
        let reference = |p: &str| {
            let mut segments = p.split(';');
            segments.next();
            segments.any(|seg| seg.bytes().all(is_lws))
        };
        let alphabet = [';', ' ', '\t', 'a', '=', 'b'];
        let mut generated = crate::packet::generated::Generated::new(0x0dd_f00d);
        for _ in 0..100_000 {
            let text = generated.string(&alphabet, 11);
            assert_eq!(has_empty_parameter(&text), reference(&text), "{text:?}");
        }
    }

    #[test]
    fn tortuous_via() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(
            (v.protocol(), v.version(), v.transport()),
            ("SIP", "2.0", "UDP")
        );
        assert_eq!(v.host(), "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.has_rfc3261_branch());
        let v =
            Via::parse("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8")
                .unwrap();
        assert_eq!(v.host(), "spindle.example.com");
        assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn cookie_without_identifier_is_not_an_rfc3261_branch() {
        // RFC 4475 3.2.1: "it provides no identifier".
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").unwrap();
        assert_eq!(v.branch(), Some("z9hG4bK"));
        assert!(!v.has_rfc3261_branch());
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx").unwrap();
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn ipv6_sent_by() {
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3-111;received=[2001:db8::9:255]",
        )
        .unwrap();
        assert_eq!(v.ip(), Some("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port(), Some(5070));
        assert_eq!(v.received(), Some("[2001:db8::9:255]"));
        assert_eq!(v.sent_by().to_string(), "[2001:db8::9:1]:5070");
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP host:abc",
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP [2001:db8::1;branch=x",
            "SIP/2.0/UDP host;rport=x",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }
}
