//! FelixConfiguration: Felix's tunables, cluster-wide (`default`) or per node
//! (`node.<nodename>`).
//!
//! The spec lists every field upstream's `FelixConfigurationSpec` has (the
//! decoder is strict, so a missing field would reject valid manifests). All
//! fields are optional: an unset field means "Felix's built-in default", and
//! upstream never writes those defaults into the stored resource, so
//! `apply_defaults` leaves the spec alone.
//!
//! Felix reads its settings from, in increasing precedence, the `default`
//! resource, the `node.<name>` resource and `FELIX_*` environment variables;
//! [`FelixConfigurationSpec::merge_from`] and
//! [`FelixConfigurationSpec::set_from_env_name`] implement the two overlays.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::duration::parse_go_duration;
use crate::meta::ObjectMeta;
use crate::numorstring::Port;
use crate::resource::{resource, Spec};
use crate::validate::{is_dns1123_label, is_interface_name, parse_net, FieldErrors};

/// A protocol/port (and optional source or destination network) that Felix
/// always allows to or from host endpoints (`failsafe*HostPorts`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProtoPort {
    /// `tcp`, `udp` or `sctp` (any case); empty means `tcp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    pub port: u16,
    /// CIDR the rule is limited to; empty or absent means any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
}

/// An inclusive range of Linux routing table indices.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteTableRange {
    pub min: i64,
    pub max: i64,
}

/// Replaces the liveness/readiness timeout of one Felix subcomponent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthTimeoutOverride {
    pub name: String,
    /// Go duration, e.g. `30s`.
    pub timeout: String,
}

/// BPF conntrack timers; each value is a Go duration or `Auto` (take the
/// value from the kernel's conntrack sysctls).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BpfConntrackTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_grace_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_syn_sent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_established: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_fins_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_reset_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_timeout: Option<String>,
}

/// JSON names of the [`BpfConntrackTimeouts`] fields.
const CONNTRACK_TIMERS: [&str; 8] = [
    "creationGracePeriod",
    "tcpSynSent",
    "tcpEstablished",
    "tcpFinsSeen",
    "tcpResetSeen",
    "udpTimeout",
    "genericTimeout",
    "icmpTimeout",
];

/// How a field's value is written in a `FELIX_*` environment variable (and so
/// how [`FelixConfigurationSpec::set_from_env_name`] parses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `t`/`f`, `y`/`n`).
    Bool,
    /// Decimal integer (or `0x` hex).
    Int,
    /// 32-bit mask, usually hex (`0xffff0000`).
    Mask,
    /// Text, taken as is.
    Str,
    /// Duration: a number of seconds or a Go duration string.
    Secs,
    /// Duration: a number of milliseconds or a Go duration string.
    Millis,
    /// Comma-separated list.
    List,
    /// Comma-separated `proto:port` or `proto:net:port` items.
    ProtoPorts,
    /// One port or `min:max` range.
    Port,
    /// Comma-separated ports or `min:max` ranges.
    Ports,
    /// `min-max`.
    TableRange,
    /// Comma-separated `min-max` ranges.
    TableRanges,
    /// Comma-separated `key=value` pairs.
    KeyValues,
    /// Comma-separated `name=duration` pairs.
    HealthOverrides,
    /// Comma-separated `timer=duration|Auto` pairs.
    ConntrackTimeouts,
}

/// One spec field: its JSON name, its environment syntax and any extra
/// environment names (older or Go-side names that differ from the JSON one).
struct FieldInfo {
    json: &'static str,
    kind: Kind,
    env: &'static [&'static str],
}

