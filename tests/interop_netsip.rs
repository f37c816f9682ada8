//! Interop with Perl's Net::SIP (Debian package `libnet-sip-perl`), the
//! library this crate is modelled on, on loopback over UDP: a
//! Net::SIP::Simple UAC calls `uas`, and `uac` calls a Net::SIP::Simple
//! UAS. The Perl side checks what it got and exits 0 or 1.
//!
//! Without Net::SIP these tests fail and say what to install
//! (scripts/install-peers installs it).

mod bins;

use std::process::Command;
use std::time::Duration;

use bins::{Proc, TempDir, Uas, WAIT, require_peer, run};

/// A Net::SIP::Simple UAC on 127.0.0.1 over ARGV[1] (`udp` or `tcp`):
/// INVITE to ARGV[0], then BYE in the dialog.
/// Prints `invite STATUS CODE CONTENT-TYPE` and `bye STATUS CODE`; exits
/// 0 when the INVITE got a 2xx with an SDP body and the BYE a 200.
const PERL_UAC: &str = r#"
use strict; use warnings;
use IO::Socket::INET;
use Net::SIP;
$| = 1;
my ($to, $proto) = @ARGV;
my $sock = $proto eq 'tcp'
    ? IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1', LocalPort => 0,
        Listen => 10, ReuseAddr => 1)
    : IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0);
$sock or die "socket: $!";
my $ua = Net::SIP::Simple->new(from => 'sip:perl@127.0.0.1', leg => $sock);
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

/// A Net::SIP::Simple UAS on a free UDP port of 127.0.0.1 (ARGV[0]
/// `udp`), or UDP and TCP on the same port (`udp+tcp`): prints
/// `listening PORT`, answers one call, prints `established` on the ACK and
/// `bye` on the BYE, and exits 0 when it saw both.
const PERL_UAS: &str = r#"
use strict; use warnings;
use IO::Socket::INET;
use Net::SIP;
$| = 1;
my ($protos) = @ARGV;
my $sock = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
    or die "socket: $!";
my @legs = ($sock);
if ($protos eq 'udp+tcp') {
    # TCP on the same port as UDP; another UDP port when that one is taken.
    for (1 .. 20) {
        my $tcp = IO::Socket::INET->new(Proto => 'tcp', LocalAddr => '127.0.0.1',
            LocalPort => $sock->sockport, Listen => 10, ReuseAddr => 1);
        if ($tcp) { push @legs, $tcp; last }
        $sock = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
            or die "socket: $!";
        @legs = ($sock);
    }
    die "no TCP socket on a UDP port" if @legs < 2;
}
my $ua = Net::SIP::Simple->new(from => 'sip:perl@127.0.0.1', legs => \@legs);
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

fn require_netsip() {
    require_peer("perl", &["-MNet::SIP", "-e1"], true, "libnet-sip-perl");
}

fn perl(dir: &TempDir, name: &str, script: &str, args: &[&str]) -> Proc {
    let path = dir.write(name, script);
    let mut cmd = Command::new("perl");
    cmd.arg(path).args(args);
    Proc::spawn(name, cmd)
}

/// A Net::SIP UAC calls `uas` over `proto` and hangs up.
fn netsip_uac_calls_uas(proto: &str) {
    require_netsip();
    let mut uas = Uas::start(&["--listen", &format!("{proto}:127.0.0.1:0")]);
    let uri = match proto {
        "tcp" => format!("sip:bob@{};transport=tcp", uas.addr(proto, false)),
        _ => format!("sip:bob@{}", uas.addr(proto, false)),
    };
    let dir = TempDir::new("netsip-uac");
    let out = perl(&dir, "uac.pl", PERL_UAC, &[&uri, proto]).wait_exit(Duration::from_secs(40));
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

#[test]
fn netsip_uac_calls_our_uas_over_udp() {
    netsip_uac_calls_uas("udp");
}

/// Net::SIP connects from an ephemeral port; the responses go back over
/// its connection, and its ACK and BYE come over a connection too.
#[test]
fn netsip_uac_calls_our_uas_over_tcp() {
    netsip_uac_calls_uas("tcp");
}

#[test]
fn netsip_uac_is_rejected_by_our_uas_with_486() {
    require_netsip();
    let uas = Uas::udp(&["--final", "486"]);
    let uri = format!("sip:bob@{}", uas.addr("udp", false));
    let dir = TempDir::new("netsip-uac-486");
    let out = perl(&dir, "uac.pl", PERL_UAC, &[&uri, "udp"]).wait_exit(Duration::from_secs(40));
    assert_eq!(out.stdout, ["invite FAIL 486 -"], "{out:?}");
    assert_eq!(out.code(), 1, "{out:?}");
}

/// `uac --method INVITE` calls a Net::SIP UAS listening on `protos`
/// (`udp` or `udp+tcp`) at `uri_suffix`'s transport.
fn uac_calls_netsip_uas(protos: &str, uri_suffix: &str) {
    require_netsip();
    let dir = TempDir::new("netsip-uas");
    let mut perl_uas = perl(&dir, "uas.pl", PERL_UAS, &[protos]);
    let line = perl_uas
        .next_line(WAIT)
        .unwrap_or_else(|| panic!("no listening line: {}", perl_uas.stderr()));
    let port: u16 = line
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let uri = format!("sip:bob@127.0.0.1:{port}{uri_suffix}");
    let out = run(
        "uac",
        &["--method", "INVITE", "--hold-ms", "100", &uri],
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
            "listening ".to_owned() + &port.to_string(),
            "established".into(),
            "bye".into()
        ],
        "{perl_out:?}"
    );
    assert_eq!(perl_out.code(), 0, "{perl_out:?}");
}

#[test]
fn our_uac_calls_a_netsip_uas_over_udp() {
    uac_calls_netsip_uas("udp", "");
}

/// The INVITE goes over TCP. Net::SIP's 200 has a Contact without
/// `;transport=tcp`, so the ACK and BYE to that Contact go over UDP
/// (RFC 3263 4.1: a sip: URI with an IP and no transport means UDP): the
/// Perl UAS listens on UDP and TCP on the same port, as SIP UAs usually
/// do. (Net::SIP on TCP only would not get them: with no `;transport` the
/// dispatcher sends to an IP-literal URI over UDP only, and fails with
/// ENOPROTOOPT when it has no UDP leg.)
#[test]
fn our_uac_calls_a_netsip_uas_over_tcp() {
    uac_calls_netsip_uas("udp+tcp", ";transport=tcp");
}
