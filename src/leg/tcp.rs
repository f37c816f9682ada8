//! The TCP transport: a listener, accepted and outgoing connections reused
//! per peer, framing by Content-Length, CRLF keep-alive, bounded buffers,
//! idle/connect/header timeouts and a connection cap (oldest idle closed).
//!
//! TLS legs are this transport in TLS mode: each connection carries a
//! rustls session that the socket's bytes go through, and the plaintext
//! takes the same framing, write queue, limits and timers; a handshake
//! deadline joins the connection's timer, and RFC 5923 aliases (a map from
//! a Via sent-by the peer's certificate covers to its connection) let
//! requests reuse connections that peers opened.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::time::Instant;

use slab::Slab;
use socket2::{Domain, Socket, Type};

use crate::error::{Errno, Error};
use crate::eventloop::{Eventloop, FdHandle, Interest, Readiness, TimerId, When};
use crate::packet::{Framing, ParseLimits, StreamFramer, leading_line_ends};

use super::tls::{TlsContext, TlsSession};
use super::{
    ConnId, Destination, Leg, LegEvent, LegInner, LegOptions, Protocol, SendKind, SendStatus,
    SendToken, Source, TcpOptions, Transport,
};

/// Most RFC 5923 aliases one connection may hold.
const MAX_ALIASES_PER_CONN: usize = 8;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;

struct Chunk {
    bytes: Rc<[u8]>,
    offset: usize,
    token: Option<SendToken>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Connecting,
    /// TCP is up, the TLS handshake is not done: nothing is sent yet.
    Handshaking,
    Open,
}

struct Conn {
    id: ConnId,
    stream: Rc<TcpStream>,
    peer: SocketAddr,
    state: State,
    handle: Option<FdHandle>,
    timer: Option<TimerId>,
    rbuf: Vec<u8>,
    framer: StreamFramer,
    wbuf: VecDeque<Chunk>,
    wbuf_len: usize,
    write_interest: bool,
    last_activity: Instant,
    connect_started: Instant,
    partial_since: Option<Instant>,
    /// Least-recently-used list (by activity): towards `prev` is newer.
    lru_prev: Option<usize>,
    lru_next: Option<usize>,
    /// The TLS session (TLS legs).
    tls: Option<Box<TlsSession>>,
    /// RFC 5923 aliases pointing at this connection (keys of `aliases`).
    aliases: Vec<(Box<str>, u16)>,
}

pub(crate) struct TcpTransport {
    listener: Rc<TcpListener>,
    local: SocketAddr,
    listener_handle: Option<FdHandle>,
    /// The timer that tries `accept` again after it failed for want of
    /// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    accept_retry: Option<TimerId>,
    conns: Slab<Conn>,
    by_peer: HashMap<SocketAddr, usize>,
    lru_head: Option<usize>,
    lru_tail: Option<usize>,
    next_generation: u32,
    opts: TcpOptions,
    limits: ParseLimits,
    leg: Weak<LegInner>,
    /// TLS mode: the leg's rustls configurations.
    tls: Option<Rc<TlsContext>>,
    /// Whether the socket listens (a TLS leg without certificate does not).
    listening: bool,
    /// RFC 5923: Via sent-by (lower-case host without brackets, port) ->
    /// the incoming TLS connection whose certificate covers it.
    aliases: HashMap<(Box<str>, u16), usize>,
    /// `tcp` or `tls`, for messages.
    kind: &'static str,
}

fn conn_id(index: usize, generation: u32) -> ConnId {
    ConnId(((generation as u64) << 32) | index as u64)
}

fn conn_index(id: ConnId) -> usize {
    (id.0 & 0xffff_ffff) as usize
}

