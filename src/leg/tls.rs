//! TLS for stream legs (feature `tls`): the configuration users give
//! ([`TlsConfig`], from PEM files or from memory), and the per-connection
//! rustls session that the TCP transport drives. rustls is sans-IO: the
//! transport reads the socket and feeds the bytes in, and writes what the
//! session wants written; framing, limits and timers stay the transport's.
//!
//! Identities follow RFC 5922: a client verifies the server's certificate
//! against the host of the URI it resolved (a name, or an IP address in the
//! certificate's subjectAltName), never against what DNS returned.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;

use crate::error::{Errno, Error};

/// Which client certificates a TLS leg that accepts connections asks for
/// (mutual TLS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Asks for none (the default).
    #[default]
    None,
    /// Asks for one: a client without one is accepted; one whose
    /// certificate the roots do not vouch for is refused. Needed for
    /// RFC 5923 connection reuse towards that client.
    Optional,
    /// Requires one that the roots vouch for: a client without one is
    /// refused.
    Required,
}

/// Where the certificates come from that peers are verified against.
#[derive(Clone)]
enum Roots {
    /// The operating system's store (rustls-native-certs), read when the
    /// leg is bound.
    System,
    /// Certificates from a PEM file or from memory.
    Pem {
        certs: Arc<Vec<CertificateDer<'static>>>,
        from: Arc<str>,
    },
}

impl Roots {
    fn describe(&self) -> String {
        match self {
            Roots::System => "the system's roots".to_owned(),
            Roots::Pem { from, .. } => format!("the roots of {from}"),
        }
    }
}

/// Our certificate chain and its private key.
#[derive(Clone)]
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    from: Arc<str>,
}

/// TLS settings of a leg ([`LegOptions::tls`](super::LegOptions::tls)):
/// our certificate and key (needed to accept connections; offered as a
/// client certificate when a server asks), the roots peers are verified
/// against (the system's by default), whether clients must present a
/// certificate, and the handshake timeout.
///
/// ```no_run
/// use std::time::Duration;
/// use sip_dispatch::leg::{ClientAuth, Leg, LegOptions, TlsConfig};
/// // A server leg with a certificate from files, verifying clients and
/// // servers against a private CA.
/// let tls = TlsConfig::from_pem_files("cert.pem", "key.pem")?
///     .with_ca_file("ca.pem")?
///     .with_client_auth(ClientAuth::Optional)
///     .with_handshake_timeout(Duration::from_secs(5));
/// let opts = LegOptions { tls: Some(tls), ..LegOptions::default() };
/// let leg = Leg::bind("tls:0.0.0.0:5061".parse().unwrap(), opts)?;
/// // A leg that only connects out, verifying servers against the system's roots.
/// let opts = LegOptions { tls: Some(TlsConfig::client()), ..LegOptions::default() };
/// let client = Leg::bind("tls:0.0.0.0:0".parse().unwrap(), opts)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    identity: Option<Identity>,
    roots: Roots,
    client_auth: ClientAuth,
    offer_client_cert: bool,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("TlsConfig")
            .field(
                "identity",
                &self.identity.as_ref().map(|i| i.from.to_string()),
            )
            .field("roots", &self.roots.describe())
            .field("client_auth", &self.client_auth)
            .field("offer_client_cert", &self.offer_client_cert)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// The default handshake timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(what: impl fmt::Display) -> Error {
    Error::new(Errno::EINVAL, what.to_string())
}

impl TlsConfig {
    /// A configuration without certificate: the leg only connects out
    /// (it binds its port, for Via, but does not listen), verifying
    /// servers against the system's roots.
    pub fn client() -> TlsConfig {
        TlsConfig {
            identity: None,
            roots: Roots::System,
            client_auth: ClientAuth::None,
            offer_client_cert: true,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    /// Our certificate chain (leaf first) and private key (PKCS#8, PKCS#1
    /// or SEC1) from PEM files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, Error> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format_args!("certificate file {}: {e}", cert.display())))?;
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| invalid(format_args!("key file {}: {e}", key.display())))?;
        Self::with_identity(chain, key_der, format!("{}", cert.display()))
    }

