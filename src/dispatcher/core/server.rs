//! Server transactions (RFC 3261 17.2, RFC 6026): what a retransmitted
//! request gets (nothing before the first answer, else the latest response:
//! the response cache), and how long the transaction lives (Timers J, H, I,
//! L), bounded in number.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ServerState {
    Trying,
    Proceeding,
    /// A final response was sent (non-INVITE: Timer J; INVITE non-2xx:
    /// until ACK or Timer H).
    Completed,
    /// INVITE non-2xx final acknowledged (Timer I).
    Confirmed,
    /// INVITE 2xx sent (RFC 6026: absorb INVITE retransmissions).
    Accepted,
}

pub(super) struct ServerTx {
    pub(super) key: TransactionKey,
    /// The request's first Via line, when it has its own shared text, until
    /// the final response: a response whose first Via line is the same
    /// `Rc` answers this transaction (if the method agrees), found without
    /// building the key.
    pub(super) via: Option<Rc<str>>,
    /// `Keys::of_transaction` of the key: its entry in `server_keys`.
    pub(super) hash: u64,
    pub(super) leg: LegId,
    pub(super) source: Source,
    pub(super) invite: bool,
    pub(super) state: ServerState,
    pub(super) last_response: Option<Rc<[u8]>>,
    pub(super) response_delivery: Option<DeliveryId>,
    pub(super) expire: Option<TimerKey>,
    /// Whether the expiry is in the `ServerFifo` instead of the wheel.
    pub(super) queued: bool,
    /// The tick the expiry (wheel or FIFO) fires at.
    pub(super) expire_tick: u64,
}

/// The expiries of server transactions armed for the same duration, in
/// the order armed, which is the order due. An entry whose transaction is
/// gone or was re-armed since is stale: skipped when it comes to the
/// front, and trimmed from the front whenever a transaction ends, so the
/// queue holds about one entry per live transaction.
#[derive(Default)]
pub(super) struct ServerFifo {
    entries: VecDeque<(u64, (u32, u32))>,
    /// Transactions whose expiry is queued here.
    live: usize,
}

impl ServerFifo {
    /// Whether `(tick, sid)` is the transaction's current expiry.
    fn is_current(servers: &Arena<ServerTx>, tick: u64, sid: (u32, u32)) -> bool {
        servers
            .get(sid.0, sid.1)
            .is_some_and(|tx| tx.queued && tx.expire_tick == tick)
    }

    /// Queues an expiry at `tick`, or later: the queue stays sorted even
    /// if the clock read behind the last one (by a tick at most).
    fn push(&mut self, tick: u64, sid: (u32, u32)) -> u64 {
        let tick = self.entries.back().map_or(tick, |b| b.0.max(tick));
        self.entries.push_back((tick, sid));
        tick
    }

    /// The next transaction due at `now_tick`, stale entries skipped.
    pub(super) fn pop_due(
        &mut self,
        now_tick: u64,
        servers: &Arena<ServerTx>,
    ) -> Option<(u32, u32)> {
        while let Some(&(tick, sid)) = self.entries.front() {
            if tick > now_tick {
                return None;
            }
            self.entries.pop_front();
            if Self::is_current(servers, tick, sid) {
                return Some(sid);
            }
        }
        None
    }

    /// Drops stale entries from the front.
    fn trim(&mut self, servers: &Arena<ServerTx>) {
        while let Some(&(tick, sid)) = self.entries.front() {
            if Self::is_current(servers, tick, sid) {
                return;
            }
            self.entries.pop_front();
        }
    }

    /// The earliest tick queued (perhaps stale: firing then finds
    /// nothing, which is cheap).
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.entries.front().map(|e| e.0)
    }

    pub(super) fn live(&self) -> usize {
        self.live
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u64, (u32, u32))>()
    }
}

