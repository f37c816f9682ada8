//! name-addr / addr-spec values: From, To, Contact, Route, Record-Route
//! (RFC 3261 20.10, 20.20, 20.39).

use super::HeaderError;
use super::text::{Params, find_byte, is_lws, is_token, params, quoted_end, trim_lws, unquote};
use super::uri::{Uri, UriError};
use std::borrow::Cow;

/// A `name-addr` (`"Display" <uri>;params`) or `addr-spec` (`uri;params`),
/// borrowed from the message.
///
/// ```
/// use sip_dispatch::packet::NameAddr;
/// let to = NameAddr::parse("To", "\"Bob\" <sip:bob@example.com;transport=tcp>;tag=a6c85cf").unwrap();
/// assert_eq!(to.display_name().as_deref(), Some("Bob"));
/// assert_eq!(to.uri_str(), "sip:bob@example.com;transport=tcp");
/// assert_eq!(to.tag(), Some("a6c85cf"));
/// // Without angle brackets, parameters belong to the header, not the URI.
/// let from = NameAddr::parse("From", "sip:alice@example.com;tag=1928").unwrap();
/// assert_eq!(from.uri_str(), "sip:alice@example.com");
/// assert_eq!(from.tag(), Some("1928"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    display: Option<&'a str>,
    uri: &'a str,
    params: &'a str,
    bracketed: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses one value; `header` names the header in errors.
    pub fn parse(header: &'static str, value: &'a str) -> Result<NameAddr<'a>, HeaderError> {
        let err = |reason| HeaderError { header, reason };
        let value = trim_lws(value);
        if value.is_empty() {
            return Err(err("empty value"));
        }
        let (display, rest) = if value.starts_with('"') {
            let end = quoted_end(value).ok_or(err("unterminated quoted display name"))?;
            let rest = trim_lws(&value[end..]);
            if !rest.starts_with('<') {
                return Err(err("display name without <URI>"));
            }
            (Some(&value[..end]), rest)
        } else if let Some(lt) = find_byte(value, b'<') {
            let display = trim_lws(&value[..lt]);
            if !display.is_empty()
                && !display
                    .split(|c: char| c.is_ascii() && is_lws(c as u8))
                    .all(|w| w.is_empty() || is_token(w))
            {
                return Err(err("display name is not a token list (quote it)"));
            }
            ((!display.is_empty()).then_some(display), &value[lt..])
        } else {
            (None, value)
        };
        if let Some(inner) = rest.strip_prefix('<') {
            let gt = find_byte(inner, b'>').ok_or(err("missing '>'"))?;
            let uri = &inner[..gt];
            if uri.is_empty()
                || uri.starts_with(|c: char| c.is_ascii_whitespace())
                || uri.ends_with(|c: char| c.is_ascii_whitespace())
            {
                return Err(err("white space inside <>"));
            }
            let params_str = &inner[gt + 1..];
            if !trim_lws(params_str).is_empty() && !trim_lws(params_str).starts_with(';') {
                return Err(err("junk after '>'"));
            }
            Ok(NameAddr {
                display,
                uri,
                params: params_str,
                bracketed: true,
            })
        } else {
            // addr-spec: the URI ends at the first ';' (RFC 3261 20.10: its
            // parameters are header parameters) and may not contain
            // headers, a comma or a question mark.
            let end = find_byte(rest, b';').unwrap_or(rest.len());
            let uri = trim_lws(&rest[..end]);
            if uri.contains(['?', ',']) || uri.bytes().any(is_lws) {
                return Err(err("URI with '?', ',' or white space needs <>"));
            }
            Ok(NameAddr {
                display: None,
                uri,
                params: &rest[end..],
                bracketed: false,
            })
        }
    }

    /// The display name, without quotes and escapes.
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    /// The URI text.
    pub fn uri_str(&self) -> &'a str {
        self.uri
    }

    /// The URI, parsed.
    pub fn uri(&self) -> Result<Uri, UriError> {
        Uri::parse(self.uri)
    }

    /// Whether the URI was written in angle brackets.
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }

    /// The header parameters (after the URI).
    pub fn params(&self) -> Params<'a> {
        params(self.params)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.params().get("tag").flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let n = NameAddr::parse(
            "From",
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.display_name().as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("To", "caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name().as_deref(), Some("caller"));
        let n = NameAddr::parse("To", "A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe").unwrap();
        assert_eq!(n.display_name().as_deref(), Some("A. Bell"));
        let n = NameAddr::parse(
            "To",
            "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
        )
        .unwrap();
        assert_eq!(n.uri_str(), "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(n.tag(), Some("1918181833n"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b",
            "",
        ] {
            assert!(NameAddr::parse("To", bad).is_err(), "{bad}");
        }
    }
}
