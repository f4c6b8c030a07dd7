//! The sandbox's seccomp filter and its supervisor (user notification), the
//! FFI module for them.
//!
//! In the sandbox every mount the guest can write or name is `noexec`: the
//! host's dynamic loader (which QEMU runs on) then cannot map a library the
//! guest wrote, and the kernel runs no ELF the guest wrote. Two things a
//! real system answers differently on such mounts are put right here, in
//! guestview, for the QEMU processes of the sandbox:
//!
//! * `access`/`faccessat`/`faccessat2` with `X_OK` (`test -x`, a shell's
//!   `PATH` search): answered from the file's mode and the caller's ids, as
//!   on an executable mount;
//! * `execve`/`execveat` that QEMU passes on for a guest exec the plugin
//!   did not follow (QEMU 7.2 lets a plugin see a call, not answer it):
//!   refused with the errno the kernel would give on an executable mount
//!   (`ENOENT`, `EACCES`, `ENOEXEC` …), never run. The plugin's own exec of
//!   QEMU goes on (the exec guard in the kernel checks what it loads).
//!
//! The filter is installed by the sandbox's first process just before it
//! execs QEMU (`launch::spawn_held_sandboxed`), and stays on every process
//! of the sandbox; the enforcement layer can add its rules to it there. The
//! supervisor is a thread of guestview that answers the notifications;
//! without it (guestview gone) those calls fail with `ENOSYS`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const NR_ACCESS: u32 = 21;
const NR_EXECVE: u32 = 59;
const NR_FACCESSAT: u32 = 269;
const NR_EXECVEAT: u32 = 322;
const NR_FACCESSAT2: u32 = 439;
const X32_BIT: u32 = 0x4000_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X_OK: u64 = 1;
const W_OK: u64 = 2;
const R_OK: u64 = 4;
const AT_EACCESS: u64 = 0x200;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_FDCWD: i32 = -100;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: exec calls and access calls that ask for `X_OK` go to the
/// supervisor; syscalls of another ABI than x86-64's (only native code
/// could make them) kill the process; everything else is allowed.
pub fn filter() -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let op = |v: u32| v as u16;
    let ld = op(BPF_LD | BPF_W | BPF_ABS);
    let jeq = op(BPF_JMP | BPF_JEQ | BPF_K);
    let jge = op(BPF_JMP | BPF_JGE | BPF_K);
    let jset = op(BPF_JMP | BPF_JSET | BPF_K);
    let ret = op(BPF_RET | BPF_K);
    // Offsets in struct seccomp_data (little-endian: the low half of an
    // argument first).
    let nr = 0;
    let arch = 4;
    let arg = |i: u32| 16 + 8 * i;
    let notify = libc::SECCOMP_RET_USER_NOTIF;
    let allow = libc::SECCOMP_RET_ALLOW;
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    vec![
        /* 0 */ stmt(ld, arch),
        /* 1 */ jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
        /* 2 */ stmt(ret, kill),
        /* 3 */ stmt(ld, nr),
        /* 4 */ jump(jge, X32_BIT, 0, 1),
        /* 5 */ stmt(ret, kill),
        /* 6 */ jump(jeq, NR_EXECVE, 12, 0),
        /* 7 */ jump(jeq, NR_EXECVEAT, 11, 0),
        /* 8 */ jump(jeq, NR_ACCESS, 3, 0),
        /* 9 */ jump(jeq, NR_FACCESSAT, 5, 0),
        /* 10 */ jump(jeq, NR_FACCESSAT2, 4, 0),
        /* 11 */ stmt(ret, allow),
        // access(path, mode)
        /* 12 */ stmt(ld, arg(1)),
        /* 13 */ jump(jset, X_OK as u32, 5, 0),
        /* 14 */ stmt(ret, allow),
        // faccessat(dirfd, path, mode[, flags])
        /* 15 */ stmt(ld, arg(2)),
        /* 16 */ jump(jset, X_OK as u32, 2, 0),
        /* 17 */ stmt(ret, allow),
        /* 18 */ stmt(ret, allow),
        /* 19 */ stmt(ret, notify),
    ]
}

