//! The SIP message: [`Request`], [`Response`] and [`Packet`] (either),
//! parsed from bytes and written back to bytes.
//!
//! A parsed message keeps its bytes: headers keep their order and spelling,
//! and an unmodified message is written back byte for byte. Lookup is
//! case-insensitive and knows the compact forms. Typed access ([`Via`],
//! [`CSeq`], [`NameAddr`], [`Uri`]) parses on demand and borrows.
//!
//! ```
//! use sip_dispatch::packet::{Method, Packet};
//!
//! let bytes = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//! Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
//! Max-Forwards: 70\r\n\
//! To: Bob <sip:bob@biloxi.example.com>\r\n\
//! From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//! Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
//! CSeq: 314159 INVITE\r\n\
//! Content-Length: 0\r\n\r\n";
//! let packet = Packet::parse(bytes).unwrap();
//! let req = packet.as_request().unwrap();
//! assert_eq!(req.method(), &Method::Invite);
//! assert_eq!(req.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
//! assert_eq!(req.from_tag(), Some("1928301774"));
//! assert_eq!(packet.to_bytes(), bytes.to_vec());
//! ```

mod cseq;
mod error;
#[cfg(test)]
pub(crate) mod generated;
mod header_name;
mod headers;
mod key;
mod message;
mod method;
mod name_addr;
mod parse;
mod text;
mod uri;
mod validate;
mod via;

pub use cseq::CSeq;
pub use error::{HeaderError, Limit, ParseError, ParseErrorKind, ParseLimits};
pub use header_name::{AsHeaderName, HeaderName};
pub use headers::{GetAll, Headers};
pub use key::{KeyMethod, TransactionKey};
pub use message::{Message, Packet, Request, Response};
pub(crate) use message::{with_scratch, with_scratch_text};
pub use method::Method;
pub use name_addr::NameAddr;
pub use parse::{Framing, StreamFramer, leading_line_ends};
pub use text::{Params, percent_decode, unquote};
pub(crate) use text::{decimal, find_byte, trim_lws};
pub(crate) use uri::parse_ip;
pub use uri::{Host, OtherUri, SipUri, Uri, UriError};
pub use validate::Rejection;
pub use via::{BRANCH_MAGIC_COOKIE, SentBy, Via};
