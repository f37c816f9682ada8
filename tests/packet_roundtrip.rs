//! Property tests for the SIP message model: generated requests and
//! responses are written back byte for byte, edits touch only the edited
//! header, `set_body` keeps Content-Length right, and no input (arbitrary
//! bytes, or valid messages with mutations) panics the parser, the typed
//! accessors, `check()`, the transaction keys or the stream framer.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use sip_dispatch::packet::{
    Framing, HeaderName, Host, Message, NameAddr, Packet, ParseLimits, Request, Response,
    StreamFramer, Uri, Via,
};

// ----------------------------------------------------------------------------
// Generators

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,9}"
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "INVITE",
            "ACK",
            "BYE",
            "CANCEL",
            "OPTIONS",
            "REGISTER",
            "PRACK",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
            "INFO",
            "REFER",
            "MESSAGE",
            "UPDATE",
        ])
        .prop_map(str::to_owned),
        token(),
        Just("!interesting-Method0123456789_*+`.%indeed'~".to_owned()),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,6}){0,2}",
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
        Just("[::ffff:192.0.2.2]".to_owned()),
        Just("[2001:db8:::192.0.2.1]".to_owned()),
    ]
}

fn port() -> impl Strategy<Value = Option<u16>> {
    option::of(1u16..)
}

fn params() -> impl Strategy<Value = String> {
    vec((token(), option::of(prop_oneof![token(), quoted()])), 0..3).prop_map(|ps| {
        ps.into_iter()
            .map(|(n, v)| match v {
                Some(v) => format!(";{n}={v}"),
                None => format!(";{n}"),
            })
            .collect()
    })
}

fn uri_params() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            Just(";lr".to_owned()),
            Just(";transport=tcp".to_owned()),
            Just(";user=phone".to_owned()),
            "[a-z]{1,6}(=[a-z0-9%]{1,6})?".prop_map(|p| format!(";{p}")),
        ],
        0..3,
    )
    .prop_map(|v| v.concat())
}

fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (
            prop::bool::ANY,
            option::of("[a-z0-9_.!~*'()&=+$,;?/-]{1,8}(%[0-9A-F]{2})?"),
            host(),
            port(),
            uri_params(),
        )
            .prop_map(|(secure, user, host, port, params)| {
                let mut s = String::from(if secure { "sips:" } else { "sip:" });
                if let Some(u) = user {
                    s.push_str(&u);
                    s.push('@');
                }
                s.push_str(&host);
                if let Some(p) = port {
                    s.push_str(&format!(":{p}"));
                }
                s.push_str(&params);
                s
            }),
        1 => Just("tel:+1-201-555-0123".to_owned()),
        1 => Just("nobodyKnowsThisScheme:totallyopaquecontent".to_owned()),
    ]
}

/// A quoted string with escapes and the characters that are special
/// outside quotes.
fn quoted() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            "[ -!#-\\[\\]-~]{1,4}",
            Just("\\\"".to_owned()),
            Just("\\\\".to_owned()),
            Just(",".to_owned()),
            Just(";".to_owned()),
            Just("<x>".to_owned()),
            Just("é大".to_owned()),
        ],
        0..4,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

fn name_addr() -> impl Strategy<Value = String> {
    (
        option::of(prop_oneof![
            quoted(),
            "[A-Za-z][A-Za-z.]{0,6}( [A-Za-z]{1,6})?"
        ]),
        uri(),
        params(),
        prop::bool::ANY,
    )
        .prop_map(|(display, uri, params, spaced)| match display {
            Some(d) if spaced => format!("{d} <{uri}>{params}"),
            Some(d) => format!("{d}<{uri}>{params}"),
            None => format!("<{uri}>{params}"),
        })
}

fn via() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["UDP", "TCP", "TLS", "SCTP", "WS"]),
        host(),
        port(),
        token(),
        prop::bool::ANY,
    )
        .prop_map(|(t, h, p, b, rport)| {
            let mut s = format!("SIP/2.0/{t} {h}");
            if let Some(p) = p {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(&format!(";branch=z9hG4bK{b}"));
            if rport {
                s.push_str(";rport");
            }
            s
        })
}

/// Free text for unknown headers: tokens, quoted strings, commas,
/// parameters, UTF-8.
fn free_text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            token(),
            quoted(),
            Just(", ".to_owned()),
            Just(";".to_owned()),
            Just(" = ".to_owned()),
            Just(" ".to_owned()),
            Just("<sip:a@b;lr>".to_owned()),
            "[ -~]{1,6}",
            Just("работающий".to_owned()),
        ],
        0..6,
    )
    .prop_map(|v| v.concat())
}

