//! URIs: SIP and SIPS URIs parsed into their parts (RFC 3261 19.1, IPv6
//! references per RFC 5118), other schemes kept as opaque text.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::rc::Rc;
use std::str::FromStr;

use super::text::{Params, find_byte, find_non_uri_byte, find3, params, percent_decode};

/// Why a URI did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriError(pub &'static str);

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid URI: {}", self.0)
    }
}

impl std::error::Error for UriError {}

/// A URI as found in a Request-URI or a name-addr.
///
/// ```
/// use sip_dispatch::packet::Uri;
/// let uri: Uri = "sips:alice@[2001:db8::1]:5061;transport=tcp".parse().unwrap();
/// let sip = uri.as_sip().unwrap();
/// assert!(sip.is_secure());
/// assert_eq!(sip.user(), Some("alice"));
/// assert_eq!(sip.port(), Some(5061));
/// assert_eq!(sip.param("transport"), Some(Some("tcp")));
/// let tel: Uri = "tel:+1-201-555-0123".parse().unwrap();
/// assert_eq!(tel.scheme(), "tel");
/// assert!(tel.as_sip().is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Uri {
    /// A `sip:` or `sips:` URI.
    Sip(SipUri),
    /// Any other scheme, kept as written.
    Other(OtherUri),
}

impl Uri {
    /// Parses a URI.
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.starts_with('<') {
            // RFC 3261 25.1, RFC 4475 3.1.2.7: the <> belong to name-addr,
            // never to the URI.
            return Err(UriError("URI enclosed in <>"));
        }
        let colon = find_byte(s, b':').ok_or(UriError("missing scheme"))?;
        let scheme = &s[..colon];
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(s).map(Uri::Sip)
        } else {
            OtherUri::parse(s).map(Uri::Other)
        }
    }

    /// Parses the URI at `start..end` of a message's text, keeping a
    /// reference to that text instead of a copy: a Request-URI costs no
    /// allocation. `None` when the range is not in `src`.
    pub(crate) fn parse_shared(src: &Rc<str>, start: usize, end: usize) -> Result<Uri, UriError> {
        let s = src.get(start..end).ok_or(UriError("not in the message"))?;
        if s.starts_with('<') {
            return Err(UriError("URI enclosed in <>"));
        }
        let colon = find_byte(s, b':').ok_or(UriError("missing scheme"))?;
        let scheme = &s[..colon];
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            let mut uri = SipUri::scan(s)?;
            uri.raw = UriText::Shared(Rc::clone(src), start as u32, end as u32);
            Ok(Uri::Sip(uri))
        } else {
            OtherUri::parse(s).map(Uri::Other)
        }
    }

    /// Whether `s` is a valid URI, without allocating.
    pub(crate) fn check(s: &str) -> Result<(), UriError> {
        if s.starts_with('<') {
            return Err(UriError("URI enclosed in <>"));
        }
        let colon = find_byte(s, b':').ok_or(UriError("missing scheme"))?;
        let scheme = &s[..colon];
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::check(s)
        } else {
            OtherUri::scan(s).map(|_| ())
        }
    }

    /// The scheme as written (`sip`, `sips`, `tel`, ...).
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) => u.scheme(),
            Uri::Other(u) => u.scheme(),
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other(_) => None,
        }
    }

    /// The URI as text.
    pub fn as_str(&self) -> &str {
        match self {
            Uri::Sip(u) => u.as_str(),
            Uri::Other(u) => u.as_str(),
        }
    }
}

impl FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URI of a scheme other than sip/sips: `scheme:opaque`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OtherUri {
    raw: Box<str>,
    scheme_len: usize,
}

impl OtherUri {
    fn parse(s: &str) -> Result<OtherUri, UriError> {
        let scheme_len = OtherUri::scan(s)?;
        Ok(OtherUri {
            raw: s.into(),
            scheme_len,
        })
    }

