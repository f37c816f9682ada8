//! The UDP transport: one non-blocking socket, read until it would block
//! with `recvmmsg`, ICMP errors through `IP_RECVERR`, a bounded queue for
//! sends that would block. Sends made during an event-loop [`Turn`] are
//! gathered and go out together with `sendmmsg` when the turn ends.

use std::collections::VecDeque;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};

use socket2::{Domain, Socket, Type};

use crate::error::{Errno, Error};
use crate::eventloop::{Eventloop, FdHandle, Interest, Readiness, Turn};
use crate::packet::Framing;

use super::mmsg::{self, RECV_BATCH, RecvBatch, SEND_BATCH};
use super::{
    Destination, Leg, LegEvent, LegInner, LegOptions, SendStatus, SendToken, Source, Transport,
};

/// Datagrams read per readiness before yielding to other descriptors.
const READ_BUDGET: usize = 256;

/// Larger datagrams are sent at once rather than batched, so that the
/// kernel's verdict on them (EMSGSIZE) reaches the caller directly.
const MAX_BATCHED_DATAGRAM: usize = 65_000;

struct Queued {
    bytes: Rc<[u8]>,
    addr: SocketAddr,
    token: Option<SendToken>,
}

pub(crate) struct UdpTransport {
    socket: Rc<UdpSocket>,
    handle: Option<FdHandle>,
    queue: VecDeque<Queued>,
    max_queue: usize,
    /// Receive buffers (taken out while packets go up).
    rx: Option<Box<RecvBatch>>,
    /// Datagrams sent during the current turn, for one `sendmmsg` at its
    /// end (already reported `Sent`: see [`UdpTransport::push_batch`]).
    batch: Vec<(Rc<[u8]>, SocketAddr)>,
    /// ICMP errors for earlier datagrams that a send ran into (see
    /// [`UdpTransport::send_datagram`]), to be reported as
    /// [`LegEvent::Unreachable`].
    unreachable: Vec<(SocketAddr, Errno)>,
    /// The socket is IPv6 (then IPv4 destinations go as mapped addresses).
    ipv6: bool,
}

