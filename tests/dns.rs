//! The built-in stub resolver against an in-test DNS server on loopback:
//! answers per type, CNAMEs, TCP after truncation, failover between
//! nameservers, timeouts under virtual time, forged replies, the cache,
//! coalescing, the search list, the hosts file, bounds, and the
//! dispatcher resolving through it end to end.

#[path = "common/dead_port.rs"]
mod dead_port;
#[path = "common/dispatch.rs"]
mod dispatch;
#[path = "common/dns_server.rs"]
mod dns_server;

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use dead_port::dead_port;
use dns_server::{DnsServer, Rule, Zone};
use hickory_proto::rr::RecordType;
use sip_dispatch::Errno;
use sip_dispatch::dispatcher::{
    DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions, LegId,
};
use sip_dispatch::dns::{
    CacheOptions, DnsAnswer, DnsConfig, DnsQuery, DnsRecord, HostsFile, StubResolver,
};
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{Leg, LegOptions, LegSpec, Source};
use sip_dispatch::packet::{Packet, Response};

/// Loop-time bound on any wait.
const LIMIT: Duration = Duration::from_secs(120);

fn real_loop() -> Rc<MioEventloop> {
    Rc::new(MioEventloop::new().unwrap())
}

/// A virtual-time loop that gives the server thread a generous real grace
/// before jumping the clock, so answers are never mistaken for timeouts.
fn virtual_loop() -> Rc<MioEventloop> {
    let lp = Rc::new(MioEventloop::new_virtual());
    lp.set_virtual_grace(Duration::from_millis(250));
    lp
}

fn config(servers: &[SocketAddr]) -> DnsConfig {
    DnsConfig::with_nameservers(servers.to_vec()).timeout(Duration::from_secs(3))
}

fn resolver(lp: &Rc<MioEventloop>, config: DnsConfig) -> Rc<StubResolver> {
    StubResolver::new(lp.clone(), config)
}

type Slot = Rc<RefCell<Option<DnsAnswer>>>;

/// Starts a lookup; the slot fills when it ends.
fn start(r: &Rc<StubResolver>, q: DnsQuery) -> Slot {
    let slot: Slot = Rc::default();
    let s = slot.clone();
    r.lookup(
        q,
        Box::new(move |a| {
            assert!(s.borrow().is_none(), "one answer per lookup");
            *s.borrow_mut() = Some(a);
        }),
    );
    slot
}

fn wait(lp: &MioEventloop, slot: &Slot) -> DnsAnswer {
    lp.run(Some(LIMIT), &|| slot.borrow().is_some()).unwrap();
    slot.borrow_mut()
        .take()
        .expect("an answer within the limit")
}

fn lookup(lp: &MioEventloop, r: &Rc<StubResolver>, q: DnsQuery) -> DnsAnswer {
    let slot = start(r, q);
    wait(lp, &slot)
}

fn a(name: &str) -> DnsQuery {
    DnsQuery::A(name.into())
}

fn v4(ip: [u8; 4]) -> DnsRecord {
    DnsRecord::A(Ipv4Addr::from(ip))
}

fn errno(answer: DnsAnswer) -> Errno {
    answer.expect_err("an error").errno()
}

/// The NAPTR -> SRV -> A chain of example.test, answering on `port`.
fn sip_zone(port: u16) -> Zone {
    Zone::new()
        .naptr(
            "example.test",
            10,
            50,
            "s",
            "SIP+D2U",
            "_sip._udp.example.test",
            300,
        )
        .naptr(
            "example.test",
            20,
            50,
            "s",
            "SIP+D2T",
            "_sip._tcp.example.test",
            300,
        )
        .srv(
            "_sip._udp.example.test",
            10,
            60,
            port,
            "uas1.example.test",
            300,
        )
        .srv(
            "_sip._udp.example.test",
            10,
            20,
            port,
            "uas2.example.test",
            300,
        )
        .srv(
            "_sip._udp.example.test",
            20,
            0,
            port,
            "backup.example.test",
            300,
        )
        .a("uas1.example.test", [127, 0, 0, 1], 300)
        .aaaa("uas1.example.test", Ipv6Addr::LOCALHOST, 300)
        .soa("example.test", 3600, 30)
}

