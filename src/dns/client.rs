//! [`StubResolver`]: the built-in DNS client. It asks recursive
//! nameservers over UDP (TCP when an answer is truncated) from the event
//! loop, never blocking it, and keeps answers in a bounded cache.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use slab::Slab;
use socket2::{Domain, Socket, Type};

use super::cache::{Cache, Cached, QuestionKey};
use super::config::DnsConfig;
use super::wire::{self, Reply};
use super::{DnsAnswer, DnsQuery, DnsResolver};
use crate::error::{Errno, Error};
use crate::eventloop::{Eventloop, FdHandle, Interest, Readiness, TimerId, When};

/// CNAME targets asked for anew (when a server left a chain unresolved)
/// before a lookup gives up.
const MAX_ALIAS_QUERIES: u8 = 8;

/// Counters of a [`StubResolver`], from [`StubResolver::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsStats {
    /// Queries sent (UDP datagrams and TCP queries).
    pub queries_sent: u64,
    /// Replies accepted as the answer to a query.
    pub answers_accepted: u64,
    /// Replies ignored: from another address or port than the server
    /// asked, with another id or question, or malformed.
    pub answers_ignored: u64,
    /// Replies larger than [`DnsConfig::max_answer_size`].
    pub answers_oversized: u64,
    /// Servers that did not answer within the timeout.
    pub timeouts: u64,
    /// Replies with an error code other than NXDOMAIN (SERVFAIL,
    /// REFUSED, ...), and failed sends or connections.
    pub server_failures: u64,
    /// Truncated UDP answers asked again over TCP.
    pub tcp_fallbacks: u64,
    /// Questions answered from the cache.
    pub cache_hits: u64,
    /// Questions the cache could not answer.
    pub cache_misses: u64,
    /// Questions that joined an identical one already in flight.
    pub coalesced: u64,
    /// Lookups answered from the hosts file.
    pub hosts_answers: u64,
    /// Queries on the wire now.
    pub in_flight: usize,
    /// Queries waiting for a slot now.
    pub waiting: usize,
    /// Entries in the cache now.
    pub cache_entries: usize,
}

/// Called with the outcome of one wire question.
type Waiter = Box<dyn FnOnce(Result<Cached, Error>)>;

/// The socket of one attempt: a datagram to one server, or the TCP
/// connection that asks it again after a truncated answer.
enum Conn {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        connected: bool,
        /// The framed query and how much of it was written.
        out: Vec<u8>,
        written: usize,
        /// The framed answer read so far (bounded by the frame length).
        input: Vec<u8>,
    },
}

impl Conn {
    fn fd(&self) -> RawFd {
        match self {
            Conn::Udp(s) => s.as_raw_fd(),
            Conn::Tcp { stream, .. } => stream.as_raw_fd(),
        }
    }
}

/// One attempt: the server asked, the id used, the socket and its timer.
struct Attempt {
    /// Unique per attempt: stale callbacks (an earlier attempt of a reused
    /// slot) are recognised by it.
    serial: u64,
    server: SocketAddr,
    id: u16,
    conn: Conn,
    fd: Option<FdHandle>,
    timer: Option<TimerId>,
}

/// A wire question on its way (or waiting for a slot), with everybody
/// who asked it.
struct Flight {
    key: QuestionKey,
    name: Name,
    qtype: RecordType,
    waiters: Vec<Waiter>,
    /// The nameserver index the first attempt goes to (rotation).
    first_server: usize,
    /// Attempts made (each goes to the next server in turn).
    tries: usize,
    attempt: Option<Attempt>,
    last_error: Option<Error>,
}

/// What the reply (or the lack of one) means for a flight.
enum Verdict {
    /// Keep waiting.
    Wait,
    /// This server failed: try the next one.
    NextServer(Error),
    /// Ask the same server over TCP.
    Tcp,
    /// The answer, with its TTL before capping.
    Done(Cached, Option<u32>),
}

/// A 16-bit random source for query ids, refilled from the OS in blocks.
struct Ids {
    pool: [u8; 64],
    used: usize,
    fallback: u64,
}

