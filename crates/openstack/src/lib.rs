//! The logic of the OpenStack (Neutron ML2) driver `calico`; the Python
//! shim in `openstack/` only adapts Neutron's interfaces and hands every
//! change to `bins/calico-neutron`, which runs this crate.
//!
//! The translation is pure: from the dicts Neutron hands a mechanism driver
//! to exactly the datastore keys and values upstream's networking-calico
//! writes. Around it, over any `Datastore` (etcd or the embedded store):
//! compare-and-swap writes (`sync`), reconciling with Neutron's database
//! (`resync`), the leader election (`election`) and agent and endpoint
//! status for Neutron (`status`).
//!
//! - a bound port → a WorkloadEndpoint in namespace `openstack` (or
//!   `openstack-region-<region>`), named `<host>-openstack-<device>-<port>`
//!   (`endpoint`);
//! - a security group → the NetworkPolicy `ossg.default.<id>` selecting its
//!   members by label (`policy`);
//! - a DHCP-enabled subnet → the DHCP agents' subnet data (`subnet`);
//! - FelixConfiguration and ClusterInformation `default` as the driver
//!   provides them (`felix`);
//! - the keys of all of these (`keys`), how a write merges with what is
//!   stored (`store`), and the small decisions of the driver itself
//!   (`driver`).
//!
//! Resources are this project's v3 types (`calico_api`) at this project's
//! keys (`calico_client::keys`), so calicoctl and calico-node read them as
//! any other. Data that cannot be expressed is an `Error` naming the object
//! and field, and nothing of that object is written (`workload_endpoint`,
//! `network_policy` and `dhcp_subnet` translate and check; the
//! `translate` methods skip the check).
//!
//! Golden tests (`tests/golden.rs`) hold upstream's own fixtures and
//! expected etcd values. Deliberate differences from what upstream writes,
//! each where upstream's output cannot be read by Calico or does not mean
//! what Neutron meant (documented again where they are made):
//! - encoding: empty lists are left out (upstream writes `"egress": []`);
//!   a protocol Neutron stores as a numeric string (`"6"`) is written as the
//!   number, which is how Calico reads upstream's string;
//! - protocol 0 (`ip`, `hopopt`, `"0"`) is no protocol match (any), as Felix
//!   treats it; an unknown protocol name is an error (upstream writes it in
//!   upper case, which Calico rejects);
//! - a port range on ICMP given by number (`1`, `58`, `icmpv6`) is the ICMP
//!   type and code, as for `icmp`/`ipv6-icmp` (upstream writes ports);
//!   a range with one end is that port (upstream writes `"25:None"`); a
//!   range from 0 starts at 1;
//! - `remote_ip_prefix` is written masked (`10.1.0.0/16` for `10.1.2.3/16`),
//!   a bare address as a host prefix;
//! - `remote_address_group_id` is an error (upstream ignores it, allowing
//!   every address);
//! - an allowed address pair given as a host prefix (`10.0.0.5/32`) is kept
//!   (upstream writes `10.0.0.5/32/32`); a wider prefix is an error;
//! - a host, device or port ID that begins or ends with `-` is an error
//!   (upstream writes a name from which Felix reads different IDs, so the
//!   port never goes ACTIVE);
//! - a Keystone project without a parent gets an empty parent label
//!   (upstream writes `null`);
//! - while Keystone cannot be asked, an endpoint keeps the project labels
//!   it is stored with (`PortExtras::project_unavailable`; upstream drops
//!   them, so a policy selecting on a project name stops applying).

pub mod driver;
pub mod election;
pub mod endpoint;
pub mod error;
pub mod felix;
pub mod keys;
pub mod names;
pub mod neutron;
pub mod options;
pub mod policy;
pub mod pyjson;
pub mod qos;
pub mod region;
pub mod resync;
pub mod status;
pub mod store;
pub mod subnet;
pub mod sync;

pub use endpoint::{workload_endpoint, Endpoint, PortExtras};
pub use error::{Error, Result};
pub use policy::{network_policy, security_group_policy, Policy};
pub use qos::QosConfig;
pub use region::Region;
pub use subnet::{dhcp_subnet, DhcpSubnet};

/// The driver's `[calico]` options that shape what it writes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub region: Region,
    pub qos: QosConfig,
}

impl Config {
    /// From `[calico] openstack_region` (checked as upstream checks it) and
    /// the QoS options.
    pub fn new(openstack_region: Option<&str>, qos: QosConfig) -> Result<Config> {
        Ok(Config {
            region: Region::new(openstack_region)?,
            qos,
        })
    }
}