#[test]
fn answers_for_each_type() {
    let server = DnsServer::start(sip_zone(5070));
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]));
    let naptr = lookup(&lp, &r, DnsQuery::Naptr("example.test".into())).unwrap();
    assert_eq!(
        naptr,
        vec![
            DnsRecord::Naptr {
                order: 10,
                preference: 50,
                flags: "s".into(),
                services: "SIP+D2U".into(),
                replacement: "_sip._udp.example.test".into(),
            },
            DnsRecord::Naptr {
                order: 20,
                preference: 50,
                flags: "s".into(),
                services: "SIP+D2T".into(),
                replacement: "_sip._tcp.example.test".into(),
            },
        ]
    );
    let srv = lookup(&lp, &r, DnsQuery::Srv("_sip._udp.example.test".into())).unwrap();
    // Every record, with its priority and weight: ordering by them is the
    // RFC 3263 walk's job (src/dispatcher/lookup.rs).
    assert_eq!(
        srv,
        vec![
            DnsRecord::Srv {
                priority: 10,
                weight: 60,
                port: 5070,
                target: "uas1.example.test".into()
            },
            DnsRecord::Srv {
                priority: 10,
                weight: 20,
                port: 5070,
                target: "uas2.example.test".into()
            },
            DnsRecord::Srv {
                priority: 20,
                weight: 0,
                port: 5070,
                target: "backup.example.test".into()
            },
        ]
    );
    assert_eq!(
        lookup(&lp, &r, a("uas1.example.test")).unwrap(),
        vec![v4([127, 0, 0, 1])]
    );
    assert_eq!(
        lookup(&lp, &r, DnsQuery::Aaaa("UAS1.Example.Test".into())).unwrap(),
        vec![DnsRecord::Aaaa(Ipv6Addr::LOCALHOST)]
    );
    let asked = server.queries();
    assert_eq!(
        asked
            .iter()
            .map(|q| (q.name.as_str(), q.qtype, q.tcp))
            .collect::<Vec<_>>(),
        vec![
            ("example.test", RecordType::NAPTR, false),
            ("_sip._udp.example.test", RecordType::SRV, false),
            ("uas1.example.test", RecordType::A, false),
            ("uas1.example.test", RecordType::AAAA, false),
        ]
    );
    assert!(asked.iter().all(|q| q.rd), "recursion desired");
    let s = r.stats();
    assert_eq!(
        (s.queries_sent, s.answers_accepted, s.answers_ignored),
        (4, 4, 0)
    );
    assert_eq!((s.in_flight, s.waiting), (0, 0));
}

#[test]
fn nxdomain_and_nodata_are_empty_answers() {
    let server = DnsServer::start(sip_zone(5060));
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]));
    assert_eq!(lookup(&lp, &r, a("nothing.example.test")).unwrap(), vec![]);
    assert_eq!(
        lookup(&lp, &r, DnsQuery::Srv("uas1.example.test".into())).unwrap(),
        vec![]
    );
    assert_eq!(server.count(), 2);
}

#[test]
fn cnames_are_followed() {
    let zone = Zone::new()
        .cname("sip.example.test", "proxy.example.test", 300)
        .cname("proxy.example.test", "host.example.test", 300)
        .a("host.example.test", [192, 0, 2, 7], 300)
        .cname("lazy.example.test", "host.example.test", 300)
        .rule("lazy.example.test", Rule::CnameUnchased);
    let server = DnsServer::start(zone);
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]));
    // The server followed the chain: one query.
    assert_eq!(
        lookup(&lp, &r, a("sip.example.test")).unwrap(),
        vec![v4([192, 0, 2, 7])]
    );
    assert_eq!(server.count(), 1);
    // The server gave only the CNAME: the resolver asks for the target.
    assert_eq!(
        lookup(&lp, &r, a("lazy.example.test")).unwrap(),
        vec![v4([192, 0, 2, 7])]
    );
    assert_eq!(
        server.asked()[1..],
        [
            ("lazy.example.test".into(), RecordType::A, false),
            ("host.example.test".into(), RecordType::A, false)
        ]
    );
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    let zone = Zone::new()
        .a("big.example.test", [192, 0, 2, 1], 300)
        .a("big.example.test", [192, 0, 2, 2], 300)
        .a("big.example.test", [192, 0, 2, 3], 300)
        .rule("big.example.test", Rule::Truncate);
    let server = DnsServer::start(zone);
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]));
    assert_eq!(
        lookup(&lp, &r, a("big.example.test")).unwrap(),
        vec![v4([192, 0, 2, 1]), v4([192, 0, 2, 2]), v4([192, 0, 2, 3])]
    );
    assert_eq!(
        server.asked(),
        vec![
            ("big.example.test".into(), RecordType::A, false),
            ("big.example.test".into(), RecordType::A, true)
        ]
    );
    let s = r.stats();
    assert_eq!(
        (s.tcp_fallbacks, s.queries_sent, s.answers_accepted),
        (1, 2, 1)
    );
    assert_eq!(lp.registered_fds(), 0, "the TCP connection is closed");
}

