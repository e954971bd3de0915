//! The invalid-document corpus: every file in `tests/fixtures/invalid/` must
//! be rejected by `calicoctl apply` with the expected message, at the right
//! document and field, and must leave the datastore exactly as it was.
//!
//! Fixture format (`NN-short-name.yaml`): a leading block of comment lines
//!
//! ```text
//! # expect: <substring of the error output>      (required)
//! # document: <N, the number of the invalid document>   (required)
//! # field: <field path, e.g. spec.cidr>          (optional)
//! # setup: <file applied first, relative to the fixture>  (optional)
//! ```
//!
//! then the documents; usually a valid one first, so the test also proves
//! that valid documents of a rejected file are not written. JSON fixtures
//! (`NN-name.json`) cannot carry comments: their headers live in
//! `NN-name.json.expect`.
//!
//! "Nothing written" is checked through the public interface: one
//! `calicoctl get <kind> -A -o json` per kind the fixture (or its setup)
//! mentions, plus ippools, before and after the apply. The JSON list carries
//! the store revision, so any write at all would show.
//!
//! Every fixture is checked and all failures are reported together.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIN_FIXTURES: usize = 45;

fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/invalid");
    dir.canonicalize().unwrap_or(dir)
}

#[derive(Debug)]
struct Fixture {
    path: PathBuf,
    text: String,
    expect: String,
    document: usize,
    field: Option<String>,
    setup: Option<PathBuf>,
}

