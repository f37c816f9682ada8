//! A loopback UDP port that answers with ICMP port unreachable, held for
//! as long as the test needs it.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};

/// While this lives, datagrams to [`DeadPort::addr`] are refused (ICMP
/// port unreachable): a socket holds the port, so no socket another test
/// binds to port 0 can get it, but it is connected elsewhere, so the
/// kernel finds no socket for a datagram from anyone else. (A port that
/// was bound and released could be handed to a parallel test meanwhile.)
pub struct DeadPort(UdpSocket);

impl DeadPort {
    /// The refused address.
    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr().expect("local address")
    }

    /// The refused port.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }
}

/// A refused port on 127.0.0.1 (or ::1).
pub fn dead_port_on(v6: bool) -> DeadPort {
    let (bind, elsewhere) = if v6 {
        ("[::1]:0", "[::1]:9")
    } else {
        ("127.0.0.1:0", "127.0.0.1:9")
    };
    let s = UdpSocket::bind(bind).expect("bind the dead port");
    s.connect(elsewhere).expect("connect it elsewhere");
    DeadPort(s)
}

/// A refused port on 127.0.0.1.
pub fn dead_port() -> DeadPort {
    dead_port_on(false)
}
