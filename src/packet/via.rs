//! The Via header (RFC 3261 20.42, RFC 3581).

use std::fmt;
use std::net::IpAddr;

use super::HeaderError;
use super::text::{
    LO, Params, bytes_below, find_byte, find_words, is_lws, is_token, is_token_byte, params,
    trim_lws, zero_bytes,
};
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
#[derive(Clone, Copy)]
pub struct Via<'a> {
    /// The value it was parsed from; the parts are ranges of it, so that
    /// a `Via` is small to return and rebuilt from a message's remembered
    /// parse without re-slicing every part.
    value: &'a str,
    /// Where the parts lie, and the parameters the stack reads on every
    /// message (first occurrence, as `Params::get`), found while the
    /// parameters are checked: each accessor is then O(1).
    spans: ViaSpans,
}

impl PartialEq for Via<'_> {
    /// Equal parts (the texts they were parsed from may differ in white
    /// space).
    fn eq(&self, other: &Self) -> bool {
        self.protocol() == other.protocol()
            && self.version() == other.version()
            && self.transport() == other.transport()
            && self.host() == other.host()
            && self.ip() == other.ip()
            && self.port() == other.port()
            && self.spans.params_text(self.value) == other.spans.params_text(other.value)
            && self.param(self.spans.branch) == other.param(other.spans.branch)
            && self.param(self.spans.received) == other.param(other.spans.received)
            && self.param(self.spans.rport) == other.param(other.spans.rport)
            && self.param(self.spans.maddr) == other.param(other.spans.maddr)
    }
}

impl Eq for Via<'_> {}

impl fmt::Debug for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Via")
            .field("protocol", &self.protocol())
            .field("version", &self.version())
            .field("transport", &self.transport())
            .field("host", &self.host())
            .field("ip", &self.ip())
            .field("port", &self.port())
            .field("params", &self.spans.params_text(self.value))
            .field("branch", &self.param(self.spans.branch))
            .field("received", &self.param(self.spans.received))
            .field("rport", &self.param(self.spans.rport))
            .field("maddr", &self.param(self.spans.maddr))
            .finish()
    }
}

