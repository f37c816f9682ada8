//! The demo, through its binary: the call completes, the lost INVITE and
//! its retransmission T1 later are drawn, every line fits 80 columns.

use std::process::Command;
use std::time::Duration;

fn example(name: &str) -> std::path::PathBuf {
    // `cargo test --test X` does not build examples: build this one (a
    // no-op when it is current), then run it from the same profile.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--example", name]);
    if release {
        build.arg("--release");
    }
    assert!(
        build.status().expect("cargo runs").success(),
        "building example {name}"
    );
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

#[test]
fn demo_completes_the_call_and_shows_the_retransmission() {
    let mut child = Command::new(example("demo"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the demo starts");
    // Bounded: the demo ends by itself in about a second; 20 s is a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not finish in 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("utf-8");
    assert!(status.success(), "exit {status:?}\n{out}");
    for line in out.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    let verdict = out.lines().last().expect("a verdict");
    assert_eq!(
        verdict,
        "verdict: call completed: INVITE 200, ACK, BYE 200; lost 1, retransmitted 1"
    );
    let rows: Vec<&str> = out.lines().filter(|l| l.contains('|')).collect();
    let labels = [
        "INVITE",
        "INVITE",
        "INVITE",
        "100 Trying",
        "180 Ringing",
        "200 OK",
        "ACK",
        "BYE",
        "200 OK",
    ];
    for l in labels {
        assert!(rows.iter().any(|r| r.contains(l)), "no {l} row:\n{out}");
    }
    let time = |row: &str| {
        row.split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
            .expect("a time")
    };
    let lost = rows
        .iter()
        .find(|r| r.ends_with("lost on purpose"))
        .expect("the lost INVITE");
    assert!(lost.contains("INVITE") && lost.contains('x'));
    let again = rows
        .iter()
        .find(|r| r.ends_with("retransmission"))
        .expect("its retransmission");
    let gap = time(again) - time(lost);
    // Timer A: T1 = 500 ms after the first send (loose bound: noisy machine).
    assert!(
        (495.0..650.0).contains(&gap),
        "retransmission {gap} ms after the lost INVITE"
    );
    // INVITE x3 (one lost), 100 x2, 180 x2, 200 x2, ACK x2, BYE x2, 200 x2.
    assert_eq!(rows.len(), 15, "{out}");
}
