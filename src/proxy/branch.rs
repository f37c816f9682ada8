//! The branch a stateless proxy puts into its Via (RFC 3261 16.11): the
//! same for a request, its retransmissions, its CANCEL and the ACK of a
//! non-2xx final response, and different when the request comes back
//! changed (a spiral) — unchanged means a loop (16.3 step 4).

use std::rc::Rc;

use crate::packet::{HeaderName, Request, Via};

/// A 64-bit hash over length-prefixed fields, eight bytes per step (an
/// FNV-style byte loop cost 4 cycles per byte: a Call-ID, URI and tags are
/// a few hundred bytes per forwarded request), with a final avalanche so
/// that every input bit reaches every output bit. Stable across runs,
/// processes and platforms (unlike `RandomState`), which a derived branch
/// needs; each field is fed with its length first, so that field
/// boundaries count.
struct FieldHash(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl FieldHash {
    fn new() -> FieldHash {
        FieldHash(0xcbf2_9ce4_8422_2325)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(MIX);
    }

    /// `bytes` in 8-byte little-endian words, the last one zero-padded
    /// (the length prefix of each field keeps padding unambiguous).
    fn bytes_mapped(&mut self, bytes: &[u8], map: impl Fn(u8) -> u8) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            for (d, &b) in w.iter_mut().zip(c) {
                *d = map(b);
            }
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The same little-endian word, built by shifts: a byte array
            // here became a copy call per field.
            let w = rest
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, &b)| w | u64::from(map(b)) << (8 * i));
            self.word(w);
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.bytes_mapped(bytes, |b| b);
    }

    fn field(&mut self, value: &str) -> &mut FieldHash {
        self.word(value.len() as u64);
        self.bytes(value.as_bytes());
        self
    }

    fn field_cased(&mut self, value: &str, upper: bool) -> &mut FieldHash {
        self.word(value.len() as u64);
        if upper {
            self.bytes_mapped(value.as_bytes(), |b| b.to_ascii_uppercase());
        } else {
            self.bytes_mapped(value.as_bytes(), |b| b.to_ascii_lowercase());
        }
        self
    }

    /// The hash, avalanched (splitmix64's finaliser).
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn field_number(&mut self, n: Option<u64>) -> &mut FieldHash {
        let mut digits = [0u8; 20];
        let text = match n {
            Some(n) => crate::packet::decimal(n, &mut digits),
            None => &[],
        };
        self.word(text.len() as u64);
        self.bytes(text);
        self
    }
}

/// The branch this proxy puts into its Via when it forwards `req`, whose
/// topmost Via (before the proxy's own) is `top` (see the module docs).
pub(crate) fn derive_branch(req: &Request, top: &Via<'_>) -> Rc<str> {
    let cseq = req.cseq().ok().map(|c| u64::from(c.number));
    let call_id = req.call_id().unwrap_or("");
    let from_tag = req.from_tag().unwrap_or("");
    let port = top.port().map(u64::from);
    let mut tx = FieldHash::new();
    if top.has_rfc3261_branch() {
        tx.field("3261")
            .field(top.branch().unwrap_or(""))
            .field_cased(top.host(), false)
            .field_number(port);
    } else {
        // RFC 2543: no usable branch. The top Via counts by the parts that
        // a retransmission repeats (received/rport are the leg's stamps).
        tx.field("2543")
            .field(req.to_tag().unwrap_or(""))
            .field(from_tag)
            .field(call_id)
            .field_number(cseq)
            .field(req.uri().as_str())
            .field_cased(top.transport(), true)
            .field_cased(top.host(), false)
            .field_number(port)
            .field(top.branch().unwrap_or(""));
    }
    // What decides where the request goes: unchanged when it comes back in
    // a loop, changed in a spiral. The same for a request, its CANCEL and
    // the ACK of a non-2xx (RFC 3261 9.1, 17.1.1.3): no To tag, no method.
    let mut route = FieldHash::new();
    route.field(req.uri().as_str());
    for r in req.headers().get_all(HeaderName::Route) {
        route.field(r.trim());
    }
    route.field("");
    for p in req.headers().get_all(HeaderName::ProxyRequire) {
        route.field(p.trim());
    }
    route.field(call_id).field(from_tag).field_number(cseq);
    // `z9hG4bK{tx:016x}.{route:016x}`, written without the formatter
    // (this runs for every request forwarded), in one allocation.
    let mut text = [0u8; BRANCH_LEN];
    text[..7].copy_from_slice(b"z9hG4bK");
    hex16(&mut text[7..23], tx.finish());
    text[23] = b'.';
    hex16(&mut text[24..], route.finish());
    Rc::from(std::str::from_utf8(&text).unwrap_or("z9hG4bK"))
}

/// `z9hG4bK`, 16 hex digits, `.`, 16 hex digits.
const BRANCH_LEN: usize = 7 + 16 + 1 + 16;

/// Writes `v` as 16 lower-case hex digits.
fn hex16(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, d) in out.iter_mut().take(16).enumerate() {
        *d = HEX[((v >> (4 * (15 - i))) & 0xf) as usize];
    }
}

/// A To tag for the responses the proxy makes itself: deterministic too
/// (RFC 3261 8.2.7 asks that of a stateless UAS).
pub(crate) fn derived_tag(branch: &str) -> String {
    let mut h = FieldHash::new();
    h.field("to-tag").field(branch);
    format!("{:012x}", h.finish() >> 16)
}

#[cfg(test)]
mod tests {
    use super::FieldHash;

    fn hash(fields: &[&str]) -> u64 {
        let mut h = FieldHash::new();
        for f in fields {
            h.field(f);
        }
        h.finish()
    }

    #[test]
    fn field_hash_separates_fields_and_sees_every_byte() {
        // Field boundaries and zero padding are not ambiguous.
        assert_ne!(hash(&["ab", ""]), hash(&["a", "b"]));
        assert_ne!(hash(&["a"]), hash(&["a\0"]));
        assert_ne!(hash(&["12345678"]), hash(&["12345678", ""]));
        // Any one byte changed, at any place of a long value, changes it.
        let base = "a84b4c76e66710@pc33.atlanta.com;tag=1928301774".to_owned();
        let h0 = hash(&[&base]);
        for i in 0..base.len() {
            let mut b = base.clone().into_bytes();
            b[i] ^= 1;
            let changed = String::from_utf8(b).unwrap();
            assert_ne!(hash(&[&changed]), h0, "byte {i}");
        }
        assert_eq!(hash(&[&base]), h0);
        // One input bit flips about half of the output bits.
        let flipped = (hash(&["x"]) ^ hash(&["y"])).count_ones();
        assert!((16..=48).contains(&flipped), "{flipped}");
    }

    #[test]
    fn a_field_is_its_length_then_zero_padded_little_endian_words() {
        let text = "0123456789abc";
        let mut by_words = FieldHash::new();
        by_words.word(13);
        by_words.word(u64::from_le_bytes(*b"01234567"));
        by_words.word(u64::from_le_bytes(*b"89abc\0\0\0"));
        assert_eq!(hash(&[text]), by_words.finish());
    }

    #[test]
    fn cased_fields_ignore_case() {
        let mut a = FieldHash::new();
        a.field_cased("PC33.Atlanta.COM", false);
        let mut b = FieldHash::new();
        b.field_cased("pc33.atlanta.com", false);
        assert_eq!(a.finish(), b.finish());
        let mut c = FieldHash::new();
        c.field("pc33.atlanta.com");
        assert_eq!(a.finish(), c.finish());
    }
}
