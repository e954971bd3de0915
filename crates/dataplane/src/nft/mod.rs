//! nftables policy dataplane: one table, `table inet calico`, owned by
//! calico-node. Nothing outside it is ever read or written; the table is
//! never flushed or deleted while running (`flush ruleset` is never used).
//!
//! ## Table layout
//!
//! Base chains (all `policy accept`; they only ever drop workload traffic):
//!
//! | chain | hook | what it does |
//! |---|---|---|
//! | `cali-raw-PREROUTING` | filter prerouting −300 | `iifname vmap @cali-sp-wl` → anti-spoofing per endpoint (before conntrack, so spoofed packets never create flows); unknown `<prefix>*` interfaces dropped |
//! | `cali-FORWARD` | filter forward 0 | `ct state established,related accept`; `iifname vmap @cali-from-wl` (jump `cali-fw-*`); `oifname vmap @cali-to-wl` (goto `cali-tw-*`); unknown `<prefix>*` output interfaces dropped |
//! | `cali-INPUT` | filter input 0 | ct fast path; `<prefix>*` → goto `cali-wl-to-host`; failsafe inbound ports accepted |
//! | `cali-OUTPUT` | filter output 0 | ct fast path; failsafe outbound ports accepted (host → workload is not policed, as Felix) |
//! | `cali-PREROUTING`, `cali-nat-OUTPUT` | nat prerouting/output −100 | floating-IP DNAT via `@cali-fip-dnat4/6` maps |
//! | `cali-POSTROUTING` | nat postrouting 100 | floating-IP SNAT (destination outside all pools) via `@cali-fip-snat4/6`; natOutgoing: `ip saddr @cali-masq4 ip daddr != @cali-pools4 masquerade` (and v6) |
//!
//! Regular chains:
//! * `cali-wl-to-host`: invalid drop, IPv6 ND/MLD accept, OpenStack DHCP/DNS
//!   accept (when an interface prefix is `tap`), the endpoint's egress policy
//!   (via `@cali-from-wl`), then `defaultEndpointToHostAction` (drop/return/accept).
//! * per endpoint: `cali-sp-<iface>` (own addresses + allowSpoofed, DHCP
//!   discovery, IPv6 link-local/DAD, else drop), `cali-fw-<iface>` (egress),
//!   `cali-tw-<iface>` (ingress). The policy chain: invalid drop; clear the
//!   accept/pass marks; per tier with policies for that direction: clear
//!   pass, jump each policy chain while pass is clear, return as soon as
//!   accept is set, then `drop` unless passed (tier default Deny); then each
//!   profile (return if accepted); then drop "no profile matched".
//! * per policy and direction: `cali-pi-<hash>`/`cali-po-<hash>`, profiles
//!   `cali-pri-<hash>`/`cali-pro-<hash>` (16 hex digits of SHA-256 over the
//!   policy id). Allow = set mark 0x10000 + return, Deny = drop, Pass = set
//!   mark 0x20000 + return, Log = `log prefix "<logPrefix> "` and continue.
//!   Every rule has a counter and the comment `<policy> <rule id>`. A rule
//!   of one address family always carries its family. Consecutive rules with
//!   the same action are merged into one set lookup where they differ only in
//!   addresses, protocol and ports (comment `<policy> <first>..<last> (N
//!   merged)`), so their cost does not grow with their number: see [`rules`].
//!
//! Sets and maps: `s4-<hash>`/`s6-<hash>` (one pair per model IP set, interval
//! sets of addresses), `n4-`/`n6-` (named ports: `addr . inet_proto .
//! inet_service`), `cali-pools4/6`, `cali-masq4/6`, `cali-failsafe-in/out`
//! (`inet_proto . inet_service`), verdict maps `cali-sp-wl`, `cali-from-wl`,
//! `cali-to-wl` (ifname → chain) so dispatch cost does not grow with the
//! number of endpoints, and `cali-fip-{d,s}nat{4,6}`.
//!
//! Only policy chains referenced by some endpoint are programmed, and only
//! IP sets referenced by programmed chains (reference counts).
//!
//! ## Restart and drift repair
//!
//! See [`table`]: every chain's first rule carries a fingerprint of the
//! chain's content in its comment, sets are diffed element by element. The
//! first apply (and the one after `resync` or a failed transaction) lists
//! the kernel table once, then writes one transaction that creates what is
//! missing, flushes and refills chains whose fingerprint/rule count differ,
//! adds/deletes set elements, and deletes stale objects last. Chains are
//! never absent between two packets, so established flows continue through
//! the conntrack fast path.

pub mod backend;
pub mod command;
pub mod fake;
pub mod generation;
mod manager;
pub mod render;
pub mod rules;
pub mod table;
pub mod tracked;

pub use backend::{parse_listing_json, ListedChain, ListedSet, ListedTable, NftBackend};
pub use command::CommandNft;
pub use fake::FakeNft;
pub use manager::PolicyManager;
pub use render::{Dir, SetKind};
pub use table::{ChainKind, ChainSpec, Elems, RuleSpec, SetDef, SetSpec, Table};
pub use tracked::GenerationTracked;

#[cfg(test)]
mod tests;
