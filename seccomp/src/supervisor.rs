//! The supervisor: answers `SECCOMP_RET_USER_NOTIF` notifications.
//!
//! Every notification is answered so that what was judged is what runs:
//!
//! * **opens** (`open`, `openat`, `openat2`, `creat`): the path is read
//!   once from the target's memory, resolved against its working directory
//!   or directory descriptor, judged, and — if allowed — opened *by the
//!   supervisor* from its copy, inside the target's root (`chroot` into
//!   `/proc/PID/root` on a thread with its own fs state) with the target's
//!   file-system ids, groups and at most its capabilities, then judged
//!   again on the real path of the opened file (symlinks, `..`), and
//!   injected with `SECCOMP_IOCTL_NOTIF_ADDFD` + `SECCOMP_ADDFD_FLAG_SEND`.
//!   A racing thread that rewrites the path buffer after the read changes
//!   nothing: the kernel never reads it again.
//! * **`connect`** and **`sendto` with an address**: the address is read
//!   once, judged, and the supervisor makes the call itself on the
//!   target's own socket (a duplicate from `pidfd_getfd`) with its copy.
//!   `sendto` without an address (a NULL pointer in a register) continues.
//! * **calls judged by registers only** (uids, raw comparisons, numbers):
//!   the registers cannot change under the kernel, so allowing them with
//!   `SECCOMP_USER_NOTIF_FLAG_CONTINUE` is race-free.
//! * **other calls that name a path or address in memory** (`execve`,
//!   `unlink`, `stat` …, `sendmsg`, `sendmmsg`): deny and kill are final;
//!   an *allow* can only continue, and the kernel reads the memory again — a racing thread can swap in another path after
//!   the check. [`Stats::continued_after_read`] counts those; the threat
//!   model says which layer covers them.
//!
//! Memory the call names is read with `process_vm_readv`, and
//! `SECCOMP_IOCTL_NOTIF_ID_VALID` is checked after every read of the
//! target (memory or /proc) so a recycled pid is never believed.
//! Unreadable memory fails the call with `EFAULT` (what the kernel would
//! do) without continuing.

use crate::sys::{self, Identity, OpenHow};
use crate::Error;
use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One call to judge, decoded.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    /// The calling thread (host tid).
    pub pid: u32,
    /// Host (x86-64) syscall number.
    pub nr: u32,
    /// Argument registers.
    pub args: [u64; 6],
    /// The path the call names, absolute, as the target names it
    /// (lexically resolved against its cwd or directory descriptor, in its
    /// root) — or, when `opened` is set, the real path of the file the
    /// supervisor opened for it.
    pub path: Option<&'a str>,
    /// `path` is the opened file's real path (the second check of an open).
    pub opened: bool,
    /// Open flags (host numbering), also for `openat2`.
    pub flags: Option<u64>,
    /// The IPv4/IPv6 address of `connect`/`sendto`/`sendmsg`/`bind`.
    pub addr: Option<SocketAddr>,
}

/// A judge's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Let it happen (performed by the supervisor where the call reads memory).
    Allow,
    /// Fail it with this positive host errno.
    Deny(i32),
    /// Kill the process.
    Kill,
}

