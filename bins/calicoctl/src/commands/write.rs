//! `create`, `apply` and `replace`: validate every document of the input,
//! then write them all (in as few transactions as the datastore allows).

use anyhow::{anyhow, Result};
use calico_client::client::{default_namespace, prepare, ClientError, WriteMode};

use crate::input::{read_resources_partial, InputError, Sourced};
use crate::{FileArgs, Global};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Create { skip_exists: bool },
    Apply,
    Replace,
}

impl Mode {
    fn verb(self) -> &'static str {
        match self {
            Mode::Create { .. } => "created",
            Mode::Apply => "applied",
            Mode::Replace => "replaced",
        }
    }
    fn write_mode(self) -> WriteMode {
        match self {
            Mode::Create { .. } => WriteMode::Create,
            Mode::Apply => WriteMode::Apply,
            Mode::Replace => WriteMode::Replace,
        }
    }
}

/// Formats input errors, one per line, and says nothing was written.
pub fn input_failure(errors: &[InputError]) -> anyhow::Error {
    let mut s = String::new();
    for e in errors {
        s.push_str(&format!("error: {e}\n"));
    }
    let n = errors.len();
    s.push_str(&format!(
        "{n} error{} found; nothing was written",
        if n == 1 { "" } else { "s" }
    ));
    anyhow!(s)
}

/// Decodes and validates (with defaults applied) every document; returns
/// all errors. The documents keep only the default namespace: the client
/// applies the other defaults when writing, and needs to see what was given
/// (upstream stores a policy's tier only when it was given).
pub fn load_valid(files: &FileArgs) -> Result<Vec<Sourced>> {
    let (mut docs, mut errors) =
        read_resources_partial(&files.filename, files.recursive).map_err(|e| input_failure(&e))?;
    for d in docs.iter_mut() {
        default_namespace(&mut d.resource);
        let mut defaulted = d.resource.clone();
        prepare(&mut defaulted);
        if let Err(errs) = defaulted.validate() {
            for fe in errs.0 {
                errors.push(InputError::at(d, Some(fe.field), fe.message));
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.document).cmp(&(&b.file, b.document)));
        return Err(input_failure(&errors));
    }
    if docs.is_empty() {
        return Err(anyhow!("{}: no resources found", files.filename));
    }
    Ok(docs)
}

/// Maps a client error back to the document it concerns.
pub fn client_failure(e: ClientError, docs: &[Sourced]) -> anyhow::Error {
    let id = match &e {
        ClientError::Invalid { id, .. }
        | ClientError::AlreadyExists { id }
        | ClientError::NotFound { id }
        | ClientError::Conflict { id, .. } => Some(id.clone()),
        _ => None,
    };
    let doc = id.and_then(|id| docs.iter().find(|d| d.resource.display_id() == id));
    match (doc, e) {
        (Some(d), ClientError::Invalid { errors, .. }) => {
            let errs: Vec<InputError> = errors
                .0
                .into_iter()
                .map(|fe| InputError::at(d, Some(fe.field), fe.message))
                .collect();
            input_failure(&errs)
        }
        (Some(d), other) => input_failure(&[InputError::at(d, None, other.to_string())]),
        (None, other) => anyhow!("{other}"),
    }
}

pub fn run(global: &Global, files: &FileArgs, mode: Mode) -> Result<()> {
    let mut docs = load_valid(files)?;
    let client = super::connect(global)?;
    let mut skipped = 0;
    if let Mode::Create { skip_exists: true } = mode {
        let mut keep = Vec::with_capacity(docs.len());
        for d in docs {
            let m = d.resource.metadata();
            let exists = client
                .get(d.resource.info(), &m.namespace, &m.name)
                .map_err(|e| anyhow!("{e}"))?
                .is_some();
            if exists {
                skipped += 1;
            } else {
                keep.push(d);
            }
        }
        docs = keep;
    }
    let resources = docs.iter().map(|d| d.resource.clone()).collect();
    let written = if docs.is_empty() {
        Vec::new()
    } else {
        client
            .write_all(resources, mode.write_mode())
            .map_err(|e| client_failure(e, &docs))?
    };
    let kinds = super::kind_phrase(written.iter().map(|w| w.resource.kind()));
    println!(
        "Successfully {} {}{} resource(s)",
        mode.verb(),
        written.len(),
        kinds
    );
    if skipped > 0 {
        println!("Skipped {skipped} resource(s) that already exist");
    }
    warn_shadowed(&client, &written);
    Ok(())
}

/// Warns when a written policy makes later Allow rules unreachable (or is
/// itself made unreachable) for the endpoints they select: the ordering
/// trap of a default-deny with an explicit Deny rule and no `order`.
fn warn_shadowed(client: &calico_client::Client, written: &[calico_client::client::Written]) {
    use calico_api::{lookup_kind, AnyResource};
    let is_policy = |r: &AnyResource| {
        matches!(
            r,
            AnyResource::NetworkPolicy(_) | AnyResource::GlobalNetworkPolicy(_)
        )
    };
    if !written.iter().any(|w| is_policy(&w.resource)) {
        return;
    }
    let mut policies = Vec::new();
    for kind in ["NetworkPolicy", "GlobalNetworkPolicy"] {
        if let Ok(l) = client.list(lookup_kind(kind).expect("registered"), None) {
            policies.extend(l.items);
        }
    }
    // Endpoints matter only when some policy denies unconditionally; a large
    // cluster's endpoints are not read for every policy apply otherwise.
    if !calico_calc::analysis::any_unconditional_deny(&policies) {
        return;
    }
    let endpoints = client
        .list_as::<calico_api::endpoint::WorkloadEndpoint>(None)
        .unwrap_or_default();
    let touched = |kind: calico_calc::model::PolicyKind, ns: &str, name: &str| {
        written.iter().any(|w| {
            let m = w.resource.metadata();
            let k = match w.resource {
                AnyResource::NetworkPolicy(_) => calico_calc::model::PolicyKind::NetworkPolicy,
                AnyResource::GlobalNetworkPolicy(_) => {
                    calico_calc::model::PolicyKind::GlobalNetworkPolicy
                }
                _ => return false,
            };
            k == kind && m.name == name && (ns.is_empty() || m.namespace == ns)
        })
    };
    for s in calico_calc::analysis::shadowed_allows(&policies, &endpoints) {
        if !touched(s.earlier.kind, &s.earlier.namespace, &s.earlier.name)
            && !touched(s.later.kind, &s.later.namespace, &s.later.name)
        {
            continue;
        }
        eprintln!(
            "warning: {} ({:?} rule {}: Deny with no match criteria) runs before {} in the same tier, so the latter's {:?} Allow rules can never be reached for the endpoints it selects; set `order` on both (lower runs first) or drop the explicit Deny and rely on the deny at the end of the tier",
            s.earlier,
            s.direction,
            s.rule + 1,
            s.later,
            s.direction,
        );
    }
}