/// Install `prog` on the calling thread (and what it execs) with a new
/// listener; returns the listener's descriptor or -1.
///
/// # Safety
/// Only raw syscalls on memory prepared by the caller: callable after fork.
pub unsafe fn install(prog: &[libc::sock_filter]) -> libc::c_int {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(SET_MODE_FILTER) reads the program the caller keeps
    // alive; NEW_LISTENER makes it return a descriptor.
    unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            std::ptr::addr_of!(fprog),
        ) as libc::c_int
    }
}

/// Pass descriptor `fd` over the Unix socket `sock` (SCM_RIGHTS).
///
/// # Safety
/// Only raw syscalls on stack memory: callable after fork.
pub unsafe fn send_fd(sock: libc::c_int, fd: libc::c_int) -> bool {
    // SAFETY: a msghdr with one byte of data and one SCM_RIGHTS control
    // message, all on the stack and sized by CMSG_SPACE.
    unsafe {
        let mut byte = 0u8;
        let mut iov = libc::iovec {
            iov_base: std::ptr::addr_of_mut!(byte).cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
        libc::sendmsg(sock, &msg, 0) == 1
    }
}

/// Receive a descriptor sent with [`send_fd`] (waiting for it when
/// `block`; `None` when the other end closed without one).
pub fn recv_fd(sock: libc::c_int, block: bool) -> Option<OwnedFd> {
    // SAFETY: as in send_fd; the received descriptor becomes ours.
    unsafe {
        let mut byte = 0u8;
        let mut iov = libc::iovec {
            iov_base: std::ptr::addr_of_mut!(byte).cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let wait = if block { 0 } else { libc::MSG_DONTWAIT };
        if libc::recvmsg(sock, &mut msg, wait | libc::MSG_CMSG_CLOEXEC) != 1 {
            return None;
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// A running supervisor: stop it once the sandbox is gone.
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Supervisor {
    /// Stop answering. The thread ends by itself within its poll interval
    /// (at once when the sandbox's last process is gone: its listener
    /// hangs up); nobody waits for it, which would cost the run that time.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.thread.take());
    }
}

/// Answer the notifications of `listener` on a thread of its own. `exe` is
/// the file the plugin execs to restart QEMU (a path inside the sandbox).
pub fn supervise(listener: OwnedFd, exe: CString) -> Supervisor {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("guestview-seccomp".into())
        .spawn(move || serve(&listener, &exe, &s))
        .ok();
    Supervisor { stop, thread }
}

fn serve(listener: &OwnedFd, exe: &CString, stop: &AtomicBool) {
    // This thread changes its root to each caller's to look at files as the
    // caller sees them: it needs its own root and working directory.
    // SAFETY: unshare(CLONE_FS) affects only this thread.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return;
    }
    // SAFETY: open(O_PATH) of "/"; the descriptor is ours.
    let own = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if own < 0 {
        return;
    }
    // SAFETY: as above.
    let own_root = unsafe { OwnedFd::from_raw_fd(own) };
    let fd = listener.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 20) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
        if n <= 0 || pfd.revents & libc::POLLIN == 0 {
            if stop.load(Ordering::Relaxed) || pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                return;
            }
            continue;
        }
        // SAFETY: an all-zero seccomp_notif is valid and RECV fills it.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV writes one seccomp_notif into `req`.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            continue;
        }
        let answer = decide(
            fd,
            req.id,
            req.pid,
            req.data.nr as u32,
            req.data.args,
            exe,
            &own_root,
        );
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        match answer {
            Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Answer::Return(0) => {}
            Answer::Return(e) => resp.error = -e,
        }
        // SAFETY: SEND reads one seccomp_notif_resp. It fails harmlessly
        // if the caller is gone.
        unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    }
}

/// The sandbox's answers as the first look of a policy's supervisor
/// (`guestview run --policy` in the sandbox): one listener, one loop. What
/// the sandbox lets go on (`Continue`: the plugin's re-exec of QEMU,
/// access without `X_OK` …) goes on to the policy's judge.
pub struct SandboxFirst {
    exe: CString,
    own_root: OwnedFd,
    /// The policy's judge, for the guest program of the plugin's re-exec.
    judge: Option<std::sync::Arc<dyn guestview_seccomp::Judge>>,
}