#[test]
fn servfail_and_refused_move_to_the_next_nameserver_at_once() {
    for rule in [Rule::ServFail, Rule::Refused] {
        let bad = DnsServer::start(Zone::new().rule("h.example.test", rule));
        let good = DnsServer::start(Zone::new().a("h.example.test", [192, 0, 2, 5], 60));
        let lp = virtual_loop();
        let t0 = lp.now();
        let r = resolver(&lp, config(&[bad.addr, good.addr]));
        assert_eq!(
            lookup(&lp, &r, a("h.example.test")).unwrap(),
            vec![v4([192, 0, 2, 5])]
        );
        assert_eq!(lp.now() - t0, Duration::ZERO, "{rule:?}: no timeout waited");
        assert_eq!((bad.count(), good.count()), (1, 1));
        assert_eq!(r.stats().server_failures, 1);
    }
}

#[test]
fn servfail_everywhere_is_an_error() {
    let bad = DnsServer::start(Zone::new().rule("h.example.test", Rule::ServFail));
    let lp = real_loop();
    let r = resolver(&lp, config(&[bad.addr]).attempts(2));
    assert_eq!(
        errno(lookup(&lp, &r, a("h.example.test"))),
        Errno::EHOSTUNREACH
    );
    assert_eq!(bad.count(), 2, "one query per attempt");
}

#[test]
fn a_refused_port_moves_to_the_next_nameserver_at_once() {
    let good = DnsServer::start(Zone::new().a("h.example.test", [192, 0, 2, 5], 60));
    let lp = virtual_loop();
    let t0 = lp.now();
    let dead = dead_port();
    let r = resolver(&lp, config(&[dead.addr(), good.addr]));
    assert_eq!(
        lookup(&lp, &r, a("h.example.test")).unwrap(),
        vec![v4([192, 0, 2, 5])]
    );
    assert_eq!(
        lp.now() - t0,
        Duration::ZERO,
        "ICMP port unreachable, not a timeout"
    );
    assert_eq!(r.stats().timeouts, 0);
}

#[test]
fn a_silent_nameserver_times_out_then_the_second_answers() {
    let silent = DnsServer::start(Zone::silent());
    let good = DnsServer::start(Zone::new().a("h.example.test", [192, 0, 2, 5], 60));
    let lp = virtual_loop();
    let t0 = lp.now();
    let r = resolver(&lp, config(&[silent.addr, good.addr]));
    assert_eq!(
        lookup(&lp, &r, a("h.example.test")).unwrap(),
        vec![v4([192, 0, 2, 5])]
    );
    assert_eq!(lp.now() - t0, Duration::from_secs(3), "exactly one timeout");
    assert_eq!((silent.count(), good.count()), (1, 1));
    assert_eq!(r.stats().timeouts, 1);
}

#[test]
fn all_silent_is_etimedout_after_attempts_times_timeout() {
    let s1 = DnsServer::start(Zone::silent());
    let s2 = DnsServer::start(Zone::silent());
    let lp = virtual_loop();
    // Nothing will answer: no need to give the servers a real grace.
    lp.set_virtual_grace(Duration::from_millis(5));
    let t0 = lp.now();
    let r = resolver(
        &lp,
        config(&[s1.addr, s2.addr])
            .timeout(Duration::from_secs(5))
            .attempts(3),
    );
    let when = Rc::new(Cell::new(None));
    let w = when.clone();
    let lp2 = lp.clone();
    let slot = start(&r, a("h.example.test"));
    let answer = {
        lp.run(Some(LIMIT), &|| {
            if slot.borrow().is_some() && w.get().is_none() {
                w.set(Some(lp2.now()));
            }
            slot.borrow().is_some()
        })
        .unwrap();
        slot.borrow_mut().take().unwrap()
    };
    assert_eq!(errno(answer), Errno::ETIMEDOUT);
    assert_eq!(
        when.get().map(|t| t - t0),
        Some(Duration::from_secs(2 * 3 * 5))
    );
    assert_eq!((s1.count(), s2.count()), (3, 3));
    let s = r.stats();
    assert_eq!((s.timeouts, s.queries_sent, s.in_flight), (6, 6, 0));
    assert_eq!(lp.registered_fds(), 0);
    assert_eq!(lp.pending_timers(), 0);
}

