//! `get`: list or fetch resources and print them as a table, YAML or JSON.
//! `-l/--selector` (our addition) keeps those whose labels match a selector.

use anyhow::{anyhow, bail, Result};
use calico_api::network::{AsNumber, BGPConfiguration};
use calico_api::selector::Selector;
use calico_api::{AnyResource, KindInfo};
use clap::Args;

use crate::input::read_resources;
use crate::output::{self, Context, Format};
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

pub fn run(a: &GetArgs) -> Result<()> {
    let format = Format::parse(&a.output).map_err(|e| anyhow!(e))?;
    let selector = match &a.selector {
        Some(s) => Some(Selector::parse(s).map_err(|e| anyhow!("invalid --selector {s:?}: {e}"))?),
        None => None,
    };
    // What to fetch: (kind, namespace, name) triples, or a whole kind.
    let mut wanted: Vec<(&'static KindInfo, String, String)> = Vec::new();
    let info: &'static KindInfo;
    if let Some(f) = &a.filename {
        let docs = read_resources(f, a.recursive).map_err(|e| super::write::input_failure(&e))?;
        if docs.is_empty() {
            bail!("{f}: no resources found");
        }
        info = docs[0].resource.info();
        for d in docs {
            let m = d.resource.metadata();
            wanted.push((d.resource.info(), m.namespace.clone(), m.name.clone()));
        }
    } else {
        let kind = a.kind.as_deref().ok_or_else(|| {
            anyhow!("name a resource type (e.g. calicoctl get ippools) or use -f FILE")
        })?;
        info = super::kind_arg(kind)?;
        for n in &a.names {
            wanted.push((info, a.namespace.clone(), n.clone()));
        }
    }
    let client = super::connect(&a.global)?;
    let mut items: Vec<AnyResource> = Vec::new();
    let mut revision = 0;
    let single = wanted.len() == 1;
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
        items = listed.items;
        revision = listed.revision;
    } else {
        for (kinfo, ns, name) in &wanted {
            match client
                .get(kinfo, namespace_or_default(ns), name)
                .map_err(|e| anyhow!("{e}"))?
            {
                Some(r) => items.push(r),
                None => {
                    let id = if kinfo.namespaced {
                        format!("{}({}/{})", kinfo.kind, namespace_or_default(ns), name)
                    } else {
                        format!("{}({})", kinfo.kind, name)
                    };
                    bail!("resource does not exist: {id}");
                }
            }
        }
    }
    if let Some(sel) = &selector {
        items.retain(|r| sel.matches(&r.metadata().labels));
    }
    match &format {
        Format::Yaml => print!(
            "{}",
            output::to_yaml(output::document(&items, single, revision))
        ),
        Format::Json => print!(
            "{}",
            output::to_json(&output::document(&items, single, revision))
        ),
        _ => {
            // One table per kind (a file given with -f may mix kinds).
            let mut kinds: Vec<&'static KindInfo> = vec![info];
            for r in &items {
                if !kinds.contains(&r.info()) {
                    kinds.push(r.info());
                }
            }
            for (i, k) in kinds.iter().enumerate() {
                let of_kind: Vec<AnyResource> = items
                    .iter()
                    .filter(|r| r.kind() == k.kind)
                    .cloned()
                    .collect();
                if i > 0 && of_kind.is_empty() {
                    continue;
                }
                if i > 0 {
                    println!();
                }
                let ctx = Context {
                    global_as: global_as_number(&client, k),
                };
                let t = output::render_table(k, &of_kind, &format, a.all_namespaces, &ctx)
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
