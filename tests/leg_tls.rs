//! TLS legs through the public API, on loopback, with certificates made
//! inside the test (rcgen): a request and its response over TLS (IPv4 and
//! IPv6, identity by name and by address), connection reuse, a wrong host
//! name, an unknown CA, an expired certificate, a client certificate
//! required and missing, handshakes that stall (both sides, under virtual
//! time), framing across TLS records, RFC 5923 aliases with their
//! certificate check, a client-only leg, configuration errors, and the
//! dispatcher failing over to the next SRV target after a bad
//! certificate.
#![cfg(feature = "tls")]

mod common;
#[path = "common/dns_server.rs"]
mod dns_server;
mod pki;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pki::{Ca, Leaf};
use sip_dispatch::dispatcher::{DeliverOptions, DeliveryOutcome, Dispatcher, DispatcherOptions};
use sip_dispatch::dns::DnsConfig;
use sip_dispatch::eventloop::{Eventloop, MioEventloop};
use sip_dispatch::leg::{
    ClientAuth, Destination, Leg, LegEvent, LegOptions, LegSpec, Protocol, SendStatus, Source,
    TlsConfig,
};
use sip_dispatch::packet::{Packet, Response};
use sip_dispatch::{Errno, Error};

fn tls_leg(addr: SocketAddr, tls: TlsConfig) -> Leg {
    tls_leg_with(addr, tls, LegOptions::default())
}

fn tls_leg_with(addr: SocketAddr, tls: TlsConfig, opts: LegOptions) -> Leg {
    Leg::bind(
        LegSpec {
            proto: Protocol::Tls,
            addr,
        },
        LegOptions {
            tls: Some(tls),
            ..opts
        },
    )
    .expect("bind tls leg")
}

/// A server leg with `leaf`, and a client-only leg trusting `ca`.
fn pair(v6: bool, ca: &Ca, leaf: &Leaf) -> (Leg, Leg) {
    let server = tls_leg(loopback(v6), leaf.config());
    let client = tls_leg(
        loopback(v6),
        TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap(),
    );
    (server, client)
}

fn dst(addr: SocketAddr, host: Option<&str>) -> Destination {
    Destination {
        proto: Protocol::Tls,
        addr,
        host: host.map(Rc::from),
        conn: None,
    }
}

