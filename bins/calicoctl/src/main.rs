//! calicoctl: manage Calico resources in the datastore, as upstream's
//! calicoctl does (same commands, flags, output shapes and config sources).

mod boxed_table;
mod columns;
mod commands;
mod input;
mod output;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "calicoctl",
    version,
    about = "Manage Calico resources (calico-rs)",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct Global {
    /// Path to the client config file (default /etc/calico/calicoctl.cfg,
    /// else DATASTORE_TYPE / ETCD_* environment, else the embedded store).
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// Log level (accepted for compatibility; errors are always printed).
    #[arg(long = "log-level", global = true, default_value = "panic")]
    pub log_level: String,
    /// Accepted for compatibility with upstream scripts.
    #[arg(long = "allow-version-mismatch", global = true)]
    pub allow_version_mismatch: bool,
    /// Accepted for compatibility (Kubernetes contexts do not apply here).
    #[arg(long = "context", global = true)]
    pub context: Option<String>,
}

#[derive(Args, Clone, Debug)]
pub struct FileArgs {
    /// File, directory or '-' (stdin) holding YAML or JSON resources.
    #[arg(short = 'f', long = "filename")]
    pub filename: String,
    /// Recurse into sub-directories of a directory given with -f.
    #[arg(short = 'R', long = "recursive")]
    pub recursive: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create resources from a file (fails if any exists).
    Create {
        #[command(flatten)]
        files: FileArgs,
        /// Skip resources that already exist instead of failing.
        #[arg(long = "skip-exists")]
        skip_exists: bool,
        #[command(flatten)]
        global: Global,
    },
    /// Create or replace resources from a file.
    Apply {
        #[command(flatten)]
        files: FileArgs,
        #[command(flatten)]
        global: Global,
    },
    /// Replace existing resources from a file.
    Replace {
        #[command(flatten)]
        files: FileArgs,
        #[command(flatten)]
        global: Global,
    },
    /// Delete resources by kind and name, or those named in a file.
    Delete(commands::delete::DeleteArgs),
    /// Show resources.
    Get(commands::get::GetArgs),
    /// Patch a resource with a JSON merge patch.
    Patch(commands::patch::PatchArgs),
    /// Set or remove a label on a resource.
    Label(commands::label::LabelArgs),
    /// IP address management.
    Ipam(commands::ipam::IpamArgs),
    /// Calico node status.
    Node(commands::node::NodeArgs),
    /// Print client and cluster versions.
    Version {
        #[command(flatten)]
        global: Global,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create {
            files,
            skip_exists,
            global,
        } => commands::write::run(
            &global,
            &files,
            commands::write::Mode::Create { skip_exists },
        ),
        Command::Apply { files, global } => {
            commands::write::run(&global, &files, commands::write::Mode::Apply)
        }
        Command::Replace { files, global } => {
            commands::write::run(&global, &files, commands::write::Mode::Replace)
        }
        Command::Delete(a) => commands::delete::run(&a),
        Command::Get(a) => commands::get::run(&a),
        Command::Patch(a) => commands::patch::run(&a),
        Command::Label(a) => commands::label::run(&a),
        Command::Ipam(a) => commands::ipam::run(&a),
        Command::Node(a) => commands::node::run(&a),
        Command::Version { global } => commands::version::run(&global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}
