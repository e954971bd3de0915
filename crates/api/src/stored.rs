//! Reading resources back from a datastore. Upstream's datastore reads are
//! lenient: a resource written by a newer version, with fields this version
//! does not know, is read with those fields ignored rather than dropped as
//! corrupt. Input from a user (`calicoctl apply -f`) stays strict; see
//! `decode`.

use serde_json::Value;
use serde_path_to_error::Segment;

use crate::decode::FieldDecodeError;
use crate::resource::Resource;

/// A resource read leniently, with the paths of the fields that were ignored
/// (e.g. `spec.interfaces`), for callers that want to log them.
#[derive(Clone, Debug, PartialEq)]
pub struct Lenient<R> {
    pub resource: R,
    pub ignored: Vec<String>,
}

/// More unknown fields than any real resource has: a guard against looping
/// on a path that cannot be removed.
const MAX_IGNORED: usize = 256;

/// Deserialises `value` as `R`, removing each field `R` does not know and
/// trying again. Any other problem (a wrong type, a missing required field,
/// an unknown enum value) is still an error, with the field's path.
pub fn typed_lenient<R: Resource>(mut value: Value) -> Result<Lenient<R>, FieldDecodeError> {
    let mut ignored = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, R>(value.clone()) {
            Ok(resource) => return Ok(Lenient { resource, ignored }),
            Err(e) => e,
        };
        let path = err.path().clone();
        let message = err.into_inner().to_string();
        let unknown = message.starts_with("unknown field `");
        if !unknown || ignored.len() >= MAX_IGNORED || !remove_at(&mut value, &path) {
            let field = path.to_string();
            return Err(FieldDecodeError {
                field: if field == "." { String::new() } else { field },
                message,
            });
        }
        ignored.push(path.to_string());
    }
}

/// Removes the object member that `path` ends in. False when the path does
/// not lead to an object member (nothing is changed then).
fn remove_at(value: &mut Value, path: &serde_path_to_error::Path) -> bool {
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((Segment::Map { key }, parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Segment::Map { key }, Value::Object(m)) => m.get_mut(key.as_str()),
            // An externally tagged enum is stored as `{variant: ...}`.
            (Segment::Enum { variant }, Value::Object(m)) => m.get_mut(variant.as_str()),
            (Segment::Seq { index }, Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    match cur {
        Value::Object(m) => m.remove(key.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Node;
    use crate::policy::NetworkPolicy;

    #[test]
    fn unknown_fields_anywhere_are_ignored_and_reported() {
        let v = serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "ns", "futureMeta": 1},
            "spec": {
                "selector": "all()",
                "ingress": [{"action": "Allow", "futureRuleField": true,
                             "source": {"nets": ["10.0.0.0/8"], "futureEntity": "x"}}],
                "futureSpecField": {"a": 1}
            },
            "status": {"whatever": true}
        });
        let got = typed_lenient::<NetworkPolicy>(v).unwrap();
        assert_eq!(got.resource.metadata.name, "p");
        assert_eq!(got.resource.spec.ingress[0].source.nets, vec!["10.0.0.0/8"]);
        let mut ignored = got.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            vec![
                "metadata.futureMeta",
                "spec.futureSpecField",
                "spec.ingress[0].futureRuleField",
                "spec.ingress[0].source.futureEntity",
                "status",
            ]
        );
    }

    #[test]
    fn a_newer_nodes_interfaces_are_ignored() {
        let v = serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": "n1"},
            "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"},
                     "interfaces": [{"name": "eth0", "addresses": ["10.0.0.1"]}]}
        });
        let got = typed_lenient::<Node>(v).unwrap();
        assert_eq!(got.ignored, vec!["spec.interfaces"]);
        assert_eq!(
            got.resource.spec.bgp.unwrap().ipv4_address,
            "10.0.0.1/24".to_string()
        );
    }

    #[test]
    fn wrong_types_are_still_errors() {
        let v = serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "p"}, "spec": {"order": "first", "unknownToo": 1}
        });
        let e = typed_lenient::<NetworkPolicy>(v).unwrap_err();
        assert_eq!(e.field, "spec.order");
    }
}
