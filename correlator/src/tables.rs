// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-architecture syscall names, errno and signal numbers, from maintained sources.
//!
//! * Syscall names and numbers come from the Linux UAPI `<asm/unistd.h>` of
//!   each architecture in Debian's `linux-libc-dev` packages, run through
//!   that architecture's cross compiler so its ABI picks the numbers (MIPS
//!   o32 numbers 4000 + n, ARM EABI with its private calls from 0xf0000,
//!   PowerPC 32/64, the generic table of aarch64 and riscv64), turned into
//!   `tables/syscall_gen.rs` by `tools/gen-tables`. Numbers those headers
//!   (Linux 6.1) do not have are syscalls added since; they are named from
//!   the [`syscalls`] crate's newer tables (`cachestat`, `fchmodat2`,
//!   `mseal`, `riscv_hwprobe` …). The crate is not used where the headers
//!   speak: its aarch64 table names 79 `fstatat` (the kernel's
//!   `newfstatat`) and has the 32-bit-only `*_time64` calls, and none of its
//!   tables has ARM's private calls.
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

mod syscall_gen {
    use super::Arch;
    include!("tables/syscall_gen.rs");
}

mod signal_gen {
    use super::{Arch, ErrnoTable as NumberTable};
    include!("tables/signal_gen.rs");
}

/// First of ARM's private syscall numbers (`__ARM_NR_BASE`): the numbers
/// from here on are not the kernel's regular table.
const ARM_PRIVATE_BASE: i64 = 0xf0000;

/// Strip the raw-identifier prefix the `syscalls` crate keeps for keywords
/// (`r#break` → `break`).
fn clean(name: &'static str) -> &'static str {
    name.strip_prefix("r#").unwrap_or(name)
}

/// `(number, name)` of every syscall the `syscalls` crate's table `$arch`
/// has, for the syscalls newer than the generated tables.
macro_rules! crate_table {
    ($arch:ident) => {{
        use syscalls::$arch::Sysno;
        // Walk the numeric range rather than `Sysno::iter()`, which stops
        // before the last entry in syscalls 0.8.1.
        let first = Sysno::first().id();
        let last = Sysno::last().id();
        (first..=last)
            .filter_map(|n| Sysno::new(n as usize))
            .map(|s| (i64::from(s.id()), clean(s.name())))
            .collect::<Vec<_>>()
    }};
}

/// The `syscalls` crate's table for `arch` (mipsel shares mips's, ppc64le
/// uses powerpc64's).
fn crate_table(arch: Arch) -> Vec<(i64, &'static str)> {
    match arch {
        Arch::Mips | Arch::Mipsel => crate_table!(mips),
        Arch::Arm => crate_table!(arm),
        Arch::Aarch64 => crate_table!(aarch64),
        Arch::Ppc => crate_table!(powerpc),
        Arch::Ppc64le => crate_table!(powerpc64),
        Arch::Riscv64 => crate_table!(riscv64),
        Arch::X86_64 => crate_table!(x86_64),
    }
}

/// One architecture's syscall names both ways.
struct SyscallTable {
    /// Lowest regular number (4000 on MIPS o32, else 0).
    base: i64,
    /// Names of `base, base + 1, …` up to the last regular number: every
    /// host syscall is named, so this is an index, not a search.
    dense: Vec<Option<&'static str>>,
    /// ARM's private calls (from 0xf0000), sorted by number.
    private: Vec<(i64, &'static str)>,
    /// Name → number.
    by_name: HashMap<&'static str, i64>,
}

impl SyscallTable {
    fn build(arch: Arch) -> SyscallTable {
        let headers = syscall_gen::syscall_table(arch);
        let known = |n: i64| headers.binary_search_by_key(&n, |e| e.0).is_ok();
        let mut by_number: Vec<(i64, &'static str)> = headers.to_vec();
        // Numbers the headers do not have are syscalls added since (at the
        // end of the table, or in a hole such as riscv_hwprobe, 258, and
        // x86-64's uretprobe, 335) — except the crate's 32-bit-only
        // *time64 calls in its aarch64 table: the kernel has them only for
        // 32-bit ABIs.
        by_number.extend(crate_table(arch).into_iter().filter(|&(n, name)| {
            !known(n) && n < ARM_PRIVATE_BASE && !(arch.is_64bit() && name.ends_with("time64"))
        }));
        by_number.sort_unstable();
        by_number.dedup_by_key(|e| e.0);
        let mut by_name = HashMap::with_capacity(by_number.len());
        for &(n, name) in &by_number {
            by_name.entry(name).or_insert(n);
        }
        let (regular, private): (Vec<_>, Vec<_>) = by_number
            .into_iter()
            .partition(|&(n, _)| n < ARM_PRIVATE_BASE);
        let base = regular.first().map_or(0, |e| e.0);
        let last = regular.last().map_or(0, |e| e.0);
        let mut dense = vec![None; usize::try_from(last - base + 1).unwrap_or(0)];
        for (n, name) in regular {
            if let Ok(i) = usize::try_from(n - base) {
                dense[i] = Some(name);
            }
        }
        SyscallTable {
            base,
            dense,
            private,
            by_name,
        }
    }

    fn name(&self, nr: i64) -> Option<&'static str> {
        if nr >= ARM_PRIVATE_BASE {
            let p = &self.private;
            return p.binary_search_by_key(&nr, |e| e.0).ok().map(|i| p[i].1);
        }
        let i = usize::try_from(nr.checked_sub(self.base)?).ok()?;
        self.dense.get(i).copied().flatten()
    }
}

/// The syscall table of `arch`, built on first use.
fn syscall_table(arch: Arch) -> &'static SyscallTable {
    static TABLES: [OnceLock<SyscallTable>; 8] = [const { OnceLock::new() }; 8];
    let i = Arch::ALL.iter().position(|&a| a == arch).unwrap_or(0);
    TABLES[i].get_or_init(|| SyscallTable::build(arch))
}

/// Name of syscall number `nr` in `arch`'s guest numbering (MIPS o32 numbers
/// include the 4000 offset; ARM's private calls are 0xf0001…).  `None` for
/// numbers the table does not know.
pub fn guest_syscall_name(arch: Arch, nr: i64) -> Option<&'static str> {
    syscall_table(arch).name(nr)
}