/// Decides calls. Called on the supervisor's threads, possibly while the
/// thread has the target's root: a judge must decide from the request
/// alone and not use the file system.
pub trait Judge: Send + Sync {
    /// The answer for `req`.
    fn judge(&self, req: &Request<'_>) -> Answer;
}

/// A first look at every notification, before the policy's [`Judge`]:
/// another user of the same listener (the kernel allows one listener per
/// filter chain, so the sandbox's exec supervisor and a policy share it).
/// Called on the supervisor thread, which has its own file-system state:
/// a `First` may change the thread's root and working directory if it
/// restores them before it returns.
pub trait First: Send + Sync {
    /// `Some(0)` answers the call with success, `Some(errno)` (positive)
    /// fails it; `None` leaves it to the judge. `listener` is for
    /// `SECCOMP_IOCTL_NOTIF_ID_VALID` after reading the caller.
    fn first(&self, listener: i32, id: u64, pid: u32, nr: u32, args: [u64; 6]) -> Option<i32>;
}

/// Counters of a supervisor.
#[derive(Debug, Default)]
pub struct Stats {
    /// Notifications received.
    pub notifications: AtomicU64,
    /// Allowed (in any way).
    pub allowed: AtomicU64,
    /// Denied.
    pub denied: AtomicU64,
    /// Killed.
    pub killed: AtomicU64,
    /// Opens performed by the supervisor and injected as descriptors.
    pub injected: AtomicU64,
    /// connect/sendto performed by the supervisor on the target's socket.
    pub on_behalf: AtomicU64,
    /// Allowed with CONTINUE on registers alone (race-free).
    pub continued: AtomicU64,
    /// Allowed with CONTINUE after a path was read (the known race).
    pub continued_after_read: AtomicU64,
    /// Targets gone before the answer (ID_VALID false, ENOENT).
    pub gone: AtomicU64,
}

impl Stats {
    fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running supervisor.
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Supervisor {
    pub(crate) fn start(
        pid: u32,
        notify: bool,
        judge: Arc<dyn Judge>,
        first: Option<Arc<dyn First>>,
    ) -> Result<Supervisor, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        if !notify {
            return Ok(Supervisor {
                stop,
                stats,
                thread: None,
            });
        }
        let (st, ss) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("gv-seccomp".into())
            .spawn(move || serve(pid, judge, first, st, ss))
            .map_err(|source| Error::Sys {
                what: "starting the supervisor thread",
                source,
            })?;
        Ok(Supervisor {
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The counters (live).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Has the supervisor thread ended (no process uses the filter any more)?
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stop answering and wait for the thread; the error that ended it early, if any.
    pub fn stop(mut self) -> Result<Arc<Stats>, Error> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Error::Sys {
                        what: "supervisor thread",
                        source: io::Error::other("panicked"),
                    })
                }
            }
        }
        Ok(self.stats.clone())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one supervisor thread keeps.
struct Ctx {
    listener: Arc<OwnedFd>,
    judge: Arc<dyn Judge>,
    first: Option<Arc<dyn First>>,
    stats: Arc<Stats>,
    /// Our own root and /proc, to come back to and to read targets.
    home: OwnedFd,
    proc: OwnedFd,
    user_ns: Vec<u8>,
}

fn sys_err(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys { what, source }
}

/// The listener of `pid` (or of a descendant), once its filter is
/// installed: the process then waits in its `exec` (always checked), and
/// of its fds linking to a seccomp notify file the one that is not a copy
/// of ours (kcmp) is its own. Copied here with pidfd_getfd.
fn take_listener(pid: u32, stop: &AtomicBool) -> Result<Option<(u32, OwnedFd)>, Error> {
    let me = std::process::id();
    let mut wait_us = 20;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie has no fds left: it ended before installing.
        if stat.is_empty() || stat.contains(") Z ") {
            return Err(Error::NoListener);
        }
        // The child, or a descendant it started for the filter (a sandbox
        // launcher forks again inside its new PID namespace).
        for cand in family(pid, 3) {
            let call = std::fs::read_to_string(format!("/proc/{cand}/syscall")).unwrap_or_default();
            let nr = call
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u32>().ok());
            if !nr.is_some_and(|n| crate::EXEC_NRS.contains(&n)) {
                continue;
            }
            let mut found = Vec::new();
            let Ok(entries) = std::fs::read_dir(format!("/proc/{cand}/fd")) else {
                continue;
            };
            for e in entries.flatten() {
                let is_listener = std::fs::read_link(e.path())
                    .is_ok_and(|t| t.as_os_str() == "anon_inode:seccomp notify");
                let fd = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
                if let (true, Some(fd)) = (is_listener, fd) {
                    if !sys::same_file(me, fd, cand, fd) {
                        found.push(fd);
                    }
                }
            }
            match found[..] {
                [fd] => {
                    return sys::steal_fd(cand, fd)
                        .map(|l| Some((cand, l)))
                        .map_err(|source| Error::Sys {
                            what: "pidfd_getfd of the child's seccomp listener",
                            source,
                        })
                }
                [] => {}
                _ => {
                    return Err(Error::Sys {
                        what: "finding the child's seccomp listener (it inherited others: close them before exec)",
                        source: io::Error::from_raw_os_error(libc::EEXIST),
                    })
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(wait_us));
        wait_us = (wait_us * 2).min(2000);
    }
}

/// `pid` and its descendants, `depth` generations down.
fn family(pid: u32, depth: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut gen = vec![pid];
    for _ in 0..depth {
        let mut next = Vec::new();
        for p in &gen {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                next.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
        if next.is_empty() {
            break;
        }
        out.extend(&next);
        gen = next;
    }
    out
}

fn serve(
    pid: u32,
    judge: Arc<dyn Judge>,
    first: Option<Arc<dyn First>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Result<(), Error> {
    let Some((_, listener)) = take_listener(pid, &stop)? else {
        return Ok(());
    };
    let listener = Arc::new(listener);
    let ctx = thread_ctx(listener, judge, first, stats)?;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match sys::poll_in(ctx.listener.as_raw_fd(), 100) {
            Ok(false) => continue,
            Ok(true) => {}
            // Every process using the filter is gone.
            Err(_) => return Ok(()),
        }
        let n = match sys::notif_recv(ctx.listener.as_raw_fd()) {
            Ok(n) => n,
            // The target died between poll and recv, or a signal.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINTR)) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    what: "SECCOMP_IOCTL_NOTIF_RECV",
                    source: e,
                })
            }
        };
        Stats::inc(&ctx.stats.notifications);
        handle(&ctx, &n);
    }
}

