//! Which layer enforces each rule of a policy on this machine and QEMU,
//! and the explanation `guestview policy check` prints.
//!
//! Layers, strongest first (DESIGN.md "Policy and enforcement"):
//!
//! 1. **guest** — QEMU's syscall-filter plugin API
//!    (`qemu_plugin_register_vcpu_syscall_filter_cb`, our QEMU 10.2 and
//!    upstream 11): the plugin answers the call and the host never sees it;
//! 2. **host seccomp** — plain `EPERM`/kill entries for number rules, and
//!    `SECCOMP_RET_USER_NOTIF` answered by guestview for argument rules
//!    ([`super::host`]);
//! 3. **eBPF** — `bpf_send_signal(SIGKILL)` decided in the kernel for kill
//!    rules on host syscall numbers and for the rate limits;
//! 4. **BPF LSM** — refused on this machine kind.

use super::host::{self, HostLayer};
use super::{names, Action, Policy, Rule};
use guestview_seccomp::Ret;
use shmem_proto::Arch;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The QEMU symbol that tells the guest layer is there.
pub const FILTER_API_SYMBOL: &str = "qemu_plugin_register_vcpu_syscall_filter_cb";

/// What guestview knows about a QEMU binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuInfo {
    /// The binary.
    pub path: PathBuf,
    /// First line of its `-version`.
    pub version: String,
    /// Does it export the syscall-filter plugin API?
    pub filter_api: bool,
}

/// Does the ELF file at `path` export `symbol` in its dynamic symbol table?
pub fn exports_symbol(path: &Path, symbol: &str) -> Result<bool, String> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("{} is not an ELF file: {e}", path.display()))?;
    Ok(file
        .dynamic_symbols()
        .any(|s| s.is_definition() && s.name_bytes().is_ok_and(|n| n == symbol.as_bytes())))
}

/// Find `qemu-<arch>` (or `explicit`) and look for the filter API.
pub fn probe_qemu(arch: Arch, explicit: Option<&Path>) -> Result<QemuInfo, String> {
    let q = crate::launch::find_qemu(arch, explicit).map_err(|e| e.to_string())?;
    let filter_api = exports_symbol(&q.path, FILTER_API_SYMBOL)?;
    Ok(QemuInfo {
        path: q.path,
        version: q.version,
        filter_api,
    })
}

/// Whether the kernel offers BPF LSM, in words (it is never used here).
pub fn bpf_lsm_state() -> String {
    let lsms = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if lsms.split(',').any(|l| l.trim() == "bpf") {
        "not used: the kernel lists it (\"bpf\" in /sys/kernel/security/lsm) but loading LSM programs is refused (EPERM) on this machine kind".into()
    } else {
        "not used: not enabled in this kernel (no \"bpf\" in /sys/kernel/security/lsm), and refused (EPERM) on this machine kind anyway".into()
    }
}

fn list(v: &[&str]) -> String {
    v.join(", ")
}

