//! Requests, responses and what they share: headers and body, typed access
//! to the headers the dispatcher needs, and writing back to bytes.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use super::cseq::CSeq;
use super::error::{HeaderError, ParseError, ParseLimits};
use super::header_name::HeaderName;
use super::headers::{Field, Headers, Text};
use super::method::Method;
use super::name_addr::NameAddr;
use super::uri::Uri;
use super::via::Via;

/// Where a message's body lives.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// In the header section's source text (the common case: a UTF-8 body
    /// parsed with its headers, one allocation for both).
    Span(u32, u32),
    /// In its own buffer.
    Bytes(Rc<[u8]>),
}

/// Headers and body: what requests and responses share.
///
/// Typed accessors parse on demand and borrow from the message; they never
/// allocate for the common headers.
#[derive(Clone, Debug)]
pub struct Message {
    pub(crate) headers: Headers,
    pub(crate) body: Body,
    pub(crate) body_modified: bool,
    /// Length of the original start line + header section (blank line
    /// included) in `headers.src`, while the message is unmodified.
    pub(crate) original_head: Option<u32>,
}

impl Message {
    pub(crate) fn new_empty() -> Message {
        Message {
            headers: Headers::empty(),
            body: Body::Span(0, 0),
            body_modified: false,
            original_head: None,
        }
    }