/// One header: the name as written and the value (on one line).
fn header() -> impl Strategy<Value = (String, String)> {
    fn names(list: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(list).prop_map(str::to_owned)
    }
    prop_oneof![
        (names(&["Via", "v", "VIA", "via"]), vec(via(), 1..3)).prop_map(|(n, v)| (n, v.join(", "))),
        (names(&["From", "f", "To", "t", "fRoM"]), name_addr()),
        (names(&["Call-ID", "i", "call-id"]), (token(), host()))
            .prop_map(|(n, (a, h))| (n, format!("{a}@{h}"))),
        (names(&["CSeq", "cseq"]), (0u32..1 << 31, method()))
            .prop_map(|(n, (c, m))| (n, format!("{c} {m}"))),
        (names(&["Max-Forwards"]), 0u32..300).prop_map(|(n, v)| (n, v.to_string())),
        (names(&["Contact", "m"]), vec(name_addr(), 1..3)).prop_map(|(n, v)| (n, v.join(" , "))),
        (names(&["Route", "Record-Route"]), vec(uri(), 1..3)).prop_map(|(n, v)| {
            let v: Vec<_> = v.iter().map(|u| format!("<{u};lr>")).collect();
            (n, v.join(","))
        }),
        (names(&["Subject", "s", "Organization"]), free_text()),
        (
            names(&["Require", "Supported", "k", "Proxy-Require"]),
            vec(token(), 0..3)
        )
            .prop_map(|(n, v)| (n, v.join(", "))),
        (
            names(&["Content-Type", "c"]),
            names(&[
                "application/sdp",
                "text/plain;charset=utf-8",
                "multipart/mixed;boundary=\"x y\""
            ])
        ),
        (
            "X-[A-Za-z0-9!%*_+`'~.-]{1,10}|NewFangledHeader",
            free_text()
        ),
    ]
}

/// How a header line is written: spacing around the colon, and folds.
#[derive(Clone, Debug)]
struct Layout {
    before_colon: &'static str,
    after_colon: &'static str,
    /// Fold at the n-th space of the value (if there is one), with this
    /// white space starting the continuation line.
    fold: Option<(usize, &'static str)>,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop::sample::select(vec!["", "", "", " ", "\t "]),
        prop::sample::select(vec![" ", " ", "", "   "]),
        option::of((0usize..4, prop::sample::select(vec![" ", "\t", "   "]))),
    )
        .prop_map(|(before_colon, after_colon, fold)| Layout {
            before_colon,
            after_colon,
            fold,
        })
}

fn write_header(name: &str, value: &str, layout: &Layout) -> String {
    let mut value = value.to_owned();
    if let Some((n, ws)) = layout.fold {
        if let Some((i, _)) = value.match_indices(' ').nth(n) {
            value.replace_range(i..i + 1, &format!("\r\n{ws}"));
        }
    }
    format!(
        "{name}{}:{}{value}\r\n",
        layout.before_colon, layout.after_colon
    )
}

#[derive(Clone, Debug)]
struct Generated {
    bytes: Vec<u8>,
    body: Vec<u8>,
}

fn start_line() -> impl Strategy<Value = String> {
    prop_oneof![
        (method(), uri()).prop_map(|(m, u)| format!("{m} {u} SIP/2.0")),
        (
            100u16..700,
            prop_oneof![
                Just(String::new()),
                "[A-Za-z ]{1,12}",
                Just("Ringing".to_owned()),
                Just("= 2**3 * 5**2 но сто".to_owned())
            ]
        )
            .prop_map(|(c, r)| format!("SIP/2.0 {c} {r}")),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        "[ -~]{0,40}(\r\n[ -~]{0,40}){0,3}".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..64),
    ]
}

/// A message: start line, headers, an optional Content-Length (at some
/// position, long or compact), a body.
fn message() -> impl Strategy<Value = Generated> {
    (
        start_line(),
        vec((header(), layout()), 0..10),
        option::of((
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["Content-Length", "l", "content-length"]),
        )),
        body(),
    )
        .prop_map(|(start, headers, length, body)| {
            let mut lines: Vec<String> = headers
                .iter()
                .map(|((n, v), l)| write_header(n, v, l))
                .collect();
            if let Some((at, name)) = length {
                let at = at.index(lines.len() + 1);
                lines.insert(at, format!("{name}: {}\r\n", body.len()));
            }
            let mut bytes = format!("{start}\r\n{}\r\n", lines.concat()).into_bytes();
            bytes.extend_from_slice(&body);
            Generated { bytes, body }
        })
}