fn thread_ctx(
    listener: Arc<OwnedFd>,
    judge: Arc<dyn Judge>,
    first: Option<Arc<dyn First>>,
    stats: Arc<Stats>,
) -> Result<Ctx, Error> {
    sys::own_fs_state().map_err(sys_err("unshare(CLONE_FS) for the supervisor thread"))?;
    let home = sys::open(c"/", libc::O_PATH | libc::O_DIRECTORY).map_err(sys_err("opening /"))?;
    let proc =
        sys::open(c"/proc", libc::O_PATH | libc::O_DIRECTORY).map_err(sys_err("opening /proc"))?;
    let user_ns = sys::readlinkat(proc.as_raw_fd(), c"thread-self/ns/user").unwrap_or_default();
    Ok(Ctx {
        listener,
        judge,
        first,
        stats,
        home,
        proc,
        user_ns,
    })
}

const AT_FDCWD: i32 = libc::AT_FDCWD;
const MAX_PATH: usize = 4096;

/// Host syscalls (x86-64) that name a path: `(nr, path arg, dirfd arg)`.
const PATH_CALLS: &[(u32, usize, Option<usize>)] = &[
    (4, 0, None),      // stat
    (6, 0, None),      // lstat
    (21, 0, None),     // access
    (59, 0, None),     // execve
    (76, 0, None),     // truncate
    (80, 0, None),     // chdir
    (82, 0, None),     // rename
    (83, 0, None),     // mkdir
    (84, 0, None),     // rmdir
    (86, 0, None),     // link
    (87, 0, None),     // unlink
    (88, 0, None),     // symlink (target)
    (89, 0, None),     // readlink
    (90, 0, None),     // chmod
    (92, 0, None),     // chown
    (94, 0, None),     // lchown
    (133, 0, None),    // mknod
    (161, 0, None),    // chroot
    (165, 1, None),    // mount (target)
    (166, 0, None),    // umount2
    (258, 1, Some(0)), // mkdirat
    (259, 1, Some(0)), // mknodat
    (260, 1, Some(0)), // fchownat
    (262, 1, Some(0)), // newfstatat
    (263, 1, Some(0)), // unlinkat
    (264, 1, Some(0)), // renameat
    (265, 1, Some(0)), // linkat
    (266, 0, None),    // symlinkat (target)
    (267, 1, Some(0)), // readlinkat
    (268, 1, Some(0)), // fchmodat
    (269, 1, Some(0)), // faccessat
    (280, 1, Some(0)), // utimensat
    (316, 1, Some(0)), // renameat2
    (322, 1, Some(0)), // execveat
    (332, 1, Some(0)), // statx
    (439, 1, Some(0)), // faccessat2
    (452, 1, Some(0)), // fchmodat2
];