    /// Checks `scheme:opaque`; returns the scheme's length.
    fn scan(s: &str) -> Result<usize, UriError> {
        let colon = find_byte(s, b':').ok_or(UriError("missing scheme"))?;
        let scheme = &s[..colon];
        let mut chars = scheme.bytes();
        match chars.next() {
            Some(b) if b.is_ascii_alphabetic() => {}
            _ => return Err(UriError("scheme must start with a letter")),
        }
        if !chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return Err(UriError("invalid character in scheme"));
        }
        let rest = &s[colon + 1..];
        if rest.is_empty() {
            return Err(UriError("empty URI after the scheme"));
        }
        if find_non_uri_byte(rest.as_bytes(), is_uric).is_some() {
            return Err(UriError("invalid character"));
        }
        Ok(colon)
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &str {
        &self.raw[..self.scheme_len]
    }

    /// The URI as text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// Characters allowed anywhere in a URI here: printable ASCII without
/// space, quotes and angle brackets, plus UTF-8 (tolerated).
fn is_uric(b: u8) -> bool {
    URIC[usize::from(b)]
}

const URIC: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = (c > 0x20 && c != 0x7f && c != b'<' && c != b'>' && c != b'"') || c >= 0x80;
        b += 1;
    }
    t
};

/// The host part of a SIP URI or Via.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name, as written (compare case-insensitively).
    Domain(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets in URIs).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// Parses a host: a name, an IPv4 address, or an IPv6 reference in
    /// brackets (a bare IPv6 address is accepted too).
    pub fn parse(s: &str) -> Result<Host, UriError> {
        Ok(match check_host(s)? {
            Some(ip) => Host::from(ip),
            None => Host::Domain(s.to_owned()),
        })
    }

    /// The IP address, if the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

/// Checks a host (see [`Host::parse`]) without allocating: its IP
/// address when it is one, `None` for a valid host name.
fn check_host(s: &str) -> Result<Option<IpAddr>, UriError> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(UriError("unterminated IPv6 reference"))?;
        return parse_ipv6(inner).map(|a| Some(IpAddr::V6(a)));
    }
    if let Some(v4) = parse_ipv4(s) {
        return Ok(Some(IpAddr::V4(v4)));
    }
    if find_byte(s, b':').is_some() {
        return parse_ipv6(s).map(|a| Some(IpAddr::V6(a)));
    }
    if is_hostname(s) {
        Ok(None)
    } else {
        Err(UriError("invalid host name"))
    }
}

/// An IP address as `IpAddr::from_str` reads it, IPv4 without its
/// general parser (a Via's `received` is read for every response routed).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    match parse_ipv4(s) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => s.parse::<IpAddr>().ok(),
    }
}

/// A dotted-quad IPv4 address, as `Ipv4Addr::from_str` reads it (four
/// decimal octets up to 255, no leading zeros), without the general
/// parser: every Via and most URIs carry one.
pub(crate) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    ipv4_prefix(s.as_bytes()).and_then(|(ip, end)| (end == s.len()).then_some(ip))
}

/// The dotted-quad IPv4 address `b` starts with, and where it ends; one
/// pass, each byte read once. `None` unless four octets are there.
fn ipv4_prefix(b: &[u8]) -> Option<(Ipv4Addr, usize)> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v = 0u32;
        // At most three digits: a fourth is left for the caller to refuse.
        while i - start < 3 {
            match b.get(i) {
                Some(d) if d.is_ascii_digit() => v = v * 10 + u32::from(d - b'0'),
                _ => break,
            }
            i += 1;
        }
        let len = i - start;
        if len == 0 || v > 255 || (len > 1 && b[start] == b'0') {
            return None;
        }
        *octet = v as u8;
    }
    Some((Ipv4Addr::from(octets), i))
}

/// An IPv6 address (RFC 4291), tolerating the one form RFC 3261's ABNF
/// derives by mistake: three colons before an embedded IPv4 address
/// (`2001:db8:::192.0.2.1`, read as `2001:db8::192.0.2.1`). RFC 5118 4.10:
/// "an implementation must tolerate both of the above constructs". Only
/// that position is tolerated: the text is rewritten to `::` and parsed
/// again by the standard parser, so anything else stays an error.
fn parse_ipv6(s: &str) -> Result<Ipv6Addr, UriError> {
    if let Ok(addr) = Ipv6Addr::from_str(s) {
        return Ok(addr);
    }
    s.find(":::")
        .map(|i| (&s[..i], &s[i + 3..]))
        .filter(|(_, tail)| Ipv4Addr::from_str(tail).is_ok())
        .and_then(|(head, tail)| Ipv6Addr::from_str(&format!("{head}::{tail}")).ok())
        .ok_or(UriError("invalid IPv6 address"))
}

