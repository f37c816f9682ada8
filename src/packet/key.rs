//! Transaction keys (RFC 3261 17.1.3 and 17.2.3, with the RFC 2543
//! fallback for branches without the magic cookie).

use std::fmt::Write;

use super::message::{Message, Packet, Request, Response};
use super::method::Method;

/// The method part of a transaction key: ACK maps to INVITE on the server
/// side (an ACK for a non-2xx final response belongs to the INVITE's
/// transaction); CANCEL keeps its own transaction.
pub type KeyMethod = Method;

/// A key that identifies a transaction, for matching requests to server
/// transactions and responses to client transactions in O(1).
///
/// ```
/// use sip_dispatch::packet::Packet;
/// let invite = Packet::parse(b"INVITE sip:b@example.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP a.example.com:5060;branch=z9hG4bKx1\r\n\
///     From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n\
///     Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
/// let ack = Packet::parse(b"ACK sip:b@example.com SIP/2.0\r\n\
///     Via: SIP/2.0/UDP A.EXAMPLE.COM:5060;branch=z9hG4bKx1\r\n\
///     From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n\
///     Call-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").unwrap();
/// // The ACK of a non-2xx final response matches the INVITE server transaction.
/// assert_eq!(invite.server_key(), ack.server_key());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    id: KeyId,
    method: KeyMethod,
}

/// Id texts up to this long are kept inside the key: a branch of the
/// usual 20-40 characters with its sent-by fits, so a server transaction
/// costs no allocation for its key.
const INLINE_ID: usize = 62;

/// A key's id text: inline when short (the usual case), else on the heap.
#[derive(Clone)]
enum KeyId {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Box<str>),
}

