//! The host seccomp layer of a policy: which host (x86-64) syscalls of the
//! QEMU process the filter lets through, refuses, kills or hands to the
//! supervisor, and the [`PolicyJudge`] that answers the supervisor.
//!
//! QEMU's own host syscalls pass the same filter as the ones it makes for
//! the guest, and the filter cannot tell them apart. So the host layer
//! never refuses more than the policy does and never breaks QEMU:
//!
//! * a rule without argument matchers becomes a plain `EPERM`/kill entry
//!   only for host calls QEMU does not need for itself
//!   ([`names::QEMU_OWN`]); on those it is left to the guest layer;
//! * rules with `path`, `addr`, `flags` or `uid` make their host calls
//!   `SECCOMP_RET_USER_NOTIF`; the supervisor decodes the call and
//!   [`PolicyJudge`] applies the same first-match order on the host view
//!   (QEMU's own opens of its libraries match no `path` glob of a policy,
//!   so they pass);
//! * rules with raw OCI argument comparisons (guest registers) cannot be
//!   judged on host registers: an allowing one is taken as matching, a
//!   refusing one as not matching — the host layer errs towards allowing,
//!   the guest layer decides exactly;
//! * a `deny`/`kill` default refuses at the host only the host calls that
//!   QEMU does not need and that no allowing rule names.

use super::{names, Action, Call, Policy};
use crate::tables;
use guestview_seccomp::{Answer, Filter, Judge, Request, Ret};
use shmem_proto::Arch;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Highest x86-64 syscall number considered.
const MAX_HOST_NR: u32 = 512;

/// How one rule stands for one host call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Judged on the host view by its matchers.
    Checked(usize),
    /// Decides without looking (no matchers, enforceable).
    Always(usize),
    /// Cannot be judged at the host: allow-ish actions stop here, refusing ones are skipped.
    Lenient(usize),
}

/// The host layer's plan for one host syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPlan {
    /// Host syscall name.
    pub name: &'static str,
    steps: Vec<Step>,
    /// What happens when no step decides.
    pub fallback: Action,
    /// The filter's entry.
    pub ret: Ret,
}

impl HostPlan {
    /// How rule `i` stands here: `'c'` checked by argument, `'a'` decides
    /// by number, `'l'` not judged at the host.
    pub fn step_of(&self, i: usize) -> Option<char> {
        self.steps.iter().find_map(|s| match *s {
            Step::Checked(j) if j == i => Some('c'),
            Step::Always(j) if j == i => Some('a'),
            Step::Lenient(j) if j == i => Some('l'),
            _ => None,
        })
    }

