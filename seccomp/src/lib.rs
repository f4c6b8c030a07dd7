//! guestview's host seccomp layer.
//!
//! * [`Filter`] — x86-64 host syscall numbers → [`Ret`]; [`Filter::compile`]
//!   makes the classic-BPF program (other architectures and the x32 ABI
//!   are killed: a process cannot step around the table by switching ABI).
//! * [`prepare`] — called before `fork`; in the child, just before `exec`,
//!   [`ChildSide::install_in_child`] sets `PR_SET_NO_NEW_PRIVS` and installs
//!   the filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; it allocates
//!   nothing and calls only async-signal-safe functions. The child then
//!   waits in its own (checked) `exec` while the parent takes the listener
//!   with `pidfd_getfd`.
//! * [`Supervisor`] — in the parent, answers the notifications through a
//!   [`Judge`]. See [`supervisor`] for how each call is answered without a
//!   check-then-continue a racing thread could beat.
//!
//! All `unsafe` is in the private `sys` module.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

pub mod supervisor;
mod sys;

pub use supervisor::{Answer, First, Judge, Request, Stats, Supervisor};
pub use sys::SockFilter;

/// What the filter does with a host syscall.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ret {
    /// Let it run.
    #[default]
    Allow,
    /// Fail it with this (positive, host) errno.
    Errno(u16),
    /// Kill the process (`SECCOMP_RET_KILL_PROCESS`).
    Kill,
    /// Ask the supervisor (`SECCOMP_RET_USER_NOTIF`).
    Notify,
}

impl Ret {
    fn k(self) -> u32 {
        match self {
            Ret::Allow => 0x7fff_0000,
            Ret::Errno(e) => 0x0005_0000 | u32::from(e),
            Ret::Kill => 0x8000_0000,
            Ret::Notify => 0x7fc0_0000,
        }
    }
}

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Syscall numbers at or above this are the x32 ABI.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Most entries a filter takes (two instructions each, under the
/// kernel's 4096-instruction limit).
pub const MAX_ENTRIES: usize = 2000;

/// A seccomp filter for an x86-64 process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Action for numbers not in `by_nr`.
    pub default: Ret,
    /// Host syscall number → action.
    pub by_nr: BTreeMap<u32, Ret>,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filter has more entries than a program can hold.
    #[error("seccomp filter with {0} entries, more than the {MAX_ENTRIES} a program can hold")]
    TooLarge(usize),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
    /// The child never sent its listener (it failed before exec).
    #[error("the child sent no seccomp listener (it failed before installing the filter)")]
    NoListener,
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter {
        code: BPF_JMP | BPF_JEQ | BPF_K,
        jt,
        jf,
        k,
    }
}

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

impl Filter {
    /// The classic-BPF program: check the architecture (kill otherwise),
    /// kill the x32 ABI, then one compare-and-return per entry whose
    /// action differs from the default, then the default.
    pub fn compile(&self) -> Result<Vec<SockFilter>, Error> {
        let entries: Vec<(u32, Ret)> = self
            .by_nr
            .iter()
            .filter(|(_, &r)| r != self.default)
            .map(|(&n, &r)| (n, r))
            .collect();
        if entries.len() > MAX_ENTRIES {
            return Err(Error::TooLarge(entries.len()));
        }
        let mut p = Vec::with_capacity(6 + 2 * entries.len());
        // seccomp_data: nr at 0, arch at 4.
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, 4));
        p.push(jeq(AUDIT_ARCH_X86_64, 1, 0));
        p.push(stmt(BPF_RET | BPF_K, Ret::Kill.k()));
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, 0));
        p.push(SockFilter {
            code: BPF_JMP | BPF_JGE | BPF_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        });
        p.push(stmt(BPF_RET | BPF_K, Ret::Kill.k()));
        for (nr, r) in entries {
            p.push(jeq(nr, 0, 1));
            p.push(stmt(BPF_RET | BPF_K, r.k()));
        }
        p.push(stmt(BPF_RET | BPF_K, self.default.k()));
        Ok(p)
    }

    /// Does any entry ask the supervisor?
    pub fn notifies(&self) -> bool {
        self.default == Ret::Notify || self.by_nr.values().any(|&r| r == Ret::Notify)
    }

    /// What the filter does with `nr` (as the program would).
    pub fn action(&self, nr: u32) -> Ret {
        if nr >= X32_SYSCALL_BIT {
            return Ret::Kill;
        }
        self.by_nr.get(&nr).copied().unwrap_or(self.default)
    }
}

/// Host `execve` and `execveat`: always checked when anything is, so the
/// child stops in its own exec until the supervisor holds the listener.
pub const EXEC_NRS: [u32; 2] = [59, 322];

