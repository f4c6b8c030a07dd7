// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-architecture syscall names, errno and signal numbers, from maintained sources.
//!
//! * Syscall names and numbers come from the [`syscalls`] crate (its tables
//!   are generated from the kernel's syscall tables): `mips` (o32, numbers
//!   4000 + n; also used for mipsel), `arm` (EABI), `aarch64`, `powerpc`,
//!   `powerpc64` (used for ppc64le), `riscv64` and `x86_64` (the host).
//! * Errno numbers come from the Linux UAPI `<asm/errno.h>` of each
//!   architecture, turned into `tables/errno_gen.rs` by `tools/gen-tables`
//!   (see that file's header for the exact Debian packages and versions).
//! * Signal numbers come from each architecture's `<asm/signal.h>`, turned
//!   into `tables/signal_gen.rs` by `tools/gen-signals`.
//!
//! Errno numbers are translated between architectures through their
//! canonical names (`ENOSYS` …), never by number.

use std::collections::HashMap;
use std::sync::OnceLock;

use shmem_proto::Arch;

/// One architecture's errno numbering (generated; see `tools/gen-tables`).
struct ErrnoTable {
    /// `(number, primary name)`, sorted by number, one entry per number.
    by_number: &'static [(i64, &'static str)],
    /// `(name, number)` for every name including aliases, sorted by name.
    by_name: &'static [(&'static str, i64)],
}

mod errno_gen {
    use super::{Arch, ErrnoTable};
    include!("tables/errno_gen.rs");
}

mod signal_gen {
    use super::{Arch, ErrnoTable as NumberTable};
    include!("tables/signal_gen.rs");
}

/// Name → number map of one `syscalls` table, built on first use.
type NameMap = HashMap<&'static str, i64>;

/// Strip the raw-identifier prefix the `syscalls` crate keeps for keywords
/// (`r#break` → `break`).
fn clean(name: &'static str) -> &'static str {
    name.strip_prefix("r#").unwrap_or(name)
}

/// Per-`syscalls`-table lookups.  Every table gets a number → name and a
/// (lazily built) name → number function.
macro_rules! sys_table {
    ($modname:ident, $arch:ident) => {
        mod $modname {
            use super::{clean, NameMap, OnceLock};
            use syscalls::$arch::Sysno;

            /// Name of syscall `nr`.
            pub(super) fn name(nr: i64) -> Option<&'static str> {
                let nr = usize::try_from(nr).ok()?;
                Sysno::new(nr).map(|s| clean(s.name()))
            }

            /// Number of syscall `name`.
            pub(super) fn nr(name: &str) -> Option<i64> {
                static MAP: OnceLock<NameMap> = OnceLock::new();
                MAP.get_or_init(|| {
                    // Walk the numeric range rather than `Sysno::iter()`,
                    // which stops before the last entry in syscalls 0.8.1.
                    let first = Sysno::first().id();
                    let last = Sysno::last().id();
                    (first..=last)
                        .filter_map(|n| Sysno::new(n as usize))
                        .map(|s| (clean(s.name()), i64::from(s.id())))
                        .collect()
                })
                .get(name)
                .copied()
            }
        }
    };
}

sys_table!(sys_mips, mips);
sys_table!(sys_arm, arm);
sys_table!(sys_aarch64, aarch64);
sys_table!(sys_powerpc, powerpc);
sys_table!(sys_powerpc64, powerpc64);
sys_table!(sys_riscv64, riscv64);
sys_table!(sys_x86_64, x86_64);

/// Name of syscall number `nr` in `arch`'s guest numbering (MIPS o32 numbers
/// include the 4000 offset; mipsel shares the mips table, ppc64le uses
/// powerpc64's).  `None` for numbers the table does not know.
pub fn guest_syscall_name(arch: Arch, nr: i64) -> Option<&'static str> {
    match arch {
        Arch::Mips | Arch::Mipsel => sys_mips::name(nr),
        Arch::Arm => sys_arm::name(nr),
        Arch::Aarch64 => sys_aarch64::name(nr),
        Arch::Ppc => sys_powerpc::name(nr),
        Arch::Ppc64le => sys_powerpc64::name(nr),
        Arch::Riscv64 => sys_riscv64::name(nr),
        Arch::X86_64 => sys_x86_64::name(nr),
    }
}

