//! Interop with SIPp (Debian package `sip-tester`) on loopback, through
//! the example binaries: SIPp's built-in `uac` scenario against `uas`
//! (INVITE, 100, 180, 200, ACK, BYE, 200; 50 calls over UDP and over
//! TCP), and `uac` against SIPp's built-in `uas` scenario.
//!
//! Without sipp these tests fail and say what to install
//! (scripts/install-peers installs it).

mod bins;

use std::process::Command;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bins::{Output, Proc, TempDir, Uas, WAIT, free_port, port_taken, require_peer, run};

/// SIPp runs one at a time: each binds a control port (8888 and up) and,
/// for the uac scenario, the first free port from 5060; parallel runs
/// probing the same ports could collide.
static SIPP: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SIPP.lock().unwrap_or_else(|e| e.into_inner())
}

fn require_sipp() {
    require_peer("sipp", &["-v"], false, "sip-tester");
}

/// A `sipp` process started in `dir` (its logs are written there).
fn sipp(dir: &TempDir, args: &[&str]) -> Proc {
    let mut cmd = Command::new("sipp");
    cmd.args(args).current_dir(dir.path());
    Proc::spawn("sipp", cmd)
}

/// The cumulative counter `name` (e.g. `SuccessfulCall(C)`) from the last
/// line of a `-trace_stat` file (semicolon-separated, header first).
fn stat(csv: &str, name: &str) -> u64 {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().expect("stat header").split(';').collect();
    let last: Vec<&str> = lines.next_back().expect("stat line").split(';').collect();
    let i = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no {name} in {header:?}"));
    last[i]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name} = {:?}: {e}", last[i]))
}

/// Details for a failure message: what sipp left in its files.
fn sipp_logs(dir: &TempDir, out: &Output) -> String {
    format!(
        "exit {:?}\nerrors.log:\n{}\nscreen.log:\n{}\nstderr:\n{}",
        out.status,
        dir.read("errors.log"),
        dir.read("screen.log"),
        out.stderr
    )
}

/// `sipp -sn uac` makes 50 calls to a `uas` leg; all must succeed.
fn sipp_calls_uas(proto: &str) {
    require_sipp();
    let _one = lock();
    let mut uas = Uas::start(&["--listen", &format!("{proto}:127.0.0.1:0")]);
    let target = uas.addr(proto, false).to_string();
    let dir = TempDir::new("sipp-uac");
    let mut args = vec![
        "-sn",
        "uac",
        &target,
        "-i",
        "127.0.0.1",
        "-m",
        "50",
        "-r",
        "25",
        "-l",
        "10",
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
        "-trace_stat",
        "-stf",
        "stat.csv",
        "-trace_err",
        "-error_file",
        "errors.log",
        "-trace_screen",
        "-screen_file",
        "screen.log",
    ];
    if proto == "tcp" {
        // TCP, one socket for all calls.
        args.extend(["-t", "t1"]);
    }
    let out = sipp(&dir, &args).wait_exit(Duration::from_secs(90));
    assert_eq!(out.status.code(), Some(0), "{}", sipp_logs(&dir, &out));
    let csv = dir.read("stat.csv");
    assert_eq!(stat(&csv, "SuccessfulCall(C)"), 50, "{csv}");
    assert_eq!(stat(&csv, "FailedCall(C)"), 0, "{csv}");
    assert_eq!(stat(&csv, "OutgoingCall(C)"), 50, "{csv}");
    // The uas saw 50 calls, each INVITE and BYE answered with 200.
    let mut invites = 0;
    let mut byes = 0;
    while invites < 50 || byes < 50 {
        let Some(line) = uas.proc.next_line(WAIT) else {
            panic!(
                "uas: {invites} INVITE and {byes} BYE lines; {:?}",
                uas.proc.seen
            );
        };
        match line.split(' ').next() {
            Some("INVITE") => invites += 1,
            Some("BYE") => byes += 1,
            _ => panic!("unexpected uas line {line:?}"),
        }
        assert!(line.ends_with(" -> 200"), "{line:?}");
    }
    assert_eq!((invites, byes), (50, 50));
}

