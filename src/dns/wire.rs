//! DNS messages as the stub resolver uses them, built and read with
//! hickory-proto: the query it sends, and what a reply means for it. No
//! I/O here: the functions take bytes and return decisions.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::DnsRecord;
use super::cache::Cached;
use crate::error::{Errno, Error};

/// CNAMEs followed inside one answer; a longer chain is treated as an
/// alias that needs another question.
const MAX_CNAME_CHAIN: usize = 16;

/// The UDP payload offered with EDNS(0) (the DNS flag day 2020 value,
/// which avoids IP fragmentation).
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// The record type of a question.
pub(crate) fn record_type(query: &super::DnsQuery) -> (&str, RecordType) {
    match query {
        super::DnsQuery::Naptr(n) => (n, RecordType::NAPTR),
        super::DnsQuery::Srv(n) => (n, RecordType::SRV),
        super::DnsQuery::A(n) => (n, RecordType::A),
        super::DnsQuery::Aaaa(n) => (n, RecordType::AAAA),
    }
}

/// A fully qualified name from text without a trailing dot.
pub(crate) fn fqdn(name: &str) -> Result<Name, Error> {
    if name.is_empty() || name.ends_with('.') {
        return Err(Error::new(
            Errno::EINVAL,
            format!("invalid DNS name {name:?}"),
        ));
    }
    Name::from_ascii(format!("{name}."))
        .map_err(|e| Error::new(Errno::EINVAL, format!("invalid DNS name {name:?}: {e}")))
}

/// A name as the hook's records carry it: no trailing dot (the root is
/// the empty string).
fn name_text(name: &Name) -> String {
    let mut s = name.to_ascii();
    while s.ends_with('.') {
        s.pop();
    }
    s
}

/// The wire bytes of a recursive query (RD set) for one question.
pub(crate) fn build_query(
    name: &Name,
    qtype: RecordType,
    id: u16,
    edns0: bool,
) -> Result<Vec<u8>, Error> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), qtype));
    if edns0 {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
    }
    message.to_vec().map_err(|e| {
        Error::new(
            Errno::EINVAL,
            format!("cannot encode a query for {name}: {e}"),
        )
    })
}

/// What a reply means for the query it claims to answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Not an answer to this query (malformed, not a response, another
    /// id or another question): ignore it and keep waiting.
    Ignore(&'static str),
    /// The answer did not fit in UDP: ask again over TCP.
    Truncated,
    /// The server could not answer (SERVFAIL, REFUSED, ...): ask the next.
    ServerFailure(ResponseCode),
    /// The answer, with its TTL in seconds (`None`: not cacheable, as a
    /// negative answer without an SOA).
    Answer(Cached, Option<u32>),
}

/// Checks a reply against the query (id, question: name without regard
/// to case, type and class) and interprets it. `over_udp` decides whether
/// the TC bit matters.
pub(crate) fn read_reply(
    bytes: &[u8],
    id: u16,
    name: &Name,
    qtype: RecordType,
    over_udp: bool,
) -> Reply {
    let Ok(message) = Message::from_vec(bytes) else {
        return Reply::Ignore("malformed");
    };
    if message.metadata.message_type != MessageType::Response
        || message.metadata.op_code != OpCode::Query
    {
        return Reply::Ignore("not a response");
    }
    if message.metadata.id != id {
        return Reply::Ignore("wrong id");
    }
    let question_matches = match message.queries.as_slice() {
        [q] => {
            q.query_type() == qtype
                && q.query_class() == DNSClass::IN
                && q.name().eq_ignore_root(name)
        }
        _ => false,
    };
    if !question_matches {
        return Reply::Ignore("wrong question");
    }
    if over_udp && message.metadata.truncation {
        return Reply::Truncated;
    }
    match message.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let (cached, ttl) = interpret(&message, name, qtype);
            Reply::Answer(cached, ttl)
        }
        rcode => Reply::ServerFailure(rcode),
    }
}

/// The records of an answer for (name, type), CNAMEs in the answer
/// section followed; the negative TTL from the SOA (RFC 2308 5: the
/// smaller of the SOA's own TTL and its MINIMUM field).
fn interpret(message: &Message, name: &Name, qtype: RecordType) -> (Cached, Option<u32>) {
    let mut current = name.clone();
    let mut ttl = u32::MAX;
    let mut records = Vec::new();
    for _ in 0..MAX_CNAME_CHAIN {
        for r in message
            .answers
            .iter()
            .filter(|r| is_for(r, &current, qtype))
        {
            if let Some(rec) = convert(&r.data) {
                ttl = ttl.min(r.ttl);
                records.push(rec);
            }
        }
        if !records.is_empty() {
            return (Cached::Records(records), Some(ttl));
        }
        let alias = message.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if is_for(r, &current, RecordType::CNAME) => {
                Some((target.0.clone(), r.ttl))
            }
            _ => None,
        });
        match alias {
            Some((target, cname_ttl)) => {
                current = target;
                ttl = ttl.min(cname_ttl);
            }
            None => break,
        }
    }
    let soa_ttl = message.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    });
    let nxdomain = message.metadata.response_code == ResponseCode::NXDomain;
    let moved = !current.eq_ignore_root(name);
    if moved && !nxdomain && soa_ttl.is_none() {
        // A chain the server did not resolve to its end (a non-recursive
        // server): the target has to be asked for.
        return (Cached::Alias(name_text(&current)), Some(ttl));
    }
    let ttl = soa_ttl.map(|t| t.min(ttl));
    (Cached::Negative { nxdomain }, ttl)
}

fn is_for(r: &Record, name: &Name, qtype: RecordType) -> bool {
    r.dns_class == DNSClass::IN && r.record_type() == qtype && r.name.eq_ignore_root(name)
}

