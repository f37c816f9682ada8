//! An in-test DNS server on loopback: UDP and TCP on one kernel-chosen
//! port, each served by a background thread, answering a scripted zone
//! written with hickory-proto. It records every query it gets, and can
//! misbehave per name (truncate over UDP, SERVFAIL, REFUSED, stay silent,
//! answer first with a wrong id, from a wrong port or for a wrong
//! question, leave a CNAME unresolved).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NAPTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How the server treats questions for one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Over UDP: an empty answer with the TC bit; over TCP: the answer.
    Truncate,
    /// SERVFAIL.
    ServFail,
    /// REFUSED.
    Refused,
    /// No answer at all.
    Silent,
    /// First a copy of the answer with another id, then the answer.
    WrongIdFirst,
    /// First the answer from another port, then from the server's port.
    WrongPortFirst,
    /// First an answer for another name, then the answer.
    WrongQuestionFirst,
    /// CNAMEs are not chased: only the CNAME record is given.
    CnameUnchased,
}

/// The records the server knows, and its rules.
#[derive(Clone, Default)]
pub struct Zone {
    records: Vec<Record>,
    /// (zone apex, SOA record TTL, SOA MINIMUM): put in the authority
    /// section of negative answers.
    soa: Option<(String, u32, u32)>,
    rules: HashMap<String, Rule>,
    silent: bool,
    /// `records` by lower-case owner name, built when the server starts.
    by_name: HashMap<String, Vec<Record>>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.'))).expect("test name")
}