impl TcpTransport {
    pub(crate) fn bind(
        addr: SocketAddr,
        opts: &LegOptions,
        tls: Option<TlsContext>,
    ) -> io::Result<TcpTransport> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(opts.reuse_address)?;
        if opts.reuse_port {
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(opts.ipv6_only)?;
        }
        socket.bind(&addr.into())?;
        // A TLS leg without certificate cannot accept: it keeps its port
        // (for Via) without listening, so peers are refused at once.
        let listening = tls.as_ref().is_none_or(TlsContext::accepts);
        if listening {
            socket.listen(opts.tcp.backlog)?;
        }
        let mut t = Self::from_listener(socket.into(), opts)?;
        t.listening = listening;
        if let Some(ctx) = tls {
            t.tls = Some(Rc::new(ctx));
            t.kind = "tls";
        }
        Ok(t)
    }

    pub(crate) fn from_listener(
        listener: TcpListener,
        opts: &LegOptions,
    ) -> io::Result<TcpTransport> {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok(TcpTransport {
            listener: Rc::new(listener),
            local,
            listener_handle: None,
            accept_retry: None,
            conns: Slab::new(),
            by_peer: HashMap::new(),
            lru_head: None,
            lru_tail: None,
            next_generation: 1,
            opts: opts.tcp.clone(),
            limits: opts.limits,
            leg: Weak::new(),
            tls: None,
            listening: true,
            aliases: HashMap::new(),
            kind: "tcp",
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn attach(&mut self, lp: &dyn Eventloop, leg: Weak<LegInner>) -> io::Result<()> {
        self.leg = leg.clone();
        if !self.listening {
            return Ok(());
        }
        let cb = move |_r: Readiness| {
            if let Some(leg) = Leg::upgrade(&leg) {
                on_accept(&leg);
            }
        };
        self.listener_handle =
            Some(lp.add_fd(self.listener.as_raw_fd(), Interest::READ, Box::new(cb))?);
        Ok(())
    }

    /// Closes everything; returns the events for pending sends.
    pub(crate) fn detach(&mut self, lp: &dyn Eventloop) -> Vec<LegEvent> {
        if let Some(h) = self.listener_handle.take() {
            lp.del_fd(h);
        }
        if let Some(t) = self.accept_retry.take() {
            lp.cancel_timer(t);
        }
        let mut events = Vec::new();
        let indices: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for i in indices {
            self.close(
                i,
                lp,
                Some(Error::new(Errno::ENETDOWN, "leg removed")),
                &mut events,
            );
        }
        events
    }

    fn lookup(&self, id: ConnId) -> Option<usize> {
        let i = conn_index(id);
        self.conns.get(i).filter(|c| c.id == id).map(|_| i)
    }

    fn lru_unlink(&mut self, i: usize) {
        let (prev, next) = (self.conns[i].lru_prev, self.conns[i].lru_next);
        match prev {
            Some(p) => self.conns[p].lru_next = next,
            None => self.lru_head = next,
        }
        match next {
            Some(n) => self.conns[n].lru_prev = prev,
            None => self.lru_tail = prev,
        }
        self.conns[i].lru_prev = None;
        self.conns[i].lru_next = None;
    }

    fn lru_push_front(&mut self, i: usize) {
        self.conns[i].lru_prev = None;
        self.conns[i].lru_next = self.lru_head;
        if let Some(h) = self.lru_head {
            self.conns[h].lru_prev = Some(i);
        }
        self.lru_head = Some(i);
        if self.lru_tail.is_none() {
            self.lru_tail = Some(i);
        }
    }

    fn touch(&mut self, i: usize, now: Instant) {
        self.conns[i].last_activity = now;
        if self.lru_head != Some(i) {
            self.lru_unlink(i);
            self.lru_push_front(i);
        }
    }

    /// Makes room for one more connection by closing the least recently
    /// used ones.
    fn enforce_cap(&mut self, lp: &dyn Eventloop, leg: &Leg, events: &mut Vec<LegEvent>) {
        while self.conns.len() >= self.opts.max_connections.max(1) {
            let Some(oldest) = self.lru_tail else { break };
            log::warn!(
                "{leg}: {} connections open (limit {}): closing the one idle longest, to {}",
                self.conns.len(),
                self.opts.max_connections,
                self.conns[oldest].peer
            );
            leg.count_limited();
            self.close(
                oldest,
                lp,
                Some(Error::new(Errno::ECONNABORTED, "connection limit reached")),
                events,
            );
        }
    }

    fn insert(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        state: State,
        tls: Option<Box<TlsSession>>,
        now: Instant,
    ) -> usize {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let entry = self.conns.vacant_entry();
        let i = entry.key();
        entry.insert(Conn {
            id: conn_id(i, generation),
            stream: Rc::new(stream),
            peer,
            state,
            handle: None,
            timer: None,
            rbuf: Vec::new(),
            framer: StreamFramer::new(self.limits),
            wbuf: VecDeque::new(),
            wbuf_len: 0,
            write_interest: state == State::Connecting,
            last_activity: now,
            connect_started: now,
            partial_since: None,
            lru_prev: None,
            lru_next: None,
            tls,
            aliases: Vec::new(),
        });
        self.lru_push_front(i);
        // The newest connection to a peer is the one reused.
        self.by_peer.insert(peer, i);
        i
    }

    fn register(&mut self, i: usize, lp: &dyn Eventloop) -> io::Result<()> {
        let leg = self.leg.clone();
        let id = self.conns[i].id;
        let interest = if self.conns[i].write_interest {
            Interest::READ_WRITE
        } else {
            Interest::READ
        };
        let cb = {
            let leg = leg.clone();
            move |r: Readiness| {
                if let Some(leg) = Leg::upgrade(&leg) {
                    on_conn_ready(&leg, id, r);
                }
            }
        };
        let fd = self.conns[i].stream.as_raw_fd();
        self.conns[i].handle = Some(lp.add_fd(fd, interest, Box::new(cb))?);
        self.arm_timer(i, lp);
        Ok(())
    }

    fn next_deadline(&self, i: usize) -> Instant {
        let c = &self.conns[i];
        let mut d = c.last_activity + self.opts.idle_timeout;
        if c.state == State::Connecting {
            d = d.min(c.connect_started + self.opts.connect_timeout);
        }
        if c.state == State::Handshaking {
            if let Some(ctx) = &self.tls {
                d = d.min(c.connect_started + ctx.handshake_timeout());
            }
        }
        if let Some(p) = c.partial_since {
            d = d.min(p + self.opts.header_timeout);
        }
        d
    }

    fn arm_timer(&mut self, i: usize, lp: &dyn Eventloop) {
        let deadline = self.next_deadline(i);
        let id = self.conns[i].id;
        let leg = self.leg.clone();
        let cb = move || {
            if let Some(leg) = Leg::upgrade(&leg) {
                on_conn_timer(&leg, id);
            }
        };
        if let Some(old) = self.conns[i].timer.take() {
            lp.cancel_timer(old);
        }
        self.conns[i].timer = Some(lp.add_timer(When::Deadline(deadline), None, Box::new(cb)));
    }

    /// Closes a connection: pending sends fail with `error` (or ECONNRESET).
    fn close(
        &mut self,
        i: usize,
        lp: &dyn Eventloop,
        error: Option<Error>,
        events: &mut Vec<LegEvent>,
    ) {
        if !self.conns.contains(i) {
            return;
        }
        self.lru_unlink(i);
        let mut c = self.conns.remove(i);
        if self.by_peer.get(&c.peer) == Some(&i) {
            self.by_peer.remove(&c.peer);
        }
        for key in &c.aliases {
            if self.aliases.get(key) == Some(&i) {
                self.aliases.remove(key);
            }
        }
        if let Some(tls) = c.tls.as_mut() {
            // Best effort: a close_notify, or the alert a failed
            // handshake left queued.
            if c.state == State::Open {
                tls.close_notify();
            }
            if tls.wants_write() {
                let _ = tls.write_tls(&c.stream);
            }
        }
        if let Some(h) = c.handle {
            lp.del_fd(h);
        }
        if let Some(t) = c.timer {
            lp.cancel_timer(t);
        }
        let error = error.unwrap_or_else(|| {
            Error::new(
                Errno::ECONNRESET,
                format!("{} connection to {} closed", self.kind, c.peer),
            )
        });
        for chunk in c.wbuf {
            if let Some(t) = chunk.token {
                events.push(LegEvent::Outcome(t, Err(error.clone())));
            }
        }
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        if let Some(leg) = Leg::upgrade(&self.leg) {
            leg.count_closed();
        }
        events.push(LegEvent::ConnectionClosed(c.id, c.peer));
    }

    /// Opens a connection to `peer`, bound to the leg's address.
    fn connect(
        &mut self,
        peer: SocketAddr,
        host: Option<&Rc<str>>,
        lp: &dyn Eventloop,
        leg: &Leg,
        events: &mut Vec<LegEvent>,
    ) -> Result<usize, Error> {
        // The TLS session first: a host that is no valid name fails here.
        let tls = match &self.tls {
            Some(ctx) => Some(Box::new(ctx.client(peer, host)?)),
            None => None,
        };
        self.enforce_cap(lp, leg, events);
        let kind = self.kind;
        let ctx = || format!("{kind} connect to {peer}");
        let socket = Socket::new(
            Domain::for_address(peer),
            Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .map_err(|e| Error::io(&e, ctx()))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::io(&e, ctx()))?;
        let _ = socket.set_tcp_nodelay(true);
        if !self.local.ip().is_unspecified() && self.local.is_ipv4() == peer.is_ipv4() {
            // The port is chosen at connect, for the 4-tuple: a bind to
            // port 0 would pick one for the address alone, scanning past
            // every TIME_WAIT socket (slower with each connection closed).
            set_bind_address_no_port(&socket);
            let _ = socket.bind(&SocketAddr::new(self.local.ip(), 0).into());
        }
        match socket.connect(&peer.into()) {
            Ok(()) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io(&e, ctx())),
        }
        let i = self.insert(socket.into(), peer, State::Connecting, tls, lp.now());
        leg.count_opened();
        if let Err(e) = self.register(i, lp) {
            let mut ev = Vec::new();
            self.close(i, lp, None, &mut ev);
            return Err(Error::io(&e, ctx()));
        }
        Ok(i)
    }

    pub(crate) fn send(
        &mut self,
        leg: &Leg,
        bytes: Rc<[u8]>,
        dst: &Destination,
        token: Option<SendToken>,
        lp: Option<&dyn Eventloop>,
    ) -> SendStatus {
        let Some(lp) = lp else {
            return SendStatus::Failed(Error::new(
                Errno::ENOTCONN,
                format!("{leg} is not attached to an event loop"),
            ));
        };
        let mut events = Vec::new();
        let existing = dst
            .conn
            .and_then(|id| self.lookup(id))
            .or_else(|| {
                self.by_peer
                    .get(&dst.addr)
                    .copied()
                    .filter(|&i| self.reusable_for(i, dst))
            })
            .or_else(|| self.alias_for(dst));
        let i = match existing {
            Some(i) => i,
            None => match self.connect(dst.addr, dst.host.as_ref(), lp, leg, &mut events) {
                Ok(i) => i,
                Err(e) => {
                    leg.defer(events);
                    return SendStatus::Failed(e);
                }
            },
        };
        let status = self.queue_and_write(i, bytes, token, lp, &mut events);
        leg.defer(events);
        status
    }

    fn queue_and_write(
        &mut self,
        i: usize,
        bytes: Rc<[u8]>,
        token: Option<SendToken>,
        lp: &dyn Eventloop,
        events: &mut Vec<LegEvent>,
    ) -> SendStatus {
        let len = bytes.len();
        let c = &mut self.conns[i];
        if c.wbuf_len + len > self.opts.max_write_buffer {
            let peer = c.peer;
            let err = Error::new(
                Errno::ENOBUFS,
                format!(
                    "{} to {peer}: write buffer full ({} bytes queued, peer not reading)",
                    self.kind, c.wbuf_len
                ),
            );
            // The write buffer is one of the limits LegStats counts.
            if let Some(leg) = Leg::upgrade(&self.leg) {
                leg.count_limited();
            }
            self.close(i, lp, Some(err.clone()), events);
            return SendStatus::Failed(err);
        }
        let was_empty = c.wbuf.is_empty();
        let write_now = c.state == State::Open && was_empty;
        // A chunk written at once carries no token while the caller waits:
        // the returned status answers for it, and an outcome event as well
        // (Ok from a complete write, Err from the close after a failed
        // one) would report the send twice.
        c.wbuf.push_back(Chunk {
            bytes,
            offset: 0,
            token: if write_now { None } else { token },
        });
        c.wbuf_len += len;
        if !write_now {
            return SendStatus::Queued;
        }
        match self.write_some(i, lp, events) {
            // The buffer was empty: what is left is this chunk, partly
            // written; its outcome comes later.
            Ok(()) => match self.conns.get_mut(i).and_then(|c| c.wbuf.back_mut()) {
                Some(chunk) => {
                    chunk.token = token;
                    SendStatus::Queued
                }
                None => SendStatus::Sent,
            },
            Err(e) => SendStatus::Failed(e),
        }
    }

    /// Writes queued chunks until done or the socket is full. On a write
    /// error the connection is closed and the error returned (the chunks'
    /// tokens get it too, except one just sent by the caller).
    fn write_some(
        &mut self,
        i: usize,
        lp: &dyn Eventloop,
        events: &mut Vec<LegEvent>,
    ) -> Result<(), Error> {
        if self.conns[i].tls.is_some() {
            return self.write_some_tls(i, lp, events);
        }
        let now = lp.now();
        loop {
            let c = &mut self.conns[i];
            let Some(front) = c.wbuf.front_mut() else {
                break;
            };
            match (&*c.stream).write(&front.bytes[front.offset..]) {
                Ok(0) => {
                    let err = Error::new(
                        Errno::EPIPE,
                        format!("tcp to {}: connection closed while writing", c.peer),
                    );
                    self.close(i, lp, Some(err.clone()), events);
                    return Err(err);
                }
                Ok(n) => {
                    front.offset += n;
                    c.wbuf_len -= n;
                    if front.offset == front.bytes.len() {
                        if let Some(chunk) = c.wbuf.pop_front() {
                            if let Some(t) = chunk.token {
                                events.push(LegEvent::Outcome(t, Ok(())));
                            }
                        }
                    }
                    self.touch(i, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let peer = c.peer;
                    let err = Error::io(&e, format_args!("tcp write to {peer}"));
                    self.close(i, lp, Some(err.clone()), events);
                    return Err(err);
                }
            }
        }
        let want_write = !self.conns[i].wbuf.is_empty();
        self.set_write_interest(i, want_write, lp);
        Ok(())
    }

    /// Whether a connection found by address may carry a send to `dst`:
    /// on TCP always; on TLS when the peer's certificate was verified for
    /// the destination's host (RFC 5922: the one our connection was
    /// opened for, or a client certificate that covers it), or the
    /// destination names no host.
    fn reusable_for(&self, i: usize, dst: &Destination) -> bool {
        let c = &self.conns[i];
        match (&c.tls, &dst.host) {
            (None, _) | (_, None) => true,
            (Some(tls), Some(host)) => tls.is_verified_for(host),
        }
    }

    /// RFC 5923: a connection a peer opened and advertised (`alias` in its
    /// Via) for the sent-by that `dst` names: by the destination's host,
    /// or by its address when that is the host.
    fn alias_for(&self, dst: &Destination) -> Option<usize> {
        if self.aliases.is_empty() {
            return None;
        }
        let port = dst.addr.port();
        let ip = dst.addr.ip().to_string();
        let host = dst.host.as_deref().map(alias_host);
        let mut keys = Vec::with_capacity(2);
        if let Some(h) = &host {
            keys.push(h.clone());
        }
        if host.as_deref().is_none_or(|h| h == ip) && !keys.contains(&ip) {
            keys.push(ip);
        }
        keys.into_iter()
            .find_map(|h| self.aliases.get(&(h.into_boxed_str(), port)).copied())
    }

    /// RFC 5923 5: a request over an incoming TLS connection has `alias`
    /// in its top Via: later requests to that sent-by may use the
    /// connection, if the peer's certificate (verified by the handshake)
    /// covers the sent-by host.
    fn register_alias(&mut self, id: ConnId, host: &str, port: u16, leg: &Leg) {
        let Some(i) = self.lookup(id) else { return };
        let key_host = alias_host(host);
        let c = &mut self.conns[i];
        let Some(tls) = c.tls.as_ref() else { return };
        if tls.is_outgoing() {
            return;
        }
        let key = (key_host.into_boxed_str(), port);
        if c.aliases.contains(&key) {
            return;
        }
        if !tls.certificate_covers(&key.0) {
            log::debug!(
                "{leg}: {}: alias for {}:{port} not used: no client certificate covers {}",
                tls.what(),
                key.0,
                key.0
            );
            return;
        }
        if c.aliases.len() >= MAX_ALIASES_PER_CONN {
            log::debug!(
                "{leg}: {}: too many aliases, {} not added",
                tls.what(),
                key.0
            );
            return;
        }
        log::debug!(
            "{leg}: {}: requests to {}:{port} may reuse this connection (RFC 5923)",
            tls.what(),
            key.0
        );
        c.aliases.push(key.clone());
        if let Some(old) = self.aliases.insert(key.clone(), i) {
            if old != i {
                if let Some(oc) = self.conns.get_mut(old) {
                    oc.aliases.retain(|k| *k != key);
                }
            }
        }
    }

    /// Sets the connection's readiness interest (only when it changed).
    fn set_write_interest(&mut self, i: usize, want_write: bool, lp: &dyn Eventloop) {
        let c = &mut self.conns[i];
        if want_write != c.write_interest {
            c.write_interest = want_write;
            if let Some(h) = c.handle {
                let _ = lp.modify_fd(
                    h,
                    if want_write {
                        Interest::READ_WRITE
                    } else {
                        Interest::READ
                    },
                );
            }
        }
    }

    /// TLS: flushes what the session has for the socket, reports the
    /// chunks it took whole as sent once that is out, and hands it more
    /// plaintext (after the handshake), until done or the socket is full.
    fn write_some_tls(
        &mut self,
        i: usize,
        lp: &dyn Eventloop,
        events: &mut Vec<LegEvent>,
    ) -> Result<(), Error> {
        let now = lp.now();
        loop {
            let c = &mut self.conns[i];
            let Some(tls) = c.tls.as_mut() else {
                break;
            };
            let mut blocked = false;
            let mut wrote = false;
            while tls.wants_write() {
                match tls.write_tls(&c.stream) {
                    Ok(0) => {
                        let err = Error::new(
                            Errno::EPIPE,
                            format!("{}: connection closed while writing", tls.what()),
                        );
                        self.close(i, lp, Some(err.clone()), events);
                        return Err(err);
                    }
                    Ok(_) => wrote = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let err = Error::io(&e, format_args!("{} write", tls.what()));
                        self.close(i, lp, Some(err.clone()), events);
                        return Err(err);
                    }
                }
            }
            if blocked {
                break;
            }
            // Everything the session had is on the wire: the chunks it
            // took whole are sent.
            let c = &mut self.conns[i];
            let Some(tls) = c.tls.as_mut() else {
                break;
            };
            for _ in 0..tls.fed() {
                if let Some(chunk) = c.wbuf.pop_front() {
                    if let Some(t) = chunk.token {
                        events.push(LegEvent::Outcome(t, Ok(())));
                    }
                }
            }
            tls.set_fed(0);
            if c.state != State::Open || c.wbuf.is_empty() {
                if wrote {
                    self.touch(i, now);
                }
                break;
            }
            let mut took = false;
            while let Some(chunk) = c.wbuf.get_mut(tls.fed()) {
                let n = tls.write_plain(&chunk.bytes[chunk.offset..]);
                chunk.offset += n;
                c.wbuf_len -= n;
                took |= n > 0;
                if chunk.offset < chunk.bytes.len() {
                    break;
                }
                let fed = tls.fed() + 1;
                tls.set_fed(fed);
            }
            if wrote {
                self.touch(i, now);
            }
            if !took {
                break;
            }
        }
        let c = &self.conns[i];
        let want_write = c.tls.as_ref().is_some_and(|t| t.wants_write())
            || (c.state == State::Open && !c.wbuf.is_empty());
        self.set_write_interest(i, want_write, lp);
        Ok(())
    }

    /// Ends a connection whose TLS session failed (a certificate rejected,
    /// an alert, a broken record): the queued sends fail with `err`, and
    /// when an outgoing connection fails after its handshake (a server
    /// that refuses our certificate only after TLS 1.3 finished), the
    /// deliveries waiting for an answer from that peer are told at once.
    fn fail_tls(&mut self, i: usize, lp: &dyn Eventloop, err: Error, events: &mut Vec<LegEvent>) {
        let c = &self.conns[i];
        let outgoing_after_handshake =
            c.state == State::Open && c.tls.as_ref().is_some_and(|t| t.is_outgoing());
        let dst = Destination {
            proto: Protocol::Tls,
            addr: c.peer,
            host: c.tls.as_ref().and_then(|t| t.identity().cloned()),
            conn: None,
        };
        if let Some(leg) = Leg::upgrade(&self.leg) {
            log::warn!("{leg}: {err}");
        }
        self.close(i, lp, Some(err.clone()), events);
        if outgoing_after_handshake {
            events.push(LegEvent::Unreachable(dst, err));
        }
    }
}

/// `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2+; ignored where unknown).
fn set_bind_address_no_port(socket: &Socket) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own, with a pointer to a
        // c_int and its size, as the option expects.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
}

