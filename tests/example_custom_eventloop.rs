//! Runs the `custom_eventloop` example program (two dispatchers on an
//! `Eventloop` implemented on poll(2)) and checks its command-line contract:
//! the output lines, the exit codes, `--help` and a bad flag.
//!
//! The binary is `target/<profile>/examples/custom_eventloop`, next to this
//! test's `deps` directory. A plain `cargo test` builds the examples before
//! running tests, but `cargo test --test example_custom_eventloop` does not,
//! so the first test asks cargo to build it (a no-op when it is up to date).
//! Every wait is bounded: a hung child is killed and the test fails with
//! whatever it printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// How long one run of the example may take (it needs milliseconds).
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// How long building the example may take.
const BUILD_LIMIT: Duration = Duration::from_secs(600);

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a command to completion, or kills it after `limit` and panics.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Read both pipes on threads, so that a chatty child never blocks on a
    // full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{what} did not finish within {limit:?}; killed.\n\
             stdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

/// `target/<profile>/examples/custom_eventloop`, from this test's own path
/// `target/<profile>/deps/example_custom_eventloop-<hash>`.
fn example_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("custom_eventloop{}", std::env::consts::EXE_SUFFIX))
}

/// The example binary, built (once per test process) if needed.
fn example() -> &'static Path {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let path = example_path();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--example", "custom_eventloop"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        // The same profile as this test: `debug` is the dev profile.
        let profile = path
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        match profile.as_str() {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let out = run_bounded(build, BUILD_LIMIT);
        assert!(
            out.status.success(),
            "building the example failed ({}):\n{}",
            out.status,
            out.stderr
        );
        assert!(
            path.is_file(),
            "the example is not at {} after building it",
            path.display()
        );
        path
    })
}

fn run_example(args: &[&str]) -> Output {
    let mut cmd = Command::new(example());
    cmd.args(args).env("RUST_LOG", "warn");
    run_bounded(cmd, RUN_LIMIT)
}

fn describe(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status, out.stdout, out.stderr
    )
}

#[test]
fn five_options_one_after_another_are_all_answered() {
    let out = run_example(&["--count", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "200 OK",
            "200 OK",
            "200 OK",
            "200 OK",
            "200 OK",
            "custom event loop: 5/5 OPTIONS answered",
        ],
        "{}",
        describe(&out)
    );
}

#[test]
fn five_options_all_at_once_are_all_answered() {
    let out = run_example(&["--count=5", "--window=5"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| **l == "200 OK").count(),
        5,
        "{}",
        describe(&out)
    );
    assert_eq!(
        lines.last(),
        Some(&"custom event loop: 5/5 OPTIONS answered"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_bad_command_line_exits_64_with_the_usage() {
    for args in [
        &["--no-such-flag"][..],
        &["--count"],
        &["--count", "many"],
        &["--count", "0"],
    ] {
        let out = run_example(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", describe(&out));
        assert!(
            out.stderr.contains("usage: custom_eventloop"),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            !out.stdout.contains("OPTIONS answered"),
            "{args:?}: it ran anyway: {}",
            describe(&out)
        );
    }
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    let out = run_example(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        out.stdout.starts_with("usage: custom_eventloop"),
        "{}",
        describe(&out)
    );
    assert!(out.stdout.contains("--count N"), "{}", describe(&out));
}
