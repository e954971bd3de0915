//! Counts a network namespace's IPv4 routes of one protocol (`proto bird`)
//! as the kernel announces them (rtnetlink multicast), so the moment the
//! last one lands is known without dumping the table over and over (a
//! dump of 100,000 routes costs tens of milliseconds of the CPU the
//! receiver needs). If the socket overflows, the count is taken again
//! from a dump.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::util::enter_netns;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const MAIN_TABLE: u32 = 254;

#[derive(Default)]
struct State {
    routes: HashSet<(u32, u8)>,
    /// When the count first reached the target.
    reached: Option<Instant>,
    overflows: u32,
    error: Option<String>,
}

pub struct KernelWatch {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KernelWatch {
    /// Starts watching `ns` for routes of `protocol`; returns once
    /// subscribed (routes added after that are seen).
    pub fn start(ns: &str, protocol: u8, target: usize) -> Result<KernelWatch> {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (st, sp, ns) = (state.clone(), stop.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name("kwatch".into())
            .spawn(move || {
                let sock = enter_netns(&ns).and_then(|_| Socket::subscribe());
                let sock = match sock {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = watch(&sock, protocol, target, &st, &sp) {
                    st.lock().unwrap().error = Some(e.to_string());
                }
            })?;
        rx.recv().context("kwatch thread")??;
        Ok(KernelWatch {
            state,
            stop,
            thread: Some(thread),
        })
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().routes.len()
    }

    pub fn reached(&self) -> Option<Instant> {
        self.state.lock().unwrap().reached
    }

    pub fn overflows(&self) -> u32 {
        self.state.lock().unwrap().overflows
    }

    pub fn error(&self) -> Option<String> {
        self.state.lock().unwrap().error.clone()
    }
}

impl Drop for KernelWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(
    sock: &Socket,
    protocol: u8,
    target: usize,
    st: &Mutex<State>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    // Whatever is there already (nothing, normally).
    let initial = dump(protocol)?;
    st.lock().unwrap().routes.extend(initial);
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let mut s = st.lock().unwrap();
                for_each_route(&buf[..n], protocol, |new, key| {
                    if new {
                        s.routes.insert(key);
                    } else {
                        s.routes.remove(&key);
                    }
                });
                if s.reached.is_none() && s.routes.len() >= target {
                    s.reached = Some(Instant::now());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // Lost notifications: count again from the table.
                let routes = dump(protocol)?;
                let mut s = st.lock().unwrap();
                s.overflows += 1;
                s.routes = routes;
                if s.reached.is_none() && s.routes.len() >= target {
                    s.reached = Some(Instant::now());
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The routes of `protocol` in the calling thread's namespace's main
/// table, from a dump.
pub fn dump(protocol: u8) -> Result<HashSet<(u32, u8)>> {
    let sock = Socket::open()?;
    // nlmsghdr (16) + rtmsg (12), AF_INET.
    let mut req = [0u8; 28];
    req[0..4].copy_from_slice(&28u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETROUTE.to_ne_bytes());
    let flags: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_INET as u8;
    let n = unsafe { libc::send(sock.0, req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let mut out = HashSet::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = sock.recv(&mut buf)?;
        let mut done = false;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if len < 16 || off + len > n {
                break;
            }
            match ty {
                NLMSG_DONE => done = true,
                NLMSG_ERROR => bail!("route dump failed"),
                _ => {}
            }
            off += (len + 3) & !3;
        }
        for_each_route(&buf[..n], protocol, |new, key| {
            if new {
                out.insert(key);
            }
        });
        if done {
            return Ok(out);
        }
    }
}

/// Calls `f(is_new, (dst, len))` for each IPv4 main-table route of
/// `protocol` in a netlink datagram.
fn for_each_route(buf: &[u8], protocol: u8, mut f: impl FnMut(bool, (u32, u8))) {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        if len < 16 || off + len > buf.len() {
            return;
        }
        let msg = &buf[off + 16..off + len];
        if (ty == RTM_NEWROUTE || ty == RTM_DELROUTE)
            && msg.len() >= 12
            && msg[0] == libc::AF_INET as u8
            && msg[5] == protocol
        {
            let dst_len = msg[1];
            let mut table = u32::from(msg[4]);
            let mut dst = 0u32;
            let mut a = 12;
            while a + 4 <= msg.len() {
                let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
                let aty = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                let val = &msg[a + 4..a + alen];
                match aty {
                    RTA_DST if val.len() == 4 => dst = u32::from_be_bytes(val.try_into().unwrap()),
                    RTA_TABLE if val.len() == 4 => {
                        table = u32::from_ne_bytes(val.try_into().unwrap())
                    }
                    _ => {}
                }
                a += (alen + 3) & !3;
            }
            if table == MAIN_TABLE {
                f(ty == RTM_NEWROUTE, (dst, dst_len));
            }
        }
        off += (len + 3) & !3;
    }
}

struct Socket(libc::c_int);

impl Socket {
    fn open() -> Result<Socket> {
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let s = Socket(fd);
        s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20)?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(s)
    }

    /// A socket in the IPv4 route multicast group, with a deep buffer.
    fn subscribe() -> Result<Socket> {
        let s = Socket::open()?;
        s.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 256 << 20)?;
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = RTMGRP_IPV4_ROUTE;
        let r = unsafe {
            libc::bind(
                s.0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(s)
    }

    fn setsockopt(&self, level: i32, name: i32, value: i32) -> Result<()> {
        let r = unsafe {
            libc::setsockopt(
                self.0,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.0);
        }
    }
}

/// How many routes of `protocol` namespace `ns` holds (a dump, from a
/// thread of its own in that namespace).
pub fn count_in(ns: &str, protocol: u8) -> Result<usize> {
    let ns = ns.to_string();
    std::thread::spawn(move || -> Result<usize> {
        enter_netns(&ns)?;
        Ok(dump(protocol)?.len())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("dump thread panicked"))?
}
