//! `guestview rootfs build`: a minimal guest root for one architecture,
//! from Debian's cross libc packages: the dynamic loader, libc and its
//! companions, a small `/etc` (passwd, group, hosts, nsswitch.conf, a
//! harmless shadow), `/tmp`, and mount points for `/dev` and `/proc`.
//!
//! Roots are built once into a cache (by default `/var/cache/guestview/rootfs`,
//! or `$GUESTVIEW_CACHE/rootfs`), keyed by architecture, the version of the
//! cross libc package and the layout version of this builder, and reused.

use shmem_proto::Arch;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the layout of a built root changes: old cached roots are then
/// rebuilt, not reused.
/// 2: owned by the sandbox's root ([`crate::sandbox::ID_BASE`]).
const LAYOUT_VERSION: u32 = 2;

/// Debian's cross triple and cross libc package of a guest architecture.
pub fn cross_libc(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Mips => ("mips-linux-gnu", "libc6-mips-cross"),
        Arch::Mipsel => ("mipsel-linux-gnu", "libc6-mipsel-cross"),
        Arch::Arm => ("arm-linux-gnueabihf", "libc6-armhf-cross"),
        Arch::Aarch64 => ("aarch64-linux-gnu", "libc6-arm64-cross"),
        Arch::Ppc => ("powerpc-linux-gnu", "libc6-powerpc-cross"),
        Arch::Ppc64le => ("powerpc64le-linux-gnu", "libc6-ppc64el-cross"),
        Arch::Riscv64 => ("riscv64-linux-gnu", "libc6-riscv64-cross"),
        Arch::X86_64 => ("x86_64-linux-gnu", "libc6-amd64-cross"),
    }
}

/// Why a root could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The cross libc package is not installed and could not be.
    #[error("{0}")]
    Package(String),
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// `--out` names a directory that already holds something.
    #[error("{0} exists and is not empty: give a new or empty directory")]
    NotEmpty(PathBuf),
    /// Debian does not ship this architecture.
    #[error("Debian ships no {0} port guestview can bootstrap ({1}); build the minimal root instead (without --from)")]
    NoDebian(&'static str, &'static str),
    /// A step of debootstrap failed.
    #[error("{0}")]
    Debootstrap(String),
}

/// Where a root comes from (`rootfs build --from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Loader, libc and its companions from Debian's cross libc package.
    Minimal,
    /// A Debian minbase system (`debootstrap --variant=minbase`), its second
    /// stage run under QEMU in guestview's sandbox.
    Debian,
}

/// Debian's name and release of an architecture, if Debian ships it.
pub fn debian_arch(arch: Arch) -> Result<(&'static str, &'static str), RootfsError> {
    Ok(match arch {
        Arch::Mipsel => ("mipsel", "bookworm"),
        Arch::Arm => ("armhf", "bookworm"),
        Arch::Aarch64 => ("arm64", "bookworm"),
        Arch::Ppc64le => ("ppc64el", "bookworm"),
        // A release architecture from Debian 13 on.
        Arch::Riscv64 => ("riscv64", "trixie"),
        Arch::X86_64 => ("amd64", "bookworm"),
        Arch::Mips => {
            return Err(RootfsError::NoDebian(
                "mips",
                "big-endian MIPS ended with Debian 10",
            ))
        }
        Arch::Ppc => {
            return Err(RootfsError::NoDebian(
                "ppc",
                "32-bit PowerPC is a ports architecture",
            ))
        }
    })
}

/// Layout version of the Debian roots guestview makes.
const DEBIAN_LAYOUT: u32 = 1;

