//! The header section: ordered header fields that keep their original
//! spelling and bytes, with case-insensitive lookup by long or compact name.

use std::rc::Rc;

use super::header_name::{AsHeaderName, HeaderName};
use super::text::{ListIter, split_list};

/// Where a piece of text lives: in the message's source buffer (a span),
/// or in its own allocation (edited or new text). Static texts (a known
/// header's canonical name, `SIP/2.0`) are spans with a start of
/// `u32::MAX`: that keeps `Text` at 16 bytes, and every header field at 48.
///
/// Owned text is shared (`Rc`): copying a header into a response, or a
/// request into a forwarded one, costs no allocation.
#[derive(Clone, Debug)]
pub(crate) enum Text {
    Span(u32, u32),
    Owned(Rc<str>),
}

/// The start of a span that names a static text.
const STATIC: u32 = u32::MAX;
/// The static text `SIP/2.0`.
const SIP_2_0: u32 = u32::MAX;
/// Static texts from this index on are the reason phrases of
/// [`STANDARD_REASONS`].
const REASON_BASE: u32 = 0x1_0000;

/// Reason phrases that need no allocation (RFC 3261 21, the common ones).
const STANDARD_REASONS: &[&str] = &[
    "Trying",
    "Ringing",
    "Session Progress",
    "OK",
    "Accepted",
    "Bad Request",
    "Unauthorized",
    "Forbidden",
    "Not Found",
    "Method Not Allowed",
    "Proxy Authentication Required",
    "Request Timeout",
    "Temporarily Unavailable",
    "Call/Transaction Does Not Exist",
    "Busy Here",
    "Request Terminated",
    "Server Internal Error",
    "Not Implemented",
    "Service Unavailable",
    "Decline",
];

impl Text {
    pub(crate) fn resolve<'a>(&'a self, src: &'a str) -> &'a str {
        match self {
            Text::Span(STATIC, SIP_2_0) => "SIP/2.0",
            Text::Span(STATIC, i) if *i >= REASON_BASE => STANDARD_REASONS
                .get((*i - REASON_BASE) as usize)
                .copied()
                .unwrap_or(""),
            Text::Span(STATIC, i) => HeaderName::from_index(*i)
                .map(HeaderName::as_str)
                .unwrap_or(""),
            Text::Span(a, b) => src.get(*a as usize..*b as usize).unwrap_or(""),
            Text::Owned(s) => s,
        }
    }

    /// A reason phrase: static when it is a standard one, else owned.
    pub(crate) fn reason(reason: &str) -> Text {
        match STANDARD_REASONS.iter().position(|r| *r == reason) {
            Some(i) => Text::Span(STATIC, REASON_BASE + i as u32),
            None => Text::Owned(reason.into()),
        }
    }

    /// A known header's canonical name.
    pub(crate) fn known(h: HeaderName) -> Text {
        Text::Span(STATIC, h.index())
    }

    /// `SIP/2.0`.
    pub(crate) fn sip_2_0() -> Text {
        Text::Span(STATIC, SIP_2_0)
    }
}

/// One header line (or one value of a list header that was added alone).
#[derive(Clone, Debug)]
pub(crate) struct Field {
    pub(crate) name: Text,
    pub(crate) value: Text,
    pub(crate) id: Option<HeaderName>,
    /// The original line, line end included, while the field is unchanged:
    /// written back byte for byte.
    pub(crate) raw: Option<(u32, u32)>,
}

/// The header fields of a message, in order.
///
/// Lookup is case-insensitive and understands compact forms. For headers
/// whose value is a comma-separated list (Via, Route, Contact, ...),
/// [`Headers::get`] and [`Headers::get_all`] see list elements, whether they
/// were written on one line or on several.
///
/// ```
/// use sip_dispatch::packet::{HeaderName, Packet};
/// let p = Packet::parse(b"OPTIONS sip:b@example.com SIP/2.0\r\n\
///     v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
///     Via: SIP/2.0/TCP c.example.com;branch=z9hG4bK3\r\n\
///     Content-Length: 0\r\n\r\n").unwrap();
/// let h = p.headers();
/// assert_eq!(h.get_all(HeaderName::Via).count(), 3);
/// assert_eq!(h.get("VIA"), Some("SIP/2.0/UDP a.example.com;branch=z9hG4bK1"));
/// assert_eq!(h.get("l"), Some("0"));
/// ```
#[derive(Clone, Debug)]
pub struct Headers {
    pub(crate) src: Rc<str>,
    pub(crate) fields: Vec<Field>,
    pub(crate) modified: bool,
}

impl Headers {
    pub(crate) fn new(src: Rc<str>, fields: Vec<Field>) -> Headers {
        Headers {
            src,
            fields,
            modified: false,
        }
    }

    /// An empty header section.
    pub fn empty() -> Headers {
        thread_local! {
            // One empty source per thread: a new message allocates none.
            static EMPTY: Rc<str> = Rc::from("");
        }
        Headers::new(EMPTY.with(Rc::clone), Vec::new())
    }