/// An RFC 5923 alias key's host: lower case, IPv6 without brackets.
fn alias_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn transport<R>(leg: &Leg, f: impl FnOnce(&mut TcpTransport) -> R) -> Option<R> {
    leg.with_transport(|t, _| match t {
        Transport::Tcp(c) => Some(f(c)),
        _ => None,
    })
}

fn on_accept(leg: &Leg) {
    let Some(lp) = leg.eventloop() else { return };
    let mut events = Vec::new();
    // Bounded: one readiness accepts at most this many.
    let mut drained = false;
    let mut failed = false;
    for _ in 0..ACCEPT_BUDGET {
        let done = transport(leg, |t| {
            match t.listener.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nonblocking(true);
                    let _ = stream.set_nodelay(true);
                    let (state, tls) = match &t.tls {
                        None => (State::Open, None),
                        Some(ctx) => match ctx.server(peer) {
                            Ok(session) => (State::Handshaking, Some(Box::new(session))),
                            Err(e) => {
                                log::warn!("{leg}: {e}");
                                return false;
                            }
                        },
                    };
                    t.enforce_cap(&*lp, leg, &mut events);
                    let i = t.insert(stream, peer, state, tls, lp.now());
                    leg.count_opened();
                    if let Err(e) = t.register(i, &*lp) {
                        log::warn!("{leg}: cannot watch accepted connection from {peer}: {e}");
                        t.close(i, &*lp, None, &mut events);
                    }
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => {
                    // EMFILE and friends: the connections stay queued and,
                    // edge-triggered, raise no new event; try again after
                    // a pause rather than spin or wait for a new peer.
                    if t.accept_retry.is_none() {
                        log::warn!(
                            "{leg}: accept failed: {e}; trying again in {} ms",
                            ACCEPT_RETRY.as_millis()
                        );
                    }
                    failed = true;
                    true
                }
            }
        });
        if done != Some(false) {
            drained = true;
            break;
        }
    }
    if failed {
        schedule_accept_retry(leg, &*lp);
    }
    if !drained {
        // Edge-triggered: connections still queued raise no new event
        // (until yet another one arrives); ask for a fresh edge.
        let handle = transport(leg, |t| t.listener_handle).flatten();
        if let Some(h) = handle {
            let _ = lp.modify_fd(h, Interest::READ);
        }
    }
    leg.emit(events);
}