    /// Does no rule name this call (only the default applies)?
    pub fn steps_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The host layer of a policy for one guest architecture.
#[derive(Clone, Debug)]
pub struct HostLayer {
    /// The seccomp filter for the QEMU process.
    pub filter: Filter,
    /// Per host syscall number with anything to do.
    pub plans: BTreeMap<u32, HostPlan>,
    /// `limits.fork_per_second`: new processes beyond it in a second are
    /// refused with `EAGAIN` by the supervisor.
    pub fork_per_second: Option<u32>,
}

/// Host calls that make a new process: `fork`, `vfork`, `clone` (a
/// `clone` with `CLONE_THREAD` makes a thread and is not counted). QEMU
/// forks for the guest with these; it uses `clone3` only for its own
/// threads (QEMU 7.2 and 10.2 implement no guest `clone3`).
const FORK_CALLS: [&str; 3] = ["fork", "vfork", "clone"];

fn host_errno(name: &str) -> u16 {
    tables::errno_number(Arch::X86_64, name)
        .and_then(|e| u16::try_from(e).ok())
        .unwrap_or(libc::EPERM as u16)
}

/// Compile the host layer of `policy` for guests of `arch`.
pub fn compile(policy: &Policy, arch: Arch) -> HostLayer {
    let mut plans = BTreeMap::new();
    let mut filter = Filter::default();
    // Host calls an allowing rule names: a refusing default spares them.
    let mut allowed_by_rule = std::collections::HashSet::new();
    for r in policy.rules.iter().filter(|r| r.applies_on(arch)) {
        if r.action <= Action::Alert {
            for n in r.syscalls.iter().flat_map(|s| names::host_calls(s)) {
                allowed_by_rule.insert(n);
            }
        }
    }
    for nr in 0..MAX_HOST_NR {
        let Some(name) = tables::host_syscall_name(i64::from(nr)) else {
            continue;
        };
        let own = names::qemu_needs(name);
        let mut steps = Vec::new();
        for (i, r) in policy.rules.iter().enumerate() {
            if !r.applies_on(arch)
                || !r
                    .syscalls
                    .iter()
                    .any(|s| names::host_calls(s).contains(&name))
            {
                continue;
            }
            let host_checkable = r.args.is_empty();
            let step = if r.has_matchers() && host_checkable {
                Step::Checked(i)
            } else if !host_checkable || (own && r.action >= Action::Deny) {
                Step::Lenient(i)
            } else {
                Step::Always(i)
            };
            steps.push(step);
        }
        let fallback = if policy.default >= Action::Deny && (own || allowed_by_rule.contains(name))
        {
            Action::Allow
        } else {
            policy.default
        };
        // Outcomes the steps can reach, in order, until one always decides.
        let mut outcomes = Vec::new();
        let mut needs_args = false;
        let mut decided = None;
        for s in &steps {
            match *s {
                Step::Checked(i) => {
                    needs_args = true;
                    outcomes.push(policy.rules[i].action);
                }
                Step::Always(i) => {
                    decided = Some(policy.rules[i].action);
                    break;
                }
                Step::Lenient(i) if policy.rules[i].action <= Action::Alert => {
                    decided = Some(Action::Allow);
                    break;
                }
                Step::Lenient(_) => {}
            }
        }
        let last = decided.unwrap_or(fallback);
        outcomes.push(last);
        let refuses = outcomes.iter().any(|&a| a >= Action::Deny);
        let plain = |a: Action, errno: &str| match a {
            Action::Allow | Action::Alert => Ret::Allow,
            Action::Deny => Ret::Errno(host_errno(errno)),
            Action::Kill => Ret::Kill,
        };
        let ret = if !refuses {
            Ret::Allow
        } else if needs_args {
            Ret::Notify
        } else {
            let errno = steps
                .iter()
                .find_map(|s| match *s {
                    Step::Always(i) => Some(policy.rules[i].errno.as_str()),
                    _ => None,
                })
                .unwrap_or(&policy.default_errno);
            plain(last, errno)
        };
        if ret != Ret::Allow || !steps.is_empty() {
            filter.by_nr.insert(nr, ret);
            plans.insert(
                nr,
                HostPlan {
                    name,
                    steps,
                    fallback,
                    ret,
                },
            );
        }
    }
    let fork_per_second = policy.limits.fork_per_second;
    if fork_per_second.is_some() {
        // The supervisor counts every new process (the flags are in the
        // notification's registers: nothing to race).
        for name in FORK_CALLS {
            let Some(nr) = tables::host_syscall_nr(name).and_then(|n| u32::try_from(n).ok()) else {
                continue;
            };
            filter.by_nr.insert(nr, Ret::Notify);
            plans.entry(nr).or_insert(HostPlan {
                name,
                steps: Vec::new(),
                fallback: Action::Allow,
                ret: Ret::Notify,
            });
        }
    }
    filter.by_nr.retain(|_, r| *r != Ret::Allow);
    HostLayer {
        filter,
        plans,
        fork_per_second,
    }
}

/// A decision of the host layer worth an `alert` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAlert {
    /// When (CLOCK_MONOTONIC ns), to place it among the guest calls.
    pub t_ns: u64,
    /// Host thread that made the call.
    pub tid: u32,
    /// Host syscall name.
    pub host_call: &'static str,
    /// Rule that decided (`None`: the default).
    pub rule: Option<String>,
    /// What was done.
    pub action: Action,
    /// The path judged, if any.
    pub path: Option<String>,
    /// The address judged, if any.
    pub addr: Option<SocketAddr>,
    /// A refusal of a rate limit already alerted in this second: it sets
    /// its call's verdict but makes no alert record of its own.
    pub repeat: bool,
}

/// New processes counted in the current second.
#[derive(Debug, Default)]
struct ForkWindow {
    second: u64,
    count: u64,
    alerted: Option<u64>,
}

/// Most alerts kept between two drains; more are counted, not kept.
pub const MAX_PENDING_ALERTS: usize = 65536;

/// Answers the supervisor by the policy, and keeps the alerts it owes.
pub struct PolicyJudge {
    policy: Arc<Policy>,
    plans: BTreeMap<u32, HostPlan>,
    /// The `-L` prefix QEMU tries first (unsandboxed runs): a path under it
    /// is also judged without it, the stricter decision wins.
    prefix: Option<String>,
    alerts: Mutex<(Vec<HostAlert>, u64)>,
    fork_per_second: Option<u32>,
    forks: Mutex<ForkWindow>,
}

fn now_ns() -> u64 {
    shmem_proto::monotonic_ns()
}

