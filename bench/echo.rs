//! The raw UDP echo of `bench/run`: the physical limit of the machine for a
//! request/response server, one `recvfrom` and one `sendto` per request,
//! on a `mio::Poll` (the same poller as the dispatcher's event loop).
//!
//! ```text
//! echo [--listen [udp:]HOST:PORT]     (default udp:127.0.0.1:0)
//! ```
//!
//! Prints `listening udp:HOST:PORT` (the real port), then returns every
//! datagram to its sender unchanged until killed. It is a tool of the
//! benchmark suite, not an example program.

use std::io;
use std::net::SocketAddr;
use std::process::exit;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv == ["--bench"] {
        // `cargo bench` runs every bench target with `--bench`.
        println!("echo: a tool of bench/run (see bench/README.md); nothing to do");
        return;
    }
    let mut listen = "127.0.0.1:0".to_owned();
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--listen" => match it.next() {
                Some(v) => listen = v.strip_prefix("udp:").unwrap_or(&v).to_owned(),
                None => usage(),
            },
            "--help" | "-h" => {
                println!("usage: echo [--listen [udp:]HOST:PORT]");
                return;
            }
            _ => usage(),
        }
    }
    let addr: SocketAddr = listen.parse().unwrap_or_else(|_| usage());
    if let Err(e) = run(addr) {
        eprintln!("echo: {e}");
        exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: echo [--listen [udp:]HOST:PORT]");
    exit(64)
}

fn run(addr: SocketAddr) -> io::Result<()> {
    let mut socket = UdpSocket::bind(addr)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, Token(0), Interest::READABLE)?;
    println!("listening udp:{}", socket.local_addr()?);
    let mut events = Events::with_capacity(16);
    let mut buf = vec![0u8; 65_536];
    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Edge-triggered: read until the socket is empty.
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    // A full socket buffer or a gone peer loses the datagram.
                    let _ = socket.send_to(&buf[..n], from);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier reply: not ours to keep.
                Err(_) => continue,
            }
        }
    }
}