/// Connections accepted per readiness of the listener, before the loop
/// turns to other descriptors.
const ACCEPT_BUDGET: usize = 256;

/// How long a listener waits before it tries `accept` again after a
/// failure for want of resources (EMFILE: the process's descriptor limit).
pub(crate) const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Arms the accept retry timer, unless it is armed.
fn schedule_accept_retry(leg: &Leg, lp: &dyn Eventloop) {
    let armed = transport(leg, |t| t.accept_retry.is_some()).unwrap_or(true);
    if armed {
        return;
    }
    let weak = leg.downgrade();
    let id = lp.add_timer(
        When::In(ACCEPT_RETRY),
        None,
        Box::new(move || {
            if let Some(leg) = Leg::upgrade(&weak) {
                transport(&leg, |t| t.accept_retry = None);
                on_accept(&leg);
            }
        }),
    );
    transport(leg, |t| t.accept_retry = Some(id));
}

/// What reading a connection produced, handled after the borrow ends.
struct ReadOutcome {
    messages: Vec<Vec<u8>>,
    pong: bool,
    /// The peer, taken while the connection was known: it may be closed
    /// (EOF right after the last message) by the time messages go up.
    peer: SocketAddr,
    /// Whether reading closed the connection.
    closed: bool,
}

fn on_conn_ready(leg: &Leg, id: ConnId, r: Readiness) {
    let Some(lp) = leg.eventloop() else { return };
    let mut events = Vec::new();
    // What reading adds (a close after EOF, the outcomes it fails) goes up
    // after the messages that arrived before it.
    let mut read_events = Vec::new();
    let read = transport(leg, |t| {
        let i = t.lookup(id)?;
        if t.conns[i].state == State::Connecting && (r.writable || r.error || r.hangup) {
            match t.conns[i].stream.take_error() {
                Ok(None) if !r.error => {
                    let now = lp.now();
                    if t.conns[i].tls.is_some() {
                        // The handshake deadline counts from here.
                        t.conns[i].state = State::Handshaking;
                        t.conns[i].connect_started = now;
                    } else {
                        t.conns[i].state = State::Open;
                    }
                    t.touch(i, now);
                    t.arm_timer(i, &*lp);
                }
                Ok(err) => {
                    let e = err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ECONNREFUSED));
                    let peer = t.conns[i].peer;
                    t.close(
                        i,
                        &*lp,
                        Some(Error::io(&e, format_args!("{} connect to {peer}", t.kind))),
                        &mut events,
                    );
                    return None;
                }
                Err(e) => {
                    let peer = t.conns[i].peer;
                    let kind = t.kind;
                    t.close(
                        i,
                        &*lp,
                        Some(Error::io(&e, format_args!("{kind} connect to {peer}"))),
                        &mut events,
                    );
                    return None;
                }
            }
        }
        let state = t.conns[i].state;
        // A TLS session writes during the handshake too (and right after
        // the connect, its ClientHello).
        let may_write = state == State::Open || (state == State::Handshaking && r.writable);
        if (r.writable || t.conns[i].tls.as_ref().is_some_and(|s| s.wants_write()))
            && may_write
            && t.write_some(i, &*lp, &mut events).is_err()
        {
            return None;
        }
        if r.readable || r.hangup || r.error {
            let out = read_conn(t, i, &*lp, leg, &mut read_events);
            if out.as_ref().is_some_and(|o| !o.closed) {
                tls_progress(t, i, &*lp, leg, &mut read_events);
            }
            out
        } else {
            None
        }
    })
    .flatten();
    leg.emit(events);
    let Some(read) = read else {
        leg.emit(read_events);
        return;
    };
    // RFC 5626 3.5.1: a CRLFCRLF ping is answered with a CRLF pong, on
    // this connection only (a send to a closed one would dial the peer's
    // ephemeral port).
    if read.pong && !read.closed {
        let dst = Destination {
            proto: leg.protocol(),
            addr: read.peer,
            host: None,
            conn: Some(id),
        };
        let _ = leg.send_as(Rc::from(&b"\r\n"[..]), &dst, None, SendKind::Keepalive);
    }
    for m in read.messages {
        let source = Source {
            proto: leg.protocol(),
            addr: read.peer,
            conn: Some(id),
        };
        if let Some(ev) = leg.accept_bytes(&m, source, Framing::Stream) {
            if leg.protocol() == Protocol::Tls {
                note_alias(leg, id, &ev);
            }
            leg.emit(vec![ev]);
        }
    }
    leg.emit(read_events);
}

