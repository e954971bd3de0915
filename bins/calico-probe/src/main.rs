//! `calico-probe`: a tiny reachability probe for dataplane tests and the lab.
//!
//! ```text
//! calico-probe serve [--tcp PORT[,PORT...]] [--udp PORT[,PORT...]] [--listen ADDR]
//!     Echo servers (TCP: echo every byte back; UDP: echo each datagram) on
//!     every listed port, bound to ADDR (default `::`, dual stack, falling
//!     back to 0.0.0.0). Prints `READY tcp=... udp=...` once all sockets are
//!     bound, then `CONN tcp from PEER to LOCAL` per accepted connection, and
//!     runs until killed.
//!
//! calico-probe tcp IP:PORT [--timeout-ms 500] [--bind SRCIP] [--count 1] [--interval-ms 100]
//! calico-probe udp IP:PORT [--timeout-ms 500] [--bind SRCIP] [--count 1] [--interval-ms 100]
//!     Send a token and expect it echoed back, COUNT times (TCP: over one
//!     connection, so --count > 1 checks that an established flow keeps
//!     working), waiting INTERVAL between round trips. --bind sets the source
//!     address (it must be configured on a local interface). IPv6 addresses
//!     are written `[2001:db8::1]:80`.
//!     Prints one line: `OK tcp 198.18.0.2:80 from 198.18.0.1:40000 count=1 rtt_ms=0.21`
//!     or `FAIL tcp 198.18.0.2:80: <reason>`.
//!
//! Exit status: 0 = reached (every round trip answered), 1 = no answer,
//! refused or timed out, 2 = usage error.
//! ```

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(calico_probe::run(&args));
}
