//! The sandbox of `guestview run` (the default; `--no-sandbox` turns it
//! off): what the guest's world is made of, planned here as a list of plain
//! operations that the launcher's child carries out (see
//! `launch::spawn_held_sandboxed`).
//!
//! The guest runs in its own user, mount, PID, IPC, UTS and network
//! namespaces. Its root is the guest root under an overlay whose upper layer
//! is a tmpfs, gone when the run ends. QEMU, its dynamic loader, its
//! libraries and the plugin are bound read-only under `/.guestview`; the
//! program at its own path, read-only; `--bind` directories where asked;
//! the ring at its `/dev/shm` path; `/dev` holds only `null`, `zero`,
//! `full`, `random`, `urandom` and `tty`; `/proc` is the namespace's own;
//! the network has only loopback.
//!
//! No host-native code: every mount the guest can write or name is
//! `noexec` except `/.guestview` (read-only). Guest programs still run,
//! because QEMU reads them as data; a guest exec of a guest program is
//! followed by the plugin (`exec=on`), which starts QEMU again with itself;
//! and the exec guard in the kernel (`HostTracer::guard_exec`) kills,
//! before its first instruction, any image that is not QEMU started exactly
//! so ([`Plan::guard_prefix`]).
//!
//! Every mount is made by real root before the user namespace exists, so
//! in the user namespace all of them are locked (they can be neither
//! unmounted nor made writable or executable), and the guest then runs as
//! root of its user namespace without any capability.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the sandbox's tmpfs is mounted, inside its own mount namespace
/// (the host sees an empty directory).
pub const STAGING: &str = "/run/guestview-sandbox";
/// Where QEMU and the plugin appear inside the sandbox.
pub const TOOLS: &str = "/.guestview";
/// Host uid and gid of the sandbox's root: uids and gids 0–65535 inside
/// are `ID_BASE` + the same outside. Roots that guestview builds are owned
/// by it, so the guest's root owns its files.
pub const ID_BASE: u32 = 0x7000_0000;
/// How many ids the sandbox maps.
pub const ID_COUNT: u32 = 65536;

/// One step of building the sandbox, done by the child with raw syscalls.
#[derive(Debug, Clone)]
pub enum Op {
    /// `mkdir` (an existing directory is fine).
    Mkdir(CString),
    /// Create an empty file to bind a file over.
    Touch(CString),
    /// `mount(source, target, fstype, flags, data)`.
    Mount {
        /// Source.
        source: Option<CString>,
        /// Target.
        target: CString,
        /// File system type.
        fstype: Option<CString>,
        /// `MS_*` flags.
        flags: libc::c_ulong,
        /// Options.
        data: Option<CString>,
    },
    /// `symlink(target, path)`.
    Symlink(CString, CString),
    /// `chown` and `chmod` (the overlay's upper root takes the lower's).
    Own {
        /// Path.
        path: CString,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// Mode.
        mode: u32,
    },
}

impl Op {
    /// For error messages.
    pub fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mkdir(p) => format!("mkdir {}", s(p)),
            Op::Touch(p) => format!("create {}", s(p)),
            Op::Mount {
                source,
                target,
                fstype,
                ..
            } => format!(
                "mount {} on {} ({})",
                source.as_ref().map_or("-".into(), s),
                s(target),
                fstype.as_ref().map_or("bind".into(), s)
            ),
            Op::Symlink(t, p) => format!("symlink {} -> {}", s(p), s(t)),
            Op::Own { path, .. } => format!("chown {}", s(path)),
        }
    }
}

