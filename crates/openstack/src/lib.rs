//! The translation core of the OpenStack (Neutron ML2) driver: pure
//! functions from the dicts Neutron hands a mechanism driver to exactly the
//! datastore keys and values upstream's networking-calico writes.
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
//! any other. Where upstream writes something Calico cannot read (or reads
//! differently from what Neutron meant), the difference is documented on
//! the function that makes it; data that cannot be expressed at all is an
//! `Error` naming the object and field, and nothing of that object is
//! written.

pub mod driver;
pub mod endpoint;
pub mod error;
pub mod felix;
pub mod keys;
pub mod names;
pub mod neutron;
pub mod policy;
pub mod pyjson;
pub mod qos;
pub mod region;
pub mod store;
pub mod subnet;

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
