//! Policies: what guestview allows, alerts on, denies or kills.
//!
//! A policy is a TOML file (the contract of `docs/policy.md`) or a
//! Docker/OCI seccomp profile (JSON, translated by [`oci`]). It is parsed
//! and validated here, before any guest runs: a malformed policy is refused
//! with its file, line, column and the reason ([`PolicyError`]). The
//! matching engine, [`Policy::decide`], judges one call: rules are tried in
//! order, the first that matches decides, the default decides when none
//! does. The layers that enforce the decisions live elsewhere
//! ([`layers`] says which one takes each rule, [`host`] compiles the host
//! seccomp layer and answers its notifications).

pub mod addr;
pub mod flags;
pub mod glob;

pub mod host;
pub mod layers;
pub mod names;
pub mod oci;
mod toml_file;

use shmem_proto::Arch;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use addr::AddrMatch;
pub use flags::FlagsMatch;
pub use glob::Glob;

/// Largest policy file accepted.
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// Most rules in one policy.
pub const MAX_RULES: usize = 4096;

/// What a rule (or the default) does with a call it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Let it run.
    Allow,
    /// Let it run and emit an `alert` record.
    Alert,
    /// Refuse it with an errno (EPERM unless the rule says otherwise); alerted.
    Deny,
    /// Kill the guest process (its whole tree); alerted.
    Kill,
}

impl Action {
    /// Its name in policies and output.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Deny => "deny",
            Action::Kill => "kill",
        }
    }

    /// Parse a policy's spelling.
    pub fn from_name(s: &str) -> Option<Action> {
        Some(match s {
            "allow" => Action::Allow,
            "alert" => Action::Alert,
            "deny" => Action::Deny,
            "kill" => Action::Kill,
            _ => return None,
        })
    }

    /// Does this action produce an `alert` record?
    pub fn alerts(self) -> bool {
        self != Action::Allow
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A raw comparison of one argument register (from OCI profiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCmp {
    /// Argument index, 0–5.
    pub index: usize,
    /// The comparison.
    pub op: CmpOp,
    /// `value` of the profile.
    pub value: u64,
    /// `valueTwo` (the expected result of `MaskedEq`).
    pub value_two: u64,
}

/// libseccomp's comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `SCMP_CMP_NE`
    Ne,
    /// `SCMP_CMP_LT`
    Lt,
    /// `SCMP_CMP_LE`
    Le,
    /// `SCMP_CMP_EQ`
    Eq,
    /// `SCMP_CMP_GE`
    Ge,
    /// `SCMP_CMP_GT`
    Gt,
    /// `SCMP_CMP_MASKED_EQ`: `arg & value == value_two`.
    MaskedEq,
}

impl ArgCmp {
    /// Does `arg` satisfy the comparison?
    pub fn holds(&self, arg: u64) -> bool {
        match self.op {
            CmpOp::Ne => arg != self.value,
            CmpOp::Lt => arg < self.value,
            CmpOp::Le => arg <= self.value,
            CmpOp::Eq => arg == self.value,
            CmpOp::Ge => arg >= self.value,
            CmpOp::Gt => arg > self.value,
            CmpOp::MaskedEq => arg & self.value == self.value_two,
        }
    }
}

/// One rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its name (unique in the policy), shown in alerts.
    pub name: String,
    /// Guest syscall names as written.
    pub syscalls: Vec<String>,
    /// Their architecture-neutral forms ([`names::canonical`]).
    canon: Vec<String>,
    /// `path`: glob on the path the call names.
    pub path: Option<Glob>,
    /// `addr`: socket address matcher.
    pub addr: Option<AddrMatch>,
    /// `uid`: user or group ids among the call's id arguments.
    pub uid: Option<Vec<u32>>,
    /// `flags`: open flags.
    pub flags: Option<FlagsMatch>,
    /// Raw argument comparisons (OCI profiles only), all must hold.
    pub args: Vec<ArgCmp>,
    /// Only on these guest architectures (OCI profiles only); `None`: all.
    pub arches: Option<Vec<Arch>>,
    /// What it does.
    pub action: Action,
    /// Errno name a `deny` returns (`EPERM` unless an OCI profile says otherwise).
    pub errno: String,
    /// Line of the rule in its file (1-based; 0 if unknown).
    pub line: usize,
}