fn handle(ctx: &Ctx, n: &sys::SeccompNotif) {
    let a = n.data.args;
    let nr = n.data.nr as u32;
    if let Some(f) = &ctx.first {
        if let Some(e) = f.first(ctx.listener.as_raw_fd(), n.id, n.pid, nr, a) {
            Stats::inc(if e == 0 {
                &ctx.stats.allowed
            } else {
                &ctx.stats.denied
            });
            respond_err(ctx, n.id, e);
            return;
        }
    }
    let r = match nr {
        2 => open_call(
            ctx,
            n,
            AT_FDCWD,
            a[0],
            OpenHow {
                flags: a[1],
                mode: a[2],
                resolve: 0,
            },
        ),
        257 => open_call(
            ctx,
            n,
            a[0] as i32,
            a[1],
            OpenHow {
                flags: a[2],
                mode: a[3],
                resolve: 0,
            },
        ),
        85 => {
            let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
            open_call(
                ctx,
                n,
                AT_FDCWD,
                a[0],
                OpenHow {
                    flags,
                    mode: a[1],
                    resolve: 0,
                },
            )
        }
        437 => match read_open_how(n, a[2], a[3]) {
            Ok(how) => open_call(ctx, n, a[0] as i32, a[1], how),
            Err(e) => Err(e),
        },
        42 => net_call(ctx, n, NetCall::Connect),
        46 => msg_call(ctx, n, 1),
        307 => msg_call(ctx, n, n.data.args[2].min(1024) as usize),
        44 if a[4] != 0 => net_call(ctx, n, NetCall::SendTo),
        49 => net_call(ctx, n, NetCall::Bind),
        _ => match PATH_CALLS.iter().find(|p| p.0 == nr) {
            Some(&(_, pi, di)) => path_call(ctx, n, a[pi], di.map_or(AT_FDCWD, |d| a[d] as i32)),
            None => registers_call(ctx, n),
        },
    };
    if let Err(e) = r {
        // The call fails as the kernel would have failed it (EFAULT for
        // unreadable memory …); a vanished target needs no answer.
        if e == libc::ENOENT && !sys::notif_id_valid(ctx.listener.as_raw_fd(), n.id) {
            Stats::inc(&ctx.stats.gone);
            return;
        }
        Stats::inc(&ctx.stats.denied);
        respond_err(ctx, n.id, e);
    }
}

fn respond_err(ctx: &Ctx, id: u64, errno: i32) {
    if sys::notif_send(ctx.listener.as_raw_fd(), id, 0, errno, false).is_err() {
        Stats::inc(&ctx.stats.gone);
    }
}

fn valid(ctx: &Ctx, n: &sys::SeccompNotif) -> Result<(), i32> {
    if sys::notif_id_valid(ctx.listener.as_raw_fd(), n.id) {
        Ok(())
    } else {
        Err(libc::ENOENT)
    }
}

/// Apply a non-allow answer; `Ok(true)` if the answer was Allow.
fn settle(ctx: &Ctx, n: &sys::SeccompNotif, ans: Answer) -> Result<bool, i32> {
    match ans {
        Answer::Allow => Ok(true),
        Answer::Deny(e) => Err(if e > 0 { e } else { libc::EPERM }),
        Answer::Kill => {
            sys::kill9(n.pid);
            Stats::inc(&ctx.stats.killed);
            // The target is dying; answer anyway so no thread stays blocked.
            let _ = sys::notif_send(ctx.listener.as_raw_fd(), n.id, 0, libc::EPERM, false);
            Ok(false)
        }
    }
}

fn registers_call(ctx: &Ctx, n: &sys::SeccompNotif) -> Result<(), i32> {
    let req = Request {
        pid: n.pid,
        nr: n.data.nr as u32,
        args: n.data.args,
        ..Default::default()
    };
    if settle(ctx, n, ctx.judge.judge(&req))? {
        Stats::inc(&ctx.stats.allowed);
        Stats::inc(&ctx.stats.continued);
        if sys::notif_send(ctx.listener.as_raw_fd(), n.id, 0, 0, true).is_err() {
            Stats::inc(&ctx.stats.gone);
        }
    }
    Ok(())
}

/// Read a NUL-terminated string of at most MAX_PATH bytes, page by page.
fn read_cstr(pid: u32, addr: u64) -> Result<CString, i32> {
    if addr == 0 {
        return Err(libc::EFAULT);
    }
    let mut out = Vec::with_capacity(256);
    let mut at = addr;
    while out.len() < MAX_PATH {
        // Never cross a page in one read: the next page may be unmapped.
        let room = (4096 - (at % 4096)) as usize;
        let want = room.min(MAX_PATH + 1 - out.len()).min(512);
        let mut buf = [0u8; 512];
        let got = sys::read_mem(pid, at, &mut buf[..want]).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => libc::ENOENT,
            _ => libc::EFAULT,
        })?;
        if got == 0 {
            return Err(libc::EFAULT);
        }
        if let Some(z) = buf[..got].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..z]);
            return CString::new(out).map_err(|_| libc::EFAULT);
        }
        out.extend_from_slice(&buf[..got]);
        at += got as u64;
    }
    Err(libc::ENAMETOOLONG)
}