impl Ids {
    fn next(&mut self) -> u16 {
        if self.used + 2 > self.pool.len() {
            if getrandom::fill(&mut self.pool).is_err() {
                // No OS randomness: a SplitMix64 stream seeded from the
                // clock is all that is left.
                for chunk in self.pool.chunks_mut(8) {
                    self.fallback = self.fallback.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = self.fallback;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes()[..chunk.len()]);
                }
            }
            self.used = 0;
        }
        let id = u16::from_le_bytes([self.pool[self.used], self.pool[self.used + 1]]);
        self.used += 2;
        id
    }
}

struct State {
    cache: Cache,
    stats: DnsStats,
    flights: Slab<Flight>,
    by_key: HashMap<QuestionKey, usize>,
    waiting: VecDeque<usize>,
    in_flight: usize,
    rotate_next: usize,
    serial: u64,
    ids: Ids,
    /// Receive buffer, `max_answer_size + 1` bytes (to see oversize).
    buf: Vec<u8>,
}

/// Completed flights whose waiters are to be called once no borrow is
/// held.
type Completed = Vec<(Vec<Waiter>, Result<Cached, Error>)>;

/// The built-in stub resolver: answers [`DnsQuery`]s from the hosts file,
/// its cache, or recursive nameservers, over the event loop.
///
/// - A and AAAA questions for a name the hosts file lists are answered
///   from it (the family it lacks is an empty answer).
/// - Each query goes out from a fresh non-blocking UDP socket (a new
///   ephemeral port and a random id per query, RD set). A reply counts
///   only if it comes from the address and port asked, with the same id
///   and question; anything else is ignored and counted
///   ([`DnsStats::answers_ignored`]) while the resolver keeps waiting. A
///   server that does not answer within [`DnsConfig::timeout`] (or
///   answers SERVFAIL/REFUSED, or refuses the port) makes way for the
///   next one; after [`DnsConfig::attempts`] rounds the lookup fails with
///   ETIMEDOUT (or, when servers only failed, EHOSTUNREACH). A truncated
///   answer is asked again over TCP. NXDOMAIN and empty answers are
///   `Ok(vec![])`. CNAMEs are followed.
/// - Names with fewer than [`DnsConfig::ndots`] dots are tried with each
///   search domain, then as they are; other names only as they are (the
///   dispatcher's names are fully qualified, so glibc's search after a
///   failed absolute name would only add queries); a trailing dot means
///   absolute.
/// - At most [`DnsConfig::max_in_flight`] questions are on the wire; the
///   rest wait in a FIFO of [`DnsConfig::max_waiting`], beyond which a
///   lookup fails with ENOBUFS. Identical questions in flight share one
///   query.
/// - Answers are cached ([`CacheOptions`](super::CacheOptions)) on the
///   event loop's clock.
///
/// **When callbacks run:** answers from the hosts file or the cache, and
/// immediate failures (ENOBUFS, EINVAL for a malformed name), are given
/// *inside* [`StubResolver::lookup`], before it returns; everything else
/// from the event loop. The dispatcher handles both.
///
/// The resolver registers sockets and timers with the loop through
/// closures that hold only a `Weak` reference: dropping the last `Rc`
/// closes every socket, cancels every timer and fails the lookups in
/// flight with ECANCELED. The [`hook`](StubResolver::hook) holds an `Rc`,
/// and so do the dispatcher's lookups waiting for an answer: a resolver
/// given to a dispatcher lives until the dispatcher is gone and its last
/// query has ended (answered or timed out).
///
/// ```no_run
/// use std::rc::Rc;
/// use sip_dispatch::dispatcher::{Dispatcher, DispatcherOptions};
/// use sip_dispatch::dns::{DnsConfig, StubResolver};
/// use sip_dispatch::eventloop::{Eventloop, MioEventloop};
///
/// let lp: Rc<dyn Eventloop> = Rc::new(MioEventloop::new()?);
/// let resolver = StubResolver::new(lp.clone(), DnsConfig::system());
/// let dispatcher = Dispatcher::new(
///     vec![],
///     Some(lp),
///     DispatcherOptions { dns_resolver: Some(resolver.hook()), ..Default::default() },
/// )?;
/// # let _ = dispatcher;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct StubResolver {
    lp: Rc<dyn Eventloop>,
    config: DnsConfig,
    weak: Weak<StubResolver>,
    state: RefCell<State>,
}

