//! The client transaction state machines of RFC 3261 17.1 as plain
//! functions: (state, event) -> (state, actions). The dispatcher applies
//! the actions (send, timers, outcome); tests drive these without sockets.

use std::time::Duration;

use super::options::Timers;
use crate::packet::{HeaderName, Method, Request, Response};

/// Where a client transaction is (RFC 3261 figures 5 and 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// INVITE sent, no response yet (Timers A, B).
    Calling,
    /// Non-INVITE sent, no response yet (Timers E, F).
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; retransmitted finals are absorbed until
    /// Timer D (INVITE) or K (non-INVITE).
    Completed,
}

/// The timers a client transaction uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientTimer {
    /// Timer A (INVITE) or E (non-INVITE).
    Retransmit,
    /// Timer B (INVITE) or F (non-INVITE).
    Timeout,
    /// Timer C: INVITE stuck in Proceeding.
    TimerC,
    /// Timer D (INVITE) or K (non-INVITE): end of Completed.
    Linger,
}

/// What the dispatcher must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send the request again.
    Resend,
    /// (Re)start a timer.
    Start(ClientTimer, Duration),
    /// Stop a timer.
    Stop(ClientTimer),
    /// Send (or send again) the ACK of a non-2xx final response.
    SendAck,
    /// Give the response to the receiver.
    PassUp,
    /// The transaction ended with this final status.
    Completed(u16),
    /// The transaction timed out (ETIMEDOUT), or may try the next target.
    TimedOut,
    /// Forget the transaction.
    Terminate,
}

/// A short list of actions without allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Actions {
    items: [Option<Action>; 8],
    len: usize,
}

impl Actions {
    fn push(&mut self, a: Action) {
        debug_assert!(
            self.len < self.items.len(),
            "an event produced more actions than Actions holds"
        );
        if self.len < self.items.len() {
            self.items[self.len] = Some(a);
            self.len += 1;
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Action> + '_ {
        self.items[..self.len].iter().filter_map(|a| *a)
    }
}

/// A client transaction's machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientTx {
    pub(crate) invite: bool,
    /// Retransmissions on (UDP and do_retransmits).
    pub(crate) retransmit: bool,
    /// Over a reliable transport (Timers D and K are zero).
    pub(crate) reliable: bool,
    pub(crate) state: ClientState,
    /// The next retransmission interval.
    pub(crate) interval: Duration,
}

impl ClientTx {
    pub(crate) fn new(invite: bool, retransmit: bool, reliable: bool, timers: &Timers) -> ClientTx {
        ClientTx {
            invite,
            retransmit: retransmit && !reliable,
            reliable,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            interval: timers.t1,
        }
    }

    /// The request was sent for the first time (to a new target).
    pub(crate) fn start(&mut self, timers: &Timers) -> Actions {
        let mut a = Actions::default();
        self.state = if self.invite {
            ClientState::Calling
        } else {
            ClientState::Trying
        };
        self.interval = timers.t1;
        if self.retransmit {
            a.push(Action::Start(ClientTimer::Retransmit, timers.t1));
        }
        a.push(Action::Start(ClientTimer::Timeout, timers.timeout()));
        a
    }

    /// A retransmission timer fired.
    pub(crate) fn on_retransmit(&mut self, timers: &Timers) -> Actions {
        let mut a = Actions::default();
        match self.state {
            ClientState::Calling => {
                // Timer A doubles without a cap (17.1.1.2).
                self.interval = self.interval.saturating_mul(2);
                a.push(Action::Resend);
                a.push(Action::Start(ClientTimer::Retransmit, self.interval));
            }
            ClientState::Trying => {
                self.interval = (self.interval.saturating_mul(2)).min(timers.t2);
                a.push(Action::Resend);
                a.push(Action::Start(ClientTimer::Retransmit, self.interval));
            }
            ClientState::Proceeding if !self.invite => {
                // 17.1.2.2: in Proceeding, retransmit every T2.
                self.interval = timers.t2;
                a.push(Action::Resend);
                a.push(Action::Start(ClientTimer::Retransmit, timers.t2));
            }
            _ => {}
        }
        a
    }

