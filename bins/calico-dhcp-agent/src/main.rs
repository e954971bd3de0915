//! `calico-dhcp-agent`: DHCP (v4 and v6) for the OpenStack VMs of one
//! compute host, as upstream's networking-calico agent gives it: one
//! dnsmasq per Neutron network in the host's namespace, serving the VMs'
//! taps from the subnets and endpoints the Neutron driver writes. Run it
//! as root beside calico-node, with neutron.conf:
//!
//!     calico-dhcp-agent --config-file /etc/neutron/neutron.conf

mod agent;
mod config;
mod device;
mod runner;
mod watch;

use std::sync::atomic::Ordering;

use clap::Parser;

extern "C" fn on_signal(_: libc::c_int) {
    agent::STOP.store(true, Ordering::Relaxed);
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALICO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = config::Args::parse();
    let cfg = match config::AgentConfig::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("calico-dhcp-agent: {e:#}");
            std::process::exit(2);
        }
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    agent::Agent::new(cfg).run();
}