/// Every error the leg reported (outcomes and unreachables), in order.
fn errors(events: &Events) -> Vec<Error> {
    events
        .0
        .borrow()
        .iter()
        .filter_map(|r| match &r.event {
            LegEvent::Outcome(_, Err(e)) | LegEvent::Unreachable(_, e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn virtual_loop() -> Rc<MioEventloop> {
    let lp = Rc::new(MioEventloop::new_virtual());
    lp.set_virtual_grace(Duration::from_millis(20));
    lp
}

/// Sends a request from `client` to `to`; returns its status.
fn send_request(client: &Leg, to: &Destination, call_id: &str, token: u64) -> SendStatus {
    let bytes = prepared(client, &request(call_id), &format!("z9hG4bK{call_id}"), to);
    client.send(bytes, to, Some(token))
}

/// A request and its response over TLS; a second request reuses the
/// connection. The identity is a name (`bob.example`) or, without host,
/// the address (an IP address in the certificate).
fn request_and_response(v6: bool, host: Option<&str>) {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["bob.example", "127.0.0.1", "::1"]);
    let lp = Rc::new(MioEventloop::new().unwrap());
    let (server, client) = pair(v6, &ca, &leaf);
    assert_eq!(server.protocol(), Protocol::Tls);
    let sev = attach(&server, &lp);
    let cev = attach(&client, &lp);
    let to = dst(server.local_addr(), host);
    assert_eq!(send_request(&client, &to, "tls-1", 1), SendStatus::Queued);
    assert!(run_until(&lp, BOUND, || sev.packet_count() == 1));
    assert_eq!(cev.outcome(1), Some(Ok(())), "{:?}", errors(&cev));
    let (p, src) = sev.packets().pop().unwrap();
    assert_eq!(src.proto, Protocol::Tls);
    assert!(src.conn.is_some());
    let Packet::Request(req) = p else {
        panic!("a request")
    };
    let via = req.top_via().unwrap();
    assert_eq!(via.transport(), "TLS");
    assert!(
        via.params().get("alias").is_some(),
        "our Via over TLS has alias"
    );
    let resp = Response::for_message(&req, 200, "OK", true);
    assert_eq!(
        server.send_response(&resp, &src.reply_destination(), None),
        SendStatus::Sent
    );
    assert!(run_until(&lp, BOUND, || cev.packet_count() == 1));
    let (p, _) = cev.packets().pop().unwrap();
    assert!(matches!(p, Packet::Response(r) if r.code() == 200));
    // The second request takes the same connection.
    let _ = send_request(&client, &to, "tls-2", 2);
    assert!(run_until(&lp, BOUND, || sev.packet_count() == 2));
    assert_eq!(client.connection_count(), 1);
    assert_eq!(server.connection_count(), 1);
    assert_eq!(server.stats().connections_opened, 1);
}

#[test]
fn request_and_response_v4_by_name() {
    request_and_response(false, Some("bob.example"));
}

#[test]
fn request_and_response_v4_by_address() {
    request_and_response(false, None);
}

#[test]
fn request_and_response_v6_by_address() {
    request_and_response(true, Some("::1"));
}

/// Sends to a server whose certificate fails the check; returns the
/// error the send ended with (and checks nothing reached the server).
fn rejected(server_tls: TlsConfig, client_tls: TlsConfig, host: Option<&str>) -> Error {
    let lp = Rc::new(MioEventloop::new().unwrap());
    let server = tls_leg(loopback(false), server_tls);
    let client = tls_leg(loopback(false), client_tls);
    let sev = attach(&server, &lp);
    let cev = attach(&client, &lp);
    let to = dst(server.local_addr(), host);
    assert_eq!(send_request(&client, &to, "bad", 7), SendStatus::Queued);
    assert!(run_until(&lp, BOUND, || cev.outcome(7).is_some()));
    spin(&lp, Duration::from_millis(50));
    assert_eq!(sev.packet_count(), 0, "nothing passes a failed handshake");
    assert_eq!(client.connection_count(), 0);
    let errs = errors(&cev);
    assert_eq!(errs.len(), 1, "one error for the one send: {errs:?}");
    errs[0].clone()
}

#[test]
fn wrong_host_name_is_rejected() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["alice.example"]);
    let client = TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap();
    let e = rejected(leaf.config(), client, Some("bob.example"));
    assert_eq!(e.errno(), Errno::ECONNABORTED, "{e}");
    assert!(
        e.context()
            .contains("certificate not valid for name bob.example"),
        "{e}"
    );
    assert!(
        e.context().contains("alice.example"),
        "names what it is valid for: {e}"
    );
    assert!(e.context().starts_with("TLS to 127.0.0.1:"), "{e}");
    assert!(e.context().contains("(bob.example)"), "{e}");
}

#[test]
fn address_not_in_the_certificate_is_rejected() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["bob.example"]);
    let client = TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap();
    let e = rejected(leaf.config(), client, None);
    assert!(
        e.context()
            .contains("certificate not valid for name 127.0.0.1"),
        "{e}"
    );
}

#[test]
fn unknown_ca_is_rejected() {
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let leaf = ca.leaf(&["bob.example"]);
    let client = TlsConfig::client()
        .with_ca_pem(other.pem.as_bytes())
        .unwrap();
    let e = rejected(leaf.config(), client, Some("bob.example"));
    assert_eq!(e.errno(), Errno::ECONNABORTED, "{e}");
    assert!(e.context().contains("unknown issuer"), "{e}");
    assert!(e.context().contains("server certificate"), "{e}");
}

#[test]
fn expired_certificate_is_rejected() {
    let ca = Ca::new("Test CA");
    let leaf = ca.expired_leaf(&["bob.example"]);
    let client = TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap();
    let e = rejected(leaf.config(), client, Some("bob.example"));
    assert_eq!(e.errno(), Errno::ECONNABORTED, "{e}");
    assert!(e.context().contains("certificate expired on "), "{e}");
}

