//! The seam between the policy manager and the kernel: apply one nft script
//! as one transaction, and list our table back.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::table::{ChainKind, Elems, SetDef};
use crate::DataplaneError;

/// What `nft -j list table inet calico` shows, reduced to what the diff
/// needs: chain kinds and rule comments (no rule expressions), set/map types
/// and elements in canonical text form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedTable {
    pub chains: BTreeMap<String, ListedChain>,
    pub sets: BTreeMap<String, ListedSet>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedChain {
    pub kind: ChainKind,
    /// One entry per rule, in order.
    pub rule_comments: Vec<Option<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedSet {
    pub def: SetDef,
    /// None if some element could not be canonicalised.
    pub elems: Option<Elems>,
}

/// Kernel access for nftables. `apply` must be atomic (one `nft -f`
/// transaction); `list_table` returns `Ok(None)` if the table does not exist.
pub trait NftBackend {
    fn apply(&mut self, script: &str) -> Result<(), DataplaneError>;
    fn list_table(&mut self) -> Result<Option<ListedTable>, DataplaneError>;
}

impl<B: NftBackend + ?Sized> NftBackend for Box<B> {
    fn apply(&mut self, script: &str) -> Result<(), DataplaneError> {
        (**self).apply(script)
    }
    fn list_table(&mut self) -> Result<Option<ListedTable>, DataplaneError> {
        (**self).list_table()
    }
}

/// Parse `nft -j list table inet calico` output.
pub fn parse_listing_json(json: &str) -> Result<ListedTable, DataplaneError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| DataplaneError::Nft(format!("cannot parse nft -j output: {e}")))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| DataplaneError::Nft("nft -j output has no \"nftables\" array".into()))?;
    let mut out = ListedTable::default();
    let mut rules: Vec<(String, Option<String>)> = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let Some(name) = c.get("name").and_then(Value::as_str) else {
                continue;
            };
            let kind = match c.get("hook").and_then(Value::as_str) {
                Some(hook) => ChainKind::Base {
                    ty: c.get("type").and_then(Value::as_str).unwrap_or("").into(),
                    hook: hook.into(),
                    priority: c.get("prio").and_then(Value::as_i64).unwrap_or(0) as i32,
                    policy: c
                        .get("policy")
                        .and_then(Value::as_str)
                        .unwrap_or("accept")
                        .into(),
                },
                None => ChainKind::Regular,
            };
            out.chains.insert(
                name.to_string(),
                ListedChain {
                    kind,
                    rule_comments: Vec::new(),
                },
            );
        } else if let Some(r) = item.get("rule") {
            if let Some(chain) = r.get("chain").and_then(Value::as_str) {
                let comment = r.get("comment").and_then(Value::as_str).map(String::from);
                rules.push((chain.to_string(), comment));
            }
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            if let Some((name, set)) = parse_set(s) {
                out.sets.insert(name, set);
            }
        }
    }
    for (chain, comment) in rules {
        if let Some(c) = out.chains.get_mut(&chain) {
            c.rule_comments.push(comment);
        }
    }
    Ok(out)
}