impl SandboxFirst {
    /// `exe`: the file the plugin execs to restart QEMU (inside the
    /// sandbox). Call on a thread whose root is guestview's.
    pub fn new(
        exe: CString,
        judge: Option<std::sync::Arc<dyn guestview_seccomp::Judge>>,
    ) -> std::io::Result<SandboxFirst> {
        // SAFETY: open(O_PATH) of "/"; the descriptor is ours.
        let own = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if own < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SandboxFirst {
            exe,
            judge,
            // SAFETY: a fresh descriptor of ours.
            own_root: unsafe { OwnedFd::from_raw_fd(own) },
        })
    }
}

impl guestview_seccomp::First for SandboxFirst {
    fn first(&self, listener: i32, id: u64, pid: u32, nr: u32, args: [u64; 6]) -> Option<i32> {
        // As the sandbox's own filter: access only when it asks for X_OK.
        let mine = match nr {
            NR_ACCESS => args[1] & X_OK != 0,
            NR_FACCESSAT | NR_FACCESSAT2 => args[2] & X_OK != 0,
            NR_EXECVE | NR_EXECVEAT => true,
            _ => false,
        };
        if !mine {
            return None;
        }
        match decide(listener, id, pid, nr, args, &self.exe, &self.own_root) {
            Answer::Continue if nr == NR_EXECVE => self.judge_reexec(listener, id, pid, args[1]),
            Answer::Continue => None,
            Answer::Return(e) => Some(e),
        }
    }
}

impl SandboxFirst {
    /// The plugin's re-exec of QEMU for a guest exec: the host sees QEMU's
    /// path, the guest program is the argument after `-0 ARGV0`. The
    /// policy judges that program as the guest's `execve` (`no-shell` …).
    fn judge_reexec(&self, listener: i32, id: u64, pid: u32, argv: u64) -> Option<i32> {
        let judge = self.judge.as_ref()?;
        let program = reexec_program(pid, argv)?;
        if !still_valid(listener, id) {
            return None;
        }
        let path = program.to_str().ok()?;
        let req = guestview_seccomp::Request {
            pid,
            nr: NR_EXECVE,
            path: Some(path),
            ..Default::default()
        };
        match judge.judge(&req) {
            guestview_seccomp::Answer::Allow => None,
            guestview_seccomp::Answer::Deny(e) => Some(e),
            guestview_seccomp::Answer::Kill => {
                // SAFETY: kill(2) of the calling process, which waits in
                // its notified exec.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                Some(libc::EPERM)
            }
        }
    }
}

/// The host calls the sandbox's first look answers: a policy filter
/// shared with the sandbox sends them to the supervisor.
pub const SANDBOX_NOTIFIED: [u32; 5] = [
    NR_ACCESS,
    NR_FACCESSAT,
    NR_FACCESSAT2,
    NR_EXECVE,
    NR_EXECVEAT,
];

enum Answer {
    /// Let the kernel run the call.
    Continue,
    /// Answer it: 0 or an errno.
    Return(i32),
}