/// Everything the child needs, built before the fork.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Steps before `pivot_root`, as real root in a new mount namespace.
    pub ops: Vec<Op>,
    /// The new root (inside the staging tmpfs).
    pub new_root: CString,
    /// Working directory inside the sandbox.
    pub cwd: CString,
    /// Host name inside.
    pub hostname: CString,
    /// argv of the command run inside (QEMU through its loader).
    pub argv: Vec<CString>,
    /// Its environment.
    pub env: Vec<CString>,
    /// `uid_map` and `gid_map` of the user namespace.
    pub id_map: CString,
    /// Sysctls of the sandbox's PID namespace, set as real root
    /// (`vm.memfd_noexec = 2`: no exec of memory files).
    pub pid_ns_sysctls: Vec<(CString, CString)>,
    /// Sysctls of the user namespace, set as its root before the
    /// capabilities go (`user.max_user_namespaces = 0`).
    pub user_ns_sysctls: Vec<(CString, CString)>,
    /// Drop every capability before exec (the guest is root of its user
    /// namespace, without power over it); otherwise (a root being built)
    /// only CAP_SYS_ADMIN: the guest can mount nothing.
    pub drop_caps: bool,
    /// The seccomp filter installed just before the exec (see
    /// [`crate::seccomp`]), as (code, jt, jf, k); its listener goes to
    /// guestview's supervisor.
    pub seccomp: Vec<(u16, u8, u8, u32)>,
    /// Send the filter's listener to guestview over the plan's socket (the
    /// sandbox's own supervisor). `false` for a policy's filter: it
    /// notifies `sendmsg` itself, so the process keeps the listener and
    /// waits in its (notified) exec until the policy's supervisor has
    /// taken a copy with `pidfd_getfd`.
    pub seccomp_send: bool,
    /// The file every exec in the sandbox must load (QEMU's loader, on the
    /// host), for the exec guard.
    pub guard_file: PathBuf,
    /// The argument bytes every exec in the sandbox must start with: the
    /// command up to and including the plugin's argument, NUL after each.
    pub guard_prefix: Vec<u8>,
    /// Descriptors the command inside keeps across its exec (the plugin's
    /// end of guestview's host ring channel, `hostpos=`).
    pub keep_fds: Vec<i32>,
}

fn c(p: impl AsRef<Path>) -> CString {
    CString::new(p.as_ref().as_os_str().as_bytes()).expect("paths from the file system have no NUL")
}

/// [`runtime_of`], remembered in guestview's cache (under
/// `$GUESTVIEW_CACHE/sandbox`, keyed by the binary's path, size, inode and
/// modification time): `ldd` is a shell script, and start-up time counts.
pub fn runtime_of_cached(binary: &Path) -> Result<(PathBuf, Vec<PathBuf>), String> {
    use std::hash::{Hash, Hasher};
    let m = std::fs::metadata(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (binary, m.len(), m.ino(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    let dir = crate::rootfs::cache_dir()
        .parent()
        .map_or_else(|| PathBuf::from("/var/cache/guestview"), Path::to_owned)
        .join("sandbox");
    let file = dir.join(format!("runtime-{:016x}", h.finish()));
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut lines = text.lines().map(PathBuf::from);
        if let Some(loader) = lines.next() {
            let libs: Vec<PathBuf> = lines.collect();
            if loader.exists() && libs.iter().all(|l| l.exists()) {
                return Ok((loader, libs));
            }
        }
    }
    let (loader, libs) = runtime_of(binary)?;
    let mut text = format!("{}\n", loader.display());
    for l in &libs {
        text.push_str(&format!("{}\n", l.display()));
    }
    // Best effort: a cache that cannot be written only costs time.
    let tmp = dir.join(format!(".runtime-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
    Ok((loader, libs))
}

/// Everything an ELF needs to be run by its dynamic loader: the loader
/// and the libraries `ldd` lists.
pub fn runtime_of(binary: &Path) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("cannot run ldd on {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut loader = None;
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if let Some((_, rest)) = line.split_once("=> ") {
            if let Some(p) = rest
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                libs.push(PathBuf::from(p));
            }
        } else if let Some(p) = line
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            loader = Some(PathBuf::from(p));
        }
    }
    let loader =
        loader.ok_or_else(|| format!("{} has no dynamic loader (ldd)", binary.display()))?;
    // Paths as the loader looks for them (sonames): a bind mount takes the
    // file a symlink names anyway.
    Ok((loader, libs))
}

/// A host path made visible inside (`--bind SRC[:DST[:ro|rw]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Host path.
    pub src: PathBuf,
    /// Path inside (absolute).
    pub dst: PathBuf,
    /// Writable (the guest's writes reach the host).
    pub rw: bool,
}

impl std::str::FromStr for Bind {
    type Err = String;

