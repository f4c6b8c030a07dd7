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
    let name = name?;
    tables::path_arg(name)?;
    host.iter().rev().find_map(|h| h.path.clone())
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
    match name {
        Some(n) if host.iter().any(|h| h.name == n) => "passthrough",
        _ => "translated",
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