/// Is notification `id` still waiting (its caller not gone, its pid not
/// reused)? Checked after reading the caller's memory.
fn still_valid(fd: libc::c_int, id: u64) -> bool {
    let mut id = id;
    // SAFETY: ID_VALID reads one u64.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

fn decide(
    fd: libc::c_int,
    id: u64,
    pid: u32,
    nr: u32,
    a: [u64; 6],
    exe: &CString,
    own_root: &OwnedFd,
) -> Answer {
    let (dirfd, path_ptr, mode, flags) = match nr {
        NR_ACCESS => (AT_FDCWD, a[0], a[1], 0),
        NR_FACCESSAT => (a[0] as i32, a[1], a[2], 0),
        NR_FACCESSAT2 => (a[0] as i32, a[1], a[2], a[3]),
        NR_EXECVE => (AT_FDCWD, a[0], 0, 0),
        NR_EXECVEAT => (a[0] as i32, a[1], 0, a[4]),
        _ => return Answer::Continue,
    };
    let Some(path) = read_string(pid, path_ptr) else {
        return Answer::Return(libc::EFAULT);
    };
    if !still_valid(fd, id) {
        return Answer::Continue;
    }
    let exec = nr == NR_EXECVE || nr == NR_EXECVEAT;
    if exec && nr == NR_EXECVE && path.as_bytes() == exe.as_bytes() {
        // The plugin restarting QEMU (or something the exec guard stops).
        return Answer::Continue;
    }
    let nofollow = !exec && flags & AT_SYMLINK_NOFOLLOW != 0;
    let empty = flags & AT_EMPTY_PATH != 0 && path.as_bytes().is_empty();
    let file = match look(own_root, pid, dirfd, &path, nofollow, empty) {
        Ok(f) => f,
        Err(e) if exec => return Answer::Return(e),
        Err(_) => return Answer::Continue,
    };
    let ids = Ids::of(pid, !exec && flags & AT_EACCESS == 0);
    if exec {
        // Never run: refused as an executable mount would refuse it.
        if !file.regular || !ids.may(&file, X_OK) {
            return Answer::Return(libc::EACCES);
        }
        if let Some(interp) = file.interpreter {
            if look(own_root, pid, AT_FDCWD, &interp, false, false).is_err() {
                return Answer::Return(libc::ENOENT);
            }
        }
        return Answer::Return(libc::ENOEXEC);
    }
    // access(X_OK): on an executable mount only the mode bits would decide.
    if !file.regular || mode & W_OK != 0 {
        return Answer::Continue;
    }
    if ids.may(&file, mode & (R_OK | X_OK)) {
        Answer::Return(0)
    } else {
        Answer::Continue
    }
}

/// The program of a re-exec's argument vector at `argv` (the element after
/// `-0 ARGV0`), read from the caller's memory.
fn reexec_program(pid: u32, argv: u64) -> Option<CString> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut after_dash0 = None;
    for i in 0..1024u64 {
        let mut w = [0u8; 8];
        let n = mem.read_at(&mut w, argv.checked_add(8 * i)?).ok()?;
        let ptr = u64::from_ne_bytes(w);
        if n != 8 || ptr == 0 {
            return None;
        }
        match after_dash0 {
            Some(j) if i == j + 2 => return read_string(pid, ptr),
            Some(_) => {}
            None => {
                if read_string(pid, ptr).is_some_and(|a| a.as_bytes() == b"-0") {
                    after_dash0 = Some(i);
                }
            }
        }
    }
    None
}

/// A NUL-terminated string of the caller's memory (at most PATH_MAX).
fn read_string(pid: u32, addr: u64) -> Option<CString> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while out.len() < 4096 {
        let at = addr.checked_add(out.len() as u64)?;
        let room = 4096 - (at % 4096) as usize;
        let want = room.min(buf.len());
        let n = mem.read_at(&mut buf[..want], at).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return CString::new(out).ok();
        }
        out.extend_from_slice(&buf[..n]);
    }
    None
}

/// What the supervisor learnt of a file the caller named.
struct Seen {
    regular: bool,
    mode: u32,
    uid: u32,
    gid: u32,
    /// `#!` interpreter, for an exec.
    interpreter: Option<CString>,
}

