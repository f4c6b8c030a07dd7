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
    /// A system emulator, not a user-mode one.
    #[error("{0} is a system emulator (qemu-system-*): guestview runs Linux user-mode programs under qemu-<arch> (Debian's qemu-user, or patches/build-qemu)")]
    SystemEmulator(PathBuf),
    /// A user-mode QEMU for another architecture than the program's.
    #[error(
        "{path} emulates {qemu}, but the program is a {program} program: pass a qemu-{program}"
    )]
    WrongArch {
        /// QEMU.
        path: PathBuf,
        /// Its target.
        qemu: String,
        /// The program's architecture.
        program: &'static str,
    },
    /// The plugin library cannot be found.
    #[error("libguestview.so not found next to the guestview binary ({0}); build it with `cargo build --release` or set GUESTVIEW_PLUGIN=/path/to/libguestview.so")]
    PluginMissing(PathBuf),
    /// An argument cannot be passed to exec.
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(OsString),
    /// fork/pipe failed.
    #[error("cannot start QEMU: {0}")]
    Spawn(std::io::Error),
    /// Building the sandbox failed in the child.
    #[error("cannot build the sandbox: {step}: {source}")]
    Sandbox {
        /// What the child was doing.
        step: String,
        /// Cause.
        source: std::io::Error,
    },
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

/// What the first line of `qemu -version` says QEMU emulates.
#[derive(Debug, PartialEq, Eq)]
pub enum Emulates {
    /// A user-mode QEMU for this target (`qemu-mips version 10.2.2 …`).
    User(String),
    /// A system emulator (`QEMU emulator version 7.2.22 …`).
    System,
    /// Something else.
    Unknown,
}

/// Read `-version`'s first line: user-mode QEMU prints `qemu-TARGET
/// version …` (its compiled-in target, whatever the file is called),
/// system emulators `QEMU emulator version …`.
pub fn emulates(version: &str) -> Emulates {
    if version.starts_with("QEMU emulator version") {
        return Emulates::System;
    }
    match version
        .strip_prefix("qemu-")
        .and_then(|r| r.split_once(" version "))
    {
        Some((target, _)) if !target.is_empty() => Emulates::User(target.to_owned()),
        _ => Emulates::Unknown,
    }
}

