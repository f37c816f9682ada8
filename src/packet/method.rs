//! SIP request methods.

use std::fmt;

use super::text::is_token;

/// A SIP method. Methods are case-sensitive (RFC 3261 7.1): `invite` is an
/// extension method, not INVITE.
///
/// ```
/// use sip_dispatch::packet::Method;
/// assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
/// assert_eq!(Method::parse("PUBLISH").unwrap().as_str(), "PUBLISH");
/// assert_eq!(Method::parse("X-FOO").unwrap().as_str(), "X-FOO");
/// assert_eq!(Method::parse("BAD METHOD"), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// OPTIONS (RFC 3261)
    Options,
    /// REGISTER (RFC 3261)
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// UPDATE (RFC 3311)
    Update,
    /// Any other token.
    Extension(Box<str>),
}

impl Method {
    /// Parses a method token; `None` if it is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            other if is_token(other) => Method::Extension(other.into()),
            _ => return None,
        })
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Method {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Method {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