fn parse_set(s: &Value) -> Option<(String, ListedSet)> {
    let name = s.get("name")?.as_str()?.to_string();
    let key: Vec<String> = match s.get("type")? {
        Value::String(t) => vec![t.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => return None,
    };
    let data = s.get("map").and_then(Value::as_str).map(String::from);
    let interval = s
        .get("flags")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("interval")));
    let def = SetDef {
        key,
        data,
        interval,
    };
    let elems = match s.get("elem") {
        None => Some(Elems::new()),
        Some(Value::Array(list)) => {
            let mut elems = Elems::new();
            let mut ok = true;
            for e in list {
                match canon_entry(e, &def) {
                    Some((k, v)) => {
                        elems.insert(k, v);
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            ok.then_some(elems)
        }
        Some(_) => None,
    };
    Some((name, ListedSet { def, elems }))
}

fn canon_entry(e: &Value, def: &SetDef) -> Option<(String, Option<String>)> {
    match &def.data {
        Some(data) => {
            let pair = e.as_array()?;
            if pair.len() != 2 {
                return None;
            }
            let k = canon_key(&pair[0], &def.key)?;
            let v = canon_value(unwrap_elem(&pair[1]), data)?;
            Some((k, Some(v)))
        }
        None => Some((canon_key(e, &def.key)?, None)),
    }
}

/// Elements with per-element options are wrapped as `{"elem": {"val": ..}}`.
fn unwrap_elem(v: &Value) -> &Value {
    v.get("elem").and_then(|e| e.get("val")).unwrap_or(v)
}

fn canon_key(v: &Value, key: &[String]) -> Option<String> {
    let v = unwrap_elem(v);
    if key.len() == 1 {
        return canon_value(v, &key[0]);
    }
    let parts = v.get("concat")?.as_array()?;
    if parts.len() != key.len() {
        return None;
    }
    let mut out = Vec::with_capacity(parts.len());
    for (p, t) in parts.iter().zip(key) {
        out.push(canon_value(p, t)?);
    }
    Some(out.join(" . "))
}

/// Canonical text of one value of an nft type, as our scripts write it.
pub(crate) fn canon_value(v: &Value, ty: &str) -> Option<String> {
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        if r.len() == 2 {
            return Some(format!(
                "{}-{}",
                canon_value(&r[0], ty)?,
                canon_value(&r[1], ty)?
            ));
        }
        return None;
    }
    match ty {
        "ipv4_addr" | "ipv6_addr" => {
            if let Some(s) = v.as_str() {
                return s.parse::<IpAddr>().ok().map(|a| a.to_string());
            }
            let p = v.get("prefix")?;
            let addr: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
            let len = p.get("len")?.as_u64()? as u8;
            Some(net_text(&IpNet::new(addr, len).ok()?))
        }
        "inet_proto" => match v {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => proto_number(s).map(|n| n.to_string()),
            _ => None,
        },
        "inet_service" => match v {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => s.parse::<u16>().ok().map(|n| n.to_string()),
            _ => None,
        },
        "ifname" => v.as_str().map(|s| format!("\"{s}\"")),
        "verdict" => {
            if let Some(s) = v.as_str() {
                return Some(s.to_string());
            }
            for verb in ["jump", "goto"] {
                if let Some(t) = v.get(verb) {
                    return Some(format!("{verb} {}", t.get("target")?.as_str()?));
                }
            }
            None
        }
        _ => None,
    }
}

/// Canonical text of a network: a bare address for a host prefix, else the
/// masked `addr/len`.
pub fn net_text(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.trunc().to_string()
    }
}

fn proto_number(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => 1,
        "igmp" => 2,
        "ipencap" | "ipip" => 4,
        "tcp" => 6,
        "udp" => 17,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        "udplite" => 136,
        other => return other.parse().ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listing() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
 {"table":{"family":"inet","name":"calico","handle":1}},
 {"set":{"family":"inet","name":"s4-x","table":"calico","type":"ipv4_addr","handle":9,"flags":["interval"],
   "elem":["198.18.0.1",{"prefix":{"addr":"198.18.1.0","len":24}}]}},
 {"set":{"family":"inet","name":"n4-x","table":"calico","type":["ipv4_addr","inet_proto","inet_service"],"flags":["interval"],
   "elem":[{"concat":["198.18.0.1","tcp",80]},{"concat":[{"prefix":{"addr":"198.18.3.0","len":24}},"udp",53]}]}},
 {"set":{"family":"inet","name":"odd","table":"calico","type":"ipv4_addr","elem":[{"weird":1}]}},
 {"map":{"family":"inet","name":"cali-from-wl","table":"calico","type":"ifname","map":"verdict",
   "elem":[["tap1",{"jump":{"target":"cali-fw-tap1"}}]]}},
 {"chain":{"family":"inet","table":"calico","name":"cali-FORWARD","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"accept"}},
 {"chain":{"family":"inet","table":"calico","name":"cali-tw-tap1","handle":5}},
 {"rule":{"family":"inet","table":"calico","chain":"cali-FORWARD","handle":17,"comment":"ct #0123456789abcdef","expr":[]}},
 {"rule":{"family":"inet","table":"calico","chain":"cali-FORWARD","handle":18,"expr":[]}}
]}"#;
        let t = parse_listing_json(json).unwrap();
        let fwd = &t.chains["cali-FORWARD"];
        assert_eq!(fwd.kind, ChainKind::base("filter", "forward", 0));
        assert_eq!(
            fwd.rule_comments,
            vec![Some("ct #0123456789abcdef".into()), None]
        );
        assert_eq!(t.chains["cali-tw-tap1"].rule_comments.len(), 0);
        let s4 = t.sets["s4-x"].elems.as_ref().unwrap();
        assert!(s4.contains_key("198.18.0.1") && s4.contains_key("198.18.1.0/24"));
        let n4 = t.sets["n4-x"].elems.as_ref().unwrap();
        assert!(n4.contains_key("198.18.0.1 . 6 . 80"));
        assert!(n4.contains_key("198.18.3.0/24 . 17 . 53"));
        assert_eq!(t.sets["odd"].elems, None);
        let m = &t.sets["cali-from-wl"];
        assert_eq!(m.def, SetDef::map(&["ifname"], "verdict"));
        assert_eq!(
            m.elems.as_ref().unwrap()["\"tap1\""],
            Some("jump cali-fw-tap1".into())
        );
    }
}
