//! Every `unsafe` of the crate: seccomp and its notification ioctls, fd
//! passing, reading another process's memory, and the per-thread state
//! (root, working directory, credentials) the supervisor borrows from its
//! target to open a file as the target would.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump if true.
    pub jt: u8,
    /// Jump if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// `struct seccomp_data`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SeccompData {
    /// Syscall number.
    pub nr: i32,
    /// AUDIT_ARCH_*.
    pub arch: u32,
    /// Instruction pointer.
    pub instruction_pointer: u64,
    /// Arguments.
    pub args: [u64; 6],
}

/// `struct seccomp_notif`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SeccompNotif {
    /// Cookie.
    pub id: u64,
    /// Thread id of the caller (in the supervisor's PID namespace).
    pub pid: u32,
    /// Unused.
    pub flags: u32,
    /// The call.
    pub data: SeccompData,
}

#[repr(C)]
#[derive(Default)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct SeccompNotifAddfd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

/// `struct open_how` of openat2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenHow {
    /// Flags.
    pub flags: u64,
    /// Mode.
    pub mode: u64,
    /// RESOLVE_*.
    pub resolve: u64,
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
/// Hand a listener for `SECCOMP_RET_USER_NOTIF` back from `seccomp()`.
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const SECCOMP_USER_NOTIF_FLAG_CONTINUE: u32 = 1;
const SECCOMP_ADDFD_FLAG_SEND: u32 = 1 << 1;
// _IOWR('!', 0, struct seccomp_notif) and friends.
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;
const NOTIF_ADDFD: libc::c_ulong = 0x4018_2103;

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `prctl(PR_SET_NO_NEW_PRIVS)` then `seccomp(SET_MODE_FILTER, flags)`.
/// Async-signal-safe (no allocation): for a child between fork and exec.
/// Returns the listener fd (or 0 without NEW_LISTENER), or the errno.
pub fn install_filter(prog: &[SockFilter], flags: libc::c_ulong) -> Result<RawFd, i32> {
    let Ok(len) = u16::try_from(prog.len()) else {
        return Err(libc::E2BIG);
    };
    let fprog = SockFprog {
        len,
        filter: prog.as_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(errno());
    }
    // SAFETY: fprog points at `prog`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::addr_of!(fprog),
        )
    };
    if r < 0 {
        return Err(errno());
    }
    RawFd::try_from(r).map_err(|_| libc::EBADF)
}

/// Fork; in the child: stdout onto `stdout`, then gid/uid, then `hook`
/// (the filter), then `execv(argv[0], argv)`, exiting 127 if any step
/// fails. The pointer arrays are built before the fork; the child only
/// makes raw syscalls.
pub fn spawn(
    argv: &[std::ffi::CString],
    uid: Option<u32>,
    stdout: Option<RawFd>,
    hook: &dyn Fn() -> Result<(), i32>,
) -> io::Result<u32> {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    if argv.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: the child calls only dup2, setgroups, setgid, setuid, the
    // hook (allocation-free by contract), execv and _exit on memory
    // prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: child side, see above.
        unsafe {
            if let Some(fd) = stdout {
                if libc::dup2(fd, 1) < 0 {
                    libc::_exit(127);
                }
            }
            // Nothing of this (possibly multithreaded) process beyond
            // stdio: no other supervisor's listener, no stray pipe.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            if let Some(u) = uid {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(u) != 0
                    || libc::setuid(u) != 0
                {
                    libc::_exit(127);
                }
            }
            if hook().is_err() {
                libc::_exit(127);
            }
            libc::execv(ptrs[0], ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    Ok(pid as u32)
}

/// waitpid: `Ok(exit code)` or `Err(signal)`.
pub fn wait(pid: u32) -> Result<i32, i32> {
    let mut st = 0;
    // SAFETY: st is a valid int for waitpid to write.
    while unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) } < 0 {
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(0);
        }
    }
    if libc::WIFEXITED(st) {
        Ok(libc::WEXITSTATUS(st))
    } else {
        Err(libc::WTERMSIG(st))
    }
}

/// Wait up to `ms` for `fd` to be readable; false on timeout. POLLHUP
/// (no filter user left) counts as readable so the caller sees the end.
pub fn poll_in(fd: RawFd, ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, alive for the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0 && p.revents & libc::POLLIN == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
    }
    Ok(r > 0)
}