    /// Our certificate chain (leaf first) and private key, PEM in memory.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, Error> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format_args!("certificate PEM: {e}")))?;
        let key_der = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(format_args!("key PEM: {e}")))?;
        Self::with_identity(chain, key_der, "a certificate from memory".to_owned())
    }

    fn with_identity(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        from: String,
    ) -> Result<TlsConfig, Error> {
        if chain.is_empty() {
            return Err(invalid(format_args!("{from}: no certificate in it")));
        }
        let config = TlsConfig {
            identity: Some(Identity {
                chain,
                key: Arc::new(key),
                from: Arc::from(from),
            }),
            ..TlsConfig::client()
        };
        // Refuse a key that does not belong to the certificate now, not
        // at the first handshake.
        config.server_config(None)?;
        Ok(config)
    }

    /// Verifies peers (servers, and clients when asked for) against the
    /// certificates of a PEM file instead of the system's roots.
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<TlsConfig, Error> {
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format_args!("CA file {}: {e}", path.display())))?;
        self.with_roots(certs, format!("CA file {}", path.display()))
    }

    /// Verifies peers against these PEM certificates instead of the
    /// system's roots.
    pub fn with_ca_pem(self, pem: &[u8]) -> Result<TlsConfig, Error> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format_args!("CA PEM: {e}")))?;
        self.with_roots(certs, "CA certificates from memory".to_owned())
    }

    fn with_roots(
        mut self,
        certs: Vec<CertificateDer<'static>>,
        from: String,
    ) -> Result<TlsConfig, Error> {
        if certs.is_empty() {
            return Err(invalid(format_args!("{from}: no certificate in it")));
        }
        let mut store = RootCertStore::empty();
        let (_, bad) = store.add_parsable_certificates(certs.iter().cloned());
        if bad > 0 || store.is_empty() {
            return Err(invalid(format_args!(
                "{from}: {bad} certificate(s) cannot be used as roots"
            )));
        }
        self.roots = Roots::Pem {
            certs: Arc::new(certs),
            from: Arc::from(from),
        };
        Ok(self)
    }

    /// Verifies peers against the system's roots again (the default).
    pub fn with_system_roots(mut self) -> TlsConfig {
        self.roots = Roots::System;
        self
    }

    /// Which client certificates to ask for when accepting (default
    /// [`ClientAuth::None`]).
    pub fn with_client_auth(mut self, auth: ClientAuth) -> TlsConfig {
        self.client_auth = auth;
        self
    }

    /// Whether our certificate is offered when a server asks for a client
    /// certificate (default true; without a certificate there is none).
    pub fn with_client_cert(mut self, offer: bool) -> TlsConfig {
        self.offer_client_cert = offer;
        self
    }

    /// A handshake not finished this long after the TCP connection was
    /// made closes the connection (ETIMEDOUT). Default 10 s.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsConfig {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether there is a certificate (the leg can accept connections).
    pub fn has_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// Which client certificates are asked for.
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    fn root_store(&self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::Pem { certs, .. } => {
                store.add_parsable_certificates(certs.iter().cloned());
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    log::warn!("reading the system's TLS roots: {e}");
                }
                let (_, bad) = store.add_parsable_certificates(found.certs);
                if bad > 0 {
                    log::debug!("{bad} of the system's roots cannot be used");
                }
                if store.is_empty() {
                    log::warn!(
                        "no TLS roots in the system's store: every server certificate will be \
                         refused (unknown issuer); give a CA file"
                    );
                }
            }
        }
        store
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn server_config(&self, roots: Option<&RootCertStore>) -> Result<Option<ServerConfig>, Error> {
        let Some(id) = &self.identity else {
            return Ok(None);
        };
        let builder = ServerConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format_args!("TLS: {e}")))?;
        let builder = match (self.client_auth, roots) {
            (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
            (auth, Some(roots)) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots.clone()),
                    Self::provider(),
                );
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| {
                    invalid(format_args!(
                        "client certificates cannot be verified against {}: {e}",
                        self.roots.describe()
                    ))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| invalid(format_args!("certificate and key of {}: {e}", id.from)))?;
        Ok(Some(config))
    }

    /// Builds the rustls configurations (reads the system's roots when
    /// they are used).
    pub(crate) fn build(&self) -> Result<TlsContext, Error> {
        let roots = self.root_store();
        let server = self.server_config(Some(&roots))?.map(Arc::new);
        let builder = ClientConfig::builder_with_provider(Self::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format_args!("TLS: {e}")))?
            .with_root_certificates(roots);
        let client = match (&self.identity, self.offer_client_cert) {
            (Some(id), true) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| invalid(format_args!("certificate and key of {}: {e}", id.from)))?,
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsContext {
            server,
            client: Arc::new(client),
            handshake_timeout: self.handshake_timeout,
            roots: Rc::from(self.roots.describe()),
        })
    }
}

/// The rustls configurations of a leg, built once when it is bound.
pub(crate) struct TlsContext {
    server: Option<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    handshake_timeout: Duration,
    roots: Rc<str>,
}

impl TlsContext {
    /// The handshake timeout.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether the leg accepts connections (it has a certificate).
    pub(crate) fn accepts(&self) -> bool {
        self.server.is_some()
    }

