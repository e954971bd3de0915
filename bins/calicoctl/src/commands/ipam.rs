//! `ipam show | check | release | configure`, as upstream calicoctl
//! (ctl `commands/ipam/*.go`): same flags, texts and bordered tables.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};
use calico_ipam::check::{merge_reports, CheckResult, Report};
use calico_ipam::{Ipam, IpamConfig, ReleaseOptions};
use clap::{ArgGroup, Args, Subcommand};

use crate::boxed_table;
use crate::Global;

#[derive(Args, Debug)]
pub struct IpamArgs {
    #[command(subcommand)]
    pub cmd: IpamCommand,
}

#[derive(Subcommand, Debug)]
pub enum IpamCommand {
    /// Show details of a Calico assigned IP address, or of overall IP usage.
    Show(ShowArgs),
    /// Check the integrity of the IPAM data structures.
    Check(CheckArgs),
    /// Release a Calico assigned IP address (or the leaked ones of a report).
    Release(ReleaseArgs),
    /// Configure IPAM.
    Configure(ConfigureArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").args(["ip", "show_blocks", "show_borrowed", "show_configuration"])))]
pub struct ShowArgs {
    /// Report whether this specific IP address is in use.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Show detailed information for IP blocks as well as pools.
    #[arg(long = "show-blocks")]
    pub show_blocks: bool,
    /// Show detailed information for "borrowed" IP addresses.
    #[arg(long = "show-borrowed")]
    pub show_borrowed: bool,
    /// Show current Calico IPAM configuration.
    #[arg(long = "show-configuration")]
    pub show_configuration: bool,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print all IPs that are checked.
    #[arg(long = "show-all-ips")]
    pub show_all_ips: bool,
    /// Print all IPs that are leaked or not allocated properly.
    #[arg(long = "show-problem-ips")]
    pub show_problem_ips: bool,
    /// Path to output report file.
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Accepted for compatibility (no Kubernetes here).
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<String>,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// IP address to release.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Release all leaked addresses from the report (with several reports,
    /// only those leaked in all of them).
    #[arg(long = "from-report")]
    pub from_report: Vec<String>,
    /// Force release of leaked addresses (report from another version, or
    /// data store not locked).
    #[arg(long = "force")]
    pub force: bool,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    /// Set StrictAffinity to true/false. When StrictAffinity is true,
    /// borrowing IP addresses is not allowed.
    #[arg(long = "strictaffinity", value_name = "true/false")]
    pub strict_affinity: Option<String>,
    /// Set the maximum number of blocks that can be affine to a host.
    #[arg(long = "max-blocks-per-host", value_name = "number")]
    pub max_blocks_per_host: Option<String>,
    #[command(flatten)]
    pub global: Global,
}

pub fn run(a: &IpamArgs) -> Result<()> {
    match &a.cmd {
        IpamCommand::Show(s) => show(s),
        IpamCommand::Check(c) => check(c),
        IpamCommand::Release(r) => release(r),
        IpamCommand::Configure(c) => configure(c),
    }
}

fn connect(global: &Global) -> Result<Ipam> {
    let client = super::connect(global)?;
    Ok(Ipam::new(client.store().clone()))
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    s.trim()
        .parse()
        .map_err(|_| anyhow!("Error: invalid IP address specified: {s:?}"))
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

// ---------------------------------------------------------------------------
// show

/// Go's `%.5g` for the non-negative whole numbers `ipam show` prints:
/// exact below 100000, else five significant digits in exponent form
/// (`1.0486e+06`), trailing zeros dropped (`1e+05`).
pub fn go_g5(v: f64) -> String {
    if v < 100_000.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4e}");
    let (mant, exp) = s.split_once('e').expect("exponent form");
    let mant = if mant.contains('.') {
        mant.trim_end_matches('0').trim_end_matches('.')
    } else {
        mant
    };
    let exp: i32 = exp.parse().expect("exponent");
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// `N (P%)`: Go's `%.5g (%.f%%)`.
fn with_percent(n: f64, capacity: f64) -> String {
    let pct = if capacity > 0.0 {
        100.0 * n / capacity
    } else {
        0.0
    };
    format!("{} ({pct:.0}%)", go_g5(n))
}

fn usage_row(kind: &str, cidr: &str, in_use: f64, capacity: f64) -> Vec<String> {
    vec![
        kind.to_string(),
        cidr.to_string(),
        go_g5(capacity),
        with_percent(in_use, capacity),
        with_percent(capacity - in_use, capacity),
    ]
}

fn show(a: &ShowArgs) -> Result<()> {
    let ipam = connect(&a.global)?;
    if let Some(ip) = &a.ip {
        return show_ip(&ipam, parse_ip(ip)?);
    }
    if a.show_borrowed {
        return show_borrowed(&ipam);
    }
    if a.show_configuration {
        return show_configuration(&ipam);
    }
    let mut rows = Vec::new();
    for pool in ipam.utilization().map_err(err)? {
        let block_rows = pool.blocks.iter().map(|b| {
            usage_row(
                "Block",
                &b.cidr.to_string(),
                b.in_use as f64,
                b.capacity as f64,
            )
        });
        if let Some(cidr) = pool.cidr {
            rows.push(usage_row(
                "IP Pool",
                &cidr.to_string(),
                pool.in_use() as f64,
                pool.capacity as f64,
            ));
        }
        if a.show_blocks {
            rows.extend(block_rows);
        }
    }
    print!(
        "{}",
        boxed_table::render(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &rows
        )
    );
    Ok(())
}

fn show_ip(ipam: &Ipam, ip: IpAddr) -> Result<()> {
    match ipam.assignment_attributes(ip).map_err(err)? {
        None => println!("{ip} is not assigned"),
        Some(attr) => {
            println!("IP {ip} is in use");
            if attr.secondary.is_empty() {
                println!("No attributes defined");
            } else {
                println!("Attributes:");
                for (k, v) in &attr.secondary {
                    println!("  {k}: {v}");
                }
            }
        }
    }
    Ok(())
}

fn show_borrowed(ipam: &Ipam) -> Result<()> {
    let (borrowed, unclassified) = ipam.borrowed_ips().map_err(err)?;
    let rows: Vec<Vec<String>> = borrowed
        .iter()
        .map(|b| {
            vec![
                b.addr.to_string(),
                b.borrowing_node.clone(),
                b.block.to_string(),
                b.block_owner.clone(),
                b.alloc_type.clone(),
                b.allocated_to.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        boxed_table::render(
            &[
                "IP",
                "BORROWING-NODE",
                "BLOCK",
                "BLOCK OWNER",
                "TYPE",
                "ALLOCATED-TO"
            ],
            &rows
        )
    );
    if unclassified != 0 {
        println!(
            "\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed."
        );
    }
    Ok(())
}

fn show_configuration(ipam: &Ipam) -> Result<()> {
    let c = ipam.get_config().map_err(|e| anyhow!("Error: {e}"))?;
    let rows = vec![
        vec!["StrictAffinity".to_string(), c.strict_affinity.to_string()],
        vec![
            "AutoAllocateBlocks".to_string(),
            c.auto_allocate_blocks.to_string(),
        ],
        vec![
            "MaxBlocksPerHost".to_string(),
            c.max_blocks_per_host.to_string(),
        ],
    ];
    print!("{}", boxed_table::render(&["PROPERTY", "VALUE"], &rows));
    Ok(())
}

// ---------------------------------------------------------------------------
// configure

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn configure(a: &ConfigureArgs) -> Result<()> {
    let strict = match &a.strict_affinity {
        Some(s) => Some(
            parse_go_bool(s)
                .ok_or_else(|| anyhow!("invalid value. Use true or false to set strictaffinity"))?,
        ),
        None => None,
    };
    let max_blocks = match &a.max_blocks_per_host {
        Some(s) => Some(
            s.parse::<u32>()
                .map_err(|_| anyhow!("invalid value for maxblockhost. Use a valid number"))?,
        ),
        None => None,
    };
    if strict.is_none() && max_blocks.is_none() {
        bail!("at least one configuration option must be specified");
    }
    let ipam = connect(&a.global)?;
    let mut cfg: IpamConfig = ipam.get_config().map_err(|e| anyhow!("error: {e}"))?;
    if let Some(s) = strict {
        cfg.strict_affinity = s;
    }
    if let Some(m) = max_blocks {
        cfg.max_blocks_per_host = m;
    }
    ipam.set_config(cfg).map_err(|e| anyhow!("error: {e}"))?;
    if let Some(s) = strict {
        println!("Successfully set StrictAffinity to: {s}");
    }
    if let Some(m) = max_blocks {
        println!("Successfully set MaxBlocksPerHost to: {m}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// check

fn check(a: &CheckArgs) -> Result<()> {
    let ipam = connect(&a.global)?;
    let r = ipam.check().map_err(err)?;
    print!(
        "{}",
        render_check(&r, a.show_all_ips, a.show_all_ips || a.show_problem_ips)
    );
    if let Some(path) = &a.output {
        let report = r.report(super::version::CLIENT_VERSION);
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        std::fs::write(path, text).with_context(|| format!("cannot write report {path}"))?;
    }
    Ok(())
}

/// The check's printout, in upstream's words (plus our OpenStack,
/// orphaned-block and undecodable-entry lines).
pub fn render_check(r: &CheckResult, show_all: bool, show_problems: bool) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "Checking IPAM for inconsistencies...\n");
    let _ = writeln!(w, "Loading all IPAM blocks...");
    let _ = writeln!(w, "Found {} IPAM blocks.", r.blocks.len());
    let num_allocs: usize = r.allocations.values().map(Vec::len).sum();
    for (cidr, aff) in &r.blocks {
        let _ = writeln!(
            w,
            " IPAM block {cidr} affinity={}:",
            aff.as_deref().unwrap_or("<none>")
        );
        if show_all {
            for (ip, allocs) in r.allocations.range(cidr.network()..=cidr.broadcast()) {
                for a in allocs.iter().filter(|a| a.block == Some(*cidr)) {
                    let _ = writeln!(w, "  {ip} allocated; attrs {}", a.attr_string);
                }
            }
        }
    }
    let _ = writeln!(w, "IPAM blocks record {num_allocs} allocations.");
    if !r.corrupt.is_empty() {
        let _ = writeln!(
            w,
            "Found {} IPAM entries that cannot be decoded:",
            r.corrupt.len()
        );
        for (k, e) in &r.corrupt {
            let _ = writeln!(w, "  {k}: {e}");
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "Loading all IPAM pools...");
    for p in &r.active_pools {
        let _ = writeln!(w, "  {p}");
    }
    let _ = writeln!(w, "Found {} active IP pools.\n", r.active_pools.len());
    let _ = writeln!(w, "Loading all nodes.");
    if show_all {
        for (ip, owners) in &r.in_use {
            for o in owners.iter().filter(|o| o.starts_with("Node(")) {
                let _ = writeln!(w, "  {ip} belongs to {o}");
            }
        }
    }
    let _ = writeln!(w, "Found {} node tunnel IPs.\n", r.node_ips);
    let _ = writeln!(w, "Loading all workload endpoints.");
    if show_all {
        for (ip, owners) in &r.in_use {
            for o in owners.iter().filter(|o| o.starts_with("Workload(")) {
                let _ = writeln!(w, "  {ip} belongs to {o}");
            }
        }
    }
    let _ = writeln!(w, "Found {} workload IPs.", r.workload_ips);
    let _ = writeln!(w, "Workloads and nodes are using {} IPs.\n", r.in_use.len());
    let _ = writeln!(w, "Loading all handles");
    const TOP: usize = 20;
    let _ = writeln!(w, "Looking for top (up to {TOP}) nodes by allocations...");
    let mut nodes: Vec<(&String, &usize)> = r.allocations_by_node.iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (n, c) in nodes.iter().take(TOP) {
        let _ = writeln!(w, "  {n} has {c} allocations");
    }
    if !nodes.is_empty() {
        let _ = writeln!(
            w,
            "Node with most allocations has {}; median is {}",
            nodes[0].1,
            nodes[nodes.len() / 2].1
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Scanning for IPs that are allocated but not actually in use..."
    );
    if show_problems {
        for ip in &r.leaked {
            for a in &r.allocations[ip] {
                let _ = writeln!(w, "  {ip} leaked; attrs {}", a.attr_string);
            }
        }
    }
    let _ = writeln!(
        w,
        "Found {} IPs that are allocated in IPAM but not actually in use.",
        r.leaked.len()
    );
    let _ = writeln!(
        w,
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."
    );
    if show_problems {
        for (ip, owners) in &r.multiple_owners {
            let _ = writeln!(w, "  {ip} has multiple owners: {}.", owners.join(", "));
        }
        for (ip, owner) in &r.not_in_pool {
            let _ = writeln!(w, "  {ip} in use by {owner} is not in any active IP pool.");
        }
        for (ip, owner) in &r.not_allocated {
            let _ = writeln!(
                w,
                "  {ip} in use by {owner} and in active IPAM pool but has no IPAM allocation."
            );
        }
    }
    let _ = writeln!(
        w,
        "Found {} in-use IPs that are not in active IP pools.",
        r.not_in_pool.len()
    );
    let _ = writeln!(
        w,
        "Found {} in-use IPs that are in active IP pools but have no corresponding IPAM allocation.",
        r.not_allocated.len()
    );
    if !r.neutron_assigned.is_empty() {
        let _ = writeln!(
            w,
            "Found {} in-use IPs of OpenStack workloads in active IP pools; Neutron assigns those, not Calico IPAM (not a problem).",
            r.neutron_assigned.len()
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "Scanning for IPAM handles with no matching IPs...");
    if show_all {
        for h in &r.leaked_handles {
            let _ = writeln!(w, "  {} doesn't have any active IPs.", h.id);
        }
    }
    let _ = writeln!(
        w,
        "Found {} handles with no matching IPs (and {} handles with matches).",
        r.leaked_handles.len(),
        r.num_handles - r.leaked_handles.len()
    );
    let _ = writeln!(w, "Scanning for IPs with missing handle...");
    if show_problems {
        for h in &r.missing_handles {
            let _ = writeln!(w, "  {h} is in use in a block but doesn't exist.");
        }
    }
    let _ = writeln!(
        w,
        "Found {} handles mentioned in blocks with no matching handle resource.",
        r.missing_handles.len()
    );
    let _ = writeln!(
        w,
        "Scanning for blocks affine to nodes that no longer exist..."
    );
    if show_problems {
        for (cidr, node) in &r.orphaned_blocks {
            let _ = writeln!(
                w,
                "  block {cidr} is affine to node {node}, which does not exist."
            );
        }
    }
    let _ = writeln!(
        w,
        "Found {} blocks affine to nodes that no longer exist.",
        r.orphaned_blocks.len()
    );
    let _ = writeln!(w, "Check complete; found {} problems.", r.problems());
    o
}

// ---------------------------------------------------------------------------
// release

fn release(a: &ReleaseArgs) -> Result<()> {
    if a.ip.is_none() && a.from_report.is_empty() {
        bail!("name an address with --ip=IP or a report with --from-report=FILE");
    }
    let ipam = connect(&a.global)?;
    if !a.from_report.is_empty() {
        release_from_reports(&ipam, a.force, &a.from_report)?;
        println!("You may now unlock the data store.");
        return Ok(());
    }
    let ip = parse_ip(a.ip.as_deref().unwrap_or_default())?;
    let r = ipam
        .release_ips(&[ReleaseOptions::ip(ip)])
        .map_err(|e| anyhow!("error: {e}"))?;
    if !r.not_allocated.is_empty() {
        bail!("IP address {ip} is not assigned");
    }
    println!("Successfully released IP address {ip}");
    Ok(())
}

fn release_from_reports(ipam: &Ipam, force: bool, files: &[String]) -> Result<()> {
    let meta = ipam.cluster_meta().map_err(err)?;
    let mut reports = Vec::new();
    let mut found_current = false;
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read report {f}"))?;
        let r: Report = serde_json::from_str(&text)
            .map_err(|e| anyhow!("report {f} is not a valid IPAM report: {e}"))?;
        if r.cluster_guid != meta.guid {
            bail!("cluster does not match the provided report ({f}): mismatched cluster GUID. Refusing to release");
        }
        if r.version != super::version::CLIENT_VERSION {
            if !force {
                bail!(
                    "the provided report ({f}) was produced using a different version ({}) of calicoctl. Refusing to release",
                    r.version
                );
            }
            println!("WARNING: Report was produced using a different version of calicoctl. Ignoring due to --force option");
        }
        if r.cluster_info_revision == meta.revision {
            found_current = true;
        }
        reports.push(r);
    }
    if !found_current {
        bail!("the provided reports are all stale - at least one should be up-to-date. Please generate a new report while the data store is locked and try again");
    }
    if !meta.locked {
        if !force {
            bail!("data store is not locked. Either lock the data store, or re-run with --force");
        }
        println!("WARNING: Data store is not locked. Ignoring due to --force option");
    }
    let (ips, handles) = merge_reports(&reports);
    if ips.is_empty() {
        println!("Report didn't contain any leaked IPs to clean up.");
    } else {
        println!("Releasing {} old IPs...", ips.len());
        match ipam.release_ips(&ips) {
            Ok(r) => {
                println!("Released {} IPs successfully", r.released.len());
                if !r.not_allocated.is_empty() {
                    println!(
                        "{} addresses marked as leaked in the report had already been cleaned up.",
                        r.not_allocated.len()
                    );
                }
                if !r.skipped.is_empty() {
                    println!(
                        "{} addresses marked as leaked in the report have been re-allocated since; left alone.",
                        r.skipped.len()
                    );
                }
            }
            Err(e) => println!(
                "An error occurred while releasing some IPs: {e}.  Problems are often caused by an out-of-date IPAM report.  Try regenerating the IPAM report and retry."
            ),
        }
    }
    if handles.is_empty() {
        println!("Report didn't contain any handles to clean up.");
    } else {
        println!("Deleting {} handles...", handles.len());
        println!("Key: '.' = Deleted OK; 'x' = skip, handle missing/changed.");
        let (mut ok, mut skipped, mut errors) = (0, 0, 0);
        let mut marks = String::new();
        let mut failures: BTreeMap<String, String> = BTreeMap::new();
        for h in handles {
            let rev: i64 = h.revision.parse().unwrap_or(-1);
            match ipam.delete_handle_if_unchanged(&h.id, rev) {
                Ok(true) => {
                    ok += 1;
                    marks.push('.');
                }
                Ok(false) => {
                    skipped += 1;
                    marks.push('x');
                }
                Err(e) => {
                    errors += 1;
                    failures.insert(h.id, e.to_string());
                }
            }
        }
        println!("{marks}");
        for (id, e) in failures {
            println!("Deleting handle {id} failed: {e}.");
        }
        println!("Released {ok} handles; {skipped} skipped; {errors} errors.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_number_formats() {
        assert_eq!(go_g5(0.0), "0");
        assert_eq!(go_g5(64.0), "64");
        assert_eq!(go_g5(65536.0), "65536");
        assert_eq!(go_g5(99999.0), "99999");
        assert_eq!(go_g5(100000.0), "1e+05");
        assert_eq!(go_g5(1048576.0), "1.0486e+06");
        assert_eq!(go_g5(16777216.0), "1.6777e+07");
        assert_eq!(go_g5(2f64.powi(64)), "1.8447e+19");
        assert_eq!(go_g5(2f64.powi(128)), "3.4028e+38");
        assert_eq!(with_percent(5.0, 65536.0), "5 (0%)");
        assert_eq!(with_percent(65531.0, 65536.0), "65531 (100%)");
        assert_eq!(with_percent(1.0, 2.0), "1 (50%)");
        // Go rounds halves to even, and so does Rust.
        assert_eq!(with_percent(1.0, 8.0), "1 (12%)");
        assert_eq!(with_percent(3.0, 8.0), "3 (38%)");
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