    fn matches(&self, field: &Field, known: Option<HeaderName>, text: &str) -> bool {
        field_matches(&self.src, field, known, text)
    }

    /// Gives back the spare capacity of the header index (a message kept
    /// for long, like a pending delivery, should not hold the parser's
    /// guess).
    pub fn shrink_to_fit(&mut self) {
        self.fields.shrink_to_fit();
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// All header lines in order, as `(name as written, value)`. Folded
    /// values are unfolded.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields
            .iter()
            .map(|f| (f.name.resolve(&self.src), f.value.resolve(&self.src)))
    }

    /// The values of every line with this name (lists not split).
    pub fn lines<N: AsHeaderName>(&self, name: N) -> impl Iterator<Item = &str> + '_ {
        let known = name.known();
        let text = unknown_text(&name);
        self.fields
            .iter()
            .filter(move |f| self.matches(f, known, &text))
            .map(|f| f.value.resolve(&self.src))
    }

    /// Number of lines with this name.
    pub fn count<N: AsHeaderName>(&self, name: N) -> usize {
        let known = name.known();
        self.fields
            .iter()
            .filter(|f| self.matches(f, known, name.text()))
            .count()
    }

    /// Whether a header with this name is present.
    pub fn contains<N: AsHeaderName>(&self, name: N) -> bool {
        self.position(&name).is_some()
    }

    fn position<N: AsHeaderName>(&self, name: &N) -> Option<usize> {
        let known = name.known();
        self.fields
            .iter()
            .position(|f| self.matches(f, known, name.text()))
    }

    /// The first value: for a list header the first element of the first
    /// line, else the whole value of the first line.
    pub fn get<N: AsHeaderName>(&self, name: N) -> Option<&str> {
        let i = self.position(&name)?;
        let f = &self.fields[i];
        let value = f.value.resolve(&self.src);
        if f.id.is_some_and(HeaderName::is_list) {
            // The first non-empty element; an all-empty line falls through
            // to the next line of that name.
            if let Some(first) = split_list(value).next() {
                return Some(first);
            }
            return self.get_all(name).next();
        }
        Some(value)
    }

    /// Every value: list headers are split into their elements, across all
    /// lines of that name; other headers give one value per line.
    pub fn get_all<N: AsHeaderName>(&self, name: N) -> GetAll<'_> {
        GetAll {
            headers: self,
            known: name.known(),
            text: unknown_text(&name),
            index: 0,
            current: None,
        }
    }

    /// Appends a header line.
    pub fn push(&mut self, name: &str, value: &str) {
        let field = self.new_field(name, value);
        self.fields.push(field);
        self.modified = true;
    }

    /// Inserts a header line at `index` (0 = first).
    pub fn insert(&mut self, index: usize, name: &str, value: &str) {
        let field = self.new_field(name, value);
        self.fields.insert(index.min(self.fields.len()), field);
        self.modified = true;
    }

    /// Inserts a header line before the first line of the same name, or at
    /// the top when there is none: how a Via or Record-Route is pushed.
    pub fn prepend(&mut self, name: &str, value: &str) {
        let index = self.position(&name).unwrap_or(0);
        self.insert(index, name, value);
    }

    /// Sets the value of the first line with this name (keeping its
    /// spelling and position) and removes the other lines of that name;
    /// appends a line when there is none.
    pub fn set(&mut self, name: &str, value: &str) {
        self.set_owned(name, value.into());
    }

    /// [`Headers::set`] with a value already in its own allocation.
    pub(crate) fn set_owned(&mut self, name: &str, value: Rc<str>) {
        match self.position(&name) {
            Some(i) => {
                let f = &mut self.fields[i];
                f.value = Text::Owned(value);
                f.raw = None;
                let (known, src) = (name.known(), self.src.clone());
                let mut pos = 0;
                self.fields.retain(|f| {
                    let keep = pos <= i || !field_matches(&src, f, known, name);
                    pos += 1;
                    keep
                });
                self.modified = true;
            }
            None => {
                let mut field = self.new_field(name, "");
                field.value = Text::Owned(value);
                self.fields.push(field);
                self.modified = true;
            }
        }
    }

    /// Removes every line with this name; returns how many were removed.
    pub fn remove<N: AsHeaderName>(&mut self, name: N) -> usize {
        let known = name.known();
        let before = self.fields.len();
        let src = self.src.clone();
        self.fields
            .retain(|f| !field_matches(&src, f, known, name.text()));
        let removed = before - self.fields.len();
        if removed > 0 {
            self.modified = true;
        }
        removed
    }

    /// Removes the first value of a header and returns it: for a list
    /// header, the first element of the first line (the rest of the line
    /// stays); otherwise the whole first line. This is how a proxy or a
    /// client pops its own Via.
    pub fn remove_first<N: AsHeaderName>(&mut self, name: N) -> Option<String> {
        let i = self.position(&name)?;
        let f = &self.fields[i];
        let value = f.value.resolve(&self.src);
        if f.id.is_some_and(HeaderName::is_list) {
            let mut items = split_list(value);
            let first = items.next().map(str::to_owned);
            let rest: Vec<&str> = items.collect();
            if first.is_some() && !rest.is_empty() {
                let joined = rest.join(", ");
                let f = &mut self.fields[i];
                f.value = Text::Owned(joined.into());
                f.raw = None;
                self.modified = true;
                return first;
            }
            self.fields.remove(i);
            self.modified = true;
            return match first {
                Some(first) => Some(first),
                // An empty line: look at the next one.
                None => self.remove_first(name),
            };
        }
        let value = value.to_owned();
        self.fields.remove(i);
        self.modified = true;
        Some(value)
    }

    /// Replaces the first value of a header (for a list header, the first
    /// element of its first line; the other elements stay): how `received`
    /// and `rport` are written into the top Via. Returns false when there
    /// is no such header.
    pub fn replace_first<N: AsHeaderName>(&mut self, name: N, value: &str) -> bool {
        self.replace_first_with(name, value, || Rc::from(value))
    }

    /// [`Headers::replace_first`] with the value already shared: no copy
    /// when the line holds only that value.
    pub(crate) fn replace_first_shared<N: AsHeaderName>(
        &mut self,
        name: N,
        value: Rc<str>,
    ) -> bool {
        let text = value.clone();
        self.replace_first_with(name, &text, move || value)
    }

    fn replace_first_with<N: AsHeaderName>(
        &mut self,
        name: N,
        value: &str,
        whole: impl FnOnce() -> Rc<str>,
    ) -> bool {
        let Some(i) = self.position(&name) else {
            return false;
        };
        let f = &self.fields[i];
        let old = f.value.resolve(&self.src);
        let mut items = split_list(old);
        let _ = items.next();
        let mut rest = items.peekable();
        let new_value: Rc<str> = if f.id.is_some_and(HeaderName::is_list) && rest.peek().is_some() {
            let mut joined = String::from(value);
            for item in rest {
                joined.push_str(", ");
                joined.push_str(item);
            }
            Rc::from(joined)
        } else {
            whole()
        };
        let f = &mut self.fields[i];
        f.value = Text::Owned(new_value);
        f.raw = None;
        self.modified = true;
        true
    }

    fn new_field(&self, name: &str, value: &str) -> Field {
        let id = HeaderName::parse(name);
        let name = match id {
            Some(h) if h.as_str() == name => Text::known(h),
            _ => Text::Owned(name.into()),
        };
        Field {
            name,
            value: Text::Owned(value.into()),
            id,
            raw: None,
        }
    }

    /// Copies the lines with this name from `other` (keeping their bytes)
    /// to the end of this header section.
    pub fn copy_from<N: AsHeaderName>(&mut self, other: &Headers, name: N) {
        let known = name.known();
        for f in other
            .fields
            .iter()
            .filter(|f| other.matches(f, known, name.text()))
        {
            let field = if Rc::ptr_eq(&self.src, &other.src) {
                f.clone()
            } else {
                Field {
                    name: match &f.name {
                        Text::Span(STATIC, i) => Text::Span(STATIC, *i),
                        t => Text::Owned(t.resolve(&other.src).into()),
                    },
                    value: Text::Owned(f.value.resolve(&other.src).into()),
                    id: f.id,
                    raw: None,
                }
            };
            self.fields.push(field);
        }
        self.modified = true;
    }
}

