//! Validation plumbing: field errors with paths, and the shared syntax rules
//! (names, CIDRs, selectors) that several resources use.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::selector::Selector;

/// One problem with one field, e.g. `spec.ingress[0].destination.ports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {}: {}", self.field, self.message)
    }
}

/// Collects every error of a resource so the user sees them all at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// DNS-1123 label: lower-case alphanumerics and `-`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    is_label_chars(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Upstream's name pattern for one label: lower-case alphanumerics and `-`,
/// starting and ending with an alphanumeric. Unlike a DNS label it has no
/// length limit of its own; only the name as a whole is limited.
pub fn is_name_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Upstream's resource-name pattern: dot-separated name labels.
pub fn is_name_pattern(s: &str) -> bool {
    s.split('.').all(is_name_label)
}

/// Longest resource name upstream accepts (a DNS-1123 subdomain's limit).
pub const NAME_MAX_LEN: usize = 253;

/// A valid resource name (and the form of names that refer to resources:
/// nodes, profiles, services): the name pattern, at most 253 characters.
pub fn is_resource_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= NAME_MAX_LEN && is_name_pattern(s)
}

pub const NAME_RULE: &str =
    "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// Reports a name that is too long, as upstream does before checking its form.
pub fn check_name_length(name: &str, max: usize, errs: &mut FieldErrors) -> bool {
    if name.len() > max {
        errs.add(
            "metadata.name",
            format!(
                "name is {} characters, {} too many (at most {max})",
                name.len(),
                name.len() - max
            ),
        );
        return false;
    }
    true
}

/// Checks a general resource name (upstream's subdomain pattern, at most
/// 253 characters).
pub fn check_name(name: &str, errs: &mut FieldErrors) {
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if check_name_length(name, NAME_MAX_LEN, errs) && !is_name_pattern(name) {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: {NAME_RULE}"),
        );
    }
}

/// Checks a field that names another resource (node, profile, service...).
pub fn check_name_ref(field: &str, what: &str, name: &str, errs: &mut FieldErrors) {
    if !is_resource_name(name) {
        errs.add(field, format!("invalid {what} name {name:?}: {NAME_RULE}"));
    }
}