/// Find and check `qemu-<arch>` (or `explicit`): it runs, is a user-mode
/// QEMU for `arch` and has plugin support. (Whether its plugin API version
/// is one the plugin serves, the plugin itself says when QEMU loads it.)
pub fn find_qemu(arch: Arch, explicit: Option<&Path>) -> Result<Qemu, LaunchError> {
    let path = match explicit {
        Some(p) if p.is_file() => p.to_owned(),
        Some(p) => return Err(LaunchError::QemuMissing(p.display().to_string())),
        None => {
            let name = format!("qemu-{}", arch.name());
            search_path(&name).ok_or(LaunchError::QemuMissing(name))?
        }
    };
    // A QEMU checked before (same file, unchanged) need not run twice more
    // (some 15 ms of every start-up).
    let cache = checked_cache_file(&path);
    if let Some(version) = cache.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if let Some(version) = version.strip_suffix("\nplugins\n") {
            if matches!(emulates(version), Emulates::User(t) if Arch::from_qemu_target(&t) == Some(arch))
            {
                return Ok(Qemu {
                    path,
                    version: version.to_owned(),
                });
            }
        }
    }
    let version = Command::new(&path)
        .arg("-version")
        .output()
        .map_err(|source| LaunchError::QemuRun {
            path: path.clone(),
            source,
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
                .unwrap_or_default()
        })?;
    match emulates(&version) {
        Emulates::System => return Err(LaunchError::SystemEmulator(path)),
        Emulates::User(t) if Arch::from_qemu_target(&t) != Some(arch) => {
            return Err(LaunchError::WrongArch {
                path,
                qemu: t,
                program: arch.name(),
            })
        }
        _ => {}
    }
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
    if let Some(file) = cache {
        // Best effort: a cache that cannot be written only costs time.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if file
            .parent()
            .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::fs::write(&tmp, format!("{version}\nplugins\n")).is_ok()
        {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    Ok(Qemu { path, version })
}

/// Where the result of checking the QEMU binary `path` is kept: named by
/// the file's identity and times, so a replaced or rebuilt QEMU is checked
/// again.
fn checked_cache_file(path: &Path) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        path,
        m.len(),
        m.ino(),
        m.dev(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
        .hash(&mut h);
    let dir = crate::rootfs::cache_dir().parent()?.join("qemu-checked");
    Some(dir.join(format!("checked-{:016x}", h.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_says_what_qemu_emulates() {
        assert_eq!(
            emulates("qemu-mips version 10.2.2 (Debian 1:10.2.2+ds-1)"),
            Emulates::User("mips".into())
        );
        assert_eq!(
            emulates("qemu-x86_64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            Emulates::User("x86_64".into())
        );
        assert_eq!(
            emulates("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            Emulates::System
        );
        assert_eq!(emulates(""), Emulates::Unknown);
    }
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
    /// Sandbox steps, to name the one that failed.
    steps: Vec<String>,
    /// A sandbox: where the outer child says the host pid of the sandbox's
    /// first process (the one that execs QEMU).
    inner: Option<libc::c_int>,
    /// A sandbox: where that process sends its seccomp listener.
    notif: Option<libc::c_int>,
}

/// A sandbox that runs: its processes and the listener of its seccomp
/// filter (see [`crate::seccomp`]).
pub struct Started {
    /// The outer child (waits for the sandbox, exits with its status).
    pub outer: libc::pid_t,
    /// QEMU in the sandbox (host pid).
    pub inner: Option<libc::pid_t>,
    /// The sandbox's first process, its init, whose child QEMU is (host pid).
    pub init: Option<libc::pid_t>,
    /// The answers to the seccomp filter's notifications.
    pub supervisor: Option<crate::seccomp::Supervisor>,
}

/// The first child of process `pid` (its main thread's), from
/// `/proc/PID/task/PID/children`.
fn first_child(pid: libc::pid_t) -> Option<libc::pid_t> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Fork a child that will `exec` `argv` (with `cwd` if given) once released,
/// keeping the descriptors `keep` open across the exec (all others of ours
/// are close-on-exec). The child makes no allocation after the fork.
///
/// `filter`: a policy's seccomp filter, installed as the last step before
/// the exec (see [`guestview_seccomp::ChildSide::install_in_child`]).
pub fn spawn_held(
    argv: &[OsString],
    cwd: Option<&Path>,
    keep: &[std::os::fd::RawFd],
    filter: Option<&guestview_seccomp::ChildSide>,
) -> Result<Held, LaunchError> {
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
            for fd in keep {
                libc::fcntl(*fd, libc::F_SETFD, 0);
            }
            if let Some(c) = &cwd {
                if libc::chdir(c.as_ptr()) != 0 {
                    let e = *libc::__errno_location();
                    libc::write(err[1], std::ptr::addr_of!(e).cast(), 4);
                    libc::_exit(126);
                }
            }
            if let Some(f) = filter {
                if let Err(e) = f.install_in_child() {
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
        steps: Vec::new(),
        inner: None,
        notif: None,
    })
}

/// The channel on which guestview hands the plugin a read-only descriptor
/// of the host ring's position page (plugin argument `hostpos=FD`): a unix socket
/// pair, one end kept across QEMU's exec. QEMU starts while the eBPF
/// programs load, so the descriptor cannot simply be inherited; it is sent
/// once the ring exists, before the guest is released.
pub struct PositionChannel {
    ours: std::os::fd::OwnedFd,
    theirs: Option<std::os::fd::OwnedFd>,
}

impl PositionChannel {
    /// A new pair (both ends close-on-exec; [`spawn_held`] keeps QEMU's).
    pub fn new() -> Result<Self, LaunchError> {
        use std::os::fd::FromRawFd;
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: socketpair writes two descriptors into an array of two.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } != 0
        {
            return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (ours, theirs) = unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        };
        Ok(Self {
            ours,
            theirs: Some(theirs),
        })
    }

    /// The descriptor number QEMU's end has (in QEMU too, once kept).
    pub fn theirs(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.theirs.as_ref().map(|f| f.as_raw_fd())
    }

    /// Close our copy of QEMU's end (after the fork).
    pub fn forget_theirs(&mut self) {
        self.theirs = None;
    }

    /// Send `fd` to the plugin (SCM_RIGHTS), without waiting.
    pub fn send(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let byte = 0u8;
        let mut iov = libc::iovec {
            iov_base: std::ptr::addr_of!(byte).cast_mut().cast(),
            iov_len: 1,
        };
        let mut cbuf = [0u64; 4];
        // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
        // SAFETY: msg's control buffer is cbuf (32 bytes >= CMSG_SPACE(4));
        // CMSG_FIRSTHDR/CMSG_DATA point inside it.
        let rc = unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
            libc::CMSG_DATA(c)
                .cast::<libc::c_int>()
                .write_unaligned(fd.as_raw_fd());
            libc::sendmsg(
                self.ours.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Steps of the sandboxed child that are not plan operations (negative).
const STEP_UNSHARE: i32 = -1;
const STEP_FORK: i32 = -2;
const STEP_PIVOT: i32 = -3;
const STEP_HOSTNAME: i32 = -4;
const STEP_LOOPBACK: i32 = -5;
const STEP_CWD: i32 = -6;
const STEP_EXEC: i32 = -7;
const STEP_USERNS: i32 = -8;
const STEP_IDMAP: i32 = -9;
const STEP_IDS: i32 = -10;
const STEP_CAPS: i32 = -11;
const STEP_MOUNTNS: i32 = -12;
const STEP_SYSCTL: i32 = -13;
const STEP_SECCOMP: i32 = -14;

fn step_name(step: i32, steps: &[String]) -> String {
    match step {
        STEP_UNSHARE => "unshare (new PID, IPC, UTS and network namespaces)".into(),
        STEP_MOUNTNS => "unshare (new mount namespace)".into(),
        STEP_FORK => "fork into the new PID namespace".into(),
        STEP_PIVOT => "pivot_root into the guest root".into(),
        STEP_HOSTNAME => "sethostname".into(),
        STEP_LOOPBACK => "bringing up loopback".into(),
        STEP_CWD => "chdir to the working directory".into(),
        STEP_EXEC => "exec QEMU".into(),
        STEP_USERNS => "unshare (new user namespace)".into(),
        STEP_IDMAP => "writing the user namespace's uid_map and gid_map".into(),
        STEP_IDS => "becoming root of the user namespace".into(),
        STEP_CAPS => "dropping capabilities".into(),
        STEP_SYSCTL => "setting the user namespace's limits".into(),
        STEP_SECCOMP => "installing the seccomp filter".into(),
        i => steps
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("step {i}")),
    }
}

/// Bring `lo` up in the current network namespace.
///
/// # Safety
/// Only raw syscalls on stack memory: callable after fork.
unsafe fn loopback_up() -> bool {
    // SAFETY: socket/ioctl/close on a local ifreq, as documented above.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut ok = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) == 0;
        if ok {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            ok = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) == 0;
        }
        libc::close(fd);
        ok
    }
}

/// Report (errno, step) to the parent and leave.
///
/// # Safety
/// Only raw syscalls: callable after fork.
unsafe fn child_fail(fd: libc::c_int, step: i32) -> ! {
    // SAFETY: errno location is per thread; write from a local array; _exit.
    unsafe {
        let e = *libc::__errno_location();
        let msg = [e, step];
        libc::write(fd, msg.as_ptr().cast(), 8);
        libc::_exit(126)
    }
}

/// Write `value` into the file `path` (a sysctl or an id map).
///
/// # Safety
/// Only raw syscalls: callable after fork.
unsafe fn write_file(path: *const libc::c_char, value: &CString) -> bool {
    // SAFETY: open/write/close on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let b = value.as_bytes();
        let ok = libc::write(fd, b.as_ptr().cast(), b.len()) == b.len() as isize;
        libc::close(fd) == 0 && ok
    }
}

/// `/proc/PID/NAME` into `buf`, NUL-terminated, without allocating.
fn proc_path(buf: &mut [u8; 64], pid: libc::pid_t, name: &[u8]) -> *const libc::c_char {
    let mut n = 0;
    for b in b"/proc/" {
        buf[n] = *b;
        n += 1;
    }
    let mut digits = [0u8; 12];
    let mut d = 0;
    let mut v = pid.unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while d > 0 {
        d -= 1;
        buf[n] = digits[d];
        n += 1;
    }
    buf[n] = b'/';
    n += 1;
    for b in name.iter().take(buf.len() - n - 1) {
        buf[n] = *b;
        n += 1;
    }
    buf[n] = 0;
    buf.as_ptr().cast()
}

/// Give up every capability for good: no bounding set, no ambient set,
/// root (uid 0) gains none at exec, no new privileges. (A seccomp filter of
/// the enforcement layer goes in right after this, before the exec.)
///
/// # Safety
/// Only raw syscalls on stack memory: callable after fork.
unsafe fn drop_capabilities() -> bool {
    // SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_NO_CAP_AMBIENT_RAISE
    // and the lock of each, and the lock of SECBIT_KEEP_CAPS (left off).
    const SECURE_BITS: libc::c_ulong = 0b1110_1111;
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl and capset with valid pointers to stack values.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0) != 0 {
            return false;
        }
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                return false;
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            return false;
        }
        let hdr = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
            return false;
        }
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    }
}

