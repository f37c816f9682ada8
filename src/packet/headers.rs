//! The header section: ordered header fields that keep their original
//! spelling and bytes, with case-insensitive lookup by long or compact name.

use std::cell::Cell;
use std::rc::Rc;

use super::HeaderError;
use super::header_name::{AsHeaderName, HeaderName};
use super::text::{ListIter, split_list};
use super::via::{Via, ViaSpans};

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
/// Static texts from this index on are the decimals 0..=255 (a
/// Max-Forwards a proxy decrements, a Content-Length or an Expires).
const DECIMAL_BASE: u32 = 0x2_0000;

/// The decimals 0..=255, three digits each, leading zeros included.
static DECIMALS: [u8; 768] = {
    let mut out = [0u8; 768];
    let mut n = 0;
    while n < 256 {
        out[3 * n] = b'0' + (n / 100) as u8;
        out[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
        out[3 * n + 2] = b'0' + (n % 10) as u8;
        n += 1;
    }
    out
};

/// The decimal `n` (at most 255) without leading zeros.
fn decimal_text(n: u32) -> &'static str {
    let n = n.min(255) as usize;
    let digits = if n >= 100 {
        3
    } else if n >= 10 {
        2
    } else {
        1
    };
    std::str::from_utf8(&DECIMALS[3 * n + 3 - digits..3 * n + 3]).unwrap_or("")
}

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
            Text::Span(STATIC, i) if *i >= DECIMAL_BASE => decimal_text(*i - DECIMAL_BASE),
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

    /// A copy of `value`: static when it is a decimal up to 255 written
    /// without leading zeros, else owned.
    pub(crate) fn copied(value: &str) -> Text {
        let b = value.as_bytes();
        let canonical = !b.is_empty()
            && b.len() <= 3
            && b.iter().all(u8::is_ascii_digit)
            && (b[0] != b'0' || b.len() == 1);
        if canonical {
            let n = b.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            if n <= 255 {
                return Text::Span(STATIC, DECIMAL_BASE + n);
            }
        }
        Text::Owned(value.into())
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
#[derive(Debug)]
pub struct Headers {
    pub(crate) src: Rc<str>,
    pub(crate) fields: Vec<Field>,
    pub(crate) modified: bool,
    /// The top Via as parsed the first time it was asked for; forgotten
    /// by every change to the fields.
    top_via: Cell<Option<TopVia>>,
}

impl Clone for Headers {
    /// The index comes from the thread's spare ones, like a parsed
    /// message's: a forwarding proxy keeps a copy of each request.
    fn clone(&self) -> Headers {
        let mut fields = field_vec(self.fields.len());
        fields.extend(self.fields.iter().cloned());
        Headers {
            src: self.src.clone(),
            fields,
            modified: self.modified,
            top_via: self.top_via.clone(),
        }
    }
}

thread_local! {
    /// Header indexes of dropped messages, kept for the next ones: a
    /// message parsed or a response built takes one instead of allocating.
    static SPARE_FIELDS: std::cell::RefCell<Vec<Vec<Field>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// How many spare indexes a thread keeps (about 1 KiB each).
const SPARE_FIELDS_MAX: usize = 256;
/// Indexes with more room than this are freed, not kept.
const SPARE_FIELDS_CAPACITY: usize = 64;

/// An empty header index with room for at least `capacity` fields: a
/// spare one when there is one.
pub(crate) fn field_vec(capacity: usize) -> Vec<Field> {
    let spare = SPARE_FIELDS
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match spare {
        Some(mut v) => {
            v.reserve(capacity);
            v
        }
        None => Vec::with_capacity(capacity),
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        let capacity = self.fields.capacity();
        // Under cargo-fuzz, kept indexes would look like a leak to
        // libFuzzer's per-input malloc/free balance and make it run a leak
        // check after every input.
        if cfg!(fuzzing) || capacity == 0 || capacity > SPARE_FIELDS_CAPACITY {
            return;
        }
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        // Not during thread teardown, nor re-entered.
        let _ = SPARE_FIELDS.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                if s.len() < SPARE_FIELDS_MAX {
                    s.push(fields);
                }
            }
        });
    }
}

/// Where the top Via is (field, byte range of the first list element in
/// the field's value) and where its parts are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopVia {
    field: u16,
    start: u16,
    end: u16,
    spans: ViaSpans,
}

impl Headers {
    pub(crate) fn new(src: Rc<str>, fields: Vec<Field>) -> Headers {
        Headers {
            src,
            fields,
            modified: false,
            top_via: Cell::new(None),
        }
    }

