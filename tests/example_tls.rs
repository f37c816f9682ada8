//! The `uas` and `uac` examples over TLS (EXAMPLES.md: `--tls-cert`,
//! `--tls-key`, `--tls-ca`, `tls:` specs, `sips:` and `;transport=tls`),
//! with certificates made inside the test: a call, OPTIONS in a window
//! over one connection, and the rejections the uac reports (a wrong host
//! name, an unknown CA, an expired certificate, a client certificate
//! required and missing), plus the usage errors.
#![cfg(feature = "tls")]

mod bins;
mod pki;

use std::path::PathBuf;
use std::time::Duration;

use bins::{TempDir, Uas, WAIT, run};
use pki::{Ca, Leaf};

/// A CA and files: `ca.pem`, and the server's certificate and key.
struct Files {
    dir: TempDir,
    ca: Ca,
    ca_file: PathBuf,
}

impl Files {
    fn new(prefix: &str) -> Files {
        let dir = TempDir::new(prefix);
        let ca = Ca::new("Example Test CA");
        let ca_file = ca.write(dir.path(), "ca.pem");
        Files { dir, ca, ca_file }
    }

    fn leaf(&self, leaf: &Leaf, name: &str) -> (String, String) {
        let (c, k) = leaf.write(self.dir.path(), name);
        (path(&c), path(&k))
    }