    /// A response with this status arrived for the transaction.
    pub(crate) fn on_response(&mut self, code: u16, timers: &Timers) -> Actions {
        let mut a = Actions::default();
        let provisional = code < 200;
        match (self.state, provisional) {
            (ClientState::Calling, true) => {
                self.state = ClientState::Proceeding;
                a.push(Action::Stop(ClientTimer::Retransmit));
                // Timer B runs only in Calling.
                a.push(Action::Stop(ClientTimer::Timeout));
                if let Some(c) = timers.timer_c {
                    a.push(Action::Start(ClientTimer::TimerC, c));
                }
                a.push(Action::PassUp);
            }
            (ClientState::Trying, true) => {
                self.state = ClientState::Proceeding;
                if self.retransmit {
                    // Keep retransmitting, now every T2 (the next firing
                    // uses the Proceeding rule).
                    self.interval = timers.t2;
                }
                a.push(Action::PassUp);
            }
            (ClientState::Proceeding, true) => {
                if self.invite {
                    if let Some(c) = timers.timer_c {
                        // RFC 3261 16.6 step 11: a provisional resets Timer C.
                        a.push(Action::Start(ClientTimer::TimerC, c));
                    }
                }
                a.push(Action::PassUp);
            }
            (ClientState::Calling | ClientState::Proceeding, false) if self.invite => {
                a.push(Action::Stop(ClientTimer::Retransmit));
                a.push(Action::Stop(ClientTimer::Timeout));
                a.push(Action::Stop(ClientTimer::TimerC));
                a.push(Action::PassUp);
                if (200..300).contains(&code) {
                    // The transaction ends; the UA ACKs every 2xx itself.
                    a.push(Action::Completed(code));
                    a.push(Action::Terminate);
                } else {
                    self.state = ClientState::Completed;
                    a.push(Action::SendAck);
                    a.push(Action::Completed(code));
                    let d = if self.reliable {
                        Duration::ZERO
                    } else {
                        timers.timer_d
                    };
                    a.push(Action::Start(ClientTimer::Linger, d));
                }
            }
            (ClientState::Trying | ClientState::Proceeding, false) => {
                self.state = ClientState::Completed;
                a.push(Action::Stop(ClientTimer::Retransmit));
                a.push(Action::Stop(ClientTimer::Timeout));
                a.push(Action::PassUp);
                a.push(Action::Completed(code));
                let k = if self.reliable {
                    Duration::ZERO
                } else {
                    timers.t4
                };
                a.push(Action::Start(ClientTimer::Linger, k));
            }
            (ClientState::Completed, _) => {
                // A retransmitted final: absorbed; an INVITE's gets its ACK
                // again (17.1.1.2).
                if self.invite && !provisional {
                    a.push(Action::SendAck);
                }
            }
            (ClientState::Calling, false) => unreachable_state(&mut a),
        }
        a
    }

    /// Timer B/F, C or D/K fired.
    pub(crate) fn on_timer(&mut self, timer: ClientTimer) -> Actions {
        let mut a = Actions::default();
        match timer {
            // Timer B runs in Calling only; Timer F in Trying and Proceeding.
            ClientTimer::Timeout
                if matches!(self.state, ClientState::Calling | ClientState::Trying)
                    || (self.state == ClientState::Proceeding && !self.invite) =>
            {
                a.push(Action::Stop(ClientTimer::Retransmit));
                a.push(Action::TimedOut);
            }
            ClientTimer::TimerC if self.state == ClientState::Proceeding => {
                a.push(Action::TimedOut);
            }
            ClientTimer::Linger if self.state == ClientState::Completed => {
                a.push(Action::Terminate)
            }
            _ => {}
        }
        a
    }
}

/// A non-INVITE machine never sees Calling; an INVITE one with a final
/// response in Calling is handled above. Kept total without panicking.
fn unreachable_state(a: &mut Actions) {
    a.push(Action::PassUp);
}

