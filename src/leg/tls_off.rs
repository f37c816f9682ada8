//! Without the `tls` feature: the TCP transport's TLS hooks exist but can
//! never be reached (the types have no values).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use crate::error::Error;

/// Never built without the `tls` feature.
pub(crate) enum TlsContext {}

impl TlsContext {
    pub(crate) fn handshake_timeout(&self) -> Duration {
        match *self {}
    }

    pub(crate) fn accepts(&self) -> bool {
        match *self {}
    }

    pub(crate) fn client(
        &self,
        _peer: SocketAddr,
        _host: Option<&Rc<str>>,
    ) -> Result<TlsSession, Error> {
        match *self {}
    }

    pub(crate) fn server(&self, _peer: SocketAddr) -> Result<TlsSession, Error> {
        match *self {}
    }
}

/// Never built without the `tls` feature.
pub(crate) enum TlsSession {}

#[allow(clippy::unused_self)]
impl TlsSession {
    pub(crate) fn is_handshaking(&self) -> bool {
        match *self {}
    }

    pub(crate) fn wants_write(&self) -> bool {
        match *self {}
    }

    pub(crate) fn is_outgoing(&self) -> bool {
        match *self {}
    }

    pub(crate) fn what(&self) -> &str {
        match *self {}
    }

    pub(crate) fn identity(&self) -> Option<&Rc<str>> {
        match *self {}
    }

    pub(crate) fn is_verified_for(&self, _host: &str) -> bool {
        match *self {}
    }

    pub(crate) fn certificate_covers(&self, _host: &str) -> bool {
        match *self {}
    }

    pub(crate) fn feed(&mut self, _data: &[u8], _plain: &mut Vec<u8>) -> Result<bool, Error> {
        match *self {}
    }

    pub(crate) fn write_tls(&mut self, _stream: &TcpStream) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn write_plain(&mut self, _bytes: &[u8]) -> usize {
        match *self {}
    }

    pub(crate) fn close_notify(&mut self) {
        match *self {}
    }

    pub(crate) fn fed(&self) -> usize {
        match *self {}
    }

    pub(crate) fn set_fed(&mut self, _fed: usize) {
        match *self {}
    }
}