impl<'a> Via<'a> {
    /// Parses one Via value (not a comma list). Linear white space is
    /// allowed around `/`, `:` and `;` as RFC 3261 permits. A value longer
    /// than 65535 bytes is refused.
    pub fn parse(value: &'a str) -> Result<Via<'a>, HeaderError> {
        // Nearly every Via is written the plain way; it is read on every
        // message (three times per transaction a proxy forwards).
        if let Some(via) = Via::parse_plain(value) {
            return Ok(via);
        }
        Via::parse_general(value)
    }

    /// The Via written the plain way, `SIP/2.0/<transport> <sent-by>` and
    /// parameters, with one space and no other white space or quote
    /// anywhere: what [`Via::parse_general`] gives for it, found without
    /// trimming or quote handling. `None` for any other value, including
    /// every value the general parse rejects or whose parameters it
    /// skips (an empty one), so that it decides those.
    fn parse_plain(value: &'a str) -> Option<Via<'a>> {
        let rest = value.strip_prefix("SIP/2.0/")?;
        let bytes = rest.as_bytes();
        let t_end = bytes.iter().position(|&b| !is_token_byte(b))?;
        if t_end == 0 || bytes[t_end] != b' ' || !plain_bytes(&bytes[t_end + 1..]) {
            return None;
        }
        let transport = &rest[..t_end];
        let rest = &rest[t_end + 1..];
        let p_start = find_byte(rest, b';').unwrap_or(rest.len());
        let (host, ip, port) = parse_hostport(&rest[..p_start]).ok()?;
        let params_str = &rest[p_start..];
        let mut kept = [None; 4];
        // Each parameter starts at a `;` (no quote or `<` hides one).
        let mut rest = params_str;
        while let Some(after) = rest.strip_prefix(';') {
            let end = find_byte(after, b';').unwrap_or(after.len());
            let item = &after[..end];
            rest = &after[end..];
            let (name, value) = match find_byte(item, b'=') {
                Some(eq) => (&item[..eq], Some(&item[eq + 1..])),
                None => (item, None),
            };
            if !is_token(name) {
                // Empty (skipped by the general parse, or junk) or invalid.
                return None;
            }
            keep_param(&mut kept, name, value).ok()?;
        }
        Via::from_parts(
            value,
            [&value[..3], &value[4..7], transport, host, params_str],
            ip,
            port,
            kept,
        )
    }

    /// Parses one Via value whatever its white space: the definition the
    /// plain fast path agrees with.
    fn parse_general(value: &'a str) -> Result<Via<'a>, HeaderError> {
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
        let mut kept = [None; 4];
        let mut named = 0usize;
        for (name, value) in params(params_str) {
            named += 1;
            if !is_token(name) {
                return Err(err("invalid parameter name"));
            }
            keep_param(&mut kept, name, value).map_err(|()| err("invalid rport"))?;
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
        Via::from_parts(
            value,
            [protocol, version, transport, host, params_str],
            ip,
            port,
            kept,
        )
        .ok_or(err("longer than 65535 bytes"))
    }

    /// A Via from its parts, slices of `value`: `[protocol, version,
    /// transport, host, params]` and the values of `[branch, received,
    /// rport, maddr]`. `None` when a part is not inside `value` or
    /// `value` is longer than 64 KiB (ranges are 16-bit).
    fn from_parts(
        value: &'a str,
        parts: [&'a str; 5],
        ip: Option<IpAddr>,
        port: Option<u16>,
        named: [Option<Option<&'a str>>; 4],
    ) -> Option<Via<'a>> {
        let [protocol, version, transport, host, params] = parts;
        let [branch, received, rport, maddr] = named;
        Some(Via {
            value,
            spans: ViaSpans {
                protocol: span_of(value, protocol)?,
                version: span_of(value, version)?,
                transport: span_of(value, transport)?,
                host: span_of(value, host)?,
                params: span_of(value, params)?,
                ip,
                port,
                branch: param_span(value, branch)?,
                received: param_span(value, received)?,
                rport: param_span(value, rport)?,
                maddr: param_span(value, maddr)?,
            },
        })
    }

    /// The text at `span` of the value (always inside it: the spans were
    /// taken from it).
    fn at(&self, span: Span) -> &'a str {
        at(self.value, span).unwrap_or("")
    }

    /// A named parameter's value from its span.
    fn param(&self, p: Option<Option<Span>>) -> Option<Option<&'a str>> {
        p.map(|v| v.map(|s| self.at(s)))
    }

    /// The protocol name, normally `SIP`.
    pub fn protocol(&self) -> &'a str {
        self.at(self.spans.protocol)
    }

    /// The protocol version, normally `2.0`.
    pub fn version(&self) -> &'a str {
        self.at(self.spans.version)
    }

    /// The transport as written (`UDP`, `TCP`, `TLS`, ...).
    pub fn transport(&self) -> &'a str {
        self.at(self.spans.transport)
    }

    /// The sent-by host as written (IPv6 in brackets).
    pub fn host(&self) -> &'a str {
        self.at(self.spans.host)
    }

    /// The sent-by host's IP address, when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.spans.ip
    }

    /// The sent-by port, if written.
    pub fn port(&self) -> Option<u16> {
        self.spans.port
    }

    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        params(self.at(self.spans.params))
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.param(self.spans.branch).flatten()
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
        self.param(self.spans.received).flatten()
    }

    /// The `rport` parameter: `None` when absent, `Some(None)` when present
    /// without a value (a request asking for it), `Some(Some(port))` when
    /// filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param(self.spans.rport)
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.param(self.spans.maddr).flatten()
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
            host: self.host(),
            port: self.port(),
        }
    }
}

/// A byte range of a Via value (a Via is at most 64 KiB long).
type Span = (u16, u16);

/// Where the parts of a parsed Via lie in its value. A [`Via`] is its
/// value and these; a message remembers them for its top Via, so that the
/// stack's many readers of the top Via (received stamping, transaction
/// keys, response routing) parse it once.
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

/// The parameters a `Via` keeps for reading in O(1), in the order of its
/// `named` parts: branch, received, rport, maddr.
const KEPT: [&str; 4] = ["branch", "received", "rport", "maddr"];

