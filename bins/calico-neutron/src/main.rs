//! `calico-neutron`: the Rust side of the Neutron ML2 driver `calico`.
//!
//! The Python shim in `openstack/` starts one `calico-neutron serve` per
//! neutron-server process and talks to it in JSON lines on stdin/stdout: a
//! request `{"op": ..., ...}` per line, one reply `{"ok": true, "result":
//! ...}` or `{"ok": false, "error": ...}` per request, in order. Why a
//! co-process and not an in-process extension: neutron-server runs under
//! eventlet, and a pipe to a child is cooperative there while a blocking
//! native call (an etcd round trip) would stall every green thread of the
//! process; a crash of our side also cannot take neutron-server with it.

mod serve;

use std::io::{BufRead, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            ignore_termination_signals();
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            if let Err(e) = serve_lines(stdin, stdout) {
                eprintln!("calico-neutron: {e}");
                std::process::exit(1);
            }
        }
        Some("--version") | Some("version") => {
            println!("calico-neutron {}", env!("CARGO_PKG_VERSION"))
        }
        _ => {
            eprintln!(
                "usage: calico-neutron serve\n\n\
                 Run by the Neutron ML2 driver `calico` (openstack/ in calico-rs); it speaks\n\
                 JSON lines on stdin/stdout. Operators use `calico-resync` and calicoctl."
            );
            std::process::exit(2);
        }
    }
}

/// The co-process lives exactly as long as the Neutron process it serves:
/// a shutdown signals the whole process group (or systemd's cgroup), and
/// the Python side still needs us to resign its leadership then. We end
/// when our stdin closes, which also happens when the parent is killed.
fn ignore_termination_signals() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler code
    // and is async-signal-safe; done once before any thread starts.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// One reply per request line until stdin closes (the shim's process
/// ended); then leadership, if held, is given up at once rather than when
/// the lease expires.
fn serve_lines(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    let mut server = serve::Server::default();
    let result = serve_requests(&mut server, input, &mut output);
    server.shutdown();
    result
}

fn serve_requests(
    server: &mut serve::Server,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = server.handle_line(&line);
        serde_json::to_writer(&mut output, &reply)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}
