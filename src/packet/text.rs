//! Small lexical helpers shared by the header parsers: tokens, linear white
//! space, comma lists and `;name=value` parameters (RFC 3261 25.1).

use std::borrow::Cow;

/// `token` characters of RFC 3261 25.1.
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN[b as usize]
}

const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Whether the whole string is a non-empty token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Linear white space: SP, HTAB, and the CR/LF of a fold.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The first position of the ASCII byte `b` in `s`. The strings searched
/// in a header are short, where a plain loop beats `str::find`'s general
/// char searcher; an ASCII byte is always at a char boundary.
#[inline]
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    debug_assert!(b.is_ascii());
    find_in(s.as_bytes(), b)
}

/// The first position of `needle` in `bytes`: a plain loop on short
/// slices, eight bytes at a time on longer ones.
#[inline]
pub(crate) fn find_in(bytes: &[u8], needle: u8) -> Option<usize> {
    if bytes.len() < 16 {
        return bytes.iter().position(|&c| c == needle);
    }
    let pattern = LO * u64::from(needle);
    find_words(bytes, 0, |w| zero_bytes(w ^ pattern), |c| c == needle)
}

/// Each byte 0x01: `LO * b` has `b` in every byte.
pub(crate) const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero when some byte of `x` is zero (the classic "has zero byte"
/// test); the lowest set bit marks the first zero byte exactly (bits
/// above it may be borrow artefacts).
pub(crate) fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// Non-zero when some byte of `x` is below `n` (at most 0x80); as in
/// [`zero_bytes`], the lowest set bit marks the first such byte exactly.
pub(crate) fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

/// The first byte of `bytes` that cannot be in a URI: a control
/// character or space (up to 0x20), DEL, `<`, `>` or `"`. Bytes from 0x80
/// up pass (UTF-8 is tolerated). Eight bytes at a time; `is_uri_byte`
/// decides the last few and says the same.
pub(crate) fn find_non_uri_byte(bytes: &[u8], is_uri_byte: impl Fn(u8) -> bool) -> Option<usize> {
    let (del, lt, gt, quote) = (
        LO * 0x7f,
        LO * u64::from(b'<'),
        LO * u64::from(b'>'),
        LO * u64::from(b'"'),
    );
    find_words(
        bytes,
        0,
        |w| {
            bytes_below(w, 0x21)
                | zero_bytes(w ^ del)
                | zero_bytes(w ^ lt)
                | zero_bytes(w ^ gt)
                | zero_bytes(w ^ quote)
        },
        |b| !is_uri_byte(b),
    )
}

/// The first index at or after `from` whose byte `wanted` accepts, eight
/// bytes at a time: `flags` maps a little-endian word to a mask whose
/// lowest set bit lies in the first wanted byte (0 when there is none);
/// the last bytes are tested one by one.
pub(crate) fn find_words(
    bytes: &[u8],
    from: usize,
    flags: impl Fn(u64) -> u64,
    wanted: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = from;
    let mut chunks = bytes.get(from..)?.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let found = flags(u64::from_le_bytes(word));
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&x| wanted(x))
        .map(|p| p + i)
}

/// Trims linear white space on both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    // Byte-wise: white space is ASCII, so both ends are char boundaries.
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or("")
}

/// Splits a header value at the commas that separate list elements,
/// ignoring commas inside quoted strings and inside `<...>`. Empty elements
/// (`a,,b`) are skipped; elements are trimmed.
pub(crate) fn split_list(value: &str) -> ListIter<'_> {
    ListIter { rest: value }
}

/// Iterator returned by [`split_list`].
#[derive(Clone, Debug)]
pub(crate) struct ListIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = find_unquoted(self.rest, b',').unwrap_or(self.rest.len());
            let item = trim_lws(&self.rest[..end]);
            self.rest = self.rest.get(end + 1..).unwrap_or("");
            if !item.is_empty() {
                return Some(item);
            }
        }
    }
}

/// Finds the first `needle` outside quoted strings and angle brackets.
pub(crate) fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        // Outside quotes and brackets, only three bytes matter: jump to
        // the next of them eight bytes at a time (this runs over every
        // list header and parameter of every message).
        i = find3(bytes, i, needle, b'"', b'<')?;
        match bytes[i] {
            b if b == needle => return Some(i),
            b'"' => {
                // A quoted string: to its closing quote, past escapes.
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return None,
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            _ => {
                // `<...>`: to the closing bracket.
                i = i + 1 + bytes.get(i + 1..)?.iter().position(|&b| b == b'>')?;
                i += 1;
            }
        }
    }
}

/// The first index at or after `from` whose byte is `a`, `b` or `c`.
pub(crate) fn find3(bytes: &[u8], from: usize, a: u8, b: u8, c: u8) -> Option<usize> {
    let (ra, rb, rc) = (LO * u64::from(a), LO * u64::from(b), LO * u64::from(c));
    // A set bit implies a zero byte at or below it, and the lowest zero
    // byte of each sets its own bit: the lowest bit of the three is the
    // first byte equal to any of them.
    find_words(
        bytes,
        from,
        |w| zero_bytes(w ^ ra) | zero_bytes(w ^ rb) | zero_bytes(w ^ rc),
        |x| x == a || x == b || x == c,
    )
}

/// Iterates `;name[=value]` parameters. `s` starts at the first `;` (or is
/// empty). Names and values are trimmed of LWS; a quoted value keeps its
/// quotes (use [`unquote`]). Empty parameters (`;;`) are skipped.
pub(crate) fn params(s: &str) -> Params<'_> {
    Params { rest: s }
}

/// `;name[=value]` parameters of a header value or URI, in order.
#[derive(Clone, Debug)]
pub struct Params<'a> {
    rest: &'a str,
}

