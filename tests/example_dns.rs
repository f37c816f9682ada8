//! The examples' `--nameserver` against an in-test DNS server: `uac`
//! follows NAPTR -> SRV -> A (RFC 3263) to a `uas`, over the transport the
//! NAPTR record picks, and fails over to the second SRV target when the
//! first one is dead; the stateless proxy resolves its next hop the same
//! way.

mod bins;
#[path = "common/dead_port.rs"]
mod dead_port;
#[path = "common/dns_server.rs"]
mod dns_server;

use std::time::Duration;

use bins::{Proc, Uas, run};
use dead_port::dead_port;
use dns_server::{DnsServer, Zone};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn uac_follows_naptr_srv_a_to_a_tcp_uas() {
    let uas = Uas::start(&["--listen", "tcp:127.0.0.1:0"]);
    let port = uas.addr("tcp", false).port();
    let dns = DnsServer::start(
        Zone::new()
            .naptr(
                "example.test",
                10,
                10,
                "s",
                "SIP+D2T",
                "_sip._tcp.example.test",
                60,
            )
            .srv(
                "_sip._tcp.example.test",
                10,
                0,
                port,
                "pbx.example.test",
                60,
            )
            .a("pbx.example.test", [127, 0, 0, 1], 60),
    );
    let ns = dns.addr.to_string();
    let out = run(
        "uac",
        &[
            "--nameserver",
            &ns,
            "--method",
            "INVITE",
            "sip:bob@example.test",
        ],
        WAIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, vec!["200 OK", "200 OK"]);
    let asked: Vec<String> = dns
        .asked()
        .into_iter()
        .map(|(n, t, _)| format!("{t} {n}"))
        .collect();
    assert!(
        asked.iter().any(|q| q.starts_with("NAPTR example.test")),
        "{asked:?}"
    );
    assert!(
        asked
            .iter()
            .any(|q| q.starts_with("SRV _sip._tcp.example.test")),
        "{asked:?}"
    );
    assert!(
        asked.iter().any(|q| q.starts_with("A pbx.example.test")),
        "{asked:?}"
    );
}

#[test]
fn uac_fails_over_to_the_second_srv_target() {
    let uas = Uas::udp(&[]);
    let live = uas.addr("udp", false).port();
    let dead_sock = dead_port();
    let dead = dead_sock.port();
    let dns = DnsServer::start(
        Zone::new()
            .srv("_sip._udp.example.test", 10, 0, dead, "a.example.test", 60)
            .srv("_sip._udp.example.test", 20, 0, live, "b.example.test", 60)
            .a("a.example.test", [127, 0, 0, 1], 60)
            .a("b.example.test", [127, 0, 0, 1], 60),
    );
    let ns = dns.addr.to_string();
    let started = std::time::Instant::now();
    let out = run("uac", &["--nameserver", &ns, "sip:bob@example.test"], WAIT);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, vec!["200 OK"]);
    // The dead target answered with ICMP port unreachable: no timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn unknown_domain_is_ehostunreach() {
    let dns = DnsServer::start(Zone::new().soa("example.test", 60, 30));
    let ns = dns.addr.to_string();
    let out = run(
        "uac",
        &["--nameserver", &ns, "sip:bob@nowhere.example.test"],
        WAIT,
    );
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stdout.len() == 1 && out.stdout[0].starts_with("error EHOSTUNREACH:"),
        "{out:?}"
    );
}

#[test]
fn proxy_resolves_its_next_hop_with_dns() {
    let uas = Uas::udp(&[]);
    let port = uas.addr("udp", false).port();
    let dns = DnsServer::start(
        Zone::new()
            .srv("_sip._udp.biloxi.test", 10, 0, port, "uas.biloxi.test", 60)
            .a("uas.biloxi.test", [127, 0, 0, 1], 60),
    );
    let ns = dns.addr.to_string();
    let mut proxy = Proc::example(
        "stateless_proxy",
        &["--listen", "udp:127.0.0.1:0", "--nameserver", &ns],
    );
    let line = proxy.next_line(WAIT).expect("listening line");
    let proxy_addr = line
        .strip_prefix("listening udp:")
        .expect("a udp leg")
        .to_owned();
    let out = run(
        "uac",
        &["--outgoing-proxy", &proxy_addr, "sip:bob@biloxi.test"],
        WAIT,
    );
    assert_eq!(out.code(), 0, "{out:?}\n{}", proxy.stderr());
    assert_eq!(out.stdout, vec!["200 OK"]);
}