/// `# key: value` lines of the leading comment block.
fn header_lines(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .take_while(|l| l.starts_with('#') || l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.trim_start_matches('#').split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn load_fixture(path: &Path) -> Result<Fixture, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let header_text = if path.extension().is_some_and(|e| e == "json") {
        let side = PathBuf::from(format!("{}.expect", path.display()));
        std::fs::read_to_string(&side)
            .map_err(|e| format!("JSON fixture needs its headers in {}: {e}", side.display()))?
    } else {
        text.clone()
    };
    let headers = header_lines(&header_text);
    let get = |k: &str| {
        headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let expect = get("expect")
        .filter(|e| !e.is_empty())
        .ok_or("missing `# expect: <message>` header")?;
    let document = get("document")
        .ok_or("missing `# document: N` header")?
        .parse::<usize>()
        .map_err(|e| format!("bad `# document:` header: {e}"))?;
    let setup = get("setup").map(|s| path.parent().unwrap().join(s));
    if let Some(s) = &setup {
        if !s.is_file() {
            return Err(format!("setup file {} does not exist", s.display()));
        }
    }
    Ok(Fixture {
        path: path.to_path_buf(),
        text,
        expect,
        document,
        field: get("field"),
        setup,
    })
}

/// Values of every `kind:` / `"kind":` key in a YAML or JSON text.
fn mentioned_kinds(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("kind") {
        let after = &rest[i + 4..];
        rest = after;
        let after = after.trim_start_matches('"').trim_start();
        let Some(after) = after.strip_prefix(':') else {
            continue;
        };
        let value: String = after
            .trim_start()
            .trim_start_matches('"')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !value.is_empty() {
            out.push(value);
        }
    }
    out
}

/// Plurals of the stored kinds to snapshot for a fixture.
fn kinds_to_check(texts: &[&str]) -> Vec<&'static calico_api::KindInfo> {
    let mut plurals = BTreeSet::from(["ippools"]);
    for t in texts {
        for k in mentioned_kinds(t) {
            if let Some(info) = calico_api::lookup_kind(&k) {
                plurals.insert(info.plural);
            }
        }
    }
    plurals
        .into_iter()
        .map(|p| calico_api::lookup_kind(p).expect("plural resolves"))
        .collect()
}

struct Env {
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    db: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("calico.db");
        let cfg = dir.path().join("calicoctl.cfg");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: local\n  datastorePath: {}\n",
                db.display()
            ),
        )
        .expect("write config");
        Env { _dir: dir, cfg, db }
    }

    fn calicoctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_calicoctl"))
            .args(args)
            .arg("-c")
            .arg(&self.cfg)
            .env("DATASTORE_TYPE", "local")
            .env("DATASTORE_PATH", &self.db)
            .env_remove("ETCD_ENDPOINTS")
            .env_remove("CALICO_ETCD_ENDPOINTS")
            .output()
            .expect("run calicoctl")
    }

    fn snapshot(&self, kinds: &[&'static calico_api::KindInfo]) -> Result<Vec<String>, String> {
        kinds
            .iter()
            .map(|k| {
                let out = self.calicoctl(&["get", k.plural, "-A", "-o", "json"]);
                if out.status.success() {
                    Ok(format!(
                        "{}: {}",
                        k.plural,
                        String::from_utf8_lossy(&out.stdout)
                    ))
                } else {
                    Err(format!(
                        "`calicoctl get {} -A -o json` failed: {}",
                        k.plural,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            })
            .collect()
    }
}

/// Runs one fixture; returns every problem found (empty = pass).
fn check(fx: &Fixture) -> Vec<String> {
    let mut problems = Vec::new();
    let env = Env::new();
    let setup_text = match &fx.setup {
        Some(s) => {
            let out = env.calicoctl(&["apply", "-f", &s.display().to_string()]);
            if !out.status.success() {
                return vec![format!(
                    "setup {} failed: {}",
                    s.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )];
            }
            std::fs::read_to_string(s).unwrap_or_default()
        }
        None => String::new(),
    };
    let kinds = kinds_to_check(&[&fx.text, &setup_text]);
    let before = match env.snapshot(&kinds) {
        Ok(s) => s,
        Err(e) => return vec![format!("before apply: {e}")],
    };

    let file = fx.path.display().to_string();
    let out = env.calicoctl(&["apply", "-f", &file]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.code() != Some(1) {
        problems.push(format!(
            "expected exit code 1, got {:?} (stdout: {})",
            out.status.code(),
            stdout.trim()
        ));
    }
    let mut want = vec![
        ("the expected message", fx.expect.clone()),
        ("the file name", file.clone()),
        ("the document number", format!("document {}", fx.document)),
        ("the summary", "nothing was written".to_string()),
    ];
    if let Some(f) = &fx.field {
        want.push(("the field path", format!("field {f}: ")));
    }
    for (what, s) in want {
        if !stderr.contains(&s) {
            problems.push(format!("stderr lacks {what} {s:?}"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!(
            "stderr was:\n      {}",
            stderr.trim().replace('\n', "\n      ")
        ));
    }

    match env.snapshot(&kinds) {
        Ok(after) => {
            for (b, a) in before.iter().zip(&after) {
                if a != b {
                    problems.push(format!(
                        "the datastore changed although the apply failed:\n      before: {b}\n      after:  {a}"
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("after apply: {e}")),
    }
    problems
}

#[test]
fn every_invalid_fixture_is_rejected_and_nothing_is_written() {
    let dir = corpus_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    paths.sort();
    assert!(
        paths.len() >= MIN_FIXTURES,
        "the corpus in {} has {} fixtures; at least {MIN_FIXTURES} expected",
        dir.display(),
        paths.len()
    );

    // A few workers: the fixtures are independent (one temp store each).
    let workers = 3;
    let mut results: Vec<(PathBuf, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let paths = &paths;
                s.spawn(move || {
                    paths
                        .iter()
                        .skip(w)
                        .step_by(workers)
                        .map(|p| {
                            let problems = match load_fixture(p) {
                                Ok(fx) => check(&fx),
                                Err(e) => vec![format!("bad fixture: {e}")],
                            };
                            (p.clone(), problems)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    results.sort();

    let failures: Vec<String> = results
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(path, problems)| {
            format!(
                "{}:\n    - {}",
                path.file_name().unwrap().to_string_lossy(),
                problems.join("\n    - ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} invalid fixtures failed:\n\n{}\n",
        failures.len(),
        results.len(),
        failures.join("\n\n")
    );
}

#[test]
fn kinds_are_found_in_yaml_and_json() {
    let yaml = "apiVersion: projectcalico.org/v3\nkind: IPPool\n---\nkind:   globalnetworkpolicy\n";
    assert_eq!(mentioned_kinds(yaml), ["IPPool", "globalnetworkpolicy"]);
    let json = r#"{"kind": "List", "items": [{"kind":"BGPPeer"}]}"#;
    assert_eq!(mentioned_kinds(json), ["List", "BGPPeer"]);
    let plurals: Vec<&str> = kinds_to_check(&[yaml, json])
        .iter()
        .map(|k| k.plural)
        .collect();
    assert_eq!(plurals, ["bgppeers", "globalnetworkpolicies", "ippools"]);
}