fn read_open_how(n: &sys::SeccompNotif, addr: u64, size: u64) -> Result<OpenHow, i32> {
    const HOW: usize = std::mem::size_of::<OpenHow>();
    if size < HOW as u64 {
        return Err(libc::EINVAL);
    }
    if size > 4096 {
        return Err(libc::E2BIG);
    }
    let mut buf = vec![0u8; size as usize];
    let got = sys::read_mem(n.pid, addr, &mut buf).map_err(|_| libc::EFAULT)?;
    if got != buf.len() {
        return Err(libc::EFAULT);
    }
    if buf[HOW..].iter().any(|&b| b != 0) {
        return Err(libc::E2BIG);
    }
    let w = |i: usize| u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    Ok(OpenHow {
        flags: w(0),
        mode: w(1),
        resolve: w(2),
    })
}

fn identity(ctx: &Ctx, pid: u32) -> Result<Identity, i32> {
    let path = CString::new(format!("{pid}/status")).map_err(|_| libc::EINVAL)?;
    let fd = sys::openat2(
        ctx.proc.as_raw_fd(),
        &path,
        &OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: 0,
        },
    )
    .map_err(|_| libc::ENOENT)?;
    let text = io::read_to_string(std::fs::File::from(fd)).map_err(|_| libc::ENOENT)?;
    let mut id = Identity::default();
    let nth =
        |line: &str, i: usize| -> Option<u32> { line.split_whitespace().nth(i)?.parse().ok() };
    let mut seen = 0;
    for l in text.lines() {
        if l.starts_with("Uid:") {
            id.fsuid = nth(l, 4).ok_or(libc::EIO)?;
            seen += 1;
        } else if l.starts_with("Gid:") {
            id.fsgid = nth(l, 4).ok_or(libc::EIO)?;
            seen += 1;
        } else if let Some(g) = l.strip_prefix("Groups:") {
            id.groups = g
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
        } else if let Some(c) = l.strip_prefix("CapEff:") {
            id.cap_eff = u64::from_str_radix(c.trim(), 16).map_err(|_| libc::EIO)?;
            seen += 1;
        } else if let Some(u) = l.strip_prefix("Umask:") {
            id.umask = u32::from_str_radix(u.trim(), 8).map_err(|_| libc::EIO)?;
        }
    }
    if seen != 3 {
        return Err(libc::EIO);
    }
    // Capabilities held in another user namespace give no rights over
    // ours: act with none then.
    let ns = CString::new(format!("{pid}/ns/user")).map_err(|_| libc::EINVAL)?;
    if sys::readlinkat(ctx.proc.as_raw_fd(), &ns).map_err(|_| libc::ENOENT)? != ctx.user_ns {
        id.cap_eff = 0;
    }
    Ok(id)
}

fn proc_open(ctx: &Ctx, rel: String, flags: i32) -> Result<OwnedFd, i32> {
    let p = CString::new(rel).map_err(|_| libc::EINVAL)?;
    sys::openat2(
        ctx.proc.as_raw_fd(),
        &p,
        &OpenHow {
            flags: (flags | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: 0,
        },
    )
    .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))
}

/// Where the target stands: its root, the directory a relative path
/// starts from, and the identity it opens with.
struct Place {
    root: OwnedFd,
    dir: Option<OwnedFd>,
    id: Identity,
}

fn place(ctx: &Ctx, n: &sys::SeccompNotif, path: &CStr, dirfd: i32) -> Result<Place, i32> {
    let root = proc_open(
        ctx,
        format!("{}/root", n.pid),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .map_err(|_| libc::ENOENT)?;
    let dir = if path.to_bytes().first() == Some(&b'/') {
        None
    } else if dirfd == AT_FDCWD {
        Some(proc_open(ctx, format!("{}/cwd", n.pid), libc::O_PATH).map_err(|_| libc::ENOENT)?)
    } else {
        // A bad directory descriptor fails as it would in the kernel.
        Some(
            proc_open(ctx, format!("{}/fd/{dirfd}", n.pid), libc::O_PATH)
                .map_err(|_| libc::EBADF)?,
        )
    };
    let id = identity(ctx, n.pid)?;
    valid(ctx, n)?;
    Ok(Place { root, dir, id })
}

/// The absolute path a relative one names, as the target sees it (call
/// while inside its root: /proc links resolve relative to our root).
fn absolute(ctx: &Ctx, dir: Option<&OwnedFd>, path: &CStr) -> String {
    let p = String::from_utf8_lossy(path.to_bytes()).into_owned();
    let Some(d) = dir else {
        return p;
    };
    let link = CString::new(format!("thread-self/fd/{}", d.as_raw_fd())).unwrap_or_default();
    let base = sys::readlinkat(ctx.proc.as_raw_fd(), &link)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|_| "/".into());
    if p.is_empty() {
        base
    } else {
        format!("{}/{p}", base.trim_end_matches('/'))
    }
}

