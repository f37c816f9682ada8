//! Errors with an errno: what a failed delivery reports.

use std::borrow::Cow;
use std::fmt;
use std::io;

/// An `errno` value, named the way SIP tools print them (`ETIMEDOUT`,
/// `ECONNREFUSED`, ...).
///
/// ```
/// use sip_dispatch::Errno;
/// assert_eq!(Errno::ETIMEDOUT.to_string(), "ETIMEDOUT");
/// assert_eq!(Errno::from_io(&std::io::Error::from_raw_os_error(libc::ECONNREFUSED)), Errno::ECONNREFUSED);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident),* $(,)?) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: Errno = Errno(libc::$name);
            )*

            /// The symbolic name, if it is one this crate uses.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(libc::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos!(
    ETIMEDOUT,
    EHOSTUNREACH,
    ENETUNREACH,
    ECONNREFUSED,
    ECONNRESET,
    ECONNABORTED,
    ENOTCONN,
    EPIPE,
    ENETDOWN,
    ECANCELED,
    ENOBUFS,
    EMSGSIZE,
    ENOPROTOOPT,
    EPROTO,
    EINVAL,
    EAGAIN,
    EADDRINUSE,
    EADDRNOTAVAIL,
    EAFNOSUPPORT,
    EACCES,
    EPERM,
    EIO,
);

impl Errno {
    /// The errno of an I/O error (`EIO` when it has none).
    pub fn from_io(e: &io::Error) -> Errno {
        match e.raw_os_error() {
            Some(n) => Errno(n),
            None => match e.kind() {
                io::ErrorKind::TimedOut => Errno::ETIMEDOUT,
                io::ErrorKind::ConnectionRefused => Errno::ECONNREFUSED,
                io::ErrorKind::ConnectionReset => Errno::ECONNRESET,
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => Errno::EINVAL,
                _ => Errno::EIO,
            },
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// An error with its errno and the context needed to act on it (which
/// destination, which certificate, which limit).
///
/// ```
/// use sip_dispatch::{Errno, Error};
/// let e = Error::new(Errno::ECONNREFUSED, "udp:127.0.0.1:5099: port unreachable");
/// assert_eq!(e.errno(), Errno::ECONNREFUSED);
/// assert_eq!(e.to_string(), "ECONNREFUSED: udp:127.0.0.1:5099: port unreachable");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    errno: Errno,
    context: Cow<'static, str>,
}

impl Error {
    /// An error with an errno and a description.
    pub fn new(errno: Errno, context: impl Into<Cow<'static, str>>) -> Error {
        Error {
            errno,
            context: context.into(),
        }
    }

    /// An error from an I/O error, with context.
    pub fn io(e: &io::Error, context: impl fmt::Display) -> Error {
        Error {
            errno: Errno::from_io(e),
            context: Cow::Owned(format!("{context}: {e}")),
        }
    }

    /// The errno.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// What happened, in words.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errno, self.context)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(
            io::Error::from_raw_os_error(e.errno.0).kind(),
            e.to_string(),
        )
    }
}