/// Whether a field has this name: by id for known names, by text
/// (case-insensitively) for the others.
fn field_matches(src: &str, field: &Field, known: Option<HeaderName>, text: &str) -> bool {
    match (known, field.id) {
        (Some(k), Some(id)) => k == id,
        (None, None) => field.name.resolve(src).eq_ignore_ascii_case(text),
        _ => false,
    }
}

/// The text to compare names with, needed (and allocated) only for names
/// this crate does not know.
fn unknown_text<N: AsHeaderName>(name: &N) -> String {
    if name.known().is_some() {
        String::new()
    } else {
        name.text().to_owned()
    }
}

/// Iterator returned by [`Headers::get_all`].
pub struct GetAll<'a> {
    headers: &'a Headers,
    known: Option<HeaderName>,
    text: String,
    index: usize,
    current: Option<ListIter<'a>>,
}

impl<'a> Iterator for GetAll<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(items) = &mut self.current {
                if let Some(v) = items.next() {
                    return Some(v);
                }
                self.current = None;
            }
            let headers = self.headers;
            let f = headers.fields.get(self.index)?;
            self.index += 1;
            if !headers.matches(f, self.known, &self.text) {
                continue;
            }
            let value = f.value.resolve(&headers.src);
            if f.id.is_some_and(HeaderName::is_list) {
                self.current = Some(split_list(value));
            } else {
                return Some(value);
            }
        }
    }
}