/// SECCOMP_IOCTL_NOTIF_RECV.
pub fn notif_recv(listener: RawFd) -> io::Result<SeccompNotif> {
    let mut n = SeccompNotif::default();
    // SAFETY: the ioctl writes one seccomp_notif into `n` (zeroed as required).
    cvt(unsafe { libc::ioctl(listener, NOTIF_RECV, std::ptr::addr_of_mut!(n)) }.into())?;
    Ok(n)
}

/// SECCOMP_IOCTL_NOTIF_ID_VALID: is the target still blocked in call `id`?
pub fn notif_id_valid(listener: RawFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one u64.
    unsafe { libc::ioctl(listener, NOTIF_ID_VALID, std::ptr::addr_of_mut!(id)) == 0 }
}

/// SECCOMP_IOCTL_NOTIF_SEND: the call returns `val`, fails with `error`
/// (positive errno), or continues in the kernel.
pub fn notif_send(listener: RawFd, id: u64, val: i64, error: i32, cont: bool) -> io::Result<()> {
    let mut r = SeccompNotifResp {
        id,
        val,
        error: -error,
        flags: if cont {
            SECCOMP_USER_NOTIF_FLAG_CONTINUE
        } else {
            0
        },
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp.
    cvt(unsafe { libc::ioctl(listener, NOTIF_SEND, std::ptr::addr_of_mut!(r)) }.into())?;
    Ok(())
}

/// SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND: install `fd` in
/// the target and make its number the call's return value, atomically.
pub fn notif_addfd_send(listener: RawFd, id: u64, fd: RawFd, cloexec: bool) -> io::Result<i32> {
    let mut a = SeccompNotifAddfd {
        id,
        flags: SECCOMP_ADDFD_FLAG_SEND,
        srcfd: u32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: the ioctl reads one seccomp_notif_addfd.
    let r = cvt(unsafe { libc::ioctl(listener, NOTIF_ADDFD, std::ptr::addr_of_mut!(a)) }.into())?;
    i32::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))
}