/// Rounds of read-then-cut per readiness: bounds the work and memory one
/// busy connection takes per loop turn; with more waiting, it is re-armed.
const READ_ROUNDS: usize = 16;

/// Reads what is available and cuts complete messages out of the buffer.
/// Closes the connection on EOF, errors and framing errors.
///
/// Readiness is edge-triggered: the socket must be read until it would
/// block, or no new event comes while its data waits (and a sender blocked
/// on a full window sends nothing that would raise one). The buffer cap
/// only ends a round; messages are cut out and reading goes on.
fn read_conn(
    t: &mut TcpTransport,
    i: usize,
    lp: &dyn Eventloop,
    leg: &Leg,
    events: &mut Vec<LegEvent>,
) -> Option<ReadOutcome> {
    let now = lp.now();
    let mut out = ReadOutcome {
        messages: Vec::new(),
        pong: false,
        peer: t.conns[i].peer,
        closed: false,
    };
    let mut chunk = [0u8; READ_CHUNK];
    let max_buffer = t.limits.max_message_size.saturating_add(READ_CHUNK);
    for _ in 0..READ_ROUNDS {
        let mut eof = false;
        let mut drained = false;
        let mut tls_error = None;
        loop {
            let c = &mut t.conns[i];
            match (&*c.stream).read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    match c.tls.as_mut() {
                        None => c.rbuf.extend_from_slice(&chunk[..n]),
                        Some(tls) => match tls.feed(&chunk[..n], &mut c.rbuf) {
                            Ok(peer_closed) => eof |= peer_closed,
                            // The messages before the bad record still go
                            // up; then the session ends.
                            Err(err) => tls_error = Some(err),
                        },
                    }
                    t.touch(i, now);
                    if eof || tls_error.is_some() {
                        break;
                    }
                    if t.conns[i].rbuf.len() > max_buffer {
                        // Cut messages out (or reject an oversize one)
                        // before reading more.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let peer = t.conns[i].peer;
                    let kind = t.kind;
                    t.close(
                        i,
                        lp,
                        Some(Error::io(&e, format_args!("{kind} read from {peer}"))),
                        events,
                    );
                    out.closed = true;
                    return Some(out);
                }
            }
        }
        if !cut_messages(t, i, lp, leg, now, &mut out, events) {
            out.closed = true;
            return Some(out);
        }
        if let Some(err) = tls_error {
            t.fail_tls(i, lp, err, events);
            out.closed = true;
            return Some(out);
        }
        if eof {
            t.close(i, lp, None, events);
            out.closed = true;
            return Some(out);
        }
        if drained {
            return Some(out);
        }
    }
    // Data still waiting after this turn's share: ask for a fresh edge.
    let c = &t.conns[i];
    if let Some(h) = c.handle {
        let interest = if c.write_interest {
            Interest::READ_WRITE
        } else {
            Interest::READ
        };
        let _ = lp.modify_fd(h, interest);
    }
    Some(out)
}