/// The server requires a client certificate: without one the client is
/// told why; with one from the CA it gets through.
#[test]
fn client_certificate_required_and_missing() {
    let ca = Ca::new("Test CA");
    let server_tls = ca
        .leaf(&["bob.example"])
        .config()
        .with_ca_pem(ca.pem.as_bytes())
        .unwrap()
        .with_client_auth(ClientAuth::Required);
    let lp = Rc::new(MioEventloop::new().unwrap());
    let server = tls_leg(loopback(false), server_tls);
    let sev = attach(&server, &lp);
    // No certificate.
    let anonymous = tls_leg(
        loopback(false),
        TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap(),
    );
    let aev = attach(&anonymous, &lp);
    let to = dst(server.local_addr(), Some("bob.example"));
    let _ = send_request(&anonymous, &to, "anon", 1);
    assert!(run_until(&lp, BOUND, || !errors(&aev).is_empty()));
    let e = &errors(&aev)[0];
    assert_eq!(e.errno(), Errno::ECONNABORTED, "{e}");
    assert!(e.context().contains("requires a client certificate"), "{e}");
    assert_eq!(sev.packet_count(), 0);
    // With a certificate from the CA.
    let named = tls_leg(
        loopback(false),
        ca.leaf(&["alice.example"])
            .config()
            .with_ca_pem(ca.pem.as_bytes())
            .unwrap(),
    );
    let nev = attach(&named, &lp);
    let _ = send_request(&named, &to, "named", 2);
    assert!(run_until(&lp, BOUND, || sev.packet_count() == 1));
    assert_eq!(nev.outcome(2), Some(Ok(())));
    // A certificate from another CA is refused by the server.
    let stranger = tls_leg(
        loopback(false),
        Ca::new("Other CA")
            .leaf(&["mallory.example"])
            .config()
            .with_ca_pem(ca.pem.as_bytes())
            .unwrap(),
    );
    let xev = attach(&stranger, &lp);
    let _ = send_request(&stranger, &to, "stranger", 3);
    assert!(run_until(&lp, BOUND, || !errors(&xev).is_empty()));
    let e = &errors(&xev)[0];
    assert!(e.context().contains("rejected our certificate"), "{e}");
    assert_eq!(sev.packet_count(), 1);
}

/// A peer that accepts the TCP connection and never answers the
/// ClientHello: the send fails with ETIMEDOUT after the handshake
/// timeout (virtual time).
#[test]
fn stalled_handshake_times_out_on_the_client() {
    let lp = virtual_loop();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = tls_leg(
        loopback(false),
        TlsConfig::client().with_handshake_timeout(Duration::from_secs(7)),
    );
    let cev = attach(&client, &lp);
    let start = lp.now();
    let _ = send_request(
        &client,
        &dst(silent.local_addr().unwrap(), None),
        "stall",
        1,
    );
    assert!(run_until(&lp, Duration::from_secs(60), || cev
        .outcome(1)
        .is_some()));
    let waited = lp.now() - start;
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(9),
        "{waited:?}"
    );
    let e = &errors(&cev)[0];
    assert_eq!(e.errno(), Errno::ETIMEDOUT, "{e}");
    assert!(
        e.context().contains("handshake not finished after 7s"),
        "{e}"
    );
    assert_eq!(client.connection_count(), 0);
    drop(silent);
}

/// A client that connects and says nothing is closed after the
/// handshake timeout (virtual time).
#[test]
fn stalled_handshake_times_out_on_the_server() {
    let ca = Ca::new("Test CA");
    let lp = virtual_loop();
    let server = tls_leg(
        loopback(false),
        ca.leaf(&["bob.example"])
            .config()
            .with_handshake_timeout(Duration::from_secs(5)),
    );
    let sev = attach(&server, &lp);
    let _silent = TcpStream::connect(server.local_addr()).unwrap();
    assert!(run_until(&lp, Duration::from_secs(2), || server
        .connection_count()
        == 1));
    let start = lp.now();
    assert!(run_until(&lp, Duration::from_secs(60), || server
        .connection_count()
        == 0));
    let waited = lp.now() - start;
    assert!(waited <= Duration::from_secs(6), "{waited:?}");
    assert_eq!(sev.closed().len(), 1);
    assert_eq!(server.stats().connections_limited, 1);
}