#[test]
fn rotate_starts_each_query_at_the_next_nameserver() {
    let s1 = DnsServer::start(Zone::new().a("a.example.test", [192, 0, 2, 1], 0).a(
        "b.example.test",
        [192, 0, 2, 2],
        0,
    ));
    let s2 = DnsServer::start(Zone::new().a("a.example.test", [192, 0, 2, 1], 0).a(
        "b.example.test",
        [192, 0, 2, 2],
        0,
    ));
    let lp = real_loop();
    let r = resolver(&lp, config(&[s1.addr, s2.addr]).rotate(true));
    for name in [
        "a.example.test",
        "b.example.test",
        "a.example.test",
        "b.example.test",
    ] {
        assert_eq!(lookup(&lp, &r, a(name)).unwrap().len(), 1);
    }
    assert_eq!((s1.count(), s2.count()), (2, 2));
    let r = resolver(&lp, config(&[s1.addr, s2.addr]));
    lookup(&lp, &r, a("a.example.test")).unwrap();
    lookup(&lp, &r, a("b.example.test")).unwrap();
    assert_eq!(
        (s1.count(), s2.count()),
        (4, 2),
        "without rotate the first server gets all"
    );
}

#[test]
fn forged_replies_are_ignored_and_counted() {
    for rule in [
        Rule::WrongIdFirst,
        Rule::WrongPortFirst,
        Rule::WrongQuestionFirst,
    ] {
        let server = DnsServer::start(
            Zone::new()
                .a("h.example.test", [192, 0, 2, 9], 60)
                .rule("h.example.test", rule),
        );
        let lp = virtual_loop();
        let t0 = lp.now();
        let r = resolver(&lp, config(&[server.addr]));
        assert_eq!(
            lookup(&lp, &r, a("h.example.test")).unwrap(),
            vec![v4([192, 0, 2, 9])],
            "{rule:?}"
        );
        let s = r.stats();
        assert_eq!(
            (s.answers_ignored, s.answers_accepted, s.queries_sent),
            (1, 1, 1),
            "{rule:?}"
        );
        assert_eq!(
            lp.now() - t0,
            Duration::ZERO,
            "{rule:?}: the right answer was taken at once"
        );
    }
}

#[test]
fn oversized_answers_are_rejected() {
    let mut zone = Zone::new();
    for i in 0..40 {
        zone = zone.a("many.example.test", [192, 0, 2, i], 60);
    }
    zone = zone.a("few.example.test", [192, 0, 2, 1], 60);
    let server = DnsServer::start(zone);
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]).attempts(1).max_answer_size(300));
    assert_eq!(
        errno(lookup(&lp, &r, a("many.example.test"))),
        Errno::EMSGSIZE
    );
    assert_eq!(r.stats().answers_oversized, 1);
    assert_eq!(
        lookup(&lp, &r, a("few.example.test")).unwrap(),
        vec![v4([192, 0, 2, 1])]
    );
}

#[test]
fn a_second_lookup_is_served_from_the_cache() {
    let server = DnsServer::start(sip_zone(5060));
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]));
    let first = lookup(&lp, &r, DnsQuery::Srv("_sip._udp.example.test".into())).unwrap();
    // A cache hit answers inside lookup.
    let slot = start(&r, DnsQuery::Srv("_SIP._udp.EXAMPLE.test".into()));
    assert_eq!(slot.borrow_mut().take().unwrap().unwrap(), first);
    assert_eq!(server.count(), 1);
    let s = r.stats();
    assert_eq!((s.cache_hits, s.cache_misses, s.cache_entries), (1, 1, 1));
}

