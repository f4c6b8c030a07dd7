//! The kernel types the programs' CO-RE relocations need, cut down once.
//!
//! Resolving relocations against the kernel's whole BTF (some 5 MB, about
//! 150,000 types) is most of what loading the programs costs: libbpf
//! parses it and scans every type once per local type the programs use.
//! `bpftool gen min_core_btf` keeps only the types (and members) the
//! relocations touch, with their offsets unchanged — under 1 KB here — and
//! libbpf resolves against that instead (`btf_custom_path`). The result is
//! cached per kernel build and per program object, so one run pays for it
//! (some 40 ms) and every later run loads about 10 ms faster.
//!
//! A cache entry is used only if guestview's own user owns it and nobody
//! else may write it (a forged one would move the programs' reads).
//! Anything unusual — no bpftool, no kernel BTF, an untrusted directory —
//! means the kernel's whole BTF, as before: slower, never different.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The running kernel's BTF.
pub(crate) const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The default cache directory: `$GUESTVIEW_CACHE/btf`, else
/// `/var/cache/guestview/btf`.
pub(crate) fn default_dir() -> PathBuf {
    std::env::var_os("GUESTVIEW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/guestview"))
        .join("btf")
}

/// Which kernel build and which program object a cache entry is for.
fn key(object: &[u8]) -> Option<u64> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let version = std::fs::read_to_string("/proc/sys/kernel/version").ok()?;
    let btf = std::fs::metadata(KERNEL_BTF).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (release, version, btf.len(), object).hash(&mut h);
    Some(h.finish())
}

/// Owned by us and writable by nobody else.
fn trusted(m: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    m.uid() == euid && m.permissions().mode() & 0o022 == 0
}

/// The cut-down types for `object` on this kernel, made now if missing;
/// `None` means "use the kernel's whole BTF" (the reason is logged by the
/// caller's `RUST_LOG=debug` only: nothing is lost by it).
pub(crate) fn min_core_btf(dir: &Path, object: &[u8]) -> Option<PathBuf> {
    let key = key(object)?;
    let path = dir.join(format!("core-{key:016x}.btf"));
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        return (m.is_file() && m.len() > 0 && trusted(&m)).then_some(path);
    }
    std::fs::create_dir_all(dir).ok()?;
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && trusted(&m)) {
        return None;
    }
    // Unique names: parallel runs may make the same entry at once; the
    // rename makes exactly one of them visible, whole.
    let tag = format!("{}-{:x}", std::process::id(), key);
    let obj = dir.join(format!(".obj-{tag}.o"));
    let tmp = dir.join(format!(".btf-{tag}.tmp"));
    let made = (|| {
        std::fs::write(&obj, object).ok()?;
        let ok = Command::new("bpftool")
            .args(["gen", "min_core_btf", KERNEL_BTF])
            .arg(&tmp)
            .arg(&obj)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).ok()?;
        std::fs::rename(&tmp, &path).ok()
    })();
    let _ = std::fs::remove_file(&obj);
    let _ = std::fs::remove_file(&tmp);
    made.map(|()| path)
}

/// Drop an entry libbpf could not use (it is made again next time).
pub(crate) fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_entries_are_not_used() {
        let dir = std::env::temp_dir().join(format!("gv-btf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let object = b"not really an object";
        let Some(k) = key(object) else {
            // No kernel BTF on this machine: nothing to cache.
            return;
        };
        let entry = dir.join(format!("core-{k:016x}.btf"));
        std::fs::write(&entry, b"forged").unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(min_core_btf(&dir, object), None, "a world-writable entry");
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(min_core_btf(&dir, object), Some(entry.clone()));
        std::fs::write(&entry, b"").unwrap();
        assert_eq!(min_core_btf(&dir, object), None, "an empty entry");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_key_follows_the_object() {
        if key(b"a").is_some() {
            assert_ne!(key(b"a"), key(b"b"));
            assert_eq!(key(b"a"), key(b"a"));
        }
    }
}
