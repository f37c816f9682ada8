//! Small user-agent helpers on top of the dispatcher: fresh identifiers,
//! and a [`Dialog`] that builds in-dialog requests, the ACK of a 2xx and
//! CANCEL (RFC 3261 12, 13.2.2.4, 9.1). The example programs use them; a
//! full user agent (authentication, offer/answer, re-INVITE glare) is out
//! of scope.

mod dialog;

use std::cell::Cell;

pub use dialog::{Dialog, cancel_for};

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 | 1;
    }
    u64::from_le_bytes(b) | 1
}

/// A random 64-bit number (xorshift64*, seeded from the OS).
pub fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A new Via branch with the RFC 3261 magic cookie.
///
/// ```
/// let b = sip_dispatch::ua::new_branch();
/// assert!(b.starts_with("z9hG4bK") && b.len() > 7);
/// ```
pub fn new_branch() -> String {
    format!("z9hG4bK{:016x}", random())
}

/// A new From/To tag.
pub fn new_tag() -> String {
    Tag::new().to_string()
}

/// A new From/To tag on the stack: 12 hex digits, no allocation (for a
/// tag that is copied into a header at once).
///
/// ```
/// let tag = sip_dispatch::ua::Tag::new();
/// assert_eq!(tag.as_str().len(), 12);
/// assert!(tag.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag([u8; 12]);

impl Tag {
    /// A new random tag.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Tag {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut x = random() >> 16;
        let mut digits = [b'0'; 12];
        for d in digits.iter_mut().rev() {
            *d = HEX[(x & 0xf) as usize];
            x >>= 4;
        }
        Tag(digits)
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("000000000000")
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new Call-ID, `random@host`.
pub fn new_call_id(host: &str) -> String {
    format!("{:016x}@{host}", random())
}