// ----------------------------------------------------------------------------
// Model helpers

/// Whether two header names name the same header (compact forms and case).
fn same_name(a: &str, b: &str) -> bool {
    match (HeaderName::parse(a), HeaderName::parse(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn lines(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

fn has_length(lines: &[(String, String)]) -> bool {
    lines.iter().any(|(n, _)| same_name(n, "Content-Length"))
}

#[derive(Clone, Debug)]
enum Edit {
    Set(String, String),
    Push(String, String),
    RemoveFirst(String),
}

fn edit() -> impl Strategy<Value = (Option<prop::sample::Index>, Edit)> {
    let name = prop::sample::select(vec![
        "Via",
        "v",
        "From",
        "To",
        "t",
        "Call-ID",
        "i",
        "CSeq",
        "Subject",
        "Contact",
        "m",
        "Route",
        "Require",
        "Max-Forwards",
        "X-Edit",
        "x-foo",
        "NewFangledHeader",
    ])
    .prop_map(str::to_owned);
    let value = "[!-~]([ -~]{0,16}[!-~])?";
    (
        // Some: edit a header the message has (by index) instead of `name`.
        option::of(any::<prop::sample::Index>()),
        prop_oneof![
            (name.clone(), value).prop_map(|(n, v)| Edit::Set(n, v)),
            (name.clone(), value).prop_map(|(n, v)| Edit::Push(n, v)),
            name.prop_map(Edit::RemoveFirst),
        ],
    )
}

// ----------------------------------------------------------------------------
// No panic, whatever the input

fn exercise_uri(uri: &Uri) {
    let _ = (uri.scheme(), uri.as_str(), uri.to_string());
    if let Some(u) = uri.as_sip() {
        let _ = (
            u.user(),
            u.user_unescaped(),
            u.password(),
            u.host_str(),
            u.host(),
        );
        let _ = (
            u.ip(),
            u.port(),
            u.transport(),
            u.maddr(),
            u.is_loose_route(),
        );
        let _ = (u.headers(), u.params().count(), u.param("lr"));
        assert!(u.equivalent(u), "{} not equivalent to itself", u.as_str());
        let _ = u.with_param("transport", Some("tcp")).without_param("lr");
        let _ = u.without_headers();
    }
}

fn exercise_name_addr(n: Result<NameAddr<'_>, impl std::fmt::Debug>) {
    if let Ok(n) = n {
        let _ = (n.display_name(), n.uri_str(), n.tag(), n.is_bracketed());
        let _ = n.params().collect::<Vec<_>>();
        if let Ok(u) = n.uri() {
            exercise_uri(&u);
        }
    }
}

fn exercise_via(v: Result<Via<'_>, impl std::fmt::Debug>) {
    if let Ok(v) = v {
        let _ = (
            v.protocol(),
            v.version(),
            v.transport(),
            v.host(),
            v.ip(),
            v.port(),
        );
        let _ = (v.branch(), v.has_rfc3261_branch(), v.received(), v.rport());
        let _ = (
            v.maddr(),
            v.ttl(),
            v.sent_by().to_string(),
            v.params().count(),
        );
        if let Some(r) = v.received() {
            let _ = Host::parse(r);
        }
    }
}

fn exercise_message(m: &Message) {
    for (name, value) in m.headers().iter() {
        let _ = HeaderName::parse(name);
        let _ = Uri::parse(value);
        let _ = Host::parse(value);
    }
    m.vias().for_each(exercise_via);
    let _ = m.top_via();
    exercise_name_addr(m.from());
    exercise_name_addr(m.to());
    m.contacts().for_each(exercise_name_addr);
    m.routes().for_each(exercise_name_addr);
    m.record_routes().for_each(exercise_name_addr);
    let _ = (m.cseq(), m.call_id(), m.from_tag(), m.to_tag(), m.tid());
    let _ = (
        m.max_forwards(),
        m.content_length(),
        m.body(),
        m.is_modified(),
    );
    for name in ["Require", "Accept", "x-unknown"] {
        let _ = m.headers().get_all(name).count();
    }
}

fn exercise_packet(p: &Packet) {
    exercise_message(p.message());
    let _ = (p.to_bytes(), p.to_string(), p.server_key(), p.client_key());
    let _ = (p.method(), p.callid(), p.is_request());
    match p {
        Packet::Request(r) => {
            let _ = (r.check(), r.version(), r.method());
            exercise_uri(r.uri());
            let _ = r.unsupported_require(&["100rel"]);
            let _ = r.unsupported_proxy_require(&[]);
            let _ = r.unsupported_uri_scheme(&["sip", "sips"]);
            let _ = r.unsupported_content_type(&["application/sdp"]);
            let _ = r.max_forwards_exhausted();
            let mut resp = Response::for_request(r, 400, "Bad Request");
            resp.set_to_tag("t1");
            let _ = resp.to_bytes();
            // What was parsed, edited, must parse again.
            let mut edited = r.clone();
            edited.set_body(b"x".to_vec());
            let bytes = edited.to_bytes();
            let again = Request::parse(&bytes);
            assert!(again.is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
        }
        Packet::Response(r) => {
            let _ = (
                r.code(),
                r.reason(),
                r.version(),
                r.method(),
                r.client_key(),
            );
            let mut r = r.clone();
            r.set_to_tag("x");
            let _ = r.to_bytes();
        }
    }
}

fn exercise(bytes: &[u8]) {
    let small = ParseLimits {
        max_message_size: 300,
        max_headers: 5,
        max_line_length: 80,
    };
    for limits in [ParseLimits::default(), small] {
        for framing in [Framing::Datagram, Framing::Stream] {
            match Packet::parse_with(bytes, &limits, framing) {
                Ok(p) => exercise_packet(&p),
                Err(e) => {
                    let _ = (e.reason(), e.to_string());
                    if let Some(m) = e.partial_request() {
                        exercise_message(m);
                    }
                }
            }
        }
        // The framer, on the whole buffer and fed a few bytes at a time.
        let whole = StreamFramer::new(limits).message_len(bytes);
        let mut framer = StreamFramer::new(limits);
        let mut end = 0;
        loop {
            match framer.message_len(&bytes[..end]) {
                Ok(Some(n)) => {
                    assert!(n <= end);
                    assert_eq!(whole.as_ref().ok(), Some(&Some(n)));
                    break;
                }
                Ok(None) if end < bytes.len() => end = (end + 7).min(bytes.len()),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// A mutation of a valid message.
#[derive(Clone, Debug)]
enum Mutation {
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        prop::sample::select(b":;,\"<>[]\r\n \t%\\@=?/0\x00\xff\xc3-".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), interesting.clone())
            .prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<prop::sample::Index>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Replace(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => {
                let i = i.index(bytes.len() + 1);
                bytes.insert(i, *b);
            }
            Mutation::Delete(i, n) => {
                let i = i.index(bytes.len());
                bytes.drain(i..(i + n).min(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

// ----------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// parse(bytes).to_bytes() == bytes.
    #[test]
    fn written_back_byte_for_byte(m in message()) {
        let p = Packet::parse(&m.bytes)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&m.bytes)));
        prop_assert_eq!(p.body(), &m.body[..]);
        prop_assert!(!p.is_modified());
        prop_assert_eq!(p.to_bytes(), m.bytes.clone());
        // On a stream too, when it carries its length.
        if has_length(&lines(p.message())) {
            let mut framer = StreamFramer::new(ParseLimits::default());
            prop_assert_eq!(framer.message_len(&m.bytes).unwrap(), Some(m.bytes.len()));
            let s = Packet::parse_with(&m.bytes, &ParseLimits::default(), Framing::Stream).unwrap();
            prop_assert_eq!(s.to_bytes(), m.bytes.clone());
        }
    }

    /// One header edited: the others keep their order and text, the edited
    /// one reads as edited, the body is kept (and gets a Content-Length if
    /// it had none).
    #[test]
    fn an_edit_touches_only_the_edited_header(m in message(), (pick, edit) in edit()) {
        let mut p = Packet::parse(&m.bytes).unwrap();
        let before = lines(p.message());
        // Edit a header the message has, rather than a fixed name.
        let edit = match (pick, edit) {
            (Some(i), e) if !before.is_empty() => {
                let name = before[i.index(before.len())].0.clone();
                match e {
                    Edit::Set(_, v) => Edit::Set(name, v),
                    Edit::Push(_, v) => Edit::Push(name, v),
                    Edit::RemoveFirst(_) => Edit::RemoveFirst(name),
                }
            }
            (_, e) => e,
        };
        let name = match &edit {
            Edit::Set(n, _) | Edit::Push(n, _) | Edit::RemoveFirst(n) => n.clone(),
        };
        prop_assume!(!same_name(&name, "Content-Length"));
        let values_before: Vec<String> =
            p.headers().get_all(name.as_str()).map(str::to_owned).collect();
        let mut removed = None;
        match &edit {
            Edit::Set(n, v) => p.headers_mut().set(n, v),
            Edit::Push(n, v) => p.headers_mut().push(n, v),
            Edit::RemoveFirst(n) => removed = Some(p.headers_mut().remove_first(n.as_str())),
        }
        let written = p.to_bytes();
        let q = Packet::parse(&written)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&written)));
        let after = lines(q.message());
        prop_assert_eq!(q.body(), &m.body[..]);

        // A modified message without Content-Length gets one, last.
        let length = (!has_length(&before) && p.is_modified())
            .then(|| ("Content-Length".to_owned(), m.body.len().to_string()));
        let others = |ls: &[(String, String)]| -> Vec<(String, String)> {
            ls.iter().filter(|(n, _)| !same_name(n, &name)).cloned().collect()
        };
        let mut expected_others = others(&before);
        expected_others.extend(length.clone());
        prop_assert_eq!(others(&after), expected_others);

        match edit {
            Edit::Set(_, v) => {
                let mut expected = before.clone();
                match expected.iter().position(|(n, _)| same_name(n, &name)) {
                    Some(i) => {
                        expected[i].1 = v;
                        let mut seen = 0;
                        expected.retain(|(n, _)| {
                            let same = same_name(n, &name);
                            seen += usize::from(same);
                            !same || seen == 1
                        });
                    }
                    None => expected.push((name.clone(), v)),
                }
                expected.extend(length);
                prop_assert_eq!(after, expected);
            }
            Edit::Push(_, v) => {
                let mut expected = before.clone();
                expected.push((name.clone(), v));
                expected.extend(length);
                prop_assert_eq!(after, expected);
            }
            Edit::RemoveFirst(_) => {
                let values_after: Vec<String> =
                    q.headers().get_all(name.as_str()).map(str::to_owned).collect();
                prop_assert_eq!(removed.flatten(), values_before.first().cloned());
                prop_assert_eq!(values_after, values_before.iter().skip(1).cloned().collect::<Vec<_>>());
            }
        }
    }

    /// After set_body, Content-Length is the body's length, once.
    #[test]
    fn set_body_keeps_content_length_right(m in message(), new_body in body()) {
        let mut p = Packet::parse(&m.bytes).unwrap();
        let before = lines(p.message());
        p.message_mut().set_body(new_body.clone());
        prop_assert_eq!(p.content_length(), Some(new_body.len()));
        let written = p.to_bytes();
        let q = Packet::parse(&written).unwrap();
        prop_assert_eq!(q.content_length(), Some(new_body.len()));
        prop_assert_eq!(q.body(), &new_body[..]);
        prop_assert_eq!(q.headers().lines(HeaderName::ContentLength).count(), 1);
        let others = |ls: &[(String, String)]| -> Vec<(String, String)> {
            ls.iter().filter(|(n, _)| !same_name(n, "Content-Length")).cloned().collect()
        };
        prop_assert_eq!(others(&lines(q.message())), others(&before));
        // And on a stream, where Content-Length is the framing.
        let mut framer = StreamFramer::new(ParseLimits::default());
        prop_assert_eq!(framer.message_len(&written).unwrap(), Some(written.len()));
    }

    /// Arbitrary bytes never panic anything.
    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in vec(any::<u8>(), 0..400)) {
        exercise(&bytes);
    }

    /// Valid messages with a few mutations never panic anything.
    #[test]
    fn mutated_messages_do_not_panic(m in message(), mutations in vec(mutation(), 1..6)) {
        exercise(&mutate(m.bytes, &mutations));
    }

    /// Random header values under each known name never panic the typed
    /// accessors or `check()`.
    #[test]
    fn odd_header_values_do_not_panic(
        values in vec((prop::sample::select(vec![
            "Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Contact", "Route",
            "Record-Route", "Expires", "Content-Type", "Require", "Proxy-Require",
        ]), "[ -~]{0,30}"), 0..8),
    ) {
        let mut text = String::from("OPTIONS sip:a@example.com SIP/2.0\r\n");
        for (n, v) in &values {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        exercise(text.as_bytes());
    }
}

/// A request built from nothing gets its Content-Length from `set_body`.
#[test]
fn new_request_gets_content_length() {
    let mut req = Request::new(
        sip_dispatch::packet::Method::Message,
        "sip:bob@[2001:db8::1]".parse().unwrap(),
    );
    req.headers_mut().push("Call-ID", "x1");
    req.set_body(b"\x00\xffbinary".to_vec());
    let bytes = req.to_bytes();
    let again = Request::parse(&bytes).unwrap();
    assert_eq!(again.content_length(), Some(8));
    assert_eq!(again.body(), b"\x00\xffbinary");
    assert_eq!(again.to_bytes(), bytes);
}
