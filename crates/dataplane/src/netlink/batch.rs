//! Route writes in batches: many requests in one `sendmsg` on a plain
//! NETLINK_ROUTE socket, none of them asking for an acknowledgement except
//! the last. The kernel handles a datagram's requests one after another
//! before `sendmsg` returns and answers only failures (and the last
//! request), so a batch of thousands of routes costs two system calls
//! instead of two per route. Failures come back as NLMSG_ERROR carrying
//! the failed request's sequence number, which says which route it was.

use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use rtnetlink::sys::Socket;

use super::{ErrorKind, NetlinkError};

/// Requests per datagram: at most ~90 bytes each, so a batch stays well
/// under the socket's send buffer (the kernel refuses a datagram larger
/// than that, 208 KiB by default).
pub(super) const BATCH_ROUTES: usize = 1024;
const ERROR_HEADER: usize = 16;
const NLMSG_ERROR: u16 = 2;

pub(super) struct BatchSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    rx: Vec<u8>,
}

impl BatchSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub(super) fn open() -> Result<BatchSocket, NetlinkError> {
        let io = |e: std::io::Error| NetlinkError::new(ErrorKind::Other, format!("netlink: {e}"));
        let mut sock = Socket::new(libc::NETLINK_ROUTE as isize).map_err(io)?;
        sock.bind_auto().map_err(io)?;
        // Errors carry only the failed request's header, not all of it.
        sock.set_cap_ack(true).map_err(io)?;
        // Room for an error per request of a whole batch.
        let size: libc::c_int = 4 << 20;
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(BatchSocket {
            sock,
            seq: 1,
            buf: Vec::with_capacity(BATCH_ROUTES * 96),
            rx: vec![0; 64 * 1024],
        })
    }

    /// Sends `msgs` (each with its request flags, NLM_F_ACK left out) and
    /// returns each one's errno (0: done). None if the answers could not
    /// all be read (e.g. the receive buffer overflowed): the caller then
    /// does not know what happened and must try another way.
    pub(super) fn send(&mut self, msgs: Vec<(u16, RouteNetlinkMessage)>) -> Option<Vec<i32>> {
        if msgs.is_empty() {
            return Some(Vec::new());
        }
        let first = self.seq;
        let n = msgs.len() as u32;
        self.seq = self.seq.wrapping_add(n);
        let last = first.wrapping_add(n - 1);
        self.buf.clear();
        for (i, (flags, m)) in msgs.into_iter().enumerate() {
            let seq = first.wrapping_add(i as u32);
            let mut header = NetlinkHeader::default();
            header.flags = flags | NLM_F_REQUEST | if seq == last { NLM_F_ACK } else { 0 };
            header.sequence_number = seq;
            let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(m));
            msg.finalize();
            let at = self.buf.len();
            self.buf.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut self.buf[at..]);
        }
        if self.sock.send(&self.buf, 0).ok()? != self.buf.len() {
            return None;
        }
        let mut result = vec![0i32; n as usize];
        loop {
            let got = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    self.rx.as_mut_ptr().cast(),
                    self.rx.len(),
                    0,
                )
            };
            if got < 0 {
                return None;
            }
            let got = got as usize;
            let mut off = 0;
            while off + ERROR_HEADER <= got {
                let h = &self.rx[off..got];
                let len = u32::from_ne_bytes(h[0..4].try_into().ok()?) as usize;
                let ty = u16::from_ne_bytes(h[4..6].try_into().ok()?);
                if len < ERROR_HEADER || len > h.len() {
                    break;
                }
                if ty == NLMSG_ERROR && len >= ERROR_HEADER + 4 + ERROR_HEADER {
                    let errno = i32::from_ne_bytes(h[16..20].try_into().ok()?);
                    let seq = u32::from_ne_bytes(h[28..32].try_into().ok()?);
                    let idx = seq.wrapping_sub(first);
                    if idx < n {
                        result[idx as usize] = -errno;
                        if seq == last {
                            return Some(result);
                        }
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }
}