/// Read `buf.len()` bytes at `addr` in process `pid`; the count read.
pub fn read_mem(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`; the remote side is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `pidfd_open(pid)` then `pidfd_getfd(fd)`: our own descriptor for the
/// target's open file `fd`.
pub fn steal_fd(pid: u32, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let pidfd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    // SAFETY: pidfd is a fresh fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: integer arguments only.
    let r = cvt(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Is fd `a` of process `pa` the same open file as fd `b` of `pb` (kcmp)?
pub fn same_file(pa: u32, a: i32, pb: u32, b: i32) -> bool {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: integer arguments only.
    unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pa as libc::pid_t,
            pb as libc::pid_t,
            KCMP_FILE,
            a,
            b,
        ) == 0
    }
}

/// `open(path, flags)` in the current thread's root and cwd.
pub fn open(path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated.
    let r = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `openat2(dirfd, path, how)`, falling back to `openat` when `resolve`
/// is 0 (a kernel without openat2 still works for plain opens).
pub fn openat2(dirfd: RawFd, path: &CStr, how: &OpenHow) -> io::Result<OwnedFd> {
    let r = if how.resolve == 0 {
        // SAFETY: path is NUL-terminated; mode is an integer.
        unsafe {
            libc::openat(
                dirfd,
                path.as_ptr(),
                how.flags as libc::c_int,
                how.mode as libc::c_uint,
            )
        }
    } else {
        // SAFETY: `how` is a valid open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                std::ptr::from_ref(how),
                std::mem::size_of::<OpenHow>(),
            )
        };
        r as libc::c_int
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `readlinkat(dirfd, path)`.
pub fn readlinkat(dirfd: RawFd, path: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf has the length passed.
    let n = unsafe { libc::readlinkat(dirfd, path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(usize::try_from(n).unwrap_or(0));
    Ok(buf)
}

/// `connect(fd, addr)` with a raw sockaddr.
pub fn connect(fd: RawFd, addr: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(addr.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: addr is a byte buffer of the length passed; the kernel copies it.
    if unsafe { libc::connect(fd, addr.as_ptr().cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sendto(fd, buf, flags, addr)`; the count sent.
pub fn sendto(fd: RawFd, buf: &[u8], flags: i32, addr: &[u8]) -> io::Result<usize> {
    let len = libc::socklen_t::try_from(addr.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both buffers live for the call with the lengths passed.
    let n = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
            addr.as_ptr().cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Kill process (thread group of) `pid` with SIGKILL.
pub fn kill9(pid: u32) {
    // SAFETY: integer arguments only.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// Give this thread its own root, cwd and umask (`unshare(CLONE_FS)`), so
/// that [`Borrowed`] can change them without touching other threads.
pub fn own_fs_state() -> io::Result<()> {
    // SAFETY: integer argument only; affects the calling thread.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: integer argument only.
    unsafe { libc::umask(0) };
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

fn capget() -> io::Result<[CapData; 2]> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: header and two data structs, as v3 requires.
    cvt(unsafe { libc::syscall(libc::SYS_capget, std::ptr::addr_of_mut!(h), d.as_mut_ptr()) })?;
    Ok(d)
}

fn capset(d: &[CapData; 2]) -> io::Result<()> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    // SAFETY: header and two data structs, as v3 requires; affects this thread.
    cvt(unsafe { libc::syscall(libc::SYS_capset, std::ptr::addr_of_mut!(h), d.as_ptr()) })?;
    Ok(())
}

/// A target's file-system identity, from /proc/PID/status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// File-system uid.
    pub fsuid: u32,
    /// File-system gid.
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities the supervisor may keep while acting for it.
    pub cap_eff: u64,
    /// File mode creation mask.
    pub umask: u32,
}

/// While alive, the calling thread has the target's root (`chroot` into
/// /proc/PID/root) and identity; dropping it restores the supervisor's.
/// Needs [`own_fs_state`] first on this thread.
pub struct Borrowed<'a> {
    home: &'a OwnedFd,
    caps: [CapData; 2],
    fsuid: u32,
    fsgid: u32,
    groups: Vec<libc::gid_t>,
}

impl<'a> Borrowed<'a> {
    /// Enter `root` (an O_PATH fd of the target's root) with `id`. `home`
    /// is an O_PATH fd of the supervisor's own root, to come back.
    pub fn enter(home: &'a OwnedFd, root: &OwnedFd, id: &Identity) -> io::Result<Borrowed<'a>> {
        let caps = capget()?;
        let mut groups = vec![0 as libc::gid_t; 65536];
        // SAFETY: the buffer holds as many gid_t as passed.
        let ng = unsafe { libc::syscall(libc::SYS_getgroups, groups.len(), groups.as_mut_ptr()) };
        groups.truncate(usize::try_from(ng).unwrap_or(0));
        // SAFETY: an invalid id only reads the current value back.
        let (fsuid, fsgid) = unsafe {
            (
                libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32,
                libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32,
            )
        };
        let b = Borrowed {
            home,
            caps,
            fsuid,
            fsgid,
            groups,
        };
        // SAFETY: fchdir/chroot on fds and a static path; this thread only.
        unsafe {
            if libc::fchdir(root.as_raw_fd()) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Identity: groups and fs ids by raw syscalls (glibc would apply
        // them to every thread), then the target's capabilities at most.
        let n = id.groups.len().min(65536);
        // SAFETY: the slice holds n gid_t values.
        cvt(unsafe { libc::syscall(libc::SYS_setgroups, n, id.groups.as_ptr()) })?;
        // SAFETY: integer arguments only; setfs*id never fail loudly, so check by reading back.
        unsafe {
            libc::syscall(libc::SYS_setfsgid, id.fsgid);
            libc::syscall(libc::SYS_setfsuid, id.fsuid);
            if libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32 != id.fsuid
                || libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32 != id.fsgid
            {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
        }
        let mut d = capget()?;
        d[0].effective &= id.cap_eff as u32;
        d[1].effective &= (id.cap_eff >> 32) as u32;
        capset(&d)?;
        Ok(b)
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        // SAFETY: restoring this thread's own state; integer and fd arguments.
        unsafe {
            libc::syscall(libc::SYS_setfsuid, self.fsuid);
            libc::syscall(libc::SYS_setfsgid, self.fsgid);
            libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr());
            let _ = capset(&self.caps);
            if libc::fchdir(self.home.as_raw_fd()) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                // Cannot come home: this thread must not serve again.
                libc::abort();
            }
        }
    }
}

/// `bind(fd, addr)` with a raw sockaddr.
pub fn bind(fd: RawFd, addr: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(addr.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: addr is a byte buffer of the length passed; the kernel copies it.
    if unsafe { libc::bind(fd, addr.as_ptr().cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fchdir(fd)` for this thread (after [`own_fs_state`]).
pub fn fchdir(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: an fd argument only.
    if unsafe { libc::fchdir(fd.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