/// Declares the spec struct, the field table used for environment overrides,
/// and `merge_from`, all from one list so they cannot drift apart.
macro_rules! felix_spec {
    ($(
        $(#[$doc:meta])*
        $field:ident : $ty:ty = $json:literal, $kind:ident $(, env = [$($alias:literal),*])? ;
    )*) => {
        /// The values of Felix's configuration. Every field is optional; unset
        /// means Felix's built-in default.
        #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct FelixConfigurationSpec {
            $(
                $(#[$doc])*
                #[serde(rename = $json, default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        const FIELDS: &[FieldInfo] = &[
            $(FieldInfo { json: $json, kind: Kind::$kind, env: &[$($($alias),*)?] },)*
        ];

        impl FelixConfigurationSpec {
            /// Overlays every field that is set in `other` onto `self` (Felix
            /// merges `default`, then `node.<name>`, then the environment).
            pub fn merge_from(&mut self, other: &FelixConfigurationSpec) {
                $(
                    if other.$field.is_some() {
                        self.$field.clone_from(&other.$field);
                    }
                )*
            }
        }
    };
}

felix_spec! {
    // --- Process, dataplane driver and Go runtime ---
    /// Use Felix's built-in dataplane (true) or an external driver.
    use_internal_dataplane_driver: bool = "useInternalDataplaneDriver", Bool;
    /// Path of the external dataplane driver.
    dataplane_driver: String = "dataplaneDriver", Str;
    /// Deprecated: use `healthTimeoutOverrides`.
    dataplane_watchdog_timeout: String = "dataplaneWatchdogTimeout", Secs;
    /// `Feature=true|false|` pairs that override feature detection.
    feature_detect_override: String = "featureDetectOverride", Str;
    /// `Feature=value` pairs enabling tech-preview features.
    feature_gates: String = "featureGates", Str;
    go_gc_threshold: i64 = "goGCThreshold", Int;
    go_memory_limit_mb: i64 = "goMemoryLimitMB", Int;
    go_max_procs: i64 = "goMaxProcs", Int;
    require_mtu_file: bool = "requireMTUFile", Bool;
    /// Experimental sidecar acceleration.
    sidecar_acceleration_enabled: bool = "sidecarAccelerationEnabled", Bool;

    // --- Logging ---
    log_prefix: String = "logPrefix", Str;
    log_file_path: String = "logFilePath", Str;
    log_severity_file: String = "logSeverityFile", Str;
    log_severity_screen: String = "logSeverityScreen", Str;
    log_severity_sys: String = "logSeveritySys", Str;
    log_debug_filename_regex: String = "logDebugFilenameRegex", Str;
    /// Rate limit of policy `Log` actions, e.g. `5/second`.
    log_action_rate_limit: String = "logActionRateLimit", Str;
    log_action_rate_limit_burst: i64 = "logActionRateLimitBurst", Int;

    // --- Health, metrics, usage reporting, debugging ---
    health_enabled: bool = "healthEnabled", Bool;
    health_host: String = "healthHost", Str;
    health_port: i64 = "healthPort", Int;
    health_timeout_overrides: Vec<HealthTimeoutOverride> = "healthTimeoutOverrides", HealthOverrides;
    prometheus_metrics_enabled: bool = "prometheusMetricsEnabled", Bool;
    prometheus_metrics_host: String = "prometheusMetricsHost", Str;
    prometheus_metrics_port: i64 = "prometheusMetricsPort", Int;
    prometheus_go_metrics_enabled: bool = "prometheusGoMetricsEnabled", Bool;
    prometheus_process_metrics_enabled: bool = "prometheusProcessMetricsEnabled", Bool;
    prometheus_wire_guard_metrics_enabled: bool = "prometheusWireGuardMetricsEnabled", Bool;
    prometheus_metrics_ca_file: String = "prometheusMetricsCAFile", Str;
    prometheus_metrics_cert_file: String = "prometheusMetricsCertFile", Str;
    prometheus_metrics_key_file: String = "prometheusMetricsKeyFile", Str;
    prometheus_metrics_client_auth: String = "prometheusMetricsClientAuth", Str;
    usage_reporting_enabled: bool = "usageReportingEnabled", Bool;
    usage_reporting_initial_delay: String = "usageReportingInitialDelay", Secs,
        env = ["UsageReportingInitialDelaySecs"];
    usage_reporting_interval: String = "usageReportingInterval", Secs,
        env = ["UsageReportingIntervalSecs"];
    debug_memory_profile_path: String = "debugMemoryProfilePath", Str;
    debug_disable_log_dropping: bool = "debugDisableLogDropping", Bool;
    debug_simulate_calc_graph_hang_after: String = "debugSimulateCalcGraphHangAfter", Secs;
    debug_simulate_dataplane_hang_after: String = "debugSimulateDataplaneHangAfter", Secs;
    debug_simulate_dataplane_apply_delay: String = "debugSimulateDataplaneApplyDelay", Secs;
    debug_host: String = "debugHost", Str;
    debug_port: i64 = "debugPort", Int;

    // --- Status reporting ---
    reporting_interval: String = "reportingInterval", Secs, env = ["ReportingIntervalSecs"];
    reporting_ttl: String = "reportingTTL", Secs, env = ["ReportingTTLSecs"];
    /// Report per-endpoint status to the datastore (used by OpenStack).
    endpoint_reporting_enabled: bool = "endpointReportingEnabled", Bool;
    endpoint_reporting_delay: String = "endpointReportingDelay", Secs,
        env = ["EndpointReportingDelaySecs"];
    endpoint_status_path_prefix: String = "endpointStatusPathPrefix", Str;
    policy_sync_path_prefix: String = "policySyncPathPrefix", Str;

    // --- Interfaces and OpenStack ---
    /// Metadata server (OpenStack nova-api) address, or `none`.
    metadata_addr: String = "metadataAddr", Str;
    metadata_port: i64 = "metadataPort", Int;
    openstack_region: String = "openstackRegion", Str;
    /// Comma-separated workload interface prefixes (`cali`; OpenStack: `tap`).
    interface_prefix: String = "interfacePrefix", Str;
    /// Comma-separated interface names or `/regex/`es ignored for host endpoints.
    interface_exclude: String = "interfaceExclude", Str;
    interface_refresh_interval: String = "interfaceRefreshInterval", Secs;
    /// Regex of the interfaces scanned to detect the host MTU.
    mtu_iface_pattern: String = "mtuIfacePattern", Str;

    // --- iptables / nftables / ipsets ---
    iptables_backend: String = "iptablesBackend", Str;
    iptables_refresh_interval: String = "iptablesRefreshInterval", Secs;
    iptables_post_write_check_interval: String = "iptablesPostWriteCheckInterval", Secs,
        env = ["IptablesPostWriteCheckIntervalSecs"];
    iptables_lock_file_path: String = "iptablesLockFilePath", Str;
    iptables_lock_timeout: String = "iptablesLockTimeout", Secs, env = ["IptablesLockTimeoutSecs"];
    iptables_lock_probe_interval: String = "iptablesLockProbeInterval", Millis,
        env = ["IptablesLockProbeIntervalMillis"];
    ipsets_refresh_interval: String = "ipsetsRefreshInterval", Secs;
    max_ipset_size: i64 = "maxIpsetSize", Int;
    chain_insert_mode: String = "chainInsertMode", Str;
    default_endpoint_to_host_action: String = "defaultEndpointToHostAction", Str;
    iptables_filter_allow_action: String = "iptablesFilterAllowAction", Str;
    iptables_mangle_allow_action: String = "iptablesMangleAllowAction", Str;
    iptables_filter_deny_action: String = "iptablesFilterDenyAction", Str;
    iptables_mark_mask: u32 = "iptablesMarkMask", Mask;
    /// iptables-style interface match (`+` wildcard) limiting NAT-outgoing.
    iptables_nat_outgoing_interface_filter: String = "iptablesNATOutgoingInterfaceFilter", Str;
    disable_conntrack_invalid_check: bool = "disableConntrackInvalidCheck", Bool;
    nftables_mode: String = "nftablesMode", Str;
    nftables_refresh_interval: String = "nftablesRefreshInterval", Secs;
    nftables_filter_allow_action: String = "nftablesFilterAllowAction", Str;
    nftables_mangle_allow_action: String = "nftablesMangleAllowAction", Str;
    nftables_filter_deny_action: String = "nftablesFilterDenyAction", Str;
    nftables_mark_mask: u32 = "nftablesMarkMask", Mask;
    failsafe_inbound_host_ports: Vec<ProtoPort> = "failsafeInboundHostPorts", ProtoPorts;
    failsafe_outbound_host_ports: Vec<ProtoPort> = "failsafeOutboundHostPorts", ProtoPorts;
    /// Service node-port ranges (used when kube-proxy runs in IPVS mode).
    kube_node_port_ranges: Vec<Port> = "kubeNodePortRanges", Ports;
    netlink_timeout: String = "netlinkTimeout", Secs, env = ["NetlinkTimeoutSecs"];

    // --- XDP ---
    xdp_enabled: bool = "xdpEnabled", Bool;
    generic_xdp_enabled: bool = "genericXDPEnabled", Bool;
    xdp_refresh_interval: String = "xdpRefreshInterval", Secs;

    // --- Overlay networking ---
    ipip_enabled: bool = "ipipEnabled", Bool, env = ["IpInIpEnabled"];
    ipip_mtu: i64 = "ipipMTU", Int, env = ["IpInIpMtu"];
    vxlan_enabled: bool = "vxlanEnabled", Bool;
    vxlan_mtu: i64 = "vxlanMTU", Int;
    vxlan_mtu_v6: i64 = "vxlanMTUV6", Int;
    vxlan_port: i64 = "vxlanPort", Int;
    vxlan_vni: i64 = "vxlanVNI", Int;
    allow_vxlan_packets_from_workloads: bool = "allowVXLANPacketsFromWorkloads", Bool;
    allow_ipip_packets_from_workloads: bool = "allowIPIPPacketsFromWorkloads", Bool;
    /// CIDRs of non-Calico nodes allowed to send overlay traffic.
    external_nodes_list: Vec<String> = "externalNodesList", List, env = ["ExternalNodesCIDRList"];
    ipv6_support: bool = "ipv6Support", Bool;

    // --- Routing ---
    route_refresh_interval: String = "routeRefreshInterval", Secs;
    route_source: String = "routeSource", Str;
    route_table_ranges: Vec<RouteTableRange> = "routeTableRanges", TableRanges;
    /// Deprecated: use `routeTableRanges`.
    route_table_range: RouteTableRange = "routeTableRange", TableRange;
    route_sync_disabled: bool = "routeSyncDisabled", Bool;
    remove_external_routes: bool = "removeExternalRoutes", Bool;
    program_cluster_routes: String = "programClusterRoutes", Str;
    ip_forwarding: String = "ipForwarding", Str;
    device_route_source_address: String = "deviceRouteSourceAddress", Str;
    device_route_source_address_ipv6: String = "deviceRouteSourceAddressIPv6", Str;
    device_route_protocol: i64 = "deviceRouteProtocol", Int;
    ipv4_normal_route_priority: i64 = "ipv4NormalRoutePriority", Int;
    ipv4_elevated_route_priority: i64 = "ipv4ElevatedRoutePriority", Int;
    ipv6_normal_route_priority: i64 = "ipv6NormalRoutePriority", Int;
    ipv6_elevated_route_priority: i64 = "ipv6ElevatedRoutePriority", Int;

    // --- NAT and service handling ---
    nat_port_range: Port = "natPortRange", Port;
    nat_outgoing_address: String = "natOutgoingAddress", Str;
    nat_outgoing_exclusions: String = "natOutgoingExclusions", Str;
    service_loop_prevention: String = "serviceLoopPrevention", Str;
    workload_source_spoofing: String = "workloadSourceSpoofing", Str;
    /// Program non-OpenStack floating IPs (OpenStack ones are always programmed).
    floating_ips: String = "floatingIPs", Str;

    // --- eBPF dataplane ---
    bpf_enabled: bool = "bpfEnabled", Bool;
    bpf_disable_unprivileged: bool = "bpfDisableUnprivileged", Bool;
    bpf_log_level: String = "bpfLogLevel", Str;
    bpf_conntrack_log_level: String = "bpfConntrackLogLevel", Str;
    bpf_conntrack_mode: String = "bpfConntrackMode", Str, env = ["BPFConntrackCleanupMode"];
    bpf_conntrack_timeouts: BpfConntrackTimeouts = "bpfConntrackTimeouts", ConntrackTimeouts;
    /// Interface (or `all`/`weps`/`heps`) to pcap filter expression.
    bpf_log_filters: BTreeMap<String, String> = "bpfLogFilters", KeyValues;
    bpf_ctlb_log_filter: String = "bpfCTLBLogFilter", Str;
    bpf_data_iface_pattern: String = "bpfDataIfacePattern", Str;
    bpf_l3_iface_pattern: String = "bpfL3IfacePattern", Str;
    /// Deprecated: use `bpfConnectTimeLoadBalancing`.
    bpf_connect_time_load_balancing_enabled: bool = "bpfConnectTimeLoadBalancingEnabled", Bool;
    bpf_connect_time_load_balancing: String = "bpfConnectTimeLoadBalancing", Str;
    bpf_host_networked_nat_without_ctlb: String = "bpfHostNetworkedNATWithoutCTLB", Str;
    bpf_external_service_mode: String = "bpfExternalServiceMode", Str;
    bpf_dsr_optout_cidrs: Vec<String> = "bpfDSROptoutCIDRs", List;
    bpf_ext_to_service_connmark: i64 = "bpfExtToServiceConnmark", Int;
    bpf_kube_proxy_iptables_cleanup_enabled: bool = "bpfKubeProxyIptablesCleanupEnabled", Bool;
    bpf_kube_proxy_min_sync_period: String = "bpfKubeProxyMinSyncPeriod", Secs;
    /// Deprecated no-op kept for old manifests.
    bpf_kube_proxy_endpoint_slices_enabled: bool = "bpfKubeProxyEndpointSlicesEnabled", Bool;
    bpf_kube_proxy_healthz_port: i64 = "bpfKubeProxyHealthzPort", Int;
    bpf_psnat_ports: Port = "bpfPSNATPorts", Port;
    bpf_map_size_nat_frontend: i64 = "bpfMapSizeNATFrontend", Int;
    bpf_map_size_nat_backend: i64 = "bpfMapSizeNATBackend", Int;
    bpf_map_size_nat_affinity: i64 = "bpfMapSizeNATAffinity", Int;
    bpf_map_size_route: i64 = "bpfMapSizeRoute", Int;
    bpf_map_size_conntrack: i64 = "bpfMapSizeConntrack", Int;
    bpf_map_size_per_cpu_conntrack: i64 = "bpfMapSizePerCpuConntrack", Int;
    bpf_map_size_conntrack_scaling: String = "bpfMapSizeConntrackScaling", Str;
    bpf_map_size_conntrack_cleanup_queue: i64 = "bpfMapSizeConntrackCleanupQueue", Int;
    bpf_map_size_ip_sets: i64 = "bpfMapSizeIPSets", Int;
    bpf_map_size_if_state: i64 = "bpfMapSizeIfState", Int;
    bpf_host_conntrack_bypass: bool = "bpfHostConntrackBypass", Bool;
    bpf_enforce_rpf: String = "bpfEnforceRPF", Str;
    bpf_policy_debug_enabled: bool = "bpfPolicyDebugEnabled", Bool;
    bpf_force_track_packets_from_ifaces: Vec<String> = "bpfForceTrackPacketsFromIfaces", List;
    bpf_disable_gro_for_ifaces: String = "bpfDisableGROForIfaces", Str;
    bpf_exclude_cidrs_from_nat: Vec<String> = "bpfExcludeCIDRsFromNAT", List;
    bpf_export_buffer_size_mb: i64 = "bpfExportBufferSizeMB", Int;
    bpf_redirect_to_peer: String = "bpfRedirectToPeer", Str;
    bpf_profiling: String = "bpfProfiling", Str;
    bpf_attach_type: String = "bpfAttachType", Str;
    bpf_jit_hardening: String = "bpfJITHardening", Str;
    bpf_maglev_max_endpoints_per_service: i64 = "bpfMaglevMaxEndpointsPerService", Int;
    bpf_maglev_max_services: i64 = "bpfMaglevMaxServices", Int;
    cgroup_v2_path: String = "cgroupV2Path", Str;

    // --- Flow logs ---
    flow_logs_flush_interval: String = "flowLogsFlushInterval", Secs;
    flow_logs_collector_debug_trace: bool = "flowLogsCollectorDebugTrace", Bool;
    flow_logs_goldmane_server: String = "flowLogsGoldmaneServer", Str;
    flow_logs_local_reporter: String = "flowLogsLocalReporter", Str;
    flow_logs_policy_evaluation_mode: String = "flowLogsPolicyEvaluationMode", Str;

    // --- WireGuard ---
    wireguard_enabled: bool = "wireguardEnabled", Bool;
    wireguard_enabled_v6: bool = "wireguardEnabledV6", Bool;
    wireguard_threading_enabled: bool = "wireguardThreadingEnabled", Bool;
    wireguard_listening_port: i64 = "wireguardListeningPort", Int;
    wireguard_listening_port_v6: i64 = "wireguardListeningPortV6", Int;
    wireguard_routing_rule_priority: i64 = "wireguardRoutingRulePriority", Int;
    wireguard_interface_name: String = "wireguardInterfaceName", Str;
    wireguard_interface_name_v6: String = "wireguardInterfaceNameV6", Str;
    wireguard_mtu: i64 = "wireguardMTU", Int;
    wireguard_mtu_v6: i64 = "wireguardMTUV6", Int;
    wireguard_host_encryption_enabled: bool = "wireguardHostEncryptionEnabled", Bool;
    wireguard_keep_alive: String = "wireguardKeepAlive", Secs,
        env = ["WireguardPersistentKeepAlive"];

    // --- Cloud and Windows ---
    aws_src_dst_check: String = "awsSrcDstCheck", Str;
    windows_manage_firewall_rules: String = "windowsManageFirewallRules", Str;
}

// ---------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------

impl FelixConfigurationSpec {
    /// Number of fields in the spec.
    pub fn field_count() -> usize {
        FIELDS.len()
    }

    /// Sets the field named by a Felix environment variable (`FELIX_` prefix
    /// optional, any case; e.g. `FELIX_LOGSEVERITYSCREEN`, the historical
    /// `FELIX_IPINIPENABLED`, `FELIX_REPORTINGINTERVALSECS`) from its string
    /// value. Returns `Ok(false)` when no spec field has that name (e.g.
    /// `FELIX_DATASTORETYPE`, which only exists as an environment setting).
    pub fn set_from_env_name(&mut self, env_field: &str, value: &str) -> Result<bool, String> {
        let Some(info) = lookup_env(env_field) else {
            return Ok(false);
        };
        let parsed = info
            .kind
            .parse_env(value)
            .map_err(|e| format!("{env_field}={value:?}: {e}"))?;
        self.set_json(info.json, parsed)
            .map_err(|e| format!("{env_field}={value:?}: {e}"))?;
        Ok(true)
    }

    /// The JSON field name an environment variable sets, if any.
    pub fn json_name_for_env(env_field: &str) -> Option<&'static str> {
        lookup_env(env_field).map(|f| f.json)
    }

    fn to_json_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    /// Replaces one field with a JSON value, checking it fits the field's type.
    fn set_json(&mut self, json: &str, value: Value) -> Result<(), String> {
        let mut obj = self.to_json_map();
        obj.insert(json.to_string(), value);
        *self = serde_json::from_value(Value::Object(obj)).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn lookup_env(env_field: &str) -> Option<&'static FieldInfo> {
    let name = strip_prefix_ci(env_field.trim(), "FELIX_");
    FIELDS.iter().find(|f| {
        f.json.eq_ignore_ascii_case(name) || f.env.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> &'a str {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &s[prefix.len()..],
        _ => s,
    }
}

/// Comma-separated items, trimmed, empty ones dropped.
fn env_items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl Kind {
    fn parse_env(self, raw: &str) -> Result<Value, String> {
        let raw = raw.trim();
        match self {
            Kind::Bool => env_bool(raw).map(Value::Bool),
            Kind::Int => env_int(raw).map(Value::from),
            Kind::Mask => env_int(raw)
                .and_then(|v| u32::try_from(v).map_err(|_| format!("{v} does not fit in 32 bits")))
                .map(Value::from),
            Kind::Str => Ok(Value::String(raw.to_string())),
            Kind::Secs => env_duration(raw, 1e9).map(Value::String),
            Kind::Millis => env_duration(raw, 1e6).map(Value::String),
            Kind::List => Ok(Value::from(env_items(raw).collect::<Vec<_>>())),
            Kind::ProtoPorts => env_proto_ports(raw),
            Kind::Port => env_port(raw),
            Kind::Ports => env_items(raw)
                .map(env_port)
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Kind::TableRange => env_table_range(raw),
            Kind::TableRanges => env_items(raw)
                .map(env_table_range)
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Kind::KeyValues => env_key_values(raw).map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
            }),
            Kind::HealthOverrides => env_health_overrides(raw),
            Kind::ConntrackTimeouts => env_conntrack_timeouts(raw),
        }
    }
}

fn env_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "f" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

fn env_int(raw: &str) -> Result<i64, String> {
    let (neg, digits) = match raw.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, raw),
    };
    let parsed = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => digits.parse::<i64>(),
    };
    parsed
        .map(|v| if neg { -v } else { v })
        .map_err(|_| "expected an integer".to_string())
}