fn key(n: &Name) -> String {
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    /// A server that never answers.
    pub fn silent() -> Zone {
        Zone {
            silent: true,
            ..Zone::default()
        }
    }

    fn add(mut self, owner: &str, ttl: u32, data: RData) -> Zone {
        self.records
            .push(Record::from_rdata(name(owner), ttl, data));
        self
    }

    pub fn a(self, owner: &str, ip: [u8; 4], ttl: u32) -> Zone {
        self.add(owner, ttl, RData::A(A(Ipv4Addr::from(ip))))
    }

    pub fn aaaa(self, owner: &str, ip: Ipv6Addr, ttl: u32) -> Zone {
        self.add(owner, ttl, RData::AAAA(AAAA(ip)))
    }

    pub fn srv(
        self,
        owner: &str,
        priority: u16,
        weight: u16,
        port: u16,
        target: &str,
        ttl: u32,
    ) -> Zone {
        self.add(
            owner,
            ttl,
            RData::SRV(SRV::new(priority, weight, port, name(target))),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn naptr(
        self,
        owner: &str,
        order: u16,
        preference: u16,
        flags: &str,
        services: &str,
        replacement: &str,
        ttl: u32,
    ) -> Zone {
        let data = NAPTR::new(
            order,
            preference,
            flags.as_bytes().into(),
            services.as_bytes().into(),
            Box::new([]),
            name(replacement),
        );
        self.add(owner, ttl, RData::NAPTR(data))
    }

    pub fn cname(self, owner: &str, target: &str, ttl: u32) -> Zone {
        self.add(owner, ttl, RData::CNAME(CNAME(name(target))))
    }

    pub fn soa(mut self, apex: &str, ttl: u32, minimum: u32) -> Zone {
        self.soa = Some((apex.to_owned(), ttl, minimum));
        self
    }

    pub fn rule(mut self, owner: &str, rule: Rule) -> Zone {
        self.rules
            .insert(owner.trim_end_matches('.').to_ascii_lowercase(), rule);
        self
    }

    fn soa_record(&self) -> Option<Record> {
        let (apex, ttl, minimum) = self.soa.as_ref()?;
        let soa = SOA::new(
            name(&format!("ns.{apex}")),
            name(&format!("hostmaster.{apex}")),
            1,
            3600,
            600,
            86400,
            *minimum,
        );
        Some(Record::from_rdata(name(apex), *ttl, RData::SOA(soa)))
    }

    /// The datagrams (or TCP frames) to send back, and whether each goes
    /// from the other port.
    fn respond(&self, request: &Message, tcp: bool) -> Vec<(Vec<u8>, bool)> {
        let Some(q) = request.queries.first() else {
            return Vec::new();
        };
        let rule = self.rules.get(&key(q.name())).copied();
        if self.silent || rule == Some(Rule::Silent) {
            return Vec::new();
        }
        let mut resp = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.recursion_desired = request.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.metadata.authoritative = true;
        resp.add_query(q.clone());
        match rule {
            Some(Rule::ServFail) => resp.metadata.response_code = ResponseCode::ServFail,
            Some(Rule::Refused) => resp.metadata.response_code = ResponseCode::Refused,
            _ => self.answer(
                &mut resp,
                q.name(),
                q.query_type(),
                rule == Some(Rule::CnameUnchased),
            ),
        }
        if rule == Some(Rule::Truncate) && !tcp {
            resp.answers.clear();
            resp.metadata.truncation = true;
        }
        let bytes = |m: &Message| m.to_vec().expect("test answer encodes");
        let mut out = Vec::new();
        match rule {
            Some(Rule::WrongIdFirst) => {
                let mut wrong = resp.clone();
                wrong.metadata.id = resp.metadata.id.wrapping_add(1);
                out.push((bytes(&wrong), false));
            }
            Some(Rule::WrongPortFirst) => out.push((bytes(&resp), true)),
            Some(Rule::WrongQuestionFirst) => {
                let mut wrong = resp.clone();
                let mut wq = q.clone();
                wq.set_name(name("wrong.invalid"));
                wrong.queries = vec![wq];
                out.push((bytes(&wrong), false));
            }
            _ => {}
        }
        out.push((bytes(&resp), false));
        out
    }

    fn index(mut self) -> Zone {
        for r in &self.records {
            self.by_name
                .entry(key(&r.name))
                .or_default()
                .push(r.clone());
        }
        self
    }

    fn at(&self, owner: &Name) -> &[Record] {
        self.by_name.get(&key(owner)).map_or(&[], |v| v.as_slice())
    }

    fn answer(&self, resp: &mut Message, qname: &Name, qtype: RecordType, unchased: bool) {
        let mut current = qname.clone();
        for _ in 0..8 {
            let found: Vec<Record> = self
                .at(&current)
                .iter()
                .filter(|r| r.record_type() == qtype)
                .cloned()
                .collect();
            if !found.is_empty() {
                resp.add_answers(found);
                return;
            }
            let alias = self
                .at(&current)
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
                .cloned();
            match alias {
                Some(record) => {
                    let RData::CNAME(target) = &record.data else {
                        return;
                    };
                    current = target.0.clone();
                    resp.add_answer(record);
                    if unchased {
                        return;
                    }
                }
                None => break,
            }
        }
        let exists = !self.at(&current).is_empty();
        if !exists {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Some(soa) = self.soa_record() {
            resp.add_authority(soa);
        }
    }
}

/// A query as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub tcp: bool,
    /// Lower case, no trailing dot.
    pub name: String,
    pub qtype: RecordType,
    pub id: u16,
    pub rd: bool,
    pub from: SocketAddr,
}

pub struct DnsServer {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn record(log: &Mutex<Vec<Logged>>, m: &Message, tcp: bool, from: SocketAddr) {
    if let Some(q) = m.queries.first() {
        let entry = Logged {
            tcp,
            name: key(q.name()),
            qtype: q.query_type(),
            id: m.metadata.id,
            rd: m.metadata.recursion_desired,
            from,
        };
        log.lock().unwrap().push(entry);
    }
}

impl DnsServer {
    /// Serves `zone` on 127.0.0.1, UDP and TCP on the same port.
    pub fn start(zone: Zone) -> DnsServer {
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .expect("a free port for UDP and TCP");
        let addr = udp.local_addr().unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let zone = Arc::new(zone.index());
        let mut threads = Vec::new();
        {
            let (log, stop, zone) = (log.clone(), stop.clone(), zone.clone());
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(m) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    record(&log, &m, false, from);
                    for (bytes, from_other) in zone.respond(&m, false) {
                        let socket = if from_other { &other } else { &udp };
                        let _ = socket.send_to(&bytes, from);
                    }
                }
            }));
        }
        {
            let (log, stop, zone) = (log.clone(), stop.clone(), zone.clone());
            threads.push(std::thread::spawn(move || {
                for conn in tcp.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let from = conn.peer_addr().unwrap_or(addr);
                    serve_tcp(&mut conn, &zone, &log, from);
                }
            }));
        }
        DnsServer {
            addr,
            log,
            stop,
            threads,
        }
    }

    /// Every query so far.
    pub fn queries(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// (name, type, over TCP) of every query so far.
    pub fn asked(&self) -> Vec<(String, RecordType, bool)> {
        self.queries()
            .into_iter()
            .map(|l| (l.name, l.qtype, l.tcp))
            .collect()
    }
}

fn serve_tcp(conn: &mut TcpStream, zone: &Zone, log: &Mutex<Vec<Logged>>, from: SocketAddr) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    loop {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if conn.read_exact(&mut msg).is_err() {
            return;
        }
        let Ok(m) = Message::from_vec(&msg) else {
            return;
        };
        record(log, &m, true, from);
        for (bytes, _) in zone.respond(&m, true) {
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            if conn.write_all(&framed).is_err() {
                return;
            }
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accepting thread.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
