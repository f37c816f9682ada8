//! Bytes to [`Packet`]: the start line, the header section, and the body
//! framed by Content-Length (RFC 3261 7, 18.3).

use std::rc::Rc;

use super::error::{Limit, ParseError, ParseErrorKind, ParseLimits};
use super::header_name::HeaderName;
use super::headers::{Field, Headers, Text};
use super::message::{Body, Message, Packet, Request, Response};
use super::method::Method;
use super::text::{find_byte, is_token_byte};
use super::uri::{Uri, UriError};

/// How the message was carried, which decides how its body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One message per datagram: without Content-Length the body is the
    /// rest of the datagram; octets after the declared body are ignored.
    Datagram,
    /// A message cut out of a stream: Content-Length is required and must
    /// match the bytes given exactly.
    Stream,
}

/// Number of CR and LF bytes at the start of `buf`: keep-alives and the
/// line ends RFC 3261 7.5 says to ignore before a start line.
pub fn leading_line_ends(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// One line of the header section, as found by the scanner.
struct Line {
    start: usize,
    /// End of the content (line end excluded).
    end: usize,
    /// Index just past the line end.
    next: usize,
}

fn next_line(bytes: &[u8], pos: usize) -> Line {
    match find_newline(&bytes[pos..]) {
        Some(i) => {
            let nl = pos + i;
            let end = if nl > pos && bytes[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            Line {
                start: pos,
                end,
                next: nl + 1,
            }
        }
        None => Line {
            start: pos,
            end: bytes.len(),
            next: bytes.len(),
        },
    }
}

/// Index of the first LF.
fn find_newline(h: &[u8]) -> Option<usize> {
    super::text::find_in(h, b'\n')
}

fn trim_wsp_end(bytes: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    end
}

/// Parses Content-Length's value; `None` if it is not a plain number.
/// Never overflows: values are saturated, then checked against the limit.
fn content_length_value(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.iter().fold(0usize, |acc, b| {
        acc.saturating_mul(10).saturating_add((b - b'0') as usize)
    }))
}

pub(crate) fn parse(
    bytes: &[u8],
    limits: &ParseLimits,
    framing: Framing,
) -> Result<Packet, ParseError> {
    let base = leading_line_ends(bytes);
    let bytes = &bytes[base..];
    if bytes.is_empty() {
        return Err(ParseError::new(ParseErrorKind::Empty));
    }
    if bytes.len() > limits.max_message_size && framing == Framing::Stream {
        return Err(ParseError::new(ParseErrorKind::LimitExceeded(
            Limit::MessageSize,
        )));
    }
    if bytes.len() > limits.max_message_size {
        return Err(ParseError::new(ParseErrorKind::LimitExceeded(
            Limit::MessageSize,
        )));
    }

    // Start line.
    let start_line = next_line(bytes, 0);
    if start_line.end - start_line.start > limits.max_line_length {
        return Err(ParseError::new(ParseErrorKind::LimitExceeded(
            Limit::LineLength,
        )));
    }

    // Header lines: spans only; the text is validated as UTF-8 once below.
    let mut fields: Vec<Field> = super::headers::field_vec(16);
    let mut folded_any = false;
    let mut bad_line: Option<usize> = None;
    let mut declared: Option<usize> = None;
    let mut framing_error: Option<ParseErrorKind> = None;
    let mut pos = start_line.next;
    let mut head_end = bytes.len();
    let mut line_no = 1;
    let mut saw_blank = false;
    // The last header line was invalid: its continuation lines are part of
    // it, not of the valid header before it.
    let mut in_bad_line = false;
    let span = |a: usize, b: usize| Text::Span(a as u32, b as u32);
    while pos < bytes.len() {
        let line = next_line(bytes, pos);
        line_no += 1;
        if line.start == line.end {
            head_end = line.next;
            saw_blank = true;
            break;
        }
        if matches!(bytes[line.start], b' ' | b'\t') {
            if in_bad_line {
                pos = line.next;
                continue;
            }
            // A folded continuation of the previous header.
            match fields.last_mut() {
                Some(Field {
                    value: Text::Span(_, ve),
                    raw: Some((rs, re)),
                    ..
                }) => {
                    *ve = (trim_wsp_end(bytes, line.start, line.end) as u32).max(*ve);
                    *re = line.next as u32;
                    folded_any = true;
                    if (*re - *rs) as usize > limits.max_line_length {
                        return Err(ParseError::new(ParseErrorKind::LimitExceeded(
                            Limit::LineLength,
                        )));
                    }
                }
                _ => bad_line = bad_line.or(Some(line_no)),
            }
            pos = line.next;
            continue;
        }
        if line.end - line.start > limits.max_line_length {
            return Err(ParseError::new(ParseErrorKind::LimitExceeded(
                Limit::LineLength,
            )));
        }
        if fields.len() >= limits.max_headers {
            return Err(ParseError::new(ParseErrorKind::LimitExceeded(
                Limit::HeaderCount,
            )));
        }
        let content = &bytes[line.start..line.end];
        let colon = content.iter().position(|&b| b == b':');
        let name_end = colon.map(|c| trim_wsp_end(bytes, line.start, line.start + c));
        match (colon, name_end) {
            (Some(c), Some(ne))
                if ne > line.start && bytes[line.start..ne].iter().all(|&b| is_token_byte(b)) =>
            {
                let mut vs = line.start + c + 1;
                while vs < line.end && matches!(bytes[vs], b' ' | b'\t') {
                    vs += 1;
                }
                let ve = trim_wsp_end(bytes, vs, line.end);
                let id = HeaderName::from_bytes(&bytes[line.start..ne]);
                fields.push(Field {
                    name: span(line.start, ne),
                    value: span(vs, ve),
                    id,
                    raw: Some((line.start as u32, line.next as u32)),
                });
                in_bad_line = false;
            }
            _ => {
                bad_line = bad_line.or(Some(line_no));
                in_bad_line = true;
            }
        }
        pos = line.next;
    }
    if !saw_blank && framing == Framing::Stream {
        return Err(ParseError::new(ParseErrorKind::Incomplete));
    }

    // Content-Length (ASCII: no need for the text yet) and the end of the
    // message.
    for f in fields
        .iter()
        .filter(|f| f.id == Some(HeaderName::ContentLength))
    {
        let Text::Span(a, b) = f.value else { continue };
        // A folded value spans line ends: they are white space here.
        let raw: Vec<u8>;
        let mut value = &bytes[a as usize..b as usize];
        if value.contains(&b'\n') {
            raw = value
                .iter()
                .copied()
                .filter(|c| !matches!(c, b'\r' | b'\n'))
                .collect();
            value = &raw;
        }
        match content_length_value(value) {
            None => framing_error = framing_error.or(Some(ParseErrorKind::InvalidContentLength)),
            Some(n) if declared.is_some_and(|d| d != n) => {
                framing_error = framing_error.or(Some(ParseErrorKind::ConflictingContentLength))
            }
            Some(n) => declared = Some(n),
        }
    }
    let available = bytes.len() - head_end;
    let body_len = match (framing_error.is_none(), declared, framing) {
        (false, _, _) => 0,
        (true, Some(n), _) if n > limits.max_message_size => {
            framing_error = Some(ParseErrorKind::LimitExceeded(Limit::MessageSize));
            0
        }
        (true, Some(n), Framing::Datagram) if n > available => {
            framing_error = Some(ParseErrorKind::BodyTruncated {
                declared: n,
                available,
            });
            0
        }
        (true, Some(n), Framing::Stream) if n != available => {
            framing_error = Some(if n > available {
                ParseErrorKind::Incomplete
            } else {
                ParseErrorKind::InvalidContentLength
            });
            0
        }
        (true, Some(n), _) => n,
        (true, None, Framing::Datagram) => available,
        (true, None, Framing::Stream) => {
            framing_error = Some(ParseErrorKind::MissingContentLength);
            0
        }
    };
    let msg_end = head_end + body_len;

    // One validation, and one allocation for headers and body when the
    // body is UTF-8 too (the usual case: SDP is text).
    let (src, body): (Rc<str>, Body) = match std::str::from_utf8(&bytes[..msg_end]) {
        Ok(text) => (Rc::from(text), Body::Span(head_end as u32, msg_end as u32)),
        Err(e) if e.valid_up_to() >= head_end => {
            let head = std::str::from_utf8(&bytes[..head_end])
                .map_err(|_| ParseError::new(ParseErrorKind::InvalidUtf8))?;
            (
                Rc::from(head),
                Body::Bytes(Rc::from(&bytes[head_end..msg_end])),
            )
        }
        Err(_) => return Err(ParseError::new(ParseErrorKind::InvalidUtf8)),
    };
    // A second handle on the text, so that `src` can move into the message.
    let text = src.clone();
    let head_text: &str = &text[..head_end];
    if folded_any {
        for f in &mut fields {
            if let Text::Span(a, b) = f.value {
                let v = &head_text[a as usize..b as usize];
                if v.contains('\n') {
                    f.value = Text::Owned(super::text::unfold(v).into());
                }
            }
        }
    }
    let msg = Message {
        headers: Headers::new(src, fields),
        body,
        body_modified: false,
        original_head: Some(head_end as u32),
    };

    let line_text = &head_text[start_line.start..start_line.end];
    let line_span = Some((start_line.start as u32, start_line.end as u32));
    if line_text.starts_with("SIP/") || line_text.starts_with("sip/") {
        if let Some(kind) = framing_error.or(bad_line.map(ParseErrorKind::InvalidHeaderLine)) {
            return Err(ParseError::new(kind));
        }
        return parse_status_line(line_text).map(|(version, code, reason)| {
            Packet::Response(Response {
                code,
                reason: Text::Span(reason.0 as u32, reason.1 as u32),
                line: line_span,
                version: Text::Span(version.0 as u32, version.1 as u32),
                msg,
            })
        });
    }

    let (method, uri_text, version) = match parse_request_line(line_text) {
        Ok(parts) => parts,
        Err(kind) => {
            // A method token followed by something: worth a 400 reply.
            let looks_like_request = line_text
                .split(' ')
                .next()
                .is_some_and(|m| Method::parse(m).is_some());
            return Err(if looks_like_request {
                ParseError::with_partial(kind, msg)
            } else {
                ParseError::new(kind)
            });
        }
    };
    if let Some(kind) = framing_error.or(bad_line.map(ParseErrorKind::InvalidHeaderLine)) {
        return Err(ParseError::with_partial(kind, msg));
    }
    // The Request-URI keeps a reference to the message's text (no copy).
    let uri_start = uri_text.as_ptr() as usize - text.as_ptr() as usize;
    let uri = match Uri::parse_shared(&text, uri_start, uri_start + uri_text.len()) {
        Ok(uri) => uri,
        Err(e) => {
            return Err(ParseError::with_partial(
                ParseErrorKind::InvalidRequestUri(e),
                msg,
            ));
        }
    };
    Ok(Packet::Request(Request {
        method,
        uri,
        line: line_span,
        version: Text::Span(version.0 as u32, version.1 as u32),
        msg,
    }))
}

fn is_sip_version(v: &str) -> bool {
    // Nearly always exactly this.
    if v == "SIP/2.0" {
        return true;
    }
    let Some(num) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &v[4..])
    else {
        return false;
    };
    let mut parts = num.split('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

type SpanPair = (usize, usize);

fn parse_status_line(line: &str) -> Result<(SpanPair, u16, SpanPair), ParseError> {
    let bad = |why| ParseError::new(ParseErrorKind::InvalidStartLine(why));
    let sp = find_byte(line, b' ').ok_or(bad("missing status code"))?;
    if !is_sip_version(&line[..sp]) {
        return Err(bad("invalid SIP version"));
    }
    let rest = &line[sp + 1..];
    let code_end = find_byte(rest, b' ').unwrap_or(rest.len());
    let code = &rest[..code_end];
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(ParseErrorKind::InvalidStatusCode));
    }
    let code: u16 = code
        .parse()
        .map_err(|_| ParseError::new(ParseErrorKind::InvalidStatusCode))?;
    if !(100..=699).contains(&code) {
        return Err(ParseError::new(ParseErrorKind::InvalidStatusCode));
    }
    let reason_start = (sp + 1 + code_end + 1).min(line.len());
    Ok(((0, sp), code, (reason_start, line.len())))
}