impl Rule {
    /// Does the rule decide anything by argument (rather than by syscall alone)?
    pub fn has_matchers(&self) -> bool {
        self.path.is_some()
            || self.addr.is_some()
            || self.uid.is_some()
            || self.flags.is_some()
            || !self.args.is_empty()
    }

    /// Does the rule name this call (by any of its names)?
    pub fn names(&self, call_name: &str) -> bool {
        let c = names::canonical(call_name);
        self.canon.iter().any(|n| n == c)
    }

    /// Does the rule match `call` on `arch`?
    pub fn matches(&self, arch: Arch, call: &Call<'_>) -> bool {
        self.names(call.name) && self.applies_on(arch) && self.matches_args(arch, call)
    }

    /// Does the rule apply on guest architecture `arch` (OCI `arches`)?
    pub fn applies_on(&self, arch: Arch) -> bool {
        self.arches.as_ref().is_none_or(|a| a.contains(&arch))
    }

    /// Do the rule's argument matchers hold for `call` (whatever its
    /// name), its registers and flags in `arch`'s numbering? The host layer
    /// asks this of the host calls QEMU made for the calls the rule names.
    pub fn matches_args(&self, arch: Arch, call: &Call<'_>) -> bool {
        if let Some(g) = &self.path {
            match call.path {
                Some(p) if g.matches(&normalize(p)) => {}
                _ => return false,
            }
        }
        if let Some(m) = &self.addr {
            match &call.addr {
                Some(a) if m.matches(a) => {}
                _ => return false,
            }
        }
        if let Some(ids) = &self.uid {
            let unchanged = |v: u64| {
                let v = v & 0xffff_ffff;
                v == 0xffff_ffff || (v == 0xffff && !call.name.ends_with("32") && arch == Arch::Arm)
            };
            let any = names::id_args(call.name).iter().any(|&i| {
                let v = call.args[i];
                !unchanged(v) && ids.contains(&((v & 0xffff_ffff) as u32))
            });
            if !any {
                return false;
            }
        }
        if let Some(f) = &self.flags {
            let Some(v) = call.open_flags(arch) else {
                return false;
            };
            if !f.matches(arch, v) {
                return false;
            }
        }
        let wide = matches!(
            arch,
            Arch::Aarch64 | Arch::Ppc64le | Arch::Riscv64 | Arch::X86_64
        );
        self.args.iter().all(|c| {
            let v = call.args.get(c.index).copied().unwrap_or(0);
            c.holds(if wide { v } else { v & 0xffff_ffff })
        })
    }
}

/// `[limits]`: rates per traced process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// New processes per second; more are refused and alerted.
    pub fork_per_second: Option<u32>,
    /// `connect` calls per second; more are refused and alerted.
    pub connect_per_second: Option<u32>,
}

/// The format a policy came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// guestview's TOML.
    Toml,
    /// A Docker/OCI seccomp profile.
    Oci,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Action when no rule matches.
    pub default: Action,
    /// Errno of a default `deny`.
    pub default_errno: String,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// Rate limits.
    pub limits: Limits,
    /// The file it came from.
    pub file: PathBuf,
    /// Its format.
    pub source: Source,
    /// What an import could not express exactly (OCI), in words.
    pub notes: Vec<String>,
}

/// One call to judge. `args` are the call's argument registers in the
/// numbering of the architecture passed to [`Policy::decide`]; what lives
/// in memory is decoded by the caller (the layer that read it).
#[derive(Clone, Debug, Default)]
pub struct Call<'a> {
    /// Syscall name (guest or host name, any variant).
    pub name: &'a str,
    /// Argument registers.
    pub args: [u64; 6],
    /// The path the call names, absolute (callers resolve relative paths
    /// against the cwd or directory descriptor); `None` if it has none or
    /// it could not be read.
    pub path: Option<&'a str>,
    /// The socket address it names (IPv4/IPv6 only).
    pub addr: Option<SocketAddr>,
    /// Open flags when they are in memory (`openat2`'s `open_how`).
    pub flags: Option<u64>,
}

impl Call<'_> {
    /// The open flags of an open call, in `arch`'s numbering.
    pub fn open_flags(&self, arch: Arch) -> Option<u64> {
        if let Some(f) = self.flags {
            return Some(f);
        }
        if names::canonical(self.name) == "creat" {
            let v = |n| flags::value(arch, n).unwrap_or(0);
            return Some(v("O_CREAT") | v("O_WRONLY") | v("O_TRUNC"));
        }
        names::flags_arg(self.name).map(|i| self.args[i])
    }
}