/// A raw rustls client writes messages a byte per TLS record, two in one
/// record, and one larger than a record: the leg cuts exactly the
/// messages out.
#[test]
fn framing_across_tls_records() {
    let ca = Ca::new("Test CA");
    let leaf = ca.leaf(&["bob.example"]);
    let lp = Rc::new(MioEventloop::new().unwrap());
    let server = tls_leg(loopback(false), leaf.config());
    let sev = attach(&server, &lp);
    let addr = server.local_addr();
    let ca_pem = ca.pem.clone();
    let writer = std::thread::spawn(move || {
        let mut tls = raw_client(addr, &ca_pem, "bob.example");
        let local = tls.sock.local_addr().unwrap().to_string();
        let one = raw_request(Protocol::Tls, &local, "bytewise", "hello");
        for b in one.as_bytes() {
            tls.write_all(std::slice::from_ref(b)).unwrap();
        }
        let two = format!(
            "\r\n{}{}",
            raw_request(Protocol::Tls, &local, "first", "one"),
            raw_request(Protocol::Tls, &local, "second", "two")
        );
        tls.write_all(two.as_bytes()).unwrap();
        let big = "x".repeat(40_000);
        tls.write_all(raw_request(Protocol::Tls, &local, "big", &big).as_bytes())
            .unwrap();
        tls.flush().unwrap();
        // Keep the connection until the leg has read everything.
        std::thread::sleep(Duration::from_millis(500));
    });
    assert!(run_until(&lp, BOUND, || sev.packet_count() == 4));
    let ids: Vec<String> = sev
        .packets()
        .iter()
        .map(|(p, _)| p.call_id().unwrap_or("").to_owned())
        .collect();
    assert_eq!(ids, ["bytewise", "first", "second", "big"]);
    let packets = sev.packets();
    assert_eq!(packets[0].0.body(), b"hello");
    assert_eq!(packets[3].0.body().len(), 40_000);
    assert_eq!(server.stats().parse_errors, 0);
    assert_eq!(server.stats().keepalives, 1);
    writer.join().unwrap();
}

/// A blocking rustls client connected to `addr`, verifying `name`
/// against the CA (PEM).
fn raw_client(
    addr: SocketAddr,
    ca_pem: &str,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(BOUND)).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// A message, then a record that does not decrypt: the message goes up,
/// then the connection is closed (EPROTO, logged).
#[test]
fn a_broken_record_closes_the_connection_after_the_messages_before_it() {
    let ca = Ca::new("Test CA");
    let lp = Rc::new(MioEventloop::new().unwrap());
    let server = tls_leg(loopback(false), ca.leaf(&["bob.example"]).config());
    let sev = attach(&server, &lp);
    let (addr, ca_pem) = (server.local_addr(), ca.pem.clone());
    let writer = std::thread::spawn(move || {
        let mut tls = raw_client(addr, &ca_pem, "bob.example");
        let local = tls.sock.local_addr().unwrap().to_string();
        tls.write_all(raw_request(Protocol::Tls, &local, "before", "").as_bytes())
            .unwrap();
        tls.flush().unwrap();
        // An application-data record of garbage: its AEAD tag fails.
        tls.sock
            .write_all(b"\x17\x03\x03\x00\x20AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .unwrap();
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tls.sock, &mut rest);
    });
    assert!(run_until(&lp, BOUND, || sev.closed().len() == 1));
    assert_eq!(sev.packet_count(), 1);
    assert_eq!(sev.packets()[0].0.call_id(), Some("before"));
    assert_eq!(server.connection_count(), 0);
    writer.join().unwrap();
}

/// RFC 5923: B connects to A with `alias` in its Via (sent-by
/// `b.example`) and a client certificate for that name; A's requests to
/// `b.example` at B's port then use B's connection, without a new one.
#[test]
fn alias_reuses_the_connection_the_peer_opened() {
    let ca = Ca::new("Test CA");
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = tls_leg(
        loopback(false),
        ca.leaf(&["a.example"])
            .config()
            .with_ca_pem(ca.pem.as_bytes())
            .unwrap()
            .with_client_auth(ClientAuth::Optional),
    );
    let b = tls_leg_with(
        loopback(false),
        ca.leaf(&["b.example"])
            .config()
            .with_ca_pem(ca.pem.as_bytes())
            .unwrap(),
        LegOptions {
            via_host: Some("b.example".to_owned()),
            ..LegOptions::default()
        },
    );
    let aev = attach(&a, &lp);
    let bev = attach(&b, &lp);
    let _ = send_request(&b, &dst(a.local_addr(), Some("a.example")), "to-a", 1);
    assert!(run_until(&lp, BOUND, || aev.packet_count() == 1));
    let (p, _) = aev.packets().pop().unwrap();
    let via = p.top_via().unwrap();
    assert_eq!(
        (via.host(), via.port()),
        ("b.example", Some(b.local_addr().port()))
    );
    assert!(via.params().get("alias").is_some());
    // A calls B at the address and port of its sent-by.
    let to_b = dst(b.local_addr(), Some("b.example"));
    let status = send_request(&a, &to_b, "to-b", 2);
    assert_eq!(status, SendStatus::Sent, "{:?}", errors(&aev));
    assert!(run_until(&lp, BOUND, || bev.packet_count() == 1));
    assert_eq!(a.connection_count(), 1, "no new connection");
    assert_eq!(b.connection_count(), 1);
    let (_, src): (Packet, Source) = bev.packets().pop().unwrap();
    assert_eq!(src.addr, a.local_addr(), "over B's own connection to A");
}

