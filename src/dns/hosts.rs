//! /etc/hosts: a resolver that answers A/AAAA from the hosts file and
//! nothing else.

use std::net::IpAddr;
use std::rc::Rc;

use super::{DnsQuery, DnsRecord, DnsResolver};

/// The entries of a hosts file: address and names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostsFile {
    entries: Vec<(IpAddr, Vec<String>)>,
}

impl HostsFile {
    /// Reads a hosts file; a missing or unreadable file is empty.
    pub fn read(path: &str) -> HostsFile {
        match std::fs::read_to_string(path) {
            Ok(text) => HostsFile::parse(&text),
            Err(_) => HostsFile::default(),
        }
    }

    /// Parses hosts-file text.
    ///
    /// ```
    /// use sip_dispatch::dns::HostsFile;
    /// let h = HostsFile::parse("127.0.0.1 localhost # comment\n::1 localhost ip6-localhost\n");
    /// assert_eq!(h.lookup("LOCALHOST").len(), 2);
    /// ```
    pub fn parse(text: &str) -> HostsFile {
        let entries = text
            .lines()
            .filter_map(|line| {
                let line = line.split('#').next()?.trim();
                let mut parts = line.split_whitespace();
                let ip = parts.next()?.parse::<IpAddr>().ok()?;
                Some((ip, parts.map(str::to_owned).collect()))
            })
            .collect();
        HostsFile { entries }
    }

    /// The addresses of a name (case-insensitive, a trailing dot ignored).
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.');
        self.entries
            .iter()
            .filter(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            .map(|(ip, _)| *ip)
            .collect()
    }

    /// Answers a question from the file: A and AAAA only.
    pub fn answer(&self, query: &DnsQuery) -> Vec<DnsRecord> {
        let (name, v4) = match query {
            DnsQuery::A(n) => (n, true),
            DnsQuery::Aaaa(n) => (n, false),
            _ => return Vec::new(),
        };
        self.lookup(name)
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(a) if v4 => Some(DnsRecord::A(a)),
                IpAddr::V6(a) if !v4 => Some(DnsRecord::Aaaa(a)),
                _ => None,
            })
            .collect()
    }
}

/// A resolver hook answering from /etc/hosts (read once).
pub fn hosts_resolver() -> DnsResolver {
    let hosts = Rc::new(HostsFile::read("/etc/hosts"));
    Rc::new(move |q, answer| answer(Ok(hosts.answer(&q))))
}