impl<'a> Params<'a> {
    /// Finds a parameter by name (case-insensitive). `Some(None)` for a
    /// parameter without a value (`;lr`).
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.clone()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = trim_lws(self.rest);
            let s = s.strip_prefix(';').unwrap_or(s);
            if s.is_empty() {
                self.rest = "";
                return None;
            }
            let end = find_unquoted(s, b';').unwrap_or(s.len());
            let item = &s[..end];
            self.rest = &s[end..];
            let (name, value) = match find_byte(item, b'=') {
                Some(eq) => (trim_lws(&item[..eq]), Some(trim_lws(&item[eq + 1..]))),
                None => (trim_lws(item), None),
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

/// Removes the quotes of a quoted string and its backslash escapes.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether a quoted string starting at `s[0] == '"'` is terminated; returns
/// the index just past the closing quote.
pub(crate) fn quoted_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Decodes `%XX` escapes. Invalid escapes are kept as written (RFC 4475
/// 3.1.1.5: a `%` that is not an escape is taken literally by tolerant
/// parsers). Returns bytes because an escape may produce any octet (`%00`).
pub fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    if !s.contains('%') {
        return Cow::Borrowed(s.as_bytes());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Replaces the CRLFs of folded lines so that the value reads as one line
/// (RFC 3261 7.3.1: a fold is equivalent to a single space).
pub(crate) fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('\n') {
        let line = rest[..pos].strip_suffix('\r').unwrap_or(&rest[..pos]);
        out.push_str(line);
        rest = &rest[pos + 1..];
        // The whitespace that starts the continuation line stays: it is the
        // single LWS that the fold stands for.
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition `find_unquoted` must agree with.
    fn find_unquoted_reference(s: &str, needle: u8) -> Option<usize> {
        let bytes = s.as_bytes();
        let (mut in_quotes, mut in_angle) = (false, false);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if in_quotes {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_quotes = false,
                    _ => {}
                }
            } else if in_angle {
                in_angle = b != b'>';
            } else if b == needle {
                return Some(i);
            } else if b == b'"' {
                in_quotes = true;
            } else if b == b'<' {
                in_angle = true;
            }
            i += 1;
        }
        None
    }

    #[test]
    fn find_byte_agrees_with_position() {
        // Lengths on both sides of the 16-byte switch and the 8-byte
        // steps; bytes with the high bit set (UTF-8) next to the needle.
        let alphabet = ['a', ';', '=', ':', 'é', '\u{7f}', '\u{80}'];
        let mut generated = crate::packet::generated::Generated::new(0x5eed_f1d1);
        for _ in 0..200_000 {
            let text = generated.string(&alphabet, 41);
            for needle in [b';', b'=', b':', 0x7f] {
                assert_eq!(
                    find_byte(&text, needle),
                    text.bytes().position(|b| b == needle),
                    "{text:?} {needle}"
                );
            }
        }
    }

    #[test]
    fn find_unquoted_agrees_with_the_byte_at_a_time_definition() {
        // Every string over a small alphabet of the bytes that matter, at
        // lengths around the 8-byte steps, from a fixed seed.
        let alphabet = ['a', ',', ';', '"', '<', '>', '\\', 'x', 'é'];
        let mut generated = crate::packet::generated::Generated::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let text = generated.string(&alphabet, 29);
            for needle in [b',', b';', b'?'] {
                assert_eq!(
                    find_unquoted(&text, needle),
                    find_unquoted_reference(&text, needle),
                    "{text:?} {}",
                    needle as char
                );
            }
        }
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        let v = r#""Doe, John" <sip:a@b;x=1,2>;q=0.5 , <sip:c@d>,,  sip:e@f"#;
        let items: Vec<_> = split_list(v).collect();
        assert_eq!(
            items,
            vec![
                r#""Doe, John" <sip:a@b;x=1,2>;q=0.5"#,
                "<sip:c@d>",
                "sip:e@f"
            ]
        );
    }

    #[test]
    fn escaped_quote_inside_quotes() {
        let v = r#""a \", b" <sip:x@y>, <sip:z@w>"#;
        assert_eq!(split_list(v).count(), 2);
    }

    #[test]
    fn params_with_lws() {
        let p: Vec<_> = params(" ;   tag    = 1918181833n ;lr; ;x=\"a;b\"").collect();
        assert_eq!(
            p,
            vec![
                ("tag", Some("1918181833n")),
                ("lr", None),
                ("x", Some("\"a;b\""))
            ]
        );
        assert_eq!(params(";Branch=z9").get("branch"), Some(Some("z9")));
        assert_eq!(params(";lr").get("lr"), Some(None));
        assert_eq!(params(";lr").get("x"), None);
    }

    #[test]
    fn unquote_escapes() {
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
        assert_eq!(unquote("plain"), "plain");
    }

    #[test]
    fn percent() {
        assert_eq!(&*percent_decode("%75se%72"), b"user");
        assert_eq!(&*percent_decode("null-%00-null"), b"null-\0-null");
        assert_eq!(&*percent_decode("100%"), b"100%");
        assert_eq!(&*percent_decode("%zz%4"), b"%zz%4");
    }

    #[test]
    fn unfolding() {
        assert_eq!(
            unfold("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2"),
            "SIP  /   2.0 /UDP    192.0.2.2"
        );
    }
}

/// `n` in decimal, written into `buf` without allocating (numbers that
/// go into messages on every send: status codes, Content-Length, ports).
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod decimal_tests {
    #[test]
    fn decimal_matches_to_string() {
        for n in [
            0u64,
            7,
            10,
            99,
            100,
            5060,
            65_535,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = [0u8; 20];
            assert_eq!(super::decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }
}