#[test]
fn positive_ttls_expire_on_virtual_time_and_are_capped() {
    let server = DnsServer::start(Zone::new().a("short.example.test", [192, 0, 2, 1], 60).a(
        "long.example.test",
        [192, 0, 2, 2],
        86400,
    ));
    let lp = virtual_loop();
    let cache = CacheOptions {
        max_ttl: Duration::from_secs(600),
        ..CacheOptions::default()
    };
    let r = resolver(&lp, config(&[server.addr]).cache(cache));
    lookup(&lp, &r, a("short.example.test")).unwrap();
    lookup(&lp, &r, a("long.example.test")).unwrap();
    lp.advance(Duration::from_secs(59));
    lookup(&lp, &r, a("short.example.test")).unwrap();
    assert_eq!(server.count(), 2, "cached for its TTL");
    lp.advance(Duration::from_secs(2));
    lookup(&lp, &r, a("short.example.test")).unwrap();
    assert_eq!(server.count(), 3, "asked again after 60 s");
    lookup(&lp, &r, a("long.example.test")).unwrap();
    assert_eq!(server.count(), 3);
    lp.advance(Duration::from_secs(600 - 61));
    lookup(&lp, &r, a("long.example.test")).unwrap();
    assert_eq!(server.count(), 4, "a day's TTL capped at max_ttl");
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum() {
    // NXDOMAIN with an SOA whose MINIMUM (30) is below its TTL (3600).
    let server = DnsServer::start(sip_zone(5060));
    let lp = virtual_loop();
    let r = resolver(&lp, config(&[server.addr]));
    assert_eq!(lookup(&lp, &r, a("gone.example.test")).unwrap(), vec![]);
    // NODATA: the name exists, the type does not.
    assert_eq!(
        lookup(&lp, &r, DnsQuery::Naptr("uas1.example.test".into())).unwrap(),
        vec![]
    );
    lp.advance(Duration::from_secs(29));
    assert_eq!(lookup(&lp, &r, a("gone.example.test")).unwrap(), vec![]);
    assert_eq!(
        lookup(&lp, &r, DnsQuery::Naptr("uas1.example.test".into())).unwrap(),
        vec![]
    );
    assert_eq!(server.count(), 2);
    lp.advance(Duration::from_secs(2));
    assert_eq!(lookup(&lp, &r, a("gone.example.test")).unwrap(), vec![]);
    assert_eq!(server.count(), 3);

    // Capped at negative_max_ttl; without an SOA, not cached at all.
    let server = DnsServer::start(Zone::new().soa("example.test", 3600, 3600).a(
        "x.example.test",
        [192, 0, 2, 1],
        60,
    ));
    let bare = DnsServer::start(Zone::new());
    let cache = CacheOptions {
        negative_max_ttl: Duration::from_secs(10),
        ..CacheOptions::default()
    };
    let r = resolver(&lp, config(&[server.addr]).cache(cache));
    lookup(&lp, &r, a("gone.example.test")).unwrap();
    lp.advance(Duration::from_secs(9));
    lookup(&lp, &r, a("gone.example.test")).unwrap();
    assert_eq!(server.count(), 1);
    lp.advance(Duration::from_secs(2));
    lookup(&lp, &r, a("gone.example.test")).unwrap();
    assert_eq!(server.count(), 2);
    let r = resolver(&lp, config(&[bare.addr]));
    lookup(&lp, &r, a("gone.example.test")).unwrap();
    lookup(&lp, &r, a("gone.example.test")).unwrap();
    assert_eq!(bare.count(), 2);
}

#[test]
fn identical_questions_in_flight_share_one_query() {
    let server = DnsServer::start(sip_zone(5060));
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]));
    let one = start(&r, a("uas1.example.test"));
    let two = start(&r, a("UAS1.example.test."));
    let other = start(&r, DnsQuery::Aaaa("uas1.example.test".into()));
    assert_eq!(r.stats().in_flight, 2);
    let (one, two) = (wait(&lp, &one), wait(&lp, &two));
    assert_eq!(one.unwrap(), vec![v4([127, 0, 0, 1])]);
    assert_eq!(two.unwrap(), vec![v4([127, 0, 0, 1])]);
    assert_eq!(
        wait(&lp, &other).unwrap(),
        vec![DnsRecord::Aaaa(Ipv6Addr::LOCALHOST)]
    );
    assert_eq!(server.count(), 2);
    assert_eq!(r.stats().coalesced, 1);
}

#[test]
fn the_search_list_is_tried_for_short_names() {
    let zone = Zone::new()
        .a("pbx.example.test", [192, 0, 2, 10], 60)
        .a("pbx", [192, 0, 2, 99], 60)
        .a("pbx.corp.test", [192, 0, 2, 11], 60)
        .soa("test", 60, 60);
    let server = DnsServer::start(zone);
    let lp = real_loop();
    let search = vec!["nowhere.test".to_string(), "example.test".to_string()];
    let r = resolver(
        &lp,
        config(&[server.addr])
            .search(search.clone())
            .cache(CacheOptions {
                max_entries: 0,
                ..CacheOptions::default()
            }),
    );
    // Fewer dots than ndots (1): each search domain first, then as is.
    assert_eq!(
        lookup(&lp, &r, a("pbx")).unwrap(),
        vec![v4([192, 0, 2, 10])]
    );
    assert_eq!(
        server.asked().into_iter().map(|q| q.0).collect::<Vec<_>>(),
        ["pbx.nowhere.test", "pbx.example.test"]
    );
    // A trailing dot: absolute, no search.
    assert_eq!(
        lookup(&lp, &r, a("pbx.")).unwrap(),
        vec![v4([192, 0, 2, 99])]
    );
    assert_eq!(server.asked()[2].0, "pbx");
    // Enough dots: only as is.
    assert_eq!(
        lookup(&lp, &r, a("pbx.corp.test")).unwrap(),
        vec![v4([192, 0, 2, 11])]
    );
    assert_eq!(server.asked()[3].0, "pbx.corp.test");
    assert_eq!(server.count(), 4);
    // ndots 3: "pbx.corp" goes through the list and ends as is (NXDOMAIN).
    let r = resolver(&lp, config(&[server.addr]).search(search).ndots(3));
    assert_eq!(lookup(&lp, &r, a("pbx.corp")).unwrap(), vec![]);
    assert_eq!(
        server.asked()[4..]
            .iter()
            .map(|q| q.0.as_str())
            .collect::<Vec<_>>(),
        ["pbx.corp.nowhere.test", "pbx.corp.example.test", "pbx.corp"]
    );
}