/// Parses a CIDR that must be strictly masked (no host bits), as upstream
/// requires for pools, reservations and network sets.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s.parse().map_err(|_| {
        format!("{s:?} is not a valid CIDR (expected e.g. 10.0.0.0/16 or fd00::/64)")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses an address or a strictly masked CIDR (a bare IP is a /32 or
/// /128), as upstream's `net` fields (endpoint and node addresses, BGP
/// service CIDRs) require.
pub fn parse_masked_net(s: &str) -> Result<IpNet, String> {
    let net = parse_net(s)?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Parses an IPv4 or IPv6 address, optionally with a prefix length, and
/// checks its family (upstream's `cidrv4`/`cidrv6` fields).
pub fn check_cidr_of_family(field: &str, s: &str, version: u8, errs: &mut FieldErrors) {
    if s.is_empty() {
        return;
    }
    match parse_net(s) {
        Err(m) => errs.add(field, m),
        Ok(n) if n.addr().is_ipv4() != (version == 4) => {
            errs.add(field, format!("{s:?} is not an IPv{version} address"))
        }
        Ok(_) => {}
    }
}

/// Checks a plain IPv4 or IPv6 address of the given family (upstream's
/// `ipv4`/`ipv6` fields).
pub fn check_ip_of_family(field: &str, s: &str, version: u8, errs: &mut FieldErrors) {
    if s.is_empty() {
        return;
    }
    match s.parse::<IpAddr>() {
        Err(_) => errs.add(field, format!("{s:?} is not a valid IP address")),
        Ok(ip) if ip.is_ipv4() != (version == 4) => {
            errs.add(field, format!("{s:?} is not an IPv{version} address"))
        }
        Ok(_) => {}
    }
}

/// Parses an address or CIDR as used in network sets and reservations (a
/// bare IP is a /32 or /128); host bits are tolerated there, as upstream's
/// `cidr` fields do.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    s.parse::<IpNet>()
        .map_err(|_| format!("{s:?} is not a valid IP address or CIDR"))
}

/// Parses a selector field, recording a field error that shows the parser's
/// column and expectation.
pub fn check_selector(field: &str, s: &str, errs: &mut FieldErrors) -> Option<Selector> {
    match Selector::parse(s) {
        Ok(sel) => Some(sel),
        Err(e) => {
            errs.add(field, format!("invalid selector {s:?}: {e}"));
            None
        }
    }
}

/// Checks a label map: keys are optionally-prefixed names, values at most 63
/// characters of the Kubernetes label-value alphabet.
pub fn check_labels(
    field: &str,
    labels: &std::collections::BTreeMap<String, String>,
    errs: &mut FieldErrors,
) {
    for (k, v) in labels {
        if !is_label_key(k) {
            errs.add(
                format!("{field}.{k}"),
                format!("invalid label key {k:?}: must be an optional DNS subdomain prefix and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"),
            );
        }
        if !is_label_value(v) {
            errs.add(
                format!("{field}.{k}"),
                format!("invalid label value {v:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"),
            );
        }
    }
}

/// Checks annotations as upstream does: keys are qualified names (compared
/// in lower case) and the total size of keys and values is at most 256 kB.
pub fn check_annotations(
    field: &str,
    annotations: &std::collections::BTreeMap<String, String>,
    errs: &mut FieldErrors,
) {
    for k in annotations.keys() {
        if !is_label_key(&k.to_ascii_lowercase()) {
            errs.add(
                format!("{field}.{k}"),
                format!("invalid annotation key {k:?}: must be an optional DNS subdomain prefix and '/', then a name of at most 63 alphanumerics, '-', '_' or '.'"),
            );
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 256 * 1024 {
        errs.add(
            field,
            format!(
                "annotations may not exceed 256 kB in total (these are {} bytes too large)",
                size - 256 * 1024
            ),
        );
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub fn is_label_key(k: &str) -> bool {
    match k.rsplit_once('/') {
        Some((prefix, name)) => is_resource_name(prefix) && is_label_name(name),
        None => is_label_name(k),
    }
}

pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_label_name(v)
}

/// Interface names as Linux accepts them.
pub fn is_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("default-ipv4-pool"));
        assert!(is_dns1123_subdomain("ossg.default.abc-123"));
        assert!(!is_dns1123_subdomain("Default"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_dns1123_label("web-db-policy"));
        assert!(!is_dns1123_label("a.b"));
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("10.10.0.0/16").is_ok());
        assert!(parse_cidr("10.10.0.1/16")
            .unwrap_err()
            .contains("10.10.0.0/16"));
        assert!(parse_cidr("10.10.0.0").is_err());
        assert!(parse_net("10.1.2.3").is_ok());
    }

    #[test]
    fn label_keys() {
        assert!(is_label_key("app"));
        assert!(is_label_key("projectcalico.org/namespace"));
        assert!(is_label_key("sg.projectcalico.org/openstack-1234"));
        assert!(!is_label_key("bad key"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
    }

    #[test]
    fn annotation_keys() {
        let mut errs = FieldErrors::default();
        let mut a = std::collections::BTreeMap::new();
        a.insert(
            "openstack.projectcalico.org/FQDN".to_string(),
            "x".to_string(),
        );
        a.insert(
            "Description".to_string(),
            "free text, any characters!".to_string(),
        );
        check_annotations("metadata.annotations", &a, &mut errs);
        assert!(errs.is_empty(), "{errs}");
        a.insert("bad key".to_string(), String::new());
        check_annotations("metadata.annotations", &a, &mut errs);
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].field, "metadata.annotations.bad key");
        assert!(errs.0[0].message.contains("invalid annotation key"));
        let mut big = std::collections::BTreeMap::new();
        big.insert("k".to_string(), "v".repeat(256 * 1024));
        let mut errs = FieldErrors::default();
        check_annotations("metadata.annotations", &big, &mut errs);
        assert!(errs.0[0].message.contains("1 bytes too large"), "{errs}");
    }
}