    /// The header section.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header section, for editing. Edited lines are written anew;
    /// the others keep their bytes.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        match &self.body {
            Body::Span(a, b) => self
                .headers
                .src
                .as_bytes()
                .get(*a as usize..*b as usize)
                .unwrap_or(&[]),
            Body::Bytes(b) => b,
        }
    }

    /// Replaces the body and sets Content-Length to its length.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        let body: Vec<u8> = body.into();
        self.headers.set("Content-Length", &body.len().to_string());
        self.body = Body::Bytes(body.into());
        self.body_modified = true;
    }

    /// Whether headers or body were changed since parsing (a new message
    /// counts as modified).
    pub fn is_modified(&self) -> bool {
        self.original_head.is_none() || self.headers.modified || self.body_modified
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get(HeaderName::CallId)
    }

    /// The CSeq, parsed.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.single(HeaderName::CSeq, "CSeq")?)
    }

    /// The From header, parsed.
    pub fn from(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse("From", self.single(HeaderName::From, "From")?)
    }

    /// The To header, parsed.
    pub fn to(&self) -> Result<NameAddr<'_>, HeaderError> {
        NameAddr::parse("To", self.single(HeaderName::To, "To")?)
    }

    /// The From tag (`None` when absent or From is unusable).
    pub fn from_tag(&self) -> Option<&str> {
        self.from().ok()?.tag()
    }

    /// The To tag (`None` when absent or To is unusable).
    pub fn to_tag(&self) -> Option<&str> {
        self.to().ok()?.tag()
    }

    /// The topmost Via, parsed.
    pub fn top_via(&self) -> Result<Via<'_>, HeaderError> {
        // Parsed once per message and remembered (see `Headers`).
        self.headers
            .top_via()
            .unwrap_or(Err(HeaderError::missing("Via")))
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, HeaderError>> + '_ {
        self.headers.get_all(HeaderName::Via).map(Via::parse)
    }

    /// Max-Forwards: `Ok(None)` when absent; values above 255 are an error.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        match self.headers.get(HeaderName::MaxForwards) {
            Some(v) => max_forwards_value(v).map(Some),
            None => Ok(None),
        }
    }

    /// The declared Content-Length, if present and numeric.
    pub fn content_length(&self) -> Option<usize> {
        self.headers
            .get(HeaderName::ContentLength)?
            .trim()
            .parse()
            .ok()
    }

    /// The Route values, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.headers
            .get_all(HeaderName::Route)
            .map(|v| NameAddr::parse("Route", v))
    }

    /// The Record-Route values, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.headers
            .get_all(HeaderName::RecordRoute)
            .map(|v| NameAddr::parse("Record-Route", v))
    }

    /// The Contact values (a `*` Contact is returned as an error-free
    /// empty iterator; check the raw header for it).
    pub fn contacts(&self) -> impl Iterator<Item = Result<NameAddr<'_>, HeaderError>> + '_ {
        self.headers
            .get_all(HeaderName::Contact)
            .filter(|v| *v != "*")
            .map(|v| NameAddr::parse("Contact", v))
    }

    /// The value of a header that must appear once: several different
    /// values are an error (RFC 4475 3.3.8).
    fn single(&self, name: HeaderName, label: &'static str) -> Result<&str, HeaderError> {
        let mut lines = self.headers.lines(name);
        let first = lines.next().ok_or(HeaderError::missing(label))?;
        if lines.any(|other| other != first) {
            return Err(HeaderError {
                header: label,
                reason: "appears more than once",
            });
        }
        Ok(first)
    }

    /// The Perl Net::SIP transaction id: Call-ID and CSeq number. It is the
    /// same for a request, its ACK/CANCEL and all their responses, which is
    /// what `cancel_delivery` by id relies on.
    pub fn tid(&self) -> String {
        let number = self.cseq().map(|c| c.number).unwrap_or(0);
        let call_id = self.call_id().unwrap_or("");
        // Exactly one allocation of the final size.
        let digits = number.checked_ilog10().unwrap_or(0) as usize + 1;
        let mut id = String::with_capacity(call_id.len() + 1 + digits);
        id.push_str(call_id);
        id.push(' ');
        let _ = std::fmt::Write::write_fmt(&mut id, format_args!("{number}"));
        id
    }

    pub(crate) fn write_headers_and_body(&self, out: &mut Vec<u8>) {
        let src = &self.headers.src;
        let mut has_length = false;
        // Fields still as received that follow each other in the source
        // are copied as one run (an edited message keeps most of its
        // lines: a proxy changes one or two).
        let mut run: Option<(u32, u32)> = None;
        for f in &self.headers.fields {
            has_length |= f.id == Some(HeaderName::ContentLength);
            match (f.raw, run) {
                (Some((a, b)), Some((start, end))) if a == end => run = Some((start, b)),
                (raw, _) => {
                    if let Some(r) = run.take() {
                        write_raw(out, src, r);
                    }
                    match raw {
                        Some(r) => run = Some(r),
                        None => write_field(out, src, f),
                    }
                }
            }
        }
        if let Some(r) = run {
            write_raw(out, src, r);
        }
        if !has_length {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(super::decimal(self.body().len() as u64, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body());
    }

    /// Writes an unmodified message byte for byte; returns false when the
    /// message must be rebuilt.
    pub(crate) fn write_verbatim(&self, out: &mut Vec<u8>) -> bool {
        if self.is_modified() {
            return false;
        }
        let head = self.original_head.unwrap_or(0) as usize;
        match &self.body {
            Body::Span(a, b) if *a as usize == head => {
                out.extend_from_slice(&self.headers.src.as_bytes()[..*b as usize]);
            }
            _ => {
                out.extend_from_slice(&self.headers.src.as_bytes()[..head]);
                out.extend_from_slice(self.body());
            }
        }
        true
    }
}

/// Writes a start line and its CRLF: as received while unchanged (`line`),
/// else built by `build`.
fn write_start_line(
    out: &mut Vec<u8>,
    msg: &Message,
    line: Option<(u32, u32)>,
    build: impl FnOnce(&mut Vec<u8>),
) {
    match line {
        Some((a, b)) => out.extend_from_slice(&msg.headers.src.as_bytes()[a as usize..b as usize]),
        None => build(out),
    }
    out.extend_from_slice(b"\r\n");
}

/// Header lines as received: the source bytes `a..b`.
fn write_raw(out: &mut Vec<u8>, src: &str, (a, b): (u32, u32)) {
    let raw = &src.as_bytes()[a as usize..b as usize];
    out.extend_from_slice(raw);
    // The last line of a datagram without the blank line has no line
    // end; the header that follows it (or the blank line) needs one.
    if !raw.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
}

fn write_field(out: &mut Vec<u8>, src: &str, f: &Field) {
    if let Some(r) = f.raw {
        write_raw(out, src, r);
        return;
    }
    out.extend_from_slice(f.name.resolve(src).as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(f.value.resolve(src).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A SIP request.
///
/// ```
/// use sip_dispatch::packet::{Method, Request};
/// let mut req = Request::new(Method::Options, "sip:bob@192.0.2.4".parse().unwrap());
/// req.headers_mut().push("Call-ID", "a84b4c76e66710");
/// req.headers_mut().push("CSeq", "1 OPTIONS");
/// let bytes = req.to_bytes();
/// assert!(bytes.starts_with(b"OPTIONS sip:bob@192.0.2.4 SIP/2.0\r\nCall-ID: a84b4c76e66710\r\n"));
/// assert!(bytes.ends_with(b"Content-Length: 0\r\n\r\n"));
/// ```
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The start line as received (without line end), while unchanged.
    pub(crate) line: Option<(u32, u32)>,
    pub(crate) version: Text,
    pub(crate) msg: Message,
}

impl Request {
    /// A new request with no headers.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            line: None,
            version: Text::sip_2_0(),
            msg: Message::new_empty(),
        }
    }

    /// Parses a request (datagram rules, default limits).
    pub fn parse(bytes: &[u8]) -> Result<Request, ParseError> {
        match Packet::parse(bytes)? {
            Packet::Request(r) => Ok(r),
            Packet::Response(_) => Err(ParseError::new(super::ParseErrorKind::InvalidStartLine(
                "a response, not a request",
            ))),
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The Request-URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Replaces the Request-URI.
    pub fn set_uri(&mut self, uri: Uri) {
        self.uri = uri;
        self.line = None;
    }

    /// The SIP version as written (`SIP/2.0`; anything else deserves 505).
    pub fn version(&self) -> &str {
        self.version.resolve(&self.msg.headers.src)
    }

    /// Writes the request to bytes: byte for byte if unmodified, else
    /// every unchanged header keeps its bytes.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.line.is_some() && self.msg.write_verbatim(out) {
            return;
        }
        self.write_with_top_headers(out, &[]);
    }

    /// The request as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.msg.headers.src.len() + 64);
        self.write_to(&mut out);
        out
    }

    /// Writes the request with more header lines on top of the header
    /// section, without changing the request: how a transport adds its Via
    /// (and a missing Contact) to a queued request. Every other line keeps
    /// its bytes.
    ///
    /// ```
    /// use sip_dispatch::packet::{Method, Request};
    /// let req = Request::new(Method::Options, "sip:b@192.0.2.4".parse().unwrap());
    /// let mut out = Vec::new();
    /// req.write_with_top_headers(&mut out, &[("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;rport")]);
    /// assert!(out.starts_with(b"OPTIONS sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;rport\r\n"));
    /// ```
    pub fn write_with_top_headers(&self, out: &mut Vec<u8>, headers: &[(&str, &str)]) {
        write_start_line(out, &self.msg, self.line, |out| {
            out.extend_from_slice(self.method.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(self.uri.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(self.version().as_bytes());
        });
        for (name, value) in headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.msg.write_headers_and_body(out);
    }
}

impl Deref for Request {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

impl DerefMut for Request {
    fn deref_mut(&mut self) -> &mut Message {
        &mut self.msg
    }
}

/// A SIP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub(crate) code: u16,
    pub(crate) reason: Text,
    pub(crate) line: Option<(u32, u32)>,
    pub(crate) version: Text,
    pub(crate) msg: Message,
}

impl Response {
    /// A new response with no headers.
    pub fn new(code: u16, reason: &str) -> Response {
        Response {
            code,
            reason: Text::reason(reason),
            line: None,
            version: Text::sip_2_0(),
            msg: Message::new_empty(),
        }
    }

    /// A response to `request` as RFC 3261 8.2.6.2 builds it: the Via
    /// headers, From, To, Call-ID and CSeq copied (byte for byte), and
    /// Record-Route for responses to INVITE that can create a dialog
    /// (12.1.1). The To tag is left to the caller ([`Response::set_to_tag`]).
    ///
    /// ```
    /// use sip_dispatch::packet::{Packet, Response};
    /// let req = Packet::parse(b"OPTIONS sip:b@example.com SIP/2.0\r\n\
    ///     Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
    ///     From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n\
    ///     Call-ID: x1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n").unwrap();
    /// let mut resp = Response::for_request(req.as_request().unwrap(), 200, "OK");
    /// resp.set_to_tag("srv1");
    /// assert_eq!(resp.to_tag(), Some("srv1"));
    /// assert_eq!(resp.cseq().unwrap().number, 7);
    /// ```
    pub fn for_request(request: &Request, code: u16, reason: &str) -> Response {
        let dialog_creating = request.method == Method::Invite && (101..300).contains(&code);
        Response::for_message(&request.msg, code, reason, dialog_creating)
    }

    /// A response built from a request's headers alone (Via, From, To,
    /// Call-ID, CSeq; Record-Route when `copy_record_route`): for answering
    /// a request that only partly parsed (see
    /// [`ParseError::partial_request`]).
    pub fn for_message(
        request: &Message,
        code: u16,
        reason: &str,
        copy_record_route: bool,
    ) -> Response {
        let mut resp = Response::new(code, reason);
        let src = request.headers.src.clone();
        let h = &request.headers;
        let mut fields = super::headers::field_vec(8);
        let dialog_creating = copy_record_route;
        let mut top_via = None;
        for (i, f) in h.fields.iter().enumerate() {
            let keep = match f.id {
                Some(
                    HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq,
                ) => true,
                Some(HeaderName::RecordRoute) => dialog_creating,
                _ => false,
            };
            if keep {
                // The copied fields keep their order: the request's
                // parsed top Via serves the response as it is.
                if top_via.is_none() {
                    top_via = h.top_via_at(i).map(|c| (c, fields.len()));
                }
                fields.push(f.clone());
            }
        }
        resp.msg.headers = Headers::new(src, fields);
        resp.msg.headers.modified = true;
        if let Some((c, field)) = top_via {
            resp.msg.headers.remember_top_via(c, field);
        }
        resp
    }

    /// Adds a tag to the To header if it has none (RFC 3261 8.2.6.2).
    pub fn set_to_tag(&mut self, tag: &str) {
        let Some(to) = self.msg.headers.get(HeaderName::To) else {
            return;
        };
        if NameAddr::parse("To", to).is_ok_and(|n| n.tag().is_some()) {
            return;
        }
        // Put together in the per-thread buffer: the header's copy is the
        // one allocation.
        let value = with_scratch(|out| {
            out.extend_from_slice(to.as_bytes());
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag.as_bytes());
            Rc::<str>::from(std::str::from_utf8(out).unwrap_or(to))
        });
        self.msg.headers.set_owned(HeaderName::To, value);
    }

    /// Parses a response (datagram rules, default limits).
    pub fn parse(bytes: &[u8]) -> Result<Response, ParseError> {
        match Packet::parse(bytes)? {
            Packet::Response(r) => Ok(r),
            Packet::Request(_) => Err(ParseError::new(super::ParseErrorKind::InvalidStartLine(
                "a request, not a response",
            ))),
        }
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reason phrase (may be empty).
    pub fn reason(&self) -> &str {
        self.reason.resolve(&self.msg.headers.src)
    }

    /// Replaces the status code and reason phrase.
    pub fn set_status(&mut self, code: u16, reason: &str) {
        self.code = code;
        self.reason = Text::reason(reason);
        self.line = None;
    }

    /// The SIP version as written.
    pub fn version(&self) -> &str {
        self.version.resolve(&self.msg.headers.src)
    }

    /// Whether this is a provisional (1xx) response.
    pub fn is_provisional(&self) -> bool {
        self.code < 200
    }

    /// The method of the request this answers, from CSeq.
    pub fn method(&self) -> Option<Method> {
        self.cseq().ok().map(|c| c.method)
    }

    /// Writes the response to bytes (see [`Request::write_to`]).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.line.is_some() && self.msg.write_verbatim(out) {
            return;
        }
        write_start_line(out, &self.msg, self.line, |out| {
            out.extend_from_slice(self.version().as_bytes());
            out.push(b' ');
            out.extend_from_slice(super::decimal(u64::from(self.code), &mut [0u8; 20]));
            out.push(b' ');
            out.extend_from_slice(self.reason().as_bytes());
        });
        self.msg.write_headers_and_body(out);
    }

    /// The response as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.msg.headers.src.len() + 64);
        self.write_to(&mut out);
        out
    }

    /// The response as shared bytes, in one allocation of the exact size
    /// (written into a per-thread buffer first): what a leg sends and a
    /// server transaction keeps for retransmissions.
    pub fn to_shared_bytes(&self) -> Rc<[u8]> {
        with_scratch(|out| {
            self.write_to(out);
            Rc::from(&out[..])
        })
    }
}

