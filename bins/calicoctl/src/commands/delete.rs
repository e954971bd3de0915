//! `delete`: by kind and names, or every resource named in a file.
//! IP pools are deleted as upstream does (disabled, their blocks' affinities
//! released, then deleted), and only while no address is allocated in them
//! unless `--force`.

use anyhow::{anyhow, bail, Result};
use calico_api::KindInfo;
use calico_client::ClientError;
use clap::Args;

use crate::input::read_resources;
use crate::Global;

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub kind: Option<String>,
    pub names: Vec<String>,
    #[arg(short = 'f', long = "filename")]
    pub filename: Option<String>,
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
    #[arg(short = 'n', long = "namespace", default_value = "")]
    pub namespace: String,
    /// Do not fail for resources that do not exist.
    #[arg(long = "skip-not-exists")]
    pub skip_not_exists: bool,
    /// Delete IP pools even while addresses are allocated in them (the
    /// allocations stay, in blocks no longer affine to any node).
    #[arg(long = "force")]
    pub force: bool,
    #[command(flatten)]
    pub global: Global,
}

pub fn run(a: &DeleteArgs) -> Result<()> {
    // (kind, namespace, name, resourceVersion from the file if any)
    let mut targets: Vec<(&'static KindInfo, String, String, String)> = Vec::new();
    if let Some(f) = &a.filename {
        let docs = read_resources(f, a.recursive).map_err(|e| super::write::input_failure(&e))?;
        for d in docs {
            let m = d.resource.metadata();
            targets.push((
                d.resource.info(),
                m.namespace.clone(),
                m.name.clone(),
                m.resource_version.clone(),
            ));
        }
    } else {
        let kind = a
            .kind
            .as_deref()
            .ok_or_else(|| anyhow!("name a resource type and name(s), or use -f FILE"))?;
        let info = super::kind_arg(kind)?;
        if a.names.is_empty() {
            bail!("name the {} to delete", info.plural);
        }
        for n in &a.names {
            targets.push((info, a.namespace.clone(), n.clone(), String::new()));
        }
    }
    let client = super::connect(&a.global)?;
    let mut deleted = Vec::new();
    let mut skipped = 0;
    let ipam = calico_ipam::Ipam::new(client.store().clone());
    for (info, ns, name, rv) in &targets {
        // (error text, whether the resource did not exist)
        let res: std::result::Result<(), (String, bool)> = if info.kind == "IPPool" {
            ipam.delete_pool(name, Some(rv.as_str()), a.force)
                .map(|_| ())
                .map_err(|e| {
                    let nf = matches!(
                        e,
                        calico_ipam::IpamError::Client(ClientError::NotFound { .. })
                    );
                    (e.to_string(), nf)
                })
        } else {
            client
                .delete(info, ns, name, Some(rv.as_str()))
                .map(|_| ())
                .map_err(|e| {
                    let nf = matches!(e, ClientError::NotFound { .. });
                    (e.to_string(), nf)
                })
        };
        match res {
            Ok(()) => deleted.push(info.kind),
            Err((_, true)) if a.skip_not_exists => skipped += 1,
            Err((e, _)) => {
                if !deleted.is_empty() {
                    eprintln!(
                        "Partial success: deleted {} resource(s) before this error",
                        deleted.len()
                    );
                }
                bail!("{e}");
            }
        }
    }
    let kinds = super::kind_phrase(deleted.iter().copied());
    println!(
        "Successfully deleted {}{} resource(s)",
        deleted.len(),
        kinds
    );
    if skipped > 0 {
        println!("Skipped {skipped} resource(s) that do not exist");
    }
    Ok(())
}