fn convert(data: &RData) -> Option<DnsRecord> {
    Some(match data {
        RData::A(a) => DnsRecord::A(a.0),
        RData::AAAA(a) => DnsRecord::Aaaa(a.0),
        RData::SRV(s) => DnsRecord::Srv {
            priority: s.priority,
            weight: s.weight,
            port: s.port,
            target: name_text(&s.target),
        },
        RData::NAPTR(n) => DnsRecord::Naptr {
            order: n.order,
            preference: n.preference,
            flags: String::from_utf8_lossy(&n.flags).into_owned(),
            services: String::from_utf8_lossy(&n.services).into_owned(),
            replacement: name_text(&n.replacement),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME, SOA, SRV};
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply_to(query: &[u8], edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.add_queries(q.queries.clone());
        edit(&mut m);
        m.to_vec().unwrap()
    }

    #[test]
    fn the_query_asks_for_recursion_with_one_question() {
        let bytes =
            build_query(&fqdn("Example.TEST").unwrap(), RecordType::SRV, 4711, true).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 4711);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].query_type(), RecordType::SRV);
        assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    }

    #[test]
    fn names_are_checked() {
        assert!(fqdn("").is_err());
        assert!(fqdn("a..b").is_err());
        assert!(fqdn(&"x".repeat(64)).is_err());
        assert!(fqdn("ok.test").is_ok());
    }

    #[test]
    fn replies_for_another_id_or_question_are_ignored() {
        let n = fqdn("a.test").unwrap();
        let q = build_query(&n, RecordType::A, 7, false).unwrap();
        let good = reply_to(&q, |_| {});
        assert_eq!(
            read_reply(&good, 8, &n, RecordType::A, true),
            Reply::Ignore("wrong id")
        );
        assert_eq!(
            read_reply(&good, 7, &n, RecordType::AAAA, true),
            Reply::Ignore("wrong question")
        );
        let other = fqdn("b.test").unwrap();
        assert_eq!(
            read_reply(&good, 7, &other, RecordType::A, true),
            Reply::Ignore("wrong question")
        );
        assert_eq!(
            read_reply(&q, 7, &n, RecordType::A, true),
            Reply::Ignore("not a response")
        );
        assert_eq!(
            read_reply(&good[..5], 7, &n, RecordType::A, true),
            Reply::Ignore("malformed")
        );
        // The case of the name does not matter.
        let upper = fqdn("A.TEST").unwrap();
        assert!(matches!(
            read_reply(&good, 7, &upper, RecordType::A, true),
            Reply::Answer(..)
        ));
    }

    #[test]
    fn cnames_are_followed_and_ttls_are_the_smallest() {
        let n = fqdn("alias.test").unwrap();
        let q = build_query(&n, RecordType::A, 1, false).unwrap();
        let r = reply_to(&q, |m| {
            m.add_answer(Record::from_rdata(
                name("alias.test."),
                300,
                RData::CNAME(CNAME(name("mid.test."))),
            ));
            m.add_answer(Record::from_rdata(
                name("mid.test."),
                200,
                RData::CNAME(CNAME(name("real.test."))),
            ));
            m.add_answer(Record::from_rdata(
                name("real.test."),
                900,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            m.add_answer(Record::from_rdata(
                name("other.test."),
                9,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 9))),
            ));
        });
        assert_eq!(
            read_reply(&r, 1, &n, RecordType::A, true),
            Reply::Answer(
                Cached::Records(vec![DnsRecord::A(Ipv4Addr::new(192, 0, 2, 1))]),
                Some(200)
            )
        );
    }

    #[test]
    fn an_unresolved_chain_is_an_alias_and_negative_ttls_come_from_the_soa() {
        let n = fqdn("alias.test").unwrap();
        let q = build_query(&n, RecordType::SRV, 1, false).unwrap();
        let r = reply_to(&q, |m| {
            m.add_answer(Record::from_rdata(
                name("alias.test."),
                60,
                RData::CNAME(CNAME(name("Target.test."))),
            ));
        });
        assert_eq!(
            read_reply(&r, 1, &n, RecordType::SRV, true),
            Reply::Answer(Cached::Alias("Target.test".into()), Some(60))
        );
        let soa = SOA::new(name("ns.test."), name("h.test."), 1, 1, 1, 1, 30);
        let r = reply_to(&q, |m| {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(Record::from_rdata(
                name("test."),
                3600,
                RData::SOA(soa.clone()),
            ));
        });
        assert_eq!(
            read_reply(&r, 1, &n, RecordType::SRV, true),
            Reply::Answer(Cached::Negative { nxdomain: true }, Some(30))
        );
        let r = reply_to(&q, |m| {
            m.add_answer(Record::from_rdata(
                name("alias.test."),
                9,
                RData::SRV(SRV::new(1, 2, 3, name("x.test."))),
            ));
        });
        assert!(matches!(
            read_reply(&r, 1, &n, RecordType::SRV, true),
            Reply::Answer(Cached::Records(_), Some(9))
        ));
        let r = reply_to(&q, |m| m.metadata.truncation = true);
        assert_eq!(
            read_reply(&r, 1, &n, RecordType::SRV, true),
            Reply::Truncated
        );
        assert_eq!(
            read_reply(&r, 1, &n, RecordType::SRV, false),
            Reply::Answer(Cached::Negative { nxdomain: false }, None)
        );
        let r = reply_to(&q, |m| m.metadata.response_code = ResponseCode::Refused);
        assert_eq!(
            read_reply(&r, 1, &n, RecordType::SRV, true),
            Reply::ServerFailure(ResponseCode::Refused)
        );
    }
}