/// Look at `path` as process `pid` would resolve it (its root, its working
/// directory or `dirfd`), from this thread (`own_root`: guestview's root,
/// to come back to): errno on failure.
fn look(
    own_root: &OwnedFd,
    pid: u32,
    dirfd: i32,
    path: &CString,
    nofollow: bool,
    empty: bool,
) -> Result<Seen, i32> {
    let open_path = |p: String, err: i32| {
        let c = CString::new(p).map_err(|_| libc::EINVAL)?;
        // SAFETY: open(O_PATH) of a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(err)
        } else {
            // SAFETY: a fresh descriptor of ours.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    // /proc/self and /proc/thread-self mean the caller: the sandbox's /proc
    // does not know this thread, the host's knows the caller.
    let own_proc = [&b"/proc/self/"[..], b"/proc/thread-self/"]
        .iter()
        .find_map(|p| path.as_bytes().strip_prefix(*p));
    let found = if empty {
        open_path(format!("/proc/{pid}/fd/{dirfd}"), libc::EBADF)?
    } else if let Some(rest) = own_proc {
        let rest = String::from_utf8_lossy(rest);
        open_path(format!("/proc/{pid}/{rest}"), libc::ENOENT)?
    } else {
        let root = open_path(format!("/proc/{pid}/root"), libc::ESRCH)?;
        let start = if dirfd == AT_FDCWD {
            open_path(format!("/proc/{pid}/cwd"), libc::ESRCH)?
        } else {
            open_path(format!("/proc/{pid}/fd/{dirfd}"), libc::EBADF)?
        };
        let flags = if nofollow { libc::O_NOFOLLOW } else { 0 };
        // SAFETY: fchdir/chroot on descriptors we hold change only this
        // thread's root and working directory (CLONE_FS was unshared); the
        // path walk then is the caller's; then back to our own root.
        let (fd, err) = unsafe {
            if libc::fchdir(root.as_raw_fd()) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                return Err(libc::ESRCH);
            }
            let fd = if libc::fchdir(start.as_raw_fd()) == 0 {
                libc::openat(
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::O_PATH | libc::O_CLOEXEC | flags,
                )
            } else {
                -1
            };
            let err = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            libc::fchdir(own_root.as_raw_fd());
            libc::chroot(c".".as_ptr());
            (fd, err)
        };
        if fd < 0 {
            // A lookup error (ENOENT, ENOTDIR, ELOOP, EACCES …).
            return Err(err);
        }
        // SAFETY: a fresh descriptor of ours.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    use std::os::unix::fs::{FileExt, MetadataExt};
    let proc_path = format!("/proc/self/fd/{}", found.as_raw_fd());
    let m = std::fs::metadata(&proc_path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut head = [0u8; 256];
    // Only a regular file is opened to be read (a device could mind).
    let n = if m.is_file() {
        std::fs::File::open(&proc_path)
            .and_then(|f| f.read_at(&mut head, 0))
            .unwrap_or(0)
    } else {
        0
    };
    let interpreter = head[..n].strip_prefix(b"#!").and_then(|line| {
        let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
        let word: Vec<u8> = line
            .iter()
            .copied()
            .skip_while(|b| *b == b' ' || *b == b'\t')
            .take_while(|b| *b != b' ' && *b != b'\t')
            .collect();
        (!word.is_empty())
            .then(|| CString::new(word).ok())
            .flatten()
    });
    Ok(Seen {
        regular: m.is_file(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        interpreter,
    })
}

/// The caller's ids (host numbering, as `stat` gives owners here).
struct Ids {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    dac_override: bool,
}

impl Ids {
    /// Real ids (`access`) or effective (`AT_EACCESS`, exec).
    fn of(pid: u32, real: bool) -> Ids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> Vec<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let pick =
            |v: Vec<u64>| v.get(if real { 0 } else { 1 }).copied().unwrap_or(u64::MAX) as u32;
        let cap = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        Ids {
            uid: pick(field("Uid:")),
            gid: pick(field("Gid:")),
            groups: field("Groups:").into_iter().map(|g| g as u32).collect(),
            // CAP_DAC_OVERRIDE is capability 1.
            dac_override: cap & (1 << 1) != 0,
        }
    }

    /// May these ids have every one of `want` (R_OK, X_OK) on the file, by
    /// its mode bits? (Capabilities count for files whose owner the
    /// caller's user namespace maps, as guestview's roots are.)
    fn may(&self, f: &Seen, want: u64) -> bool {
        if self.dac_override {
            return want & X_OK == 0 || f.mode & 0o111 != 0;
        }
        let bits = if self.uid == f.uid {
            (f.mode >> 6) & 7
        } else if self.gid == f.gid || self.groups.contains(&f.gid) {
            (f.mode >> 3) & 7
        } else {
            f.mode & 7
        };
        u64::from(bits) & want == want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_of_the_filter_lands_inside_it() {
        let f = filter();
        for (i, ins) in f.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + (ins.jt as usize) < f.len(), "{i}");
                assert!(i + 1 + (ins.jf as usize) < f.len(), "{i}");
            }
        }
        // The last instruction returns.
        assert_eq!(
            u32::from(f.last().unwrap().code),
            libc::BPF_RET | libc::BPF_K
        );
    }
}
