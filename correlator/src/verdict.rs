//! Verdicts: what QEMU did with a guest call, judged from the host calls.

use crate::tables;
use shmem_proto::trace::HostCall;
use shmem_proto::Arch;
use std::borrow::Cow;

/// QEMU's internal "restart this syscall" code (never seen by the guest).
pub const QEMU_ERESTARTSYS: i64 = 512;
/// QEMU's internal "sigreturn done, leave registers alone" code.
pub const QEMU_ESIGRETURN: i64 = 513;

/// The errno name a guest return value carries, in the guest's numbering.
pub fn errno_of(arch: Arch, ret: i64) -> Option<Cow<'static, str>> {
    if !(-4095..0).contains(&ret) {
        return None;
    }
    Some(match -ret {
        QEMU_ERESTARTSYS => Cow::Borrowed("QEMU_ERESTARTSYS"),
        QEMU_ESIGRETURN => Cow::Borrowed("QEMU_ESIGRETURN"),
        e => tables::errno_name(arch, e).map_or_else(|| Cow::Owned(format!("E{e}")), Cow::Borrowed),
    })
}

/// The path a guest call names, as the host saw it: the last host call
/// with a decoded path (QEMU probes other prefixes first, then opens the
/// real one).
pub fn path_of(name: Option<&str>, host: &[HostCall]) -> Option<String> {
    // Most calls have no host call with a path: no need to ask about the name.
    let path = host.iter().rev().find_map(|h| h.path.as_ref())?;
    tables::path_arg(name?)?;
    Some(path.clone())
}

/// The verdict for one guest call (without policy): `passthrough`,
/// `translated`, `emulated` or `unsupported`.
pub fn verdict(
    arch: Arch,
    name: Option<&str>,
    ret: Option<i64>,
    host: &[HostCall],
) -> &'static str {
    if host.is_empty() {
        let enosys = tables::errno_number(arch, "ENOSYS");
        if ret.is_some() && ret.map(|r| -r) == enosys {
            return "unsupported";
        }
        return "emulated";
    }
    if mismatch(arch, name, ret, host).is_some() {
        return "mismatch";
    }
    match name {
        Some(n) if host.iter().any(|h| h.name == n) => "passthrough",
        _ => "translated",
    }
}

/// Calls whose result, when they succeed, is a byte count or a file
/// descriptor that QEMU hands through unchanged: the guest must see what
/// the host call returned.
const SAME_RESULT: &[&str] = &[
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "sendfile",
    "sendfile64",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "open",
    "openat",
    "openat2",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "socket",
    "accept",
    "accept4",
    "eventfd",
    "eventfd2",
    "epoll_create",
    "epoll_create1",
    "timerfd_create",
    "signalfd",
    "signalfd4",
    "memfd_create",
    "inotify_init",
    "inotify_init1",
    "pidfd_open",
];

/// Is `name` in [`SAME_RESULT`]? Asked twice for every guest call: a set
/// lookup, not a scan of the list.
fn is_same_result(name: &str) -> bool {
    static SET: std::sync::OnceLock<rustc_hash::FxHashSet<&'static str>> =
        std::sync::OnceLock::new();
    SET.get_or_init(|| SAME_RESULT.iter().copied().collect())
        .contains(name)
}