/// Host names: labels of letters, digits, `-` (and `_`, seen in the wild),
/// separated by dots, optionally ending in a dot.
pub(crate) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').enumerate().all(|(i, label)| {
            (label.is_empty() && i > 0 && s.ends_with('.'))
                || (!label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !label.starts_with('-'))
        })
}

/// Parses `host[:port]` where host may be an IPv6 reference. Linear white
/// space around the colon is allowed (Via sent-by).
#[inline]
pub(crate) fn parse_hostport(s: &str) -> Result<(&str, Option<IpAddr>, Option<u16>), UriError> {
    // Nearly every Via and URI of a server's traffic carries an IPv4
    // address and a port: read them in one pass.
    if let Some((host, ip, port)) = ipv4_and_port(s) {
        return Ok((host, Some(IpAddr::V4(ip)), port));
    }
    parse_hostport_general(s)
}

/// `a.b.c.d` or `a.b.c.d:port` exactly (no white space, port digits only
/// and at most 65535): what [`parse_hostport_general`] gives for it.
/// `None` for anything else, which that decides.
fn ipv4_and_port(s: &str) -> Option<(&str, Ipv4Addr, Option<u16>)> {
    let b = s.as_bytes();
    let (ip, host_end) = ipv4_prefix(b)?;
    let port = match b.get(host_end) {
        None => None,
        Some(b':') => Some(port_digits(&b[host_end + 1..])?),
        Some(_) => return None,
    };
    Some((&s[..host_end], ip, port))
}

/// A port of digits only, at most 65535, in one pass; `None` for
/// anything else (where [`parse_port`] says which error).
fn port_digits(p: &[u8]) -> Option<u16> {
    if p.is_empty() {
        return None;
    }
    let mut v: u32 = 0;
    for &d in p {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
        if v > u32::from(u16::MAX) {
            return None;
        }
    }
    Some(v as u16)
}

/// Host and port whatever their form: an IPv6 reference, a name, white
/// space around the colon.
fn parse_hostport_general(s: &str) -> Result<(&str, Option<IpAddr>, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let end = find_byte(s, b']').ok_or(UriError("unterminated IPv6 reference"))?;
        let rest = s[end + 1..].trim_start();
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.trim_start()),
            None if rest.is_empty() => None,
            None => return Err(UriError("junk after IPv6 reference")),
        };
        (&s[..=end], port)
    } else {
        match find_byte(s, b':') {
            // RFC 5118 4.2: an IPv6 address must be written as a reference
            // in brackets; without them its colons cannot be told from the
            // port's.
            Some(c) if find_byte(&s[c + 1..], b':').is_some() => {
                return Err(UriError("IPv6 address without brackets"));
            }
            Some(c) => (s[..c].trim_end(), Some(s[c + 1..].trim_start())),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((host, check_host(host)?, port))
}

fn parse_port(p: &str) -> Result<u16, UriError> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError("invalid port"));
    }
    // Digits only: what `str::parse::<u16>` would give, without its
    // general machinery (a port is parsed for every Via and URI).
    port_digits(p.as_bytes()).ok_or(UriError("port out of range"))
}

type Range = (u16, u16);

/// A SIP URI's text: its own, or a slice of the message it was parsed
/// from (the Request-URI of a received request: no copy). A shared URI
/// keeps that message's text alive while it lives.
#[derive(Clone)]
enum UriText {
    Owned(Box<str>),
    Shared(Rc<str>, u32, u32),
}

impl Deref for UriText {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            UriText::Owned(s) => s,
            UriText::Shared(src, a, b) => src.get(*a as usize..*b as usize).unwrap_or(""),
        }
    }
}

impl fmt::Debug for UriText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A `sip:` or `sips:` URI.
///
/// The URI keeps its text; the parts are views into it, so parsing costs
/// one allocation. Edits build a new URI.
#[derive(Clone, Debug)]
pub struct SipUri {
    raw: UriText,
    secure: bool,
    user: Option<Range>,
    password: Option<Range>,
    host: Range,
    ip: Option<IpAddr>,
    port: Option<u16>,
    params: Range,
    headers: Option<Range>,
}