/// The ACK of a non-2xx final response (RFC 3261 17.1.1.3): Request-URI,
/// Call-ID, From, Route and CSeq number of the INVITE, To of the response.
/// The leg adds the Via with the INVITE's branch.
pub(crate) fn build_ack(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri().clone());
    let h = ack.headers_mut();
    if let Some(v) = invite.headers().get(HeaderName::MaxForwards) {
        h.push("Max-Forwards", v);
    } else {
        h.push("Max-Forwards", "70");
    }
    if let Some(v) = invite.headers().get(HeaderName::From) {
        h.push("From", v);
    }
    if let Some(v) = resp.headers().get(HeaderName::To) {
        h.push("To", v);
    }
    if let Some(v) = invite.call_id() {
        h.push("Call-ID", v);
    }
    let number = invite.cseq().map(|c| c.number).unwrap_or(0);
    h.push("CSeq", &format!("{number} ACK"));
    for route in invite.headers().get_all(HeaderName::Route) {
        h.push("Route", route);
    }
    h.push("Content-Length", "0");
    ack
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The retransmission intervals until the timeout, from the machine.
    fn schedule(tx: &mut ClientTx, timers: &Timers) -> Vec<u64> {
        let mut at = 0u64;
        let mut out = Vec::new();
        let mut next = match tx.start(timers).iter().find_map(|a| match a {
            Action::Start(ClientTimer::Retransmit, d) => Some(d),
            _ => None,
        }) {
            Some(d) => d,
            None => return out,
        };
        loop {
            at += next.as_millis() as u64;
            if at >= timers.timeout().as_millis() as u64 {
                break;
            }
            out.push(at);
            next = tx
                .on_retransmit(timers)
                .iter()
                .find_map(|a| match a {
                    Action::Start(ClientTimer::Retransmit, d) => Some(d),
                    _ => None,
                })
                .unwrap_or(ms(u64::MAX / 4));
        }
        out
    }

    #[test]
    fn invite_doubles_without_cap() {
        let t = Timers::default();
        let mut tx = ClientTx::new(true, true, false, &t);
        assert_eq!(
            schedule(&mut tx, &t),
            vec![500, 1500, 3500, 7500, 15500, 31500]
        );
    }

    #[test]
    fn non_invite_caps_at_t2() {
        let t = Timers::default();
        let mut tx = ClientTx::new(false, true, false, &t);
        assert_eq!(
            schedule(&mut tx, &t),
            vec![
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
    }

    #[test]
    fn reliable_has_no_retransmissions_but_times_out() {
        let t = Timers::default();
        let mut tx = ClientTx::new(false, true, true, &t);
        let a: Vec<_> = tx.start(&t).iter().collect();
        assert_eq!(a, vec![Action::Start(ClientTimer::Timeout, ms(32_000))]);
        let a: Vec<_> = tx.on_timer(ClientTimer::Timeout).iter().collect();
        assert!(a.contains(&Action::TimedOut));
    }

    #[test]
    fn invite_provisional_stops_a_and_b_and_starts_c() {
        let t = Timers::default();
        let mut tx = ClientTx::new(true, true, false, &t);
        tx.start(&t);
        let a: Vec<_> = tx.on_response(180, &t).iter().collect();
        assert_eq!(
            a,
            vec![
                Action::Stop(ClientTimer::Retransmit),
                Action::Stop(ClientTimer::Timeout),
                Action::Start(ClientTimer::TimerC, ms(180_000)),
                Action::PassUp
            ]
        );
        assert_eq!(tx.state, ClientState::Proceeding);
        // Timer B no longer applies.
        assert_eq!(tx.on_timer(ClientTimer::Timeout).iter().count(), 0);
        assert!(
            tx.on_timer(ClientTimer::TimerC)
                .iter()
                .any(|a| a == Action::TimedOut)
        );
    }

    #[test]
    fn non_invite_provisional_slows_to_t2() {
        let t = Timers::default();
        let mut tx = ClientTx::new(false, true, false, &t);
        tx.start(&t);
        tx.on_response(100, &t);
        let a: Vec<_> = tx.on_retransmit(&t).iter().collect();
        assert_eq!(
            a,
            vec![
                Action::Resend,
                Action::Start(ClientTimer::Retransmit, ms(4000))
            ]
        );
    }

    #[test]
    fn invite_non2xx_acks_and_absorbs() {
        let t = Timers::default();
        let mut tx = ClientTx::new(true, true, false, &t);
        tx.start(&t);
        let a: Vec<_> = tx.on_response(486, &t).iter().collect();
        assert!(a.contains(&Action::SendAck));
        assert!(a.contains(&Action::Completed(486)));
        assert!(a.contains(&Action::Start(ClientTimer::Linger, ms(32_000))));
        let again: Vec<_> = tx.on_response(486, &t).iter().collect();
        assert_eq!(
            again,
            vec![Action::SendAck],
            "retransmitted final: ACK again, not passed up"
        );
        assert_eq!(
            tx.on_timer(ClientTimer::Linger).iter().collect::<Vec<_>>(),
            vec![Action::Terminate]
        );
    }

    #[test]
    fn invite_2xx_terminates() {
        let t = Timers::default();
        let mut tx = ClientTx::new(true, true, false, &t);
        tx.start(&t);
        let a: Vec<_> = tx.on_response(200, &t).iter().collect();
        assert!(a.contains(&Action::Completed(200)) && a.contains(&Action::Terminate));
        assert!(!a.contains(&Action::SendAck));
    }

    #[test]
    fn non_invite_final_lingers_t4_on_udp_zero_on_tcp() {
        let t = Timers::default();
        let mut tx = ClientTx::new(false, true, false, &t);
        tx.start(&t);
        assert!(
            tx.on_response(200, &t)
                .iter()
                .any(|a| a == Action::Start(ClientTimer::Linger, ms(5000)))
        );
        let mut tx = ClientTx::new(false, true, true, &t);
        tx.start(&t);
        assert!(
            tx.on_response(200, &t)
                .iter()
                .any(|a| a == Action::Start(ClientTimer::Linger, ms(0)))
        );
    }
}