/// Give up CAP_SYS_ADMIN for good (a root being built keeps its other
/// capabilities: package scripts chown and chroot). Without it the guest
/// can mount nothing, so every file system it can write stays `noexec`.
///
/// # Safety
/// Only raw syscalls on stack memory: callable after fork.
unsafe fn drop_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl, capget and capset with valid pointers to stack values.
    unsafe {
        if libc::prctl(
            libc::PR_CAPBSET_DROP,
            CAP_SYS_ADMIN as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return false;
        }
        let mut hdr = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) != 0 {
            return false;
        }
        let bit = !(1u32 << CAP_SYS_ADMIN);
        data[0].effective &= bit;
        data[0].permitted &= bit;
        data[0].inheritable &= bit;
        libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) == 0
    }
}

/// Like [`spawn_held`], but the released child builds the sandbox `plan`
/// describes and execs the plan's command in it:
///
/// 1. the child (outer, in the host's PID and mount namespaces) enters new
///    PID, IPC, UTS and network namespaces and forks the new PID
///    namespace's first process;
/// 2. that process, still real root, enters a new mount namespace, makes
///    every mount of the plan (so they are locked once a user namespace
///    owns the mount namespace), pivots into the root, sets the host name,
///    brings up loopback and sets the PID namespace's sysctls;
/// 3. it enters a new user namespace (with a new mount namespace: the
///    copy's mounts are locked); the outer child, which is outside, writes
///    its uid and gid maps; it becomes uid and gid 0 inside, limits the
///    namespace, drops every capability and execs.
///
/// The returned pid is the outer child, which waits for the sandbox and
/// exits with its status (128 + signal if it was killed).
pub fn spawn_held_sandboxed(plan: &crate::sandbox::Plan) -> Result<Held, LaunchError> {
    use crate::sandbox::Op;
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let steps: Vec<String> = plan.ops.iter().map(Op::describe).collect();
    let null = std::ptr::null::<libc::c_char>();
    let opt = |c: &Option<CString>| c.as_ref().map_or(null, |c| c.as_ptr());
    let dot = c".".as_ptr();
    let slash = c"/".as_ptr();
    let mut go = [0 as libc::c_int; 2];
    let mut err = [0 as libc::c_int; 2];
    // Hand-shake of the id maps: inner -> outer "unshared", outer -> inner "mapped".
    let mut up = [0 as libc::c_int; 2];
    let mut down = [0 as libc::c_int; 2];
    let mut said = [0 as libc::c_int; 2];
    for p in [&mut go, &mut err, &mut up, &mut down, &mut said] {
        // SAFETY: pipe2 writes two fds into an array of two ints.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
        }
    }
    let mut notif = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two fds into an array of two ints.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            notif.as_mut_ptr(),
        )
    } != 0
    {
        return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
    }
    let filter: Vec<libc::sock_filter> = plan
        .seccomp
        .iter()
        .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect();
    // SAFETY: after the fork the children only make raw syscalls on memory
    // prepared before it (the plan's C strings and pointer arrays).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Spawn(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: child side, see above.
        unsafe {
            libc::close(go[1]);
            libc::close(err[0]);
            let mut b = 0u8;
            if libc::read(go[0], std::ptr::addr_of_mut!(b).cast(), 1) != 1 {
                libc::_exit(126);
            }
            let ns =
                libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET;
            if libc::unshare(ns) != 0 {
                child_fail(err[1], STEP_UNSHARE);
            }
            let inner = libc::fork();
            if inner < 0 {
                child_fail(err[1], STEP_FORK);
            }
            if inner == 0 {
                // PID 1 of the new namespace: build the world, enter it.
                libc::close(up[0]);
                libc::close(down[1]);
                libc::close(said[1]);
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    child_fail(err[1], STEP_MOUNTNS);
                }
                for (i, op) in plan.ops.iter().enumerate() {
                    let ok = match op {
                        Op::Mkdir(p) => {
                            libc::mkdir(p.as_ptr(), 0o755) == 0
                                || *libc::__errno_location() == libc::EEXIST
                        }
                        Op::Touch(p) => {
                            let fd = libc::open(
                                p.as_ptr(),
                                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                                0o644,
                            );
                            fd >= 0 && libc::close(fd) == 0
                        }
                        Op::Mount {
                            source,
                            target,
                            fstype,
                            flags,
                            data,
                        } => {
                            libc::mount(
                                opt(source),
                                target.as_ptr(),
                                opt(fstype),
                                *flags,
                                opt(data).cast(),
                            ) == 0
                        }
                        Op::Symlink(t, p) => {
                            libc::symlink(t.as_ptr(), p.as_ptr()) == 0
                                || *libc::__errno_location() == libc::EEXIST
                        }
                        Op::Own {
                            path,
                            uid,
                            gid,
                            mode,
                        } => {
                            libc::chown(path.as_ptr(), *uid, *gid) == 0
                                && libc::chmod(path.as_ptr(), *mode) == 0
                        }
                    };
                    if !ok {
                        child_fail(err[1], i as i32);
                    }
                }
                if libc::chdir(plan.new_root.as_ptr()) != 0
                    || libc::syscall(libc::SYS_pivot_root, dot, dot) != 0
                    || libc::umount2(dot, libc::MNT_DETACH) != 0
                    || libc::chdir(slash) != 0
                {
                    child_fail(err[1], STEP_PIVOT);
                }
                let h = plan.hostname.as_bytes();
                if libc::sethostname(plan.hostname.as_ptr(), h.len()) != 0 {
                    child_fail(err[1], STEP_HOSTNAME);
                }
                if !loopback_up() {
                    child_fail(err[1], STEP_LOOPBACK);
                }
                // Best effort: an older kernel may not have the knob; the
                // exec guard stops a memory file's native code anyway.
                for (path, value) in &plan.pid_ns_sysctls {
                    write_file(path.as_ptr(), value);
                }
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    child_fail(err[1], STEP_USERNS);
                }
                let one = 1u8;
                libc::write(up[1], std::ptr::addr_of!(one).cast(), 1);
                let mut b = 0u8;
                if libc::read(down[0], std::ptr::addr_of_mut!(b).cast(), 1) != 1 || b != 1 {
                    libc::_exit(126);
                }
                if libc::setresgid(0, 0, 0) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresuid(0, 0, 0) != 0
                {
                    child_fail(err[1], STEP_IDS);
                }
                for (path, value) in &plan.user_ns_sysctls {
                    if !write_file(path.as_ptr(), value) {
                        child_fail(err[1], STEP_SYSCTL);
                    }
                }
                let dropped = if plan.drop_caps {
                    drop_capabilities()
                } else {
                    drop_sys_admin()
                };
                if !dropped {
                    child_fail(err[1], STEP_CAPS);
                }
                // PID 1 of the namespace stays a small init and QEMU runs as
                // its child: the kernel ignores the signals a namespace's
                // init sends itself, and QEMU ends a guest killed by a
                // signal by raising that signal on itself (as PID 1 it
                // would wait for it forever). The init also reaps orphans.
                let q = libc::fork();
                if q < 0 {
                    child_fail(err[1], STEP_FORK);
                }
                if q > 0 {
                    libc::close(err[1]);
                    libc::close(notif[1]);
                    for fd in &plan.keep_fds {
                        libc::close(*fd);
                    }
                    let mut st = 0;
                    loop {
                        let w = libc::waitpid(-1, &mut st, 0);
                        if w == q {
                            break;
                        }
                        if w < 0 && *libc::__errno_location() != libc::EINTR {
                            libc::_exit(126);
                        }
                    }
                    if libc::WIFEXITED(st) {
                        libc::_exit(libc::WEXITSTATUS(st));
                    }
                    libc::_exit(128 + libc::WTERMSIG(st));
                }
                if libc::chdir(plan.cwd.as_ptr()) != 0 {
                    child_fail(err[1], STEP_CWD);
                }
                // The seccomp filter goes in last, just before the exec
                // (a policy's filter may refuse what comes after it); its
                // listener goes to guestview, sent or taken.
                if !filter.is_empty() {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        child_fail(err[1], STEP_SECCOMP);
                    }
                    let listener = crate::seccomp::install(&filter);
                    if listener < 0 {
                        child_fail(err[1], STEP_SECCOMP);
                    }
                    if plan.seccomp_send {
                        if !crate::seccomp::send_fd(notif[1], listener) {
                            child_fail(err[1], STEP_SECCOMP);
                        }
                        libc::close(listener);
                    }
                    // Otherwise it is close-on-exec, taken while the exec waits.
                }
                for fd in &plan.keep_fds {
                    libc::fcntl(*fd, libc::F_SETFD, 0);
                }
                libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
                child_fail(err[1], STEP_EXEC);
            }
            // The outer child: say who the inner one is, map its ids once it
            // has its user namespace, then wait for the sandbox and pass its
            // status on.
            libc::close(notif[1]);
            libc::write(said[1], std::ptr::addr_of!(inner).cast(), 4);
            libc::close(said[1]);
            libc::close(up[1]);
            libc::close(down[0]);
            let mut b = 0u8;
            if libc::read(up[0], std::ptr::addr_of_mut!(b).cast(), 1) == 1 {
                let mut buf = [0u8; 64];
                let mapped = write_file(proc_path(&mut buf, inner, b"uid_map"), &plan.id_map)
                    && write_file(proc_path(&mut buf, inner, b"gid_map"), &plan.id_map);
                let reply = u8::from(mapped);
                if !mapped {
                    let e = *libc::__errno_location();
                    let msg = [e, STEP_IDMAP];
                    libc::write(err[1], msg.as_ptr().cast(), 8);
                }
                libc::write(down[1], std::ptr::addr_of!(reply).cast(), 1);
            }
            libc::close(err[1]);
            let mut st = 0;
            while libc::waitpid(inner, &mut st, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(126);
                }
            }
            if libc::WIFEXITED(st) {
                libc::_exit(libc::WEXITSTATUS(st));
            }
            libc::_exit(128 + libc::WTERMSIG(st));
        }
    }
    // SAFETY: closing our copies of the children's ends.
    unsafe {
        for fd in [
            go[0], err[1], up[0], up[1], down[0], down[1], said[1], notif[1],
        ] {
            libc::close(fd);
        }
    }
    Ok(Held {
        pid,
        go: go[1],
        err: err[0],
        steps,
        inner: Some(said[0]),
        notif: Some(notif[0]),
    })
}