/// What the policy decided for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The action.
    pub action: Action,
    /// The rule that decided (`None`: the default).
    pub rule: Option<&'p str>,
    /// Errno name of a deny.
    pub errno: &'p str,
}

impl<'p> Decision<'p> {
    /// The stricter of two decisions (kill > deny > alert > allow).
    pub fn stricter(self, other: Decision<'p>) -> Decision<'p> {
        if other.action > self.action {
            other
        } else {
            self
        }
    }
}

/// Lexically normalise an absolute path (`//`, `.`, `..`), so that
/// `/etc/./shadow` and `/tmp/../etc/shadow` meet the globs written for
/// `/etc/shadow`. Relative paths are returned as they are.
pub fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.starts_with('/')
        || !(path.contains("//") || path.contains("/.") || (path.ends_with('/') && path.len() > 1))
    {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    std::borrow::Cow::Owned(format!("/{}", parts.join("/")))
}

/// Resolve `path` against the directory `base` (a cwd or the directory a
/// descriptor names) when it is relative.
pub fn resolve(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        normalize(&format!("{}/{path}", base.trim_end_matches('/'))).into_owned()
    }
}

/// A policy was refused: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {reason}", file.display())]
pub struct PolicyError {
    /// The policy file.
    pub file: PathBuf,
    /// Line (1-based; 0 when the error is about the file as a whole).
    pub line: usize,
    /// Column (1-based).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Policy {
    /// Read and validate the policy in `path` (TOML, or an OCI seccomp
    /// profile when it is JSON).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let whole = |reason: String| PolicyError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            reason,
        };
        let meta =
            std::fs::metadata(path).map_err(|e| whole(format!("cannot read the policy: {e}")))?;
        if meta.len() > MAX_POLICY_BYTES as u64 {
            return Err(whole(format!(
                "policy is {} bytes, more than the {MAX_POLICY_BYTES} accepted",
                meta.len()
            )));
        }
        let bytes =
            std::fs::read(path).map_err(|e| whole(format!("cannot read the policy: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column) = line_col(
                &String::from_utf8_lossy(e.as_bytes()),
                e.utf8_error().valid_up_to(),
            );
            PolicyError {
                file: path.to_owned(),
                line,
                column,
                reason: "the policy is not UTF-8 text".into(),
            }
        })?;
        Policy::parse(&text, path)
    }

    /// Validate policy `text` (named `file` in errors): OCI JSON when it
    /// starts with `{`, TOML otherwise.
    pub fn parse(text: &str, file: &Path) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError {
                file: file.to_owned(),
                line: 0,
                column: 0,
                reason: format!("policy larger than {MAX_POLICY_BYTES} bytes"),
            });
        }
        if text.trim_start().starts_with('{') {
            oci::parse(text, file)
        } else {
            toml_file::parse(text, file)
        }
    }

    /// Judge `call` on `arch`: the first rule that matches decides, the
    /// default when none does.
    pub fn decide(&self, arch: Arch, call: &Call<'_>) -> Decision<'_> {
        for r in &self.rules {
            if r.matches(arch, call) {
                return Decision {
                    action: r.action,
                    rule: Some(&r.name),
                    errno: &r.errno,
                };
            }
        }
        Decision {
            action: self.default,
            rule: None,
            errno: &self.default_errno,
        }
    }

    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Builds a [`Rule`] from checked parts (the parsers' common tail).
pub(crate) struct RuleParts {
    pub name: String,
    pub syscalls: Vec<String>,
    pub path: Option<Glob>,
    pub addr: Option<AddrMatch>,
    pub uid: Option<Vec<u32>>,
    pub flags: Option<FlagsMatch>,
    pub args: Vec<ArgCmp>,
    pub arches: Option<Vec<Arch>>,
    pub action: Action,
    pub errno: String,
    pub line: usize,
}

impl RuleParts {
    pub(crate) fn build(self) -> Rule {
        let mut canon: Vec<String> = self
            .syscalls
            .iter()
            .map(|s| names::canonical(s).to_owned())
            .collect();
        canon.sort();
        canon.dedup();
        Rule {
            name: self.name,
            syscalls: self.syscalls,
            canon,
            path: self.path,
            addr: self.addr,
            uid: self.uid,
            flags: self.flags,
            args: self.args,
            arches: self.arches,
            action: self.action,
            errno: self.errno,
            line: self.line,
        }
    }
}

#[cfg(test)]
mod tests;
