//! Docker/OCI seccomp profiles (the JSON of `docker run --security-opt
//! seccomp=FILE` and of the OCI runtime spec's `linux.seccomp`), translated
//! into a [`Policy`].
//!
//! | profile | policy |
//! | --- | --- |
//! | `defaultAction`, `defaultErrnoRet` | `default` (and its errno) |
//! | `syscalls[].names` (or the older `name`) | `syscalls` of one rule per entry |
//! | `syscalls[].action`, `errnoRet` | `action` (and the errno of a deny) |
//! | `syscalls[].args[]` `index`/`op`/`value`/`valueTwo` | raw argument comparisons, all must hold |
//! | `includes`/`excludes` `arches` | the rule applies on those guest architectures only |
//!
//! Actions: `SCMP_ACT_ALLOW` → allow, `SCMP_ACT_LOG` → alert,
//! `SCMP_ACT_ERRNO` → deny (with its errno, EPERM by default),
//! `SCMP_ACT_KILL`, `SCMP_ACT_KILL_PROCESS`, `SCMP_ACT_KILL_THREAD` → kill.
//!
//! What a policy cannot express is said in [`Policy::notes`], never
//! silently dropped: `SCMP_ACT_TRAP` (a SIGSYS the program could catch)
//! becomes kill, `SCMP_ACT_TRACE` (a ptracer's decision) becomes deny,
//! `SCMP_ACT_KILL_THREAD` kills the whole process, entries that apply only
//! with a capability (`includes.caps`) are dropped because the guest runs
//! without capabilities, `minKernel` is ignored, names no supported
//! architecture has (s390 calls) are ignored, and `flags`, `listenerPath`
//! and `archMap` have no meaning here. `SCMP_ACT_NOTIFY` is refused: it
//! hands the decision to an outside agent, and here guestview is that
//! agent — write such rules in the TOML format.
//!
//! The kernel resolves a call that several entries match by the strictest
//! action; the translated rules are therefore ordered strictest first
//! (kill, deny, alert, allow, each in file order), so that the policy's
//! first-match rule gives the same answer.

use super::{
    line_col, names, Action, ArgCmp, CmpOp, Limits, Policy, PolicyError, RuleParts, Source,
    MAX_RULES,
};
use crate::tables;
use serde::Deserialize;
use shmem_proto::Arch;
use std::path::Path;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<Entry>,
    #[serde(default)]
    flags: Vec<String>,
    listener_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    names: Vec<String>,
    name: Option<String>,
    action: String,
    #[serde(default)]
    args: Vec<Arg>,
    errno_ret: Option<u32>,
    comment: Option<String>,
    includes: Option<Cond>,
    excludes: Option<Cond>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Cond {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// libseccomp's architecture names → guest architectures.
fn scmp_arch(s: &str) -> Option<&'static [Arch]> {
    Some(match s {
        "SCMP_ARCH_X86_64" | "amd64" | "x86_64" => &[Arch::X86_64],
        "SCMP_ARCH_AARCH64" | "arm64" | "aarch64" => &[Arch::Aarch64],
        "SCMP_ARCH_ARM" | "arm" => &[Arch::Arm],
        "SCMP_ARCH_MIPS" | "mips" => &[Arch::Mips],
        "SCMP_ARCH_MIPSEL" | "mipsel" => &[Arch::Mipsel],
        "SCMP_ARCH_PPC" | "ppc" => &[Arch::Ppc],
        "SCMP_ARCH_PPC64LE" | "ppc64le" => &[Arch::Ppc64le],
        "SCMP_ARCH_RISCV64" | "riscv64" => &[Arch::Riscv64],
        _ => return None,
    })
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    /// An error at the first place `needle` appears (JSON values carry no
    /// positions once parsed; the offending value's text finds its line).
    fn err_at(&self, needle: &str, reason: String) -> PolicyError {
        let off = self.text.find(needle).unwrap_or(0);
        let (line, column) = if self.text.contains(needle) {
            line_col(self.text, off)
        } else {
            (0, 0)
        };
        PolicyError {
            file: self.file.to_owned(),
            line,
            column,
            reason,
        }
    }
}

