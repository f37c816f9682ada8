//! Dialog state for the examples (RFC 3261 12): identifiers, route set,
//! remote target and CSeq, and the requests built from them.

use crate::packet::{HeaderName, Method, NameAddr, Request, Response, Uri};

/// One side of a dialog (or of a call being set up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our URI (From of our requests).
    pub local_uri: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's URI (To of our requests).
    pub remote_uri: String,
    /// The peer's tag, once known.
    pub remote_tag: Option<String>,
    /// Where in-dialog requests go: the peer's Contact (or, before it is
    /// known, the URI called).
    pub remote_target: Uri,
    /// Route set, in the order our requests carry it.
    pub route_set: Vec<String>,
    /// Our last CSeq number.
    pub local_cseq: u32,
}

impl Dialog {
    /// A new call from `local_uri` to `remote_uri`.
    pub fn new_uac(
        local_uri: &str,
        remote_uri: &Uri,
        call_id: String,
        local_tag: String,
    ) -> Dialog {
        Dialog {
            call_id,
            local_uri: local_uri.to_owned(),
            local_tag,
            remote_uri: remote_uri.to_string(),
            remote_tag: None,
            remote_target: remote_uri.clone(),
            route_set: Vec::new(),
            local_cseq: 0,
        }
    }

    /// The UAS side of a dialog created by `request` (an INVITE), with our
    /// tag: remote target from its Contact, route set from its
    /// Record-Route (in order, RFC 3261 12.1.1).
    pub fn new_uas(request: &Request, local_tag: &str) -> Option<Dialog> {
        let from = request.from().ok()?;
        let to = request.to().ok()?;
        let remote_target = request.contacts().next()?.ok()?.uri().ok()?;
        Some(Dialog {
            call_id: request.call_id()?.to_owned(),
            local_uri: to.uri_str().to_owned(),
            local_tag: local_tag.to_owned(),
            remote_uri: from.uri_str().to_owned(),
            remote_tag: from.tag().map(str::to_owned),
            remote_target,
            route_set: request
                .headers()
                .get_all(HeaderName::RecordRoute)
                .map(str::to_owned)
                .collect(),
            local_cseq: request.cseq().map(|c| c.number).unwrap_or(0).max(1) + 100,
        })
    }

    /// Learns from a response to our INVITE: the To tag, the Contact as
    /// remote target, and the Record-Route set (reversed, 12.1.2).
    pub fn update_from_response(&mut self, response: &Response) {
        if let Some(tag) = response.to_tag() {
            self.remote_tag = Some(tag.to_owned());
        }
        if let Some(Ok(contact)) = response.contacts().next() {
            if let Ok(uri) = contact.uri() {
                self.remote_target = uri;
            }
        }
        let rr: Vec<String> = response
            .headers()
            .get_all(HeaderName::RecordRoute)
            .map(str::to_owned)
            .collect();
        if !rr.is_empty() {
            self.route_set = rr.into_iter().rev().collect();
        }
    }

    fn to_header(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("<{}>;tag={t}", self.remote_uri),
            None => format!("<{}>", self.remote_uri),
        }
    }

    fn base(&self, method: Method, uri: Uri, cseq: u32, cseq_method: &Method) -> Request {
        let mut r = Request::new(method, uri);
        let h = r.headers_mut();
        h.push("Max-Forwards", "70");
        h.push(
            "From",
            &format!("<{}>;tag={}", self.local_uri, self.local_tag),
        );
        h.push("To", &self.to_header());
        h.push("Call-ID", &self.call_id);
        h.push("CSeq", &format!("{cseq} {cseq_method}"));
        for route in &self.route_set {
            h.push("Route", route);
        }
        r
    }

    /// A new request in this dialog (or the initial one): CSeq goes up by
    /// one; it goes to the remote target.
    pub fn request(&mut self, method: Method) -> Request {
        self.local_cseq += 1;
        let target = self.remote_target.clone();
        self.base(method.clone(), target, self.local_cseq, &method)
    }

    /// The ACK of a 2xx to our INVITE (13.2.2.4): the INVITE's CSeq number,
    /// to the remote target, through the route set. The caller sends it
    /// with a new branch for every 2xx it receives.
    pub fn ack_for_2xx(&self, invite_cseq: u32) -> Request {
        self.base(
            Method::Ack,
            self.remote_target.clone(),
            invite_cseq,
            &Method::Ack,
        )
    }
}

/// The CANCEL of a request (RFC 3261 9.1): same Request-URI, Call-ID,
/// From, To, CSeq number and Route; sent with the request's branch.
pub fn cancel_for(request: &Request) -> Request {
    let mut c = Request::new(Method::Cancel, request.uri().clone());
    let h = c.headers_mut();
    h.push("Max-Forwards", "70");
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(v) = request.headers().get(name) {
            h.push(name.as_str(), v);
        }
    }
    let number = request.cseq().map(|c| c.number).unwrap_or(0);
    h.push("CSeq", &format!("{number} CANCEL"));
    for route in request.headers().get_all(HeaderName::Route) {
        h.push("Route", route);
    }
    c
}

/// Whether a NameAddr value has a tag (helper for callers that check To).
pub(crate) fn _has_tag(v: &str) -> bool {
    NameAddr::parse("To", v).is_ok_and(|n| n.tag().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;

    #[test]
    fn uac_dialog_requests() {
        let target: Uri = "sip:bob@192.0.2.4".parse().unwrap();
        let mut d = Dialog::new_uac("sip:alice@192.0.2.1", &target, "cid1".into(), "tagA".into());
        let invite = d.request(Method::Invite);
        assert_eq!(invite.cseq().unwrap().number, 1);
        assert_eq!(invite.from_tag(), Some("tagA"));
        assert_eq!(invite.to_tag(), None);
        let ok = Packet::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
              Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
              From: <sip:alice@192.0.2.1>;tag=tagA\r\nTo: <sip:bob@192.0.2.4>;tag=tagB\r\n\
              Call-ID: cid1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@192.0.2.44:5070>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        d.update_from_response(ok.as_response().unwrap());
        let ack = d.ack_for_2xx(1);
        assert_eq!(ack.uri().as_str(), "sip:bob@192.0.2.44:5070");
        assert_eq!(ack.cseq().unwrap().to_string(), "1 ACK");
        assert_eq!(ack.to_tag(), Some("tagB"));
        let routes: Vec<&str> = ack.headers().get_all("Route").collect();
        assert_eq!(
            routes,
            vec!["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
        );
        let bye = d.request(Method::Bye);
        assert_eq!(bye.cseq().unwrap().to_string(), "2 BYE");
    }

    #[test]
    fn cancel_copies_what_9_1_says() {
        let target: Uri = "sip:bob@192.0.2.4".parse().unwrap();
        let mut d = Dialog::new_uac("sip:alice@192.0.2.1", &target, "cid2".into(), "tagA".into());
        d.route_set = vec!["<sip:p1.example.com;lr>".into()];
        let invite = d.request(Method::Invite);
        let cancel = cancel_for(&invite);
        assert_eq!(cancel.uri(), invite.uri());
        assert_eq!(cancel.cseq().unwrap().to_string(), "1 CANCEL");
        assert_eq!(
            cancel.headers().get("Route"),
            Some("<sip:p1.example.com;lr>")
        );
        assert_eq!(cancel.from_tag(), Some("tagA"));
    }
}
