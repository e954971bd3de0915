//! `get`: list or fetch resources and print them as a table, YAML or JSON.
//! `-l/--selector` (our addition) keeps those whose labels match a selector.

use anyhow::{anyhow, bail, Result};
use calico_api::network::{AsNumber, BGPConfiguration};
use calico_api::selector::Selector;
use calico_api::{AnyResource, KindInfo};
use clap::Args;

use crate::input::read_resources;
use crate::output::{self, Format};
use crate::Global;

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Resource type (e.g. ippools, gnp, NetworkPolicy).
    pub kind: Option<String>,
    /// Names to fetch; all when none.
    pub names: Vec<String>,
    /// Get the resources named in this file instead.
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<String>,
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
    /// ps (default), wide, yaml, json, custom-columns=COL,...
    #[arg(short = 'o', long = "output", default_value = "ps")]
    pub output: String,
    /// Namespace of namespaced kinds.
    #[arg(short = 'n', long = "namespace", default_value = "")]
    pub namespace: String,
    /// All namespaces.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Only resources whose labels match this Calico selector.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Accepted for compatibility: strip cluster-specific metadata.
    #[arg(long = "export")]
    pub export: bool,
    #[command(flatten)]
    pub global: Global,
}

fn namespace_or_default(ns: &str) -> &str {
    if ns.is_empty() {
        "default"
    } else {
        ns
    }
}

/// What to fetch: the kind, and (kind, namespace, name) triples for named
/// resources (none: list the kind).
type Wanted = Vec<(&'static KindInfo, String, String)>;

fn what_to_get(a: &GetArgs) -> Result<(&'static KindInfo, Wanted)> {
    let mut wanted = Wanted::new();
    if let Some(f) = &a.filename {
        let docs = read_resources(f, a.recursive).map_err(|e| super::write::input_failure(&e))?;
        if docs.is_empty() {
            bail!("{f}: no resources found");
        }
        let info = docs[0].resource.info();
        for d in docs {
            let m = d.resource.metadata();
            wanted.push((d.resource.info(), m.namespace.clone(), m.name.clone()));
        }
        return Ok((info, wanted));
    }
    let kind = a.kind.as_deref().ok_or_else(|| {
        anyhow!("name a resource type (e.g. calicoctl get ippools) or use -f FILE")
    })?;
    let info = super::kind_arg(kind)?;
    for n in &a.names {
        wanted.push((info, a.namespace.clone(), n.clone()));
    }
    Ok((info, wanted))
}

fn missing_id(info: &KindInfo, ns: &str, name: &str) -> String {
    if info.namespaced {
        format!("{}({}/{})", info.kind, namespace_or_default(ns), name)
    } else {
        format!("{}({})", info.kind, name)
    }
}

/// As upstream: a list prints as one table; each named resource found prints
/// as its own table; names not found are reported after the output, one per
/// line, and make the command fail.
pub fn run(a: &GetArgs) -> Result<()> {
    let format = Format::parse(&a.output).map_err(|e| anyhow!(e))?;
    let selector = match &a.selector {
        Some(s) => Some(Selector::parse(s).map_err(|e| anyhow!("invalid --selector {s:?}: {e}"))?),
        None => None,
    };
    let (info, wanted) = what_to_get(a)?;
    let client = super::connect(&a.global)?;
    // One entry per table upstream would print.
    let mut results: Vec<(&'static KindInfo, Vec<AnyResource>)> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut revision = 0;
    if wanted.is_empty() {
        let ns = if a.all_namespaces || !info.namespaced {
            None
        } else {
            Some(namespace_or_default(&a.namespace))
        };
        let listed = client.list(info, ns).map_err(|e| anyhow!("{e}"))?;
        for (key, err) in &listed.bad {
            eprintln!("warning: skipping {key}: {err}");
        }
        revision = listed.revision;
        results.push((info, listed.items));
    } else {
        for (kinfo, ns, name) in &wanted {
            match client
                .get(kinfo, namespace_or_default(ns), name)
                .map_err(|e| anyhow!("{e}"))?
            {
                Some(r) => results.push((kinfo, vec![r])),
                None => missing.push(format!(
                    "resource does not exist: {}",
                    missing_id(kinfo, ns, name)
                )),
            }
        }
    }
    if let Some(sel) = &selector {
        for (_, items) in results.iter_mut() {
            items.retain(|r| sel.matches(&r.metadata().labels));
        }
        if !wanted.is_empty() {
            results.retain(|(_, items)| !items.is_empty());
        }
    }
    print_results(a, &client, &format, &results, wanted.len() == 1, revision)?;
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

fn print_results(
    a: &GetArgs,
    client: &calico_client::Client,
    format: &Format,
    results: &[(&'static KindInfo, Vec<AnyResource>)],
    single: bool,
    revision: i64,
) -> Result<()> {
    let items: Vec<AnyResource> = results.iter().flat_map(|(_, i)| i.clone()).collect();
    match format {
        Format::Yaml => print!(
            "{}",
            output::to_yaml(output::document(&items, single, revision))
        ),
        Format::Json => print!(
            "{}",
            output::to_json(&output::document(&items, single, revision))
        ),
        _ => {
            let print_namespace = a.all_namespaces || !a.namespace.is_empty();
            for (info, items) in results {
                let t = output::render_table(
                    info,
                    items,
                    format,
                    print_namespace,
                    global_as_number(client, info),
                )
                .map_err(|e| anyhow!(e))?;
                print!("{t}");
            }
        }
    }
    Ok(())
}

/// The cluster's AS number (BGPConfiguration `default`, else 64512), shown
/// in parentheses for nodes that inherit it.
fn global_as_number(client: &calico_client::Client, info: &KindInfo) -> AsNumber {
    if info.kind != "Node" {
        return AsNumber(64512);
    }
    client
        .get_as::<BGPConfiguration>("", "default")
        .ok()
        .flatten()
        .and_then(|c| c.spec.as_number)
        .unwrap_or(AsNumber(64512))
}
