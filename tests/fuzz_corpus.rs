//! Replays the fuzz seed corpora (`fuzz/seeds/<target>/`) and the kept
//! regressions (`fuzz/regressions/<target>/`, crashes the fuzzers found,
//! fixed since) through the same checks the fuzz targets run
//! (`fuzz/checks.rs`), with a plain `cargo test`: no cargo-fuzz, no
//! nightly features.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("directory entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`; reports every failing file.
fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no seeds for {target}");
    let failed: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = fs::read(path).expect("read seed");
            catch_unwind(AssertUnwindSafe(|| check(&data)))
                .err()
                .map(|_| path.display().to_string())
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn parse_packet_corpus() {
    replay("parse_packet", checks::packet);
}

#[test]
fn parse_uri_corpus() {
    replay("parse_uri", checks::uri);
}

#[test]
fn stream_framer_corpus() {
    replay("stream_framer", checks::stream_framer);
}

#[test]
fn leg_receive_corpus() {
    replay("leg_receive", checks::leg_receive);
}

/// The seeds cover every RFC 4475 and RFC 5118 fixture.
#[test]
fn seeds_include_every_fixture() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for rfc in ["rfc4475", "rfc5118"] {
        for e in fs::read_dir(fixtures.join(rfc)).expect("fixtures") {
            let path = e.expect("entry").path();
            if path.extension().is_some_and(|x| x == "dat") {
                let stem = path.file_stem().unwrap().to_string_lossy();
                let seed = format!("{rfc}-{stem}");
                for target in ["parse_packet", "leg_receive"] {
                    let want = fs::read(&path).unwrap();
                    let have = fs::read(
                        Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join("fuzz/seeds")
                            .join(target)
                            .join(&seed),
                    )
                    .unwrap_or_else(|_| panic!("missing seed {target}/{seed}"));
                    assert_eq!(have, want, "{target}/{seed} is the fixture");
                }
            }
        }
    }
}

#[test]
fn datagram_separator_splits() {
    assert_eq!(
        checks::datagrams(b"a\xff\xfeb\xff\xfe"),
        [&b"a"[..], b"b", b""]
    );
    assert_eq!(checks::datagrams(b"abc"), [&b"abc"[..]]);
}
