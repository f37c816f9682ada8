//! Request validation: the message-level checks every UAS and proxy makes
//! before processing a request (RFC 3261 8.2, 16.3; the invalid messages
//! of RFC 4475), and small helpers for the checks that depend on what the
//! element supports (416, 420, 415, 483), which are its policy.

use std::fmt;

use super::HeaderError;
use super::header_name::HeaderName;
use super::message::Request;
use super::name_addr::NameAddr;
use super::text::is_lws;

/// Why a request cannot be processed: the status and reason phrase to
/// answer with.
///
/// ```
/// use sip_dispatch::packet::{Rejection, Request, Response};
/// let req = Request::parse(b"OPTIONS sip:b@example.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
///     From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n\
///     CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n").unwrap();
/// let rejection = req.check().unwrap_err();
/// assert_eq!(rejection, Rejection::bad_request("missing Call-ID"));
/// let resp = Response::for_request(&req, rejection.status, &rejection.reason);
/// assert!(resp.to_bytes().starts_with(b"SIP/2.0 400 Bad Request (missing Call-ID)\r\n"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status code to answer with (400, 505, ...).
    pub status: u16,
    /// The reason phrase to answer with.
    pub reason: String,
}

impl Rejection {
    /// A rejection with any status and reason.
    pub fn new(status: u16, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason: reason.into(),
        }
    }

    /// 400 Bad Request, with what is wrong in parentheses:
    /// `Bad Request (missing Call-ID)`.
    pub fn bad_request(why: impl fmt::Display) -> Rejection {
        Rejection::new(400, format!("Bad Request ({why})"))
    }

    /// 505 Version Not Supported.
    pub fn version_not_supported() -> Rejection {
        Rejection::new(505, "Version Not Supported")
    }

    /// A 400 for a header that is missing (`missing Call-ID`) or does not
    /// parse (`CSeq header: sequence number too large`).
    fn header(e: HeaderError) -> Rejection {
        if e.reason == "missing" {
            Rejection::bad_request(format_args!("missing {}", e.header))
        } else {
            Rejection::bad_request(e)
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Rejection {}

impl Request {
    /// Checks what any UAS or proxy must enforce before processing the
    /// request, whatever it supports:
    ///
    /// - the SIP version is 2.0 (else 505 Version Not Supported);
    /// - every Via value parses, and there is at least one;
    /// - From and To are present, appear once (or repeat the same value)
    ///   and parse, URI included (any scheme);
    /// - Call-ID is present, appears once, and is one word without white
    ///   space;
    /// - CSeq is present, appears once, parses (number below 2**31), and its
    ///   method is the request's (RFC 4475 3.1.2.17, 3.1.2.18);
    /// - Max-Forwards, Content-Type, Content-Length and Expires do not
    ///   appear with different values; Max-Forwards is a number up to 255;
    ///   Expires is a number up to 2**32-1 (RFC 3261 20.19, RFC 4475
    ///   3.1.2.4).
    ///
    /// The first problem found is returned, in that order: a request with a
    /// bad version and a bad CSeq gets 505. Everything else is 400 with a
    /// reason naming the header. Policy is left to the caller: see
    /// [`Request::unsupported_uri_scheme`] (416),
    /// [`Request::unsupported_require`] (420),
    /// [`Request::unsupported_content_type`] (415) and
    /// [`Request::max_forwards_exhausted`] (483).
    ///
    /// ```
    /// use sip_dispatch::packet::Request;
    /// let req = Request::parse(b"OPTIONS sip:user@example.com SIP/2.0\r\n\
    ///     To: sip:j.user@example.com\r\n\
    ///     From: sip:caller@example.net;tag=34525\r\nMax-Forwards: 6\r\n\
    ///     Call-ID: mismatch01.dj0234sxdfl3\r\nCSeq: 8 INVITE\r\n\
    ///     Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n").unwrap();
    /// let rejection = req.check().unwrap_err();
    /// assert_eq!(rejection.status, 400);
    /// assert_eq!(rejection.reason, "Bad Request (CSeq method does not match the request method)");
    /// ```
    pub fn check(&self) -> Result<(), Rejection> {
        if !self.version().eq_ignore_ascii_case("SIP/2.0") {
            return Err(Rejection::version_not_supported());
        }
        self.check_vias()?;
        // The single-valued headers, gathered in one pass over the fields
        // (this runs for every request received).
        let singles = Singles::gather(self);
        check_name_addr("From", singles.exact(Single::From))?;
        check_name_addr("To", singles.exact(Single::To))?;
        let call_id = singles
            .trimmed(Single::CallId)?
            .ok_or_else(|| Rejection::header(HeaderError::missing("Call-ID")))?;
        // callid = word ["@" word] (RFC 3261 25.1); only what makes it
        // unusable is checked here, not every character of `word`.
        if call_id.is_empty() || call_id.bytes().any(|b| is_lws(b) || b.is_ascii_control()) {
            return Err(Rejection::bad_request("Call-ID header: invalid"));
        }
        let cseq = singles
            .exact(Single::CSeq)
            .and_then(super::CSeq::parse)
            .map_err(Rejection::header)?;
        if cseq.method != *self.method() {
            return Err(Rejection::bad_request(
                "CSeq method does not match the request method",
            ));
        }
        singles.trimmed(Single::MaxForwards)?;
        if let Some(v) = singles.first[Single::MaxForwards as usize] {
            super::message::max_forwards_value(v).map_err(Rejection::header)?;
        }
        singles.trimmed(Single::ContentLength)?;
        singles.trimmed(Single::ContentType)?;
        if let Some(expires) = singles.trimmed(Single::Expires)? {
            check_delta_seconds("Expires", expires)?;
        }
        Ok(())
    }

    fn check_vias(&self) -> Result<(), Rejection> {
        // The top one through the message's remembered parse (the
        // transaction key and the response route read it again).
        self.top_via().map_err(Rejection::header)?;
        for via in self.headers().get_all(HeaderName::Via).skip(1) {
            super::Via::parse(via).map_err(Rejection::header)?;
        }
        Ok(())
    }

    /// The Require option tags that are not in `supported` (compared
    /// ASCII case-insensitively), in order. A UAS answers a request with
    /// any such tag with 420 Bad Extension and an Unsupported header
    /// listing them (RFC 3261 8.2.2.3), except an ACK, which is never
    /// answered; a CANCEL must not carry Require.
    ///
    /// ```
    /// use sip_dispatch::packet::Request;
    /// let req = Request::parse(b"OPTIONS sip:user@example.com SIP/2.0\r\n\
    ///     Require: nothingSupportsThis, 100rel\r\n\
    ///     Proxy-Require: noProxiesSupportThis\r\nContent-Length: 0\r\n\r\n").unwrap();
    /// assert_eq!(req.unsupported_require(&["100rel", "timer"]), ["nothingSupportsThis"]);
    /// assert_eq!(req.unsupported_proxy_require(&[]), ["noProxiesSupportThis"]);
    /// ```
    pub fn unsupported_require(&self, supported: &[&str]) -> Vec<&str> {
        self.unsupported_tags(HeaderName::Require, supported)
    }

    /// The Proxy-Require option tags that are not in `supported`: a proxy
    /// answers 420 Bad Extension listing them in Unsupported (RFC 3261
    /// 16.3 step 5). A UAS ignores Proxy-Require.
    pub fn unsupported_proxy_require(&self, supported: &[&str]) -> Vec<&str> {
        self.unsupported_tags(HeaderName::ProxyRequire, supported)
    }

    fn unsupported_tags(&self, name: HeaderName, supported: &[&str]) -> Vec<&str> {
        self.headers()
            .get_all(name)
            .filter(|tag| !supported.iter().any(|s| s.eq_ignore_ascii_case(tag)))
            .collect()
    }

    /// The Request-URI's scheme when it is not one of `supported`
    /// (compared ASCII case-insensitively): the element answers 416
    /// Unsupported URI Scheme (RFC 3261 8.2.2.1, 16.3 step 2; RFC 4475
    /// 3.3.2). The To header plays no part in it.
    ///
    /// ```
    /// use sip_dispatch::packet::Request;
    /// let req = Request::parse(b"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\n\
    ///     To: sip:user@example.com\r\nContent-Length: 0\r\n\r\n").unwrap();
    /// assert_eq!(req.unsupported_uri_scheme(&["sip", "sips"]), Some("nobodyKnowsThisScheme"));
    /// ```
    pub fn unsupported_uri_scheme(&self, supported: &[&str]) -> Option<&str> {
        let scheme = self.uri().scheme();
        (!supported.iter().any(|s| s.eq_ignore_ascii_case(scheme))).then_some(scheme)
    }

    /// The body's media type (`type/subtype` as written, parameters left
    /// out) when the request has a body whose type is not one of
    /// `accepted` (compared ASCII case-insensitively): a UAS answers 415
    /// Unsupported Media Type with an Accept header (RFC 3261 8.2.3). A
    /// body without Content-Type gives `Some("")`. `None` when there is no
    /// body or its type is accepted; a proxy does not look at bodies.
    ///
    /// ```
    /// use sip_dispatch::packet::Request;
    /// let req = Request::parse(b"INVITE sip:user@example.com SIP/2.0\r\n\
    ///     Content-Type: application/unknownformat;v=1\r\nContent-Length: 2\r\n\r\nhi").unwrap();
    /// assert_eq!(req.unsupported_content_type(&["application/sdp"]), Some("application/unknownformat"));
    /// assert_eq!(req.unsupported_content_type(&["Application/UnknownFormat"]), None);
    /// ```
    pub fn unsupported_content_type(&self, accepted: &[&str]) -> Option<&str> {
        if self.body().is_empty() {
            return None;
        }
        let value = self.headers().get(HeaderName::ContentType).unwrap_or("");
        let media = value.split(';').next().unwrap_or("").trim();
        let media_matches = |a: &&str| {
            let mut want = a.split('/').map(str::trim);
            let mut have = media.split('/').map(str::trim);
            (0..2).all(|_| match (want.next(), have.next()) {
                (Some(w), Some(h)) => w.eq_ignore_ascii_case(h),
                _ => false,
            })
        };
        (!accepted.iter().any(media_matches)).then_some(media)
    }

    /// Whether Max-Forwards is 0. A proxy must not forward such a request
    /// and answers 483 Too Many Hops (it may answer an OPTIONS itself)
    /// (RFC 3261 16.3 step 3); an endpoint processes it normally (RFC 4475
    /// 3.3.11).
    pub fn max_forwards_exhausted(&self) -> bool {
        self.max_forwards() == Ok(Some(0))
    }
}

/// The headers [`Request::check`] wants at most once (or repeated with
/// the same value).
#[derive(Clone, Copy)]
enum Single {
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Expires,
}

impl Single {
    fn of(name: HeaderName) -> Option<Single> {
        Some(match name {
            HeaderName::From => Single::From,
            HeaderName::To => Single::To,
            HeaderName::CallId => Single::CallId,
            HeaderName::CSeq => Single::CSeq,
            HeaderName::MaxForwards => Single::MaxForwards,
            HeaderName::ContentLength => Single::ContentLength,
            HeaderName::ContentType => Single::ContentType,
            HeaderName::Expires => Single::Expires,
            _ => return None,
        })
    }

    /// The header's name, as errors spell it.
    fn label(self) -> &'static str {
        match self {
            Single::From => HeaderName::From,
            Single::To => HeaderName::To,
            Single::CallId => HeaderName::CallId,
            Single::CSeq => HeaderName::CSeq,
            Single::MaxForwards => HeaderName::MaxForwards,
            Single::ContentLength => HeaderName::ContentLength,
            Single::ContentType => HeaderName::ContentType,
            Single::Expires => HeaderName::Expires,
        }
        .as_str()
    }
}

/// The first value of each [`Single`] header, and whether a later line
/// differs from it, as written (`differs`) or trimmed (`differs_trimmed`).
struct Singles<'a> {
    first: [Option<&'a str>; 8],
    differs: [bool; 8],
    differs_trimmed: [bool; 8],
}

impl<'a> Singles<'a> {
    fn gather(req: &'a Request) -> Singles<'a> {
        let headers = req.headers();
        let mut s = Singles {
            first: [None; 8],
            differs: [false; 8],
            differs_trimmed: [false; 8],
        };
        for f in &headers.fields {
            let Some(which) = f.id.and_then(Single::of) else {
                continue;
            };
            let i = which as usize;
            let value = f.value.resolve(&headers.src);
            match s.first[i] {
                None => s.first[i] = Some(value),
                Some(first) => {
                    s.differs[i] |= value != first;
                    s.differs_trimmed[i] |= value.trim() != first.trim();
                }
            }
        }
        s
    }

    /// As [`Message`](super::message::Message)'s accessors read it:
    /// missing, or repeated with another value as written, is an error.
    fn exact(&self, which: Single) -> Result<&'a str, HeaderError> {
        let i = which as usize;
        let first = self.first[i].ok_or(HeaderError::missing(which.label()))?;
        if self.differs[i] {
            return Err(repeated(which));
        }
        Ok(first)
    }

    /// Trimmed; repeated with another (trimmed) value is a 400.
    fn trimmed(&self, which: Single) -> Result<Option<&'a str>, Rejection> {
        let i = which as usize;
        if self.differs_trimmed[i] {
            return Err(Rejection::header(repeated(which)));
        }
        Ok(self.first[i].map(str::trim))
    }
}