/// Without a certificate that covers the sent-by, the alias is not used:
/// a client that offers no certificate, and one whose certificate names
/// another host.
#[test]
fn alias_needs_a_certificate_for_the_sent_by() {
    let ca = Ca::new("Test CA");
    let lp = Rc::new(MioEventloop::new().unwrap());
    let a = tls_leg(
        loopback(false),
        ca.leaf(&["a.example"])
            .config()
            .with_ca_pem(ca.pem.as_bytes())
            .unwrap()
            .with_client_auth(ClientAuth::Optional),
    );
    let aev = attach(&a, &lp);
    for (n, (cert_names, offer)) in [(["c.example"], true), (["b.example"], false)]
        .into_iter()
        .enumerate()
    {
        let b = tls_leg_with(
            loopback(false),
            ca.leaf(&cert_names)
                .config()
                .with_ca_pem(ca.pem.as_bytes())
                .unwrap()
                .with_client_cert(offer),
            LegOptions {
                via_host: Some("b.example".to_owned()),
                ..LegOptions::default()
            },
        );
        let bev = attach(&b, &lp);
        let _ = send_request(&b, &dst(a.local_addr(), Some("a.example")), "to-a", 1);
        assert!(run_until(&lp, BOUND, || aev.packet_count() == n + 1));
        let before = a.stats().connections_opened;
        let token = 10 + n as u64;
        let _ = send_request(&a, &dst(b.local_addr(), Some("b.example")), "to-b", token);
        assert_eq!(
            a.stats().connections_opened,
            before + 1,
            "a new connection, not the alias"
        );
        assert!(run_until(&lp, BOUND, || aev.outcome(token).is_some()
            || bev.packet_count() > 0));
        if offer {
            // B's certificate does not cover b.example: the new
            // connection fails its check too.
            assert!(run_until(&lp, BOUND, || aev.outcome(token).is_some()));
            assert_eq!(aev.outcome(token), Some(Err(Errno::ECONNABORTED)));
        }
    }
}

/// A TLS leg without certificate connects out but does not listen.
#[test]
fn client_only_leg_does_not_listen() {
    let client = tls_leg(loopback(false), TlsConfig::client());
    assert_ne!(client.local_addr().port(), 0);
    let err = TcpStream::connect_timeout(&client.local_addr(), BOUND).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let c = client.contact(Some("alice"), "127.0.0.1".parse().unwrap());
    assert!(c.to_string().starts_with("sips:alice@127.0.0.1:"), "{c}");
}

#[test]
fn configuration_errors_are_clear() {
    let e = TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL);
    assert!(e.context().contains("/nonexistent/cert.pem"), "{e}");
    let ca = Ca::new("Test CA");
    let (one, two) = (ca.leaf(&["a.example"]), ca.leaf(&["b.example"]));
    let e = TlsConfig::from_pem(one.cert.as_bytes(), two.key.as_bytes()).unwrap_err();
    assert!(e.context().contains("certificate and key"), "{e}");
    let e = TlsConfig::client()
        .with_ca_pem(b"not a certificate")
        .unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL);
    let e = Leg::bind("tls:127.0.0.1:0".parse().unwrap(), LegOptions::default()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("LegOptions::tls"), "{e}");
    // Client certificates asked for, with roots to check them.
    let cfg = one
        .config()
        .with_ca_pem(ca.pem.as_bytes())
        .unwrap()
        .with_client_auth(ClientAuth::Required);
    assert!(cfg.has_certificate());
    assert!(
        !format!("{cfg:?}").contains("PRIVATE"),
        "Debug shows no key"
    );
    tls_leg(loopback(false), cfg);
}