fn open_call(
    ctx: &Ctx,
    n: &sys::SeccompNotif,
    dirfd: i32,
    addr: u64,
    how: OpenHow,
) -> Result<(), i32> {
    let path = read_cstr(n.pid, addr)?;
    valid(ctx, n)?;
    if let Some(rest) = own_proc(&path) {
        return own_proc_open(ctx, n, &path, rest, how);
    }
    let pl = place(ctx, n, &path, dirfd)?;
    let inside = sys::Borrowed::enter(&ctx.home, &pl.root, &pl.id)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM))?;
    let named = absolute(ctx, pl.dir.as_ref(), &path);
    let mut req = Request {
        pid: n.pid,
        nr: n.data.nr as u32,
        args: n.data.args,
        path: Some(&named),
        opened: false,
        flags: Some(how.flags),
        addr: None,
    };
    if !settle(ctx, n, ctx.judge.judge(&req))? {
        return Ok(());
    }
    let cloexec = how.flags & libc::O_CLOEXEC as u64 != 0;
    let mut ours = how;
    ours.flags |= (libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    if ours.flags & (libc::O_CREAT as u64 | libc::O_TMPFILE as u64) != 0 {
        ours.mode &= !u64::from(pl.id.umask);
    }
    let start = pl.dir.as_ref().map_or(AT_FDCWD, AsRawFd::as_raw_fd);
    let fd =
        sys::openat2(start, &path, &ours).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // Judge again what was really opened (symlinks, `..`, bind mounts).
    let link =
        CString::new(format!("thread-self/fd/{}", fd.as_raw_fd())).map_err(|_| libc::EINVAL)?;
    let real = sys::readlinkat(ctx.proc.as_raw_fd(), &link)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|_| libc::EIO)?;
    drop(inside);
    if real != named {
        req.path = Some(&real);
        req.opened = true;
        if !settle(ctx, n, ctx.judge.judge(&req))? {
            return Ok(());
        }
    }
    inject(ctx, n, &fd, cloexec)
}

/// Answer the call with `fd`, a descriptor of ours the kernel installs in
/// the caller (a caller gone meanwhile is counted, not an error).
fn inject(ctx: &Ctx, n: &sys::SeccompNotif, fd: &OwnedFd, cloexec: bool) -> Result<(), i32> {
    match sys::notif_addfd_send(ctx.listener.as_raw_fd(), n.id, fd.as_raw_fd(), cloexec) {
        Ok(_) => {
            Stats::inc(&ctx.stats.allowed);
            Stats::inc(&ctx.stats.injected);
            Ok(())
        }
        Err(e) => match e.raw_os_error() {
            Some(libc::ENOENT) => {
                Stats::inc(&ctx.stats.gone);
                Ok(())
            }
            Some(e) => Err(e),
            None => Err(libc::EIO),
        },
    }
}

/// `/proc/self/REST` or `/proc/thread-self/REST`: REST. The caller's own
/// entries: inside its root they name the supervisor thread, which its
/// procfs (a PID namespace's) may not know.
fn own_proc(path: &CStr) -> Option<&str> {
    let p = path.to_str().ok()?;
    ["/proc/self/", "/proc/thread-self/"]
        .iter()
        .find_map(|pre| p.strip_prefix(pre))
        .filter(|r| !r.is_empty() && !r.split('/').any(|c| c == ".."))
}

