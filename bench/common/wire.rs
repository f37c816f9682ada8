//! The load generator's wire format, shared by the benchmarks that speak
//! it (included with `#[path]`): the pre-serialised OPTIONS with its two
//! fixed-width id fields, and the raw 200 its built-in UAS answers with.
#![allow(dead_code)]

use std::net::SocketAddr;

/// The start of every branch the generator writes; 16 hex digits of the
/// request's id follow.
pub const BRANCH_PREFIX: &[u8] = b"z9hG4bKlg";

/// A pre-serialised request with the offsets of its two id fields (16 hex
/// digits each: the branch's and the Call-ID's).
pub struct Template {
    pub bytes: Vec<u8>,
    pub branch_at: usize,
    pub callid_at: usize,
}

/// The generator's OPTIONS from `local` to `ruri`.
pub fn template(local: SocketAddr, ruri: SocketAddr) -> Template {
    const ID: &str = "0000000000000000";
    let branch = format!("{}{ID}", std::str::from_utf8(BRANCH_PREFIX).expect("ascii"));
    let text = format!(
        "OPTIONS sip:bob@{ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:bob@{ruri}>\r\n\
         From: <sip:loadgen@{local}>;tag=4a7f1c2e\r\n\
         Call-ID: {ID}@loadgen.bench\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:loadgen@{local}>\r\n\
         Accept: application/sdp\r\n\
         User-Agent: sip-dispatch-loadgen\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let branch_at = text.find(&branch).expect("branch") + BRANCH_PREFIX.len();
    let callid_at = text.find("Call-ID: ").expect("call-id") + "Call-ID: ".len();
    Template {
        bytes: text.into_bytes(),
        branch_at,
        callid_at,
    }
}

impl Template {
    /// The request with id `id` written into both id fields.
    pub fn stamp(&mut self, id: u64) -> &[u8] {
        put_hex(&mut self.bytes[self.branch_at..], id);
        put_hex(&mut self.bytes[self.callid_at..], id);
        &self.bytes
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `v` as 16 hex digits at the start of `dst`.
pub fn put_hex(dst: &mut [u8], v: u64) {
    for (i, d) in dst[..16].iter_mut().enumerate() {
        *d = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// Where `needle` (not empty) first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..hay.len() - needle.len() + 1]
            .iter()
            .position(|&c| c == first)
        {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

fn header_is(name: &[u8], long: &[u8], short: &[u8]) -> bool {
    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
}

/// A 200 to `req` (Via, From, To with a tag, Call-ID, CSeq) into `out`,
/// no allocation once `out` has grown; false for what is not a request
/// to answer (a response, an ACK).
pub fn answer(req: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if req.starts_with(b"SIP/2.0 ") || req.starts_with(b"ACK ") {
        return false;
    }
    out.extend_from_slice(b"SIP/2.0 200 OK\r\n");
    let Some(first) = find(req, b"\r\n") else {
        return false;
    };
    let mut pos = first + 2;
    while pos < req.len() {
        let end = find(&req[pos..], b"\r\n").map_or(req.len(), |e| pos + e);
        let line = &req[pos..end];
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&c| c == b':') {
            let name = line[..colon].trim_ascii();
            if header_is(name, b"via", b"v")
                || header_is(name, b"from", b"f")
                || header_is(name, b"call-id", b"i")
                || name.eq_ignore_ascii_case(b"cseq")
            {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            } else if header_is(name, b"to", b"t") {
                out.extend_from_slice(line);
                if find(line, b";tag=").is_none() {
                    out.extend_from_slice(b";tag=lguas1");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        pos = end + 2;
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    true
}