/// Delivers an OPTIONS to `uri` from a dispatcher with one client-only TLS
/// leg (trusting `ca`) resolving through `zone`; `good` answers 200, and
/// nothing may reach `bad`. Returns the outcome.
fn deliver_through_dns(
    lp: &Rc<MioEventloop>,
    ca: &Ca,
    zone: dns_server::Zone,
    uri: &str,
    good: &Leg,
    good_ev: &Events,
    bad_ev: &Events,
) -> Option<DeliveryOutcome> {
    let dns = dns_server::DnsServer::start(zone);
    let client = tls_leg(
        loopback(false),
        TlsConfig::client().with_ca_pem(ca.pem.as_bytes()).unwrap(),
    );
    let d = Dispatcher::new(
        vec![client],
        Some(lp.clone() as Rc<dyn Eventloop>),
        DispatcherOptions {
            dns: Some(DnsConfig::with_nameservers(vec![dns.addr]).timeout(Duration::from_secs(3))),
            ..DispatcherOptions::default()
        },
    )
    .unwrap();
    let answered = Rc::new(RefCell::new(None::<DeliveryOutcome>));
    let text = format!(
        "OPTIONS {uri} SIP/2.0\r\nMax-Forwards: 70\r\n\
         From: <sips:alice@example.test>;tag=a1\r\nTo: <{uri}>\r\n\
         Call-ID: dns-tls-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        good.local_addr().port()
    );
    let got = answered.clone();
    d.deliver(
        Packet::parse(text.as_bytes()).unwrap(),
        DeliverOptions::with_callback(move |_, outcome| *got.borrow_mut() = Some(outcome)),
    )
    .unwrap();
    let before = good_ev.packet_count();
    assert!(run_until(lp, BOUND, || good_ev.packet_count() > before));
    let (p, src) = good_ev.packets().pop().unwrap();
    let Packet::Request(req) = p else {
        panic!("a request")
    };
    let resp = Response::for_message(&req, 200, "OK", true);
    let _ = good.send_response(&resp, &src.reply_destination(), None);
    assert!(run_until(lp, BOUND, || answered.borrow().is_some()));
    assert_eq!(bad_ev.packet_count(), 0);
    d.shutdown();
    answered.borrow_mut().take()
}

/// `sips:` through the dispatcher and DNS (`_sips._tcp` SRV): the first
/// target's certificate is for another name, so the delivery fails over
/// to the second, whose certificate is for the URI's host (RFC 5922: not
/// the SRV target's name).
#[test]
fn dispatcher_fails_over_to_the_next_target_after_a_bad_certificate() {
    use dns_server::Zone;
    let ca = Ca::new("Test CA");
    let lp = Rc::new(MioEventloop::new().unwrap());
    let bad = tls_leg(loopback(false), ca.leaf(&["other.example"]).config());
    let good = tls_leg(loopback(false), ca.leaf(&["example.test"]).config());
    let bad_ev = attach(&bad, &lp);
    let good_ev = attach(&good, &lp);
    let zone = Zone::new()
        .srv(
            "_sips._tcp.example.test",
            10,
            0,
            bad.local_addr().port(),
            "first.example.test",
            60,
        )
        .srv(
            "_sips._tcp.example.test",
            20,
            0,
            good.local_addr().port(),
            "second.example.test",
            60,
        )
        .a("first.example.test", [127, 0, 0, 1], 60)
        .a("second.example.test", [127, 0, 0, 1], 60);
    let outcome = deliver_through_dns(
        &lp,
        &ca,
        zone,
        "sips:bob@example.test",
        &good,
        &good_ev,
        &bad_ev,
    );
    assert_eq!(outcome, Some(DeliveryOutcome::Completed(200)));
}

/// A `sip:` URI whose domain offers only `SIPS+D2T` in NAPTR goes over
/// TLS (`_sips._tcp` SRV), verified for the domain.
#[test]
fn naptr_sips_d2t_selects_tls() {
    use dns_server::Zone;
    let ca = Ca::new("Test CA");
    let lp = Rc::new(MioEventloop::new().unwrap());
    let good = tls_leg(loopback(false), ca.leaf(&["naptr.test"]).config());
    let good_ev = attach(&good, &lp);
    let zone = Zone::new()
        .naptr(
            "naptr.test",
            10,
            10,
            "s",
            "SIPS+D2T",
            "_sips._tcp.naptr.test",
            60,
        )
        .srv(
            "_sips._tcp.naptr.test",
            10,
            0,
            good.local_addr().port(),
            "server.naptr.test",
            60,
        )
        .a("server.naptr.test", [127, 0, 0, 1], 60);
    let outcome = deliver_through_dns(
        &lp,
        &ca,
        zone,
        "sip:bob@naptr.test",
        &good,
        &good_ev,
        &Events::default(),
    );
    assert_eq!(outcome, Some(DeliveryOutcome::Completed(200)));
    let (_, src) = good_ev.packets().pop().unwrap();
    assert_eq!(src.proto, Protocol::Tls);
}
