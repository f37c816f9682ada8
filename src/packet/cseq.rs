//! The CSeq header (RFC 3261 20.16).

use super::HeaderError;
use super::method::Method;
use super::text::{is_lws, trim_lws};

/// A parsed CSeq: sequence number and method.
///
/// ```
/// use sip_dispatch::packet::{CSeq, Method};
/// let c = CSeq::parse("0009\r\n  INVITE").unwrap();
/// assert_eq!(c.number, 9);
/// assert_eq!(c.method, Method::Invite);
/// assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number, below 2**31 (RFC 3261 8.1.1.5).
    pub number: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses `number LWS method`.
    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        let err = |reason| HeaderError {
            header: "CSeq",
            reason,
        };
        let value = trim_lws(value);
        let split = value
            .bytes()
            .position(is_lws)
            .ok_or(err("missing method"))?;
        let number = &value[..split];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("sequence number is not a number"));
        }
        let number: u32 = number
            .parse()
            .map_err(|_| err("sequence number too large"))?;
        if number >= 1 << 31 {
            return Err(err("sequence number too large"));
        }
        let method = Method::parse(trim_lws(&value[split..])).ok_or(err("invalid method"))?;
        Ok(CSeq { number, method })
    }
}

impl std::fmt::Display for CSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.number, self.method)
    }
}
