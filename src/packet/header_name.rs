//! Header names: the well-known ones, their compact forms, and which of them
//! carry comma-separated lists.

use std::fmt;

macro_rules! known_headers {
    ($( $variant:ident => $name:literal, $lower:literal, $compact:expr, $list:expr; )*) => {
        /// A header name known to this crate.
        ///
        /// Lookup by name is case-insensitive and understands the compact
        /// forms of RFC 3261 7.3.3 and later RFCs (`v` for Via, `i` for
        /// Call-ID, `o` for Event ...). Headers that are not listed here are
        /// still kept and can be looked up by their text.
        ///
        /// ```
        /// use sip_dispatch::packet::HeaderName;
        /// assert_eq!(HeaderName::parse("v"), Some(HeaderName::Via));
        /// assert_eq!(HeaderName::parse("call-id"), Some(HeaderName::CallId));
        /// assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        const ALL: &[HeaderName] = &[$(HeaderName::$variant,)*];

        impl HeaderName {
            /// The position in the list of known headers.
            pub(crate) fn index(self) -> u32 {
                self as u32
            }

            /// The known header at a position.
            pub(crate) fn from_index(i: u32) -> Option<HeaderName> {
                ALL.get(i as usize).copied()
            }

            /// The canonical (long) spelling, as written in new headers.
            pub const fn as_str(self) -> &'static str {
                match self { $(HeaderName::$variant => $name,)* }
            }

            /// The compact form, if the header has one.
            pub const fn compact(self) -> Option<char> {
                match self { $(HeaderName::$variant => $compact,)* }
            }

            /// Looks up a lower-case long name (the reference the name
            /// table is checked against).
            #[cfg(test)]
            fn from_lower(name: &[u8]) -> Option<HeaderName> {
                match name {
                    $($lower => Some(HeaderName::$variant),)*
                    _ => None,
                }
            }

            /// Whether the header's value is a comma-separated list whose
            /// elements may also be written as separate header lines
            /// (RFC 3261 7.3.1): Via, Route, Contact, Allow, ...
            pub const fn is_list(self) -> bool {
                match self { $(HeaderName::$variant => $list,)* }
            }
        }
    };
}

known_headers! {
    Accept => "Accept", b"accept", None, true;
    AcceptContact => "Accept-Contact", b"accept-contact", Some('a'), true;
    AcceptEncoding => "Accept-Encoding", b"accept-encoding", None, true;
    AcceptLanguage => "Accept-Language", b"accept-language", None, true;
    AlertInfo => "Alert-Info", b"alert-info", None, true;
    Allow => "Allow", b"allow", None, true;
    AllowEvents => "Allow-Events", b"allow-events", Some('u'), true;
    AuthenticationInfo => "Authentication-Info", b"authentication-info", None, false;
    Authorization => "Authorization", b"authorization", None, false;
    CallId => "Call-ID", b"call-id", Some('i'), false;
    CallInfo => "Call-Info", b"call-info", None, true;
    Contact => "Contact", b"contact", Some('m'), true;
    ContentDisposition => "Content-Disposition", b"content-disposition", None, false;
    ContentEncoding => "Content-Encoding", b"content-encoding", Some('e'), true;
    ContentLanguage => "Content-Language", b"content-language", None, true;
    ContentLength => "Content-Length", b"content-length", Some('l'), false;
    ContentType => "Content-Type", b"content-type", Some('c'), false;
    CSeq => "CSeq", b"cseq", None, false;
    Date => "Date", b"date", None, false;
    ErrorInfo => "Error-Info", b"error-info", None, true;
    Event => "Event", b"event", Some('o'), false;
    Expires => "Expires", b"expires", None, false;
    From => "From", b"from", Some('f'), false;
    Identity => "Identity", b"identity", Some('y'), false;
    IdentityInfo => "Identity-Info", b"identity-info", Some('n'), false;
    InReplyTo => "In-Reply-To", b"in-reply-to", None, true;
    MaxForwards => "Max-Forwards", b"max-forwards", None, false;
    MimeVersion => "MIME-Version", b"mime-version", None, false;
    MinExpires => "Min-Expires", b"min-expires", None, false;
    MinSe => "Min-SE", b"min-se", None, false;
    Organization => "Organization", b"organization", None, false;
    Path => "Path", b"path", None, true;
    Priority => "Priority", b"priority", None, false;
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate", None, false;
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization", None, false;
    ProxyRequire => "Proxy-Require", b"proxy-require", None, true;
    RAck => "RAck", b"rack", None, false;
    Reason => "Reason", b"reason", None, true;
    RecordRoute => "Record-Route", b"record-route", None, true;
    ReferTo => "Refer-To", b"refer-to", Some('r'), false;
    ReferredBy => "Referred-By", b"referred-by", Some('b'), false;
    RejectContact => "Reject-Contact", b"reject-contact", Some('j'), true;
    ReplyTo => "Reply-To", b"reply-to", None, false;
    RequestDisposition => "Request-Disposition", b"request-disposition", Some('d'), true;
    Require => "Require", b"require", None, true;
    RetryAfter => "Retry-After", b"retry-after", None, false;
    Route => "Route", b"route", None, true;
    RSeq => "RSeq", b"rseq", None, false;
    Server => "Server", b"server", None, false;
    ServiceRoute => "Service-Route", b"service-route", None, true;
    SessionExpires => "Session-Expires", b"session-expires", Some('x'), false;
    Subject => "Subject", b"subject", Some('s'), false;
    Supported => "Supported", b"supported", Some('k'), true;
    Timestamp => "Timestamp", b"timestamp", None, false;
    To => "To", b"to", Some('t'), false;
    Unsupported => "Unsupported", b"unsupported", None, true;
    UserAgent => "User-Agent", b"user-agent", None, false;
    Via => "Via", b"via", Some('v'), true;
    Warning => "Warning", b"warning", None, true;
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate", None, false;
}

