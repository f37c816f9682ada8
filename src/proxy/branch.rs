//! The branch a stateless proxy puts into its Via (RFC 3261 16.11): the
//! same for a request, its retransmissions, its CANCEL and the ACK of a
//! non-2xx final response, and different when the request comes back
//! changed (a spiral) — unchanged means a loop (16.3 step 4).

use crate::packet::{HeaderName, Request, Via};

/// FNV-1a, 64 bit: stable across runs, processes and platforms (unlike
/// `RandomState`), which a derived branch needs. Each field is fed with its
/// length first, so that field boundaries count.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn field(&mut self, value: &str) -> &mut Fnv {
        self.bytes(&(value.len() as u64).to_le_bytes());
        self.bytes(value.as_bytes());
        self
    }

    /// `field(&value.to_ascii_lowercase())` (or uppercase), without the
    /// copy.
    fn field_cased(&mut self, value: &str, upper: bool) -> &mut Fnv {
        self.bytes(&(value.len() as u64).to_le_bytes());
        for b in value.bytes() {
            let b = if upper {
                b.to_ascii_uppercase()
            } else {
                b.to_ascii_lowercase()
            };
            self.bytes(&[b]);
        }
        self
    }

    /// `field` of a number in decimal, or of "" for none, without the
    /// string.
    fn field_number(&mut self, n: Option<u64>) -> &mut Fnv {
        let mut digits = [0u8; 20];
        let text = match n {
            Some(n) => crate::packet::decimal(n, &mut digits),
            None => &[],
        };
        self.bytes(&(text.len() as u64).to_le_bytes());
        self.bytes(text);
        self
    }
}

/// The branch this proxy puts into its Via when it forwards `req`, whose
/// topmost Via (before the proxy's own) is `top` (see the module docs).
pub(crate) fn derive_branch(req: &Request, top: &Via<'_>) -> String {
    let cseq = req.cseq().ok().map(|c| u64::from(c.number));
    let call_id = req.call_id().unwrap_or("");
    let from_tag = req.from_tag().unwrap_or("");
    let port = top.port().map(u64::from);
    let mut tx = Fnv::new();
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
    let mut route = Fnv::new();
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
    // (this runs for every request forwarded).
    let mut branch = String::with_capacity(7 + 16 + 1 + 16);
    branch.push_str("z9hG4bK");
    push_hex16(&mut branch, tx.0);
    branch.push('.');
    push_hex16(&mut branch, route.0);
    branch
}

/// Appends `v` as 16 lower-case hex digits.
fn push_hex16(out: &mut String, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(char::from(HEX[((v >> (4 * i)) & 0xf) as usize]));
    }
}

/// A To tag for the responses the proxy makes itself: deterministic too
/// (RFC 3261 8.2.7 asks that of a stateless UAS).
pub(crate) fn derived_tag(branch: &str) -> String {
    let mut h = Fnv::new();
    h.field("to-tag").field(branch);
    format!("{:012x}", h.0 >> 16)
}