#[test]
fn the_hosts_file_answers_first() {
    let server = DnsServer::start(Zone::new().a("pbx.example.test", [192, 0, 2, 1], 60));
    let lp = real_loop();
    let hosts = HostsFile::parse("10.1.2.3 pbx.example.test pbx\n");
    let r = resolver(&lp, config(&[server.addr]).hosts(hosts));
    let slot = start(&r, a("PBX.example.test"));
    assert_eq!(
        slot.borrow_mut().take().unwrap().unwrap(),
        vec![v4([10, 1, 2, 3])],
        "answered inside lookup"
    );
    let slot = start(&r, DnsQuery::Aaaa("pbx.example.test".into()));
    assert_eq!(
        slot.borrow_mut().take().unwrap().unwrap(),
        vec![],
        "the other family is empty"
    );
    assert_eq!(server.count(), 0);
    assert_eq!(r.stats().hosts_answers, 2);
    // SRV is not a hosts-file question.
    assert_eq!(
        lookup(&lp, &r, DnsQuery::Srv("_sip._udp.pbx.example.test".into())).unwrap(),
        vec![]
    );
    assert_eq!(server.count(), 1);
}

#[test]
fn in_flight_queries_are_bounded_and_the_rest_wait_or_fail() {
    let mut zone = Zone::new();
    for i in 0..4 {
        zone = zone.a(&format!("h{i}.example.test"), [192, 0, 2, i], 60);
    }
    let server = DnsServer::start(zone);
    let lp = real_loop();
    let r = resolver(&lp, config(&[server.addr]).max_in_flight(2).max_waiting(1));
    let slots: Vec<Slot> = (0..4)
        .map(|i| start(&r, a(&format!("h{i}.example.test"))))
        .collect();
    let s = r.stats();
    assert_eq!((s.in_flight, s.waiting, s.queries_sent), (2, 1, 2));
    assert_eq!(
        errno(slots[3].borrow_mut().take().expect("failed at once")),
        Errno::ENOBUFS
    );
    for (i, slot) in slots[..3].iter().enumerate() {
        assert_eq!(wait(&lp, slot).unwrap(), vec![v4([192, 0, 2, i as u8])]);
    }
    let s = r.stats();
    assert_eq!((s.in_flight, s.waiting, s.queries_sent), (0, 0, 3));
}

#[test]
fn dropping_the_resolver_fails_lookups_in_flight_with_ecanceled() {
    let silent = DnsServer::start(Zone::silent());
    let lp = real_loop();
    let r = resolver(&lp, config(&[silent.addr]).max_in_flight(1));
    let flying = start(&r, a("a.example.test"));
    let queued = start(&r, a("b.example.test"));
    assert_eq!((lp.registered_fds(), lp.pending_timers()), (1, 1));
    drop(r);
    assert_eq!(errno(flying.borrow_mut().take().unwrap()), Errno::ECANCELED);
    assert_eq!(errno(queued.borrow_mut().take().unwrap()), Errno::ECANCELED);
    assert_eq!(
        (lp.registered_fds(), lp.pending_timers()),
        (0, 0),
        "nothing left on the loop"
    );
}

#[test]
fn invalid_names_fail_at_once() {
    let lp = real_loop();
    let dead = dead_port();
    let r = resolver(&lp, config(&[dead.addr()]));
    for name in ["", ".", "a..b", &"x".repeat(300)] {
        let slot = start(&r, a(name));
        let answer = slot.borrow_mut().take().expect("answered inside lookup");
        assert_eq!(errno(answer), Errno::EINVAL, "{name:?}");
    }
}