impl SipUri {
    /// Parses a sip: or sips: URI.
    pub fn parse(s: &str) -> Result<SipUri, UriError> {
        let mut uri = SipUri::scan(s)?;
        uri.raw = UriText::Owned(s.into());
        Ok(uri)
    }

    /// Whether `s` is a valid sip: or sips: URI, without allocating (the
    /// validation of From, To and Contact).
    pub(crate) fn check(s: &str) -> Result<(), UriError> {
        SipUri::scan(s).map(|_| ())
    }

    /// Parses the parts; the text is left empty (no allocation).
    fn scan(s: &str) -> Result<SipUri, UriError> {
        if s.len() > u16::MAX as usize {
            return Err(UriError("URI too long"));
        }
        let colon = find_byte(s, b':').ok_or(UriError("missing scheme"))?;
        let scheme = &s[..colon];
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            return Err(UriError("not a sip or sips URI"));
        };
        if find_non_uri_byte(s.as_bytes(), is_uric).is_some() {
            return Err(UriError(
                "invalid character (white space, quote or angle bracket)",
            ));
        }
        let r = |a: usize, b: usize| (a as u16, b as u16);
        let mut pos = colon + 1;
        let (mut user, mut password) = (None, None);
        if let Some(at) = find_byte(&s[pos..], b'@') {
            let at = pos + at;
            let userinfo = &s[pos..at];
            match find_byte(userinfo, b':') {
                Some(c) => {
                    user = Some(r(pos, pos + c));
                    password = Some(r(pos + c + 1, at));
                }
                None => user = Some(r(pos, at)),
            }
            if userinfo.is_empty() || userinfo.starts_with(':') {
                return Err(UriError("empty user part"));
            }
            pos = at + 1;
        }
        let hostport_end = find3(s.as_bytes(), pos, b';', b'?', b'?').unwrap_or(s.len());
        let (host, ip, port) = parse_hostport(&s[pos..hostport_end])?;
        let host = r(pos, pos + host.len());
        let (params_end, headers) = match find_byte(&s[hostport_end..], b'?') {
            Some(q) => {
                let q = hostport_end + q;
                (q, Some(r(q + 1, s.len())))
            }
            None => (s.len(), None),
        };
        for (name, _) in params(&s[hostport_end..params_end]) {
            if name.is_empty() {
                return Err(UriError("empty parameter name"));
            }
        }
        Ok(SipUri {
            raw: UriText::Owned(Box::default()),
            secure,
            user,
            password,
            host,
            ip,
            port,
            params: r(hostport_end, params_end),
            headers,
        })
    }

    fn slice(&self, (a, b): Range) -> &str {
        &self.raw[a as usize..b as usize]
    }

    /// Whether this is a `sips:` URI.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// `sip` or `sips`, as written.
    pub fn scheme(&self) -> &str {
        if self.secure {
            &self.raw[..4]
        } else {
            &self.raw[..3]
        }
    }

    /// The user part as written (escapes not decoded).
    pub fn user(&self) -> Option<&str> {
        self.user.map(|r| self.slice(r))
    }

    /// The user part with `%XX` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Cow<'_, [u8]>> {
        self.user().map(percent_decode)
    }

    /// The password, if the URI carries one (discouraged by RFC 3261).
    pub fn password(&self) -> Option<&str> {
        self.password.map(|r| self.slice(r))
    }

    /// The host as written (an IPv6 address keeps its brackets).
    pub fn host_str(&self) -> &str {
        self.slice(self.host)
    }

    /// The host, parsed.
    pub fn host(&self) -> Host {
        match self.ip {
            Some(ip) => Host::from(ip),
            None => Host::Domain(self.host_str().to_owned()),
        }
    }

    /// The host's IP address, when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The parameters (`;transport=tcp;lr`).
    pub fn params(&self) -> Params<'_> {
        params(self.slice(self.params))
    }

    /// One parameter by name (case-insensitive): `Some(None)` when present
    /// without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params().get(name)
    }

    /// The `transport` parameter, lower-cased view as written.
    pub fn transport(&self) -> Option<&str> {
        self.param("transport").flatten()
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.param("maddr").flatten()
    }

    /// Whether the URI has the `lr` parameter (loose routing).
    pub fn is_loose_route(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The headers part after `?`, as written.
    pub fn headers(&self) -> Option<&str> {
        self.headers.map(|r| self.slice(r))
    }

    /// The URI as text.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// A new URI: `sip:` or `sips:`, optional user, host and port.
    ///
    /// ```
    /// use sip_dispatch::packet::{Host, SipUri};
    /// let u = SipUri::new(false, Some("bob"), &Host::Ipv6("::1".parse().unwrap()), Some(5060));
    /// assert_eq!(u.as_str(), "sip:bob@[::1]:5060");
    /// ```
    pub fn new(secure: bool, user: Option<&str>, host: &Host, port: Option<u16>) -> SipUri {
        let mut s = String::from(if secure { "sips:" } else { "sip:" });
        if let Some(u) = user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&host.to_string());
        if let Some(p) = port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        SipUri::parse(&s).unwrap_or_else(|_| SipUri::minimal(secure, host, port))
    }

    /// Fallback for [`SipUri::new`] when a caller passes a user part that
    /// does not parse: the URI without it.
    fn minimal(secure: bool, host: &Host, port: Option<u16>) -> SipUri {
        let host_s = host.to_string();
        let mut s = String::from(if secure { "sips:" } else { "sip:" });
        let start = s.len();
        s.push_str(&host_s);
        let end = s.len();
        if let Some(p) = port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        let len = s.len() as u16;
        SipUri {
            raw: UriText::Owned(s.into()),
            secure,
            user: None,
            password: None,
            host: (start as u16, end as u16),
            ip: host.ip(),
            port,
            params: (len, len),
            headers: None,
        }
    }

    /// A copy with parameter `name` set to `value` (replacing any previous
    /// value); `None` writes the parameter without a value (`;lr`).
    ///
    /// ```
    /// use sip_dispatch::packet::SipUri;
    /// let u = SipUri::parse("sip:a@b;transport=udp;lr").unwrap();
    /// assert_eq!(u.with_param("transport", Some("tcp")).as_str(), "sip:a@b;lr;transport=tcp");
    /// assert_eq!(u.without_param("lr").as_str(), "sip:a@b;transport=udp");
    /// ```
    pub fn with_param(&self, name: &str, value: Option<&str>) -> SipUri {
        let (mut s, params_end) = self.rebuild_without(Some(name));
        let mut param = format!(";{name}");
        if let Some(v) = value {
            param.push('=');
            param.push_str(v);
        }
        // After the other parameters, before the headers part. (Not at the
        // first `?`: the user part may contain one, RFC 4475 3.1.1.2.)
        s.insert_str(params_end, &param);
        SipUri::parse(&s).unwrap_or_else(|_| self.clone())
    }

    /// A copy without parameter `name`.
    pub fn without_param(&self, name: &str) -> SipUri {
        SipUri::parse(&self.rebuild_without(Some(name)).0).unwrap_or_else(|_| self.clone())
    }

    /// A copy without the headers part (`?...`), as a Request-URI needs.
    pub fn without_headers(&self) -> SipUri {
        match self.headers {
            Some((a, _)) => {
                SipUri::parse(&self.raw[..a as usize - 1]).unwrap_or_else(|_| self.clone())
            }
            None => self.clone(),
        }
    }

    /// The URI without parameter `drop`, and where its parameters end.
    fn rebuild_without(&self, drop: Option<&str>) -> (String, usize) {
        let mut s = String::with_capacity(self.raw.len() + 16);
        s.push_str(&self.raw[..self.params.0 as usize]);
        let params_str = self.slice(self.params);
        for (n, v) in params(params_str) {
            if drop.is_some_and(|d| d.eq_ignore_ascii_case(n)) {
                continue;
            }
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        let params_end = s.len();
        s.push_str(&self.raw[self.params.1 as usize..]);
        (s, params_end)
    }

    /// Compares two SIP URIs by the rules of RFC 3261 19.1.4 (scheme, user
    /// and password case-sensitive after unescaping, host case-insensitive,
    /// port, and the parameters `user`, `ttl`, `method`, `maddr`,
    /// `transport` when either side has them; other parameters only when
    /// both have them; headers ignored here).
    pub fn equivalent(&self, other: &SipUri) -> bool {
        if self.secure != other.secure
            || self.user_unescaped() != other.user_unescaped()
            || self.password.map(|r| percent_decode(self.slice(r)))
                != other.password.map(|r| percent_decode(other.slice(r)))
            || self.port != other.port
        {
            return false;
        }
        let hosts_equal = match (self.ip, other.ip) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.host_str().eq_ignore_ascii_case(other.host_str()),
            _ => false,
        };
        if !hosts_equal {
            return false;
        }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            let a = self.param(name).map(|v| v.map(|s| s.to_ascii_lowercase()));
            let b = other.param(name).map(|v| v.map(|s| s.to_ascii_lowercase()));
            if a != b {
                return false;
            }
        }
        // A parameter written twice (invalid, RFC 3261 19.1.1) counts by its
        // first value, as `param` reads it, so that a URI stays equivalent
        // to itself.
        self.params()
            .all(|(n, _)| match (self.param(n), other.param(n)) {
                (Some(v), Some(ov)) => {
                    v.map(str::to_ascii_lowercase) == ov.map(str::to_ascii_lowercase)
                }
                _ => true,
            })
    }
}