/// A bare number is a count of `unit_nanos`; anything else must be a Go
/// duration. Returns the Go duration string to store.
fn env_duration(raw: &str, unit_nanos: f64) -> Result<String, String> {
    if let Ok(n) = raw.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return Err("durations must not be negative".to_string());
        }
        return Ok(format_nanos((n * unit_nanos).round() as u128));
    }
    parse_go_duration(raw)?;
    Ok(raw.to_string())
}

/// Formats nanoseconds in the largest unit that represents them exactly.
fn format_nanos(ns: u128) -> String {
    const UNITS: [(u128, &str); 4] = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    for (size, unit) in UNITS {
        if ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

/// `proto:port`, `proto:net:port`, `port`; `none` or empty for no ports.
fn env_proto_ports(raw: &str) -> Result<Value, String> {
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Value::Array(Vec::new()));
    }
    let mut out = Vec::new();
    for item in env_items(raw) {
        let (protocol, rest) = match item.split_once(':') {
            Some((p, rest)) if p.chars().all(|c| c.is_ascii_alphabetic()) => (p, rest),
            _ => ("tcp", item),
        };
        let (net, port) = match rest.rsplit_once(':') {
            Some((net, port)) => (
                Some(net.trim_start_matches('[').trim_end_matches(']')),
                port,
            ),
            None => (None, rest),
        };
        let port: u16 = port.parse().map_err(|_| {
            format!("invalid port in {item:?}: expected proto:port or proto:net:port")
        })?;
        let pp = ProtoPort {
            protocol: protocol.to_string(),
            port,
            net: net.map(str::to_string),
        };
        out.push(serde_json::to_value(pp).map_err(|e| e.to_string())?);
    }
    Ok(Value::Array(out))
}

fn env_port(raw: &str) -> Result<Value, String> {
    let port = Port::parse_str(raw)?;
    serde_json::to_value(port).map_err(|e| e.to_string())
}

/// `min-max`.
fn env_table_range(raw: &str) -> Result<Value, String> {
    let (min, max) = raw
        .split_once('-')
        .ok_or_else(|| format!("invalid range {raw:?}: expected min-max"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid range {raw:?}: expected min-max"))
    };
    Ok(serde_json::json!({ "min": num(min)?, "max": num(max)? }))
}

fn env_key_values(raw: &str) -> Result<Vec<(String, String)>, String> {
    env_items(raw)
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("invalid item {item:?}: expected key=value"))
        })
        .collect()
}