/// Runs `f` with an empty per-thread byte buffer (a fresh one if the
/// buffer is in use further up the stack).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            // A huge message does not pin its size for the thread's life.
            if buf.capacity() > 256 * 1024 {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// [`with_scratch`] for text: an empty per-thread `String` (a fresh one
/// if it is in use further up the stack). Transaction ids and the Via a
/// leg writes are put together here.
pub(crate) fn with_scratch_text<R>(f: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut text) => {
            text.clear();
            f(&mut text)
        }
        Err(_) => f(&mut String::new()),
    })
}

impl Deref for Response {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

impl DerefMut for Response {
    fn deref_mut(&mut self) -> &mut Message {
        &mut self.msg
    }
}

/// A request or a response.
#[derive(Clone, Debug)]
pub enum Packet {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Packet {
    /// Parses one message from a datagram with the default limits: a
    /// missing Content-Length means the rest of the datagram, bytes after
    /// the declared body are ignored (RFC 3261 18.3).
    pub fn parse(bytes: &[u8]) -> Result<Packet, ParseError> {
        super::parse::parse(bytes, &ParseLimits::default(), super::Framing::Datagram)
    }

    /// Parses with explicit limits and framing.
    pub fn parse_with(
        bytes: &[u8],
        limits: &ParseLimits,
        framing: super::Framing,
    ) -> Result<Packet, ParseError> {
        super::parse::parse(bytes, limits, framing)
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self, Packet::Request(_))
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Packet::Request(r) => Some(r),
            Packet::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Packet::Response(r) => Some(r),
            Packet::Request(_) => None,
        }
    }