impl PartialEq for SipUri {
    fn eq(&self, other: &SipUri) -> bool {
        *self.raw == *other.raw
    }
}

impl Eq for SipUri {}

impl std::hash::Hash for SipUri {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (*self.raw).hash(state)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for SipUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<SipUri, UriError> {
        SipUri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_uri_byte_check_agrees_with_is_uric() {
        // Each byte class that matters (controls, space, DEL, the three
        // refused signs, UTF-8, plain), at lengths around the 8-byte steps.
        let alphabet = [
            'a', 'a', '@', ';', '\0', '\t', ' ', '!', '\u{7f}', '<', '>', '"', '=', '~', 'é',
            '\u{80}', '\u{ff}', '\u{1f}',
        ];
        let mut generated = crate::packet::generated::Generated::new(0x0123_4567_89ab);
        for _ in 0..200_000 {
            let text = generated.string(&alphabet, 27);
            assert_eq!(
                find_non_uri_byte(text.as_bytes(), is_uric),
                text.bytes().position(|b| !is_uric(b)),
                "{text:?}"
            );
        }
        for b in 0..=255u8 {
            let word = [b'a', b'a', b'a', b, b'a', b'a', b'a', b'a', b'a'];
            assert_eq!(
                find_non_uri_byte(&word, is_uric),
                (!is_uric(b)).then_some(3),
                "{b:#x}"
            );
        }
    }