fn env_health_overrides(raw: &str) -> Result<Value, String> {
    let mut out = Vec::new();
    for (name, timeout) in env_key_values(raw)? {
        let timeout = env_duration(&timeout, 1e9)?;
        out.push(serde_json::json!({ "name": name, "timeout": timeout }));
    }
    Ok(Value::Array(out))
}

fn env_conntrack_timeouts(raw: &str) -> Result<Value, String> {
    let mut out = Map::new();
    for (key, value) in env_key_values(raw)? {
        let json = CONNTRACK_TIMERS
            .iter()
            .find(|t| t.eq_ignore_ascii_case(&key))
            .ok_or_else(|| {
                format!(
                    "unknown conntrack timer {key:?}: expected one of {}",
                    CONNTRACK_TIMERS.join(", ")
                )
            })?;
        out.insert((*json).to_string(), Value::String(value));
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// String fields with a fixed set of values: (JSON name, allowed values,
/// whether upstream compares them case-insensitively).
const ENUMS: &[(&str, &[&str], bool)] = &[
    ("chainInsertMode", &["Insert", "Append"], true),
    (
        "defaultEndpointToHostAction",
        &["Drop", "Accept", "Return"],
        true,
    ),
    ("iptablesFilterAllowAction", &["Accept", "Return"], true),
    ("iptablesMangleAllowAction", &["Accept", "Return"], true),
    ("iptablesFilterDenyAction", &["Drop", "Reject"], true),
    ("nftablesFilterAllowAction", &["Accept", "Return"], true),
    ("nftablesMangleAllowAction", &["Accept", "Return"], true),
    ("nftablesFilterDenyAction", &["Drop", "Reject"], true),
    ("iptablesBackend", &["Legacy", "NFT", "Auto"], true),
    (
        "logSeverityFile",
        &["Trace", "Debug", "Info", "Warning", "Error", "Fatal"],
        true,
    ),
    (
        "logSeverityScreen",
        &["Trace", "Debug", "Info", "Warning", "Error", "Fatal"],
        true,
    ),
    (
        "logSeveritySys",
        &[
            "Trace", "Debug", "Info", "Warning", "Error", "Fatal", "None",
        ],
        true,
    ),
    ("bpfLogLevel", &["Off", "Info", "Debug"], true),
    ("bpfExternalServiceMode", &["Tunnel", "DSR"], true),
    ("bpfEnforceRPF", &["Disabled", "Strict", "Loose"], true),
    (
        "bpfMapSizeConntrackScaling",
        &["Disabled", "DoubleIfFull"],
        true,
    ),
    ("routeSource", &["WorkloadIPs", "CalicoIPAM"], true),
    (
        "serviceLoopPrevention",
        &["Drop", "Reject", "Disabled"],
        true,
    ),
    ("workloadSourceSpoofing", &["Disabled", "Any"], true),
    ("nftablesMode", &["Disabled", "Enabled", "Auto"], false),
    ("awsSrcDstCheck", &["DoNothing", "Enable", "Disable"], false),
    ("bpfAttachType", &["TC", "TCX"], false),
    (
        "bpfConnectTimeLoadBalancing",
        &["TCP", "Enabled", "Disabled"],
        false,
    ),
    ("bpfConntrackLogLevel", &["Off", "Debug"], false),
    (
        "bpfConntrackMode",
        &["Auto", "Userspace", "BPFProgram"],
        false,
    ),
    (
        "bpfHostNetworkedNATWithoutCTLB",
        &["Enabled", "Disabled"],
        false,
    ),
    ("bpfJITHardening", &["Auto", "Strict"], false),
    ("bpfProfiling", &["Enabled", "Disabled"], false),
    (
        "bpfRedirectToPeer",
        &["Enabled", "Disabled", "L2Only"],
        false,
    ),
    ("floatingIPs", &["Enabled", "Disabled"], false),
    ("flowLogsLocalReporter", &["Disabled", "Enabled"], false),
    (
        "flowLogsPolicyEvaluationMode",
        &["None", "Continuous"],
        false,
    ),
    ("ipForwarding", &["Enabled", "Disabled"], false),
    (
        "natOutgoingExclusions",
        &["IPPoolsOnly", "IPPoolsAndHostIPs"],
        false,
    ),
    ("programClusterRoutes", &["Enabled", "Disabled"], false),
    (
        "windowsManageFirewallRules",
        &["Enabled", "Disabled"],
        false,
    ),
];

/// Integer fields with an allowed range: (JSON name, min, max, what it is).
const INT_RANGES: &[(&str, i64, i64, &str)] = &[
    ("metadataPort", 0, 65535, "a port number"),
    ("healthPort", 0, 65535, "a port number"),
    ("prometheusMetricsPort", 0, 65535, "a port number"),
    ("debugPort", 0, 65535, "a port number"),
    ("bpfKubeProxyHealthzPort", 0, 65535, "a port number"),
    ("vxlanPort", 0, 65535, "a port number"),
    ("wireguardListeningPort", 1, 65535, "a port number"),
    ("wireguardListeningPortV6", 1, 65535, "a port number"),
    (
        "vxlanVNI",
        0,
        16_777_215,
        "a 24-bit VXLAN network identifier",
    ),
    (
        "deviceRouteProtocol",
        0,
        255,
        "an 8-bit route protocol number",
    ),
    ("maxIpsetSize", 1, i64::MAX, "a positive size"),
    ("bpfExtToServiceConnmark", 0, 4_294_967_295, "a 32-bit mark"),
    ("bpfMapSizeNATFrontend", 0, i64::MAX, "a map size"),
    ("bpfMapSizeNATBackend", 0, i64::MAX, "a map size"),
    ("bpfMapSizeNATAffinity", 0, i64::MAX, "a map size"),
    ("bpfMapSizeRoute", 0, i64::MAX, "a map size"),
    ("bpfMapSizeConntrack", 0, i64::MAX, "a map size"),
    (
        "bpfMapSizePerCpuConntrack",
        0,
        i64::MAX,
        "a map size (0 disables)",
    ),
    ("bpfMapSizeConntrackCleanupQueue", 1, i64::MAX, "a map size"),
    ("bpfMapSizeIPSets", 0, i64::MAX, "a map size"),
    ("bpfMapSizeIfState", 0, i64::MAX, "a map size"),
    ("bpfExportBufferSizeMB", 0, i64::MAX, "a size in MB"),
    ("bpfMaglevMaxEndpointsPerService", 1, 3000, "a count"),
    ("bpfMaglevMaxServices", 1, 3000, "a count"),
    (
        "goGCThreshold",
        -1,
        i64::MAX,
        "a percentage, or -1 to disable GC",
    ),
    (
        "goMemoryLimitMB",
        -1,
        i64::MAX,
        "a size in MB, or -1 for no limit",
    ),
    (
        "goMaxProcs",
        -1,
        i64::MAX,
        "a CPU count, or -1 for the default",
    ),
    (
        "wireguardRoutingRulePriority",
        1,
        32765,
        "a routing rule priority",
    ),
    (
        "ipv4NormalRoutePriority",
        1,
        2_147_483_646,
        "a route metric",
    ),
    (
        "ipv4ElevatedRoutePriority",
        1,
        2_147_483_646,
        "a route metric",
    ),
    (
        "ipv6NormalRoutePriority",
        1,
        2_147_483_646,
        "a route metric",
    ),
    (
        "ipv6ElevatedRoutePriority",
        1,
        2_147_483_646,
        "a route metric",
    ),
    ("logActionRateLimitBurst", 0, 9999, "a burst size"),
];

/// MTU fields: (JSON name, smallest non-zero MTU). 0 means auto-detect.
const MTUS: &[(&str, i64)] = &[
    ("ipipMTU", 68),
    ("vxlanMTU", 68),
    ("wireguardMTU", 68),
    ("vxlanMTUV6", 1280),
    ("wireguardMTUV6", 1280),
];

/// Fields holding a regular expression.
const REGEXES: &[&str] = &[
    "mtuIfacePattern",
    "bpfDataIfacePattern",
    "bpfL3IfacePattern",
    "bpfDisableGROForIfaces",
    "logDebugFilenameRegex",
];

/// Fields holding a list of CIDRs (or bare addresses).
const CIDR_LISTS: &[&str] = &[
    "externalNodesList",
    "bpfDSROptoutCIDRs",
    "bpfExcludeCIDRsFromNAT",
];

/// Fields holding a host name or IP address to bind to.
const HOSTS: &[&str] = &["healthHost", "prometheusMetricsHost", "debugHost"];

/// Fields holding a port or `min:max` port range.
const PORT_RANGES: &[&str] = &["natPortRange", "bpfPSNATPorts"];

const PORT_MAX: i64 = 65535;
/// Longest OpenStack region: "openstack-region-" plus it must fit a DNS label.
const OPENSTACK_REGION_MAX: usize = 63 - "openstack-region-".len();
/// Node port ranges one iptables multiport match can hold.
const KUBE_NODE_PORT_RANGES_MAX: usize = 7;
/// Most route tables `routeTableRanges` may designate in total.
const ROUTE_TABLES_MAX: i64 = 0xffff;
/// Highest index `routeTableRange` may use (upstream's deprecated-field limit).
const ROUTE_TABLE_RANGE_MAX: i64 = 250;

impl Spec for FelixConfigurationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        let obj = self.to_json_map();
        check_enums(&obj, errs);
        check_durations(&obj, errs);
        check_int_ranges(&obj, errs);
        check_mtus(&obj, errs);
        check_masks(self, errs);
        check_regexes(&obj, errs);
        check_addresses(self, &obj, errs);
        check_interfaces(self, errs);
        check_formats(self, errs);
        check_ports(self, &obj, errs);
        check_route_tables(self, errs);
        check_health_overrides(self, errs);
        check_conntrack_timeouts(self, errs);
    }
}

