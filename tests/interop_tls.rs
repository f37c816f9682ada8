//! Interop over TLS (Debian's sipp is built without TLS): Perl's Net::SIP
//! (libnet-sip-perl with IO::Socket::SSL) calling `uas` and called by
//! `uac`, and Kamailio with its TLS module (kamailio-tls-modules) as a
//! proxy between `uac` and `uas`. Certificates are made inside the test
//! (rcgen); the peers verify ours against the test CA and we theirs.
//!
//! Without the peers these tests fail and say what to install
//! (scripts/install-peers installs them).
#![cfg(feature = "tls")]

mod bins;
mod pki;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bins::{Proc, TempDir, Uas, WAIT, free_port, port_taken, require_peer, run};
use pki::Ca;

/// A Net::SIP::Simple UAC on a TLS leg of 127.0.0.1 (ARGV: URI, cert,
/// key, CA file): INVITE, then BYE in the dialog. Prints `invite STATUS
/// CODE CONTENT-TYPE` and `bye STATUS CODE`; exits 0 when both got 2xx.
const PERL_UAC: &str = r#"
use strict; use warnings;
use IO::Socket::INET;
use Net::SIP;
$| = 1;
my ($to, $cert, $key, $ca) = @ARGV;
my $sock = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1', LocalPort => 0,
    Listen => 10, ReuseAddr => 1) or die "socket: $!";
