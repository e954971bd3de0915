//! Reading resources from `-f` arguments: a file, `-` for stdin, or a
//! directory (`-R` to recurse), YAML or JSON with many documents. Every
//! document is decoded and validated before anything is written; errors name
//! the file, the document, the resource and the field.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use calico_api::decode::decode_documents_partial;
use calico_api::AnyResource;

/// A resource and where it came from.
#[derive(Debug, Clone)]
pub struct Sourced {
    pub file: String,
    pub document: usize,
    pub resource: AnyResource,
}

/// One problem in one input document.
#[derive(Debug, Clone)]
pub struct InputError {
    pub file: String,
    pub document: Option<usize>,
    pub resource: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(r) = &self.resource {
            write!(f, " ({r})")?;
        }
        if let Some(field) = self.field.as_ref().filter(|f| !f.is_empty()) {
            write!(f, ", field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl InputError {
    pub fn at(s: &Sourced, field: Option<String>, message: String) -> InputError {
        InputError {
            file: s.file.clone(),
            document: Some(s.document),
            resource: Some(describe(&s.resource)),
            field,
            message,
        }
    }
}

/// `IPPool "default-pool"` / `NetworkPolicy "production/web-db-policy"`.
pub fn describe(r: &AnyResource) -> String {
    let m = r.metadata();
    if m.namespace.is_empty() {
        format!("{} {:?}", r.kind(), m.name)
    } else {
        format!("{} \"{}/{}\"", r.kind(), m.namespace, m.name)
    }
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let rd = std::fs::read_dir(dir).map_err(|e| InputError {
        file: dir.display().to_string(),
        document: None,
        resource: None,
        field: None,
        message: format!("cannot read directory: {e}"),
    })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                collect_files(&p, recursive, out)?;
            }
        } else if is_manifest(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads and decodes every document named by `-f`. All errors are returned
/// together; on error nothing should be written.
pub fn read_resources(arg: &str, recursive: bool) -> Result<Vec<Sourced>, Vec<InputError>> {
    let (docs, errors) = read_resources_partial(arg, recursive)?;
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

/// Reads every document; returns those that decoded and the errors of the
/// rest (a file that cannot be read at all is an immediate error).
pub fn read_resources_partial(
    arg: &str,
    recursive: bool,
) -> Result<(Vec<Sourced>, Vec<InputError>), Vec<InputError>> {
    let mut texts: Vec<(String, String)> = Vec::new();
    let read_err = |file: String, message: String| {
        vec![InputError {
            file,
            document: None,
            resource: None,
            field: None,
            message,
        }]
    };
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| read_err("<stdin>".into(), format!("cannot read: {e}")))?;
        texts.push(("<stdin>".into(), s));
    } else {
        let p = Path::new(arg);
        if p.is_dir() {
            let mut files = Vec::new();
            collect_files(p, recursive, &mut files).map_err(|e| vec![e])?;
            if files.is_empty() {
                return Err(read_err(
                    arg.into(),
                    "no .yaml, .yml or .json files in this directory".into(),
                ));
            }
            for f in files {
                let s = std::fs::read_to_string(&f)
                    .map_err(|e| read_err(f.display().to_string(), format!("cannot read: {e}")))?;
                texts.push((f.display().to_string(), s));
            }
        } else {
            let s = std::fs::read_to_string(p)
                .map_err(|e| read_err(arg.into(), format!("cannot read: {e}")))?;
            texts.push((arg.into(), s));
        }
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in texts {
        let (docs, errs) = decode_documents_partial(&text);
        out.extend(docs.into_iter().map(|d| Sourced {
            file: file.clone(),
            document: d.document,
            resource: d.resource,
        }));
        errors.extend(errs.into_iter().map(|e| InputError {
            file: file.clone(),
            document: Some(e.document),
            resource: match (e.kind, e.name) {
                (Some(k), Some(n)) if !n.is_empty() => Some(match e.namespace.as_deref() {
                    Some(ns) if !ns.is_empty() => format!("{k} \"{ns}/{n}\""),
                    _ => format!("{k} {n:?}"),
                }),
                (Some(k), _) => Some(k),
                _ => None,
            },
            field: e.field,
            message: e.message,
        }));
    }
    Ok((out, errors))
}