fn path(json: &str) -> String {
    format!("spec.{json}")
}

fn str_of<'a>(obj: &'a Map<String, Value>, json: &str) -> Option<&'a str> {
    obj.get(json).and_then(Value::as_str)
}

fn check_enums(obj: &Map<String, Value>, errs: &mut FieldErrors) {
    for (json, allowed, case_insensitive) in ENUMS {
        let Some(v) = str_of(obj, json).filter(|v| !v.is_empty()) else {
            continue;
        };
        let ok = allowed
            .iter()
            .any(|a| *a == v || (*case_insensitive && a.eq_ignore_ascii_case(v)));
        if !ok {
            let case = if *case_insensitive { " (any case)" } else { "" };
            errs.add(
                path(json),
                format!(
                    "invalid value {v:?}: must be one of {}{case}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

/// Checks a Go duration; negative ones are rejected like upstream's schema does.
fn duration_error(v: &str) -> Option<String> {
    if v.trim_start().starts_with('-') {
        return Some(format!("invalid duration {v:?}: must not be negative"));
    }
    parse_go_duration(v).err()
}

fn check_durations(obj: &Map<String, Value>, errs: &mut FieldErrors) {
    for f in FIELDS
        .iter()
        .filter(|f| matches!(f.kind, Kind::Secs | Kind::Millis))
    {
        if let Some(msg) = str_of(obj, f.json).and_then(duration_error) {
            errs.add(path(f.json), msg);
        }
    }
}

fn check_int_ranges(obj: &Map<String, Value>, errs: &mut FieldErrors) {
    for (json, lo, hi, what) in INT_RANGES {
        let Some(v) = obj.get(*json).and_then(Value::as_i64) else {
            continue;
        };
        if v < *lo || v > *hi {
            let range = if *hi == i64::MAX {
                format!("at least {lo}")
            } else {
                format!("{lo}-{hi}")
            };
            errs.add(
                path(json),
                format!("invalid value {v}: must be {what}, {range}"),
            );
        }
    }
}

fn check_mtus(obj: &Map<String, Value>, errs: &mut FieldErrors) {
    for (json, min) in MTUS {
        let Some(v) = obj.get(*json).and_then(Value::as_i64) else {
            continue;
        };
        if v != 0 && !(*min..=PORT_MAX).contains(&v) {
            errs.add(
                path(json),
                format!("invalid MTU {v}: must be 0 (auto-detect) or {min}-{PORT_MAX}"),
            );
        }
    }
}

fn check_masks(s: &FelixConfigurationSpec, errs: &mut FieldErrors) {
    for (json, v) in [
        ("iptablesMarkMask", s.iptables_mark_mask),
        ("nftablesMarkMask", s.nftables_mark_mask),
    ] {
        if v == Some(0) {
            errs.add(
                path(json),
                "the mark mask must have bits set (e.g. 0xffff0000)",
            );
        }
    }
}

fn check_regexes(obj: &Map<String, Value>, errs: &mut FieldErrors) {
    for json in REGEXES {
        if let Some(Err(e)) = str_of(obj, json).map(check_regex) {
            errs.add(path(json), e);
        }
    }
}

fn check_addresses(s: &FelixConfigurationSpec, obj: &Map<String, Value>, errs: &mut FieldErrors) {
    let v4 = [
        ("natOutgoingAddress", &s.nat_outgoing_address),
        ("deviceRouteSourceAddress", &s.device_route_source_address),
    ];
    for (json, v) in v4 {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            if !matches!(v.parse::<IpAddr>(), Ok(IpAddr::V4(_))) {
                errs.add(
                    path(json),
                    format!("invalid address {v:?}: must be an IPv4 address"),
                );
            }
        }
    }
    if let Some(v) = s
        .device_route_source_address_ipv6
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        if !matches!(v.parse::<IpAddr>(), Ok(IpAddr::V6(_))) {
            errs.add(
                path("deviceRouteSourceAddressIPv6"),
                format!("invalid address {v:?}: must be an IPv6 address"),
            );
        }
    }
    for json in HOSTS {
        if let Some(v) = str_of(obj, json).filter(|v| !v.is_empty() && !is_host(v)) {
            errs.add(
                path(json),
                format!("invalid host {v:?}: must be an IP address or host name"),
            );
        }
    }
    if let Some(v) = s.metadata_addr.as_deref().filter(|v| !v.is_empty()) {
        if !v.eq_ignore_ascii_case("none") && !is_host(v) {
            errs.add(
                path("metadataAddr"),
                format!("invalid address {v:?}: must be an IP address, a host name or \"none\""),
            );
        }
    }
    for json in CIDR_LISTS {
        let Some(Value::Array(items)) = obj.get(*json) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let text = item.as_str().unwrap_or_default();
            match parse_net(text) {
                Err(e) => errs.add(format!("spec.{json}[{i}]"), e),
                // External nodes are matched by IPv4 rules only.
                Ok(n) if *json == "externalNodesList" && !n.addr().is_ipv4() => errs.add(
                    format!("spec.{json}[{i}]"),
                    format!(
                        "{text:?} is not IPv4: externalNodesList takes IPv4 addresses and CIDRs"
                    ),
                ),
                Ok(_) => {}
            }
        }
    }
}

/// An IP address or a DNS host name (any case).
fn is_host(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
        || (s.len() <= 253
            && s.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
            }))
}

/// iptables interface match: interface characters plus the `+` wildcard.
fn is_iface_filter(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'_' | b'+' | b'-'))
}

fn check_interfaces(s: &FelixConfigurationSpec, errs: &mut FieldErrors) {
    if let Some(v) = s.interface_prefix.as_deref().filter(|v| !v.is_empty()) {
        for p in v.split(',').map(str::trim) {
            if !is_interface_name(p) {
                errs.add(
                    path("interfacePrefix"),
                    format!("invalid interface prefix {p:?}: expected comma-separated prefixes of letters, digits, '.', '_' or '-' (at most 15)"),
                );
            }
        }
    }
    if let Some(v) = s.interface_exclude.as_deref().filter(|v| !v.is_empty()) {
        for item in v.split(',').map(str::trim) {
            let res = match item.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
                Some(re) => check_regex(re),
                None if is_interface_name(item) => Ok(()),
                None => Err(format!(
                    "invalid entry {item:?}: expected an interface name or a /regex/"
                )),
            };
            if let Err(e) = res {
                errs.add(path("interfaceExclude"), e);
            }
        }
    }
    if let Some(v) = s
        .iptables_nat_outgoing_interface_filter
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        if !is_iface_filter(v) {
            errs.add(
                path("iptablesNATOutgoingInterfaceFilter"),
                format!("invalid interface filter {v:?}: at most 15 letters, digits or '.:_-', with '+' as a wildcard"),
            );
        }
    }
    for (i, v) in s
        .bpf_force_track_packets_from_ifaces
        .iter()
        .flatten()
        .enumerate()
    {
        if !is_iface_filter(v) {
            errs.add(
                format!("spec.bpfForceTrackPacketsFromIfaces[{i}]"),
                format!("invalid interface filter {v:?}: at most 15 letters, digits or '.:_-', with '+' as a wildcard"),
            );
        }
    }
    for (json, v) in [
        ("wireguardInterfaceName", &s.wireguard_interface_name),
        ("wireguardInterfaceNameV6", &s.wireguard_interface_name_v6),
    ] {
        if let Some(v) = v
            .as_deref()
            .filter(|v| !v.is_empty() && !is_interface_name(v))
        {
            errs.add(
                path(json),
                format!(
                    "invalid interface name {v:?}: at most 15 letters, digits, '.', '_' or '-'"
                ),
            );
        }
    }
}

/// Free-form strings with a fixed syntax.
fn check_formats(s: &FelixConfigurationSpec, errs: &mut FieldErrors) {
    if let Some(v) = s.feature_detect_override.as_deref() {
        if let Err(e) = check_key_value_list(v, |val| matches!(val, "true" | "false" | "")) {
            errs.add(
                path("featureDetectOverride"),
                format!("{e} (values are true, false or empty)"),
            );
        }
    }
    if let Some(v) = s.feature_gates.as_deref() {
        if let Err(e) = check_key_value_list(v, |val| !val.is_empty()) {
            errs.add(path("featureGates"), e);
        }
    }
    if let Some(v) = s.log_prefix.as_deref() {
        let ok = v.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'%' | b':' | b' ' | b'/' | b'_' | b'-')
        });
        if !ok {
            errs.add(
                path("logPrefix"),
                format!("invalid log prefix {v:?}: only letters, digits, spaces and '%:/_-' are allowed"),
            );
        }
    }
    if let Some(v) = s.log_action_rate_limit.as_deref() {
        if !is_rate_limit(v) {
            errs.add(
                path("logActionRateLimit"),
                format!("invalid rate {v:?}: expected N/second, N/minute, N/hour or N/day with N 1-9999"),
            );
        }
    }
    if let Some(v) = s.openstack_region.as_deref().filter(|v| !v.is_empty()) {
        // The region names a namespace, "openstack-region-<region>", which
        // must itself be a DNS label.
        if v.len() > OPENSTACK_REGION_MAX || !is_dns1123_label(v) {
            errs.add(
                path("openstackRegion"),
                format!("invalid region {v:?}: must be a DNS label of at most {OPENSTACK_REGION_MAX} characters (it becomes part of a namespace name)"),
            );
        }
    }
    for (k, _) in s.bpf_log_filters.iter().flatten() {
        // "all", "weps" and "heps" have the form of interface names too.
        if !is_interface_name(k) {
            errs.add(
                path("bpfLogFilters"),
                format!("invalid filter key {k:?}: must be an interface name, all, weps or heps"),
            );
        }
    }
}