my $tls = { SSL_cert_file => $cert, SSL_key_file => $key, SSL_ca_file => $ca };
my $leg = Net::SIP::Leg->new(sock => $sock, tls => $tls);
my $ua = Net::SIP::Simple->new(from => 'sips:perl@127.0.0.1', legs => [$leg]);
my ($final, $code, $packet);
my $call = $ua->invite($to,
    cb_final => sub {
        my ($status, $c, %info) = @_;
        ($final, $code, $packet) = ($status, $info{code}, $info{packet});
    },
) or die "invite failed: " . $ua->error;
$ua->loop(15, \$final);
$final //= 'TIMEOUT';
$code //= $packet ? $packet->code : '-';
my $ctype = $packet ? ($packet->get_header('content-type') // '-') : '-';
print "invite $final $code $ctype\n";
exit 1 if $final ne 'OK' || $ctype ne 'application/sdp' || !$packet->sdp_body;
my ($bye_status, $bye_code);
$call->request('BYE', undef, cb_final => sub {
    my ($status, $c, $info) = @_;
    ($bye_status, $bye_code) = ($status, $info->{code});
});
$ua->loop(15, \$bye_status);
print "bye " . ($bye_status // 'TIMEOUT') . " " . ($bye_code // '-') . "\n";
exit(($bye_status // '') eq 'OK' && ($bye_code // 0) == 200 ? 0 : 1);
"#;

/// A Net::SIP::Simple UAS on a TLS leg of 127.0.0.1 (ARGV: cert, key, CA
/// file): prints `listening PORT`, answers one call, prints `established`
/// on the ACK and `bye` on the BYE, and exits 0 when it saw both.
const PERL_UAS: &str = r#"
use strict; use warnings;
use IO::Socket::INET;
use Net::SIP;
$| = 1;
my ($cert, $key, $ca) = @ARGV;
my $sock = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1', LocalPort => 0,
    Listen => 10, ReuseAddr => 1) or die "socket: $!";
my $tls = { SSL_cert_file => $cert, SSL_key_file => $key, SSL_ca_file => $ca };
my $leg = Net::SIP::Leg->new(sock => $sock, tls => $tls);
my $ua = Net::SIP::Simple->new(from => 'sips:perl@127.0.0.1', legs => [$leg]);
my ($established, $bye);
$ua->listen(
    cb_established => sub { $established = 1; print "established\n"; },
    recv_bye => sub { $bye = 1; print "bye\n"; },
);
print "listening ", $sock->sockport, "\n";
$ua->loop(20, \$bye);
# Let the 200 to the BYE go out.
$ua->loop(0.2);
exit($established && $bye ? 0 : 1);
"#;

fn require_netsip_tls() {
    require_peer("perl", &["-MNet::SIP", "-e1"], true, "libnet-sip-perl");
    require_peer(
        "perl",
        &["-MIO::Socket::SSL", "-e1"],
        true,
        "libio-socket-ssl-perl",
    );
}

/// A test CA and one certificate for 127.0.0.1 (and localhost) written
/// to a temp dir: (dir, cert, key, CA file).
fn files(prefix: &str) -> (TempDir, String, String, String) {
    let dir = TempDir::new(prefix);
    let ca = Ca::new("Interop Test CA");
    let (cert, key) = ca
        .leaf(&["127.0.0.1", "localhost"])
        .write(dir.path(), "peer");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let s = |p: PathBuf| p.to_str().expect("utf-8 path").to_owned();
    (dir, s(cert), s(key), s(ca_file))
}

fn perl(dir: &TempDir, name: &str, script: &str, args: &[&str]) -> Proc {
    let path = dir.write(name, script);
    let mut cmd = Command::new("perl");
    cmd.arg(path).args(args);
    Proc::spawn(name, cmd)
}

/// Net::SIP calls `uas` at a `sips:` URI and hangs up; each side checks
/// the other's certificate against the test CA.
#[test]
fn netsip_uac_calls_our_uas_over_tls() {
    require_netsip_tls();
    let (dir, cert, key, ca) = files("netsip-tls-uac");
    let mut uas = Uas::start(&[
        "--listen",
        "tls:127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let uri = format!("sips:bob@{}", uas.addr("tls", false));
    let out = perl(&dir, "uac.pl", PERL_UAC, &[&uri, &cert, &key, &ca])
        .wait_exit(Duration::from_secs(40));
    assert_eq!(
        out.stdout,
        ["invite OK 200 application/sdp", "bye OK 200"],
        "{out:?}"
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let invite = uas.proc.expect_line_matching("INVITE ... -> 200", |l| {
        l.starts_with("INVITE ") && l.ends_with(" -> 200")
    });
    let call_id = invite.split(' ').nth(1).unwrap().to_owned();
    uas.proc.expect_line(&format!("BYE {call_id} -> 200"));
}

/// `uac --method INVITE` calls a Net::SIP UAS at a `sips:` URI; the ACK
/// and BYE reuse the connection.
#[test]
fn our_uac_calls_a_netsip_uas_over_tls() {
    require_netsip_tls();
    let (dir, cert, key, ca) = files("netsip-tls-uas");
    let mut perl_uas = perl(&dir, "uas.pl", PERL_UAS, &[&cert, &key, &ca]);
    let line = perl_uas
        .next_line(WAIT)
        .unwrap_or_else(|| panic!("no listening line: {}", perl_uas.stderr()));
    let port: u16 = line
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let uri = format!("sips:bob@127.0.0.1:{port}");
    let out = run(
        "uac",
        &[
            "--tls-ca",
            &ca,
            "--method",
            "INVITE",
            "--hold-ms",
            "100",
            &uri,
        ],
        WAIT,
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout.len(), 2, "{out:?}");
    assert_eq!(out.stdout[0], "200 OK", "the INVITE: {out:?}");
    // Net::SIP answers a BYE with "200 Closing".
    assert!(out.stdout[1].starts_with("200 "), "the BYE: {out:?}");
    let perl_out = perl_uas.wait_exit(Duration::from_secs(30));
    assert_eq!(
        perl_out.stdout,
        [
            format!("listening {port}"),
            "established".into(),
            "bye".into()
        ],
        "{perl_out:?}"
    );
    assert_eq!(perl_out.code(), 0, "{perl_out:?}");
}

/// The directory of Kamailio's modules with the TLS module in it.
fn kamailio_modules() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .collect();
    dirs.push(PathBuf::from("/usr/lib/kamailio/modules"));
    dirs.into_iter().find(|d| d.join("tls.so").exists())
}

/// A Kamailio in its own process group: SIGTERM to the group on drop,
/// SIGKILL if it has not gone after a bound.
struct Kamailio {
    proc: Option<Proc>,
}

impl Kamailio {
    fn group_signal(&self, sig: i32) {
        if let Some(p) = &self.proc {
            // SAFETY: kill(2) on the process group we created for our
            // own child (process_group(0): its pgid is its pid).
            unsafe {
                libc::kill(-p.pid(), sig);
            }
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.group_signal(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        if let Some(p) = self.proc.as_mut() {
            while p.running() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Children of a main process that did not wait for them.
        self.group_signal(libc::SIGKILL);
    }
}

/// Kamailio as a record-routing TLS proxy on `port`: verifies the
/// certificates of the servers it connects to against `ca`, presents
/// `cert` to the clients that connect to it.
fn kamailio_config(
    dir: &TempDir,
    modules: &std::path::Path,
    port: u16,
    cert: &str,
    key: &str,
    ca: &str,
) -> PathBuf {
    let tls_cfg = dir.write(
        "tls.cfg",
        &format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
             require_certificate = no\nprivate_key = {key}\ncertificate = {cert}\nca_list = {ca}\n\n\
             [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n\
             require_certificate = yes\nca_list = {ca}\n"
        ),
    );
    dir.write(
        "kamailio.cfg",
        &format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
tcp_children=1
auto_aliases=no
listen=tls:127.0.0.1:{port}
enable_tls=yes
mpath="{modules}/"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "pv.so"
loadmodule "xlog.so"
modparam("tls", "config", "{tls_cfg}")
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_NOTICE", "relaying $rm $ru from $proto:$si:$sp\n");
    if (has_totag()) {{
        loose_route();
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{ t_relay(); exit; }}
    record_route();
    if (!t_relay()) {{ sl_reply_error(); }}
}}
"#,
            modules = modules.display(),
            tls_cfg = tls_cfg.display(),
        ),
    )
}

/// Starts Kamailio on a free port; returns it and the port.
fn start_kamailio(
    dir: &TempDir,
    modules: &std::path::Path,
    cert: &str,
    key: &str,
    ca: &str,
) -> (Kamailio, u16) {
    for _attempt in 0..5 {
        let port = free_port();
        let cfg = kamailio_config(dir, modules, port, cert, key, ca);
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-w"])
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .process_group(0);
        let mut k = Kamailio {
            proc: Some(Proc::spawn("kamailio", cmd)),
        };
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            let running = k.proc.as_mut().is_some_and(|p| p.running());
            if !running {
                break;
            }
            if port_taken("tcp", port) {
                return (k, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let stderr = k.proc.as_ref().map(|p| p.stderr()).unwrap_or_default();
        drop(k);
        if !stderr.contains("Address already in use") {
            panic!("kamailio did not start on port {port}: {stderr}");
        }
    }
    panic!("kamailio found no free port");
}

/// `uac` calls `uas` through Kamailio as a TLS proxy (outgoing proxy,
/// Record-Route): INVITE, ACK and BYE all over TLS, each hop verified
/// against the test CA.
#[test]
fn kamailio_tls_proxy_between_uac_and_uas() {
    require_peer("kamailio", &["-v"], true, "kamailio kamailio-tls-modules");
    let Some(modules) = kamailio_modules() else {
        panic!(
            "interop peer missing: Kamailio's TLS module (tls.so). Install it: \
             `apt-get install kamailio-tls-modules` (scripts/install-peers does this)"
        );
    };
    let (dir, cert, key, ca) = files("kamailio-tls");
    let (kamailio, kport) = start_kamailio(&dir, &modules, &cert, &key, &ca);
    let mut uas = Uas::start(&[
        "--listen",
        "tls:127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let uri = format!("sips:bob@{}", uas.addr("tls", false));
    let proxy = format!("tls:127.0.0.1:{kport}");
    let out = run(
        "uac",
        &[
            "--tls-ca",
            &ca,
            "--outgoing-proxy",
            &proxy,
            "--method",
            "INVITE",
            "--hold-ms",
            "100",
            &uri,
        ],
        Duration::from_secs(20),
    );
    let log = kamailio
        .proc
        .as_ref()
        .map(|p| p.stderr())
        .unwrap_or_default();
    assert_eq!(out.stdout, ["200 OK", "200 OK"], "{out:?}\nkamailio: {log}");
    assert_eq!(out.code(), 0, "{out:?}");
    let invite = uas.proc.expect_line_matching("INVITE ... -> 200", |l| {
        l.starts_with("INVITE ") && l.ends_with(" -> 200")
    });
    let call_id = invite.split(' ').nth(1).unwrap().to_owned();
    uas.proc.expect_line(&format!("BYE {call_id} -> 200"));
    // Every request went through Kamailio, over TLS.
    let log = kamailio
        .proc
        .as_ref()
        .map(|p| p.stderr())
        .unwrap_or_default();
    for method in ["INVITE", "ACK", "BYE"] {
        assert!(
            log.contains(&format!("relaying {method} ")) && log.contains("from tls:127.0.0.1:"),
            "kamailio did not relay the {method} over TLS: {log}"
        );
    }
}