#[test]
fn sipp_uac_makes_50_calls_to_uas_over_udp() {
    sipp_calls_uas("udp");
}

#[test]
fn sipp_uac_makes_50_calls_to_uas_over_tcp() {
    sipp_calls_uas("tcp");
}

/// Starts `sipp -sn uas` for one call on a free port and waits until it
/// has bound it. Retries with another port when one was taken meanwhile.
fn sipp_uas(dir: &TempDir, proto: &str) -> (Proc, u16) {
    for _ in 0..3 {
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec![
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port_s,
            "-m",
            "1",
            "-nostdin",
            "-trace_stat",
            "-stf",
            "stat.csv",
            "-trace_msg",
            "-message_file",
            "messages.log",
            "-trace_err",
            "-error_file",
            "errors.log",
            "-trace_screen",
            "-screen_file",
            "screen.log",
        ];
        if proto == "tcp" {
            args.extend(["-t", "t1"]);
        }
        let mut proc = sipp(dir, &args);
        let end = Instant::now() + WAIT;
        while Instant::now() < end && proc.running() {
            if port_taken(proto, port) {
                return (proc, port);
            }
            sleep(Duration::from_millis(20));
        }
        eprintln!(
            "sipp -sn uas on port {port} did not start: {}; retrying",
            proc.stderr()
        );
    }
    panic!("could not start sipp -sn uas");
}

/// `uac --method INVITE` calls `sipp -sn uas`: the call completes (INVITE,
/// 180, 200, ACK, BYE, 200).
fn uac_calls_sipp(proto: &str) -> (TempDir, Output) {
    require_sipp();
    let _one = lock();
    let dir = TempDir::new("sipp-uas");
    let (proc, port) = sipp_uas(&dir, proto);
    let uri = match proto {
        "tcp" => format!("sip:service@127.0.0.1:{port};transport=tcp"),
        _ => format!("sip:service@127.0.0.1:{port}"),
    };
    let out = run("uac", &["--method", "INVITE", &uri], WAIT);
    assert_eq!(out.stdout, ["200 OK", "200 OK"], "{out:?}");
    assert_eq!(out.code(), 0, "{out:?}");
    // The scenario ends with a 4 s pause that absorbs retransmissions.
    let sipp_out = proc.wait_exit(Duration::from_secs(30));
    let messages = dir.read("messages.log");
    let bye = messages.find("BYE sip:").expect("sipp received the BYE");
    assert!(
        messages[bye..].contains("SIP/2.0 200 OK"),
        "sipp answered the BYE: {messages}"
    );
    (dir, sipp_out)
}

#[test]
fn uac_calls_sipp_uas_over_udp() {
    let (dir, out) = uac_calls_sipp("udp");
    assert_eq!(out.status.code(), Some(0), "{}", sipp_logs(&dir, &out));
    let csv = dir.read("stat.csv");
    assert_eq!(stat(&csv, "SuccessfulCall(C)"), 1, "{csv}");
}

/// Over TCP the call completes too, but SIPp counts it as failed: the uac
/// closes its connection when done, while SIPp's scenario still pauses
/// 4 s after the BYE's 200 and takes the close as a failure
/// (FailedTcpClosed). So only the dialog is checked here.
#[test]
fn uac_calls_sipp_uas_over_tcp() {
    let (dir, out) = uac_calls_sipp("tcp");
    let csv = dir.read("stat.csv");
    assert_eq!(
        stat(&csv, "FailedCall(C)") + stat(&csv, "SuccessfulCall(C)"),
        1,
        "{}",
        sipp_logs(&dir, &out)
    );
    let messages = dir.read("messages.log");
    for m in ["INVITE sip:", "SIP/2.0 180 Ringing", "ACK sip:", "BYE sip:"] {
        assert!(messages.contains(m), "{m} not in {messages}");
    }
}