/// Open the caller's own `/proc` entry as `/proc/TID/REST` of our procfs
/// (the same process), judged by the name it gave, and inject it.
fn own_proc_open(
    ctx: &Ctx,
    n: &sys::SeccompNotif,
    path: &CStr,
    rest: &str,
    how: OpenHow,
) -> Result<(), i32> {
    let named = path.to_string_lossy();
    let req = Request {
        pid: n.pid,
        nr: n.data.nr as u32,
        args: n.data.args,
        path: Some(&named),
        opened: false,
        flags: Some(how.flags),
        addr: None,
    };
    if !settle(ctx, n, ctx.judge.judge(&req))? {
        return Ok(());
    }
    let cloexec = how.flags & libc::O_CLOEXEC as u64 != 0;
    let mut ours = how;
    ours.flags |= (libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    let rel = CString::new(format!("{}/{rest}", n.pid)).map_err(|_| libc::EINVAL)?;
    let fd = sys::openat2(ctx.proc.as_raw_fd(), &rel, &ours)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    valid(ctx, n)?;
    inject(ctx, n, &fd, cloexec)
}

fn path_call(ctx: &Ctx, n: &sys::SeccompNotif, addr: u64, dirfd: i32) -> Result<(), i32> {
    let path = read_cstr(n.pid, addr)?;
    valid(ctx, n)?;
    let pl = place(ctx, n, &path, dirfd)?;
    let named = {
        let _inside = sys::Borrowed::enter(&ctx.home, &pl.root, &pl.id)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM))?;
        absolute(ctx, pl.dir.as_ref(), &path)
    };
    let req = Request {
        pid: n.pid,
        nr: n.data.nr as u32,
        args: n.data.args,
        path: Some(&named),
        ..Default::default()
    };
    if settle(ctx, n, ctx.judge.judge(&req))? {
        Stats::inc(&ctx.stats.allowed);
        Stats::inc(&ctx.stats.continued_after_read);
        if sys::notif_send(ctx.listener.as_raw_fd(), n.id, 0, 0, true).is_err() {
            Stats::inc(&ctx.stats.gone);
        }
    }
    Ok(())
}