impl UdpTransport {
    pub(crate) fn bind(addr: SocketAddr, opts: &LegOptions) -> io::Result<UdpTransport> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_address(opts.reuse_address)?;
        if opts.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(opts.ipv6_only)?;
        }
        if let Some(n) = opts.recv_buffer_size {
            socket.set_recv_buffer_size(n)?;
        }
        if let Some(n) = opts.send_buffer_size {
            socket.set_send_buffer_size(n)?;
        }
        socket.bind(&addr.into())?;
        let mut t = Self::from_socket(socket.into())?;
        t.max_queue = opts.max_queued_datagrams;
        Ok(t)
    }

    pub(crate) fn from_socket(socket: UdpSocket) -> io::Result<UdpTransport> {
        socket.set_nonblocking(true)?;
        enable_recverr(socket.as_raw_fd(), socket.local_addr()?.is_ipv6());
        let ipv6 = socket.local_addr()?.is_ipv6();
        Ok(UdpTransport {
            ipv6,
            socket: Rc::new(socket),
            handle: None,
            queue: VecDeque::new(),
            max_queue: 1024,
            rx: Some(Box::new(RecvBatch::new())),
            batch: Vec::new(),
            unreachable: Vec::new(),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub(crate) fn attach(&mut self, lp: &dyn Eventloop, leg: Weak<LegInner>) -> io::Result<()> {
        let cb = move |r: Readiness| {
            if let Some(leg) = Leg::upgrade(&leg) {
                on_ready(&leg, r);
            }
        };
        self.handle = Some(lp.add_fd(self.socket.as_raw_fd(), Interest::READ, Box::new(cb))?);
        Ok(())
    }

    pub(crate) fn detach(&mut self, lp: &dyn Eventloop) {
        // What this turn sent goes out before the leg goes away (a
        // receiver may answer and then remove the leg).
        for (addr, e) in self.flush_batch(None) {
            log::debug!("udp send to {addr} while detaching: {e}");
        }
        if let Some(h) = self.handle.take() {
            lp.del_fd(h);
        }
    }

    pub(crate) fn send(
        &mut self,
        bytes: Rc<[u8]>,
        dst: &Destination,
        token: Option<SendToken>,
        lp: Option<&dyn Eventloop>,
    ) -> SendStatus {
        if !self.queue.is_empty() {
            return self.enqueue(bytes, dst.addr, token, lp);
        }
        match self.send_datagram(&bytes, dst.addr) {
            Ok(_) => SendStatus::Sent,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                self.enqueue(bytes, dst.addr, token, lp)
            }
            Err(e) => SendStatus::Failed(Error::io(&e, format_args!("udp send to {}", dst.addr))),
        }
    }

    /// Sends one datagram. An ICMP error from an earlier datagram may be
    /// reported on this send instead of its own (the socket's pending
    /// error): it is not ours, so its destinations are kept for
    /// [`UdpTransport::take_unreachable`] and the send is tried once more.
    /// (Reading the error queue clears it: dropping what it held would lose
    /// the Unreachable report for the destination that really failed.)
    fn send_datagram(&mut self, bytes: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let target = self.target(addr);
        match self.socket.send_to(bytes, target) {
            Err(e) if is_icmp_errno(&e) => {
                self.unreachable
                    .extend(read_error_queue(self.socket.as_raw_fd()));
                self.socket.send_to(bytes, target)
            }
            r => r,
        }
    }

    /// The ICMP errors that sends ran into, as events.
    pub(crate) fn take_unreachable(&mut self, proto: super::Protocol) -> Vec<LegEvent> {
        unreachable_events(proto, std::mem::take(&mut self.unreachable))
    }

    /// IPv4 destinations from a dual-stack IPv6 socket go as mapped addresses.
    fn target(&self, addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V4(v4) if self.ipv6 => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            _ => addr,
        }
    }

    fn enqueue(
        &mut self,
        bytes: Rc<[u8]>,
        addr: SocketAddr,
        token: Option<SendToken>,
        lp: Option<&dyn Eventloop>,
    ) -> SendStatus {
        if self.queue.len() >= self.max_queue {
            return SendStatus::Failed(Error::new(
                Errno::ENOBUFS,
                format!(
                    "udp send to {addr}: {} datagrams already waiting for the socket",
                    self.queue.len()
                ),
            ));
        }
        if self.queue.is_empty() {
            if let (Some(lp), Some(h)) = (lp, self.handle) {
                let _ = lp.modify_fd(h, Interest::READ_WRITE);
            }
        }
        self.queue.push_back(Queued { bytes, addr, token });
        SendStatus::Queued
    }

    /// Whether a send may wait for the end of the turn: a turn is open,
    /// nothing waits for writability (order is kept), and the datagram is
    /// of a size the kernel takes.
    pub(crate) fn can_batch(&self, len: usize) -> bool {
        self.queue.is_empty() && len <= MAX_BATCHED_DATAGRAM && Turn::active()
    }

    /// Adds a datagram to the turn's batch; true when it is the first (the
    /// caller registers the flush at the turn's end). A full batch goes
    /// out at once.
    ///
    /// The send counts as done (`Sent`): what the kernel refuses at the
    /// flush is reported as [`LegEvent::Unreachable`] for its destination,
    /// as an ICMP error would be, so that deliveries waiting on it move
    /// on; a socket buffer that is full moves the rest to the queue.
    pub(crate) fn push_batch(
        &mut self,
        bytes: Rc<[u8]>,
        addr: SocketAddr,
        lp: Option<&dyn Eventloop>,
    ) -> (bool, Vec<(SocketAddr, Error)>) {
        let first = self.batch.is_empty();
        self.batch.push((bytes, addr));
        let failed = if self.batch.len() >= SEND_BATCH {
            self.flush_batch(lp)
        } else {
            Vec::new()
        };
        (first, failed)
    }

    /// Sends the batch with `sendmmsg`; returns the datagrams the kernel
    /// refused and why.
    pub(crate) fn flush_batch(&mut self, lp: Option<&dyn Eventloop>) -> Vec<(SocketAddr, Error)> {
        let mut failed = Vec::new();
        if self.batch.is_empty() {
            return failed;
        }
        let mut batch = std::mem::take(&mut self.batch);
        let fd = self.socket.as_raw_fd();
        let mut start = 0;
        let mut retried = false;
        while start < batch.len() {
            let items = batch[start..]
                .iter()
                .map(|(b, a)| (&b[..], self.target(*a)));
            match mmsg::send_batch(fd, items) {
                Ok(0) => break,
                Ok(n) => {
                    start += n;
                    retried = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    break;
                }
                // An ICMP error for an earlier datagram, as in
                // `send_datagram`: collect it, try once more.
                Err(e) if is_icmp_errno(&e) && !retried => {
                    self.unreachable
                        .extend(read_error_queue(self.socket.as_raw_fd()));
                    retried = true;
                }
                Err(e) => {
                    let addr = batch[start].1;
                    failed.push((addr, Error::io(&e, format_args!("udp send to {addr}"))));
                    start += 1;
                    retried = false;
                }
            }
        }
        // The socket is full: the rest waits for writability, in order.
        for (bytes, addr) in batch.drain(..).skip(start) {
            if let SendStatus::Failed(e) = self.enqueue(bytes, addr, None, lp) {
                failed.push((addr, e));
            }
        }
        // The buffer is kept for the next turn (unless one was started
        // meanwhile, which cannot happen from here, but costs nothing).
        batch.clear();
        if self.batch.is_empty() {
            self.batch = batch;
        }
        failed
    }

    /// Sends what waited for writability; returns the outcomes.
    fn flush(&mut self, lp: Option<&dyn Eventloop>) -> Vec<LegEvent> {
        let mut events = Vec::new();
        while let Some(q) = self.queue.front() {
            let (bytes, addr, token) = (q.bytes.clone(), q.addr, q.token);
            match self.send_datagram(&bytes, addr) {
                Ok(_) => {
                    if let Some(t) = token {
                        events.push(LegEvent::Outcome(t, Ok(())));
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    return events;
                }
                Err(e) => {
                    if let Some(t) = token {
                        events.push(LegEvent::Outcome(
                            t,
                            Err(Error::io(&e, format_args!("udp send to {addr}"))),
                        ));
                    }
                }
            }
            self.queue.pop_front();
        }
        if let (Some(lp), Some(h)) = (lp, self.handle) {
            let _ = lp.modify_fd(h, Interest::READ);
        }
        events
    }
}

impl Drop for UdpTransport {
    fn drop(&mut self) {
        // A leg dropped during a turn: its batch was already sent.
        for (addr, e) in self.flush_batch(None) {
            log::debug!("udp send to {addr} while closing: {e}");
        }
    }
}

fn is_icmp_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EMSGSIZE
        )
    )
}