impl HeaderName {
    /// Looks a name up, case-insensitively, in its long or compact form.
    /// Returns `None` for names this crate does not know (they are still
    /// usable as text).
    pub fn parse(name: &str) -> Option<HeaderName> {
        Self::from_bytes(name.as_bytes())
    }

    pub(crate) fn from_bytes(name: &[u8]) -> Option<HeaderName> {
        if name.len() == 1 {
            let c = name[0].to_ascii_lowercase();
            let slot = COMPACT_TABLE.get(usize::from(c.wrapping_sub(b'a')))?;
            return ALL.get(usize::from(*slot).checked_sub(1)?).copied();
        }
        if name.len() > MAX_NAME {
            return None;
        }
        // This runs for every header of every message: one probe of a
        // table hashed on the length and the first and last bytes, then
        // one case-insensitive compare (usually), 8 bytes at a time.
        let (&first, &last) = (name.first()?, name.last()?);
        let mut h = name_hash(name.len(), first, last);
        loop {
            let slot = NAME_TABLE[h];
            let i = usize::from(slot).checked_sub(1)?;
            if FOLDED[i].matches(name) {
                return ALL.get(i).copied();
            }
            h = (h + 1) & (NAME_TABLE_SIZE - 1);
        }
    }
}

/// The longest known name (longer ones are unknown at once).
const MAX_NAME: usize = 32;

/// A known name prepared for a case-insensitive compare 8 bytes at a time:
/// its lower-case bytes and a mask with 0x20 on its letters, little-endian
/// words, zero-padded. `x | mask == lower` word by word is then exactly
/// ASCII case-insensitive equality: on a letter, OR-ing 0x20 folds only
/// the upper-case letter onto the lower-case one; elsewhere (`-`, digits)
/// the mask is 0 and the byte must be equal.
#[derive(Clone, Copy)]
struct Folded {
    len: usize,
    lower: [u64; MAX_NAME / 8],
    mask: [u64; MAX_NAME / 8],
}

impl Folded {
    fn matches(&self, name: &[u8]) -> bool {
        if name.len() != self.len {
            return false;
        }
        let mut chunks = name.chunks_exact(8);
        let mut w = 0;
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            if u64::from_le_bytes(b) | self.mask[w] != self.lower[w] {
                return false;
            }
            w += 1;
        }
        let rest = chunks.remainder();
        if rest.is_empty() {
            return true;
        }
        // The last 1 to 7 bytes, zero-padded, shifted in one by one: a
        // copy into a buffer would be a `memcpy` call per header.
        let tail = rest
            .iter()
            .rev()
            .fold(0u64, |word, &b| (word << 8) | u64::from(b));
        tail | self.mask[w] == self.lower[w]
    }
}

/// [`Folded`] for each of [`ALL`], in the same order.
const FOLDED: [Folded; ALL.len()] = {
    let empty = Folded {
        len: 0,
        lower: [0; MAX_NAME / 8],
        mask: [0; MAX_NAME / 8],
    };
    let mut out = [empty; ALL.len()];
    let mut i = 0;
    while i < ALL.len() {
        let s = ALL[i].as_str().as_bytes();
        assert!(s.len() <= MAX_NAME, "a known name longer than MAX_NAME");
        out[i].len = s.len();
        let mut j = 0;
        while j < s.len() {
            let b = s[j];
            let (lower, mask) = if b.is_ascii_alphabetic() {
                (b | 0x20, 0x20u8)
            } else {
                (b, 0)
            };
            out[i].lower[j / 8] |= (lower as u64) << (8 * (j % 8));
            out[i].mask[j / 8] |= (mask as u64) << (8 * (j % 8));
            j += 1;
        }
        i += 1;
    }
    out
};

/// The compact forms: `COMPACT_TABLE[c - 'a']` is 0, or `i + 1` for
/// `ALL[i]` whose compact form is `c`.
const COMPACT_TABLE: [u8; 26] = {
    let mut table = [0u8; 26];
    let mut i = 0;
    while i < ALL.len() {
        if let Some(c) = ALL[i].compact() {
            table[(c as u8 - b'a') as usize] = (i + 1) as u8;
        }
        i += 1;
    }
    table
};