impl fmt::Debug for StubResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StubResolver");
        d.field("config", &self.config);
        // Debug may run while the state is borrowed (a log line inside).
        if self.state.try_borrow().is_ok() {
            d.field("stats", &self.stats());
        }
        d.finish()
    }
}

/// A lookup through the search list, and what it met so far.
struct Search {
    qtype: RecordType,
    candidates: Vec<String>,
    next: usize,
    alias_queries: u8,
    got_nodata: bool,
    server_failure: Option<Error>,
    /// Why a candidate could not be asked (a malformed name); the
    /// lookup's error when no candidate could.
    invalid: Option<Error>,
    queried: bool,
    callback: Box<dyn FnOnce(DnsAnswer)>,
}

impl StubResolver {
    /// A resolver on this loop with this configuration.
    pub fn new(lp: Rc<dyn Eventloop>, config: DnsConfig) -> Rc<StubResolver> {
        let buf = vec![0; config.max_answer_size.saturating_add(1).min(65536)];
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = clock ^ (u64::from(std::process::id()) << 32);
        Rc::new_cyclic(|weak| StubResolver {
            state: RefCell::new(State {
                cache: Cache::new(config.cache.clone()),
                stats: DnsStats::default(),
                flights: Slab::new(),
                by_key: HashMap::new(),
                waiting: VecDeque::new(),
                in_flight: 0,
                rotate_next: 0,
                serial: 0,
                ids: Ids {
                    pool: [0; 64],
                    used: 64,
                    fallback: seed,
                },
                buf,
            }),
            lp,
            config,
            weak: weak.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> DnsStats {
        let st = self.state.borrow();
        DnsStats {
            in_flight: st.in_flight,
            waiting: st.waiting.len(),
            cache_entries: st.cache.len(),
            ..st.stats
        }
    }

    /// The hook for [`DispatcherOptions::dns_resolver`](crate::dispatcher::DispatcherOptions).
    /// It holds an `Rc`: the resolver lives as long as the dispatcher.
    pub fn hook(self: &Rc<Self>) -> DnsResolver {
        let this = self.clone();
        Rc::new(move |query, callback| this.lookup(query, callback))
    }

    /// Looks a question up; `callback` is called exactly once, inside this
    /// call for hosts-file and cache answers and immediate failures, from
    /// the event loop otherwise (see the type's documentation).
    pub fn lookup(self: &Rc<Self>, query: DnsQuery, callback: Box<dyn FnOnce(DnsAnswer)>) {
        let (name, qtype) = wire::record_type(&query);
        if matches!(query, DnsQuery::A(_) | DnsQuery::Aaaa(_))
            && !self.config.hosts.lookup(name).is_empty()
        {
            self.state.borrow_mut().stats.hosts_answers += 1;
            callback(Ok(self.config.hosts.answer(&query)));
            return;
        }
        let candidates = self.candidates(name);
        if candidates.is_empty() {
            callback(Err(Error::new(
                Errno::EINVAL,
                format!("invalid DNS name {name:?}"),
            )));
            return;
        }
        self.search_next(Search {
            qtype,
            candidates,
            next: 0,
            alias_queries: 0,
            got_nodata: false,
            server_failure: None,
            invalid: None,
            queried: false,
            callback,
        });
    }

    /// The names to ask, in order (resolv.conf's search and ndots).
    fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return if absolute.is_empty() {
                Vec::new()
            } else {
                vec![absolute.to_owned()]
            };
        }
        if name.is_empty() {
            return Vec::new();
        }
        let dots = name.bytes().filter(|b| *b == b'.').count();
        if dots >= usize::from(self.config.ndots) {
            return vec![name.to_owned()];
        }
        let mut out: Vec<String> = self
            .config
            .search
            .iter()
            .map(|d| format!("{name}.{d}"))
            .collect();
        out.push(name.to_owned());
        out
    }

    fn search_next(&self, mut search: Search) {
        let Some(name) = search.candidates.get(search.next).cloned() else {
            let answer = match (search.server_failure, search.invalid) {
                (_, Some(e)) if !search.queried => Err(e),
                (Some(e), _) if !search.got_nodata => Err(e),
                _ => Ok(Vec::new()),
            };
            (search.callback)(answer);
            return;
        };
        search.next += 1;
        self.ask_name(&name, search);
    }

    fn ask_name(&self, name: &str, mut search: Search) {
        let key = QuestionKey {
            name: name.to_ascii_lowercase(),
            qtype: u16::from(search.qtype),
        };
        let hit = {
            let mut st = self.state.borrow_mut();
            let hit = st.cache.get(&key, self.lp.now());
            match hit {
                Some(_) => st.stats.cache_hits += 1,
                None => st.stats.cache_misses += 1,
            }
            hit
        };
        if let Some(hit) = hit {
            // Only names that were valid questions are in the cache.
            search.queried = true;
            return on_result(&self.weak, search, Ok(hit));
        }
        let fqdn = match wire::fqdn(name) {
            Ok(n) => n,
            Err(e) => {
                // One bad candidate (a search domain making it too long)
                // does not end the search.
                log::debug!("{e}");
                search.invalid = Some(e);
                return self.search_next(search);
            }
        };
        search.queried = true;
        let qtype = search.qtype;
        let weak = self.weak.clone();
        self.ask(
            key,
            fqdn,
            qtype,
            Box::new(move |result| on_result(&weak, search, result)),
        );
    }

    /// Joins a wire question (not in the cache) to an identical one in
    /// flight, or starts (or queues) a query for it.
    fn ask(&self, key: QuestionKey, name: Name, qtype: RecordType, waiter: Waiter) {
        let mut done = Completed::new();
        {
            let mut st = self.state.borrow_mut();
            if let Some(&index) = st.by_key.get(&key) {
                st.stats.coalesced += 1;
                st.flights[index].waiters.push(waiter);
                return;
            }
            let queue = st.in_flight >= self.max_in_flight();
            if queue && st.waiting.len() >= self.config.max_waiting {
                drop(st);
                waiter(Err(Error::new(
                    Errno::ENOBUFS,
                    format!(
                        "DNS: {} queries in flight and {} waiting",
                        self.config.max_in_flight, self.config.max_waiting
                    ),
                )));
                return;
            }
            let first_server = if self.config.rotate && !self.config.nameservers.is_empty() {
                st.rotate_next = st.rotate_next.wrapping_add(1);
                (st.rotate_next - 1) % self.config.nameservers.len()
            } else {
                0
            };
            let index = st.flights.insert(Flight {
                key: key.clone(),
                name,
                qtype,
                waiters: vec![waiter],
                first_server,
                tries: 0,
                attempt: None,
                last_error: None,
            });
            st.by_key.insert(key, index);
            if queue {
                st.waiting.push_back(index);
            } else {
                st.in_flight += 1;
                if let Err(e) = self.next_server(&mut st, index) {
                    self.finish(&mut st, index, Err(e), &mut done);
                    self.promote(&mut st, &mut done);
                }
            }
        }
        run(done);
    }

    /// The in-flight bound (at least one, or nothing would ever start).
    fn max_in_flight(&self) -> usize {
        self.config.max_in_flight.max(1)
    }

    /// Starts queued flights while slots are free.
    fn promote(&self, st: &mut State, done: &mut Completed) {
        while st.in_flight < self.max_in_flight() {
            let Some(index) = st.waiting.pop_front() else {
                break;
            };
            st.in_flight += 1;
            if let Err(e) = self.next_server(st, index) {
                self.finish(st, index, Err(e), done);
            }
        }
    }

    /// Ends a flight: its attempt is closed, the answer cached, the slot
    /// freed; its waiters go to `done`.
    fn finish(
        &self,
        st: &mut State,
        index: usize,
        result: Result<Cached, Error>,
        done: &mut Completed,
    ) {
        let Some(mut flight) = st.flights.try_remove(index) else {
            return;
        };
        if let Some(a) = flight.attempt.take() {
            self.close(a);
        }
        st.by_key.remove(&flight.key);
        st.in_flight = st.in_flight.saturating_sub(1);
        done.push((flight.waiters, result));
    }

    /// Closes the current attempt and sends the query to the next server
    /// in turn, skipping servers that cannot even be sent to; the error
    /// is the flight's end (all attempts used).
    fn next_server(&self, st: &mut State, index: usize) -> Result<(), Error> {
        let servers = &self.config.nameservers;
        let total = servers
            .len()
            .saturating_mul(self.config.attempts.max(1) as usize);
        loop {
            let flight = &mut st.flights[index];
            if let Some(a) = flight.attempt.take() {
                self.close(a);
            }
            if flight.tries >= total {
                return Err(flight.last_error.take().unwrap_or_else(|| {
                    Error::new(Errno::EHOSTUNREACH, "DNS: no nameserver configured")
                }));
            }
            let server = servers[(flight.first_server + flight.tries) % servers.len()];
            flight.tries += 1;
            match self.send_udp(st, index, server) {
                Ok(attempt) => {
                    st.flights[index].attempt = Some(attempt);
                    return Ok(());
                }
                Err(e) => {
                    log::debug!("{e}");
                    st.stats.server_failures += 1;
                    st.flights[index].last_error = Some(e);
                }
            }
        }
    }

    fn send_udp(&self, st: &mut State, index: usize, server: SocketAddr) -> Result<Attempt, Error> {
        let id = st.ids.next();
        let flight = &st.flights[index];
        let query = wire::build_query(&flight.name, flight.qtype, id, self.config.edns0)?;
        let context = || format!("DNS query to {server}");
        let socket = udp_socket(server).map_err(|e| Error::io(&e, context()))?;
        socket
            .send_to(&query, server)
            .map_err(|e| Error::io(&e, context()))?;
        st.stats.queries_sent += 1;
        self.register(st, index, server, id, Conn::Udp(socket))
    }

    fn send_tcp(&self, st: &mut State, index: usize) -> Result<(), Error> {
        let Some(previous) = st.flights[index].attempt.take() else {
            return Err(Error::new(
                Errno::EINVAL,
                "DNS: no attempt to retry over TCP",
            ));
        };
        let server = previous.server;
        self.close(previous);
        let id = st.ids.next();
        let flight = &st.flights[index];
        let query = wire::build_query(&flight.name, flight.qtype, id, false)?;
        let context = || format!("DNS query over TCP to {server}");
        let len = u16::try_from(query.len()).map_err(|_| Error::new(Errno::EMSGSIZE, context()))?;
        let mut out = Vec::with_capacity(query.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&query);
        let stream = tcp_connect(server).map_err(|e| Error::io(&e, context()))?;
        st.stats.queries_sent += 1;
        st.stats.tcp_fallbacks += 1;
        let conn = Conn::Tcp {
            stream,
            connected: false,
            out,
            written: 0,
            input: Vec::new(),
        };
        let attempt = self.register(st, index, server, id, conn)?;
        st.flights[index].attempt = Some(attempt);
        Ok(())
    }

    /// Registers an attempt's socket and timeout with the loop; the
    /// closures hold a `Weak` and the attempt's serial.
    fn register(
        &self,
        st: &mut State,
        index: usize,
        server: SocketAddr,
        id: u16,
        conn: Conn,
    ) -> Result<Attempt, Error> {
        st.serial += 1;
        let serial = st.serial;
        let interest = match conn {
            Conn::Udp(_) => Interest::READ,
            Conn::Tcp { .. } => Interest::READ_WRITE,
        };
        let weak = self.weak.clone();
        let fd = self
            .lp
            .add_fd(
                conn.fd(),
                interest,
                Box::new(move |ready| {
                    if let Some(this) = weak.upgrade() {
                        this.on_ready(index, serial, ready);
                    }
                }),
            )
            .map_err(|e| Error::io(&e, format!("DNS: registering the socket for {server}")))?;
        let weak = self.weak.clone();
        let timer = self.lp.add_timer(
            When::In(self.config.timeout),
            None,
            Box::new(move || {
                if let Some(this) = weak.upgrade() {
                    this.on_timeout(index, serial);
                }
            }),
        );
        Ok(Attempt {
            serial,
            server,
            id,
            conn,
            fd: Some(fd),
            timer: Some(timer),
        })
    }

    /// Deregisters an attempt (before its socket closes) and cancels its
    /// timer.
    fn close(&self, mut attempt: Attempt) {
        if let Some(fd) = attempt.fd.take() {
            self.lp.del_fd(fd);
        }
        if let Some(timer) = attempt.timer.take() {
            self.lp.cancel_timer(timer);
        }
    }

    fn on_timeout(&self, index: usize, serial: u64) {
        let mut done = Completed::new();
        {
            let mut st = self.state.borrow_mut();
            let Some(attempt) = current(&mut st, index, serial) else {
                return;
            };
            // The timer has fired: nothing to cancel.
            attempt.timer = None;
            let server = attempt.server;
            st.stats.timeouts += 1;
            let name = &st.flights[index].name;
            let e = Error::new(
                Errno::ETIMEDOUT,
                format!("DNS: no answer from {server} for {name}"),
            );
            log::debug!("{e}");
            self.advance(&mut st, index, Verdict::NextServer(e), &mut done);
            self.promote(&mut st, &mut done);
        }
        run(done);
    }

    fn on_ready(&self, index: usize, serial: u64, ready: Readiness) {
        let mut done = Completed::new();
        {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            if current(st, index, serial).is_none() {
                return;
            }
            let next = match st.flights[index]
                .attempt
                .as_ref()
                .map(|a| matches!(a.conn, Conn::Udp(_)))
            {
                Some(true) => self.read_udp(st, index),
                Some(false) => self.drive_tcp(st, index, ready),
                None => return,
            };
            self.advance(st, index, next, &mut done);
            self.promote(st, &mut done);
        }
        run(done);
    }

    /// Acts on what a reply (or timeout) means.
    fn advance(&self, st: &mut State, index: usize, next: Verdict, done: &mut Completed) {
        match next {
            Verdict::Wait => {}
            Verdict::Done(cached, ttl) => {
                st.stats.answers_accepted += 1;
                let options = st.cache.options();
                let cap = match cached {
                    Cached::Negative { .. } => options.negative_max_ttl,
                    _ => options.max_ttl,
                };
                let ttl = ttl.map_or(Duration::ZERO, |t| {
                    Duration::from_secs(u64::from(t)).min(cap)
                });
                let key = st.flights[index].key.clone();
                st.cache.insert(key, cached.clone(), ttl, self.lp.now());
                self.finish(st, index, Ok(cached), done);
            }
            Verdict::Tcp => {
                if let Err(e) = self.send_tcp(st, index) {
                    self.fail_attempt(st, index, e, done);
                }
            }
            Verdict::NextServer(e) => self.fail_attempt(st, index, e, done),
        }
    }

    /// Records a failed attempt and asks the next server, or ends the
    /// flight when no attempt is left.
    fn fail_attempt(&self, st: &mut State, index: usize, e: Error, done: &mut Completed) {
        st.flights[index].last_error = Some(e);
        if let Err(last) = self.next_server(st, index) {
            self.finish(st, index, Err(last), done);
        }
    }

    /// Reads every datagram waiting on a UDP attempt.
    fn read_udp(&self, st: &mut State, index: usize) -> Verdict {
        let State {
            flights,
            stats,
            buf,
            ..
        } = st;
        let flight = &flights[index];
        let Some(attempt) = flight.attempt.as_ref() else {
            return Verdict::Wait;
        };
        let Conn::Udp(socket) = &attempt.conn else {
            return Verdict::Wait;
        };
        let server = attempt.server;
        // Bounded: a flood of forged datagrams cannot keep the loop here.
        for _ in 0..64 {
            let (n, from) = match socket.recv_from(&mut buf[..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Verdict::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error (IP_RECVERR): the server refused.
                    stats.server_failures += 1;
                    return Verdict::NextServer(Error::io(&e, format!("DNS query to {server}")));
                }
            };
            if from.ip() != server.ip() || from.port() != server.port() {
                log::debug!("DNS: ignored a reply from {from}, asked {server}");
                stats.answers_ignored += 1;
                continue;
            }
            if n > self.config.max_answer_size {
                stats.answers_oversized += 1;
                return Verdict::NextServer(oversized(server, self.config.max_answer_size));
            }
            match self.judge(stats, flight, attempt, &buf[..n], true) {
                Verdict::Wait => continue,
                next => return next,
            }
        }
        Verdict::Wait
    }

    /// What one reply means; counts it.
    fn judge(
        &self,
        stats: &mut DnsStats,
        flight: &Flight,
        attempt: &Attempt,
        bytes: &[u8],
        over_udp: bool,
    ) -> Verdict {
        let server = attempt.server;
        match wire::read_reply(bytes, attempt.id, &flight.name, flight.qtype, over_udp) {
            Reply::Ignore(why) => {
                log::debug!(
                    "DNS: ignored a reply from {server} for {}: {why}",
                    flight.name
                );
                stats.answers_ignored += 1;
                if over_udp {
                    Verdict::Wait
                } else {
                    Verdict::NextServer(Error::new(
                        Errno::EPROTO,
                        format!("DNS: {why} in the TCP answer of {server}"),
                    ))
                }
            }
            Reply::Truncated => Verdict::Tcp,
            Reply::ServerFailure(rcode) => {
                stats.server_failures += 1;
                Verdict::NextServer(Error::new(
                    Errno::EHOSTUNREACH,
                    format!("DNS: {server} answered {rcode} for {}", flight.name),
                ))
            }
            Reply::Answer(cached, ttl) => Verdict::Done(cached, ttl),
        }
    }

    /// Connects, writes the framed query, reads the framed answer.
    fn drive_tcp(&self, st: &mut State, index: usize, ready: Readiness) -> Verdict {
        let State { flights, stats, .. } = st;
        let flight = &mut flights[index];
        let Some(attempt) = flight.attempt.as_mut() else {
            return Verdict::Wait;
        };
        let server = attempt.server;
        let max = self.config.max_answer_size;
        let fail =
            |e: &io::Error| Verdict::NextServer(Error::io(e, format!("DNS over TCP to {server}")));
        let Conn::Tcp {
            stream,
            connected,
            out,
            written,
            input,
        } = &mut attempt.conn
        else {
            return Verdict::Wait;
        };
        if !*connected {
            match stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    stats.server_failures += 1;
                    return fail(&e);
                }
            }
            if !ready.writable {
                return Verdict::Wait;
            }
            *connected = true;
        }
        while *written < out.len() {
            match stream.write(&out[*written..]) {
                Ok(0) => return fail(&io::ErrorKind::WriteZero.into()),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Verdict::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    stats.server_failures += 1;
                    return fail(&e);
                }
            }
        }
        loop {
            // Read exactly the frame: 2 length bytes, then that many.
            let want = match input.as_slice() {
                [a, b, ..] => {
                    let len = usize::from(u16::from_be_bytes([*a, *b]));
                    if len > max {
                        stats.answers_oversized += 1;
                        return Verdict::NextServer(oversized(server, max));
                    }
                    2 + len
                }
                _ => 2,
            };
            if input.len() == want && want > 2 {
                break;
            }
            let have = input.len();
            input.resize(want, 0);
            match stream.read(&mut input[have..]) {
                Ok(0) => {
                    input.truncate(have);
                    stats.server_failures += 1;
                    return fail(&io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => input.truncate(have + n),
                Err(e) => {
                    input.truncate(have);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Verdict::Wait,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            stats.server_failures += 1;
                            return fail(&e);
                        }
                    }
                }
            }
        }
        let attempt = flight.attempt.as_ref();
        let Some(attempt) = attempt else {
            return Verdict::Wait;
        };
        let Conn::Tcp { input, .. } = &attempt.conn else {
            return Verdict::Wait;
        };
        self.judge(stats, flight, attempt, &input[2..], false)
    }
}