impl Held {
    /// Let the child exec; reports an exec failure.
    pub fn release(self) -> Result<libc::pid_t, LaunchError> {
        self.release_all(None).map(|s| s.outer)
    }

    /// Let the child exec (a sandbox: build itself and exec QEMU); returns
    /// its pid and, for a sandbox, the host pid of the sandbox's first
    /// process, which exec'd QEMU, and the supervisor of its seccomp
    /// filter (`exe`: the file the plugin execs to restart QEMU), started
    /// before that exec, which the filter sends to it.
    pub fn release_all(self, exe: Option<CString>) -> Result<Started, LaunchError> {
        let b = 1u8;
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        unsafe { libc::write(self.go, std::ptr::addr_of!(b).cast(), 1) };
        // The listener comes before the exec (or the socket closes when
        // the child fails or does without a filter).
        let supervisor = self.notif.and_then(|fd| {
            let l = crate::seccomp::recv_fd(fd, true);
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            Some(crate::seccomp::supervise(
                l?,
                exe.clone().unwrap_or_default(),
            ))
        });
        let mut msg: [libc::c_int; 2] = [0; 2];
        // SAFETY: reading at most 8 bytes into two ints; EOF means exec
        // succeeded (4 bytes: errno of exec, 8: errno and sandbox step).
        let n = unsafe { libc::read(self.err, msg.as_mut_ptr().cast(), 8) };
        let e = msg[0];
        let mut inner: libc::pid_t = 0;
        if let Some(fd) = self.inner {
            // SAFETY: reading 4 bytes into a pid_t; closing our own fd.
            unsafe {
                if libc::read(fd, std::ptr::addr_of_mut!(inner).cast(), 4) != 4 {
                    inner = 0;
                }
                libc::close(fd);
            }
        }
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(self.go);
            libc::close(self.err);
        }
        if n == 4 || n == 8 {
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid, &mut st, 0) };
            let source = std::io::Error::from_raw_os_error(e);
            if n == 8 {
                return Err(LaunchError::Sandbox {
                    step: step_name(msg[1], &self.steps),
                    source,
                });
            }
            return Err(LaunchError::Spawn(source));
        }
        // The init forked QEMU before QEMU's exec, which is done now.
        let qemu = (inner > 0).then(|| first_child(inner)).flatten();
        Ok(Started {
            outer: self.pid,
            inner: qemu,
            init: (inner > 0).then_some(inner),
            supervisor,
        })
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
            for fd in [self.inner, self.notif].into_iter().flatten() {
                // The children are gone: nothing more comes.
                libc::close(fd);
            }
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

