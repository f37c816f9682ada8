//! Batched datagram I/O: `recvmmsg` reads up to [`RECV_BATCH`] datagrams
//! with one system call, `sendmmsg` sends up to [`SEND_BATCH`] with one.
//! At a window of 64 requests in flight that turns about 2 system calls
//! per message into a fraction of one.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Datagrams one `recvmmsg` reads at most.
pub(crate) const RECV_BATCH: usize = 16;
/// Datagrams one `sendmmsg` sends at most.
pub(crate) const SEND_BATCH: usize = 32;
/// Room per received datagram: the largest UDP payload fits.
const SLOT: usize = 65_536;
/// Distance between slot starts: a slot and a few cache lines, so that the
/// starts of the slots (where most datagrams lie whole) do not all map to
/// the same cache sets, as 64 KiB strides would.
const STRIDE: usize = SLOT + 4 * 64 + 4096;

/// Buffers for one `recvmmsg`: [`RECV_BATCH`] slots of 64 KiB (allocated
/// zeroed, so untouched pages cost no memory), and what each received.
pub(crate) struct RecvBatch {
    bufs: Box<[u8]>,
    names: Box<[MaybeUninit<libc::sockaddr_storage>]>,
    lens: [usize; RECV_BATCH],
    /// Received whole (not truncated).
    whole: [bool; RECV_BATCH],
    count: usize,
}

impl RecvBatch {
    pub(crate) fn new() -> RecvBatch {
        RecvBatch {
            bufs: vec![0u8; STRIDE * RECV_BATCH].into_boxed_slice(),
            names: (0..RECV_BATCH)
                .map(|_| MaybeUninit::zeroed())
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            lens: [0; RECV_BATCH],
            whole: [false; RECV_BATCH],
            count: 0,
        }
    }

    /// Reads what is waiting (at most [`RECV_BATCH`] datagrams) without
    /// blocking; returns how many. `WouldBlock` when there is nothing.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        let mut iovs: [MaybeUninit<libc::iovec>; RECV_BATCH] =
            [const { MaybeUninit::uninit() }; RECV_BATCH];
        // SAFETY: mmsghdr is plain data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.bufs.as_mut_ptr();
        for (i, (iov, msg)) in iovs.iter_mut().zip(msgs.iter_mut()).enumerate() {
            let iov = iov.write(libc::iovec {
                // SAFETY: slot i lies within `bufs` (RECV_BATCH slots).
                iov_base: unsafe { base.add(i * STRIDE) }.cast(),
                iov_len: SLOT,
            });
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_name = self.names[i].as_mut_ptr().cast();
            msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every msghdr points at a live iovec, a slot of `bufs` of
        // the length given and a sockaddr_storage of `names`, all of which
        // outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, msg) in msgs.iter().enumerate().take(n) {
            self.lens[i] = (msg.msg_len as usize).min(SLOT);
            self.whole[i] = msg.msg_hdr.msg_flags & libc::MSG_TRUNC == 0;
        }
        self.count = n;
        Ok(n)
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes, where it
    /// came from, and whether it arrived whole. `None` past the count or
    /// for an address family other than IPv4/IPv6.
    pub(crate) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, bool)> {
        if i >= self.count {
            return None;
        }
        // SAFETY: recvmmsg wrote the source address of datagram i into
        // names[i]; the storage was zeroed before, so the rest is defined.
        let name = unsafe { self.names[i].assume_init_ref() };
        let addr = super::udp::sockaddr_to_std(name)?;
        let start = i * STRIDE;
        Some((&self.bufs[start..start + self.lens[i]], addr, self.whole[i]))
    }
}

/// Sends `items` (bytes, destination) with one `sendmmsg`, at most
/// [`SEND_BATCH`] of them; returns how many the kernel took, in order. An
/// error means the first item was not taken (the kernel reports an error
/// only when it sent nothing).
pub(crate) fn send_batch<'a>(
    fd: RawFd,
    items: impl IntoIterator<Item = (&'a [u8], SocketAddr)>,
) -> io::Result<usize> {
    let mut iovs: [MaybeUninit<libc::iovec>; SEND_BATCH] =
        [const { MaybeUninit::uninit() }; SEND_BATCH];
    let mut names: [MaybeUninit<libc::sockaddr_storage>; SEND_BATCH] =
        [const { MaybeUninit::uninit() }; SEND_BATCH];
    // SAFETY: mmsghdr is plain data; all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    for (bytes, addr) in items.into_iter().take(SEND_BATCH) {
        let i = count;
        let iov = iovs[i].write(libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        });
        let sa = SockAddr::from(addr);
        // SAFETY: `sa` holds `sa.len()` bytes of a sockaddr that fit in a
        // sockaddr_storage (SockAddr is one), copied into names[i].
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                names[i].as_mut_ptr().cast::<u8>(),
                sa.len() as usize,
            );
        }
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_iov = iov;
        hdr.msg_iovlen = 1;
        hdr.msg_name = names[i].as_mut_ptr().cast();
        hdr.msg_namelen = sa.len();
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: the first `count` msghdrs point at live iovecs over the
    // callers' byte slices (borrowed for 'a) and at initialised socket
    // addresses in `names`; sendmmsg only reads them.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_in_whole_and_in_order() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..20).map(|i| vec![b'a' + i as u8; 10 + i]).collect();
        let items = payloads.iter().map(|p| (&p[..], to));
        assert_eq!(send_batch(tx.as_raw_fd(), items).unwrap(), 20);
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        for _ in 0..100 {
            match batch.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (bytes, from, whole) = batch.get(i).unwrap();
                        assert_eq!(from, tx.local_addr().unwrap());
                        assert!(whole);
                        got.push(bytes.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == 20 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payloads);
    }
}