fn on_ready(leg: &Leg, r: Readiness) {
    let lp = leg.eventloop();
    if r.writable {
        let events = leg.with_transport(|t, _| match t {
            Transport::Udp(u) => {
                let mut events = u.flush(lp.as_deref());
                events.extend(u.take_unreachable(leg.protocol()));
                events
            }
            _ => Vec::new(),
        });
        leg.emit(events);
    }
    if !(r.readable || r.error) {
        return;
    }
    // Take the socket and buffers out so that no borrow of the leg's state
    // is held while packets go up (the sink may send on this very leg).
    let Some((socket, mut rx, handle)) = leg.with_transport(|t, _| match t {
        Transport::Udp(u) => u.rx.take().map(|b| (u.socket.clone(), b, u.handle)),
        _ => None,
    }) else {
        return;
    };
    // The answers to what this reads go out together at the end.
    let _turn = Turn::begin();
    let proto = leg.protocol();
    let fd = socket.as_raw_fd();
    let mut budget_left = false;
    for _ in 0..READ_BUDGET / RECV_BATCH {
        match rx.recv(fd) {
            Ok(n) => {
                for i in 0..n {
                    let Some((data, from, whole)) = rx.get(i) else {
                        continue;
                    };
                    let from = unmap(from);
                    if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                        leg.count_keepalive();
                        continue;
                    }
                    if !whole {
                        log::debug!("{leg}: datagram from {from} truncated: dropped");
                        leg.count_parse_error();
                        continue;
                    }
                    let source = Source {
                        proto,
                        addr: from,
                        conn: None,
                    };
                    if let Some(ev) = leg.accept_bytes(data, source, Framing::Datagram) {
                        leg.emit_one(ev);
                    }
                }
                // Fewer than asked for: the socket is empty (a datagram
                // arriving later raises a new edge).
                if n < RECV_BATCH {
                    budget_left = true;
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                budget_left = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // A pending ICMP error: find out which destination it was.
                let events = unreachable_events(proto, read_error_queue(fd));
                leg.emit(events);
            }
        }
    }
    leg.with_transport(|t, _| {
        if let Transport::Udp(u) = t {
            u.rx = Some(rx);
        }
    });
    if !budget_left {
        // Edge-triggered: ask for another event while data is waiting.
        if let (Some(lp), Some(h)) = (lp, handle) {
            let interest = leg.with_transport(|t, _| match t {
                Transport::Udp(u) if !u.queue.is_empty() => Interest::READ_WRITE,
                _ => Interest::READ,
            });
            let _ = lp.modify_fd(h, interest);
        }
    }
}

