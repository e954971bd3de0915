//! The registry of kinds (names, plurals, short names) and `AnyResource`, a
//! resource of any kind, for code that handles mixed documents.

use serde::Serialize;

use crate::config::{CalicoAPIConfig, ClusterInformation};
use crate::endpoint::{GlobalNetworkSet, HostEndpoint, NetworkSet, WorkloadEndpoint};
use crate::felixconfig::FelixConfiguration;
use crate::meta::ObjectMeta;
use crate::network::{
    BGPConfiguration, BGPFilter, BGPPeer, CalicoNodeStatus, IPAMConfiguration, IPPool,
    IPReservation, Node,
};
use crate::policy::{GlobalNetworkPolicy, NetworkPolicy, Profile, Tier};
use crate::resource::Resource;
use crate::validate::FieldErrors;

/// What the command line and the key layout need to know about a kind.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Accepted on the command line besides kind and plural (case-insensitive).
    pub aliases: &'static [&'static str],
}

macro_rules! kinds {
    ($($variant:ident => [$($alias:literal),*]),* $(,)?) => {
        /// Every stored kind, in the order `calicoctl` lists them.
        pub const KINDS: &[KindInfo] = &[$(KindInfo {
            kind: <$variant as Resource>::KIND,
            plural: <$variant as Resource>::PLURAL,
            namespaced: <$variant as Resource>::NAMESPACED,
            aliases: &[$($alias),*],
        }),*];

        /// A resource of any stored kind. FelixConfiguration makes variants
        /// uneven in size; boxing would buy nothing for a type that is built
        /// once per document, so the lint is silenced.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum AnyResource { $($variant($variant)),* }

        impl AnyResource {
            pub fn info(&self) -> &'static KindInfo {
                match self { $(AnyResource::$variant(_) => lookup_kind(<$variant as Resource>::KIND).unwrap()),* }
            }
            pub fn metadata(&self) -> &ObjectMeta {
                match self { $(AnyResource::$variant(r) => r.metadata()),* }
            }
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self { $(AnyResource::$variant(r) => r.metadata_mut()),* }
            }
            pub fn apply_defaults(&mut self) {
                match self { $(AnyResource::$variant(r) => r.apply_defaults()),* }
            }
            pub fn validate(&self) -> Result<(), FieldErrors> {
                match self { $(AnyResource::$variant(r) => r.validate()),* }
            }
            /// Decodes `value` as `kind` (the canonical kind name), reporting
            /// the path of the first offending field.
            pub fn from_value(kind: &str, value: serde_json::Value) -> Result<AnyResource, crate::decode::FieldDecodeError> {
                match kind {
                    $(<$variant as Resource>::KIND => crate::decode::typed::<$variant>(value).map(AnyResource::$variant),)*
                    other => Err(crate::decode::FieldDecodeError { field: "kind".into(), message: format!("unknown kind {other:?}") }),
                }
            }
            /// Decodes a value read from a datastore as `kind`: fields this
            /// version does not know are ignored (and listed), as upstream's
            /// datastore reads ignore them.
            pub fn from_stored_value(kind: &str, value: serde_json::Value) -> Result<crate::stored::Lenient<AnyResource>, crate::decode::FieldDecodeError> {
                match kind {
                    $(<$variant as Resource>::KIND => crate::stored::typed_lenient::<$variant>(value).map(|l| crate::stored::Lenient { resource: AnyResource::$variant(l.resource), ignored: l.ignored }),)*
                    other => Err(crate::decode::FieldDecodeError { field: "kind".into(), message: format!("unknown kind {other:?}") }),
                }
            }
        }
        $(impl From<$variant> for AnyResource {
            fn from(r: $variant) -> Self { AnyResource::$variant(r) }
        })*
    };
}

kinds! {
    BGPConfiguration => ["bgpconfig", "bgpconfigs"],
    BGPFilter => ["bgpf", "bgpfs", "bf", "bfs"],
    BGPPeer => ["bgpp", "bgpps", "bp", "bps"],
    CalicoNodeStatus => ["nodestatus", "nodestatuses"],
    ClusterInformation => ["clusterinfo", "clusterinfos"],
    FelixConfiguration => ["felixconfig", "felixconfigs"],
    GlobalNetworkPolicy => ["gnp", "gnps"],
    GlobalNetworkSet => [],
    HostEndpoint => ["hep", "heps"],
    IPAMConfiguration => ["ipamconfig", "ipamconfigs"],
    IPPool => ["ipp", "ipps", "pool", "pools"],
    IPReservation => ["ipr", "iprs"],
    NetworkPolicy => ["policy", "policies", "pol", "pols", "np", "nps"],
    NetworkSet => ["netset", "netsets"],
    Node => ["no", "nos"],
    Profile => ["pro", "pros"],
    Tier => [],
    WorkloadEndpoint => ["wep", "weps"],
}

/// Finds a kind by name, plural or short name, case-insensitively.
pub fn lookup_kind(name: &str) -> Option<&'static KindInfo> {
    let n = name.to_ascii_lowercase();
    KINDS.iter().find(|k| {
        k.kind.eq_ignore_ascii_case(&n) || k.plural == n || k.aliases.contains(&n.as_str())
    })
}

/// `CalicoAPIConfig` is decodable but never stored, so it is not in `KINDS`.
pub fn is_client_config_kind(kind: &str) -> bool {
    kind == <CalicoAPIConfig as Resource>::KIND
}

impl AnyResource {
    pub fn kind(&self) -> &'static str {
        self.info().kind
    }
    pub fn name(&self) -> &str {
        &self.metadata().name
    }
    /// `Kind(namespace/name)` or `Kind(name)`, for messages.
    pub fn display_id(&self) -> String {
        let m = self.metadata();
        if m.namespace.is_empty() {
            format!("{}({})", self.kind(), m.name)
        } else {
            format!("{}({}/{})", self.kind(), m.namespace, m.name)
        }
    }
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("resources always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve_case_insensitively() {
        assert_eq!(lookup_kind("IPPOOL").unwrap().kind, "IPPool");
        assert_eq!(lookup_kind("ippools").unwrap().kind, "IPPool");
        assert_eq!(lookup_kind("gnp").unwrap().kind, "GlobalNetworkPolicy");
        assert_eq!(lookup_kind("policy").unwrap().kind, "NetworkPolicy");
        assert_eq!(
            lookup_kind("NetworkPolicies").unwrap().kind,
            "NetworkPolicy"
        );
        assert!(lookup_kind("nonsense").is_none());
        for n in [
            "caliconodestatus",
            "CalicoNodeStatuses",
            "nodestatus",
            "nodestatuses",
        ] {
            assert_eq!(lookup_kind(n).unwrap().kind, "CalicoNodeStatus");
        }
        assert!(!lookup_kind("caliconodestatus").unwrap().namespaced);
    }

    #[test]
    fn aliases_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KINDS {
            for n in [k.kind.to_ascii_lowercase(), k.plural.to_string()]
                .into_iter()
                .chain(k.aliases.iter().map(|a| a.to_string()))
            {
                assert!(seen.insert(n.clone()), "{n} used twice");
            }
        }
    }
}