impl PolicyJudge {
    /// A judge for the host layer of `policy` compiled as `layer`.
    pub fn new(policy: Arc<Policy>, layer: &HostLayer, prefix: Option<String>) -> PolicyJudge {
        PolicyJudge {
            policy,
            plans: layer.plans.clone(),
            prefix: prefix.map(|p| p.trim_end_matches('/').to_owned()),
            alerts: Mutex::new((Vec::new(), 0)),
            fork_per_second: layer.fork_per_second,
            forks: Mutex::new(ForkWindow::default()),
        }
    }

    /// Count a new process against `limits.fork_per_second` (seconds of
    /// CLOCK_MONOTONIC, as the eBPF backstop counts them): `Some(first)`
    /// when it is one too many, `first` for the first refusal of the second.
    fn fork_over_limit(&self, req: &Request<'_>, now: u64) -> Option<bool> {
        let limit = self.fork_per_second?;
        let name = self.plans.get(&req.nr)?.name;
        if !FORK_CALLS.contains(&name)
            || (name == "clone" && req.args[0] & libc::CLONE_THREAD as u64 != 0)
        {
            return None;
        }
        let mut w = self.forks.lock().unwrap_or_else(|e| e.into_inner());
        let second = now / 1_000_000_000;
        if w.second != second {
            (w.second, w.count) = (second, 0);
        }
        w.count += 1;
        if w.count <= u64::from(limit) {
            return None;
        }
        let first = w.alerted != Some(second);
        w.alerted = Some(second);
        Some(first)
    }

    fn push_alert(&self, a: HostAlert) {
        let mut g = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.len() < MAX_PENDING_ALERTS {
            g.0.push(a);
        } else {
            g.1 += 1;
        }
    }

    /// Take the alerts so far, and how many were dropped for lack of room.
    pub fn drain(&self) -> (Vec<HostAlert>, u64) {
        let mut g = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut g.0), std::mem::take(&mut g.1))
    }

    /// The decision for `req` on the host view: `(action, rule index)`.
    pub fn decide(&self, req: &Request<'_>) -> (Action, Option<usize>) {
        let Some(plan) = self.plans.get(&req.nr) else {
            return (Action::Allow, None);
        };
        let one = |path: Option<&str>| -> (Action, Option<usize>) {
            let call = Call {
                name: plan.name,
                args: req.args,
                path,
                addr: req.addr,
                flags: req.flags,
            };
            for s in &plan.steps {
                match *s {
                    Step::Checked(i) if self.policy.rules[i].matches_args(Arch::X86_64, &call) => {
                        return (self.policy.rules[i].action, Some(i))
                    }
                    Step::Always(i) => return (self.policy.rules[i].action, Some(i)),
                    Step::Lenient(i) if self.policy.rules[i].action <= Action::Alert => {
                        return (Action::Allow, None)
                    }
                    _ => {}
                }
            }
            (plan.fallback, None)
        };
        let mut d = one(req.path);
        if let (Some(pfx), Some(p)) = (&self.prefix, req.path) {
            if let Some(rest) = p.strip_prefix(pfx.as_str()).filter(|r| r.starts_with('/')) {
                let e = one(Some(rest));
                if e.0 > d.0 {
                    d = e;
                }
            }
        }
        d
    }
}