/// The current attempt of a flight, if `serial` names it.
fn current(st: &mut State, index: usize, serial: u64) -> Option<&mut Attempt> {
    st.flights
        .get_mut(index)?
        .attempt
        .as_mut()
        .filter(|a| a.serial == serial)
}

fn oversized(server: SocketAddr, max: usize) -> Error {
    Error::new(
        Errno::EMSGSIZE,
        format!("DNS: answer from {server} larger than {max} bytes"),
    )
}

/// Calls the waiters of completed flights (no borrow held).
fn run(done: Completed) {
    for (waiters, result) in done {
        for waiter in waiters {
            waiter(result.clone());
        }
    }
}

/// A wire question answered: the search ends, asks the next candidate,
/// or asks for an alias's target.
fn on_result(weak: &Weak<StubResolver>, mut search: Search, result: Result<Cached, Error>) {
    let this = weak.upgrade();
    match (result, this) {
        (Ok(Cached::Records(records)), _) => (search.callback)(Ok(records)),
        (Err(e), _) if e.errno() != Errno::EHOSTUNREACH => (search.callback)(Err(e)),
        (_, None) => (search.callback)(Err(Error::new(Errno::ECANCELED, "DNS resolver dropped"))),
        (Ok(Cached::Alias(target)), Some(this)) => {
            search.alias_queries += 1;
            if search.alias_queries > MAX_ALIAS_QUERIES {
                let e = Error::new(
                    Errno::EHOSTUNREACH,
                    format!("DNS: CNAME chain too long at {target}"),
                );
                return (search.callback)(Err(e));
            }
            this.ask_name(&target, search);
        }
        (Ok(Cached::Negative { nxdomain }), Some(this)) => {
            search.got_nodata |= !nxdomain;
            this.search_next(search);
        }
        (Err(e), Some(this)) => {
            // Servers failed for this name (SERVFAIL): as glibc, the next
            // search domain may still work.
            search.server_failure = Some(e);
            this.search_next(search);
        }
    }
}