    #[test]
    fn ipv4_and_port_agrees_with_the_general_hostport_parse() {
        // Addresses built octet by octet (valid and not), then a port or
        // junk; and strings of the bytes that matter.
        let octets = ["0", "1", "25", "255", "256", "01", "9", "", "1a"];
        let seps = [".", ".", ".", ".", ":", ".."];
        let ends = [
            "", "", ":5060", ":0", ":65535", ":65536", ":", ":005060", " :5060", ": 5060", ":50x",
            ":5060:1", "a", "]", ":99999",
        ];
        let alphabet = ['1', '2', '5', '0', '9', '.', '.', ':', ' ', 'a', '[', ']'];
        let mut generated = crate::packet::generated::Generated::new(0x1b4_5060);
        let pick = |list: &[&'static str], g: &mut crate::packet::generated::Generated| {
            list[g.next_u64() as usize % list.len()]
        };
        let mut fast = 0;
        for n in 0..300_000 {
            let text = if n % 2 == 0 {
                let mut t = pick(&octets, &mut generated).to_string();
                for _ in 0..3 {
                    t.push_str(pick(&seps, &mut generated));
                    t.push_str(pick(&octets, &mut generated));
                }
                t.push_str(pick(&ends, &mut generated));
                t
            } else {
                generated.string(&alphabet, 24)
            };
            if let Some((host, ip, port)) = ipv4_and_port(&text) {
                fast += 1;
                assert_eq!(
                    Ok((host, Some(IpAddr::V4(ip)), port)),
                    parse_hostport_general(&text),
                    "{text:?}"
                );
            }
            assert_eq!(
                parse_hostport(&text),
                parse_hostport_general(&text),
                "{text:?}"
            );
        }
        for usual in [
            "127.0.0.1",
            "127.0.0.1:5060",
            "192.0.2.255:65535",
            "10.0.0.1:0",
        ] {
            assert!(ipv4_and_port(usual).is_some(), "{usual}");
        }
        assert!(fast > 1_000, "{fast} took the fast path");
    }