/// Number of the syscall called `name` in `arch`'s guest numbering; the
/// inverse of [`guest_syscall_name`].
pub fn guest_syscall_nr(arch: Arch, name: &str) -> Option<i64> {
    syscall_table(arch).by_name.get(name).copied()
}

/// Name of x86-64 host syscall number `nr`.
pub fn host_syscall_name(nr: i64) -> Option<&'static str> {
    guest_syscall_name(Arch::X86_64, nr)
}

/// Number of the x86-64 host syscall called `name`.
pub fn host_syscall_nr(name: &str) -> Option<i64> {
    guest_syscall_nr(Arch::X86_64, name)
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
    fn arm_private_calls_and_aliases() {
        let a = |n| guest_syscall_name(Arch::Arm, n);
        assert_eq!(a(0xf0001), Some("breakpoint"));
        assert_eq!(a(0xf0002), Some("cacheflush"));
        assert_eq!(a(0xf0005), Some("set_tls"));
        assert_eq!(a(0xf0006), Some("get_tls"));
        assert_eq!(a(0xf0000), None);
        assert_eq!(a(0xf0007), None);
        assert_eq!(guest_syscall_nr(Arch::Arm, "set_tls"), Some(0xf0005));
        // EABI numbers, and the name defined by number over its alias
        // (sync_file_range2 is #defined as arm_sync_file_range).
        assert_eq!(a(0), Some("restart_syscall"));
        assert_eq!(a(192), Some("mmap2"));
        assert_eq!(a(191), Some("ugetrlimit"));
        assert_eq!(a(341), Some("arm_sync_file_range"));
        assert_eq!(a(270), Some("arm_fadvise64_64"));
        assert_eq!(a(397), Some("statx"));
        // no OABI-only calls in the EABI table
        assert_eq!(a(13), None, "time is OABI only");
        assert_eq!(a(90), None, "old mmap is OABI only");
    }

    #[test]
    fn generic_table_of_aarch64_and_riscv64() {
        for arch in [Arch::Aarch64, Arch::Riscv64] {
            let g = |n| guest_syscall_name(arch, n);
            assert_eq!(g(79), Some("newfstatat"), "{arch:?}");
            assert_eq!(g(80), Some("fstat"));
            assert_eq!(g(62), Some("lseek"));
            assert_eq!(g(222), Some("mmap"));
            assert_eq!(g(93), Some("exit"));
            assert_eq!(g(94), Some("exit_group"));
            assert_eq!(g(5), Some("setxattr"));
            // The *_time64 calls exist only on 32-bit architectures.
            assert_eq!(g(403), None, "{arch:?}");
            assert_eq!(g(422), None, "{arch:?}");
            assert_eq!(g(244), None, "arch_specific_syscall is a base");
            assert_eq!(guest_syscall_nr(arch, "open"), None);
            assert_eq!(guest_syscall_nr(arch, "fstatat"), None);
        }
        assert_eq!(
            guest_syscall_name(Arch::Riscv64, 259),
            Some("riscv_flush_icache")
        );
        assert_eq!(guest_syscall_name(Arch::Aarch64, 259), None);
    }

    #[test]
    fn powerpc_32_and_64() {
        let p = |n| guest_syscall_name(Arch::Ppc, n);
        let p64 = |n| guest_syscall_name(Arch::Ppc64le, n);
        assert_eq!(p(140), Some("_llseek"));
        assert_eq!(p(192), Some("mmap2"));
        assert_eq!(p(291), Some("fstatat64"));
        assert_eq!(p(403), Some("clock_gettime64"));
        assert_eq!(p64(140), Some("_llseek"), "ppc64 keeps the number");
        assert_eq!(p64(192), None, "no mmap2 on ppc64");
        assert_eq!(p64(291), Some("newfstatat"));
        assert_eq!(p64(403), None, "no time64 calls on ppc64");
        assert_eq!(p(102), Some("socketcall"));
        assert_eq!(p(326), Some("socket"));
    }

    #[test]
    fn syscalls_newer_than_the_headers_come_from_the_crate() {
        assert_eq!(guest_syscall_name(Arch::Aarch64, 452), Some("fchmodat2"));
        assert_eq!(guest_syscall_name(Arch::Mips, 4462), Some("mseal"));
        assert_eq!(guest_syscall_name(Arch::Arm, 451), Some("cachestat"));
        assert_eq!(host_syscall_name(452), Some("fchmodat2"));
        assert_eq!(guest_syscall_nr(Arch::Riscv64, "mseal"), Some(462));
        // added in holes of the table
        assert_eq!(
            guest_syscall_name(Arch::Riscv64, 258),
            Some("riscv_hwprobe")
        );
        assert_eq!(host_syscall_name(335), Some("uretprobe"));
        // but never a 32-bit-only call on a 64-bit architecture
        assert_eq!(guest_syscall_name(Arch::Aarch64, 403), None);
    }

    #[test]
    fn name_number_round_trip_every_table() {
        for arch in Arch::ALL {
            let mut seen = 0;
            for nr in (0..5000).chain(0xf0000..0xf0010) {
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
