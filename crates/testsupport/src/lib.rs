//! One way for a test to say it cannot run here.
//!
//! Under `CI=true` a test that lacks root or a tool fails: CI must never pass
//! by not testing. Elsewhere it is skipped, with a `SKIP: <test>: <reason>`
//! line written straight to stderr (libtest captures `eprintln!`, not this),
//! and appended to the file named by `CALICO_TEST_SKIPS` when set, which is
//! how `scripts/test.sh` counts skips in its closing line.
//!
//! ```no_run
//! #[test]
//! fn routes_in_a_namespace() {
//!     if !calico_testsupport::require_root("routes_in_a_namespace") {
//!         return;
//!     }
//!     // ...
//! }
//! ```

pub mod netns;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The variable naming the file that skips are appended to.
pub const SKIPS_ENV: &str = "CALICO_TEST_SKIPS";

/// True when running as root; otherwise skips `test` (or fails under CI).
#[track_caller]
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root || skip(test, "needs root")
}

/// True when every `(tool, Debian package)` is on PATH; otherwise skips
/// `test` naming the first missing one (or fails under CI).
#[track_caller]
pub fn require_tools(test: &str, tools: &[(&str, &str)]) -> bool {
    match tools.iter().find(|(tool, _)| !on_path(tool)) {
        None => true,
        Some((tool, package)) => skip(
            test,
            &format!("`{tool}` is not installed (apt-get install {package})"),
        ),
    }
}

/// Records that `test` cannot run for `reason` and returns false, so callers
/// write `if !require_…(…) { return; }`. Panics under `CI=true` instead.
#[track_caller]
pub fn skip(test: &str, reason: &str) -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let skips = std::env::var_os(SKIPS_ENV).map(PathBuf::from);
    record_skip(ci, skips.as_deref(), &mut std::io::stderr(), test, reason)
}

/// `skip` with its surroundings passed in: whether under CI, the skips file,
/// and where the human-readable line goes.
#[track_caller]
fn record_skip(
    ci: bool,
    skips: Option<&Path>,
    out: &mut dyn Write,
    test: &str,
    reason: &str,
) -> bool {
    if ci {
        panic!("{test}: {reason} (CI=true: a test that cannot run fails)");
    }
    let line = format!("SKIP: {test}: {reason}\n");
    let _ = out.write_all(line.as_bytes());
    if let Some(path) = skips {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!("{test}: cannot record the skip in {}: {e}", path.display());
        }
    }
    false
}

/// Whether an executable file named `tool` is in one of PATH's directories.
pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool)))
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_printed_and_appended_to_the_skips_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("skips");
        let mut out = Vec::new();
        assert!(!record_skip(
            false,
            Some(&file),
            &mut out,
            "t1",
            "needs root"
        ));
        assert!(!record_skip(false, Some(&file), &mut out, "t2", "no nft"));
        let expected = "SKIP: t1: needs root\nSKIP: t2: no nft\n";
        assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn without_a_skips_file_a_skip_is_still_printed() {
        let mut out = Vec::new();
        assert!(!record_skip(false, None, &mut out, "t", "needs root"));
        assert_eq!(String::from_utf8(out).unwrap(), "SKIP: t: needs root\n");
    }

    #[test]
    #[should_panic(expected = "t: needs root (CI=true: a test that cannot run fails)")]
    fn under_ci_a_skip_fails() {
        record_skip(true, None, &mut Vec::new(), "t", "needs root");
    }

    #[test]
    fn tools_are_found_on_path_and_missing_ones_are_not() {
        assert!(on_path("sh"));
        assert!(!on_path("calico-no-such-tool"));
    }
}