    /// Marks the fields changed: written anew, and the top Via forgotten.
    fn touch(&mut self) {
        self.modified = true;
        self.top_via.set(None);
    }

    /// Marks the fields changed by an edit that leaves every field before
    /// `from` in place and touches no Via field: the remembered top Via
    /// stays when it lies before `from`.
    fn touch_from(&mut self, from: usize) {
        self.modified = true;
        if self
            .top_via
            .get()
            .is_some_and(|c| (c.field as usize) >= from)
        {
            self.top_via.set(None);
        }
    }

    /// The top Via: the first element of the first Via line that has one
    /// (what `get(HeaderName::Via)` gives), parsed once and remembered.
    pub(crate) fn top_via(&self) -> Option<Result<Via<'_>, HeaderError>> {
        if let Some(c) = self.top_via.get() {
            let value = self
                .fields
                .get(c.field as usize)
                .filter(|f| f.id == Some(HeaderName::Via))
                .and_then(|f| {
                    f.value
                        .resolve(&self.src)
                        .get(c.start as usize..c.end as usize)
                });
            if let Some(via) = value.and_then(|v| Via::from_spans(v, &c.spans)) {
                return Some(Ok(via));
            }
        }
        let (field, text, value) = self.fields.iter().enumerate().find_map(|(i, f)| {
            if f.id != Some(HeaderName::Via) {
                return None;
            }
            let text = f.value.resolve(&self.src);
            split_list(text).next().map(|first| (i, text, first))
        })?;
        let via = match Via::parse(value) {
            Ok(via) => via,
            Err(e) => return Some(Err(e)),
        };
        let start = (value.as_ptr() as usize).checked_sub(text.as_ptr() as usize);
        let remembered = (|| {
            let start = start?;
            Some(TopVia {
                field: u16::try_from(field).ok()?,
                start: u16::try_from(start).ok()?,
                end: u16::try_from(start + value.len()).ok()?,
                spans: via.spans(),
            })
        })();
        self.top_via.set(remembered);
        Some(Ok(via))
    }

    /// Replaces the top Via value (the first element of the first Via
    /// line) with `new`, a stamped copy of it (see [`ViaSpans::stamped`]
    /// for `removed`, `received` and `rport`), carrying the remembered
    /// parse over instead of parsing `new` again. Without a remembered
    /// parse of the old value, `new` is parsed when next asked for.
    pub(crate) fn stamp_top_via(
        &mut self,
        new: Rc<str>,
        removed: Option<(usize, usize)>,
        received: Option<(usize, usize)>,
        rport: Option<(usize, usize)>,
    ) -> bool {
        let before = self.top_via.get();
        let len = new.len();
        let text = new.clone();
        let Some(field) = self.replace_first_with(HeaderName::Via, &text, move || new) else {
            return false;
        };
        // The first Via field's value now starts with `new` (the rest of
        // its list, if any, follows): the remembered parse carries over
        // when it was of the first element of that field.
        let carried = before
            .filter(|c| c.field as usize == field && c.start == 0)
            .and_then(|c| {
                Some(TopVia {
                    field: c.field,
                    start: 0,
                    end: u16::try_from(len).ok()?,
                    spans: c.spans.stamped(removed, len, received, rport)?,
                })
            });
        self.top_via.set(carried);
        true
    }

    /// The first Via line's value when it has its own shared text (a
    /// stamped Via, and the copies of that line a response made with
    /// `Response::for_request` carries): the same `Rc` in two messages
    /// means the same top Via, without comparing text.
    pub(crate) fn first_via_shared(&self) -> Option<&Rc<str>> {
        let f = self.fields.iter().find(|f| f.id == Some(HeaderName::Via))?;
        match &f.value {
            Text::Owned(rc) => Some(rc),
            Text::Span(..) => None,
        }
    }

    /// The remembered top Via, for a copy of the fields up to and
    /// including `field` kept in order (a response built from a request).
    pub(crate) fn top_via_at(&self, field: usize) -> Option<TopVia> {
        self.top_via.get().filter(|c| c.field as usize == field)
    }

    /// Takes over a top Via remembered by another message whose Via field
    /// is this message's field `field`, same text.
    pub(crate) fn remember_top_via(&self, mut c: TopVia, field: usize) {
        if let Ok(field) = u16::try_from(field) {
            c.field = field;
            self.top_via.set(Some(c));
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
        // After every field: the top Via stays what it was.
        self.touch_from(self.fields.len());
    }

    /// Appends a header line whose value is shared: no copy of the text
    /// (a value many messages carry, like a server's `Allow`).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use sip_dispatch::packet::{HeaderName, Headers};
    /// let allow: Rc<str> = Rc::from("INVITE, ACK, BYE");
    /// let mut h = Headers::empty();
    /// h.push_shared("Allow", allow.clone());
    /// assert_eq!(h.get(HeaderName::Allow), Some("INVITE"));
    /// assert_eq!(h.lines(HeaderName::Allow).next(), Some("INVITE, ACK, BYE"));
    /// ```
    pub fn push_shared(&mut self, name: &str, value: Rc<str>) {
        let field = self.new_field_with(name, Text::Owned(value));
        self.fields.push(field);
        self.touch_from(self.fields.len());
    }

    /// Inserts a header line at `index` (0 = first).
    pub fn insert(&mut self, index: usize, name: &str, value: &str) {
        let field = self.new_field(name, value);
        let index = index.min(self.fields.len());
        self.fields.insert(index, field);
        self.touch_from(index);
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
    ///
    /// The name is a string or a [`HeaderName`]; a `HeaderName` saves
    /// classifying the string on every call (a proxy sets Max-Forwards on
    /// every request it forwards).
    pub fn set<N: AsHeaderName>(&mut self, name: N, value: &str) {
        self.set_text(name, Text::copied(value));
    }

    /// [`Headers::set`] with a value already in its own allocation.
    pub(crate) fn set_owned<N: AsHeaderName>(&mut self, name: N, value: Rc<str>) {
        self.set_text(name, Text::Owned(value));
    }

    fn set_text<N: AsHeaderName>(&mut self, name: N, value: Text) {
        let known = name.known();
        let position = self
            .fields
            .iter()
            .position(|f| self.matches(f, known, name.text()));
        match position {
            Some(i) => {
                let f = &mut self.fields[i];
                f.value = value;
                f.raw = None;
                let src = self.src.clone();
                let mut pos = 0;
                self.fields.retain(|f| {
                    let keep = pos <= i || !field_matches(&src, f, known, name.text());
                    pos += 1;
                    keep
                });
                if known == Some(HeaderName::Via) {
                    self.touch();
                } else {
                    // Lines after `i` may be gone; none before it moved.
                    self.touch_from(i + 1);
                }
            }
            None => {
                let field = self.new_field_with(name.text(), value);
                self.fields.push(field);
                self.touch_from(self.fields.len());
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
            self.touch();
        }
        removed
    }

    /// Removes the first value of a header and returns it: for a list
    /// header, the first element of the first line (the rest of the line
    /// stays); otherwise the whole first line. This is how a proxy or a
    /// client pops its own Via.
    pub fn remove_first<N: AsHeaderName>(&mut self, name: N) -> Option<String> {
        self.take_first(&name, str::to_owned)
    }

    /// [`Headers::remove_first`] without returning the value (no copy of
    /// it); returns whether there was one.
    pub(crate) fn drop_first<N: AsHeaderName>(&mut self, name: N) -> bool {
        self.take_first(&name, |_| ()).is_some()
    }

    /// Removes the first value of a header and gives `keep` a look at it.
    fn take_first<N: AsHeaderName, R>(&mut self, name: &N, keep: impl Fn(&str) -> R) -> Option<R> {
        let i = self.position(name)?;
        let f = &self.fields[i];
        let value = f.value.resolve(&self.src);
        if f.id.is_some_and(HeaderName::is_list) {
            let mut items = split_list(value);
            let first = items.next().map(&keep);
            let rest: Vec<&str> = items.collect();
            if first.is_some() && !rest.is_empty() {
                let joined = rest.join(", ");
                let f = &mut self.fields[i];
                f.value = Text::Owned(joined.into());
                f.raw = None;
                self.touch();
                return first;
            }
            self.fields.remove(i);
            self.touch();
            return match first {
                Some(first) => Some(first),
                // An empty line: look at the next one.
                None => self.take_first(name, keep),
            };
        }
        let value = keep(value);
        self.fields.remove(i);
        self.touch();
        Some(value)
    }

    /// Replaces the first value of a header (for a list header, the first
    /// element of its first line; the other elements stay): how `received`
    /// and `rport` are written into the top Via. Returns false when there
    /// is no such header.
    pub fn replace_first<N: AsHeaderName>(&mut self, name: N, value: &str) -> bool {
        self.replace_first_with(name, value, || Rc::from(value))
            .is_some()
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
            .is_some()
    }

    fn replace_first_with<N: AsHeaderName>(
        &mut self,
        name: N,
        value: &str,
        whole: impl FnOnce() -> Rc<str>,
    ) -> Option<usize> {
        let i = self.position(&name)?;
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
        let is_via = f.id == Some(HeaderName::Via);
        f.value = Text::Owned(new_value);
        f.raw = None;
        if is_via {
            self.touch();
        } else {
            // Changed in place: no field moved.
            self.touch_from(self.fields.len());
        }
        Some(i)
    }

    fn new_field(&self, name: &str, value: &str) -> Field {
        self.new_field_with(name, Text::copied(value))
    }

    fn new_field_with(&self, name: &str, value: Text) -> Field {
        let id = HeaderName::parse(name);
        let name = match id {
            Some(h) if h.as_str() == name => Text::known(h),
            _ => Text::Owned(name.into()),
        };
        Field {
            name,
            value,
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
        self.touch();
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

#[cfg(test)]
mod top_via_tests {
    use super::*;
    use crate::packet::{Packet, Request, Response};

    fn request(vias: &str) -> Request {
        let text = format!(
            "OPTIONS sip:b@example.com SIP/2.0\r\n{vias}From: <sip:a@example.com>;tag=1\r\n\
             To: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        match Packet::parse(text.as_bytes()) {
            Ok(Packet::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn fresh(r: &Request) -> Via<'_> {
        Via::parse(r.headers().get(HeaderName::Via).unwrap()).unwrap()
    }

    #[test]
    fn the_remembered_top_via_is_the_parsed_one() {
        let r = request(
            "Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK1;rport;received=192.0.2.9;maddr=[::1], \
             SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n",
        );
        let first = r.top_via().unwrap();
        assert_eq!(first, fresh(&r));
        assert!(r.headers.top_via.get().is_some(), "remembered");
        // Read from the remembered spans: the same, part for part.
        assert_eq!(r.top_via().unwrap(), first);
        assert_eq!(r.top_via().unwrap().maddr(), Some("[::1]"));
        assert_eq!(r.top_via().unwrap().rport(), Some(None));
    }

    #[test]
    fn an_empty_first_line_falls_through_as_get_does() {
        let r = request("Via: ,\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3\r\n");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK3"));
        assert_eq!(r.top_via().unwrap(), fresh(&r));
    }

    #[test]
    fn every_change_to_the_headers_forgets_it() {
        let mut r = request("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK1"));
        r.headers_mut()
            .replace_first(HeaderName::Via, "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK22");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK22"));
        assert_eq!(r.top_via().unwrap().transport(), "TCP");
        r.headers_mut()
            .prepend("Via", "SIP/2.0/TLS 192.0.2.3;branch=z9hG4bK333");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK333"));
        r.headers_mut().remove_first(HeaderName::Via);
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK22"));
        r.headers_mut().insert(0, "X-Pad", "1");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK22"));
        r.headers_mut().remove(HeaderName::Via);
        assert!(r.top_via().is_err());
    }

    #[test]
    fn edits_that_leave_the_top_via_in_place_keep_it() {
        let mut r = request("Max-Forwards: 70\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n");
        let via = format!("{:?}", r.top_via().unwrap());
        let remembered = |r: &Request| r.headers.top_via.get().is_some();
        r.headers_mut().push("Allow", "OPTIONS");
        assert!(remembered(&r), "push");
        r.headers_mut().set("To", "<sip:b@example.com>;tag=t");
        assert!(remembered(&r), "set of a line after the Via");
        r.headers_mut().replace_first(HeaderName::MaxForwards, "69");
        assert!(remembered(&r), "replace_first of another header");
        r.headers_mut().insert(5, "X-After", "1");
        assert!(remembered(&r), "insert after the Via");
        assert_eq!(format!("{:?}", r.top_via().unwrap()), via);
        // Before the Via: its index moves, so it is read again.
        r.headers_mut().set("Max-Forwards", "68");
        r.headers_mut().insert(0, "X-Before", "1");
        assert!(!remembered(&r), "insert before the Via");
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(r.top_via().unwrap(), fresh(&r));
    }

    #[test]
    fn setting_a_header_that_had_lines_before_the_via_forgets_it() {
        let mut r = request("X-A: 1\r\nX-A: 2\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n");
        assert!(r.top_via().is_ok());
        r.headers_mut().set("X-A", "3");
        assert!(r.headers.top_via.get().is_none(), "the Via moved up a line");
        assert_eq!(r.top_via().unwrap(), fresh(&r));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn a_response_takes_over_its_requests_top_via() {
        let r = request(
            "Max-Forwards: 70\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;rport=5070\r\n",
        );
        let via = r.top_via().unwrap();
        let mut resp = Response::for_request(&r, 200, "OK");
        assert!(resp.headers().top_via.get().is_some(), "taken over");
        // What a UAS does to its response keeps it.
        resp.set_to_tag("abc");
        resp.headers_mut().push("Allow", "OPTIONS");
        assert!(resp.headers().top_via.get().is_some(), "kept");
        assert_eq!(resp.top_via().unwrap(), via);
        assert_eq!(
            resp.top_via().unwrap(),
            Via::parse(resp.headers().get(HeaderName::Via).unwrap()).unwrap()
        );
    }

    #[test]
    fn a_via_longer_than_64_kib_is_an_error() {
        // Ranges in a Via are 16-bit: a value up to 65535 bytes parses
        // (and is remembered), a longer one is refused, not truncated.
        let unlimited = crate::packet::ParseLimits {
            max_message_size: usize::MAX,
            max_headers: usize::MAX,
            max_line_length: usize::MAX,
        };
        let head = "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;p=";
        for (len, ok) in [(65_535, true), (65_536, false), (70_000, false)] {
            let value = format!("{head}{}", "x".repeat(len - head.len()));
            assert_eq!(value.len(), len);
            let text = format!(
                "OPTIONS sip:b@example.com SIP/2.0\r\nVia: {value}\r\n\
                 Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let Ok(Packet::Request(r)) = Packet::parse_with(
                text.as_bytes(),
                &unlimited,
                crate::packet::Framing::Datagram,
            ) else {
                panic!("parses without limits");
            };
            match r.top_via() {
                Ok(via) => {
                    assert!(ok, "{len} bytes parsed");
                    assert_eq!(via.branch(), Some("z9hG4bK1"));
                    assert!(r.headers.top_via.get().is_some(), "remembered");
                    assert_eq!(r.top_via().unwrap(), fresh(&r));
                }
                Err(e) => {
                    assert!(!ok, "{len} bytes refused: {e}");
                    assert_eq!(e.reason, "longer than 65535 bytes");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_decimals_are_static_and_read_back_exactly() {
        for n in 0..=255u32 {
            let v = n.to_string();
            let t = Text::copied(&v);
            assert!(matches!(t, Text::Span(STATIC, _)), "{v}");
            assert_eq!(t.resolve(""), v);
        }
        // Not canonical, too big or not a number: copied as written.
        for v in ["256", "007", "00", "", "1a", "-1", "1000", " 1", "٣"] {
            let t = Text::copied(v);
            assert!(matches!(t, Text::Owned(_)), "{v:?}");
            assert_eq!(t.resolve(""), v);
        }
        let mut h = Headers::empty();
        h.set("Max-Forwards", "70");
        h.set("Max-Forwards", "69");
        h.set("Expires", "3600");
        assert_eq!(h.get(HeaderName::MaxForwards), Some("69"));
        assert_eq!(h.get(HeaderName::Expires), Some("3600"));
    }

    #[test]
    fn set_by_header_name_is_set_by_its_string() {
        // Compact forms, other spellings, repeated lines, and names that
        // are absent (appended in the canonical spelling, as the string
        // gives it).
        let text = "OPTIONS sip:b@example.com SIP/2.0\r\nl: 0\r\nmax-forwards: 70\r\n\
                    Call-ID: c\r\nMAX-FORWARDS: 69\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n";
        for (name, as_str) in [
            (HeaderName::ContentLength, "Content-Length"),
            (HeaderName::ContentLength, "l"),
            (HeaderName::MaxForwards, "Max-Forwards"),
            (HeaderName::Via, "v"),
            (HeaderName::Expires, "Expires"),
            (HeaderName::To, "To"),
        ] {
            let Ok(crate::packet::Packet::Request(mut by_name)) =
                crate::packet::Packet::parse(text.as_bytes())
            else {
                panic!("parses");
            };
            let mut by_str = by_name.clone();
            by_name.headers_mut().set(name, "5");
            by_str.headers_mut().set(as_str, "5");
            assert_eq!(by_name.to_bytes(), by_str.to_bytes(), "{as_str}");
            assert_eq!(by_name.headers().get(name), Some("5"));
        }
    }
}
