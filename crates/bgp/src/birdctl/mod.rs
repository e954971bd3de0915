//! BIRD's control-socket protocol, so that tools written for Calico's BIRD
//! work against calico-node's own BGP speaker.
//!
//! Calico runs its fork of BIRD 1.6 with control sockets
//! `/var/run/calico/bird.ctl` (IPv4) and `bird6.ctl` (IPv6). Three readers
//! matter: `calicoctl node status` (sends `show protocols` and insists on
//! BIRD 1.6's lower-case headings), calico-node's own readiness check and
//! `CalicoNodeStatus` populators (`show status`, `show protocols`,
//! `show protocols all NAME`, `show route`), and people with `birdc`.
//!
//! The agent fills a [`BirdView`]; [`reply`] turns a command line into
//! BIRD 1.6's reply to it, byte for byte; [`Server`] answers on a socket.
//!
//! # The protocol
//!
//! On connect the server sends `0001 BIRD <version> ready.`. The client
//! sends one command per line; each reply is lines `CODE-text` (more
//! follows), ` text` (continues the code of the line before) and ends with
//! one `CODE text` (codes below 8000 are success; `birdc` exits 1 on others).
//! `birdc` (also BIRD 2's) expands abbreviations itself and only strips the
//! codes, so it shows a BIRD 1.6 layout as it is.
//!
//! # Commands
//!
//! `show status`, `show protocols [all] [NAME | "PATTERN"]`,
//! `show route [PREFIX | for PREFIX|ADDR] [table master] [all] [primary]
//! [filtered] [(export|preexport|noexport) NAME] [protocol NAME] [stats|count]`,
//! and `restrict`. Commands that would change the daemon (`configure`,
//! `disable`, `restart`, ...) get `8007 Access denied`: the speaker is
//! configured from the datastore. Other `show` commands of BIRD and route
//! filters (`where`, `filter`) get a `9001` saying they are not supported;
//! anything else BIRD's `9001 syntax error`.

mod command;
mod format;
mod from_status;
mod server;
mod view;

#[cfg(test)]
mod calico_ports;
#[cfg(test)]
mod tests;

pub use from_status::bird_view;
pub use server::{Server, ServerOptions, ViewSource};
pub use view::*;

/// The complete reply to one command line (with or without its newline),
/// down to the final `CODE text` line.
pub fn reply(view: &BirdView, command_line: &str) -> Vec<u8> {
    let line = command_line.strip_suffix('\n').unwrap_or(command_line);
    // BIRD drops every carriage return before it reads a command.
    let line = line.replace('\r', "");
    if line.len() >= command::MAX_COMMAND {
        return format::Reply::new().end(9000, "Command too long");
    }
    match command::parse(&line, view) {
        Ok(cmd) => format::run(view, &cmd),
        Err(refusal) => format::Reply::new().end(refusal.code, &refusal.text),
    }
}

/// What the server sends first on every connection.
pub fn greeting(view: &BirdView) -> Vec<u8> {
    format::greeting_for(&view.version)
}
