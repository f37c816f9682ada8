//! A TCP listener that runs out of file descriptors (EMFILE) takes the
//! connections still queued once descriptors are free again, without a new
//! connection to wake it (the listener is edge-triggered: a failed accept
//! leaves no event behind, so the leg retries on a timer).
//!
//! Alone in its file: it lowers this process's descriptor limit, which
//! would disturb tests running beside it in the same process.

mod common;

use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use common::{BOUND, attach, raw_request, run_until, spin};
use sip_dispatch::eventloop::MioEventloop;
use sip_dispatch::leg::{LegOptions, Protocol};

/// Restores the descriptor limit when dropped (also on a failed assert).
struct Limit(libc::rlimit);

impl Limit {
    fn lower_to(soft: libc::rlim_t) -> Limit {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid pointer to an rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        // SAFETY: a valid pointer to an rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) }, 0);
        Limit(old)
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        // SAFETY: a valid pointer to an rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
    }
}

fn highest_fd() -> libc::rlim_t {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::rlim_t>().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn accept_resumes_after_emfile_without_a_new_connection() {
    const CLIENTS: usize = 5;
    let lp = Rc::new(MioEventloop::new().unwrap());
    let leg = common::bind_loopback(Protocol::Tcp, false, LegOptions::default());
    let events = attach(&leg, &lp);
    let addr = leg.local_addr();
    spin(&lp, Duration::from_millis(20));

    // Room for the clients and a few more; then every free descriptor
    // below the limit is taken, so accept has none.
    let limit = Limit::lower_to(highest_fd() + 1 + CLIENTS as libc::rlim_t + 8);
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect_timeout(&addr, BOUND).expect("connect (queued)"))
        .collect();
    let mut fillers = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
        assert!(fillers.len() < 10_000, "the limit does not hold");
    }
    // The leg tries, fails (EMFILE) and keeps trying: nothing accepted.
    spin(&lp, Duration::from_millis(350));
    assert_eq!(leg.stats().connections_opened, 0);

    // Descriptors free again; no new connection arrives.
    drop(fillers);
    drop(limit);
    let all = run_until(&lp, BOUND, || {
        leg.stats().connections_opened == CLIENTS as u64
    });
    assert!(
        all,
        "accepted {} of {CLIENTS} queued connections",
        leg.stats().connections_opened
    );
    assert_eq!(leg.stats().connections_open, CLIENTS as u64);

    // And they serve.
    for (i, c) in clients.iter_mut().enumerate() {
        let text = raw_request(Protocol::Tcp, "127.0.0.1", &format!("emfile-{i}"), "");
        c.write_all(text.as_bytes()).unwrap();
    }
    assert!(run_until(&lp, BOUND, || events.packet_count() == CLIENTS));
}