/// `guestview rootfs build --from debian`: a Debian minbase root for `arch`
/// in the cache (built once: first stage with `debootstrap --foreign` on the
/// host, second stage under QEMU in the sandbox).
pub fn build_debian(arch: Arch) -> Result<PathBuf, RootfsError> {
    let (darch, suite) = debian_arch(arch)?;
    let mirror = std::env::var("GUESTVIEW_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let cache = cache_dir();
    let key = format!("debian-{}-{suite}-minbase-v{DEBIAN_LAYOUT}", arch.name());
    let done = cache.join(&key);
    if done.join("etc/debian_version").exists() {
        eprintln!(
            "rootfs: Debian {suite} {darch} root reused from {}",
            done.display()
        );
        return Ok(done);
    }
    if !crate::launch::is_root() {
        return Err(RootfsError::Debootstrap(
            "building a Debian root needs root (debootstrap, namespaces): run guestview as root"
                .into(),
        ));
    }
    ensure_package("debootstrap")?;
    fs::create_dir_all(&cache).map_err(io_err("creating", &cache))?;
    let partial = cache.join(format!(".{key}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    let r = debootstrap(arch, darch, suite, &mirror, &partial);
    if let Err(e) = r {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    match fs::rename(&partial, &done) {
        Ok(()) => {}
        Err(_) if done.join("etc/debian_version").exists() => {
            let _ = fs::remove_dir_all(&partial);
        }
        Err(e) => return Err(io_err("installing", &done)(e)),
    }
    eprintln!(
        "rootfs: Debian {suite} {darch} root built in {}",
        done.display()
    );
    Ok(done)
}

fn debootstrap(
    arch: Arch,
    darch: &str,
    suite: &str,
    mirror: &str,
    dir: &Path,
) -> Result<(), RootfsError> {
    let t0 = std::time::Instant::now();
    eprintln!("rootfs: debootstrap first stage: Debian {suite} {darch} minbase from {mirror} (downloads about 40 MB)");
    let st = Command::new("debootstrap")
        .args(["--foreign", "--variant=minbase"])
        .arg(format!("--arch={darch}"))
        .arg(suite)
        .arg(dir)
        .arg(mirror)
        // Its progress lines go to stderr: stdout is for the result.
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| RootfsError::Debootstrap(format!("cannot run debootstrap: {e}")))?;
    if !st.success() {
        return Err(RootfsError::Debootstrap(format!(
            "debootstrap --foreign failed ({st}); see its messages above and {}/debootstrap/debootstrap.log",
            dir.display()
        )));
    }
    // debootstrap makes /proc a symlink to /proc when it thinks it runs in
    // a container: the sandbox mounts its own /proc there.
    let proc = dir.join("proc");
    if fs::symlink_metadata(&proc).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&proc).map_err(io_err("replacing", &proc))?;
        fs::create_dir(&proc).map_err(io_err("creating", &proc))?;
    }
    shift_owner(dir)?;
    eprintln!(
        "rootfs: debootstrap second stage under qemu-{} in guestview's sandbox ({:.0} s so far; takes minutes)",
        arch.name(),
        t0.elapsed().as_secs_f64()
    );
    let opts = crate::run::RunOptions {
        arch: Some(arch),
        qemu: None,
        rootfs: Some(dir.to_owned()),
        trace: None,
        format: crate::output::Format::Text,
        output: None,
        workdir: None,
        show_internal: false,
        quiet: true,
        native: false,
        sandbox: true,
        binds: Vec::new(),
        persistent_root: true,
        policy: None,
        host_times: false,
        // container=lxc: debootstrap then does not try mknod (no device
        // node can be made in a user namespace; the sandbox has its /dev).
        program: PathBuf::from("/usr/bin/env"),
        args: vec![
            "container=lxc".into(),
            "/bin/sh".into(),
            "/debootstrap/debootstrap".into(),
            "--second-stage".into(),
        ],
    };
    let status = {
        let _progress = crate::launch::stdout_to_stderr();
        crate::run::run(&opts)
            .map_err(|e| RootfsError::Debootstrap(format!("debootstrap --second-stage: {e}")))?
    };
    if status != 0 {
        return Err(RootfsError::Debootstrap(format!(
            "debootstrap --second-stage exited with status {status} (see {}/debootstrap/debootstrap.log)",
            dir.display()
        )));
    }
    eprintln!(
        "rootfs: second stage done ({:.0} s in all)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> RootfsError + 'p {
    move |source| RootfsError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Where built roots are kept.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("GUESTVIEW_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/guestview"))
        .join("rootfs")
}

fn package_version(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", pkg])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let v = s.strip_prefix("install ok installed ")?;
    (!v.is_empty()).then(|| v.to_owned())
}

/// Install `pkg` with apt-get when missing (root only), saying so.
fn ensure_package(pkg: &str) -> Result<String, RootfsError> {
    if let Some(v) = package_version(pkg) {
        return Ok(v);
    }
    if !crate::launch::is_root() {
        return Err(RootfsError::Package(format!(
            "{pkg} is not installed: run as root to install it, or apt-get install {pkg}"
        )));
    }
    eprintln!("rootfs: installing {pkg} (apt-get)");
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    package_version(pkg).filter(|_| ok).ok_or_else(|| {
        RootfsError::Package(format!(
            "installing {pkg} failed (try apt-get update, then apt-get install {pkg})"
        ))
    })
}

/// Is this file of a cross libc directory needed at run time? The loader
/// and versioned shared objects; not static archives, start files or the
/// linker scripts called `libc.so`.
fn runtime_file(name: &str) -> bool {
    (name.starts_with("ld") && name.contains(".so")) || name.contains(".so.")
}

const ETC: &[(&str, &str, u32)] = &[
    (
        "passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    ),
    ("group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
    // Harmless on purpose: no password hash of anyone's.
    (
        "shadow",
        "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        0o640,
    ),
    ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644),
    (
        "nsswitch.conf",
        "passwd: files\ngroup: files\nshadow: files\nhosts: files\n",
        0o644,
    ),
    ("hostname", "guestview\n", 0o644),
    // Empty on purpose: without it, QEMU's -L falls back to the host's
    // x86-64 cache and the guest loader reads that.
    ("ld.so.cache", "", 0o644),
    ("resolv.conf", "", 0o644),
];

fn write_root(dir: &Path, libdir: &Path) -> Result<usize, RootfsError> {
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).map_err(io_err("creating", &lib))?;
    let mut copied = 0;
    let mut entries: Vec<_> = fs::read_dir(libdir)
        .map_err(io_err("reading", libdir))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if !runtime_file(n) {
            continue;
        }
        let src = e.path();
        let dst = lib.join(n);
        let meta = fs::symlink_metadata(&src).map_err(io_err("reading", &src))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(io_err("reading", &src))?;
            symlink(&target, &dst).map_err(io_err("linking", &dst))?;
        } else if meta.is_file() {
            fs::copy(&src, &dst).map_err(io_err("copying", &src))?;
        } else {
            continue;
        }
        copied += 1;
    }
    // Loaders and libraries are looked for in /lib, /lib64, /usr/lib and
    // /usr/lib64 depending on the architecture: one directory serves all.
    let usr = dir.join("usr");
    fs::create_dir_all(&usr).map_err(io_err("creating", &usr))?;
    for (link, target) in [
        (dir.join("lib64"), "lib"),
        (usr.join("lib"), "../lib"),
        (usr.join("lib64"), "../lib"),
    ] {
        symlink(target, &link).map_err(io_err("linking", &link))?;
    }
    for d in ["etc", "tmp", "dev", "proc", "root", "bin", "usr/bin"] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))
        .map_err(io_err("setting the mode of", &tmp))?;
    for (name, text, mode) in ETC {
        let p = dir.join("etc").join(name);
        fs::write(&p, text).map_err(io_err("writing", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
            .map_err(io_err("setting the mode of", &p))?;
    }
    shift_owner(dir)?;
    Ok(copied)
}

/// Hand a root to the sandbox's root: every entry owned by uid/gid `n`
/// (0 here) becomes `ID_BASE + n`, which is uid `n` inside the sandbox's
/// user namespace. The guest's root then owns its files (and can write
/// them, in its throw-away overlay); outside, they belong to no one.
fn shift_owner(dir: &Path) -> Result<(), RootfsError> {
    use std::os::unix::fs::MetadataExt;
    let base = crate::sandbox::ID_BASE;
    let shift = |p: &Path| -> Result<(), RootfsError> {
        let m = fs::symlink_metadata(p).map_err(io_err("reading", p))?;
        let id = |v: u32| {
            if v < crate::sandbox::ID_COUNT {
                base + v
            } else {
                v
            }
        };
        std::os::unix::fs::lchown(p, Some(id(m.uid())), Some(id(m.gid())))
            .map_err(io_err("handing to the sandbox", p))
    };
    shift(dir)?;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err("reading", &d))?.flatten() {
            let p = e.path();
            shift(&p)?;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    Ok(())
}

/// The cached root for `arch`, built first if needed. Progress on stderr
/// (a reused root is mentioned only when `verbose`).
///
/// The cache key is the architecture, the layout version and the identity
/// of the cross libc (its `libc.so.6`'s size and modification time: a new
/// package version replaces it), so finding a built root starts no process.
pub fn build_cached(arch: Arch, verbose: bool) -> Result<PathBuf, RootfsError> {
    let (triple, pkg) = cross_libc(arch);
    let libdir = Path::new("/usr").join(triple).join("lib");
    let libc = libdir.join("libc.so.6");
    if fs::metadata(&libc).is_err() {
        ensure_package(pkg)?;
    }
    let id = {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&libc).map_err(io_err("reading", &libc))?;
        format!("{:x}{:x}", m.mtime(), m.size())
    };
    let key = format!("{}-{id}-v{LAYOUT_VERSION}", arch.name());
    let cache = cache_dir();
    let done = cache.join(&key);
    if done.join("etc/passwd").exists() {
        if verbose {
            eprintln!(
                "rootfs: {} root reused from {}",
                arch.name(),
                done.display()
            );
        }
        return Ok(done);
    }
    let version = ensure_package(pkg)?;
    fs::create_dir_all(&cache).map_err(io_err("creating", &cache))?;
    eprintln!(
        "rootfs: building a {} root from {pkg} {version} ({})",
        arch.name(),
        libdir.display()
    );
    // Built beside its final place, renamed when whole: an interrupted
    // build is never taken for a finished one.
    let partial = cache.join(format!(".{key}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    let r = write_root(&partial, &libdir);
    let copied = match r {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    match fs::rename(&partial, &done) {
        Ok(()) => {}
        // Another build finished first: use it.
        Err(_) if done.join("etc/passwd").exists() => {
            let _ = fs::remove_dir_all(&partial);
        }
        Err(e) => return Err(io_err("installing", &done)(e)),
    }
    eprintln!(
        "rootfs: {} root built in {} ({copied} runtime libraries)",
        arch.name(),
        done.display()
    );
    Ok(done)
}

/// `guestview rootfs build`: the cached root, copied to `out` when given.
/// Returns where the root is.
pub fn build(arch: Arch, from: Source, out: Option<&Path>) -> Result<PathBuf, RootfsError> {
    if let Some(out) = out {
        if out.exists()
            && fs::read_dir(out)
                .map_err(io_err("reading", out))?
                .next()
                .is_some()
        {
            return Err(RootfsError::NotEmpty(out.to_owned()));
        }
    }
    let cached = match from {
        Source::Minimal => build_cached(arch, true)?,
        Source::Debian => build_debian(arch)?,
    };
    let Some(out) = out else {
        return Ok(cached);
    };
    if out.exists() {
        let empty = fs::read_dir(out)
            .map_err(io_err("reading", out))?
            .next()
            .is_none();
        if !empty {
            return Err(RootfsError::NotEmpty(out.to_owned()));
        }
    }
    fs::create_dir_all(out).map_err(io_err("creating", out))?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(cached.join("."))
        .arg(out)
        .status()
        .map_err(io_err("copying to", out))?;
    if !st.success() {
        return Err(RootfsError::Io {
            what: "copying to",
            path: out.to_owned(),
            source: io::Error::other(format!("cp -a exited with {st}")),
        });
    }
    Ok(out.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runtime_files_are_taken() {
        for n in [
            "ld.so.1",
            "ld-linux-aarch64.so.1",
            "libc.so.6",
            "libm.so.6",
            "libgcc_s.so.1",
            "libgomp.so.1.0.0",
        ] {
            assert!(runtime_file(n), "{n}");
        }
        for n in ["libc.so", "libc.a", "crt1.o", "libc_nonshared.a", "libm.so"] {
            assert!(!runtime_file(n), "{n}");
        }
    }

    #[test]
    fn every_architecture_has_a_cross_libc() {
        for a in Arch::ALL {
            let (triple, pkg) = cross_libc(a);
            assert!(triple.ends_with("-linux-gnu") || triple.ends_with("-linux-gnueabihf"));
            assert!(pkg.starts_with("libc6-") && pkg.ends_with("-cross"));
        }
    }
}