/// Number of the syscall called `name` in `arch`'s guest numbering; the
/// inverse of [`guest_syscall_name`].
pub fn guest_syscall_nr(arch: Arch, name: &str) -> Option<i64> {
    match arch {
        Arch::Mips | Arch::Mipsel => sys_mips::nr(name),
        Arch::Arm => sys_arm::nr(name),
        Arch::Aarch64 => sys_aarch64::nr(name),
        Arch::Ppc => sys_powerpc::nr(name),
        Arch::Ppc64le => sys_powerpc64::nr(name),
        Arch::Riscv64 => sys_riscv64::nr(name),
        Arch::X86_64 => sys_x86_64::nr(name),
    }
}

/// Name of x86-64 host syscall number `nr`.
pub fn host_syscall_name(nr: i64) -> Option<&'static str> {
    sys_x86_64::name(nr)
}

/// Number of the x86-64 host syscall called `name`.
pub fn host_syscall_nr(name: &str) -> Option<i64> {
    sys_x86_64::nr(name)
}

/// Canonical name of the positive errno number `errno` in `arch`'s
/// numbering.  Where several names share a number the primary one is
/// returned (`EAGAIN` not `EWOULDBLOCK`, `EDEADLK` not `EDEADLOCK` where they
/// coincide, `EOPNOTSUPP` not `ENOTSUP`).
pub fn errno_name(arch: Arch, errno: i64) -> Option<&'static str> {
    let t = errno_gen::errno_table(arch).by_number;
    t.binary_search_by_key(&errno, |&(n, _)| n)
        .ok()
        .map(|i| t[i].1)
}

/// Number of the errno called `name` (aliases such as `EWOULDBLOCK` and
/// `ENOTSUP` included) in `arch`'s numbering.
pub fn errno_number(arch: Arch, name: &str) -> Option<i64> {
    let t = errno_gen::errno_table(arch).by_name;
    t.binary_search_by(|&(n, _)| n.cmp(name))
        .ok()
        .map(|i| t[i].1)
}

/// Canonical name of x86-64 host errno `errno`.
pub fn host_errno_name(errno: i64) -> Option<&'static str> {
    errno_name(Arch::X86_64, errno)
}

/// The host (x86-64) errno number that means the same as guest errno
/// `errno` of `arch`, translated through its name.  `None` if the guest
/// number is unknown or its name does not exist on the host (MIPS `EINIT`).
pub fn guest_errno_to_host(arch: Arch, errno: i64) -> Option<i64> {
    errno_number(Arch::X86_64, errno_name(arch, errno)?)
}

/// The guest errno number of `arch` that means the same as host (x86-64)
/// errno `errno`, translated through its name.
pub fn host_errno_to_guest(arch: Arch, errno: i64) -> Option<i64> {
    errno_number(arch, host_errno_name(errno)?)
}

/// Name of signal `sig` in `arch`'s numbering (MIPS numbers many signals
/// differently: its SIGBUS is 10, SIGUSR1 16).
pub fn signal_name(arch: Arch, sig: i64) -> Option<&'static str> {
    let t = signal_gen::signal_table(arch).by_number;
    t.binary_search_by_key(&sig, |&(n, _)| n)
        .ok()
        .map(|i| t[i].1)
}

/// Number of the signal called `name` in `arch`'s numbering.
pub fn signal_number(arch: Arch, name: &str) -> Option<i64> {
    let t = signal_gen::signal_table(arch).by_name;
    t.binary_search_by(|&(n, _)| n.cmp(name))
        .ok()
        .map(|i| t[i].1)
}

/// The guest signal of `arch` that host (x86-64) signal `sig` is, by name
/// (QEMU maps guest and host signals by name).
pub fn host_signal_to_guest(arch: Arch, sig: i64) -> Option<i64> {
    signal_number(arch, signal_name(Arch::X86_64, sig)?)
}

