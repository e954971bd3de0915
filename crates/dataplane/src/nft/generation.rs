//! The nftables ruleset generation of this network namespace
//! (`NFT_MSG_GETGEN` over netlink): the kernel bumps it on every committed
//! nftables transaction, whoever makes it, so an unchanged generation means
//! no nft object changed. One request and one reply, a few microseconds.

use std::io;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_ID: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The current nftables generation id.
pub fn generation() -> io::Result<u32> {
    // SAFETY: plain socket syscalls on a descriptor owned by this function
    // and closed before it returns; buffers are valid for their lengths.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let res = request(fd);
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    res
}

fn request(fd: libc::c_int) -> io::Result<u32> {
    // nlmsghdr (16) + nfgenmsg (4: family AF_UNSPEC, version 0, res_id 0).
    let mut req = [0u8; 20];
    req[0..4].copy_from_slice(&20u32.to_ne_bytes());
    req[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: zeroed sockaddr_nl is the kernel as destination.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and addr are valid for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse(&buf[..n as usize])
}

fn parse(msg: &[u8]) -> io::Result<u32> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected NFT_MSG_GETGEN reply",
        )
    };
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_ne_bytes(msg.get(i..i + 2)?.try_into().ok()?)) };
    let len = msg
        .get(0..4)
        .map(|b| u32::from_ne_bytes(b.try_into().unwrap()) as usize)
        .ok_or_else(bad)?;
    let ty = u16_at(4).ok_or_else(bad)?;
    if ty == NLMSG_ERROR {
        let errno = msg
            .get(16..20)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
            .ok_or_else(bad)?;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN || len > msg.len() {
        return Err(bad());
    }
    // Attributes after nlmsghdr + nfgenmsg, each 4-byte aligned.
    let mut i = 20;
    while i + 4 <= len {
        let alen = u16_at(i).ok_or_else(bad)? as usize;
        let aty = u16_at(i + 2).ok_or_else(bad)? & NLA_TYPE_MASK;
        if alen < 4 {
            break;
        }
        if aty == NFTA_GEN_ID && alen >= 8 {
            let v = msg.get(i + 4..i + 8).ok_or_else(bad)?;
            return Ok(u32::from_be_bytes(v.try_into().unwrap()));
        }
        i += (alen + 3) & !3;
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_newgen_reply() {
        let mut m = Vec::new();
        m.extend_from_slice(&32u32.to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0, 0, 0, 0]); // nfgenmsg
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        m.extend_from_slice(&1234u32.to_be_bytes());
        m.extend_from_slice(&[0; 4]);
        assert_eq!(parse(&m).unwrap(), 1234);
        let mut e = vec![0u8; 20];
        e[0..4].copy_from_slice(&20u32.to_ne_bytes());
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse(&e).unwrap_err().raw_os_error(), Some(libc::EPERM));
    }
}
