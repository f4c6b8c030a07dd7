//! The sandbox of `guestview run --sandbox`: what the guest's world is made
//! of, planned here as a list of plain operations that the launcher's child
//! carries out in its new namespaces (see `launch::spawn_held_sandboxed`).
//!
//! The child gets its own mount, PID, IPC, UTS and network namespaces. Its
//! root is the guest root under an overlay whose upper layer is a tmpfs,
//! gone when the run ends; QEMU, its libraries and the plugin are bound
//! read-only under `/.guestview`, the program at its own path, the ring at
//! its `/dev/shm` path; `/dev` holds only `null`, `zero`, `full`, `random`,
//! `urandom` and `tty`; `/proc` is the namespace's own; the network has
//! only loopback.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the sandbox's tmpfs is mounted, inside its own mount namespace
/// (the host sees an empty directory).
pub const STAGING: &str = "/run/guestview-sandbox";
/// Where QEMU and the plugin appear inside the sandbox.
pub const TOOLS: &str = "/.guestview";

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
        }
    }
}

/// Everything the child needs, built before the fork.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Steps before `pivot_root`.
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
}

fn c(p: impl AsRef<Path>) -> CString {
    CString::new(p.as_ref().as_os_str().as_bytes()).expect("paths from the file system have no NUL")
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
    Ok((loader, libs))
}

/// What to put in the sandbox.
pub struct Spec<'a> {
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
    /// Working directory inside (default `/`).
    pub workdir: Option<&'a Path>,
    /// Extra environment for QEMU (`QEMU_*` variables of the caller).
    pub qemu_env: Vec<(String, String)>,
}

/// Plan the sandbox for one run.
pub fn plan(spec: &Spec<'_>) -> Result<Plan, String> {
    let root = Path::new(STAGING).join("root");
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
        Op::Mkdir(c(Path::new(STAGING).join("upper"))),
        Op::Mkdir(c(Path::new(STAGING).join("work"))),
        Op::Mkdir(c(&root)),
        Op::Mount {
            source: Some(c("overlay")),
            target: c(&root),
            fstype: Some(c("overlay")),
            // Nothing in the guest's world runs natively: an x86-64 ELF the
            // guest writes (or finds) cannot be exec'd. QEMU maps guest code
            // without PROT_EXEC, so guest programs still load.
            flags: libc::MS_NOEXEC | libc::MS_NOSUID | libc::MS_NODEV,
            data: Some(c(format!(
                "lowerdir={},upperdir={STAGING}/upper,workdir={STAGING}/work",
                spec.rootfs.display()
            ))),
        },
    ];
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mkdirs = |ops: &mut Vec<Op>, dir: &Path| {
        let mut acc = PathBuf::from("/");
        for part in dir.strip_prefix("/").unwrap_or(dir).components() {
            acc.push(part);
            ops.push(Op::Mkdir(c(inside(&acc))));
        }
    };
    let bind_file = |ops: &mut Vec<Op>, src: &Path, dst: &Path, writable: bool| {
        if let Some(parent) = dst.parent() {
            mkdirs(ops, parent);
        }
        let target = c(inside(dst));
        ops.push(Op::Touch(target.clone()));
        ops.push(Op::Mount {
            source: Some(c(src)),
            target: target.clone(),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        let ro = if writable { 0 } else { libc::MS_RDONLY };
        ops.push(Op::Mount {
            source: None,
            target,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | ro | libc::MS_NOSUID | libc::MS_NODEV,
            data: None,
        });
    };
    // QEMU and everything it loads, under /.guestview, read-only.
    let (loader, libs) = spec.qemu_runtime;
    let tools = Path::new(TOOLS);
    let loader_in = tools
        .join("lib")
        .join(loader.file_name().unwrap_or_default());
    bind_file(&mut ops, loader, &loader_in, false);
    for l in libs {
        bind_file(
            &mut ops,
            l,
            &tools.join("lib").join(l.file_name().unwrap_or_default()),
            false,
        );
    }
    let qemu_name = spec.qemu.file_name().unwrap_or_default();
    let qemu_in = tools.join("bin").join(qemu_name);
    bind_file(&mut ops, spec.qemu, &qemu_in, false);
    let plugin_in = tools.join("libguestview.so");
    bind_file(&mut ops, spec.plugin, &plugin_in, false);
    let program = std::fs::canonicalize(spec.program)
        .map_err(|e| format!("cannot resolve {}: {e}", spec.program.display()))?;
    bind_file(&mut ops, &program, &program, false);
    // A minimal /dev of its own.
    let dev = root.join("dev");
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
                target,
                fstype: None,
                flags: libc::MS_BIND,
                data: None,
            });
        }
    }
    ops.push(Op::Mkdir(c(dev.join("shm"))));
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(c(target), c(dev.join(name))));
    }
    // The plugin writes the ring (its records are validated, never trusted).
    bind_file(&mut ops, spec.ring, spec.ring, true);
    // The namespace's own processes only.
    ops.push(Op::Mkdir(c(root.join("proc"))));
    ops.push(Op::Mount {
        source: Some(c("proc")),
        target: c(root.join("proc")),
        fstype: Some(c("proc")),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    });
    let mut plugin_arg = plugin_in.as_os_str().to_owned();
    plugin_arg.push(",ring=");
    plugin_arg.push(spec.ring);
    // Once QEMU runs, its files go: the guest can run none of them.
    plugin_arg.push(format!(",hide={TOOLS}"));
    let mut argv = vec![
        c(&loader_in),
        c("--library-path"),
        c(tools.join("lib")),
        c(&qemu_in),
        c("-plugin"),
        c(&plugin_arg),
        c(&program),
    ];
    argv.extend(spec.args.iter().map(c));
    let mut env = vec![
        c("PATH=/usr/local/bin:/usr/bin:/bin"),
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
        cwd: c(spec.workdir.unwrap_or(Path::new("/"))),
        hostname: c("guestview"),
        argv,
        env,
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
}