/// `sendmsg` (one header) and `sendmmsg` (`count` headers): each
/// destination is read and judged; the first refused one refuses the call.
/// An allowed call continues: the kernel reads the headers again, so a
/// racing thread can swap a destination in after the check (counted in
/// `continued_after_read`; see the threat model).
fn msg_call(ctx: &Ctx, n: &sys::SeccompNotif, count: usize) -> Result<(), i32> {
    // struct msghdr: msg_name at 0, msg_namelen at 8; struct mmsghdr is a
    // msghdr (56 bytes) and a length, 64 bytes in all.
    let stride = if n.data.nr == 46 { 56 } else { 64 };
    let base = n.data.args[1];
    let mut answers = Vec::new();
    for i in 0..count.max(1) {
        let mut h = [0u8; 16];
        let at = base.wrapping_add((i * stride) as u64);
        if sys::read_mem(n.pid, at, &mut h).map_err(|_| libc::EFAULT)? != h.len() {
            return Err(libc::EFAULT);
        }
        let name = u64::from_ne_bytes(h[..8].try_into().unwrap_or([0; 8]));
        let len = u32::from_ne_bytes(h[8..12].try_into().unwrap_or([0; 4])) as usize;
        let addr = if name != 0 && len > 0 {
            let mut sa = vec![0u8; len.min(std::mem::size_of::<libc::sockaddr_storage>())];
            if sys::read_mem(n.pid, name, &mut sa).map_err(|_| libc::EFAULT)? != sa.len() {
                return Err(libc::EFAULT);
            }
            decode_inet(&sa)
        } else {
            None
        };
        answers.push(addr);
    }
    valid(ctx, n)?;
    for addr in answers {
        let req = Request {
            pid: n.pid,
            nr: n.data.nr as u32,
            args: n.data.args,
            addr,
            ..Default::default()
        };
        if !settle(ctx, n, ctx.judge.judge(&req))? {
            return Ok(());
        }
    }
    Stats::inc(&ctx.stats.allowed);
    Stats::inc(&ctx.stats.continued_after_read);
    if sys::notif_send(ctx.listener.as_raw_fd(), n.id, 0, 0, true).is_err() {
        Stats::inc(&ctx.stats.gone);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NetCall {
    Connect,
    SendTo,
    Bind,
}

/// Decode an IPv4/IPv6 sockaddr; `None` for other families.
pub fn decode_inet(b: &[u8]) -> Option<SocketAddr> {
    let fam = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match i32::from(fam) {
        libc::AF_INET if b.len() >= 8 => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        libc::AF_INET6 if b.len() >= 24 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => None,
    }
}

fn net_call(ctx: &Ctx, n: &sys::SeccompNotif, what: NetCall) -> Result<(), i32> {
    let a = n.data.args;
    let (ptr, len) = match what {
        NetCall::Connect | NetCall::Bind => (a[1], a[2]),
        NetCall::SendTo => (a[4], a[5]),
    };
    let len = usize::try_from(len).map_err(|_| libc::EINVAL)?;
    if len > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(libc::EINVAL);
    }
    let mut sa = vec![0u8; len];
    if sys::read_mem(n.pid, ptr, &mut sa).map_err(|_| libc::EFAULT)? != len {
        return Err(libc::EFAULT);
    }
    // The data of a sendto, copied once too (bounded: a larger datagram
    // is refused rather than read in pieces the guest could change).
    let data = if what == NetCall::SendTo {
        let dl = usize::try_from(a[2]).map_err(|_| libc::EMSGSIZE)?;
        if dl > 1 << 20 {
            return Err(libc::EMSGSIZE);
        }
        let mut d = vec![0u8; dl];
        if dl > 0 && sys::read_mem(n.pid, a[1], &mut d).map_err(|_| libc::EFAULT)? != dl {
            return Err(libc::EFAULT);
        }
        d
    } else {
        Vec::new()
    };
    valid(ctx, n)?;
    let req = Request {
        pid: n.pid,
        nr: n.data.nr as u32,
        args: a,
        addr: decode_inet(&sa),
        ..Default::default()
    };
    if !settle(ctx, n, ctx.judge.judge(&req))? {
        return Ok(());
    }
    let sock = sys::steal_fd(n.pid, a[0] as i32).map_err(|e| match e.raw_os_error() {
        Some(libc::EBADF) => libc::EBADF,
        Some(libc::ESRCH) => libc::ENOENT,
        _ => libc::ENOTSOCK,
    })?;
    let fam = u16::from_ne_bytes([
        sa.first().copied().unwrap_or(0),
        sa.get(1).copied().unwrap_or(0),
    ]);
    let unix_path = i32::from(fam) == libc::AF_UNIX && sa.get(2).is_some_and(|&c| c != 0);
    let place = if unix_path {
        Some(place(ctx, n, c"rel", AT_FDCWD)?)
    } else {
        None
    };
    // A blocking connect or send must not stall the other calls: finish
    // this one on a thread of its own.
    let listener = ctx.listener.clone();
    let stats = ctx.stats.clone();
    let home = dup(&ctx.home)?;
    let id = n.id;
    let flags = a[3] as i32;
    let spawn = std::thread::Builder::new()
        .name("gv-seccomp-net".into())
        .spawn(move || {
            let run = || -> Result<i64, i32> {
                let _inside = match &place {
                    Some(p) => {
                        sys::own_fs_state().map_err(|_| libc::EPERM)?;
                        let b =
                            sys::Borrowed::enter(&home, &p.root, &p.id).map_err(|_| libc::EPERM)?;
                        if let Some(d) = &p.dir {
                            sys::fchdir(d).map_err(|_| libc::ENOENT)?;
                        }
                        Some(b)
                    }
                    None => None,
                };
                let r = match what {
                    NetCall::Connect => sys::connect(sock.as_raw_fd(), &sa).map(|()| 0),
                    NetCall::Bind => sys::bind(sock.as_raw_fd(), &sa).map(|()| 0),
                    NetCall::SendTo => {
                        sys::sendto(sock.as_raw_fd(), &data, flags, &sa).map(|c| c as i64)
                    }
                };
                r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
            };
            let r = run();
            let sent = match r {
                Ok(v) => {
                    Stats::inc(&stats.allowed);
                    Stats::inc(&stats.on_behalf);
                    sys::notif_send(listener.as_raw_fd(), id, v, 0, false)
                }
                Err(e) => {
                    Stats::inc(&stats.denied);
                    sys::notif_send(listener.as_raw_fd(), id, 0, e, false)
                }
            };
            if sent.is_err() {
                Stats::inc(&stats.gone);
            }
        });
    spawn.map(|_| ()).map_err(|_| libc::EAGAIN)
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, i32> {
    fd.try_clone().map_err(|_| libc::EMFILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_addresses_decode() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&53u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[8, 8, 4, 4]);
        assert_eq!(decode_inet(&v4), Some("8.8.4.4:53".parse().unwrap()));
        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(decode_inet(&v6), Some("[::1]:443".parse().unwrap()));
        let mut un = vec![0u8; 10];
        un[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(decode_inet(&un), None);
        assert_eq!(decode_inet(&v4[..6]), None);
        assert_eq!(decode_inet(&[]), None);
    }
}
