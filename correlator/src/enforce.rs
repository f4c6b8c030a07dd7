//! Enforcement glue: one policy turned into what each layer needs, and
//! each layer's decisions turned into `alert` records and verdicts.
//!
//! [`Enforcement::new`] compiles a [`Policy`] for a guest architecture:
//! the host seccomp filter and its judge ([`crate::policy::host`]), the
//! kill rules and rate limits the kernel enforces (eBPF), and the names
//! the alerts carry. Wiring it into a launch takes four steps (see
//! `docs/policy.md`, "Wiring"):
//!
//! 1. before the fork: `let (child, parent) = enf.prepare_seccomp()?`;
//! 2. in the child, last step before `execv`: `child.install_in_child()`
//!    (allocation-free; on `Err(errno)` the child reports and exits); the
//!    child then waits in its `exec`, which is always a checked call;
//! 3. in the parent after the fork: `let sup = enf.start_supervisor(parent,
//!    pid, prefix)?` — it takes the child's listener once the filter is in
//!    and answers the exec; `sup.stop()` after the run;
//! 4. after loading eBPF: `enf.apply_to_tracer(&tracer)?` and
//!    `joiner.set_enforce_names(enf.names())`;
//! 5. while joining: [`annotate`] each guest call (policy fields, verdict,
//!    an alert for every match) and emit [`Enforcement::drain_host_alerts`].

use crate::policy::host::{self, HostAlert, HostLayer, PolicyJudge};
use crate::policy::{Action, Call, Policy};
use crate::tables;
use guestview_bpf::{EnforceReason, HostTracer};
use guestview_seccomp::{ChildSide, ParentSide, Ret, Supervisor};
use shmem_proto::trace::{AlertEvent, SyscallEvent};
use shmem_proto::Arch;
use std::collections::HashMap;
use std::sync::Arc;

/// Rule names behind the kernel's enforcement records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnforceNames {
    /// Host syscall number → the kill rule that names it.
    pub kill_rules: HashMap<i64, String>,
}

/// The alert record for a kernel enforcement event.
#[allow(clippy::too_many_arguments)]
pub fn ebpf_alert(
    names: &EnforceNames,
    tgid: u32,
    tid: u32,
    nr: i64,
    reason: EnforceReason,
    count: u32,
    limit: u32,
    killed: bool,
    t_ns: u64,
) -> AlertEvent {
    let host = tables::host_syscall_name(nr).map(str::to_owned);
    let (rule, syscall, detail) = match reason {
        EnforceReason::KillRule => (
            names.kill_rules.get(&nr).cloned(),
            host,
            Some(format!(
                "host {} killed at its exit",
                tables::host_syscall_name(nr).unwrap_or("syscall")
            )),
        ),
        EnforceReason::ForkRate => (
            Some("limits.fork_per_second".to_owned()),
            Some("fork".to_owned()),
            Some(format!(
                "{count} new processes this second, limit {limit}: new processes beyond it killed"
            )),
        ),
        EnforceReason::ConnectRate => (
            Some("limits.connect_per_second".to_owned()),
            host,
            Some(format!(
                "{count} connects this second, limit {limit}: caller killed"
            )),
        ),
    };
    AlertEvent {
        rule,
        action: if killed { "kill" } else { "alert" }.into(),
        layer: "ebpf".into(),
        seq: None,
        pid: tgid,
        tid,
        syscall,
        detail,
        path: None,
        message: String::new(),
        t_ns,
    }
}

/// A policy compiled for one run.
pub struct Enforcement {
    policy: Arc<Policy>,
    arch: Arch,
    host: HostLayer,
    judge: Option<Arc<PolicyJudge>>,
    names: EnforceNames,
    kill_nrs: Vec<u32>,
}