    /// Headers and body.
    pub fn message(&self) -> &Message {
        match self {
            Packet::Request(r) => &r.msg,
            Packet::Response(r) => &r.msg,
        }
    }

    /// Headers and body, for editing.
    pub fn message_mut(&mut self) -> &mut Message {
        match self {
            Packet::Request(r) => &mut r.msg,
            Packet::Response(r) => &mut r.msg,
        }
    }

    /// The Call-ID (empty when missing), as the man page's `callid`.
    pub fn callid(&self) -> &str {
        self.message().call_id().unwrap_or("")
    }

    /// The method: the request's, or the one in a response's CSeq.
    pub fn method(&self) -> Option<Method> {
        match self {
            Packet::Request(r) => Some(r.method.clone()),
            Packet::Response(r) => r.method(),
        }
    }

    /// Writes the message to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Request(r) => r.write_to(out),
            Packet::Response(r) => r.write_to(out),
        }
    }

    /// The message as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Packet::Request(r) => r.to_bytes(),
            Packet::Response(r) => r.to_bytes(),
        }
    }
}

impl Deref for Packet {
    type Target = Message;
    fn deref(&self) -> &Message {
        self.message()
    }
}

impl DerefMut for Packet {
    fn deref_mut(&mut self) -> &mut Message {
        self.message_mut()
    }
}

