//! `label`: set (`key=value`, `--overwrite` to change) or `--remove` a label.

use anyhow::{anyhow, bail, Result};
use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct LabelArgs {
    pub kind: String,
    pub name: String,
    /// `key=value` to set, or `key` with --remove.
    pub label: String,
    #[arg(long = "overwrite")]
    pub overwrite: bool,
    #[arg(long = "remove")]
    pub remove: bool,
    #[arg(short = 'n', long = "namespace", default_value = "")]
    pub namespace: String,
    #[command(flatten)]
    pub global: Global,
}

pub fn run(a: &LabelArgs) -> Result<()> {
    let info = super::kind_arg(&a.kind)?;
    let (key, value) = match (a.remove, a.label.split_once('=')) {
        (true, None) => (a.label.clone(), None),
        (true, Some(_)) => bail!("--remove takes a label key, not key=value"),
        (false, Some((k, v))) => (k.to_string(), Some(v.to_string())),
        (false, None) => bail!(
            "expected key=value (or a key with --remove), got {:?}",
            a.label
        ),
    };
    let client = super::connect(&a.global)?;
    let mut r = client
        .get(info, &a.namespace, &a.name)
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("resource does not exist: {}({})", info.kind, a.name))?;
    let labels = &mut r.metadata_mut().labels;
    match &value {
        Some(v) => {
            if labels.get(&key).is_some_and(|cur| cur != v) && !a.overwrite {
                bail!("failed to update label of resource: key {key:?} is already present; use --overwrite to change it");
            }
            labels.insert(key.clone(), v.clone());
        }
        None => {
            if labels.remove(&key).is_none() {
                bail!("can not remove label of resource: key {key:?} is not present");
            }
        }
    }
    r.validate()
        .map_err(|e| anyhow!("{} {:?}: {e}", info.kind, a.name))?;
    client.replace(r).map_err(|e| anyhow!("{e}"))?;
    match value {
        Some(_) => println!("Successfully set label {key} on {} {}", info.plural, a.name),
        None => println!(
            "Successfully removed label {key} from {} {}",
            info.plural, a.name
        ),
    }
    Ok(())
}