    fn ca(&self) -> String {
        path(&self.ca_file)
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

/// `uas` on a TLS leg of 127.0.0.1 with this certificate, and more flags.
fn tls_uas(cert: &str, key: &str, extra: &[&str]) -> Uas {
    let mut args = vec![
        "--listen",
        "tls:127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(extra);
    Uas::start(&args)
}

#[test]
fn uac_calls_uas_over_tls() {
    let f = Files::new("tls-call");
    let (cert, key) = f.leaf(&f.ca.leaf(&["localhost", "127.0.0.1"]), "server");
    let mut uas = tls_uas(&cert, &key, &[]);
    let addr = uas.addr("tls", false);
    let uri = format!("sips:bob@{addr}");
    let out = run(
        "uac",
        &[
            "--tls-ca",
            &f.ca(),
            "--method",
            "INVITE",
            "--hold-ms",
            "50",
            &uri,
        ],
        WAIT,
    );
    assert_eq!(out.stdout, ["200 OK", "200 OK"], "{out:?}");
    assert_eq!(out.code(), 0, "{out:?}");
    let invite = uas.proc.expect_line_matching("INVITE ... -> 200", |l| {
        l.starts_with("INVITE ") && l.ends_with(" -> 200")
    });
    let call_id = invite.split(' ').nth(1).unwrap().to_owned();
    uas.proc.expect_line(&format!("BYE {call_id} -> 200"));
}

/// `;transport=tls` on a sip: URI goes over TLS too; a window of OPTIONS
/// shares the one connection.
#[test]
fn transport_tls_and_a_window_of_options() {
    let f = Files::new("tls-window");
    let (cert, key) = f.leaf(&f.ca.leaf(&["127.0.0.1"]), "server");
    let uas = tls_uas(&cert, &key, &[]);
    let uri = format!("sip:bob@{};transport=tls", uas.addr("tls", false));
    let out = run(
        "uac",
        &[
            "--tls-ca",
            &f.ca(),
            "--count",
            "200",
            "--window",
            "20",
            &uri,
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let summary = out.stdout.last().unwrap();
    assert!(
        summary.starts_with("sent=200 ok=200 failed=0 "),
        "{summary}: {out:?}"
    );
}

/// The uac's error line for a call to `uas` with the certificate `make`
/// issues (from the test CA, which the uac trusts when `trust` is true;
/// else it has the system's roots).
fn uac_error(make: impl Fn(&Ca) -> Leaf, trust: bool) -> String {
    let f = Files::new("tls-reject");
    let (cert, key) = f.leaf(&make(&f.ca), "server");
    let uas = tls_uas(&cert, &key, &[]);
    let uri = format!("sips:bob@{}", uas.addr("tls", false));
    let ca_file = f.ca();
    let mut args = Vec::new();
    if trust {
        args.extend(["--tls-ca", ca_file.as_str()]);
    }
    args.push(uri.as_str());
    let out = run("uac", &args, WAIT);
    assert_eq!(out.code(), 2, "a failed delivery: {out:?}");
    assert_eq!(out.stdout.len(), 1, "{out:?}");
    out.stdout[0].clone()
}

#[test]
fn uac_rejects_a_certificate_for_another_host() {
    let line = uac_error(|ca| ca.leaf(&["localhost"]), true);
    assert!(
        line.starts_with("error ECONNABORTED: TLS to 127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.contains("certificate not valid for name 127.0.0.1"),
        "{line}"
    );
    assert!(line.contains("localhost"), "{line}");
}

#[test]
fn uac_rejects_an_unknown_ca() {
    // No --tls-ca: the system's roots do not know the test CA.
    let line = uac_error(|ca| ca.leaf(&["127.0.0.1"]), false);
    assert!(line.starts_with("error ECONNABORTED: "), "{line}");
    assert!(line.contains("unknown issuer"), "{line}");
    assert!(line.contains("the system's roots"), "{line}");
}

#[test]
fn uac_rejects_an_expired_certificate() {
    let line = uac_error(|ca| ca.expired_leaf(&["127.0.0.1"]), true);
    assert!(
        line.starts_with("error ECONNABORTED: ") && line.contains("certificate expired on "),
        "{line}"
    );
}

/// `uas --tls-client-auth required`: a uac without certificate is told
/// why; one with a certificate from the CA gets its 200.
#[test]
fn client_certificate_required_and_missing() {
    let f = Files::new("tls-mutual");
    let (cert, key) = f.leaf(&f.ca.leaf(&["127.0.0.1"]), "server");
    let (ccert, ckey) = f.leaf(&f.ca.leaf(&["uac.example"]), "client");
    let ca = f.ca();
    let uas = tls_uas(
        &cert,
        &key,
        &["--tls-ca", &ca, "--tls-client-auth", "required"],
    );
    let uri = format!("sips:bob@{}", uas.addr("tls", false));
    let out = run("uac", &["--tls-ca", &ca, &uri], WAIT);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stdout[0].starts_with("error ECONNABORTED: ")
            && out.stdout[0].contains("requires a client certificate"),
        "{out:?}"
    );
    let out = run(
        "uac",
        &[
            "--tls-ca",
            &ca,
            "--tls-cert",
            &ccert,
            "--tls-key",
            &ckey,
            &uri,
        ],
        WAIT,
    );
    assert_eq!(out.stdout, ["200 OK"], "{out:?}");
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn tls_usage_errors() {
    // Listening on TLS without a certificate.
    let out = run("uas", &["--listen", "tls:127.0.0.1:0"], WAIT);
    assert_eq!(out.code(), 64, "{out:?}");
    assert!(out.stderr.contains("--tls-cert"), "{out:?}");
    // A certificate without its key.
    let out = run(
        "uac",
        &["--tls-cert", "/nonexistent.pem", "sips:bob@127.0.0.1"],
        WAIT,
    );
    assert_eq!(out.code(), 64, "{out:?}");
    // Files that cannot be read.
    let out = run(
        "uas",
        &[
            "--listen",
            "tls:127.0.0.1:0",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        WAIT,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("/nonexistent/cert.pem"), "{out:?}");
}

/// `stateless_proxy` bridges UDP to TLS: `uac` over UDP to the proxy,
/// which forwards over TLS to `uas` (`;transport=tls` in the URI), and
/// over TLS on both sides (Record-Route keeps it in the dialog).
#[test]
fn stateless_proxy_forwards_over_tls() {
    let f = Files::new("tls-proxy");
    let (cert, key) = f.leaf(&f.ca.leaf(&["127.0.0.1"]), "server");
    let ca = f.ca();
    let mut uas = tls_uas(&cert, &key, &[]);
    let uas_addr = uas.addr("tls", false);
    let mut proxy = bins::Proc::example(
        "stateless_proxy",
        &[
            "--listen",
            "tls:127.0.0.1:0",
            "--listen",
            "udp:127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
            "--record-route",
        ],
    );
    let mut listening = Vec::new();
    for _ in 0..2 {
        let line = proxy.next_line(WAIT).expect("a listening line");
        let spec = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_owned();
        listening.push(spec);
    }
    let (tls_spec, udp_spec) = (&listening[0], &listening[1]);
    assert!(tls_spec.starts_with("tls:") && udp_spec.starts_with("udp:"));
    for (proxy_spec, uri) in [
        (
            udp_spec.clone(),
            format!("sip:bob@{uas_addr};transport=tls"),
        ),
        (tls_spec.clone(), format!("sips:bob@{uas_addr}")),
    ] {
        let out = run(
            "uac",
            &[
                "--tls-ca",
                &ca,
                "--outgoing-proxy",
                &proxy_spec,
                "--method",
                "INVITE",
                "--hold-ms",
                "50",
                &uri,
            ],
            Duration::from_secs(20),
        );
        assert_eq!(
            out.stdout,
            ["200 OK", "200 OK"],
            "via {proxy_spec}: {out:?}"
        );
        assert_eq!(out.code(), 0, "{out:?}");
    }
    let byes = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.starts_with("BYE ") && l.ends_with(" -> 200"))
            .count()
    };
    let end = std::time::Instant::now() + WAIT;
    while byes(&uas.proc.seen) < 2 && std::time::Instant::now() < end {
        uas.proc.next_line(Duration::from_millis(200));
    }
    assert_eq!(byes(&uas.proc.seen), 2, "{:?}", uas.proc.seen);
}