fn repeated(which: Single) -> HeaderError {
    HeaderError {
        header: which.label(),
        reason: "appears more than once",
    }
}

/// From and To: the header and its URI (of any scheme) must parse.
fn check_name_addr(label: &'static str, value: Result<&str, HeaderError>) -> Result<(), Rejection> {
    let value = value
        .and_then(|v| NameAddr::parse(label, v))
        .map_err(Rejection::header)?;
    crate::packet::uri::Uri::check(value.uri_str())
        .map_err(|e| Rejection::bad_request(format_args!("{label} header: {e}")))
}

/// `delta-seconds`: digits, at most 2**32-1 (RFC 3261 20.19).
fn check_delta_seconds(label: &'static str, value: &str) -> Result<(), Rejection> {
    let err = |reason| {
        Rejection::header(HeaderError {
            header: label,
            reason,
        })
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("not a number"));
    }
    let number = value.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    if number > u64::from(u32::MAX) {
        return Err(err("larger than 2**32-1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
        Max-Forwards: 70\r\n\
        From: Alice <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: c1@a.example.com\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn with(replace: &str, by: &str) -> Request {
        assert!(OK.contains(replace), "{replace}");
        Request::parse(OK.replace(replace, by).as_bytes()).unwrap()
    }

    fn reason(req: &Request) -> String {
        req.check().unwrap_err().reason
    }

    #[test]
    fn valid_request_passes() {
        assert_eq!(Request::parse(OK.as_bytes()).unwrap().check(), Ok(()));
    }

    #[test]
    fn version() {
        let req = with("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert_eq!(req.check(), Err(Rejection::version_not_supported()));
        assert_eq!(with("SIP/2.0\r\nVia", "sip/2.0\r\nVia").check(), Ok(()));
    }

    #[test]
    fn missing_headers() {
        for (line, name) in [
            ("Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n", "Via"),
            ("From: Alice <sip:alice@example.com>;tag=1\r\n", "From"),
            ("To: <sip:bob@example.com>\r\n", "To"),
            ("Call-ID: c1@a.example.com\r\n", "Call-ID"),
            ("CSeq: 1 INVITE\r\n", "CSeq"),
        ] {
            assert_eq!(
                reason(&with(line, "")),
                format!("Bad Request (missing {name})")
            );
        }
        // Max-Forwards is optional here (RFC 2543 requests lack it).
        assert_eq!(with("Max-Forwards: 70\r\n", "").check(), Ok(()));
    }

    #[test]
    fn unusable_headers() {
        let cases = [
            (
                "CSeq: 1 INVITE",
                "CSeq: 1 OPTIONS",
                "CSeq method does not match the request method",
            ),
            (
                "CSeq: 1 INVITE",
                "CSeq: 4294967296 INVITE",
                "CSeq header: sequence number too large",
            ),
            (
                "Max-Forwards: 70",
                "Max-Forwards: 300",
                "Max-Forwards header: larger than 255",
            ),
            (
                "Max-Forwards: 70",
                "Max-Forwards: many",
                "Max-Forwards header: not a number",
            ),
            (
                "Call-ID: c1@a.example.com",
                "Call-ID: c1 c2",
                "Call-ID header: invalid",
            ),
            (
                "Call-ID: c1@a.example.com",
                "Call-ID:",
                "Call-ID header: invalid",
            ),
            (
                "To: <sip:bob@example.com>",
                "To: \"Bob <sip:bob@example.com>",
                "To header: unterminated quoted display name",
            ),
            (
                "To: <sip:bob@example.com>",
                "To: <sip:bob@>",
                "To header: invalid URI: invalid host name",
            ),
            (
                "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
                "Via: SIP/2.0/UDP a.example.com;;,;",
                "Via header: empty parameter",
            ),
            (
                "Content-Length: 0",
                "Expires: 4294967296\r\nContent-Length: 0",
                "Expires header: larger than 2**32-1",
            ),
            (
                "Content-Length: 0",
                "Expires: Thu, 01 Dec 2040 16:00:00 GMT\r\nContent-Length: 0",
                "Expires header: not a number",
            ),
        ];
        for (replace, by, why) in cases {
            assert_eq!(
                reason(&with(replace, by)),
                format!("Bad Request ({why})"),
                "{by}"
            );
        }
        assert_eq!(
            with(
                "Content-Length: 0",
                "Expires: 4294967295\r\nContent-Length: 0"
            )
            .check(),
            Ok(())
        );
    }

    #[test]
    fn single_valued_headers_with_different_values() {
        for (line, name) in [
            ("Max-Forwards: 70\r\n", "Max-Forwards"),
            ("Call-ID: c1@a.example.com\r\n", "Call-ID"),
            ("To: <sip:bob@example.com>\r\n", "To"),
        ] {
            let doubled = format!("{line}{}", line.replace(": ", ": 1"));
            assert_eq!(
                reason(&with(line, &doubled)),
                format!("Bad Request ({name} header: appears more than once)")
            );
            // The same value twice is tolerated.
            assert_eq!(with(line, &format!("{line}{line}")).check(), Ok(()));
        }
        let mut req = Request::parse(OK.as_bytes()).unwrap();
        req.headers_mut().push("Content-Type", "application/sdp");
        req.headers_mut().push("c", "text/plain");
        assert_eq!(
            reason(&req),
            "Bad Request (Content-Type header: appears more than once)"
        );
        let mut req = Request::parse(OK.as_bytes()).unwrap();
        req.headers_mut().push("l", "7");
        assert_eq!(
            reason(&req),
            "Bad Request (Content-Length header: appears more than once)"
        );
    }

    #[test]
    fn policy_helpers() {
        let req = with(
            "Content-Length: 0\r\n\r\n",
            "Require: 100rel, Foo\r\nRequire: bar\r\nProxy-Require: x\r\nMax-Forwards: 0\r\n\
             c: Application/SDP ; charset=x\r\nContent-Length: 2\r\n\r\nhi",
        );
        assert_eq!(req.unsupported_require(&["100REL"]), ["Foo", "bar"]);
        assert!(req.unsupported_proxy_require(&["x"]).is_empty());
        assert_eq!(req.unsupported_uri_scheme(&["sip", "sips"]), None);
        assert_eq!(req.unsupported_uri_scheme(&["tel"]), Some("sip"));
        assert_eq!(req.unsupported_content_type(&["application/sdp"]), None);
        assert_eq!(
            req.unsupported_content_type(&["text/plain"]),
            Some("Application/SDP")
        );
        assert_eq!(
            req.unsupported_content_type(&["application"]),
            Some("Application/SDP")
        );
        // Max-Forwards appears twice with different values: check() says so.
        assert_eq!(
            reason(&req),
            "Bad Request (Max-Forwards header: appears more than once)"
        );
        let req = with("Max-Forwards: 70", "Max-Forwards: 0");
        assert!(req.max_forwards_exhausted());
        assert_eq!(req.check(), Ok(()));
        assert_eq!(req.unsupported_content_type(&[]), None);
    }

    #[test]
    fn display() {
        assert_eq!(
            Rejection::bad_request("missing To").to_string(),
            "400 Bad Request (missing To)"
        );
    }
}