/// The server transactions of one connection. Removal is lazy (an expired
/// transaction stays listed until the list is compacted, when it has
/// doubled since the last compaction), so adding and expiring are O(1)
/// amortized and a closing connection costs only its own transactions.
#[derive(Default)]
pub(super) struct ConnTxs {
    ids: Vec<(u32, u32)>,
    compact_at: usize,
}

impl Core {
    pub(super) fn new_server_tx(
        &mut self,
        key: TransactionKey,
        hash: u64,
        req: &Request,
        leg: LegId,
        from: &Source,
        now: Instant,
    ) {
        while self.servers.len() >= self.s.max_server_transactions {
            let Some(oldest) = self.server_order.pop_front() else {
                break;
            };
            self.server_expired(oldest);
        }
        if self.servers.len() + 2 >= self.s.max_server_transactions {
            self.prefetch_oldest_servers();
        }
        let invite = *req.method() == Method::Invite;
        let sid = self.servers.insert(ServerTx {
            key,
            via: req.headers().first_via_shared().cloned(),
            hash,
            leg,
            source: from.clone(),
            invite,
            state: ServerState::Trying,
            last_response: None,
            response_delivery: None,
            expire: None,
            queued: false,
            expire_tick: 0,
        });
        self.server_keys.insert(hash, sid);
        self.server_order.push_back(sid);
        self.last_server = Some(sid);
        if let Some(conn) = from.conn {
            let servers = &self.servers;
            let entry = self.server_by_conn.entry((leg, conn)).or_default();
            if entry.ids.len() >= entry.compact_at {
                entry.ids.retain(|s| {
                    servers
                        .get(s.0, s.1)
                        .is_some_and(|tx| tx.source.conn == Some(conn))
                });
                entry.compact_at = (2 * entry.ids.len()).max(16);
            }
            entry.ids.push(sid);
        }
        // A transaction the user never answers must not live forever: a
        // non-INVITE client gives up after 64*T1, an INVITE one after
        // Timer C.
        let timeout = self.s.timers.timeout();
        let lifetime = if invite {
            self.s.timers.timer_c.unwrap_or(Duration::from_secs(180)) + timeout
        } else {
            timeout
        };
        self.arm_server_expire(sid, lifetime, now);
    }

    pub(super) fn arm_server_expire(&mut self, sid: (u32, u32), after: Duration, now: Instant) {
        let deadline = self.tick_at(now + after);
        let queue = after == self.s.timers.timeout();
        let Some(tx) = self.servers.get_mut(sid.0, sid.1) else {
            return;
        };
        if (tx.expire.is_some() || tx.queued) && tx.expire_tick == deadline {
            // Already due then: a non-INVITE answered within the tick it
            // arrived in keeps its expiry.
            return;
        }
        if let Some(old) = tx.expire.take() {
            self.wheel.cancel(old);
        }
        if queue {
            // A previous entry of this transaction becomes stale.
            if !tx.queued {
                tx.queued = true;
                self.server_fifo.live += 1;
            }
            tx.expire_tick = self.server_fifo.push(deadline, sid);
            return;
        }
        if tx.queued {
            tx.queued = false;
            self.server_fifo.live -= 1;
        }
        let key = self.wheel.insert(
            deadline,
            TimerRef {
                index: sid.0,
                generation: sid.1,
                kind: TimerKind::ServerExpire,
            },
        );
        if let Some(tx) = self.servers.get_mut(sid.0, sid.1) {
            tx.expire = Some(key);
            tx.expire_tick = deadline;
        }
    }

    /// At the cap, each new transaction evicts the oldest, whose record,
    /// index entry and cached response were written long ago and are out
    /// of cache. One request ahead, start loading the record of the one
    /// after next, and the index entry and response of the next (its
    /// record was loaded the same way a request before), so that evicting
    /// them does not wait on memory.
    fn prefetch_oldest_servers(&self) {
        if let Some(&(i, g)) = self.server_order.front() {
            if let Some(tx) = self.servers.get(i, g) {
                self.server_keys.prefetch(tx.hash);
                if let Some(bytes) = &tx.last_response {
                    // The reference counts sit just before the bytes.
                    let counts = Rc::as_ptr(bytes).cast::<u8>().wrapping_sub(16);
                    super::super::prefetch::prefetch(counts);
                }
            }
        }
        if let Some(&(i, _)) = self.server_order.get(1) {
            self.servers.prefetch(i);
        }
    }