/// Wait for child `pid` to end and reap it.
pub fn reap(pid: libc::pid_t) -> Option<Reaped> {
    let mut st = 0;
    // SAFETY: waitpid with a valid status pointer.
    if unsafe { libc::waitpid(pid, &mut st, 0) } != pid {
        return None;
    }
    Some(if libc::WIFSIGNALED(st) {
        Reaped::Signaled(libc::WTERMSIG(st))
    } else {
        Reaped::Exited(libc::WEXITSTATUS(st))
    })
}

/// Reap any exited child without blocking: `(pid, status)`.
pub fn reap_any() -> Option<(libc::pid_t, Reaped, CpuTime)> {
    let mut st = 0;
    // SAFETY: rusage is plain data, all-zero valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 with valid status and rusage pointers.
    let pid = unsafe { libc::wait4(-1, &mut st, libc::WNOHANG, &mut ru) };
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
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    let cpu = CpuTime {
        user_ms: ms(ru.ru_utime),
        sys_ms: ms(ru.ru_stime),
    };
    Some((pid, r, cpu))
}

/// CPU time a reaped child (and the children it waited for) used.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuTime {
    /// In user space, ms.
    pub user_ms: f64,
    /// In the kernel, ms.
    pub sys_ms: f64,
}

/// Whether any child (exited or not) is left to wait for. guestview is a
/// subreaper, so none left means every process of the run is gone.
pub fn has_children() -> bool {
    // SAFETY: siginfo_t is plain data, all-zero valid; waitid with WNOWAIT
    // and WNOHANG only looks.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with a valid siginfo_t pointer.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    !(rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
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

/// CPU time (user + system) guestview itself has used so far, in seconds:
/// the correlator's cost, for the debug log and the benchmark.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

/// While alive, this process's standard output goes to its standard error
/// (what runs meanwhile, a guest included, prints progress where the user
/// sees it, and stdout keeps only the result).
pub struct StdoutToStderr(libc::c_int);

/// Send stdout to stderr until the guard is dropped.
pub fn stdout_to_stderr() -> Option<StdoutToStderr> {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: dup/dup2 on the standard descriptors, no memory arguments.
    let saved = unsafe { libc::dup(1) };
    // SAFETY: as above.
    if saved < 0 || unsafe { libc::dup2(2, 1) } < 0 {
        return None;
    }
    Some(StdoutToStderr(saved))
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        // SAFETY: restoring the saved descriptor onto 1 and closing our copy.
        unsafe {
            libc::dup2(self.0, 1);
            libc::close(self.0);
        }
    }
}