    #[test]
    fn port_parsing_agrees_with_the_standard_library() {
        let alphabet = ['0', '0', '1', '5', '6', '9', 'x', ' ', '+'];
        let mut generated = crate::packet::generated::Generated::new(0x9e37_79b9_7f4a_7c15);
        let mut texts: Vec<String> = ["", "0", "65535", "65536", "0065535", "99999999999"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        texts.extend((0..100_000).map(|_| generated.string(&alphabet, 8)));
        for text in texts {
            let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            let want = if digits {
                text.parse::<u16>().ok()
            } else {
                None
            };
            assert_eq!(parse_port(&text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn ipv4_parsing_agrees_with_the_standard_library() {
        let alphabet = ['0', '1', '2', '5', '9', '.', '.', 'a', ' ', '+'];
        let mut generated = crate::packet::generated::Generated::new(0x2545_f491_4f6c_dd1d);
        for i in 0..300_000u32 {
            let text: String = if i % 3 == 0 {
                // Mostly well-formed: four numbers 0..=300, some padded.
                let state = generated.next_u64();
                let n = |k: u32| (state >> (k * 9)) as u32 % 301;
                let pad = if (state >> 60) == 0 { "0" } else { "" };
                format!("{}.{pad}{}.{}.{}", n(0), n(1), n(2), n(3))
            } else {
                generated.string(&alphabet, 16)
            };
            assert_eq!(parse_ipv4(&text), text.parse::<Ipv4Addr>().ok(), "{text:?}");
            assert_eq!(parse_ip(&text), text.parse::<IpAddr>().ok(), "{text:?}");
        }
    }

    #[test]
    fn a_request_uri_shares_the_message_text_and_outlives_it() {
        let p = crate::packet::Packet::parse(
            b"OPTIONS sip:bob@[2001:db8::1]:5070;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              Content-Length: 0\r\n\r\n",
        )
        .unwrap();
        let uri = p.as_request().unwrap().uri().clone();
        drop(p);
        assert_eq!(uri.as_str(), "sip:bob@[2001:db8::1]:5070;transport=udp");
        let sip = uri.as_sip().unwrap();
        assert_eq!(sip.user(), Some("bob"));
        assert_eq!(sip.port(), Some(5070));
        assert_eq!(sip.param("transport"), Some(Some("udp")));
        assert_eq!(sip.scheme(), "sip");
        // Equal to, and hashing like, the same URI parsed on its own.
        let own: Uri = "sip:bob@[2001:db8::1]:5070;transport=udp".parse().unwrap();
        assert_eq!(uri, own);
        let hash = |u: &Uri| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(u)
        };
        assert_eq!(hash(&uri), hash(&own));
        assert_eq!(format!("{uri}"), own.to_string());
    }

    #[test]
    fn with_param_goes_after_the_parameters_even_with_a_question_mark_in_the_user() {
        // RFC 4475 3.1.1.2: `?` and `;` are legal in the user part.
        let u = SipUri::parse("sip:a?b;c@example.com;lr?subject=x").unwrap();
        let w = u.with_param("transport", Some("tcp"));
        assert_eq!(
            w.as_str(),
            "sip:a?b;c@example.com;lr;transport=tcp?subject=x"
        );
        assert_eq!(w.transport(), Some("tcp"));
        assert_eq!(w.user(), Some("a?b;c"));
        let u = SipUri::parse("sip:a?b@example.com").unwrap();
        assert_eq!(u.with_param("lr", None).as_str(), "sip:a?b@example.com;lr");
    }

    #[test]
    fn full_sip_uri() {
        let u = SipUri::parse(
            "sip:alice:secret@example.com:5070;transport=TCP;lr;maddr=10.0.0.1?subject=x&h=y",
        )
        .unwrap();
        assert_eq!(u.user(), Some("alice"));
        assert_eq!(u.password(), Some("secret"));
        assert_eq!(u.host_str(), "example.com");
        assert_eq!(u.host(), Host::Domain("example.com".into()));
        assert_eq!(u.port(), Some(5070));
        assert_eq!(u.transport(), Some("TCP"));
        assert!(u.is_loose_route());
        assert_eq!(u.maddr(), Some("10.0.0.1"));
        assert_eq!(u.headers(), Some("subject=x&h=y"));
        assert_eq!(
            u.without_headers().as_str(),
            "sip:alice:secret@example.com:5070;transport=TCP;lr;maddr=10.0.0.1"
        );
    }

    #[test]
    fn ipv6_references() {
        let u = SipUri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.ip(), Some("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port(), Some(5070));
        let u = SipUri::parse("sip:user@[2001:db8::10]").unwrap();
        assert_eq!(u.port(), None);
        assert!(SipUri::parse("sip:[2001:db8::10:5070").is_err());
        assert!(SipUri::parse("sip:user@[2001:db8:::10]").is_err());
        assert!(SipUri::parse("sip:[::ffff:192.0.2.1]").is_ok());
    }

    #[test]
    fn rfc3261_abnf_three_colon_ipv6_is_tolerated() {
        // RFC 5118 4.10: both constructs must be tolerated, naming one address.
        let three = SipUri::parse("sip:user@[2001:db8:::192.0.2.1]").unwrap();
        let two = SipUri::parse("sip:user@[2001:db8::192.0.2.1]").unwrap();
        assert_eq!(three.ip(), two.ip());
        assert_eq!(three.host_str(), "[2001:db8:::192.0.2.1]");
        assert_eq!(
            Host::parse(":::192.0.2.1"),
            Ok(Host::Ipv6("::192.0.2.1".parse().unwrap()))
        );
        // Only before an embedded IPv4 address, and only once.
        for bad in [
            "[2001:db8:::10]",
            "[2001:db8::1:::192.0.2.1]",
            "[2001:db8::::192.0.2.1]",
            "[2001:db8:::192.0.2]",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn angle_brackets_are_named() {
        assert_eq!(
            Uri::parse("<sip:user@example.com>").unwrap_err(),
            UriError("URI enclosed in <>")
        );
    }

    #[test]
    fn ipv6_without_brackets_is_named() {
        // RFC 5118 4.2: the Request-URI's IPv6 address lacks "[" and "]".
        assert_eq!(
            SipUri::parse("sip:2001:db8::10").unwrap_err(),
            UriError("IPv6 address without brackets")
        );
        assert_eq!(
            SipUri::parse("sip:host:99x").unwrap_err(),
            UriError("invalid port")
        );
    }

    #[test]
    fn user_with_semicolons_and_escapes() {
        let u = SipUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
        assert_eq!(u.host_str(), "example.com");
        assert_eq!(u.params().count(), 0);
        let u = SipUri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(&*u.user_unescaped().unwrap(), b"sips:user@example.com");
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "sip:",
            "sip:@host",
            "sip:user@",
            "sip:user@host:",
            "sip:user@host:99999",
            "sip:user@ho st",
            "<sip:user@host>",
            "sip:user@host>",
            "sip:-bad.example.com",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = Uri::parse("nobodyKnowsThisScheme:totallyopaque-content").unwrap();
        assert_eq!(u.scheme(), "nobodyKnowsThisScheme");
        let u = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.scheme(), "soap.beep");
        assert!(Uri::parse("1abc:x").is_err());
    }

    #[test]
    fn param_editing() {
        let u = SipUri::parse("sip:a@b?x=y").unwrap();
        assert_eq!(u.with_param("lr", None).as_str(), "sip:a@b;lr?x=y");
    }

    #[test]
    fn equivalence() {
        let a = SipUri::parse("sip:%61lice@ATLANTA.com;transport=TCP").unwrap();
        let b = SipUri::parse("sip:alice@AtLanTa.CoM;Transport=tcp").unwrap();
        assert!(a.equivalent(&b));
        let c = SipUri::parse("sip:alice@atlanta.com").unwrap();
        assert!(!a.equivalent(&c));
        let d = SipUri::parse("sip:carol@chicago.com;security=on").unwrap();
        let e = SipUri::parse("sip:carol@chicago.com;newparam=5").unwrap();
        assert!(d.equivalent(&e));
        let twice = SipUri::parse("sip:a@b;x=1;x=2").unwrap();
        assert!(twice.equivalent(&twice));
    }
}
