//! Finding QEMU and the plugin, and starting QEMU held until the eBPF
//! tracer follows it. All process-level `unsafe` of guestview lives here.

use shmem_proto::Arch;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why QEMU or the plugin cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No QEMU for the architecture.
    #[error("{0} not found in PATH: install Debian's qemu-user (apt-get install qemu-user) or pass --qemu PATH")]
    QemuMissing(String),
    /// QEMU cannot run.
    #[error("cannot run {path}: {source}")]
    QemuRun {
        /// QEMU.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// QEMU built without plugin support.
    #[error("{0} was built without TCG plugin support (no -plugin option); use Debian bookworm's qemu-user 7.2 or a QEMU configured with --enable-plugins")]
    NoPlugins(PathBuf),
    /// The plugin library cannot be found.
    #[error("libguestview.so not found next to the guestview binary ({0}); build it with `cargo build --release` or set GUESTVIEW_PLUGIN=/path/to/libguestview.so")]
    PluginMissing(PathBuf),
    /// An argument cannot be passed to exec.
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(OsString),
    /// fork/pipe failed.
    #[error("cannot start QEMU: {0}")]
    Spawn(std::io::Error),
}

/// A QEMU binary that has plugins.
#[derive(Clone, Debug)]
pub struct Qemu {
    /// Path to `qemu-<arch>`.
    pub path: PathBuf,
    /// First line of `-version`.
    pub version: String,
}

fn search_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Find and check `qemu-<arch>` (or `explicit`).
pub fn find_qemu(arch: Arch, explicit: Option<&Path>) -> Result<Qemu, LaunchError> {
    let path = match explicit {
        Some(p) if p.is_file() => p.to_owned(),
        Some(p) => return Err(LaunchError::QemuMissing(p.display().to_string())),
        None => {
            let name = format!("qemu-{}", arch.name());
            search_path(&name).ok_or(LaunchError::QemuMissing(name))?
        }
    };
    let help = Command::new(&path)
        .arg("-h")
        .output()
        .map_err(|source| LaunchError::QemuRun {
            path: path.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&help.stdout);
    if !text.contains("-plugin") {
        return Err(LaunchError::NoPlugins(path));
    }
    let version = Command::new(&path)
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Ok(Qemu { path, version })
}

/// Find `libguestview.so`: `$GUESTVIEW_PLUGIN`, else next to this binary
/// (or one directory up, where cargo puts it for test binaries).
pub fn find_plugin() -> Result<PathBuf, LaunchError> {
    if let Some(p) = std::env::var_os("GUESTVIEW_PLUGIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LaunchError::PluginMissing(p))
        };
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_owned).unwrap_or_default();
    for d in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
        let p = d.join("libguestview.so");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(LaunchError::PluginMissing(dir))
}

fn cstring(s: &OsStr) -> Result<CString, LaunchError> {
    CString::new(s.as_bytes()).map_err(|_| LaunchError::Nul(s.to_owned()))
}

/// A child process stopped before `exec`, waiting for [`Held::release`].
pub struct Held {
    /// Its pid.
    pub pid: libc::pid_t,
    go: libc::c_int,
    err: libc::c_int,
}

/// Fork a child that will `exec` `argv` (with `cwd` if given) once released.
/// The child makes no allocation after the fork.
pub fn spawn_held(argv: &[OsString], cwd: Option<&Path>) -> Result<Held, LaunchError> {
    let args: Vec<CString> = argv.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    let cwd = cwd.map(|c| cstring(c.as_os_str())).transpose()?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut go = [0 as libc::c_int; 2];
    let mut err = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into arrays of two ints.
    if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0
        // SAFETY: as above.
        || unsafe { libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC) } != 0
    {
        return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
    }
    // SAFETY: the child only calls async-signal-safe functions (read,
    // chdir, execv, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: child side, see above; all pointers were built before fork.
        unsafe {
            libc::close(go[1]);
            libc::close(err[0]);
            let mut b = 0u8;
            let n = libc::read(go[0], std::ptr::addr_of_mut!(b).cast(), 1);
            if n != 1 {
                libc::_exit(126);
            }
            if let Some(c) = &cwd {
                if libc::chdir(c.as_ptr()) != 0 {
                    let e = *libc::__errno_location();
                    libc::write(err[1], std::ptr::addr_of!(e).cast(), 4);
                    libc::_exit(126);
                }
            }
            libc::execv(ptrs[0], ptrs.as_ptr());
            let e = *libc::__errno_location();
            libc::write(err[1], std::ptr::addr_of!(e).cast(), 4);
            libc::_exit(127);
        }
    }
    // SAFETY: closing our copies of the child's ends.
    unsafe {
        libc::close(go[0]);
        libc::close(err[1]);
    }
    Ok(Held {
        pid,
        go: go[1],
        err: err[0],
    })
}

impl Held {
    /// Let the child exec; reports an exec failure.
    pub fn release(self) -> Result<libc::pid_t, LaunchError> {
        let b = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        unsafe { libc::write(self.go, std::ptr::addr_of!(b).cast(), 1) };
        let mut e: libc::c_int = 0;
        // SAFETY: reading at most 4 bytes into an int; EOF means exec succeeded.
        let n = unsafe { libc::read(self.err, std::ptr::addr_of_mut!(e).cast(), 4) };
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(self.go);
            libc::close(self.err);
        }
        if n == 4 {
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid, &mut st, 0) };
            return Err(LaunchError::Spawn(std::io::Error::from_raw_os_error(e)));
        }
        Ok(self.pid)
    }

    /// Kill the held child (set-up failed after the fork).
    pub fn abort(self) {
        // SAFETY: killing and reaping our own child; closing our fds.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(self.pid, &mut st, 0);
            libc::close(self.go);
            libc::close(self.err);
        }
    }
}

/// Status of a reaped child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaped {
    /// Exited with a code.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl Reaped {
    /// The shell convention: the code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Reaped::Exited(c) => c,
            Reaped::Signaled(s) => 128 + s,
        }
    }
}

/// Reap any exited child without blocking: `(pid, status)`.
pub fn reap_any() -> Option<(libc::pid_t, Reaped)> {
    let mut st = 0;
    // SAFETY: waitpid with a valid status pointer.
    let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
    if pid <= 0 {
        return None;
    }
    let r = if libc::WIFEXITED(st) {
        Reaped::Exited(libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        Reaped::Signaled(libc::WTERMSIG(st))
    } else {
        return None;
    };
    Some((pid, r))
}

/// Become the reaper of orphaned descendants (guest daemons stay ours).
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) has no memory arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Catch SIGINT/SIGTERM/SIGHUP so a run can finish its trace (the handler
/// is reset in the child by exec).
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe { libc::signal(sig, on_interrupt as *const () as libc::sighandler_t) };
    }
}

/// Was an interrupt caught?
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Send a signal to a process.
pub fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory arguments.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Are we root?
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
