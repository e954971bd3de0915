//! TCP MD5 signatures (RFC 2385) through Linux's `TCP_MD5SIG` socket
//! option: set per peer address, on the listening socket and on each
//! outgoing socket before it connects.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

const TCP_MD5SIG_MAXKEYLEN: usize = 80;

/// `struct tcp_md5sig` of linux/tcp.h.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; TCP_MD5SIG_MAXKEYLEN],
}

/// Signs (and requires signatures on) segments to and from `peer`; an
/// empty `key` deletes the key for `peer` (ENOENT if it had none).
pub fn set_key(sock: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> std::io::Result<()> {
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a TCP MD5 key is at most 80 bytes",
        ));
    }
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    fill_addr(&mut sig.addr, peer);
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: the pointer and length describe `sig`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An IPv4 peer on an IPv6 socket is keyed by its mapped address.
fn fill_addr(storage: &mut libc::sockaddr_storage, peer: IpAddr) {
    match peer {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(v4).to_be();
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_set_replaced_and_deleted() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.9".parse().unwrap();
        set_key(&l, peer, b"one").unwrap();
        set_key(&l, peer, b"two").unwrap();
        set_key(&l, peer, b"").unwrap();
        let again = set_key(&l, peer, b"").unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::ENOENT), "already gone");
        assert!(set_key(&l, peer, &[0; 81]).is_err());
    }
}