/// Cuts complete messages and keep-alives out of a connection's buffer;
/// returns false when a framing error closed the connection.
fn cut_messages(
    t: &mut TcpTransport,
    i: usize,
    lp: &dyn Eventloop,
    leg: &Leg,
    now: std::time::Instant,
    out: &mut ReadOutcome,
    events: &mut Vec<LegEvent>,
) -> bool {
    let mut start = 0;
    let mut cut_any = false;
    let c = &mut t.conns[i];
    loop {
        let rest = &c.rbuf[start..];
        let skip = leading_line_ends(rest);
        if skip > 0 {
            if rest[..skip].windows(4).any(|w| w == b"\r\n\r\n") {
                out.pong = true;
            }
            leg.count_keepalive();
            start += skip;
            c.framer.reset();
            continue;
        }
        if rest.is_empty() {
            break;
        }
        match c.framer.message_len(rest) {
            Ok(Some(len)) => {
                out.messages.push(rest[..len].to_vec());
                start += len;
                cut_any = true;
                c.framer.reset();
            }
            Ok(None) => break,
            Err(e) => {
                let peer = c.peer;
                let kind = t.kind;
                log::warn!("{leg}: closing {kind} connection from {peer}: {e}");
                leg.count_limited();
                t.close(
                    i,
                    lp,
                    Some(Error::new(
                        Errno::EPROTO,
                        format!("{kind} from {peer}: {e}"),
                    )),
                    events,
                );
                return false;
            }
        }
    }
    c.rbuf.drain(..start);
    if c.rbuf.is_empty() {
        c.partial_since = None;
        // Give back memory a large message needed.
        if c.rbuf.capacity() > READ_CHUNK {
            c.rbuf = Vec::new();
        }
    } else if cut_any || c.partial_since.is_none() {
        // The incomplete message began after the last complete one, in
        // this read: the header timeout counts from here. (Keeping the
        // first incomplete read's time would close a busy connection
        // whose reads often end mid-message.) A timer armed for an
        // earlier deadline re-arms itself when it finds none expired.
        if c.partial_since.replace(now).is_none() {
            t.arm_timer(i, lp);
        }
    }
    true
}

