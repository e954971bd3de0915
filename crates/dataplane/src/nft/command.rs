//! The real backend: runs the `nft` binary (`nft -f -` for a transaction,
//! `nft -j list table inet calico` for a read), optionally inside a named
//! network namespace via `ip netns exec <ns> nft ...` (tests).

use std::io::Write;
use std::process::{Command, Stdio};

use super::backend::{parse_listing_json, ListedTable, NftBackend};
use crate::DataplaneError;

#[derive(Clone, Debug)]
pub struct CommandNft {
    nft: String,
    netns: Option<String>,
}

impl Default for CommandNft {
    fn default() -> Self {
        Self::new()
    }
}

impl CommandNft {
    /// `nft` from `$PATH`, in the current network namespace.
    pub fn new() -> Self {
        CommandNft {
            nft: "nft".into(),
            netns: None,
        }
    }

    /// Run `nft` inside the named network namespace (`ip netns exec NS nft`).
    pub fn in_netns(netns: impl Into<String>) -> Self {
        CommandNft {
            nft: "nft".into(),
            netns: Some(netns.into()),
        }
    }

    /// Use this `nft` binary.
    pub fn with_binary(mut self, nft: impl Into<String>) -> Self {
        self.nft = nft.into();
        self
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, &self.nft]);
                c
            }
            None => Command::new(&self.nft),
        };
        c.args(args);
        c
    }

    fn run(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<(bool, String, String), DataplaneError> {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            DataplaneError::Nft(format!(
                "cannot run `{}`: {e} (is nftables installed? apt-get install nftables)",
                self.nft
            ))
        })?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(text), Some(mut pipe)) => {
                let text = text.to_string();
                // nft may exit early on a parse error; a broken pipe is then
                // expected and the exit status tells the story.
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                }))
            }
            _ => None,
        };
        let out = child
            .wait_with_output()
            .map_err(|e| DataplaneError::Nft(format!("waiting for nft: {e}")))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

impl NftBackend for CommandNft {
    fn apply(&mut self, script: &str) -> Result<(), DataplaneError> {
        let (ok, _, stderr) = self.run(&["-f", "-"], Some(script))?;
        if ok {
            Ok(())
        } else {
            Err(DataplaneError::Nft(format!(
                "nft -f failed: {}",
                stderr.trim()
            )))
        }
    }

    fn list_table(&mut self) -> Result<Option<ListedTable>, DataplaneError> {
        let (ok, stdout, stderr) = self.run(&["-j", "list", "table", "inet", "calico"], None)?;
        if !ok {
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(DataplaneError::Nft(format!(
                "nft -j list table inet calico failed: {}",
                stderr.trim()
            )));
        }
        parse_listing_json(&stdout).map(Some)
    }
}