/// `(action, errno, note)` for a profile action.
fn action(
    ctx: &Ctx<'_>,
    a: &str,
    errno_ret: Option<u32>,
    what: &str,
) -> Result<(Action, String, Option<String>), PolicyError> {
    let errno = || -> Result<String, PolicyError> {
        let e = i64::from(errno_ret.unwrap_or(1));
        tables::host_errno_name(e)
            .map(str::to_owned)
            .ok_or_else(|| ctx.err_at(a, format!("{what}: errnoRet {e} is not an errno number")))
    };
    Ok(match a {
        "SCMP_ACT_ALLOW" => (Action::Allow, "EPERM".into(), None),
        "SCMP_ACT_LOG" => (Action::Alert, "EPERM".into(), None),
        "SCMP_ACT_ERRNO" => (Action::Deny, errno()?, None),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_PROCESS" => (Action::Kill, "EPERM".into(), None),
        "SCMP_ACT_KILL_THREAD" => (
            Action::Kill,
            "EPERM".into(),
            Some(format!("{what}: SCMP_ACT_KILL_THREAD kills the whole guest process, not one thread")),
        ),
        "SCMP_ACT_TRAP" => (
            Action::Kill,
            "EPERM".into(),
            Some(format!("{what}: SCMP_ACT_TRAP (a SIGSYS the program could handle) is enforced as kill")),
        ),
        "SCMP_ACT_TRACE" => (
            Action::Deny,
            "EPERM".into(),
            Some(format!("{what}: SCMP_ACT_TRACE (a ptracer decides) is enforced as deny with EPERM")),
        ),
        "SCMP_ACT_NOTIFY" => {
            return Err(ctx.err_at(
                a,
                format!("{what}: SCMP_ACT_NOTIFY hands the decision to an outside agent, which here is guestview itself: write this rule in guestview's TOML format (docs/policy.md)"),
            ))
        }
        other => {
            return Err(ctx.err_at(
                other,
                format!("{what}: unknown action \"{other}\" (SCMP_ACT_ALLOW, SCMP_ACT_LOG, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE)"),
            ))
        }
    })
}

