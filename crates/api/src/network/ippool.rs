//! IPPool, IPReservation and IPAMConfiguration: where workload and tunnel
//! addresses come from, and how their traffic is encapsulated and NATed.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::{check_name, check_selector, parse_cidr, parse_net, FieldErrors};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignmentMode {
    Automatic,
    Manual,
}

/// IPv4 link-local: never a pool (upstream rule).
const LINK_LOCAL_V4: &str = "169.254.0.0/16";
const LINK_LOCAL_V6: &str = "fe80::/10";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default, rename = "ipipMode", skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
    /// Deprecated v1 field; accepted only so that its error can say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<serde_json::Value>,
    /// Deprecated v1 field; accepted only so that its error can say so.
    #[serde(
        default,
        rename = "nat-outgoing",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub nat_outgoing_v1: bool,
}

impl IPPoolSpec {
    /// The parsed CIDR (valid pools only).
    pub fn net(&self) -> Option<IpNet> {
        parse_cidr(&self.cidr).ok()
    }
    pub fn effective_block_size(&self) -> u8 {
        self.block_size.unwrap_or(match self.net() {
            Some(IpNet::V6(_)) => 122,
            _ => 26,
        })
    }
    pub fn allows(&self, use_: AllowedUse) -> bool {
        if self.allowed_uses.is_empty() {
            matches!(use_, AllowedUse::Workload | AllowedUse::Tunnel)
        } else {
            self.allowed_uses.contains(&use_)
        }
    }
    pub fn vxlan(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or_default()
    }
    pub fn ipip(&self) -> EncapMode {
        self.ipip_mode.unwrap_or_default()
    }
}

impl Spec for IPPoolSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        // Normalise the CIDR text (e.g. upper-case IPv6) so read-back is canonical.
        if let Ok(net) = parse_cidr(&self.cidr) {
            self.cidr = net.to_string();
        }
        self.vxlan_mode.get_or_insert(EncapMode::Never);
        self.ipip_mode.get_or_insert(EncapMode::Never);
        self.block_size = Some(self.effective_block_size());
        if self.node_selector.is_empty() {
            self.node_selector = "all()".to_string();
        }
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
        }
        self.assignment_mode
            .get_or_insert(AssignmentMode::Automatic);
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if self.ipip.is_some() {
            errs.add(
                "spec.ipip",
                "the v1 field ipip is no longer supported; use ipipMode: Always|CrossSubnet|Never",
            );
        }
        if self.nat_outgoing_v1 {
            errs.add(
                "spec.nat-outgoing",
                "the v1 field nat-outgoing is no longer supported; use natOutgoing",
            );
        }
        let net = if self.cidr.is_empty() {
            errs.add("spec.cidr", "cidr is required");
            None
        } else {
            match parse_cidr(&self.cidr) {
                Ok(n) => Some(n),
                Err(m) => {
                    errs.add("spec.cidr", m);
                    None
                }
            }
        };
        if self.ipip() != EncapMode::Never && self.vxlan() != EncapMode::Never {
            errs.add(
                "spec.vxlanMode",
                "ipipMode and vxlanMode cannot both be enabled on one pool",
            );
        }
        if let Some(net) = net {
            let v6 = matches!(net, IpNet::V6(_));
            if v6 && self.ipip() != EncapMode::Never {
                errs.add("spec.ipipMode", "IPIP is not supported on an IPv6 pool");
            }
            let (lo, hi) = if v6 { (116, 128) } else { (20, 32) };
            let bs = self.effective_block_size();
            if !(lo..=hi).contains(&bs) {
                errs.add(
                    "spec.blockSize",
                    format!(
                        "block size {bs} is out of range: IPv{} pools take {lo} to {hi}",
                        if v6 { 6 } else { 4 }
                    ),
                );
            } else if !self.disabled && net.prefix_len() > bs {
                errs.add(
                    "spec.cidr",
                    format!(
                        "IP pool size is too small for use with Calico IPAM: /{} is smaller than one /{bs} block",
                        net.prefix_len()
                    ),
                );
            }
            let ll: IpNet = if v6 { LINK_LOCAL_V6 } else { LINK_LOCAL_V4 }
                .parse()
                .unwrap();
            if ll.contains(&net.network()) || net.contains(&ll.network()) {
                errs.add(
                    "spec.cidr",
                    format!("{net} overlaps the link-local range {ll}"),
                );
            }
        }
        check_pool_selector("spec.nodeSelector", &self.node_selector, errs);
        if !self.namespace_selector.is_empty() {
            check_pool_selector("spec.namespaceSelector", &self.namespace_selector, errs);
        }
        self.check_allowed_uses(errs);
    }
}