#[test]
fn resolv_conf_parsing_builds_a_usable_config() {
    let c = DnsConfig::parse_resolv_conf(
        "nameserver 127.0.0.1\nsearch example.test\noptions ndots:2 timeout:1 attempts:1\n",
    );
    assert_eq!(c.nameservers, vec!["127.0.0.1:53".parse().unwrap()]);
    assert_eq!(c.search, vec!["example.test"]);
    assert_eq!(
        (c.ndots, c.timeout, c.attempts),
        (2, Duration::from_secs(1), 1)
    );
    let sys = DnsConfig::system();
    assert!(!sys.nameservers.is_empty());
}

// End to end: the dispatcher resolving through the stub resolver.

fn bind(spec: &str) -> Leg {
    Leg::bind(spec.parse::<LegSpec>().unwrap(), LegOptions::default()).unwrap()
}

/// A UAS answering every non-ACK request with 200 and counting them.
fn answering(lp: &Rc<dyn Eventloop>, leg: Leg) -> (Dispatcher, Rc<Cell<u32>>) {
    let uas = Dispatcher::new(vec![leg], Some(lp.clone()), DispatcherOptions::default()).unwrap();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    uas.set_receiver(move |d: &Dispatcher, p: Packet, _: LegId, _: &Source| {
        if let Packet::Request(req) = p {
            if req.method().as_str() != "ACK" {
                c.set(c.get() + 1);
                let mut ok = Response::for_request(&req, 200, "OK");
                ok.set_to_tag("uas");
                d.deliver(ok, DeliverOptions::default()).unwrap();
            }
        }
    });
    (uas, count)
}

fn send_options(
    lp: &Rc<dyn Eventloop>,
    uac: &Dispatcher,
    uri: &str,
    call_id: &str,
) -> Option<DeliveryOutcome> {
    let outcome: Rc<RefCell<Option<DeliveryOutcome>>> = Rc::default();
    let o = outcome.clone();
    let opts = DeliverOptions::with_callback(move |_, out| *o.borrow_mut() = Some(out));
    uac.deliver(dispatch::request("OPTIONS", uri, call_id, 1), opts)
        .unwrap();
    lp.run(Some(Duration::from_secs(10)), &|| {
        outcome.borrow().is_some()
    })
    .unwrap();
    outcome.borrow_mut().take()
}

#[test]
fn the_dispatcher_reaches_the_uas_the_naptr_srv_a_chain_names() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let uas_leg = bind("udp:127.0.0.1:0");
    let (_uas, count) = answering(&lp, uas_leg.clone());
    let port = uas_leg.local_addr().port();
    let zone = Zone::new()
        .naptr(
            "example.test",
            10,
            50,
            "s",
            "SIP+D2U",
            "_sip._udp.example.test",
            300,
        )
        .srv(
            "_sip._udp.example.test",
            10,
            0,
            port,
            "uas.example.test",
            300,
        )
        .a("uas.example.test", [127, 0, 0, 1], 300)
        .soa("example.test", 300, 60);
    let server = DnsServer::start(zone);
    let resolver = StubResolver::new(lp.clone(), config(&[server.addr]));
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            dns_resolver: Some(resolver.hook()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        send_options(&lp, &uac, "sip:x@example.test", "e2e-1"),
        Some(DeliveryOutcome::Completed(200))
    );
    assert_eq!(count.get(), 1);
    let asked: Vec<(String, RecordType)> = server
        .queries()
        .into_iter()
        .map(|q| (q.name, q.qtype))
        .collect();
    assert_eq!(asked[0], ("example.test".into(), RecordType::NAPTR));
    assert_eq!(asked[1], ("_sip._udp.example.test".into(), RecordType::SRV));
    assert!(asked.contains(&("uas.example.test".into(), RecordType::A)));
    // A second request is resolved from the cache.
    let before = server.count();
    assert_eq!(
        send_options(&lp, &uac, "sip:y@example.test", "e2e-2"),
        Some(DeliveryOutcome::Completed(200))
    );
    assert_eq!(server.count(), before);
    assert_eq!(count.get(), 2);
}

#[test]
fn the_dispatcher_fails_over_from_a_dead_srv_target_to_the_next() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let uas_leg = bind("udp:127.0.0.1:0");
    let (_uas, count) = answering(&lp, uas_leg.clone());
    let live = uas_leg.local_addr().port();
    let dead_sock = dead_port();
    let dead = dead_sock.port();
    let zone = Zone::new()
        .srv(
            "_sip._udp.failover.test",
            10,
            0,
            dead,
            "dead.failover.test",
            300,
        )
        .srv(
            "_sip._udp.failover.test",
            20,
            0,
            live,
            "live.failover.test",
            300,
        )
        .a("dead.failover.test", [127, 0, 0, 1], 300)
        .a("live.failover.test", [127, 0, 0, 1], 300)
        .soa("failover.test", 300, 60);
    let server = DnsServer::start(zone);
    let resolver = StubResolver::new(lp.clone(), config(&[server.addr]));
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            dns_resolver: Some(resolver.hook()),
            ..Default::default()
        },
    )
    .unwrap();
    drop(resolver);
    let t0 = std::time::Instant::now();
    assert_eq!(
        send_options(&lp, &uac, "sip:x@failover.test", "e2e-fo"),
        Some(DeliveryOutcome::Completed(200))
    );
    assert_eq!(count.get(), 1);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "failed over on ICMP, took {:?}",
        t0.elapsed()
    );
}