    /// A session for a connection we open to `peer`, verified against
    /// `host` (the URI's host; the address when there is none).
    pub(crate) fn client(
        &self,
        peer: SocketAddr,
        host: Option<&Rc<str>>,
    ) -> Result<TlsSession, Error> {
        let identity: Rc<str> = match host {
            Some(h) => h.clone(),
            None => Rc::from(peer.ip().to_string()),
        };
        let what = if host.is_some_and(|h| **h != *peer.ip().to_string()) {
            format!("TLS to {peer} ({identity})")
        } else {
            format!("TLS to {peer}")
        };
        let name = server_name(&identity).ok_or_else(|| {
            Error::new(
                Errno::EINVAL,
                format!("{what}: {identity:?} is neither a host name nor an IP address"),
            )
        })?;
        let conn = rustls::ClientConnection::new(self.client.clone(), name)
            .map_err(|e| Error::new(Errno::EPROTO, format!("{what}: {e}")))?;
        Ok(TlsSession {
            conn: conn.into(),
            what,
            outgoing: true,
            identity: Some(identity),
            roots: self.roots.clone(),
            fed: 0,
        })
    }

    /// A session for a connection accepted from `peer`.
    pub(crate) fn server(&self, peer: SocketAddr) -> Result<TlsSession, Error> {
        let what = format!("TLS from {peer}");
        let Some(config) = &self.server else {
            return Err(Error::new(
                Errno::EINVAL,
                format!("{what}: this leg has no certificate"),
            ));
        };
        let conn = rustls::ServerConnection::new(config.clone())
            .map_err(|e| Error::new(Errno::EPROTO, format!("{what}: {e}")))?;
        Ok(TlsSession {
            conn: conn.into(),
            what,
            outgoing: false,
            identity: None,
            roots: self.roots.clone(),
            fed: 0,
        })
    }
}

/// A host name or IP address (IPv6 with or without brackets) as rustls
/// wants it.
fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Some(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(bare.to_owned()).ok(),
    }
}

/// One connection's TLS state.
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    /// `TLS to 127.0.0.1:5061 (bob.example)`, `TLS from 127.0.0.1:40000`:
    /// what errors start with.
    what: String,
    outgoing: bool,
    /// The name the peer's certificate was verified for (outgoing), or
    /// was found to cover (incoming, RFC 5923 alias).
    identity: Option<Rc<str>>,
    roots: Rc<str>,
    /// How many chunks at the front of the write queue rustls has taken
    /// whole: they are sent when its output is flushed.
    fed: usize,
}

impl TlsSession {
    /// How many chunks at the front of the write queue the session has
    /// taken whole (sent once its output is flushed).
    pub(crate) fn fed(&self) -> usize {
        self.fed
    }

