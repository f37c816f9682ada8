//! Parse errors, limits, and header errors.

use std::fmt;

use super::message::Message;
use super::uri::UriError;

/// Limits the parser enforces. A violation is a [`ParseErrorKind::LimitExceeded`]
/// naming the limit; nothing is allocated in proportion to a number the
/// peer wrote.
///
/// ```
/// use sip_dispatch::packet::ParseLimits;
/// let strict = ParseLimits { max_message_size: 4096, ..ParseLimits::default() };
/// assert_eq!(strict.max_headers, 256);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest message (start line, headers and body), in bytes. Default
    /// 65,535: the largest UDP payload, and the stream limit RFC 3261 18.3
    /// implementations commonly use.
    pub max_message_size: usize,
    /// Most header lines. Default 256.
    pub max_headers: usize,
    /// Longest line (a folded header counts as one line), in bytes.
    /// Default 8,192.
    pub max_line_length: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_message_size: 65_535,
            max_headers: 256,
            max_line_length: 8_192,
        }
    }
}

/// Which limit a message broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`ParseLimits::max_message_size`]
    MessageSize,
    /// [`ParseLimits::max_headers`]
    HeaderCount,
    /// [`ParseLimits::max_line_length`]
    LineLength,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::MessageSize => "message size",
            Limit::HeaderCount => "header count",
            Limit::LineLength => "line length",
        })
    }
}

/// What was wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No bytes, or only line ends.
    Empty,
    /// A stream holds only the beginning of a message so far.
    Incomplete,
    /// The first line is neither a request line nor a status line.
    InvalidStartLine(&'static str),
    /// The Request-URI does not parse.
    InvalidRequestUri(UriError),
    /// The status code is not three digits.
    InvalidStatusCode,
    /// A header line without a colon or with an invalid name (line number,
    /// counting the start line as 1).
    InvalidHeaderLine(usize),
    /// The header section is not valid UTF-8.
    InvalidUtf8,
    /// A limit of [`ParseLimits`] was exceeded.
    LimitExceeded(Limit),
    /// Content-Length is not a number (negative, junk, or too large).
    InvalidContentLength,
    /// Several Content-Length headers with different values.
    ConflictingContentLength,
    /// A message on a stream without Content-Length (RFC 3261 18.3).
    MissingContentLength,
    /// Content-Length says more than the datagram holds.
    BodyTruncated {
        /// Content-Length value.
        declared: usize,
        /// Bytes after the header section.
        available: usize,
    },
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::Empty => f.write_str("empty message"),
            ParseErrorKind::Incomplete => f.write_str("incomplete message"),
            ParseErrorKind::InvalidStartLine(why) => write!(f, "invalid start line: {why}"),
            ParseErrorKind::InvalidRequestUri(e) => write!(f, "invalid Request-URI: {}", e.0),
            ParseErrorKind::InvalidStatusCode => f.write_str("invalid status code"),
            ParseErrorKind::InvalidHeaderLine(n) => write!(f, "invalid header line {n}"),
            ParseErrorKind::InvalidUtf8 => f.write_str("header section is not valid UTF-8"),
            ParseErrorKind::LimitExceeded(l) => write!(f, "{l} limit exceeded"),
            ParseErrorKind::InvalidContentLength => f.write_str("invalid Content-Length"),
            ParseErrorKind::ConflictingContentLength => {
                f.write_str("conflicting Content-Length headers")
            }
            ParseErrorKind::MissingContentLength => {
                f.write_str("missing Content-Length on a stream")
            }
            ParseErrorKind::BodyTruncated {
                declared,
                available,
            } => {
                write!(
                    f,
                    "Content-Length {declared} larger than the {available} body bytes received"
                )
            }
        }
    }
}

/// A message that could not be parsed.
///
/// When the start line was a request line and the header section could be
/// read (only the body framing, the Request-URI or a header line was
/// wrong), [`ParseError::partial_request`] gives those headers so that the
/// receiver can answer 400 to the Via (RFC 3261 21.4.1).
#[derive(Clone, Debug)]
pub struct ParseError {
    kind: ParseErrorKind,
    partial: Option<Box<Message>>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind) -> ParseError {
        ParseError {
            kind,
            partial: None,
        }
    }

    pub(crate) fn with_partial(kind: ParseErrorKind, partial: Message) -> ParseError {
        ParseError {
            kind,
            partial: Some(Box::new(partial)),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// The headers of a request that failed to parse, when they could be
    /// read: enough to build a 400 response.
    pub fn partial_request(&self) -> Option<&Message> {
        self.partial.as_deref()
    }

    /// A short text for the reason phrase of a 400 response.
    pub fn reason(&self) -> String {
        format!("Bad Request ({})", self.kind)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for ParseError {}

impl PartialEq for ParseError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

/// A header that is missing or does not parse, for typed access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderError {
    /// The header's canonical name.
    pub header: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl HeaderError {
    pub(crate) fn missing(header: &'static str) -> HeaderError {
        HeaderError {
            header,
            reason: "missing",
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} header: {}", self.header, self.reason)
    }
}

impl std::error::Error for HeaderError {}