fn matcher_text(r: &Rule) -> String {
    let mut m = Vec::new();
    if let Some(p) = &r.path {
        m.push(format!("path matches {}", p.as_str()));
    }
    if let Some(a) = &r.addr {
        m.push(format!("address matches {}", a.as_str()));
    }
    if let Some(u) = &r.uid {
        m.push(format!(
            "an id argument is {}",
            u.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if r.flags.is_some() {
        m.push("flags match".into());
    }
    if !r.args.is_empty() {
        m.push(format!("{} raw argument comparison(s) hold", r.args.len()));
    }
    if m.is_empty() {
        String::new()
    } else {
        format!(" when {}", m.join(" and "))
    }
}

/// The explanation of `policy` for guests of `arch` under `qemu` (`Err`:
/// why no QEMU could be examined).
pub fn explain(policy: &Policy, arch: Arch, qemu: &Result<QemuInfo, String>) -> String {
    let mut o = String::new();
    let layer = host::compile(policy, arch);
    let fmt = match policy.source {
        super::Source::Toml => "guestview TOML",
        super::Source::Oci => "OCI seccomp profile",
    };
    let _ = writeln!(
        o,
        "{}: valid ({fmt}, {} rule{}, default {})",
        policy.file.display(),
        policy.rules.len(),
        if policy.rules.len() == 1 { "" } else { "s" },
        policy.default
    );
    for n in &policy.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    let _ = writeln!(o, "\nLayers for {} guests on this machine:", arch.name());
    let guest = match qemu {
        Ok(q) if q.filter_api => {
            let _ = writeln!(
                o,
                "  guest layer:  yes — {} ({}) exports {FILTER_API_SYMBOL}",
                q.path.display(),
                q.version
            );
            true
        }
        Ok(q) => {
            let _ = writeln!(o, "  guest layer:  no — {} ({}) has no syscall-filter plugin API; the host layers alone enforce", q.path.display(), q.version);
            false
        }
        Err(e) => {
            let _ = writeln!(
                o,
                "  guest layer:  unknown — {e}; the host layers alone enforce"
            );
            false
        }
    };
    let _ = writeln!(o, "  host seccomp: yes — filter on the QEMU process (x86-64 numbers), SECCOMP_RET_USER_NOTIF answered by guestview");
    let _ = writeln!(o, "  eBPF:         yes — bpf_send_signal(SIGKILL) decided in the kernel for kill rules and rate limits");
    let _ = writeln!(o, "  BPF LSM:      {}", bpf_lsm_state());

    for (i, r) in policy.rules.iter().enumerate() {
        let _ = writeln!(
            o,
            "\nrule {} \"{}\"{}: {} {}{}",
            i + 1,
            r.name,
            if r.line > 0 {
                format!(" (line {})", r.line)
            } else {
                String::new()
            },
            r.action,
            r.syscalls.join(", "),
            matcher_text(r)
        );
        explain_rule(&mut o, policy, &layer, i, arch, guest);
    }
    let _ = writeln!(o, "\ndefault: {}", policy.default);
    let refused: Vec<&str> = layer
        .plans
        .values()
        .filter(|p| p.steps_empty() && matches!(p.ret, Ret::Errno(_) | Ret::Kill))
        .map(|p| p.name)
        .collect();
    match policy.default {
        Action::Allow => {
            let _ = writeln!(o, "  calls no rule matches run; they show with policy {{\"action\":\"allow\",\"rule\":null}}");
        }
        Action::Alert => {
            let _ = writeln!(o, "  calls no rule matches run and each is an alert record");
        }
        Action::Deny | Action::Kill => {
            if guest {
                let _ = writeln!(
                    o,
                    "  guest layer: every guest call no rule matches is refused by the plugin"
                );
            }
            let _ = writeln!(
                o,
                "  host seccomp: {} host calls QEMU never needs for itself are refused by number ({}); QEMU's own calls ({} of them) cannot be refused at the host{}",
                refused.len(),
                if refused.len() > 12 { format!("{}, …", list(&refused[..12])) } else { list(&refused) },
                names::QEMU_OWN.len(),
                if guest { "" } else { ": without the guest layer the default is only partly enforced" }
            );
        }
    }
    let lim = policy.limits;
    if lim.fork_per_second.is_some() || lim.connect_per_second.is_some() {
        let _ = writeln!(o, "\nlimits:");
        if let Some(f) = lim.fork_per_second {
            let _ = writeln!(o, "  fork_per_second = {f}: the seccomp supervisor counts QEMU's fork, vfork and clone (not threads); beyond {f} in a second each is refused with EAGAIN, with one alert per second; eBPF counts new processes in the kernel as a backstop and kills those beyond {} in a second", f.saturating_mul(2));
        }
        if let Some(c) = lim.connect_per_second {
            let _ = writeln!(o, "  connect_per_second = {c}: eBPF counts connect calls of the traced tree in the kernel; beyond {c} in a second the caller is killed (bpf_send_signal(SIGKILL)), with one alert per second");
        }
    }
    o
}

fn explain_rule(
    o: &mut String,
    policy: &Policy,
    layer: &HostLayer,
    i: usize,
    arch: Arch,
    guest: bool,
) {
    let r = &policy.rules[i];
    let absent: Vec<&str> = r
        .syscalls
        .iter()
        .filter(|s| crate::tables::guest_syscall_nr(arch, s).is_none())
        .map(String::as_str)
        .collect();
    if absent.len() == r.syscalls.len() {
        let _ = writeln!(
            o,
            "  {} has none of these calls: the rule never applies to {} guests",
            arch.name(),
            arch.name()
        );
        return;
    } else if !absent.is_empty() {
        let _ = writeln!(
            o,
            "  not on {}: {} (ignored there)",
            arch.name(),
            list(&absent)
        );
    }
    if !r.applies_on(arch) {
        let _ = writeln!(o, "  applies to other architectures only");
        return;
    }
    if r.action == Action::Allow {
        let _ = writeln!(
            o,
            "  nothing to enforce; matching calls show with this rule as their policy"
        );
        return;
    }
    if r.action == Action::Alert {
        let _ = writeln!(o, "  nothing to enforce; each matching call is an alert record (decided on the joined guest call)");
        return;
    }
    if guest {
        let what = if r.action == Action::Deny {
            format!(
                "answers -{} to the guest before QEMU runs the call",
                r.errno
            )
        } else {
            "stops the call and guestview kills the guest".into()
        };
        let _ = writeln!(
            o,
            "  guest layer:  the plugin's syscall-filter callback {what}{}",
            if r.has_matchers() {
                " (it reads guest memory QEMU reads again: the binding argument check is the host layer's)"
            } else {
                ""
            }
        );
    }
    let (mut notify, mut plain, mut lenient) = (Vec::new(), Vec::new(), Vec::new());
    for p in layer.plans.values() {
        match p.step_of(i) {
            Some('c') => notify.push(p.name),
            Some('a') => plain.push((p.name, p.ret)),
            Some('l') => lenient.push(p.name),
            _ => {}
        }
    }
    if !notify.is_empty() {
        let opens: Vec<&str> = notify
            .iter()
            .copied()
            .filter(|n| names::is_open(n))
            .collect();
        let nets: Vec<&str> = notify
            .iter()
            .copied()
            .filter(|n| matches!(*n, "connect" | "sendto" | "bind"))
            .collect();
        let rest: Vec<&str> = notify
            .iter()
            .copied()
            .filter(|n| !opens.contains(n) && !nets.contains(n))
            .collect();
        if !opens.is_empty() {
            let _ = writeln!(o, "  host seccomp: USER_NOTIF on {}: guestview reads the path once, opens allowed files itself (target's root and credentials) and injects the descriptor — race-free", list(&opens));
        }
        if !nets.is_empty() {
            let _ = writeln!(o, "  host seccomp: USER_NOTIF on {}: guestview reads the address once and makes the call itself on the guest's socket — race-free", list(&nets));
        }
        if !rest.is_empty() {
            let by_regs = r.path.is_none() && r.addr.is_none();
            let _ = writeln!(
                o,
                "  host seccomp: USER_NOTIF on {}: {}",
                list(&rest),
                if by_regs {
                    "decided on registers, which a racing thread cannot change — race-free"
                } else {
                    "deny and kill are final; an allowed call continues and the kernel reads the argument again (a racing guest thread could swap it: see docs/threat-model.md)"
                }
            );
        }
    }
    for (n, ret) in &plain {
        let how = match ret {
            Ret::Kill => "SECCOMP_RET_KILL_PROCESS before the call runs".to_string(),
            Ret::Errno(e) => format!("SECCOMP_RET_ERRNO({e}) before the call runs"),
            Ret::Notify => "USER_NOTIF".into(),
            Ret::Allow => "no entry (an earlier rule or the default decides)".into(),
        };
        let _ = writeln!(o, "  host seccomp: {n} by number: {how}");
    }
    if !lenient.is_empty() {
        let why = if r.args.is_empty() {
            "QEMU needs these host calls for itself, so the host filter cannot refuse them"
        } else {
            "raw argument comparisons are on guest registers, which the host does not see"
        };
        let _ = writeln!(
            o,
            "  not at the host: {} — {why}{}",
            list(&lenient),
            if guest {
                "; the guest layer enforces"
            } else {
                "; NOT ENFORCED without the guest layer (alerts still show)"
            }
        );
    }
    if notify.is_empty() && plain.is_empty() && lenient.is_empty() {
        let _ = writeln!(
            o,
            "  no host call: QEMU answers these calls itself{}",
            if guest {
                "; the guest layer enforces"
            } else {
                "; NOT ENFORCED without the guest layer (alerts still show)"
            }
        );
    }
    if r.action == Action::Kill && !r.has_matchers() {
        let kills: Vec<&str> = plain
            .iter()
            .filter(|(_, ret)| *ret == Ret::Kill)
            .map(|(n, _)| *n)
            .collect();
        if !kills.is_empty() {
            let _ = writeln!(o, "  eBPF:         bpf_send_signal(SIGKILL) at the exit of {} for traced processes (for `watch`, where no filter can be installed, and as a backstop)", list(&kills));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(name: &str) -> Policy {
        Policy::load(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../docs/policies")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn explains_every_rule_with_its_layers() {
        let p = pol("example.toml");
        let q = Ok(QemuInfo {
            path: "/q/qemu-mips".into(),
            version: "10.2.2".into(),
            filter_api: true,
        });
        let t = explain(&p, Arch::Mips, &q);
        assert!(t.contains("guest layer:  yes"), "{t}");
        assert!(t.contains("rule 1 \"no-shadow\" (line 6): deny open, openat, openat2 when path matches /etc/shadow*"), "{t}");
        assert!(
            t.contains("USER_NOTIF on creat, open, openat, openat2")
                || t.contains("USER_NOTIF on open"),
            "{t}"
        );
        assert!(t.contains("injects the descriptor"), "{t}");
        assert!(
            t.contains("makes the call itself on the guest's socket"),
            "{t}"
        );
        assert!(t.contains("fork_per_second = 20"), "{t}");
        assert!(t.contains("BPF LSM:      not used"), "{t}");
        let t = explain(&p, Arch::Aarch64, &Err("qemu-aarch64 not found".into()));
        assert!(t.contains("guest layer:  unknown"), "{t}");
        assert!(t.contains("not on aarch64: open"), "{t}");
    }

    #[test]
    fn unenforceable_host_rules_are_said_so() {
        let p = Policy::parse(
            "[[rule]]\nname = \"m\"\nsyscalls = [\"mmap\", \"cacheflush\"]\naction = \"deny\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let no = Ok(QemuInfo {
            path: "/usr/bin/qemu-mips".into(),
            version: "7.2".into(),
            filter_api: false,
        });
        let t = explain(&p, Arch::Mips, &no);
        assert!(t.contains("not at the host: mmap"), "{t}");
        assert!(t.contains("NOT ENFORCED without the guest layer"), "{t}");
    }

    #[test]
    fn the_filter_symbol_is_found_in_real_binaries() {
        // Our own test binary exports no such symbol.
        let me = std::env::current_exe().unwrap();
        assert_eq!(exports_symbol(&me, FILTER_API_SYMBOL), Ok(false));
        assert!(exports_symbol(Path::new("/etc/hostname"), FILTER_API_SYMBOL).is_err());
    }
}
