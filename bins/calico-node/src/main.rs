//! calico-node: the per-host agent. Watches the datastore, computes this
//! host's desired state (crates/calc) and programs the kernel
//! (crates/dataplane); writes status back.
//!
//! ```text
//!  datastore ──list/watch──▶ syncer thread ──Input──▶ Calculator ──Update──▶ managers ──▶ kernel
//!                                                                              │
//!  datastore ◀──status (lease), endpoint status◀───────────────────────────────┘
//! ```

mod agent;
mod bgp;
mod conditions;
mod config;
mod dataplane;
mod epstatus;
mod health;
mod metrics;
mod nodestatus;
mod register;
mod status;
mod syncer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    calico_dataplane::heap::tune();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALICO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = config::Args::parse();
    let cfg = match config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("calico-node: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match agent::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("calico-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}