fn on_conn_timer(leg: &Leg, id: ConnId) {
    let Some(lp) = leg.eventloop() else { return };
    let mut events = Vec::new();
    transport(leg, |t| {
        let Some(i) = t.lookup(id) else { return };
        t.conns[i].timer = None;
        let now = lp.now();
        let c = &t.conns[i];
        let peer = c.peer;
        let handshake_timeout = t.tls.as_ref().map(|ctx| ctx.handshake_timeout());
        let expired = if let (State::Handshaking, Some(limit)) = (c.state, handshake_timeout)
            && now >= c.connect_started + limit
        {
            let what = c.tls.as_ref().map(|s| s.what()).unwrap_or("TLS");
            Some((
                Error::new(
                    Errno::ETIMEDOUT,
                    format!("{what}: handshake not finished after {limit:?}"),
                ),
                true,
            ))
        } else if c.state == State::Connecting && now >= c.connect_started + t.opts.connect_timeout
        {
            Some((
                Error::new(
                    Errno::ETIMEDOUT,
                    format!(
                        "{} connect to {peer}: no answer in {:?}",
                        t.kind, t.opts.connect_timeout
                    ),
                ),
                false,
            ))
        } else if c
            .partial_since
            .is_some_and(|p| now >= p + t.opts.header_timeout)
        {
            Some((
                Error::new(
                    Errno::ETIMEDOUT,
                    format!(
                        "{} from {peer}: message incomplete after {:?}",
                        t.kind, t.opts.header_timeout
                    ),
                ),
                true,
            ))
        } else if now >= c.last_activity + t.opts.idle_timeout {
            Some((
                Error::new(
                    Errno::ETIMEDOUT,
                    format!("{} to {peer}: idle for {:?}", t.kind, t.opts.idle_timeout),
                ),
                // The idle timeout is one of the limits
                // `LegStats::connections_limited` counts.
                true,
            ))
        } else {
            None
        };
        match expired {
            Some((err, limited)) => {
                if c.state == State::Handshaking {
                    log::warn!("{leg}: closing connection: {err}");
                } else {
                    log::debug!("{leg}: closing connection: {err}");
                }
                if limited {
                    leg.count_limited();
                }
                t.close(i, &*lp, Some(err), &mut events);
            }
            None => t.arm_timer(i, &*lp),
        }
    });
    leg.emit(events);
}