    pub(super) fn server_expired(&mut self, sid: (u32, u32)) {
        // Read in place and dropped where it lies (no move of the
        // transaction out of the arena).
        let Some(tx) = self.servers.get(sid.0, sid.1) else {
            return;
        };
        let (expire, queued, hash) = (tx.expire, tx.queued, tx.hash);
        self.servers.discard(sid.0, sid.1);
        if let Some(k) = expire {
            self.wheel.cancel(k);
        }
        if queued {
            self.server_fifo.live -= 1;
            self.server_fifo.trim(&self.servers);
        }
        self.server_keys.remove_if(hash, sid);
        // server_order is trimmed lazily: stale entries are skipped when
        // popped (their ids no longer resolve).
        if self.server_order.len() > 2 * self.servers.len() + 64 {
            let servers = &self.servers;
            self.server_order
                .retain(|s| servers.get(s.0, s.1).is_some());
        }
    }

    /// A response is being sent for a server transaction: remember it for
    /// retransmitted requests and move the transaction on.
    pub(crate) fn note_response_sent(&mut self, id: DeliveryId, now: Instant) {
        let Some(d) = self.get(id) else { return };
        let (Some(sid), Some(bytes), Some(resp)) = (d.server, d.bytes.clone(), d.packet.response())
        else {
            return;
        };
        let code = resp.code();
        let retransmitting = matches!(d.mode, Mode::ResponseRetransmit { .. });
        self.note_server_response(sid, bytes, code, retransmitting.then_some(id), now);
    }

    /// A response `code` (sent as `bytes`) for the server transaction
    /// `sid`; `retransmitted_by` is the delivery that retransmits it, if
    /// one does.
    pub(super) fn note_server_response(
        &mut self,
        sid: (u32, u32),
        bytes: Rc<[u8]>,
        code: u16,
        retransmitted_by: Option<DeliveryId>,
        now: Instant,
    ) {
        let timeout = self.s.timers.timeout();
        let Some(tx) = self.servers.get_mut(sid.0, sid.1) else {
            return;
        };
        tx.last_response = Some(bytes);
        if code >= 200 {
            // Matched: the Via text need not outlive the answer.
            tx.via = None;
        }
        let reliable = tx.source.proto.is_reliable();
        let linger = if code < 200 {
            tx.state = ServerState::Proceeding;
            None
        } else if !tx.invite {
            tx.state = ServerState::Completed;
            // Timer J.
            Some(if reliable { Duration::ZERO } else { timeout })
        } else if code < 300 {
            tx.state = ServerState::Accepted;
            // RFC 6026 Timer L.
            Some(timeout)
        } else {
            tx.state = ServerState::Completed;
            if retransmitted_by.is_some() {
                tx.response_delivery = retransmitted_by;
            }
            // Timer H bounds Completed; the ACK moves on to Confirmed.
            Some(timeout)
        };
        if let Some(l) = linger {
            self.arm_server_expire(sid, l, now);
        }
    }

    /// A connection closed: server transactions answer by Via from now on.
    pub(crate) fn on_connection_closed(&mut self, leg: LegId, conn: ConnId) {
        let Some(entry) = self.server_by_conn.remove(&(leg, conn)) else {
            return;
        };
        for sid in entry.ids {
            if let Some(tx) = self.servers.get_mut(sid.0, sid.1) {
                if tx.leg == leg && tx.source.conn == Some(conn) {
                    tx.source.conn = None;
                }
            }
        }
    }
}