/// Why what the guest saw disagrees with what the host returned, if it
/// does. The host call that decides is the last one QEMU made (earlier ones
/// are probes, such as `access` under the `-L` prefix). Errors are compared
/// by name, each side in its own numbering (MIPS's `ENOENT` is 2 like
/// x86's, its `ENOSYS` 89 against 38); successes only where the result is a
/// byte count or a descriptor passed through unchanged ([`SAME_RESULT`]).
/// Restarts (QEMU's and the kernel's internal codes) are never judged.
pub fn mismatch(
    arch: Arch,
    name: Option<&str>,
    ret: Option<i64>,
    host: &[HostCall],
) -> Option<String> {
    let last = host.last()?;
    let (g, h) = (ret?, last.ret?);
    if g == h && g >= 0 {
        // The same success on both sides (most calls): nothing to judge.
        return None;
    }
    let guest_err = errno_of(arch, g);
    let host_err = (-4095..0).contains(&h).then_some(-h);
    let restart = |e: i64| (512..=530).contains(&e);
    if guest_err.as_deref().is_some_and(|e| e.starts_with("QEMU_")) || host_err.is_some_and(restart)
    {
        return None;
    }
    let same_result = name.is_some_and(is_same_result) && is_same_result(&last.name);
    match (guest_err, host_err) {
        (Some(ge), Some(he)) => {
            let hn = tables::host_errno_name(he)
                .map_or_else(|| Cow::Owned(format!("E{he}")), Cow::Borrowed);
            (ge != hn).then(|| format!("guest {ge}, host {} {hn}", last.name))
        }
        (Some(ge), None) if same_result => {
            Some(format!("guest {ge}, host {} returned {h}", last.name))
        }
        (None, Some(he)) if same_result => Some(format!(
            "guest {g}, host {} failed with {}",
            last.name,
            tables::host_errno_name(he).unwrap_or("an unknown errno")
        )),
        (None, None) if same_result && g != h => {
            Some(format!("guest {g}, host {} returned {h}", last.name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> HostCall {
        HostCall {
            name: name.to_owned().into(),
            ..Default::default()
        }
    }

    #[test]
    fn verdict_rules() {
        assert_eq!(
            verdict(Arch::Mips, Some("brk"), Some(4096), &[]),
            "emulated"
        );
        assert_eq!(
            verdict(Arch::Mips, Some("io_uring_setup"), Some(-89), &[]),
            "unsupported"
        );
        // -38 is x86's ENOSYS but MIPS's ENOLCK... whichever: not ENOSYS on MIPS
        assert_eq!(verdict(Arch::Mips, Some("x"), Some(-38), &[]), "emulated");
        assert_eq!(
            verdict(Arch::Mips, Some("read"), Some(3), &[h("read")]),
            "passthrough"
        );
        assert_eq!(
            verdict(Arch::Mips, Some("_llseek"), Some(0), &[h("lseek")]),
            "translated"
        );
        assert_eq!(
            verdict(Arch::Mips, None, Some(0), &[h("lseek")]),
            "translated"
        );
    }

    fn hr(name: &str, ret: i64) -> HostCall {
        HostCall {
            name: name.to_owned().into(),
            ret: Some(ret),
            ..Default::default()
        }
    }

    #[test]
    fn mismatch_compares_errno_names_and_passed_through_results() {
        let m = |name, ret, host: &[HostCall]| mismatch(Arch::Mips, Some(name), Some(ret), host);
        // MIPS ENOSYS is 89, x86's 38: the same error, no mismatch.
        assert_eq!(m("open", -89, &[hr("openat", -38)]), None);
        // MIPS EDQUOT is 1133, x86's 122.
        assert_eq!(m("write", -1133, &[hr("write", -122)]), None);
        // The last host call decides: a probe that failed does not count.
        assert_eq!(m("open", 3, &[hr("access", -2), hr("openat", 3)]), None);
        // A wrongly numbered errno: MIPS 13 is EACCES, x86 2 is ENOENT.
        assert_eq!(
            m("open", -13, &[hr("openat", -2)]).as_deref(),
            Some("guest EACCES, host openat ENOENT")
        );
        // Byte counts and descriptors pass through unchanged.
        assert!(m("read", 5, &[hr("read", 7)]).is_some());
        assert!(m("open", 4, &[hr("openat", 3)]).is_some());
        assert!(m("write", 1, &[hr("write", -14)]).is_some());
        assert!(m("write", -14, &[hr("write", 1)]).is_some());
        // Other results are QEMU's business (brk, mmap addresses, pipe).
        assert_eq!(m("brk", 0x5000, &[hr("mmap", 0x7f00_0000)]), None);
        assert_eq!(m("pipe", 3, &[hr("pipe2", 0)]), None);
        // Restarts are not judged, nor calls without a return or a host call.
        assert_eq!(m("read", -513, &[hr("read", -4)]), None);
        assert_eq!(m("read", -4, &[hr("read", -512)]), None);
        assert_eq!(
            mismatch(Arch::Mips, Some("read"), None, &[hr("read", 1)]),
            None
        );
        assert_eq!(m("read", 1, &[]), None);
        assert_eq!(
            verdict(Arch::Mips, Some("open"), Some(-13), &[hr("openat", -2)]),
            "mismatch"
        );
    }

    /// Each architecture's own names judged against the host's (x86-64):
    /// regression for aarch64's 79, once named `fstatat` from the syscalls
    /// crate, so a call QEMU passed through looked translated.
    #[test]
    fn every_architecture_is_judged_by_its_own_table() {
        let judge = |arch: Arch, nr: i64, ret: i64, host: &[HostCall]| {
            verdict(arch, tables::guest_syscall_name(arch, nr), Some(ret), host)
        };
        let hn = |n: &str| {
            assert!(
                tables::host_syscall_nr(n).is_some(),
                "{n} is a host syscall"
            );
            h(n)
        };
        assert_eq!(
            judge(Arch::Aarch64, 79, 0, &[hn("newfstatat")]),
            "passthrough"
        );
        assert_eq!(
            judge(Arch::Riscv64, 79, 0, &[hn("newfstatat")]),
            "passthrough"
        );
        assert_eq!(
            judge(Arch::Ppc64le, 291, 0, &[hn("newfstatat")]),
            "passthrough"
        );
        // 32-bit guests' calls QEMU translates
        assert_eq!(
            judge(Arch::Arm, 192, 0x4000_0000, &[hn("mmap")]),
            "translated"
        );
        assert_eq!(judge(Arch::Ppc, 140, 0, &[hn("lseek")]), "translated");
        assert_eq!(judge(Arch::Arm, 140, 0, &[hn("lseek")]), "translated");
        assert_eq!(judge(Arch::Arm, 191, 0, &[hn("prlimit64")]), "translated");
        assert_eq!(judge(Arch::Mips, 4220, 0, &[hn("fcntl")]), "translated");
        // ENOSYS in the guest's numbering only
        assert_eq!(judge(Arch::Arm, 309, -38, &[]), "unsupported");
        assert_eq!(judge(Arch::Ppc, 269, -38, &[]), "unsupported");
        assert_eq!(judge(Arch::Mipsel, 4280, -89, &[]), "unsupported");
        assert_eq!(
            judge(Arch::Mipsel, 4280, -38, &[]),
            "emulated",
            "38 is ENOLCK on MIPS"
        );
        assert_eq!(
            judge(Arch::Arm, 309, -89, &[]),
            "emulated",
            "89 is EDESTADDRREQ on ARM"
        );
        // a wrong errno is a mismatch through the guest's table: MIPS
        // ENOTEMPTY is 93, x86's 39; 39 on MIPS is EL3HLT
        assert_eq!(
            judge(Arch::Mips, 4040, -93, &[hr("rmdir", -39)]),
            "passthrough"
        );
        assert_eq!(
            judge(Arch::Mips, 4040, -39, &[hr("rmdir", -39)]),
            "mismatch"
        );
        assert_eq!(
            judge(Arch::Arm, 40, -39, &[hr("rmdir", -39)]),
            "passthrough"
        );
    }

    #[test]
    fn errno_uses_the_guest_numbering() {
        assert_eq!(errno_of(Arch::Mips, -89).as_deref(), Some("ENOSYS"));
        assert_eq!(errno_of(Arch::X86_64, -38).as_deref(), Some("ENOSYS"));
        assert_eq!(
            errno_of(Arch::Mips, -513).as_deref(),
            Some("QEMU_ESIGRETURN")
        );
        assert_eq!(errno_of(Arch::Mips, 3), None);
        assert_eq!(errno_of(Arch::Mips, -5000), None);
    }

    #[test]
    fn path_is_the_last_host_path() {
        let mut a = h("access");
        a.path = Some("/etc/qemu-binfmt/mips/etc/passwd".into());
        let mut o = h("openat");
        o.path = Some("/etc/passwd".into());
        assert_eq!(
            path_of(Some("open"), &[a, o]).as_deref(),
            Some("/etc/passwd")
        );
        assert_eq!(path_of(Some("read"), &[h("read")]), None);
    }
}