impl From<Request> for Packet {
    fn from(r: Request) -> Packet {
        Packet::Request(r)
    }
}

impl From<Response> for Packet {
    fn from(r: Response) -> Packet {
        Packet::Response(r)
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// A Max-Forwards value: digits, at most 255.
pub(crate) fn max_forwards_value(v: &str) -> Result<u8, HeaderError> {
    let err = |reason| HeaderError {
        header: "Max-Forwards",
        reason,
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("not a number"));
    }
    v.parse::<u8>().map_err(|_| err("larger than 255"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header section and body written field by field: what the run
    /// copying of `write_headers_and_body` must give.
    fn written_field_by_field(msg: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        let src = &msg.headers.src;
        for f in &msg.headers.fields {
            write_field(&mut out, src, f);
        }
        if !msg
            .headers
            .fields
            .iter()
            .any(|f| f.id == Some(HeaderName::ContentLength))
        {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(super::super::decimal(
                msg.body().len() as u64,
                &mut [0u8; 20],
            ));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(msg.body());
        out
    }

    #[test]
    fn runs_of_received_lines_are_written_as_each_line_would_be() {
        let inputs: [&[u8]; 4] = [
            b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              Max-Forwards: 70\r\nTo: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\n\
              Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n ;branch=z9hG4bK1\r\n\
              Subject: folded\r\n\tline\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 2\r\n\r\nab",
            b"OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nX: y",
            b"OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCall-ID: c\nX: 1\n\n",
        ];
        type Edit = fn(&mut Headers);
        let edits: [Edit; 7] = [
            |_| {},
            |h| h.set("Max-Forwards", "69"),
            |h| h.prepend("Via", "SIP/2.0/UDP p;branch=z9hG4bK2"),
            |h| h.push("Record-Route", "<sip:p;lr>"),
            |h| {
                h.remove("Call-ID");
            },
            |h| {
                h.remove("Subject");
                h.set("CSeq", "2 OPTIONS");
            },
            |h| {
                h.drop_first(HeaderName::Via);
                h.push("Subject", "new");
            },
        ];
        for input in inputs {
            for (n, edit) in edits.iter().enumerate() {
                let Ok(Packet::Request(mut req)) = Packet::parse(input) else {
                    panic!("parses");
                };
                edit(req.headers_mut());
                let mut out = Vec::new();
                req.msg.write_headers_and_body(&mut out);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&written_field_by_field(&req.msg)),
                    "edit {n} of {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn last_header_without_line_end_is_terminated_when_rewritten() {
        // A datagram may end right after its last header line (no CRLF, no
        // blank line); an edited copy must still separate headers and body.
        for input in [
            &b"OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: x1"[..],
            b"OPTIONS sip:a@example.com SIP/2.0\r\nl: 0\r\nCall-ID: x1\r",
        ] {
            let mut p = Packet::parse(input).unwrap();
            assert_eq!(p.to_bytes(), input);
            p.set_body(b"x".to_vec());
            let q = Packet::parse(&p.to_bytes()).unwrap();
            assert_eq!(q.body(), b"x");
            assert_eq!(q.content_length(), Some(1));
        }
    }
}