/// Slots of [`NAME_TABLE`]: a power of two, several times the number of
/// known names (so that a probe sequence ends at an empty slot soon).
const NAME_TABLE_SIZE: usize = 512;

/// Where a long name's probe starts. ASCII case is folded (`| 0x20`), so
/// names equal but for case start at the same slot.
const fn name_hash(len: usize, first: u8, last: u8) -> usize {
    (len.wrapping_mul(31)
        ^ ((first | 0x20) as usize).wrapping_mul(7)
        ^ (((last | 0x20) as usize) << 2))
        & (NAME_TABLE_SIZE - 1)
}

/// Open addressing over the known long names: 0 is empty, `i + 1` is
/// `ALL[i]`.
const NAME_TABLE: [u8; NAME_TABLE_SIZE] = {
    let mut table = [0u8; NAME_TABLE_SIZE];
    let mut i = 0;
    while i < ALL.len() {
        let s = ALL[i].as_str().as_bytes();
        let mut h = name_hash(s.len(), s[0], s[s.len() - 1]);
        while table[h] != 0 {
            h = (h + 1) & (NAME_TABLE_SIZE - 1);
        }
        table[h] = (i + 1) as u8;
        i += 1;
    }
    table
};

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Anything that names a header: a [`HeaderName`] or a `&str` (long or
/// compact form, any case).
pub trait AsHeaderName {
    /// The known name, if it is one.
    fn known(&self) -> Option<HeaderName>;
    /// The text to compare with unknown header names (case-insensitively).
    fn text(&self) -> &str;
}

impl AsHeaderName for HeaderName {
    fn known(&self) -> Option<HeaderName> {
        Some(*self)
    }
    fn text(&self) -> &str {
        self.as_str()
    }
}

impl AsHeaderName for &str {
    fn known(&self) -> Option<HeaderName> {
        HeaderName::parse(self)
    }
    fn text(&self) -> &str {
        self
    }
}

impl AsHeaderName for &String {
    fn known(&self) -> Option<HeaderName> {
        HeaderName::parse(self)
    }
    fn text(&self) -> &str {
        self
    }
}

impl AsHeaderName for String {
    fn known(&self) -> Option<HeaderName> {
        HeaderName::parse(self)
    }
    fn text(&self) -> &str {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the name table must agree with: lower-case, then the match on
    /// the known lower-case spellings.
    fn reference(name: &str) -> Option<HeaderName> {
        if name.len() == 1 {
            let c = name.as_bytes()[0].to_ascii_lowercase() as char;
            return ALL.iter().copied().find(|h| h.compact() == Some(c));
        }
        HeaderName::from_lower(name.to_ascii_lowercase().as_bytes())
    }

    #[test]
    fn the_name_table_finds_every_name_in_any_case_and_nothing_else() {
        for h in ALL {
            let name = h.as_str();
            for variant in [
                name.to_owned(),
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
                name.chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 2 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect(),
            ] {
                assert_eq!(HeaderName::parse(&variant), Some(*h), "{variant}");
            }
            // One byte off, shorter, longer: not that name.
            assert_ne!(HeaderName::parse(&name[1..]), Some(*h));
            assert_ne!(HeaderName::parse(&format!("{name}x")), Some(*h));
        }
        // Generated names over the letters of the known ones.
        // `\r`, `_` and DEL are the bytes a fold by OR 0x20 would turn into
        // `-` or a letter-like byte: they must not match.
        assert_eq!(HeaderName::parse("Max\rForwards"), None);
        assert_eq!(HeaderName::parse("Call\rID"), None);
        let alphabet: Vec<char> = "acdefilmnoprstuvwxy-@`AZ\r_\u{7f}".chars().collect();
        let mut generated = crate::packet::generated::Generated::new(0x1234_5678_9abc_def1);
        for _ in 0..200_000 {
            let name = generated.string(&alphabet, 21);
            assert_eq!(HeaderName::parse(&name), reference(&name), "{name:?}");
        }
    }

    #[test]
    fn compact_forms() {
        for (c, h) in [
            ("i", HeaderName::CallId),
            ("m", HeaderName::Contact),
            ("f", HeaderName::From),
            ("t", HeaderName::To),
            ("v", HeaderName::Via),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("e", HeaderName::ContentEncoding),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("I", HeaderName::CallId),
        ] {
            assert_eq!(HeaderName::parse(c), Some(h), "{c}");
        }
        assert_eq!(HeaderName::parse("z"), None);
    }

    #[test]
    fn long_forms_any_case() {
        assert_eq!(
            HeaderName::parse("MaX-fOrWaRdS"),
            Some(HeaderName::MaxForwards)
        );
        assert_eq!(HeaderName::parse("cseq"), Some(HeaderName::CSeq));
        assert_eq!(
            HeaderName::parse("www-authenticate"),
            Some(HeaderName::WwwAuthenticate)
        );
        assert_eq!(HeaderName::parse("X-Custom"), None);
    }

    #[test]
    fn compact_letters_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for h in ALL {
            if let Some(c) = h.compact() {
                assert!(seen.insert(c), "compact form {c} used twice");
            }
        }
    }
}