/// Keeps parameter `name` (a token) in `kept` when it is one of [`KEPT`]
/// and its first occurrence (as `Params::get` finds it). `Err` for an
/// `rport` value that is not a port.
fn keep_param<'a>(
    kept: &mut [Option<Option<&'a str>>; 4],
    name: &str,
    value: Option<&'a str>,
) -> Result<(), ()> {
    let Some(k) = KEPT
        .iter()
        .position(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
    else {
        return Ok(());
    };
    if KEPT[k] == "rport" {
        if let Some(v) = value {
            v.parse::<u16>().map_err(|_| ())?;
        }
    }
    if kept[k].is_none() {
        kept[k] = Some(value);
    }
    Ok(())
}

/// Whether `bytes` holds no white space or other control byte, no quote
/// and no `<`: text the plain Via parse reads without trimming, where
/// each `;` starts a parameter (the general parameter splitting skips
/// quoted strings and `<...>`). Eight bytes at a time.
fn plain_bytes(bytes: &[u8]) -> bool {
    let (quote, bracket) = (LO * u64::from(b'"'), LO * u64::from(b'<'));
    find_words(
        bytes,
        0,
        |w| bytes_below(w, 0x21) | zero_bytes(w ^ quote) | zero_bytes(w ^ bracket),
        |b| b <= b' ' || b == b'"' || b == b'<',
    )
    .is_none()
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
    /// The parameters' text in `value`.
    fn params_text(self, value: &str) -> &str {
        at(value, self.params).unwrap_or("")
    }

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

impl<'a> Via<'a> {
    /// Where this Via's parts lie in the value it was parsed from.
    pub(crate) fn spans(&self) -> ViaSpans {
        self.spans
    }

    /// The Via parsed before from `value`, rebuilt from its spans without
    /// parsing; `None` when the spans are not of a value of this length.
    pub(crate) fn from_spans(value: &'a str, s: &ViaSpans) -> Option<Via<'a>> {
        // The parameters run to the end of the value.
        (usize::from(s.params.1) == value.len()).then_some(Via { value, spans: *s })
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
    fn plain_parse_agrees_with_the_general_parse() {
        // Via-like values built from pieces that hit every branch of the
        // plain parse: white space, quotes, brackets, empty and repeated
        // parameters, bad ports and hosts, IPv6, odd transports.
        let heads = [
            "SIP/2.0/UDP ",
            "SIP/2.0/TCP ",
            "SIP/2.0/tls ",
            "SIP/2.0/UDP  ",
            "SIP/2.0/UDP\t",
            "SIP/2.0/ UDP ",
            "SIP/2.0/ ",
            "SIP/2.0/U:P ",
            "SIP/2.0/UDP",
            "SIP /2.0/UDP ",
            "sip/2.0/UDP ",
        ];
        let pieces = [
            "192.0.2.1",
            "10.0.0.255",
            "host.example.com",
            "[2001:db8::1]",
            "[2001:db8::1",
            "::1",
            ":5060",
            ":99999",
            ":",
            ";branch=z9hG4bK776",
            ";branch=",
            ";BRANCH=x",
            ";branch",
            ";received=192.0.2.9",
            ";received",
            ";rport",
            ";rport=5062",
            ";rport=x",
            ";rport=+7",
            ";maddr=224.0.0.1",
            ";ttl=1",
            ";x=\"a;branch=q\"",
            ";x=<a;branch=q>",
            ";",
            ";;",
            ";=v",
            ";a=b=c",
            ";n@me",
            " ",
            "\t",
            ",",
            "a",
            "1",
            ".",
            "é",
        ];
        let mut generated = crate::packet::generated::Generated::new(0x0a11_7a5e);
        let mut plain = 0;
        for _ in 0..300_000 {
            let mut text = heads[generated.next_u64() as usize % heads.len()].to_string();
            // Mostly a usable sent-by, then anything.
            text.push_str(pieces[generated.next_u64() as usize % 7]);
            for _ in 0..generated.next_u64() % 5 {
                text.push_str(pieces[generated.next_u64() as usize % pieces.len()]);
            }
            if let Some(fast) = Via::parse_plain(&text) {
                plain += 1;
                assert_eq!(Ok(fast), Via::parse_general(&text), "{text:?}");
            }
            // Whichever path answers, parsing is what the definition says.
            assert_eq!(Via::parse(&text), Via::parse_general(&text), "{text:?}");
        }
        assert!(plain > 10_000, "{plain} values took the plain parse");
    }

    #[test]
    fn usual_vias_take_the_plain_parse() {
        for usual in [
            "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKlg0000000000000000;rport",
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;received=127.0.0.1;rport=40000",
            "SIP/2.0/TCP pc33.example.com;branch=z9hG4bK776asdhds",
            "SIP/2.0/TLS [2001:db8::9:1]:5061;branch=z9hG4bKas3-111;maddr=[2001:db8::1]",
        ] {
            let fast = Via::parse_plain(usual);
            assert!(fast.is_some(), "{usual}");
            assert_eq!(fast.ok_or(()), Via::parse_general(usual).map_err(|_| ()));
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