pub(super) fn parse(text: &str, file: &Path) -> Result<Policy, PolicyError> {
    let ctx = Ctx { text, file };
    let p: Profile = serde_json::from_str(text).map_err(|e| PolicyError {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        reason: format!("not a valid OCI seccomp profile: {e}")
            .replace(&format!(" at line {} column {}", e.line(), e.column()), ""),
    })?;
    let mut notes = Vec::new();
    let (default, default_errno, note) = action(
        &ctx,
        &p.default_action,
        p.default_errno_ret,
        "defaultAction",
    )?;
    notes.extend(note);
    if !p.flags.is_empty() {
        notes.push(format!(
            "flags {} are seccomp filter flags of the container runtime; they mean nothing here",
            p.flags.join(", ")
        ));
    }
    if p.listener_path.is_some() {
        notes.push("listenerPath is ignored: guestview answers notifications itself".into());
    }
    if p.syscalls.len() > MAX_RULES {
        return Err(ctx.err_at(
            "\"syscalls\"",
            format!("more than {MAX_RULES} syscall entries"),
        ));
    }

    let mut rules = Vec::new();
    let (mut dropped_caps, mut min_kernel) = (0, 0);
    let mut unknown: Vec<String> = Vec::new();
    for (i, e) in p.syscalls.into_iter().enumerate() {
        let what = format!("syscalls[{i}]");
        let (act, errno, note) = action(&ctx, &e.action, e.errno_ret, &what)?;
        notes.extend(note);
        let inc = e.includes.unwrap_or_default();
        let exc = e.excludes.unwrap_or_default();
        if !inc.caps.is_empty() {
            dropped_caps += 1;
            continue;
        }
        if inc.min_kernel.is_some() || exc.min_kernel.is_some() {
            min_kernel += 1;
        }
        let mut arches: Option<Vec<Arch>> = None;
        if !inc.arches.is_empty() {
            let mut v: Vec<Arch> = inc
                .arches
                .iter()
                .filter_map(|a| scmp_arch(a))
                .flatten()
                .copied()
                .collect();
            // x86-64 profiles name the 32-bit x86 and x32 ABIs too: those
            // are not guest architectures here.
            v.sort_by_key(|a| a.id());
            v.dedup();
            if v.is_empty() {
                continue;
            }
            arches = Some(v);
        }
        if !exc.arches.is_empty() {
            let ex: Vec<Arch> = exc
                .arches
                .iter()
                .filter_map(|a| scmp_arch(a))
                .flatten()
                .copied()
                .collect();
            let base = arches.unwrap_or_else(|| Arch::ALL.to_vec());
            arches = Some(base.into_iter().filter(|a| !ex.contains(a)).collect());
        }
        let mut syscalls = e.names;
        syscalls.extend(e.name);
        if syscalls.is_empty() {
            return Err(ctx.err_at(&e.action, format!("{what}: no `names`")));
        }
        let (known, unk): (Vec<String>, Vec<String>) =
            syscalls.into_iter().partition(|n| names::is_known(n));
        unknown.extend(unk);
        if known.is_empty() {
            continue;
        }
        let mut args = Vec::new();
        for a in &e.args {
            let op = match a.op.as_str() {
                "SCMP_CMP_NE" => CmpOp::Ne,
                "SCMP_CMP_LT" => CmpOp::Lt,
                "SCMP_CMP_LE" => CmpOp::Le,
                "SCMP_CMP_EQ" => CmpOp::Eq,
                "SCMP_CMP_GE" => CmpOp::Ge,
                "SCMP_CMP_GT" => CmpOp::Gt,
                "SCMP_CMP_MASKED_EQ" => CmpOp::MaskedEq,
                other => {
                    return Err(ctx.err_at(
                        other,
                        format!("{what}: unknown comparison \"{other}\" (SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT, _MASKED_EQ)"),
                    ))
                }
            };
            if a.index > 5 {
                return Err(ctx.err_at(
                    "\"index\"",
                    format!(
                        "{what}: argument index {} (a syscall has arguments 0 to 5)",
                        a.index
                    ),
                ));
            }
            args.push(ArgCmp {
                index: a.index as usize,
                op,
                value: a.value,
                value_two: a.value_two,
            });
        }
        let name = match &e.comment {
            Some(c) if !c.trim().is_empty() && c.len() <= 64 => format!("oci[{i}] {}", c.trim()),
            _ => format!("oci[{i}]"),
        };
        rules.push(
            RuleParts {
                name,
                syscalls: known,
                path: None,
                addr: None,
                uid: None,
                flags: None,
                args,
                arches,
                action: act,
                errno,
                line: 0,
            }
            .build(),
        );
    }
    if dropped_caps > 0 {
        notes.push(format!("{dropped_caps} entries that apply only to a container holding a capability (includes.caps) were dropped: the guest runs without capabilities"));
    }
    if min_kernel > 0 {
        notes.push(format!("{min_kernel} entries name a minimum kernel (minKernel): ignored, the host kernel decides what exists"));
    }
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        notes.push(format!(
            "{} names are syscalls of no supported architecture and were ignored: {}",
            unknown.len(),
            unknown.join(", ")
        ));
    }
    if rules.iter().any(|r| !r.args.is_empty()) {
        notes.push("argument comparisons are made on the guest's argument registers (values as on the guest architecture); the host layers enforce those rules only through the guest layer".into());
    }
    // Strictest first, as the kernel resolves overlapping entries.
    rules.sort_by_key(|r| std::cmp::Reverse(r.action));
    Ok(Policy {
        default,
        default_errno,
        rules,
        limits: Limits::default(),
        file: file.to_owned(),
        source: Source::Oci,
        notes,
    })
}