/// Syscalls with a path argument, by (guest or host) name → index of the
/// first path argument (`open` 0, `openat` 1, `stat64` 0, `execve` 0, …),
/// used to show paths.  `None` for syscalls without a path argument.
///
/// This list is by syscall semantics (no maintained machine-readable source
/// carries it); names are checked against the `syscalls` tables in tests.
pub fn path_arg(name: &str) -> Option<usize> {
    static MAP: std::sync::OnceLock<rustc_hash::FxHashMap<&'static str, usize>> =
        std::sync::OnceLock::new();
    MAP.get_or_init(|| shmem_proto::paths::PATH_ARGS.iter().copied().collect())
        .get(name)
        .copied()
}

/// How many arguments syscall `name` takes, for display.
///
/// No maintained machine-readable source of argument counts is available
/// (the `syscalls` crate has none, and the kernel's `include/linux/syscalls.h`
/// is not shipped in the UAPI packages), so this always returns `None`; the
/// caller then shows all six argument registers.
pub fn arg_count(name: &str) -> Option<usize> {
    let _ = name;
    None
}

/// Host syscalls that do not return to the caller on success: `exit`,
/// `exit_group`, and the `execve` family (`execve`, `execveat`), which
/// return only on failure.
pub fn is_noreturn(name: &str) -> bool {
    matches!(name, "exit" | "exit_group" | "execve" | "execveat")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mips_syscalls() {
        let m = |n| guest_syscall_name(Arch::Mips, n);
        assert_eq!(m(4005), Some("open"));
        assert_eq!(m(4140), Some("_llseek"));
        assert_eq!(m(4283), Some("set_thread_area"));
        assert_eq!(m(4425), Some("io_uring_setup"));
        assert_eq!(m(4366), Some("statx"));
        assert_eq!(m(4017), Some("break"));
        assert_eq!(m(5), None);
        assert_eq!(m(-1), None);
        assert_eq!(guest_syscall_name(Arch::Mipsel, 4005), Some("open"));
        assert_eq!(guest_syscall_nr(Arch::Mips, "open"), Some(4005));
        assert_eq!(guest_syscall_nr(Arch::Mipsel, "break"), Some(4017));
        assert_eq!(guest_syscall_nr(Arch::Mips, "no_such_call"), None);
    }

    #[test]
    fn host_syscalls() {
        assert_eq!(host_syscall_name(257), Some("openat"));
        assert_eq!(host_syscall_name(0), Some("read"));
        assert_eq!(host_syscall_nr("openat"), Some(257));
        assert_eq!(host_syscall_nr("exit_group"), Some(231));
    }

    #[test]
    fn other_arches() {
        assert_eq!(guest_syscall_name(Arch::Aarch64, 56), Some("openat"));
        assert_eq!(guest_syscall_name(Arch::Riscv64, 56), Some("openat"));
        assert_eq!(guest_syscall_name(Arch::Arm, 5), Some("open"));
        assert_eq!(guest_syscall_name(Arch::Ppc, 5), Some("open"));
        assert_eq!(guest_syscall_name(Arch::Ppc64le, 5), Some("open"));
        assert_eq!(guest_syscall_nr(Arch::Ppc64le, "openat"), Some(286));
    }

    #[test]
    fn name_number_round_trip_every_table() {
        for arch in Arch::ALL {
            let mut seen = 0;
            for nr in 0..5000 {
                if let Some(name) = guest_syscall_name(arch, nr) {
                    assert_eq!(guest_syscall_nr(arch, name), Some(nr), "{arch:?} {name}");
                    seen += 1;
                }
            }
            assert!(seen > 250, "{arch:?}: only {seen} syscalls");
        }
    }

    #[test]
    fn mips_errno() {
        assert_eq!(errno_name(Arch::Mips, 89), Some("ENOSYS"));
        assert_eq!(errno_name(Arch::Mips, 2), Some("ENOENT"));
        assert_eq!(errno_name(Arch::Mips, 11), Some("EAGAIN"));
        assert_eq!(errno_name(Arch::Mips, 93), Some("ENOTEMPTY"));
        assert_eq!(errno_name(Arch::Mips, 90), Some("ELOOP"));
        assert_eq!(errno_name(Arch::Mips, 78), Some("ENAMETOOLONG"));
        assert_eq!(errno_name(Arch::Mips, 1133), Some("EDQUOT"));
        assert_eq!(errno_name(Arch::Mipsel, 89), Some("ENOSYS"));
        assert_eq!(guest_errno_to_host(Arch::Mips, 89), Some(38));
        assert_eq!(host_errno_to_guest(Arch::Mips, 39), Some(93));
        assert_eq!(errno_number(Arch::Mips, "EWOULDBLOCK"), Some(11));
    }

    #[test]
    fn primary_names_and_aliases() {
        assert_eq!(host_errno_name(11), Some("EAGAIN"));
        assert_eq!(host_errno_name(35), Some("EDEADLK"));
        assert_eq!(host_errno_name(95), Some("EOPNOTSUPP"));
        assert_eq!(errno_number(Arch::X86_64, "EDEADLOCK"), Some(35));
        assert_eq!(errno_number(Arch::X86_64, "ENOTSUP"), Some(95));
        assert_eq!(errno_number(Arch::Mips, "ENOTSUP"), Some(122));
        assert_eq!(errno_name(Arch::Ppc, 58), Some("EDEADLOCK"));
        assert_eq!(errno_name(Arch::Ppc, 35), Some("EDEADLK"));
        assert_eq!(guest_errno_to_host(Arch::Ppc64le, 58), Some(35));
        assert_eq!(errno_name(Arch::X86_64, 58), None);
        assert_eq!(errno_name(Arch::X86_64, 0), None);
    }

    #[test]
    fn host_errno_round_trips_through_every_guest() {
        let mut known = 0;
        for e in 1..=133 {
            let Some(name) = host_errno_name(e) else {
                continue;
            };
            known += 1;
            for arch in Arch::ALL {
                let g = host_errno_to_guest(arch, e)
                    .unwrap_or_else(|| panic!("{name} missing on {arch:?}"));
                assert_eq!(errno_name(arch, g), Some(name), "{arch:?}");
                assert_eq!(guest_errno_to_host(arch, g), Some(e), "{arch:?} {name}");
            }
        }
        // 133 numbers minus the two holes (41, 58) of asm-generic.
        assert_eq!(known, 131);
    }

    #[test]
    fn generic_arches_share_host_numbering() {
        for arch in [Arch::Arm, Arch::Aarch64, Arch::Riscv64] {
            for e in 0..=200 {
                assert_eq!(errno_name(arch, e), host_errno_name(e), "{arch:?} {e}");
            }
        }
        for e in 0..=200 {
            if e != 58 {
                assert_eq!(errno_name(Arch::Ppc, e), host_errno_name(e), "ppc {e}");
            }
        }
    }

    #[test]
    fn path_args_name_real_syscalls() {
        assert_eq!(path_arg("open"), Some(0));
        assert_eq!(path_arg("openat"), Some(1));
        assert_eq!(path_arg("stat64"), Some(0));
        assert_eq!(path_arg("execve"), Some(0));
        assert_eq!(path_arg("read"), None);
        // Every name in the list exists in at least one table.
        for &(n, i) in shmem_proto::paths::PATH_ARGS {
            assert_eq!(path_arg(n), Some(i), "{n}");
            assert!(
                Arch::ALL.iter().any(|&a| guest_syscall_nr(a, n).is_some()),
                "{n} is in no syscall table"
            );
        }
    }

    #[test]
    fn signals_are_numbered_per_architecture() {
        assert_eq!(signal_name(Arch::Mips, 10), Some("SIGBUS"));
        assert_eq!(signal_name(Arch::X86_64, 10), Some("SIGUSR1"));
        assert_eq!(signal_name(Arch::Mips, 6), Some("SIGABRT"));
        assert_eq!(signal_number(Arch::Mips, "SIGIOT"), Some(6));
        assert_eq!(host_signal_to_guest(Arch::Mips, 7), Some(10), "host SIGBUS");
        assert_eq!(host_signal_to_guest(Arch::Mipsel, 11), Some(11));
        assert_eq!(host_signal_to_guest(Arch::Arm, 7), Some(7));
        for a in Arch::ALL {
            for s in ["SIGSEGV", "SIGILL", "SIGTRAP", "SIGFPE", "SIGBUS", "SIGSYS"] {
                assert!(signal_number(a, s).is_some(), "{a:?} {s}");
            }
        }
    }

    #[test]
    fn noreturn() {
        assert!(is_noreturn("exit_group"));
        assert!(is_noreturn("exit"));
        assert!(!is_noreturn("read"));
        assert_eq!(arg_count("read"), None);
    }
}
