//! What `calico-dhcp-agent` serves, as upstream's networking-calico DHCP
//! agent serves it: the subnets the Neutron driver writes
//! (`/calico/dhcp/v2/<region>/subnet/<id>`) and this host's OpenStack
//! WorkloadEndpoints become, per Neutron network, a dnsmasq command line
//! and its hosts, options and leases files (`dnsmasq`), and a plan of
//! which dnsmasq to start, reload or stop when they change (`plan`).
//! Everything here is pure; processes, devices and files are the binary's.
//!
//! - `model`: subnets and ports read leniently from the stored JSON (a bad
//!   value is reported and skipped, never fatal), grouped into networks.
//! - `dnsmasq`: the rendering, following upstream's `DnsmasqRouted` (a
//!   frozen Neutron 13 command line with the taps on it, the gateways on a
//!   per-network `ns-<network id>` device bridged to the taps).
//! - `plan`: what changed since the last reconcile, per network.

pub mod dnsmasq;
pub mod model;
pub mod plan;