/// A pool selector: valid syntax, and no global() (it selects nodes or
/// namespaces, never network sets).
fn check_pool_selector(field: &str, s: &str, errs: &mut FieldErrors) {
    if let Some(sel) = check_selector(field, s, errs) {
        if sel.uses_global() {
            errs.add(field, "global() is not valid in an IP pool selector");
        }
    }
}

impl IPPoolSpec {
    fn check_allowed_uses(&self, errs: &mut FieldErrors) {
        let mut seen = Vec::new();
        for (i, u) in self.allowed_uses.iter().enumerate() {
            if seen.contains(u) {
                errs.add(
                    format!("spec.allowedUses[{i}]"),
                    format!("{u:?} is listed twice"),
                );
            }
            seen.push(*u);
        }
        if self.allowed_uses.contains(&AllowedUse::LoadBalancer) {
            self.check_load_balancer(errs);
        }
        if self.allowed_uses.contains(&AllowedUse::Tunnel) && !self.namespace_selector.is_empty() {
            errs.add(
                "spec.namespaceSelector",
                "a pool used for tunnel addresses cannot have a namespaceSelector (allowedUses defaults to Workload and Tunnel; set allowedUses: [Workload])",
            );
        }
    }

    /// LoadBalancer pools hold service addresses that every node advertises.
    fn check_load_balancer(&self, errs: &mut FieldErrors) {
        if self.allowed_uses.len() > 1 {
            errs.add(
                "spec.allowedUses",
                "LoadBalancer cannot be combined with other uses",
            );
        }
        if self.ipip() != EncapMode::Never {
            errs.add("spec.ipipMode", "a LoadBalancer pool cannot use IPIP");
        }
        if self.vxlan() != EncapMode::Never {
            errs.add("spec.vxlanMode", "a LoadBalancer pool cannot use VXLAN");
        }
        if self.disable_bgp_export {
            errs.add(
                "spec.disableBGPExport",
                "a LoadBalancer pool cannot disable BGP export",
            );
        }
        if !matches!(self.node_selector.as_str(), "" | "all()") {
            errs.add(
                "spec.nodeSelector",
                "a LoadBalancer pool's nodeSelector must be all()",
            );
        }
    }
}

resource!(
    /// A range of workload addresses with its encapsulation and NAT settings.
    IPPool, IPPoolSpec, kind = "IPPool", plural = "ippools", namespaced = false,
    name_rule = check_name
);

/// Returns the first pool whose CIDR overlaps `cidr`, skipping the pool named
/// `except` (the one being updated).
pub fn find_overlapping_pool<'a>(
    cidr: &IpNet,
    except: &str,
    pools: impl IntoIterator<Item = &'a IPPool>,
) -> Option<&'a IPPool> {
    pools.into_iter().find(|p| {
        p.metadata.name != except
            && p.spec
                .net()
                .is_some_and(|n| n.contains(&cidr.network()) || cidr.contains(&n.network()))
    })
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    #[serde(default, rename = "reservedCIDRs")]
    pub reserved_cidrs: Vec<String>,
}

impl Spec for IPReservationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        for (i, c) in self.reserved_cidrs.iter().enumerate() {
            if let Err(m) = parse_net(c) {
                errs.add(format!("spec.reservedCIDRs[{i}]"), m);
            }
        }
    }
}

resource!(
    /// Addresses IPAM must never hand out.
    IPReservation, IPReservationSpec, kind = "IPReservation", plural = "ipreservations",
    namespaced = false, name_rule = check_name
);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
}

impl Spec for IPAMConfigurationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if self
            .max_blocks_per_host
            .is_some_and(|m| !(0..=1_000_000).contains(&m))
        {
            errs.add(
                "spec.maxBlocksPerHost",
                "maxBlocksPerHost must be 0 (unlimited) to 1000000",
            );
        }
    }
}

fn check_singleton_default(name: &str, errs: &mut FieldErrors) {
    if name != "default" {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: this kind only has one resource, named \"default\""),
        );
    }
}

resource!(
    /// Cluster-wide IPAM settings (singleton `default`).
    IPAMConfiguration, IPAMConfigurationSpec, kind = "IPAMConfiguration",
    plural = "ipamconfigurations", namespaced = false, name_rule = check_singleton_default
);