/// `key=value,key=value` with keys of letters, digits, '-' and '_'.
fn check_key_value_list(v: &str, value_ok: impl Fn(&str) -> bool) -> Result<(), String> {
    let items: Vec<&str> = v.split(',').collect();
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() && i + 1 == items.len() {
            continue;
        }
        let ok = item.split_once('=').is_some_and(|(k, val)| {
            !k.is_empty()
                && k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
                && !val.contains('=')
                && value_ok(val)
        });
        if !ok {
            return Err(format!(
                "invalid entry {item:?}: expected comma-separated key=value pairs"
            ));
        }
    }
    Ok(())
}

fn is_rate_limit(v: &str) -> bool {
    let Some((n, per)) = v.split_once('/') else {
        return false;
    };
    let digits_ok =
        (1..=4).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_digit()) && !n.starts_with('0');
    digits_ok && matches!(per, "second" | "minute" | "hour" | "day")
}

fn check_ports(s: &FelixConfigurationSpec, obj: &Map<String, Value>, errs: &mut FieldErrors) {
    for (json, list) in [
        ("failsafeInboundHostPorts", &s.failsafe_inbound_host_ports),
        ("failsafeOutboundHostPorts", &s.failsafe_outbound_host_ports),
    ] {
        for (i, pp) in list.iter().flatten().enumerate() {
            let proto_ok = pp.protocol.is_empty()
                || ["tcp", "udp", "sctp"]
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(&pp.protocol));
            if !proto_ok {
                errs.add(
                    format!("spec.{json}[{i}].protocol"),
                    format!(
                        "invalid protocol {:?}: must be TCP, UDP or SCTP",
                        pp.protocol
                    ),
                );
            }
            if let Some(net) = pp.net.as_deref().filter(|n| !n.is_empty()) {
                if let Err(e) = parse_net(net) {
                    errs.add(format!("spec.{json}[{i}].net"), e);
                }
            }
        }
    }
    for json in PORT_RANGES {
        if let Some(name) = str_of(obj, json).filter(|v| !v.contains(':')) {
            errs.add(
                path(json),
                format!("invalid port {name:?}: expected a number or a min:max range"),
            );
        }
    }
    let ranges = s.kube_node_port_ranges.as_deref().unwrap_or_default();
    if ranges.len() > KUBE_NODE_PORT_RANGES_MAX {
        errs.add(
            path("kubeNodePortRanges"),
            format!("at most {KUBE_NODE_PORT_RANGES_MAX} ranges (one iptables multiport match holds 15 ports)"),
        );
    }
    for (i, p) in ranges.iter().enumerate() {
        if let Port::Named(name) = p {
            errs.add(
                format!("spec.kubeNodePortRanges[{i}]"),
                format!("invalid port {name:?}: expected a number or a min:max range"),
            );
        }
    }
}

fn check_route_tables(s: &FelixConfigurationSpec, errs: &mut FieldErrors) {
    if s.route_table_range.is_some() && s.route_table_ranges.is_some() {
        errs.add(
            path("routeTableRange"),
            "routeTableRange and routeTableRanges cannot both be set; use routeTableRanges",
        );
    }
    if let Some(r) = s.route_table_range {
        if r.min < 1 || r.max > ROUTE_TABLE_RANGE_MAX || r.min > r.max {
            errs.add(
                path("routeTableRange"),
                format!(
                    "invalid range {}-{}: must be a range of route table indices within 1..{ROUTE_TABLE_RANGE_MAX}",
                    r.min, r.max
                ),
            );
        }
    }
    let tables: i64 = s
        .route_table_ranges
        .iter()
        .flatten()
        .map(|r| (r.max - r.min + 1).max(0))
        .sum();
    if tables > ROUTE_TABLES_MAX {
        errs.add(
            path("routeTableRanges"),
            format!("the ranges target {tables} tables; at most {ROUTE_TABLES_MAX} may be used"),
        );
    }
    for (i, r) in s.route_table_ranges.iter().flatten().enumerate() {
        let field = format!("spec.routeTableRanges[{i}]");
        if r.min < 1 {
            errs.add(
                &field,
                format!("invalid range {}-{}: min must be >= 1", r.min, r.max),
            );
        } else if r.min > r.max {
            errs.add(
                &field,
                format!(
                    "invalid range {}-{}: min must not be greater than max",
                    r.min, r.max
                ),
            );
        } else if r.max > i64::from(u32::MAX) {
            errs.add(
                &field,
                format!(
                    "invalid range {}-{}: table indices are 32-bit",
                    r.min, r.max
                ),
            );
        }
    }
}

fn check_health_overrides(s: &FelixConfigurationSpec, errs: &mut FieldErrors) {
    for (i, o) in s.health_timeout_overrides.iter().flatten().enumerate() {
        let name_ok = !o.name.is_empty()
            && o.name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b' ' | b'-'));
        if !name_ok {
            errs.add(
                format!("spec.healthTimeoutOverrides[{i}].name"),
                "name is required: a Felix health reporter name (letters, digits, '_', '-', spaces)",
            );
        }
        if let Some(msg) = duration_error(&o.timeout) {
            errs.add(format!("spec.healthTimeoutOverrides[{i}].timeout"), msg);
        }
    }
}

fn check_conntrack_timeouts(s: &FelixConfigurationSpec, errs: &mut FieldErrors) {
    let Some(t) = &s.bpf_conntrack_timeouts else {
        return;
    };
    let timers = [
        &t.creation_grace_period,
        &t.tcp_syn_sent,
        &t.tcp_established,
        &t.tcp_fins_seen,
        &t.tcp_reset_seen,
        &t.udp_timeout,
        &t.generic_timeout,
        &t.icmp_timeout,
    ];
    for (name, value) in CONNTRACK_TIMERS.iter().zip(timers) {
        let Some(v) = value.as_deref().filter(|v| *v != "Auto") else {
            continue;
        };
        if let Some(msg) = duration_error(v) {
            errs.add(
                format!("spec.bpfConntrackTimeouts.{name}"),
                format!("{msg}; use a duration or Auto"),
            );
        }
    }
}

/// A syntax check of a Go (RE2) regular expression: balanced groups and
/// classes, no dangling escapes, no repetition without an operand.
fn check_regex(re: &str) -> Result<(), String> {
    let err = |what: &str| Err(format!("invalid regular expression {re:?}: {what}"));
    let c: Vec<char> = re.chars().collect();
    let mut depth = 0usize;
    let mut operand = false;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' if i + 1 >= c.len() => return err("trailing backslash"),
            '\\' => {
                i += 1;
                operand = true;
            }
            '[' => match class_end(&c, i) {
                Some(end) => {
                    i = end;
                    operand = true;
                }
                None => return err("missing closing ]"),
            },
            '(' if c.get(i + 1) == Some(&'?') => match group_flags(&c, i + 2) {
                Some((end, opens)) => {
                    depth += usize::from(opens);
                    i = end;
                    operand = false;
                }
                None => return err("invalid or unsupported group syntax"),
            },
            '(' => {
                depth += 1;
                operand = false;
            }
            ')' if depth == 0 => return err("unexpected )"),
            ')' => {
                depth -= 1;
                operand = true;
            }
            '|' => operand = false,
            '*' | '+' | '?' => {
                if !operand {
                    return err("missing argument to repetition operator");
                }
                if c.get(i + 1) == Some(&'?') {
                    i += 1;
                }
                operand = false;
            }
            '{' => match repeat_end(&c, i) {
                Some(_) if !operand => return err("missing argument to repetition operator"),
                Some(end) => {
                    i = end;
                    operand = false;
                }
                None => operand = true,
            },
            _ => operand = true,
        }
        i += 1;
    }
    if depth > 0 {
        return err("missing closing )");
    }
    Ok(())
}