impl KeyId {
    fn new(id: &str) -> KeyId {
        if id.len() <= INLINE_ID {
            let mut bytes = [0u8; INLINE_ID];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            KeyId::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            KeyId::Heap(id.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyId::Heap(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        // Inline bytes are a whole `&str` copied: always UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl PartialEq for KeyId {
    fn eq(&self, other: &KeyId) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyId {}

impl std::hash::Hash for KeyId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl TransactionKey {
    /// The method part.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The same transaction identity with another method: the INVITE
    /// transaction a CANCEL names has the CANCEL's key with method INVITE
    /// (RFC 3261 9.2).
    ///
    /// ```
    /// use sip_dispatch::packet::{Method, Packet};
    /// let cancel = Packet::parse(b"CANCEL sip:b@example.com SIP/2.0\r\n\
    ///     Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKc1\r\nFrom: <sip:a@example.com>;tag=1\r\n\
    ///     To: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n").unwrap();
    /// let invite_key = cancel.server_key().unwrap().with_method(Method::Invite);
    /// assert_eq!(invite_key.method(), &Method::Invite);
    /// ```
    pub fn with_method(&self, method: Method) -> TransactionKey {
        TransactionKey {
            id: self.id.clone(),
            method,
        }
    }

    /// Whether this is the key with that id text and method (see
    /// [`Request::with_server_key`]).
    /// Whether the key's method is `method`.
    pub(crate) fn method_is(&self, method: &Method) -> bool {
        self.method == *method
    }

    pub(crate) fn is(&self, id: &str, method: &Method) -> bool {
        self.id.as_bytes() == id.as_bytes() && self.method == *method
    }

    /// A key from the id text [`Request::with_server_key`] gave.
    pub(crate) fn from_parts(id: &str, method: Method) -> TransactionKey {
        TransactionKey {
            id: KeyId::new(id),
            method,
        }
    }

    /// A client key from a branch and method: what a client transaction
    /// registers when it sends a request with that branch.
    pub fn client(branch: &str, method: Method) -> TransactionKey {
        TransactionKey {
            id: KeyId::new(branch),
            method,
        }
    }
}

impl Request {
    /// The key of the server transaction this request belongs to
    /// (RFC 3261 17.2.3): top Via branch and sent-by, and the method (ACK
    /// counts as INVITE). Without the magic cookie, the RFC 2543 rule
    /// (From tag, Call-ID, CSeq number and the top Via; the To tag is left
    /// out because an ACK carries the tag the server added, and the
    /// Request-URI because a response does not carry it). `None` when the
    /// request has no usable Via.
    pub fn server_key(&self) -> Option<TransactionKey> {
        let method = match self.method() {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        server_key(self, method)
    }

    /// [`Request::server_key`] without building it: `f` gets the key's id
    /// text (in a per-thread buffer) and its method. For lookups that
    /// need no key of their own.
    pub(crate) fn with_server_key<R>(&self, f: impl FnOnce(&str, &Method) -> R) -> Option<R> {
        let method = match self.method() {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        with_server_id(self, &method, f)
    }

    /// The key of the client transaction this request starts: its top Via
    /// branch and its method (RFC 3261 17.1.3).
    pub fn client_key(&self) -> Option<TransactionKey> {
        client_key(self, self.method().clone())
    }
}

impl Response {
    /// The key of the client transaction this response belongs to: top Via
    /// branch and CSeq method (RFC 3261 17.1.3).
    pub fn client_key(&self) -> Option<TransactionKey> {
        client_key(self, self.cseq().ok()?.method)
    }

    /// The key of the server transaction that sends this response: the
    /// same as [`Request::server_key`] of the request it answers (the Via
    /// headers are copied into responses).
    pub fn server_key(&self) -> Option<TransactionKey> {
        server_key(self, self.cseq().ok()?.method)
    }

    /// [`Response::server_key`] without building it (see
    /// [`Request::with_server_key`]).
    pub(crate) fn with_server_key<R>(&self, f: impl FnOnce(&str, &Method) -> R) -> Option<R> {
        let method = self.cseq().ok()?.method;
        with_server_id(self, &method, f)
    }
}

fn server_key(msg: &Message, method: Method) -> Option<TransactionKey> {
    let id = with_server_id(msg, &method, |id, _| KeyId::new(id))?;
    Some(TransactionKey { id, method })
}

/// Writes the server transaction id of `msg` into the per-thread buffer
/// and hands it to `f`; `None` without a usable top Via.
fn with_server_id<R>(
    msg: &Message,
    method: &Method,
    f: impl FnOnce(&str, &Method) -> R,
) -> Option<R> {
    let via = msg.top_via().ok()?;
    Some(super::with_scratch_text(|id| {
        write_server_id(msg, &via, id);
        f(id, method)
    }))
}

fn write_server_id(msg: &Message, via: &super::via::Via<'_>, id: &mut String) {
    if via.has_rfc3261_branch() {
        id.push_str(via.branch().unwrap_or(""));
        id.push('\0');
        // The host lower-cased (ASCII only, as `char::to_ascii_lowercase`
        // would), in one copy.
        let start = id.len();
        id.push_str(via.host());
        if let Some(host) = id.get_mut(start..) {
            host.make_ascii_lowercase();
        }
        if let Some(p) = via.port() {
            id.push(':');
            let mut digits = [0u8; 20];
            id.push_str(
                std::str::from_utf8(super::decimal(u64::from(p), &mut digits)).unwrap_or(""),
            );
        }
    } else {
        let _ = write!(
            id,
            "2543\0{}\0{}\0{}\0{}",
            msg.from_tag().unwrap_or(""),
            msg.call_id().unwrap_or(""),
            msg.cseq().map(|c| c.number).unwrap_or(0),
            msg.headers().get(super::HeaderName::Via).unwrap_or(""),
        );
    }
}

fn client_key(msg: &Message, method: Method) -> Option<TransactionKey> {
    let via = msg.top_via().ok()?;
    let branch = via.branch()?;
    Some(TransactionKey {
        id: KeyId::new(branch),
        method,
    })
}

impl Packet {
    /// The server transaction key of a request (see
    /// [`Request::server_key`]); `None` for responses.
    pub fn server_key(&self) -> Option<TransactionKey> {
        self.as_request()?.server_key()
    }

    /// The client transaction key: of the request, or of the request a
    /// response answers.
    pub fn client_key(&self) -> Option<TransactionKey> {
        match self {
            Packet::Request(r) => r.client_key(),
            Packet::Response(r) => r.client_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(branch: &str) -> Request {
        let text = format!(
            "OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com:5060;branch={branch}\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Request::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn short_and_long_ids_compare_and_hash_by_their_text() {
        use std::collections::HashSet;
        let short = "z9hG4bK776asdhds";
        let long = format!("z9hG4bK{}", "x".repeat(80));
        let mut seen = HashSet::new();
        for branch in [short, long.as_str()] {
            let key = request(branch).server_key().unwrap();
            let again = request(branch).server_key().unwrap();
            assert_eq!(key, again);
            let id = format!("{branch}\0a.example.com:5060");
            assert!(key.is(&id, &Method::Options));
            assert!(!key.is(&id, &Method::Invite));
            assert!(!key.is(&id[1..], &Method::Options));
            assert!(seen.insert(key.clone()));
            assert!(!seen.insert(again.clone()));
            assert_eq!(format!("{key:?}"), format!("{:?}", again));
        }
        // Inline up to INLINE_ID bytes, on the heap beyond: same behaviour.
        assert!(matches!(
            KeyId::new(&"a".repeat(INLINE_ID)),
            KeyId::Inline { .. }
        ));
        assert!(matches!(
            KeyId::new(&"a".repeat(INLINE_ID + 1)),
            KeyId::Heap(_)
        ));
        assert_eq!(KeyId::new("é€").as_str(), "é€");
    }
}