    pub(crate) fn set_fed(&mut self, fed: usize) {
        self.fed = fed;
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    pub(crate) fn is_outgoing(&self) -> bool {
        self.outgoing
    }

    pub(crate) fn what(&self) -> &str {
        &self.what
    }

    pub(crate) fn identity(&self) -> Option<&Rc<str>> {
        self.identity.as_ref()
    }

    /// Whether the peer's certificate was verified for `host` (a name or
    /// an address), or is found to cover it now.
    pub(crate) fn is_verified_for(&self, host: &str) -> bool {
        if self
            .identity
            .as_deref()
            .is_some_and(|id| id.eq_ignore_ascii_case(host))
        {
            return true;
        }
        self.certificate_covers(host)
    }

    /// Whether the peer presented a certificate (verified by the handshake
    /// against our roots) whose subject names cover `host`.
    pub(crate) fn certificate_covers(&self, host: &str) -> bool {
        let Some(leaf) = self.conn.peer_certificates().and_then(|c| c.first()) else {
            return false;
        };
        let Some(name) = server_name(host) else {
            return false;
        };
        match rustls::server::ParsedCertificate::try_from(leaf) {
            Ok(cert) => rustls::client::verify_server_name(&cert, &name).is_ok(),
            Err(_) => false,
        }
    }

    /// Feeds bytes read from the socket; appends the plaintext they carry
    /// to `plain`. Returns whether the peer closed the session
    /// (close_notify), or the error that ends it (the session has an
    /// alert queued for the peer: flush it, then close).
    pub(crate) fn feed(&mut self, mut data: &[u8], plain: &mut Vec<u8>) -> Result<bool, Error> {
        let mut closed = false;
        while !data.is_empty() {
            let n = self
                .conn
                .read_tls(&mut data)
                .map_err(|e| Error::io(&e, &self.what))?;
            if n == 0 {
                break;
            }
            let state = match self.conn.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    // Records before the bad one may have left plaintext:
                    // it goes up before the session ends.
                    self.drain_plaintext(plain);
                    return Err(self.describe(&e));
                }
            };
            let avail = state.plaintext_bytes_to_read();
            if avail > 0 {
                let start = plain.len();
                plain.resize(start + avail, 0);
                if let Err(e) = self.conn.reader().read_exact(&mut plain[start..]) {
                    plain.truncate(start);
                    return Err(Error::io(&e, &self.what));
                }
            }
            closed |= state.peer_has_closed();
        }
        Ok(closed)
    }

    /// Takes whatever plaintext the session still holds (after an error).
    fn drain_plaintext(&mut self, plain: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        // Bounded: the session holds at most its buffer limit.
        for _ in 0..1024 {
            match self.conn.reader().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => plain.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Writes what the session has for the socket.
    pub(crate) fn write_tls(&mut self, stream: &TcpStream) -> io::Result<usize> {
        self.conn.write_tls(&mut &*stream)
    }

    /// Hands plaintext to the session; returns how much it took (less
    /// when its buffer is full).
    pub(crate) fn write_plain(&mut self, bytes: &[u8]) -> usize {
        use std::io::Write;
        self.conn.writer().write(bytes).unwrap_or(0)
    }

    /// Queues a close_notify alert.
    pub(crate) fn close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// The error a rustls error means for this connection: which
    /// certificate and why, with ECONNABORTED for a rejected certificate
    /// (ours or theirs) and EPROTO for a broken or unsupported handshake.
    pub(crate) fn describe(&self, e: &rustls::Error) -> Error {
        let whose = if self.outgoing {
            "server certificate"
        } else {
            "client certificate"
        };
        let (errno, text) = match e {
            rustls::Error::InvalidCertificate(c) => (
                Errno::ECONNABORTED,
                format!("{whose} rejected: {}", certificate_problem(c, &self.roots)),
            ),
            rustls::Error::NoCertificatesPresented => (
                Errno::ECONNABORTED,
                "client certificate required, but the client presented none".to_owned(),
            ),
            rustls::Error::AlertReceived(a) => (Errno::ECONNABORTED, alert_problem(*a)),
            other if self.conn.is_handshaking() => {
                (Errno::EPROTO, format!("handshake failed: {other}"))
            }
            other => (Errno::EPROTO, format!("session failed: {other}")),
        };
        Error::new(errno, format!("{}: {text}", self.what))
    }
}

/// What is wrong with a certificate, in words.
fn certificate_problem(c: &CertificateError, roots: &str) -> String {
    match c {
        CertificateError::NotValidForName => "certificate not valid for the name".to_owned(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = expected.to_str();
            if presented.is_empty() {
                format!("certificate not valid for name {expected} (it names no host)")
            } else {
                format!(
                    "certificate not valid for name {expected} (it is valid for {})",
                    presented.join(", ")
                )
            }
        }
        CertificateError::UnknownIssuer => {
            format!("unknown issuer: the certificate is not signed by {roots}")
        }
        CertificateError::Expired => "certificate expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", utc(*not_after))
        }
        CertificateError::NotValidYet => "certificate not valid yet".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("certificate not valid before {}", utc(*not_before))
        }
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::BadSignature => "bad signature on the certificate".to_owned(),
        other => {
            let text = format!("{other:?}");
            if text.contains("CaUsedAsEndEntity") {
                // A self-signed CA certificate (openssl req -x509 makes
                // them) used as the peer's own: WebPKI refuses that.
                "the certificate is a CA certificate (basicConstraints CA:TRUE) used as an \
                 end-entity certificate: issue one for the host from that CA"
                    .to_owned()
            } else {
                other.to_string()
            }
        }
    }
}

/// What an alert from the peer means, in words.
fn alert_problem(a: AlertDescription) -> String {
    match a {
        AlertDescription::CertificateRequired => {
            "the peer requires a client certificate (alert certificate_required); configure one"
                .to_owned()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::UnknownCA => {
            format!("the peer rejected our certificate (alert {a:?})")
        }
        AlertDescription::HandshakeFailure => {
            "the peer refused the handshake (alert handshake_failure)".to_owned()
        }
        _ => format!("the peer ended the session (alert {a:?})"),
    }
}

/// A UNIX time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(t: UnixTime) -> String {
    let secs = t.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            utc(UnixTime::since_unix_epoch(Duration::ZERO)),
            "1970-01-01 00:00:00 UTC"
        );
        assert_eq!(
            utc(UnixTime::since_unix_epoch(Duration::from_secs(
                951_782_400 + 3661
            ))),
            "2000-02-29 01:01:01 UTC"
        );
    }

    #[test]
    fn names() {
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("bob.example"),
            Some(ServerName::DnsName(_))
        ));
        assert!(server_name("not a name").is_none());
    }

    #[test]
    fn bad_pem_is_einval() {
        let e = TlsConfig::from_pem(b"nonsense", b"nonsense").unwrap_err();
        assert_eq!(e.errno(), Errno::EINVAL);
        let e = TlsConfig::client().with_ca_pem(b"").unwrap_err();
        assert_eq!(e.errno(), Errno::EINVAL);
    }
}