impl Drop for StubResolver {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        st.by_key.clear();
        st.waiting.clear();
        st.in_flight = 0;
        let flights: Vec<Flight> = st.flights.drain().collect();
        let mut waiters = Vec::new();
        for mut flight in flights {
            if let Some(a) = flight.attempt.take() {
                self.close(a);
            }
            waiters.append(&mut flight.waiters);
        }
        for waiter in waiters {
            waiter(Err(Error::new(Errno::ECANCELED, "DNS resolver dropped")));
        }
    }
}

/// A non-blocking UDP socket on an ephemeral port of the server's family,
/// with ICMP errors reported (a refused port fails over at once).
fn udp_socket(server: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    enable_recverr(socket.as_raw_fd(), server.is_ipv6());
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    socket.bind(&local.into())?;
    Ok(socket.into())
}

/// A non-blocking TCP connection being set up to the server.
fn tcp_connect(server: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

/// IP_RECVERR / IPV6_RECVERR: ICMP errors reach an unconnected socket
/// (which must stay unconnected to see, and count, replies from elsewhere).
/// Failure is harmless: a dead server then costs a timeout.
fn enable_recverr(fd: RawFd, ipv6: bool) {
    let on: libc::c_int = 1;
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    // SAFETY: a valid descriptor and a pointer to a c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