fn unreachable_events(proto: super::Protocol, errors: Vec<(SocketAddr, Errno)>) -> Vec<LegEvent> {
    errors
        .into_iter()
        .map(|(addr, errno)| {
            let addr = unmap(addr);
            let err = Error::new(errno, format!("udp to {addr}: {}", icmp_text(errno)));
            LegEvent::Unreachable(Destination::new(proto, addr), err)
        })
        .collect()
}

fn icmp_text(errno: Errno) -> &'static str {
    match errno {
        Errno::ECONNREFUSED => "port unreachable",
        Errno::EHOSTUNREACH => "host unreachable",
        Errno::ENETUNREACH => "network unreachable",
        Errno::EMSGSIZE => "message too long for the path",
        _ => "ICMP error",
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// Asks the kernel to queue ICMP errors for this socket (IP_RECVERR,
/// IPV6_RECVERR), so that a dead port is ECONNREFUSED at once instead of a
/// timeout. Failure is harmless: errors then go unnoticed, as without it.
fn enable_recverr(fd: RawFd, ipv6: bool) {
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: setsockopt with a valid fd and a pointer to a c_int of
        // the size passed.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if ipv6 {
        set(libc::SOL_IPV6, libc::IPV6_RECVERR);
    }
    set(libc::SOL_IP, libc::IP_RECVERR);
}

/// Reads the socket's error queue: the destination of each datagram that
/// drew an ICMP error, and the errno it maps to.
pub(crate) fn read_error_queue(fd: RawFd) -> Vec<(SocketAddr, Errno)> {
    let mut out = Vec::new();
    // Bounded: the kernel caps the queue, but never loop forever.
    for _ in 0..64 {
        let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut data = [0u8; 64];
        let mut control = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        // SAFETY: every pointer in msg refers to a live local buffer of the
        // length given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            break;
        }
        let mut errno = None;
        // SAFETY: msg was filled by recvmsg; the CMSG macros walk the
        // control buffer within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let is_err = (c.cmsg_level == libc::SOL_IP && c.cmsg_type == libc::IP_RECVERR)
                    || (c.cmsg_level == libc::SOL_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
                if is_err {
                    let ee = std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>(),
                    );
                    errno = Some(Errno(ee.ee_errno as i32));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        // SAFETY: recvmsg initialised msg_namelen bytes of `name`; the rest
        // was zeroed.
        let name = unsafe { name.assume_init() };
        let addr = sockaddr_to_std(&name);
        if let (Some(addr), Some(errno)) = (addr, errno) {
            out.push((addr, errno));
        }
    }
    out
}

pub(crate) fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_port_unreachable_is_reported_with_its_destination() {
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_recverr(sock.as_raw_fd(), false);
        sock.send_to(b"hello", dead_addr).unwrap();
        // Loopback delivers the ICMP error synchronously; allow a moment.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = read_error_queue(sock.as_raw_fd());
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(found, vec![(dead_addr, Errno::ECONNREFUSED)]);
    }
}