/// After reading a TLS connection: a handshake that just finished opens
/// it (the queued sends go out), and what the session has to say (its
/// handshake messages) is written.
fn tls_progress(
    t: &mut TcpTransport,
    i: usize,
    lp: &dyn Eventloop,
    leg: &Leg,
    events: &mut Vec<LegEvent>,
) {
    let Some(c) = t.conns.get_mut(i) else { return };
    let Some(tls) = c.tls.as_ref() else { return };
    if c.state == State::Handshaking && !tls.is_handshaking() {
        c.state = State::Open;
        log::debug!("{leg}: {}: handshake done", tls.what());
        t.arm_timer(i, lp);
    }
    let c = &t.conns[i];
    let wants = c.tls.as_ref().is_some_and(|s| s.wants_write());
    if wants || (c.state == State::Open && !c.wbuf.is_empty()) {
        let _ = t.write_some(i, lp, events);
    }
}

/// RFC 5923: a request whose top Via has `alias` offers its connection
/// for requests to its sent-by.
fn note_alias(leg: &Leg, id: ConnId, ev: &LegEvent) {
    let LegEvent::Packet(crate::packet::Packet::Request(req), _) = ev else {
        return;
    };
    let Ok(via) = req.top_via() else { return };
    if via.params().get("alias").is_none() {
        return;
    }
    let port = via.port().unwrap_or(Protocol::Tls.default_port());
    let host = via.host();
    transport(leg, |t| t.register_alias(id, host, port, leg));
}