    /// `SRC`, `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw`; DST defaults to SRC,
    /// the mode to `ro`.
    fn from_str(s: &str) -> Result<Bind, String> {
        let mut parts = s.splitn(3, ':');
        let src = parts.next().unwrap_or("");
        let dst = parts.next().filter(|d| !d.is_empty()).unwrap_or(src);
        let rw = match parts.next() {
            None | Some("ro") => false,
            Some("rw") => true,
            Some(m) => return Err(format!("--bind {s}: mode '{m}' is neither ro nor rw")),
        };
        if src.is_empty() {
            return Err(format!("--bind {s}: no source path"));
        }
        if !dst.starts_with('/') {
            return Err(format!(
                "--bind {s}: the path inside ({dst}) must be absolute"
            ));
        }
        if Path::new(dst)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
            || Path::new(dst).starts_with(TOOLS)
            || Path::new(dst) == Path::new("/")
        {
            return Err(format!(
                "--bind {s}: {dst} cannot be bound over (no '..', not / or {TOOLS})"
            ));
        }
        Ok(Bind {
            src: PathBuf::from(src),
            dst: PathBuf::from(dst),
            rw,
        })
    }
}

/// What to put in the sandbox.
pub struct Spec<'a> {
    /// The policy's guest layer for the plugin (`policy=`, see
    /// [`crate::enforce::Enforcement::guest_rules`]).
    pub plugin_policy: Option<&'a str>,
    /// Guest root (read-only lower layer).
    pub rootfs: &'a Path,
    /// QEMU binary on the host.
    pub qemu: &'a Path,
    /// Its dynamic loader and libraries ([`runtime_of`]).
    pub qemu_runtime: &'a (PathBuf, Vec<PathBuf>),
    /// The plugin on the host.
    pub plugin: &'a Path,
    /// The ring file (bound at the same path).
    pub ring: &'a Path,
    /// The guest program (bound read-only at the same path).
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [std::ffi::OsString],
    /// Working directory inside (default `/`; made if missing).
    pub workdir: Option<&'a Path>,
    /// More host paths to show inside.
    pub binds: &'a [Bind],
    /// Extra environment for QEMU (`QEMU_*` variables of the caller).
    pub qemu_env: Vec<(String, String)>,
    /// Build a root (`rootfs build --from debian`): the root itself is `/`,
    /// writable (what the guest writes stays), the program is a path inside
    /// it, and the guest keeps its capabilities over its user namespace
    /// (package scripts chown and chroot), all but CAP_SYS_ADMIN (it can
    /// mount nothing). Still noexec, still guarded.
    pub persistent: bool,
    /// `program` is a path inside the root (a root's own program), not a
    /// host file to bind.
    pub program_inside: bool,
    /// The plugin's end of guestview's host ring channel (`hostpos=FD`),
    /// kept open into QEMU.
    pub hostpos: Option<i32>,
}

/// Flags of every mount the guest can name but must not run from.
const DATA: libc::c_ulong = libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV;