/// Split `filter` into what the child installs and what the parent
/// supervises. Call before `fork`.
///
/// The hand-over needs no syscall after the filter is in place: when the
/// filter notifies anything, `execve`/`execveat` are notified too, so the
/// child, having installed the filter, stops in its `exec`; the parent
/// ([`ParentSide::start_supervisor`], given the child's pid) finds the
/// listener in `/proc/PID/fd`, takes its own copy with `pidfd_getfd`, and
/// answers the exec (and everything after). A child that sent the
/// listener over a socket would deadlock on a filter that checks
/// `sendmsg`.
pub fn prepare(filter: &Filter) -> Result<(ChildSide, ParentSide), Error> {
    let mut f = filter.clone();
    let notify = f.notifies();
    if notify {
        for nr in EXEC_NRS {
            if matches!(f.action(nr), Ret::Allow) {
                f.by_nr.insert(nr, Ret::Notify);
            }
        }
    }
    let prog = f.compile()?;
    Ok((ChildSide { prog, notify }, ParentSide { notify }))
}

/// What the child needs: the program.
pub struct ChildSide {
    prog: Vec<SockFilter>,
    notify: bool,
}

impl ChildSide {
    /// In the child, after `fork`, as the last step before `exec`: no new
    /// privileges, then the filter (with a listener when it notifies; the
    /// listener is close-on-exec, the parent takes its own copy while the
    /// child waits in its exec). Allocation-free and async-signal-safe.
    /// The child must hold no other seccomp listener (a launcher running
    /// several supervisors closes inherited descriptors first, as
    /// [`spawn`] does), or the parent cannot tell which is its own.
    /// The compiled program (to merge into a launcher's own install).
    pub fn program(&self) -> &[SockFilter] {
        &self.prog
    }

    /// `Err(errno)` if a step failed (the child must then not exec).
    pub fn install_in_child(&self) -> Result<(), i32> {
        let flags = if self.notify {
            sys::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            0
        };
        sys::install_filter(&self.prog, flags).map(|_| ())
    }
}

/// What the parent keeps.
pub struct ParentSide {
    notify: bool,
}

impl ParentSide {
    /// Does the filter notify (is a supervisor needed)?
    pub fn notifies(&self) -> bool {
        self.notify
    }

    /// Start the supervisor on a thread of its own: it takes the listener
    /// of child `pid` — or of a descendant up to three generations down,
    /// for a launcher that forks again (into a PID namespace) before
    /// installing — as soon as the filter is installed, then
    /// answers notifications through `judge` until [`Supervisor::stop`] or
    /// until no process uses the filter any more. Without notifying entries
    /// there is nothing to supervise and the supervisor only reports zeros.
    pub fn start_supervisor(
        self,
        judge: std::sync::Arc<dyn Judge>,
        pid: u32,
    ) -> Result<Supervisor, Error> {
        Supervisor::start(pid, self.notify, judge, None)
    }

    /// [`ParentSide::start_supervisor`] with `first` looking at every
    /// notification before `judge` (one listener shared by two users).
    pub fn start_supervisor_with(
        self,
        judge: std::sync::Arc<dyn Judge>,
        pid: u32,
        first: std::sync::Arc<dyn First>,
    ) -> Result<Supervisor, Error> {
        Supervisor::start(pid, self.notify, judge, Some(first))
    }
}

/// Fork and exec `argv` under `child`'s filter (as `uid`/`gid` when given,
/// its stdout on `stdout` when given); the child's pid. For tests and
/// tools; guestview's launcher has its own fork and calls
/// [`ChildSide::install_in_child`] itself.
pub fn spawn(
    child: &ChildSide,
    argv: &[&str],
    uid: Option<u32>,
    stdout: Option<&OwnedFd>,
) -> Result<u32, Error> {
    let args: Vec<std::ffi::CString> = argv
        .iter()
        .map(|a| std::ffi::CString::new(*a))
        .collect::<Result<_, _>>()
        .map_err(|_| Error::Sys {
            what: "argument with a NUL byte",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })?;
    sys::spawn(&args, uid, stdout.map(AsRawFd::as_raw_fd), &|| {
        child.install_in_child()
    })
    .map_err(|source| Error::Sys {
        what: "fork",
        source,
    })
}

/// Wait for process `pid`: `Ok(code)` or `Err(signal)`.
pub fn wait(pid: u32) -> Result<i32, i32> {
    sys::wait(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_checks_arch_and_x32_then_entries() {
        let mut f = Filter::default();
        f.by_nr.insert(105, Ret::Errno(1));
        f.by_nr.insert(257, Ret::Notify);
        f.by_nr.insert(0, Ret::Allow);
        let p = f.compile().unwrap();
        assert_eq!(p.len(), 6 + 4 + 1);
        assert_eq!(p[1].k, AUDIT_ARCH_X86_64);
        assert_eq!(p[2].k, 0x8000_0000);
        assert_eq!(p[4].k, X32_SYSCALL_BIT);
        assert_eq!((p[6].k, p[7].k), (105, 0x0005_0001));
        assert_eq!((p[8].k, p[9].k), (257, 0x7fc0_0000));
        assert_eq!(p[10].k, 0x7fff_0000);
        assert!(f.notifies());
        assert_eq!(f.action(105), Ret::Errno(1));
        assert_eq!(f.action(0x4000_0001), Ret::Kill);
    }

    #[test]
    fn too_many_entries_are_refused() {
        let mut f = Filter::default();
        for n in 0..=MAX_ENTRIES as u32 {
            f.by_nr.insert(n, Ret::Kill);
        }
        assert!(matches!(f.compile(), Err(Error::TooLarge(_))));
    }
}