/// Enforcement could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The seccomp layer failed.
    #[error("seccomp: {0}")]
    Seccomp(#[from] guestview_seccomp::Error),
    /// The eBPF layer failed.
    #[error("eBPF enforcement: {0}")]
    Bpf(#[from] guestview_bpf::BpfError),
}

impl Enforcement {
    /// Compile `policy` for guests of `arch`.
    pub fn new(policy: Arc<Policy>, arch: Arch) -> Enforcement {
        let host = host::compile(&policy, arch);
        let mut names = EnforceNames::default();
        let mut kill_nrs = Vec::new();
        // Number-only kill rules the filter kills by number get the
        // kernel as a backstop (and as the only layer under `watch`).
        for (&nr, plan) in &host.plans {
            if plan.ret != Ret::Kill {
                continue;
            }
            let rule = policy
                .rules
                .iter()
                .enumerate()
                .find(|(i, _)| plan.step_of(*i) == Some('a'))
                .map(|(_, r)| r.name.clone());
            if let Some(r) = rule {
                names.kill_rules.insert(i64::from(nr), r);
                kill_nrs.push(nr);
            }
        }
        Enforcement {
            policy,
            arch,
            host,
            judge: None,
            names,
            kill_nrs,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The host layer.
    pub fn host_layer(&self) -> &HostLayer {
        &self.host
    }

    /// Host syscall numbers whose exit the kernel kills on.
    pub fn kill_nrs(&self) -> &[u32] {
        &self.kill_nrs
    }

    /// Names for [`crate::join::Joiner::set_enforce_names`].
    pub fn names(&self) -> EnforceNames {
        self.names.clone()
    }

    /// Does the host layer install a filter at all?
    pub fn has_filter(&self) -> bool {
        !self.host.filter.by_nr.is_empty() || self.host.filter.default != Ret::Allow
    }

    /// The filter for the QEMU child and the parent's end (call before fork).
    pub fn prepare_seccomp(&self) -> Result<(ChildSide, ParentSide), EnforceError> {
        Ok(guestview_seccomp::prepare(&self.host.filter)?)
    }

    /// Start the supervisor for child `pid` (right after the fork). `prefix`
    /// is QEMU's `-L` directory in unsandboxed runs.
    pub fn start_supervisor(
        &mut self,
        parent: ParentSide,
        pid: u32,
        prefix: Option<String>,
    ) -> Result<Supervisor, EnforceError> {
        let judge = Arc::new(PolicyJudge::new(self.policy.clone(), &self.host, prefix));
        self.judge = Some(judge.clone());
        Ok(parent.start_supervisor(judge, pid)?)
    }

    /// The sandbox's filter and the policy's in one program (the kernel
    /// allows one listener per filter chain): the policy's entries, and
    /// the calls the sandbox answers ([`crate::seccomp::SANDBOX_NOTIFIED`])
    /// sent to the supervisor where the policy lets them run. Its
    /// listener is taken by [`Enforcement::start_sandbox_supervisor`].
    pub fn sandbox_program(&self) -> Result<Vec<(u16, u8, u8, u32)>, EnforceError> {
        let mut f = self.host.filter.clone();
        for nr in crate::seccomp::SANDBOX_NOTIFIED {
            if f.action(nr) == Ret::Allow {
                f.by_nr.insert(nr, Ret::Notify);
            }
        }
        let (child, _) = guestview_seccomp::prepare(&f)?;
        Ok(child
            .program()
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect())
    }

    /// The one supervisor of a sandboxed run with this policy: the
    /// sandbox's answers first, then the policy's judge. `pid` is the
    /// sandbox's outer process (the listener is taken from its
    /// descendant waiting in its exec); `exe` the file the plugin execs
    /// to restart QEMU.
    pub fn start_sandbox_supervisor(
        &mut self,
        pid: u32,
        exe: std::ffi::CString,
    ) -> Result<Supervisor, EnforceError> {
        let judge = Arc::new(PolicyJudge::new(self.policy.clone(), &self.host, None));
        let first =
            crate::seccomp::SandboxFirst::new(exe, Some(judge.clone())).map_err(|source| {
                guestview_seccomp::Error::Sys {
                    what: "opening / for the sandbox's supervisor",
                    source,
                }
            })?;
        self.judge = Some(judge.clone());
        let mut f = self.host.filter.clone();
        f.by_nr
            .insert(crate::seccomp::SANDBOX_NOTIFIED[0], Ret::Notify);
        let (_, parent) = guestview_seccomp::prepare(&f)?;
        Ok(parent.start_supervisor_with(judge, pid, Arc::new(first))?)
    }

    /// The guest layer for the plugin's `policy=` argument (see
    /// `qemu-plugin/src/filter.rs`): per guest syscall number, in rule
    /// order, `NR.p[.GLOB]` (goes on: an allowing rule, or one the plugin
    /// cannot judge, left to the host layers) or `NR.ERRNO[.GLOB]` (a deny
    /// rule the plugin decides by number and path). Kill rules and other
    /// matchers stay with the host layers. The plugin uses it only on a
    /// QEMU with the syscall-filter API.
    pub fn guest_rules(&self) -> String {
        let arch = self.arch;
        let mut out = Vec::new();
        for base in [0i64, 4000, 5000, 6000] {
            for nr in base..base + 600 {
                let Some(name) = tables::guest_syscall_name(arch, nr) else {
                    continue;
                };
                for r in self.policy.rules.iter().filter(|r| r.applies_on(arch)) {
                    if !r.names(name) {
                        continue;
                    }
                    let glob = r.path.as_ref().map(|g| g.as_str());
                    let plain_glob = glob.is_none_or(|g| !g.contains(['[', '{', '\\']));
                    let other = r.addr.is_some()
                        || r.uid.is_some()
                        || r.flags.is_some()
                        || !r.args.is_empty();
                    let hex = glob
                        .map(|g| {
                            format!(
                                ".{}",
                                g.bytes().map(|b| format!("{b:02x}")).collect::<String>()
                            )
                        })
                        .unwrap_or_default();
                    let errno = tables::errno_number(arch, &r.errno).filter(|e| *e > 0);
                    match (r.action, errno) {
                        (Action::Deny, Some(e)) if plain_glob && !other => {
                            out.push(format!("{nr}.{e}{hex}"));
                        }
                        // Allowing rules end the search where they match;
                        // the rest is the host layers' to judge.
                        (Action::Allow | Action::Alert, _) if plain_glob && !other => {
                            out.push(format!("{nr}.p{hex}"));
                        }
                        _ => {
                            out.push(format!("{nr}.p"));
                            break;
                        }
                    }
                    if glob.is_none() {
                        break;
                    }
                }
            }
        }
        out.join(":")
    }

    /// Give the kernel its kill rules and rate limits.
    pub fn apply_to_tracer(&self, tracer: &HostTracer) -> Result<(), EnforceError> {
        let l = self.policy.limits;
        // New processes beyond the limit are refused (EAGAIN) by the host
        // layer's supervisor; the kernel kills only beyond twice the limit,
        // a backstop for a fork that got past it (its second may begin a
        // moment after the supervisor's).
        tracer.enforce(
            &self.kill_nrs,
            l.fork_per_second.map_or(0, |f| f.saturating_mul(2)),
            l.connect_per_second.unwrap_or(0),
        )?;
        Ok(())
    }

    /// The supervisor's decisions since the last call, as alert records
    /// (their `seq` is left to the join, which knows the call at `tid`
    /// around `t_ns`), and how many were dropped for lack of room.
    pub fn drain_host_alerts(&self) -> (Vec<AlertEvent>, u64) {
        let Some(j) = &self.judge else {
            return (Vec::new(), 0);
        };
        let (v, dropped) = j.drain();
        (v.into_iter().map(host_alert).collect(), dropped)
    }

    /// The guest architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }
}

/// A supervisor decision as an alert. The supervisor knows the thread,
/// not its process: `pid` is the thread id until the join, which knows
/// each thread's process, sets it (and `seq`).
fn host_alert(a: HostAlert) -> AlertEvent {
    AlertEvent {
        rule: a.rule,
        action: a.action.name().into(),
        layer: "seccomp".into(),
        seq: None,
        pid: a.tid,
        tid: a.tid,
        syscall: Some(a.host_call.to_owned()),
        path: a.path.clone(),
        detail: a.path.or_else(|| a.addr.map(|x| x.to_string())),
        message: if a.repeat {
            REPEATED.to_owned()
        } else {
            String::new()
        },
        t_ns: a.t_ns,
    }
}

/// The message of a host-layer decision that a rate limit already alerted
/// in this second: it gives its call the `denied` verdict, but no alert
/// record is written for it (limits alert once a second).
pub const REPEATED: &str = "refused again within the second (already alerted)";

/// The host layer's decision (from `pending`, taken out) made on `s`'s
/// thread inside its window, as `s`'s alert: it sets the call's policy
/// fields, and its verdict when the guest saw the refusal (a kill: when
/// the call never returned).
pub fn claim_host_alert(s: &mut SyscallEvent, pending: &mut Vec<AlertEvent>) -> Option<AlertEvent> {
    let end = if s.t_exit_ns == 0 || s.ret.is_none() {
        u64::MAX
    } else {
        s.t_exit_ns
    };
    let i = pending
        .iter()
        .position(|a| a.tid == s.tid && (s.t_enter_ns..=end).contains(&a.t_ns))?;
    let mut a = pending.remove(i);
    // Later decisions of the same call (a second check of an open) go too.
    pending.retain(|b| !(b.tid == s.tid && (s.t_enter_ns..=end).contains(&b.t_ns)));
    let enforced = match a.action.as_str() {
        "deny" => s.ret.is_some_and(|r| r < 0),
        "kill" => s.ret.is_none(),
        _ => false,
    };
    s.policy_action = a.action.clone().into();
    s.policy_rule = a.rule.clone();
    let base: &'static str = match s.verdict.as_ref() {
        "passthrough" => "passthrough",
        "translated" => "translated",
        "emulated" => "emulated",
        "unsupported" => "unsupported",
        "mismatch" => "mismatch",
        "denied" => "denied",
        "killed" => "killed",
        _ => "",
    };
    if !base.is_empty() {
        s.verdict = crate::output::policy_verdict(base, &a.action, enforced).into();
    }
    a.seq = Some(s.seq);
    a.pid = s.pid;
    if let Some(name) = s.name.as_deref() {
        a.syscall = Some(name.to_owned());
    }
    Some(a)
}

/// Judge a joined guest call by `policy`: set its `policy_action` and
/// `policy_rule`, turn its verdict into `denied`/`killed` when the policy
/// visibly acted on it (the guest got the rule's errno, or the call never
/// returned under a kill rule), and return the alert it owes (`layer`
/// `join` when nothing shows it was enforced). `prefix` is QEMU's `-L`
/// directory, stripped from host-seen paths to judge the guest's name;
/// `killed` says whether the call's process died of SIGKILL (the join
/// knows it from the process's exit).
pub fn annotate(
    policy: &Policy,
    s: &mut SyscallEvent,
    prefix: Option<&str>,
    killed: bool,
) -> Option<AlertEvent> {
    let arch = Arch::from_name(&s.arch)?;
    let name = s.name.as_deref()?;
    // The host-seen path, or the guest's own (read by the plugin) when
    // no host call named one (the guest layer answered the call).
    let seen = s.path.as_deref().or(s.guest_path.as_deref());
    let path = match (prefix, seen) {
        (Some(p), Some(path)) => Some(
            path.strip_prefix(p.trim_end_matches('/'))
                .filter(|r| r.starts_with('/'))
                .unwrap_or(path),
        ),
        (_, p) => p,
    };
    let mut args = [0u64; 6];
    args.copy_from_slice(&s.args[..6]);
    let call = Call {
        name,
        args,
        path,
        addr: None,
        flags: None,
    };
    let d = policy.decide(arch, &call);
    s.policy_action = d.action.name().into();
    s.policy_rule = d.rule.map(str::to_owned);
    if !d.action.alerts() {
        return None;
    }
    let enforced = match d.action {
        Action::Deny => {
            let e = tables::errno_number(arch, d.errno);
            s.ret.is_some_and(|r| Some(-r) == e)
        }
        Action::Kill => s.ret.is_none() && killed,
        _ => false,
    };
    let base: &'static str = match s.verdict.as_ref() {
        "passthrough" => "passthrough",
        "translated" => "translated",
        "emulated" => "emulated",
        "unsupported" => "unsupported",
        "mismatch" => "mismatch",
        _ => "",
    };
    if !base.is_empty() {
        s.verdict = crate::output::policy_verdict(base, d.action.name(), enforced).into();
    }
    Some(AlertEvent {
        rule: d.rule.map(str::to_owned),
        action: d.action.name().into(),
        // The guest layer answers without a host call; the host layers
        // leave one (refused, or killed in it).
        layer: match (enforced, s.host.is_empty()) {
            (true, true) => "guest",
            (true, false) => "seccomp",
            (false, _) => "join",
        }
        .into(),
        seq: Some(s.seq),
        pid: s.pid,
        tid: s.tid,
        syscall: Some(name.to_owned()),
        detail: path.map(str::to_owned),
        path: path.map(str::to_owned),
        message: String::new(),
        t_ns: s.t_enter_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmem_proto::trace::HostCall;
    use std::path::Path;

    fn example() -> Arc<Policy> {
        Arc::new(
            Policy::load(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../docs/policies/example.toml"
            )))
            .unwrap(),
        )
    }

    fn call(name: &str, path: Option<&str>, ret: Option<i64>, host: Vec<HostCall>) -> SyscallEvent {
        SyscallEvent {
            seq: 9,
            pid: 100,
            tid: 101,
            arch: "mips".into(),
            name: Some(name.to_owned().into()),
            path: path.map(str::to_owned),
            ret,
            host,
            verdict: "passthrough".into(),
            policy_action: "allow".into(),
            ..Default::default()
        }
    }

    #[test]
    fn annotate_sets_policy_fields_verdicts_and_alerts() {
        let p = example();
        let h = |ret| HostCall {
            name: "openat".into(),
            ret: Some(ret),
            ..Default::default()
        };
        // Denied at the host: the guest got EPERM, a host call shows it.
        let mut s = call("open", Some("/etc/shadow"), Some(-1), vec![h(-1)]);
        let a = annotate(&p, &mut s, None, false).unwrap();
        assert_eq!(
            (
                s.verdict.as_ref(),
                s.policy_action.as_ref(),
                s.policy_rule.as_deref()
            ),
            ("denied", "deny", Some("no-shadow"))
        );
        assert_eq!(
            (a.layer.as_str(), a.seq, a.action.as_str()),
            ("seccomp", Some(9), "deny")
        );
        // Denied by the guest layer: no host call at all.
        let mut s = call("open", Some("/etc/shadow"), Some(-1), vec![]);
        assert_eq!(annotate(&p, &mut s, None, false).unwrap().layer, "guest");
        // Matched but not refused (the guest opened it): alert only, verdict kept.
        let mut s = call("open", Some("/etc/shadow"), Some(3), vec![h(3)]);
        assert_eq!(annotate(&p, &mut s, None, false).unwrap().layer, "join");
        assert_eq!(s.verdict, "passthrough");
        // Killed in the call.
        let mut s = call("execve", Some("/bin/sh"), None, vec![]);
        let a = annotate(&p, &mut s, None, true).unwrap();
        assert_eq!((s.verdict.as_ref(), a.action.as_str()), ("killed", "kill"));
        // -L prefix stripped before judging.
        let mut s = call(
            "open",
            Some("/usr/mips-linux-gnu/etc/shadow"),
            Some(-1),
            vec![h(-1)],
        );
        assert!(annotate(&p, &mut s, Some("/usr/mips-linux-gnu/"), false).is_some());
        // A successful exec never returns either: not a kill by itself.
        let mut s = call("execve", Some("/bin/sh"), None, vec![]);
        assert_eq!(annotate(&p, &mut s, None, false).unwrap().layer, "join");
        assert_eq!(s.verdict, "passthrough");
        // Nothing matches: allow, no alert.
        let mut s = call("read", None, Some(1), vec![]);
        assert!(annotate(&p, &mut s, None, false).is_none());
        assert_eq!(
            (s.policy_action.as_ref(), s.policy_rule.as_deref()),
            ("allow", None)
        );
        // Alerts on privilege changes.
        let mut s = call("setuid", None, Some(0), vec![]);
        assert_eq!(
            annotate(&p, &mut s, None, false).unwrap().rule.as_deref(),
            Some("privilege")
        );
    }

    #[test]
    fn the_guest_layer_gets_deny_rules_it_can_decide_in_rule_order() {
        let e = Enforcement::new(example(), Arch::Mips);
        let g = e.guest_rules();
        let hex: String = "/etc/shadow*".bytes().map(|b| format!("{b:02x}")).collect();
        // open (4005) and openat (4288): no-shadow refuses with EPERM (1).
        assert!(g.split(':').any(|x| x == format!("4005.1.{hex}")), "{g}");
        assert!(g.split(':').any(|x| x == format!("4288.1.{hex}")), "{g}");
        // execve (4011): a kill rule stays with the host layers.
        assert!(g.split(':').any(|x| x == "4011.p"), "{g}");
        // connect (4170): an address rule too.
        assert!(g.split(':').any(|x| x == "4170.p"), "{g}");
        // setuid (4023): alert only, the call goes on.
        assert!(g.split(':').any(|x| x == "4023.p"), "{g}");
        assert!(!g.contains("4004."), "write is no rule's: {g}");
    }

    #[test]
    fn kill_rules_by_number_reach_the_kernel_with_their_names() {
        let p = Arc::new(
            Policy::parse(
                "[[rule]]\nname = \"no-reboot\"\nsyscalls = [\"reboot\"]\naction = \"kill\"\n",
                Path::new("p.toml"),
            )
            .unwrap(),
        );
        let e = Enforcement::new(p, Arch::Arm);
        let nr = tables::host_syscall_nr("reboot").unwrap();
        assert_eq!(e.kill_nrs(), [nr as u32]);
        assert_eq!(
            e.names().kill_rules.get(&nr).map(String::as_str),
            Some("no-reboot")
        );
        let a = ebpf_alert(&e.names(), 5, 6, nr, EnforceReason::KillRule, 1, 0, true, 7);
        assert_eq!(
            (
                a.rule.as_deref(),
                a.layer.as_str(),
                a.action.as_str(),
                a.syscall.as_deref()
            ),
            (Some("no-reboot"), "ebpf", "kill", Some("reboot"))
        );
        let a = ebpf_alert(
            &e.names(),
            5,
            6,
            -1,
            EnforceReason::ForkRate,
            21,
            20,
            true,
            7,
        );
        assert_eq!(a.rule.as_deref(), Some("limits.fork_per_second"));
        assert!(e.has_filter());
    }
}