fn parse_request_line(line: &str) -> Result<(Method, &str, SpanPair), ParseErrorKind> {
    let bad = ParseErrorKind::InvalidStartLine;
    // `splitn(3, ' ')`, byte-wise.
    let sp1 = find_byte(line, b' ').ok_or(bad("missing Request-URI"))?;
    let method = &line[..sp1];
    let rest = &line[sp1 + 1..];
    let sp2 = find_byte(rest, b' ').ok_or(bad("missing SIP version"))?;
    let (uri, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    let method = Method::parse(method).ok_or(bad("invalid method"))?;
    if uri.is_empty() {
        return Err(bad("more than one SP between request line elements"));
    }
    if version == "SIP/2.0" {
        // The usual line: nothing more to look at.
    } else if let Some((inside, last)) = version.rsplit_once(' ') {
        if is_sip_version(last) {
            // The line ends in a version: the extra white space is before
            // it. `INVITE sip:user@example.com; lr SIP/2.0` has it inside
            // the Request-URI (RFC 4475 3.1.2.8).
            return Err(if inside.is_empty() || inside.ends_with(' ') {
                bad("more than one SP between request line elements")
            } else {
                ParseErrorKind::InvalidRequestUri(UriError("white space in the Request-URI"))
            });
        }
    }
    if !is_sip_version(version) {
        return Err(bad(if version.contains(' ') || version.ends_with('\t') {
            "white space in or after the SIP version"
        } else {
            "invalid SIP version"
        }));
    }
    let vstart = line.len() - version.len();
    Ok((method, uri, (vstart, line.len())))
}

/// Finds message boundaries in a byte stream (TCP, TLS): how long is the
/// message at the start of the buffer. Incremental: it remembers how far
/// it searched for the end of the header section, so a message arriving a
/// byte at a time costs linear time.
///
/// ```
/// use sip_dispatch::packet::{ParseLimits, StreamFramer};
/// let mut framer = StreamFramer::new(ParseLimits::default());
/// let msg = b"OPTIONS sip:a@b SIP/2.0\r\nl : 2\r\n\r\nhi";
/// assert_eq!(framer.message_len(&msg[..20]).unwrap(), None);
/// assert_eq!(framer.message_len(msg).unwrap(), Some(msg.len()));
/// ```
#[derive(Clone, Debug)]
pub struct StreamFramer {
    limits: ParseLimits,
    searched: usize,
    head_len: Option<usize>,
    body_len: usize,
}

impl StreamFramer {
    /// A framer with these limits.
    pub fn new(limits: ParseLimits) -> StreamFramer {
        StreamFramer {
            limits,
            searched: 0,
            head_len: None,
            body_len: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ParseLimits {
        &self.limits
    }

    /// Given the buffered bytes, which start at a message's first byte
    /// (strip keep-alive line ends with [`leading_line_ends`] first),
    /// returns `Some(length)` once the whole message is there, `None` while
    /// more is needed, or an error (too large, Content-Length missing or
    /// invalid) after which the stream cannot be resynchronised. After
    /// `Some`, consume the message and call [`StreamFramer::reset`].
    pub fn message_len(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        if self.head_len.is_none() {
            let from = self.searched.saturating_sub(3);
            let found = find_head_end(&buf[from..]).map(|e| from + e);
            match found {
                None => {
                    self.searched = buf.len();
                    if buf.len() > self.limits.max_message_size {
                        return Err(ParseError::new(ParseErrorKind::LimitExceeded(
                            Limit::MessageSize,
                        )));
                    }
                    return Ok(None);
                }
                Some(end) => {
                    // A header section over the limit is too large, whatever
                    // its Content-Length says (as when it arrives in pieces).
                    if end > self.limits.max_message_size {
                        return Err(ParseError::new(ParseErrorKind::LimitExceeded(
                            Limit::MessageSize,
                        )));
                    }
                    self.body_len = stream_content_length(&buf[..end])?;
                    self.head_len = Some(end);
                }
            }
        }
        let total = self.head_len.unwrap_or(0).saturating_add(self.body_len);
        if total > self.limits.max_message_size {
            return Err(ParseError::new(ParseErrorKind::LimitExceeded(
                Limit::MessageSize,
            )));
        }
        Ok((buf.len() >= total).then_some(total))
    }

    /// Forgets the current message: call after consuming it.
    pub fn reset(&mut self) {
        self.searched = 0;
        self.head_len = None;
        self.body_len = 0;
    }
}

/// Index just past the blank line that ends the header section
/// (CRLFCRLF, or LFLF from lenient peers).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Content-Length from a header section (folded lines and whitespace
/// before the colon allowed, compact `l`).
fn stream_content_length(head: &[u8]) -> Result<usize, ParseError> {
    let mut found: Option<usize> = None;
    let mut pos = next_line(head, 0).next;
    while pos < head.len() {
        let line = next_line(head, pos);
        pos = line.next;
        let content = &head[line.start..line.end];
        let Some(colon) = content.iter().position(|&b| b == b':') else {
            continue;
        };
        let name_end = trim_wsp_end(content, 0, colon);
        if HeaderName::from_bytes(&content[..name_end]) != Some(HeaderName::ContentLength) {
            continue;
        }
        // The value may continue on folded lines.
        let mut value = content[colon + 1..].to_vec();
        while pos < head.len() && matches!(head[pos], b' ' | b'\t') {
            let cont = next_line(head, pos);
            value.extend_from_slice(&head[cont.start..cont.end]);
            pos = cont.next;
        }
        let n = content_length_value(&value)
            .ok_or(ParseError::new(ParseErrorKind::InvalidContentLength))?;
        if found.is_some_and(|f| f != n) {
            return Err(ParseError::new(ParseErrorKind::ConflictingContentLength));
        }
        found = Some(n);
    }
    found.ok_or(ParseError::new(ParseErrorKind::MissingContentLength))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_newline_matches_a_plain_search() {
        let mut data = vec![b'a'; 40];
        assert_eq!(find_newline(&data), None);
        for at in 0..40 {
            data[at] = b'\n';
            assert_eq!(find_newline(&data), Some(at));
            for start in 0..=at {
                assert_eq!(find_newline(&data[start..]), Some(at - start));
            }
            data[at] = 0x8a; // a high byte with the low bits of LF
        }
        assert_eq!(find_newline(&data), None);
    }

    #[test]
    fn continuation_of_an_invalid_line_does_not_extend_the_header_before_it() {
        // Found by fuzzing: the folded " 3" belongs to the invalid line, and
        // must not drag it into CSeq (whose raw bytes a 400 copies).
        let bytes = b"OPTIONS sip:b@example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKh7\r\n\
            CSeq: 1 OPTIONS\r\nBad>Name:\r\n 3\r\nContent-Length: 0\r\n\r\n";
        let e = parse(bytes, &ParseLimits::default(), Framing::Datagram).unwrap_err();
        assert_eq!(e.kind(), &ParseErrorKind::InvalidHeaderLine(4));
        let partial = e.partial_request().expect("headers readable");
        assert_eq!(partial.headers().get("CSeq"), Some("1 OPTIONS"));
        let resp = crate::packet::Response::for_message(partial, 400, &e.reason(), false);
        let written = resp.to_bytes();
        assert!(Packet::parse(&written).is_ok(), "{written:?}");
    }

    #[test]
    fn framer_reports_an_oversize_header_section_the_same_whole_or_in_pieces() {
        // Found by fuzzing: whole, the framer read the Content-Length of a
        // header section already over the limit and reported it invalid;
        // in pieces, the size limit came first.
        let limits = ParseLimits {
            max_message_size: 64,
            ..ParseLimits::default()
        };
        let msg = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\nl: x\r\n\r\n",
            "y".repeat(80)
        );
        let size = ParseErrorKind::LimitExceeded(Limit::MessageSize);
        let mut whole = StreamFramer::new(limits);
        assert_eq!(whole.message_len(msg.as_bytes()).unwrap_err().kind(), &size);
        let mut pieces = StreamFramer::new(limits);
        let err = (1..=msg.len())
            .find_map(|n| pieces.message_len(&msg.as_bytes()[..n]).err())
            .unwrap();
        assert_eq!(err.kind(), &size);
    }

    #[test]
    fn white_space_in_the_request_uri_is_a_uri_error() {
        // RFC 4475 3.1.2.8: "This INVITE has illegal LWS within the Request-URI."
        assert_eq!(
            parse_request_line("INVITE sip:user@example.com; lr SIP/2.0").unwrap_err(),
            ParseErrorKind::InvalidRequestUri(UriError("white space in the Request-URI"))
        );
        // RFC 4475 3.1.2.10: SP after the version stays a start-line error.
        assert_eq!(
            parse_request_line("OPTIONS sip:a@example.com SIP/2.0  ").unwrap_err(),
            ParseErrorKind::InvalidStartLine("white space in or after the SIP version")
        );
        assert_eq!(
            parse_request_line("OPTIONS sip:a@example.com  SIP/2.0").unwrap_err(),
            ParseErrorKind::InvalidStartLine("more than one SP between request line elements")
        );
        assert!(parse_request_line("OPTIONS sip:a@example.com SIP/2.0").is_ok());
    }
}