impl Judge for PolicyJudge {
    fn judge(&self, req: &Request<'_>) -> Answer {
        let (action, rule) = self.decide(req);
        let host_call = self.plans.get(&req.nr).map_or("?", |p| p.name);
        if action <= Action::Alert {
            let now = now_ns();
            if let Some(first) = self.fork_over_limit(req, now) {
                self.push_alert(HostAlert {
                    t_ns: now,
                    tid: req.pid,
                    host_call,
                    rule: Some("limits.fork_per_second".to_owned()),
                    action: Action::Deny,
                    path: None,
                    addr: None,
                    repeat: !first,
                });
                return Answer::Deny(libc::EAGAIN);
            }
        }
        if action.alerts() {
            self.push_alert(HostAlert {
                t_ns: now_ns(),
                tid: req.pid,
                host_call,
                rule: rule.map(|i| self.policy.rules[i].name.clone()),
                action,
                path: req.path.map(str::to_owned),
                addr: req.addr,
                repeat: false,
            });
        }
        match action {
            Action::Allow | Action::Alert => Answer::Allow,
            Action::Deny => {
                let errno = rule.map_or(self.policy.default_errno.as_str(), |i| {
                    &self.policy.rules[i].errno
                });
                Answer::Deny(i32::from(host_errno(errno)))
            }
            Action::Kill => Answer::Kill,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example() -> Policy {
        Policy::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/policies/example.toml"
        )))
        .unwrap()
    }

    fn nr(n: &str) -> u32 {
        tables::host_syscall_nr(n).unwrap() as u32
    }

    #[test]
    fn the_example_compiles_to_notify_and_nothing_that_breaks_qemu() {
        let l = compile(&example(), Arch::Mips);
        for n in [
            "open", "openat", "openat2", "creat", "execve", "execveat", "connect", "sendto",
            "sendmsg",
        ] {
            assert_eq!(l.filter.action(nr(n)), Ret::Notify, "{n}");
        }
        // Alerts need no enforcement; reads pass untouched.
        assert_eq!(l.filter.action(nr("setuid")), Ret::Allow);
        assert_eq!(l.filter.action(nr("read")), Ret::Allow);
        assert_eq!(l.filter.action(nr("mmap")), Ret::Allow);
    }

    #[test]
    fn number_rules_are_plain_entries_unless_qemu_needs_the_call() {
        let p = Policy::parse(
            "default = \"allow\"\n[[rule]]\nname = \"r\"\nsyscalls = [\"reboot\"]\naction = \"kill\"\n[[rule]]\nname = \"m\"\nsyscalls = [\"mount\", \"mmap\"]\naction = \"deny\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let l = compile(&p, Arch::Arm);
        assert_eq!(l.filter.action(nr("reboot")), Ret::Kill);
        assert_eq!(l.filter.action(nr("mount")), Ret::Errno(1));
        // QEMU maps its own code buffers: mmap is left to the guest layer.
        assert_eq!(l.filter.action(nr("mmap")), Ret::Allow);
    }

    #[test]
    fn a_refusing_default_spares_qemu_and_allowed_calls() {
        let p = Policy::parse(
            "default = \"deny\"\n[[rule]]\nname = \"io\"\nsyscalls = [\"readv\", \"_llseek\"]\naction = \"allow\"\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let l = compile(&p, Arch::Mips);
        assert_eq!(l.filter.action(nr("readv")), Ret::Allow);
        assert_eq!(l.filter.action(nr("lseek")), Ret::Allow);
        assert_eq!(l.filter.action(nr("futex")), Ret::Allow);
        assert_eq!(l.filter.action(nr("ptrace")), Ret::Errno(1));
        assert_eq!(l.filter.action(nr("socket")), Ret::Errno(1));
    }

    #[test]
    fn the_judge_applies_first_match_on_the_host_view() {
        let p = Arc::new(example());
        let l = compile(&p, Arch::Mips);
        let j = PolicyJudge::new(p.clone(), &l, Some("/usr/mips-linux-gnu/".into()));
        let req = |n: &str, path: Option<&'static str>| Request {
            nr: nr(n),
            path,
            ..Default::default()
        };
        assert_eq!(
            j.judge(&req("openat", Some("/etc/shadow"))),
            Answer::Deny(libc::EPERM)
        );
        assert_eq!(j.judge(&req("openat", Some("/etc/passwd"))), Answer::Allow);
        // Under QEMU's -L prefix the guest's name is the one judged.
        assert_eq!(
            j.judge(&req("openat", Some("/usr/mips-linux-gnu/etc/shadow"))),
            Answer::Deny(libc::EPERM)
        );
        assert_eq!(j.judge(&req("execve", Some("/bin/sh"))), Answer::Kill);
        assert_eq!(
            j.judge(&req("execve", Some("/usr/bin/qemu-mips"))),
            Answer::Allow
        );
        let mut c = req("connect", None);
        c.addr = "10.1.1.1:80".parse().ok();
        assert_eq!(j.judge(&c), Answer::Deny(libc::EPERM));
        c.addr = "127.0.0.1:80".parse().ok();
        assert_eq!(j.judge(&c), Answer::Allow);
        let (alerts, dropped) = j.drain();
        assert_eq!(dropped, 0);
        let rules: Vec<_> = alerts
            .iter()
            .map(|a| (a.rule.as_deref(), a.action))
            .collect();
        assert_eq!(
            rules,
            [
                (Some("no-shadow"), Action::Deny),
                (Some("no-shadow"), Action::Deny),
                (Some("no-shell"), Action::Kill),
                (Some("no-network"), Action::Deny)
            ]
        );
        assert_eq!(alerts[2].path.as_deref(), Some("/bin/sh"));
        assert!(j.drain().0.is_empty());
    }

    #[test]
    fn raw_oci_comparisons_never_refuse_at_the_host() {
        let p = Policy::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/policies/docker-default-subset.json"
        )))
        .unwrap();
        let l = compile(&p, Arch::X86_64);
        // personality is allowed for some arguments: never refused by number.
        assert_eq!(l.filter.action(nr("personality")), Ret::Allow);
        assert_eq!(l.filter.action(nr("reboot")), Ret::Kill);
        assert_eq!(l.filter.action(nr("mount")), Ret::Errno(1));
        // clone is QEMU's: its namespace rule is the guest layer's.
        assert_eq!(l.filter.action(nr("clone")), Ret::Allow);
    }
}