/// Plan the sandbox for one run.
pub fn plan(spec: &Spec<'_>) -> Result<Plan, String> {
    let root = Path::new(STAGING).join("root");
    let upper = Path::new(STAGING).join("upper");
    let lower = std::fs::metadata(spec.rootfs)
        .map_err(|e| format!("cannot use the guest root {}: {e}", spec.rootfs.display()))?;
    if !lower.is_dir() {
        return Err(format!(
            "the guest root {} is not a directory",
            spec.rootfs.display()
        ));
    }
    let mut ops = vec![
        Op::Mount {
            source: None,
            target: c("/"),
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        },
        Op::Mount {
            source: Some(c("guestview")),
            target: c(STAGING),
            fstype: Some(c("tmpfs")),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some(c("mode=0755")),
        },
        Op::Mkdir(c(&root)),
    ];
    if spec.persistent {
        ops.push(Op::Mount {
            source: Some(c(spec.rootfs)),
            target: c(&root),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        ops.push(Op::Mount {
            source: None,
            target: c(&root),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | DATA,
            data: None,
        });
    } else {
        ops.extend([
            Op::Mkdir(c(&upper)),
            // The merged root takes its owner and mode from the upper layer.
            Op::Own {
                path: c(&upper),
                uid: lower.uid(),
                gid: lower.gid(),
                mode: lower.mode() & 0o7777,
            },
            Op::Mkdir(c(Path::new(STAGING).join("work"))),
            Op::Mount {
                source: Some(c("overlay")),
                target: c(&root),
                fstype: Some(c("overlay")),
                // Nothing in the guest's world runs natively: an x86-64 ELF
                // the guest writes (or finds) cannot be exec'd. QEMU maps
                // guest code without PROT_EXEC, so guest programs still load.
                flags: DATA,
                data: Some(c(format!(
                    "lowerdir={},upperdir={},workdir={STAGING}/work",
                    spec.rootfs.display(),
                    upper.display()
                ))),
            },
        ]);
    }
    // Mount points inside the root must not be symlinks: the mounts and
    // directories made for them, as real root, would land where a symlink of
    // the guest root points (the host's file system) instead.
    let mut targets: Vec<PathBuf> = vec![
        PathBuf::from(TOOLS),
        PathBuf::from("/dev"),
        PathBuf::from("/proc"),
        spec.ring.to_owned(),
    ];
    if !spec.program_inside {
        targets.push(spec.program.to_owned());
    }
    targets.extend(spec.binds.iter().map(|b| b.dst.clone()));
    if let Some(w) = spec.workdir {
        targets.push(w.to_owned());
    }
    for t in &targets {
        let mut at = spec.rootfs.to_owned();
        for part in t.strip_prefix("/").unwrap_or(t).components() {
            at.push(part);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(format!(
                    "the guest root has a symlink at {} where the sandbox mounts {}: give another path, or fix the root",
                    at.display(),
                    t.display()
                ));
            }
        }
    }
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mkdirs = |ops: &mut Vec<Op>, dir: &Path| {
        let mut acc = PathBuf::from("/");
        for part in dir.strip_prefix("/").unwrap_or(dir).components() {
            acc.push(part);
            ops.push(Op::Mkdir(c(inside(&acc))));
        }
    };
    // Bind `src` at `dst` inside with `flags` (MS_RDONLY, DATA …).
    let bind = |ops: &mut Vec<Op>, src: &Path, dst: &Path, flags: libc::c_ulong| {
        if src.is_dir() {
            mkdirs(ops, dst);
        } else {
            if let Some(parent) = dst.parent() {
                mkdirs(ops, parent);
            }
            ops.push(Op::Touch(c(inside(dst))));
        }
        let target = c(inside(dst));
        ops.push(Op::Mount {
            source: Some(c(src)),
            target: target.clone(),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        ops.push(Op::Mount {
            source: None,
            target,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | flags,
            data: None,
        });
    };
    // QEMU and everything it loads, under /.guestview: read-only, the only
    // place in the sandbox whose files can be executed.
    let tool = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    let (loader, libs) = spec.qemu_runtime;
    let tools = Path::new(TOOLS);
    let loader_in = tools
        .join("lib")
        .join(loader.file_name().unwrap_or_default());
    bind(&mut ops, loader, &loader_in, tool);
    for l in libs {
        let name = l.file_name().unwrap_or_default();
        bind(&mut ops, l, &tools.join("lib").join(name), tool);
    }
    let qemu_name = spec.qemu.file_name().unwrap_or_default();
    let qemu_in = tools.join("bin").join(qemu_name);
    bind(&mut ops, spec.qemu, &qemu_in, tool);
    let plugin_in = tools.join("libguestview.so");
    bind(&mut ops, spec.plugin, &plugin_in, tool);
    let program = if spec.program_inside {
        spec.program.to_owned()
    } else {
        let program = std::fs::canonicalize(spec.program)
            .map_err(|e| format!("cannot resolve {}: {e}", spec.program.display()))?;
        bind(&mut ops, &program, &program, libc::MS_RDONLY | DATA);
        program
    };
    for b in spec.binds {
        let src = std::fs::canonicalize(&b.src)
            .map_err(|e| format!("--bind {}: {e}", b.src.display()))?;
        let ro = if b.rw { 0 } else { libc::MS_RDONLY };
        bind(&mut ops, &src, &b.dst, ro | DATA);
    }
    // A minimal /dev of its own.
    let dev = root.join("dev");
    ops.push(Op::Mkdir(c(&dev)));
    ops.push(Op::Mount {
        source: Some(c("guestview-dev")),
        target: c(&dev),
        fstype: Some(c("tmpfs")),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(c("mode=0755")),
    });
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(d);
        if host.exists() {
            let target = c(dev.join(d));
            ops.push(Op::Touch(target.clone()));
            ops.push(Op::Mount {
                source: Some(c(&host)),
                target: target.clone(),
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
            ops.push(Op::Mount {
                source: None,
                target,
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NOEXEC,
                data: None,
            });
        }
    }
    ops.push(Op::Mkdir(c(dev.join("shm"))));
    ops.push(Op::Mount {
        source: Some(c("guestview-shm")),
        target: c(dev.join("shm")),
        fstype: Some(c("tmpfs")),
        flags: DATA,
        data: Some(c("mode=1777")),
    });
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(c(target), c(dev.join(name))));
    }
    // The plugin writes the ring (its records are validated, never trusted).
    bind(&mut ops, spec.ring, spec.ring, DATA);
    // The namespace's own processes only.
    ops.push(Op::Mkdir(c(root.join("proc"))));
    ops.push(Op::Mount {
        source: Some(c("proc")),
        target: c(root.join("proc")),
        fstype: Some(c("proc")),
        flags: DATA,
        data: None,
    });
    let workdir = spec.workdir.unwrap_or(Path::new("/"));
    if !workdir.is_absolute() {
        return Err(format!(
            "--workdir {}: give an absolute path inside the sandbox",
            workdir.display()
        ));
    }
    mkdirs(&mut ops, workdir);

    let mut plugin_arg = plugin_in.as_os_str().to_owned();
    plugin_arg.push(",hold=on,exec=on,ring=");
    plugin_arg.push(spec.ring);
    if let Some(fd) = spec.hostpos {
        plugin_arg.push(format!(",hostpos={fd}"));
    }
    if let Some(p) = spec.plugin_policy {
        plugin_arg.push(format!(",policy={p}"));
    }
    let mut argv = vec![
        c(&loader_in),
        c("--library-path"),
        c(tools.join("lib")),
        c(&qemu_in),
        c("-plugin"),
        c(&plugin_arg),
    ];
    let mut guard_prefix = Vec::new();
    for a in &argv {
        guard_prefix.extend_from_slice(a.as_bytes_with_nul());
    }
    argv.push(c(&program));
    argv.extend(spec.args.iter().map(c));
    let mut env = vec![
        c("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        c("HOME=/root"),
        c("LANG=C"),
    ];
    if let Ok(t) = std::env::var("TERM") {
        env.push(c(format!("TERM={t}")));
    }
    env.extend(spec.qemu_env.iter().map(|(k, v)| c(format!("{k}={v}"))));
    Ok(Plan {
        ops,
        new_root: c(&root),
        cwd: c(workdir),
        hostname: c("guestview"),
        argv,
        env,
        id_map: c(format!("0 {ID_BASE} {ID_COUNT}\n")),
        pid_ns_sysctls: vec![(c("/proc/sys/vm/memfd_noexec"), c("2"))],
        user_ns_sysctls: vec![(c("/proc/sys/user/max_user_namespaces"), c("0"))],
        drop_caps: !spec.persistent,
        seccomp: crate::seccomp::filter()
            .iter()
            .map(|f| (f.code, f.jt, f.jf, f.k))
            .collect(),
        seccomp_send: true,
        // The exec guard compares the inode of the file the kernel runs.
        guard_file: std::fs::canonicalize(loader).unwrap_or_else(|_| loader.clone()),
        guard_prefix,
        keep_fds: spec.hostpos.into_iter().collect(),
    })
}

/// Can the sandbox's user (host uid [`ID_BASE`], no capabilities) read
/// `path`? The guest program is bound as it is, and QEMU must read it.
pub fn readable_inside(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| {
        m.mode() & 0o004 != 0
            || (m.uid() == ID_BASE && m.mode() & 0o400 != 0)
            || (m.gid() == ID_BASE && m.mode() & 0o040 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_of_a_dynamic_binary_names_its_loader_and_libc() {
        let (loader, libs) = runtime_of(Path::new("/bin/sh")).unwrap();
        assert!(loader.to_string_lossy().contains("ld-linux"), "{loader:?}");
        assert!(libs.iter().any(|l| l.to_string_lossy().contains("libc.so")));
    }

    #[test]
    fn binds_parse_with_defaults_and_refuse_what_they_cannot_do() {
        let b: Bind = "/srv/data".parse().unwrap();
        assert_eq!(
            b,
            Bind {
                src: "/srv/data".into(),
                dst: "/srv/data".into(),
                rw: false
            }
        );
        let b: Bind = "/srv/data:/data:rw".parse().unwrap();
        assert_eq!((b.dst.to_str().unwrap(), b.rw), ("/data", true));
        assert!("/a:/b:rx".parse::<Bind>().is_err());
        assert!("/a:b".parse::<Bind>().is_err());
        assert!("/a:/".parse::<Bind>().is_err());
        assert!("/a:/.guestview/x".parse::<Bind>().is_err());
        assert!("/a:/x/../y".parse::<Bind>().is_err());
        assert!(":/x".parse::<Bind>().is_err());
    }
}