#[test]
fn two_deliveries_at_once_cost_one_query_per_question() {
    let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
    let uas_leg = bind("udp:127.0.0.1:0");
    let (_uas, count) = answering(&lp, uas_leg.clone());
    let port = uas_leg.local_addr().port();
    let zone = Zone::new()
        .srv("_sip._udp.twice.test", 10, 0, port, "uas.twice.test", 300)
        .a("uas.twice.test", [127, 0, 0, 1], 300)
        .soa("twice.test", 300, 60);
    let server = DnsServer::start(zone);
    let resolver = StubResolver::new(lp.clone(), config(&[server.addr]));
    let uac = Dispatcher::new(
        vec![bind("udp:127.0.0.1:0")],
        Some(lp.clone()),
        DispatcherOptions {
            dns_resolver: Some(resolver.hook()),
            ..Default::default()
        },
    )
    .unwrap();
    let outcomes: Rc<RefCell<Vec<DeliveryOutcome>>> = Rc::default();
    for call in ["twice-1", "twice-2"] {
        let o = outcomes.clone();
        let opts = DeliverOptions::with_callback(move |_, out| o.borrow_mut().push(out));
        uac.deliver(
            dispatch::request("OPTIONS", "sip:x@twice.test", call, 1),
            opts,
        )
        .unwrap();
    }
    lp.run(Some(Duration::from_secs(10)), &|| {
        outcomes.borrow().len() == 2
    })
    .unwrap();
    assert_eq!(*outcomes.borrow(), vec![DeliveryOutcome::Completed(200); 2]);
    assert_eq!(count.get(), 2);
    // NAPTR, SRV (UDP: the only leg), AAAA and A of the target: each asked
    // once for both deliveries (coalesced in flight).
    let mut asked: Vec<(String, RecordType)> = server
        .queries()
        .into_iter()
        .map(|q| (q.name, q.qtype))
        .collect();
    asked.sort_by(|a, b| (a.0.as_str(), a.1.to_string()).cmp(&(b.0.as_str(), b.1.to_string())));
    assert_eq!(
        asked,
        vec![
            ("_sip._udp.twice.test".into(), RecordType::SRV),
            ("twice.test".into(), RecordType::NAPTR),
            ("uas.twice.test".into(), RecordType::A),
            ("uas.twice.test".into(), RecordType::AAAA),
        ]
    );
}

#[test]
fn address_family_preference_orders_the_targets() {
    use sip_dispatch::dns::{DnsQuery, DnsRecord, DnsResolver};
    use sip_dispatch::packet::SipUri;
    let hook: DnsResolver = Rc::new(|q, answer| {
        answer(Ok(match q {
            DnsQuery::A(n) if n == "dual.test" => vec![DnsRecord::A([127, 0, 0, 1].into())],
            DnsQuery::Aaaa(n) if n == "dual.test" => vec![DnsRecord::Aaaa("::1".parse().unwrap())],
            _ => vec![],
        }))
    });
    for prefer_ipv6 in [true, false] {
        let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new().unwrap());
        let d = Dispatcher::new(
            vec![bind("udp:127.0.0.1:0"), bind("udp:[::1]:0")],
            Some(lp.clone()),
            DispatcherOptions {
                dns_resolver: Some(hook.clone()),
                prefer_ipv6: Some(prefer_ipv6),
                ..Default::default()
            },
        )
        .unwrap();
        let got: Rc<RefCell<Option<Vec<bool>>>> = Rc::default();
        let g = got.clone();
        d.resolve_uri(
            &SipUri::parse("sip:x@dual.test").unwrap(),
            &[],
            None,
            move |_, r| {
                *g.borrow_mut() = Some(r.unwrap().iter().map(|t| t.dst.addr.is_ipv6()).collect());
            },
        );
        lp.run(Some(Duration::from_secs(2)), &|| got.borrow().is_some())
            .unwrap();
        assert_eq!(
            got.borrow().clone().unwrap(),
            vec![prefer_ipv6, !prefer_ipv6]
        );
    }
}
