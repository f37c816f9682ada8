//! # sip-dispatch
//!
//! sip-dispatch moves SIP messages between *legs* (UDP, TCP and TLS sockets)
//! and an *endpoint* (a user agent, a registrar, a stateless proxy). It
//! retransmits what RFC 3261 says must be retransmitted, answers
//! retransmitted requests from a response cache and turns a request URI into
//! a leg and a destination address (RFC 3263).
//!
//! It is single-threaded: one dispatcher per thread (per core), on a
//! hand-written event loop over [mio] with a hierarchical timer wheel.
//!
//! The crate is built bottom-up:
//! - [`packet`]: the SIP message model (parse, inspect, edit, write);
//! - [`eventloop`]: the [`Eventloop`](eventloop::Eventloop) trait, the mio
//!   implementation, the timer wheel and virtual time for tests;
//! - [`leg`]: transports (UDP, TCP, TLS, an in-memory network with
//!   faults) and their share of Via handling, framing and limits;
//! - [`dispatcher`]: deliver, retransmit, cancel, receive, resolve: the
//!   Net::SIP::Dispatcher man page, with client and server transactions;
//! - [`ua`]: small helpers for user agents built on it (dialogs, ACK,
//!   CANCEL, identifiers).
//!
//! Rules the whole crate keeps: every delivery ends in exactly one outcome,
//! never reported from inside the call that caused it; callbacks may call
//! back in (no `RefCell` borrow is held across user code); all time comes
//! from the event loop's clock; every resource has a bound; malformed input
//! gets a 400 or is dropped and counted, never a panic.
//!
//! Cargo feature `tls` (on by default): TLS legs, `sips:` and
//! `;transport=tls`, with rustls on the `ring` provider
//! ([`leg::TlsConfig`]). Without it, a `tls:` leg fails to bind.
#![warn(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod dispatcher;
pub mod dns;
mod error;
pub mod eventloop;
pub mod leg;
pub mod packet;
pub mod proxy;
pub mod ua;

pub use error::{Errno, Error};

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
