//! The Generalized TTL Security Mechanism (RFC 5082) through Linux's
//! `IP_MINTTL` / `IPV6_MINHOPCOUNT`: segments from a peer `hops` away
//! arrive with at least 256 - hops when it sends with TTL 255, and a
//! spoofer further away cannot reach that.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// linux/in.h and linux/in6.h (not in every libc version).
const IP_MINTTL: libc::c_int = 21;
const IPV6_MINHOPCOUNT: libc::c_int = 73;

/// Sends with TTL (hop limit) 255 to `peer` and drops what arrives from
/// it with less than 256 - `hops`. An IPv4 peer on an IPv6 socket (a
/// dual-stack listener's) is covered by the IPv4 options, which Linux
/// applies to its mapped connections.
pub fn apply(sock: &impl AsRawFd, peer: IpAddr, hops: u8) -> std::io::Result<()> {
    let min = 256 - i32::from(hops.max(1));
    let (level, ttl, min_ttl) = match peer {
        IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_TTL, IP_MINTTL),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            IPV6_MINHOPCOUNT,
        ),
    };
    set(sock, level, ttl, 255)?;
    set(sock, level, min_ttl, min)
}

fn set(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: i32,
) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `value`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads an integer socket option back (tests).
#[cfg(test)]
fn get(sock: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> i32 {
    let mut value: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: the pointers describe `value` and `len`, which outlive the call.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sends_with_255_and_requires_256_minus_hops_in_both_families() {
        for (bind, peer) in [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "::1")] {
            let Ok(l) = TcpListener::bind(bind) else {
                // No IPv6 loopback in this sandbox.
                assert!(
                    peer.contains(':') && std::env::var("CI").is_err(),
                    "bind {bind}"
                );
                continue;
            };
            let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let peer: IpAddr = peer.parse().unwrap();
            apply(&s, peer, 2).unwrap();
            let (level, ttl, min) = if peer.is_ipv4() {
                (libc::IPPROTO_IP, libc::IP_TTL, IP_MINTTL)
            } else {
                (
                    libc::IPPROTO_IPV6,
                    libc::IPV6_UNICAST_HOPS,
                    IPV6_MINHOPCOUNT,
                )
            };
            assert_eq!((get(&s, level, ttl), get(&s, level, min)), (255, 254));
        }
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_gets_the_ipv4_options() {
        let Ok(l) = TcpListener::bind("[::]:0") else {
            assert!(std::env::var("CI").is_err(), "no IPv6 sockets");
            return;
        };
        let port = l.local_addr().unwrap().port();
        let _c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (s, from) = l.accept().unwrap();
        assert!(from.is_ipv6(), "mapped: {from}");
        apply(&s, "127.0.0.1".parse().unwrap(), 1).unwrap();
        assert_eq!(get(&s, libc::IPPROTO_IP, IP_MINTTL), 255);
    }
}
