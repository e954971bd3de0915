//! QoS: a port's Neutron QoS policy, and the `[calico]` QoS options that
//! Neutron's API cannot express, as `spec.qosControls`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::neutron::QosPolicy;

/// Default `ingress_burst_bits` / `egress_burst_bits`.
pub const DEFAULT_BW_BURST: i64 = 4_294_967_296;
/// Default `ingress_burst_packets` / `egress_burst_packets`.
pub const DEFAULT_PR_BURST: i64 = 5;

/// The `[calico]` QoS options, with upstream's defaults.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct QosConfig {
    pub max_ingress_connections_per_port: i64,
    pub max_egress_connections_per_port: i64,
    pub ingress_burst_bits: i64,
    pub egress_burst_bits: i64,
    pub ingress_minburst_bytes: i64,
    pub egress_minburst_bytes: i64,
    pub ingress_burst_packets: i64,
    pub egress_burst_packets: i64,
}

impl Default for QosConfig {
    fn default() -> Self {
        QosConfig {
            max_ingress_connections_per_port: 0,
            max_egress_connections_per_port: 0,
            ingress_burst_bits: DEFAULT_BW_BURST,
            egress_burst_bits: DEFAULT_BW_BURST,
            ingress_minburst_bytes: 0,
            egress_minburst_bytes: 0,
            ingress_burst_packets: DEFAULT_PR_BURST,
            egress_burst_packets: DEFAULT_PR_BURST,
        }
    }
}

// Minima and maxima of the WorkloadEndpoint API (as upstream clamps them).
const BANDWIDTH: (i64, i64) = (1000, 1_000_000_000_000_000);
const BW_BURST: (i64, i64) = (1000, 34_359_738_360);
const BW_PEAKRATE: (i64, i64) = (1010, 1_000_000_000_000_000 + 10_000_000_000_000);
const BW_MINBURST: (i64, i64) = (1000, 100_000_000);
const PACKET_RATE: (i64, i64) = (1, 10_000);
const PR_BURST: (i64, i64) = (1, 10_000);
const CONNECTIONS: (i64, i64) = (1, 4_294_967_295);

fn cap(v: i64, (min, max): (i64, i64)) -> i64 {
    v.clamp(min, max)
}

fn direction(object: &str, d: Option<&str>) -> Result<&'static str> {
    match d.unwrap_or("egress") {
        "egress" => Ok("egress"),
        "ingress" => Ok("ingress"),
        other => Err(Error::new(
            object,
            "direction",
            format!("{other:?}: a QoS limit is ingress or egress"),
        )),
    }
}

/// `spec.qosControls` for a port under `policy` (its own or its network's),
/// as upstream's `build_qos_controls`: bandwidth limits in bit/s (`max_kbps`
/// × 1000, peak rate from `max_burst_kbps`), packet rates in packet/s
/// (`max_kpps` × 1000), each clamped to the API's range, bursts from the
/// options (a 0 option means the default), connection limits from the
/// options. `None` when nothing applies.
pub fn qos_controls(policy: Option<&QosPolicy>, cfg: &QosConfig) -> Result<Option<Value>> {
    let mut q = Map::new();
    let object = format!(
        "QoS policy {}",
        policy.and_then(|p| p.id.as_deref()).unwrap_or("?")
    );
    let rules = policy.map(|p| p.rules.as_slice()).unwrap_or_default();
    let mut set = |k: String, v: i64| {
        q.insert(k, Value::from(v));
    };
    for r in rules
        .iter()
        .filter(|r| r.rule_type.as_deref() == Some("bandwidth_limit"))
    {
        let d = direction(&object, r.direction.as_deref())?;
        let kbps = r.max_kbps.unwrap_or(0);
        if kbps != 0 {
            set(
                format!("{d}Bandwidth"),
                cap(kbps.saturating_mul(1000), BANDWIDTH),
            );
        }
        let burst = r.max_burst_kbps.unwrap_or(0);
        if burst != 0 {
            set(
                format!("{d}Peakrate"),
                cap(burst.saturating_mul(1000), BW_PEAKRATE),
            );
        }
    }
    for r in rules
        .iter()
        .filter(|r| r.rule_type.as_deref() == Some("packet_rate_limit"))
    {
        let d = direction(&object, r.direction.as_deref())?;
        let kpps = r.max_kpps.unwrap_or(0);
        if kpps != 0 {
            set(
                format!("{d}PacketRate"),
                cap(kpps.saturating_mul(1000), PACKET_RATE),
            );
        }
    }
    if cfg.max_ingress_connections_per_port != 0 {
        set(
            "ingressMaxConnections".into(),
            cap(cfg.max_ingress_connections_per_port, CONNECTIONS),
        );
    }
    if cfg.max_egress_connections_per_port != 0 {
        set(
            "egressMaxConnections".into(),
            cap(cfg.max_egress_connections_per_port, CONNECTIONS),
        );
    }
    for (d, burst_bits, minburst, burst_packets) in [
        (
            "ingress",
            cfg.ingress_burst_bits,
            cfg.ingress_minburst_bytes,
            cfg.ingress_burst_packets,
        ),
        (
            "egress",
            cfg.egress_burst_bits,
            cfg.egress_minburst_bytes,
            cfg.egress_burst_packets,
        ),
    ] {
        if q.contains_key(&format!("{d}Bandwidth")) {
            let burst = if burst_bits != 0 {
                cap(burst_bits, BW_BURST)
            } else {
                DEFAULT_BW_BURST
            };
            q.insert(format!("{d}Burst"), burst.into());
            if minburst != 0 && q.contains_key(&format!("{d}Peakrate")) {
                q.insert(format!("{d}Minburst"), cap(minburst, BW_MINBURST).into());
            }
        }
        if q.contains_key(&format!("{d}PacketRate")) {
            let burst = if burst_packets != 0 {
                cap(burst_packets, PR_BURST)
            } else {
                DEFAULT_PR_BURST
            };
            q.insert(format!("{d}PacketBurst"), burst.into());
        }
    }
    Ok((!q.is_empty()).then_some(Value::Object(q)))
}