/// Index of the `]` closing the class opened at `start`.
fn class_end(c: &[char], start: usize) -> Option<usize> {
    let mut j = start + 1;
    if c.get(j) == Some(&'^') {
        j += 1;
    }
    if c.get(j) == Some(&']') {
        j += 1;
    }
    while j < c.len() {
        match c[j] {
            '\\' => j += 2,
            '[' if c.get(j + 1) == Some(&':') => {
                let close =
                    (j + 2..c.len().saturating_sub(1)).find(|&k| c[k] == ':' && c[k + 1] == ']')?;
                j = close + 2;
            }
            ']' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

/// After `(?` at `start`: a named group `P<name>`/`<name>`, a non-capturing
/// group `flags:`, or a flag setting `flags)`. Returns the index of the last
/// character consumed and whether a group was opened.
fn group_flags(c: &[char], start: usize) -> Option<(usize, bool)> {
    let mut j = start;
    if c.get(j) == Some(&'P') {
        j += 1;
    }
    if c.get(j) == Some(&'<') {
        let close = (j + 1..c.len()).find(|&k| c[k] == '>')?;
        return (close > j + 1).then_some((close, true));
    }
    while j < c.len() && (c[j].is_ascii_alphabetic() || c[j] == '-') {
        j += 1;
    }
    match c.get(j) {
        Some(':') => Some((j, true)),
        Some(')') if j > start => Some((j, false)),
        _ => None,
    }
}

/// Index of the `}` ending a `{n}`, `{n,}` or `{n,m}` repetition at `start`.
fn repeat_end(c: &[char], start: usize) -> Option<usize> {
    let close = (start + 1..c.len()).find(|&k| c[k] == '}')?;
    let body: String = c[start + 1..close].iter().collect();
    let (lo, hi) = body.split_once(',').unwrap_or((body.as_str(), "0"));
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    (!lo.is_empty() && numeric(lo) && numeric(hi)).then_some(close)
}

resource!(
    /// Felix settings: cluster-wide (`default`) or for one node (`node.<name>`).
    FelixConfiguration, FelixConfigurationSpec, kind = "FelixConfiguration",
    plural = "felixconfigurations", namespaced = false,
    name_rule = crate::network::check_config_name
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    const SAMPLE: &str = r#"
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  logSeverityFile: none-of-your-business
  reportingInterval: 0s
  bpfEnabled: false
  bpfLogLevel: ""
  bpfExternalServiceMode: Tunnel
  bpfConnectTimeLoadBalancing: TCP
  bpfHostNetworkedNATWithoutCTLB: Enabled
  bpfKubeProxyMinSyncPeriod: 1s
  bpfMapSizeConntrack: 512000
  bpfPSNATPorts: "20000:29999"
  bpfConntrackTimeouts:
    tcpEstablished: 1h
    tcpFinsSeen: Auto
  bpfLogFilters:
    all: "host 10.0.0.1"
  chainInsertMode: Insert
  defaultEndpointToHostAction: Return
  iptablesBackend: Auto
  nftablesMode: Auto
  iptablesRefreshInterval: 1m30s
  iptablesLockProbeInterval: 50ms
  iptablesMarkMask: 0xffff0000
  ipipEnabled: true
  ipipMTU: 1440
  vxlanEnabled: true
  vxlanVNI: 4096
  vxlanPort: 4789
  vxlanMTU: 1410
  vxlanMTUV6: 1390
  wireguardEnabled: false
  wireguardMTU: 1440
  wireguardKeepAlive: 25s
  wireguardInterfaceName: wireguard.cali
  interfacePrefix: tap
  interfaceExclude: kube-ipvs0,/^veth.*/
  metadataAddr: 127.0.0.1
  metadataPort: 8775
  openstackRegion: region-one
  endpointReportingEnabled: true
  endpointReportingDelay: 1s
  healthEnabled: true
  healthHost: localhost
  healthPort: 9099
  healthTimeoutOverrides:
  - name: InternalDataplaneMainLoop
    timeout: 90s
  prometheusMetricsEnabled: true
  prometheusMetricsPort: 9091
  failsafeInboundHostPorts:
  - protocol: tcp
    port: 22
  - protocol: udp
    port: 68
  - protocol: tcp
    port: 179
    net: 10.0.0.0/8
  failsafeOutboundHostPorts:
  - protocol: udp
    port: 53
  kubeNodePortRanges: ["30000:32767", 8080]
  natPortRange: "32768:65535"
  natOutgoingAddress: 192.0.2.10
  routeTableRanges:
  - min: 1
    max: 250
  routeSource: CalicoIPAM
  mtuIfacePattern: ^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)
  featureDetectOverride: SNATFullyRandom=true,MASQFullyRandom=false,RestoreSupportsLock=
  usageReportingEnabled: false
  serviceLoopPrevention: Drop
  floatingIPs: Disabled
  externalNodesList: ["198.51.100.0/24"]
  deviceRouteSourceAddressIPv6: "fd00::1"
"#;

    fn parse(yaml: &str) -> Result<FelixConfiguration, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    fn error_fields(fc: &FelixConfiguration) -> Vec<String> {
        match fc.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn field_count_and_names_are_unique() {
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.json).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS.len());
        assert!(FelixConfigurationSpec::field_count() >= 180);
    }

    #[test]
    fn sample_manifest_decodes_and_validates() {
        let fc = parse(&SAMPLE.replace("none-of-your-business", "Warning")).unwrap();
        assert_eq!(fc.metadata.name, "default");
        assert_eq!(fc.spec.ipip_enabled, Some(true));
        assert_eq!(fc.spec.vxlan_vni, Some(4096));
        assert_eq!(fc.spec.iptables_mark_mask, Some(0xffff_0000));
        assert_eq!(
            fc.spec.failsafe_inbound_host_ports.as_ref().unwrap().len(),
            3
        );
        assert_eq!(
            fc.spec.route_table_ranges,
            Some(vec![RouteTableRange { min: 1, max: 250 }])
        );
        assert_eq!(error_fields(&fc), Vec::<String>::new());
        // Round trip keeps exactly what was set.
        let back: FelixConfiguration =
            serde_json::from_value(serde_json::to_value(&fc).unwrap()).unwrap();
        assert_eq!(back, fc);
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let yaml = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec:\n  ipipEnabled: true\n  ipInIpEnabled: true\n";
        let e = parse(yaml).unwrap_err().to_string();
        assert!(e.contains("ipInIpEnabled"), "{e}");
        let e = serde_json::from_str::<ProtoPort>(r#"{"port": 22, "proto": "tcp"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("proto"), "{e}");
    }

    #[test]
    fn bad_values_are_reported_at_their_field() {
        let fc = parse(SAMPLE).unwrap();
        assert_eq!(error_fields(&fc), vec!["spec.logSeverityFile"]);

        let mut fc = FelixConfiguration::new("node.host-1", FelixConfigurationSpec::default());
        let s = &mut fc.spec;
        s.default_endpoint_to_host_action = Some("Allow".into());
        s.iptables_backend = Some("nft".into()); // case-insensitive upstream: fine
        s.nftables_mode = Some("enabled".into()); // enum: case matters
        s.bpf_log_level = Some("Verbose".into());
        s.route_refresh_interval = Some("90".into());
        s.iptables_lock_probe_interval = Some("-5ms".into());
        s.vxlan_vni = Some(1 << 24);
        s.vxlan_mtu = Some(20);
        s.wireguard_mtu_v6 = Some(0);
        s.health_port = Some(70000);
        s.wireguard_listening_port = Some(0);
        s.mtu_iface_pattern = Some("^(eth.*".into());
        s.interface_prefix = Some("tap,bad name".into());
        s.nat_outgoing_address = Some("fd00::1".into());
        s.failsafe_inbound_host_ports = Some(vec![ProtoPort {
            protocol: "icmp".into(),
            port: 0,
            net: Some("10.0.0.0/33".into()),
        }]);
        s.route_table_range = Some(RouteTableRange { min: 0, max: 251 });
        s.route_table_ranges = Some(vec![RouteTableRange { min: 10, max: 5 }]);
        s.health_timeout_overrides = Some(vec![HealthTimeoutOverride {
            name: String::new(),
            timeout: "soon".into(),
        }]);
        s.bpf_conntrack_timeouts = Some(BpfConntrackTimeouts {
            tcp_syn_sent: Some("Never".into()),
            icmp_timeout: Some("Auto".into()),
            ..Default::default()
        });
        s.feature_detect_override = Some("SNATFullyRandom=maybe".into());
        s.nat_port_range = Some(Port::Named("http".into()));
        s.iptables_mark_mask = Some(0);
        let mut got = error_fields(&fc);
        got.sort();
        let mut want = vec![
            "spec.defaultEndpointToHostAction",
            "spec.nftablesMode",
            "spec.bpfLogLevel",
            "spec.routeRefreshInterval",
            "spec.iptablesLockProbeInterval",
            "spec.vxlanVNI",
            "spec.vxlanMTU",
            "spec.healthPort",
            "spec.wireguardListeningPort",
            "spec.mtuIfacePattern",
            "spec.interfacePrefix",
            "spec.natOutgoingAddress",
            "spec.failsafeInboundHostPorts[0].protocol",
            "spec.failsafeInboundHostPorts[0].net",
            "spec.routeTableRange",
            "spec.routeTableRange",
            "spec.routeTableRanges[0]",
            "spec.healthTimeoutOverrides[0].name",
            "spec.healthTimeoutOverrides[0].timeout",
            "spec.bpfConntrackTimeouts.tcpSynSent",
            "spec.featureDetectOverride",
            "spec.natPortRange",
            "spec.iptablesMarkMask",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn enum_messages_name_the_allowed_values() {
        let mut fc = FelixConfiguration::new("default", FelixConfigurationSpec::default());
        fc.spec.chain_insert_mode = Some("Prepend".into());
        let e = fc.validate().unwrap_err().to_string();
        assert!(
            e.contains("spec.chainInsertMode") && e.contains("Insert, Append"),
            "{e}"
        );
    }

    #[test]
    fn config_names() {
        let bad = FelixConfiguration::new("global", FelixConfigurationSpec::default());
        assert_eq!(error_fields(&bad), vec!["metadata.name"]);
        let ok = FelixConfiguration::new("node.compute-1", FelixConfigurationSpec::default());
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn regex_checker() {
        for ok in [
            "^eth.*",
            "(?i)^ETH[0-9]+$",
            "a{2,3}",
            "[[:alpha:]]+",
            "x|y",
            "(?:a)b",
            "{",
            "a\\.",
        ] {
            assert!(check_regex(ok).is_ok(), "{ok}");
        }
        for bad in ["(a", "a)", "*a", "a**", "[abc", "a\\", "(?<>a)"] {
            assert!(check_regex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_overrides() {
        let mut s = FelixConfigurationSpec::default();
        let set = |s: &mut FelixConfigurationSpec, k: &str, v: &str| s.set_from_env_name(k, v);
        assert_eq!(set(&mut s, "FELIX_LOGSEVERITYSCREEN", "Debug"), Ok(true));
        assert_eq!(set(&mut s, "FELIX_IPINIPENABLED", "true"), Ok(true));
        assert_eq!(set(&mut s, "felix_IpInIpMtu", "1400"), Ok(true));
        assert_eq!(set(&mut s, "FELIX_VXLANVNI", "4097"), Ok(true));
        assert_eq!(
            set(&mut s, "FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT"),
            Ok(true)
        );
        assert_eq!(set(&mut s, "FELIX_REPORTINGINTERVALSECS", "30"), Ok(true));
        assert_eq!(
            set(&mut s, "FELIX_IPTABLESLOCKPROBEINTERVALMILLIS", "50"),
            Ok(true)
        );
        assert_eq!(set(&mut s, "FELIX_ROUTEREFRESHINTERVAL", "1.5"), Ok(true));
        assert_eq!(
            set(&mut s, "FELIX_IPTABLESMARKMASK", "0xffff0000"),
            Ok(true)
        );
        assert_eq!(
            set(
                &mut s,
                "FELIX_EXTERNALNODESCIDRLIST",
                "10.0.0.0/8, 192.0.2.0/24"
            ),
            Ok(true)
        );
        assert_eq!(
            set(
                &mut s,
                "FELIX_FAILSAFEINBOUNDHOSTPORTS",
                "tcp:22, udp:68, tcp:10.0.0.0/8:179, 6443"
            ),
            Ok(true)
        );
        assert_eq!(
            set(&mut s, "FELIX_ROUTETABLERANGES", "1-100,200-250"),
            Ok(true)
        );
        assert_eq!(
            set(&mut s, "FELIX_KUBENODEPORTRANGES", "30000:32767"),
            Ok(true)
        );
        assert_eq!(
            set(&mut s, "FELIX_BPFLOGFILTERS", "all=host 10.0.0.1,eth0=tcp"),
            Ok(true)
        );
        assert_eq!(
            set(&mut s, "FELIX_HEALTHTIMEOUTOVERRIDES", "CalcGraph=30s"),
            Ok(true)
        );
        assert_eq!(
            set(
                &mut s,
                "FELIX_BPFCONNTRACKTIMEOUTS",
                "TCPEstablished=2h,UDPTimeout=Auto"
            ),
            Ok(true)
        );
        assert_eq!(
            set(&mut s, "FELIX_WIREGUARDPERSISTENTKEEPALIVE", "25s"),
            Ok(true)
        );

        assert_eq!(s.log_severity_screen.as_deref(), Some("Debug"));
        assert_eq!(s.ipip_enabled, Some(true));
        assert_eq!(s.ipip_mtu, Some(1400));
        assert_eq!(s.vxlan_vni, Some(4097));
        assert_eq!(s.default_endpoint_to_host_action.as_deref(), Some("ACCEPT"));
        assert_eq!(s.reporting_interval.as_deref(), Some("30s"));
        assert_eq!(s.iptables_lock_probe_interval.as_deref(), Some("50ms"));
        assert_eq!(s.route_refresh_interval.as_deref(), Some("1500ms"));
        assert_eq!(s.iptables_mark_mask, Some(0xffff_0000));
        assert_eq!(s.external_nodes_list.as_ref().unwrap().len(), 2);
        let fs = s.failsafe_inbound_host_ports.as_ref().unwrap();
        assert_eq!(fs.len(), 4);
        assert_eq!(fs[2].net.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(fs[3].protocol, "tcp");
        assert_eq!(
            s.route_table_ranges.as_ref().unwrap()[1],
            RouteTableRange { min: 200, max: 250 }
        );
        assert_eq!(s.bpf_log_filters.as_ref().unwrap()["all"], "host 10.0.0.1");
        let ct = s.bpf_conntrack_timeouts.as_ref().unwrap();
        assert_eq!(ct.tcp_established.as_deref(), Some("2h"));
        assert_eq!(ct.udp_timeout.as_deref(), Some("Auto"));
        assert_eq!(s.wireguard_keep_alive.as_deref(), Some("25s"));
        let fc = FelixConfiguration::new("default", s.clone());
        assert!(fc.validate().is_ok(), "{:?}", fc.validate());

        // Not spec fields, or malformed values.
        assert_eq!(set(&mut s, "FELIX_DATASTORETYPE", "etcdv3"), Ok(false));
        assert_eq!(set(&mut s, "FELIX_NOSUCHTHING", "1"), Ok(false));
        assert!(set(&mut s, "FELIX_IPINIPENABLED", "maybe").is_err());
        assert!(set(&mut s, "FELIX_VXLANVNI", "lots").is_err());
        assert!(set(&mut s, "FELIX_IPTABLESMARKMASK", "0x1ffffffff").is_err());
        assert!(set(&mut s, "FELIX_ROUTEREFRESHINTERVAL", "soon").is_err());
        assert!(set(&mut s, "FELIX_ROUTETABLERANGE", "1:250").is_err());
        assert_eq!(
            s.ipip_enabled,
            Some(true),
            "a failed override leaves the field alone"
        );
    }

    /// Every field accepts an environment value of its declared syntax, so
    /// the table's kinds match the struct's types.
    #[test]
    fn every_field_is_settable_from_env() {
        for f in FIELDS {
            let sample = match f.kind {
                Kind::Bool => "true",
                Kind::Int => "7",
                Kind::Mask => "0xff00",
                Kind::Str => "x",
                Kind::Secs | Kind::Millis => "5",
                Kind::List => "a,b",
                Kind::ProtoPorts => "tcp:22",
                Kind::Port => "1000:2000",
                Kind::Ports => "1000:2000,80",
                Kind::TableRange => "1-2",
                Kind::TableRanges => "1-2,5-6",
                Kind::KeyValues => "a=b",
                Kind::HealthOverrides => "a=5s",
                Kind::ConntrackTimeouts => "tcpSynSent=5s",
            };
            let mut s = FelixConfigurationSpec::default();
            assert_eq!(s.set_from_env_name(f.json, sample), Ok(true), "{}", f.json);
            let obj = s.to_json_map();
            assert_eq!(obj.keys().collect::<Vec<_>>(), vec![f.json], "{}", f.json);
        }
    }

    #[test]
    fn validation_tables_name_real_fields() {
        let known = |n: &str| FIELDS.iter().any(|f| f.json == n);
        let names = ENUMS
            .iter()
            .map(|e| e.0)
            .chain(INT_RANGES.iter().map(|r| r.0))
            .chain(MTUS.iter().map(|m| m.0))
            .chain(REGEXES.iter().copied())
            .chain(CIDR_LISTS.iter().copied())
            .chain(HOSTS.iter().copied())
            .chain(PORT_RANGES.iter().copied());
        for n in names {
            assert!(known(n), "{n}");
        }
    }

    #[test]
    fn merge_overlays_set_fields() {
        let mut global = FelixConfigurationSpec {
            log_severity_screen: Some("Info".into()),
            ipip_enabled: Some(true),
            vxlan_vni: Some(4096),
            ..Default::default()
        };
        let node = FelixConfigurationSpec {
            log_severity_screen: Some("Debug".into()),
            interface_prefix: Some("tap".into()),
            ..Default::default()
        };
        global.merge_from(&node);
        assert_eq!(global.log_severity_screen.as_deref(), Some("Debug"));
        assert_eq!(global.interface_prefix.as_deref(), Some("tap"));
        assert_eq!(global.ipip_enabled, Some(true));
        assert_eq!(global.vxlan_vni, Some(4096));
        let before = global.clone();
        global.merge_from(&FelixConfigurationSpec::default());
        assert_eq!(global, before);
    }

    #[test]
    fn apply_defaults_leaves_spec_unset() {
        let mut fc = FelixConfiguration::new("default", FelixConfigurationSpec::default());
        fc.apply_defaults();
        assert_eq!(fc.spec, FelixConfigurationSpec::default());
        assert_eq!(
            serde_json::to_value(&fc.spec).unwrap(),
            serde_json::json!({})
        );
    }
}
