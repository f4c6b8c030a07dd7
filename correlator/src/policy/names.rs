//! Syscall names in policies: validation against every architecture's
//! table, the aliases that make names architecture-neutral, which calls
//! carry which argument, and the host (x86-64) syscalls QEMU uses for a
//! guest call.

use crate::tables;
use shmem_proto::Arch;

/// Architectures that have syscall `name`.
pub fn arches_with(name: &str) -> Vec<Arch> {
    Arch::ALL
        .iter()
        .copied()
        .filter(|&a| a != Arch::Mipsel && tables::guest_syscall_nr(a, name).is_some())
        .collect()
}

/// Does `name` exist on some supported architecture?
pub fn is_known(name: &str) -> bool {
    !arches_with(name).is_empty()
}

/// The architecture-neutral name of a guest call: width and legacy
/// variants fold into the call they are a variant of (`setuid32` →
/// `setuid`, `stat64` → `stat`, `_llseek` → `lseek`, `mmap2` → `mmap`,
/// `_newselect` → `select`). A rule naming either form matches both.
pub fn canonical(name: &str) -> &str {
    match name {
        "_llseek" | "llseek" => "lseek",
        "_newselect" => "select",
        "mmap2" => "mmap",
        "oldstat" | "stat64" => "stat",
        "oldlstat" | "lstat64" => "lstat",
        "oldfstat" | "fstat64" => "fstat",
        "fstatat64" => "newfstatat",
        "truncate64" => "truncate",
        "ftruncate64" => "ftruncate",
        "fcntl64" => "fcntl",
        "statfs64" => "statfs",
        "fstatfs64" => "fstatfs",
        "sendfile64" => "sendfile",
        "getdents64" => "getdents",
        "fadvise64_64" | "arm_fadvise64_64" => "fadvise64",
        "ugetrlimit" => "getrlimit",
        "signal" => "rt_sigaction",
        n => match n.strip_suffix("32") {
            Some(
                b @ ("setuid" | "setgid" | "setreuid" | "setregid" | "setresuid" | "setresgid"
                | "setfsuid" | "setfsgid" | "getuid" | "getgid" | "geteuid" | "getegid"
                | "getresuid" | "getresgid" | "chown" | "lchown" | "fchown" | "getgroups"
                | "setgroups"),
            ) => b,
            _ => n,
        },
    }
}

/// Calls that take a path the `path` matcher can judge, by canonical name.
pub fn has_path(name: &str) -> bool {
    tables::path_arg(name).is_some()
}

/// Opens: the only calls the host layer can perform itself and hand back
/// as a file descriptor.
pub fn is_open(name: &str) -> bool {
    matches!(canonical(name), "open" | "openat" | "openat2" | "creat")
}

/// Calls whose socket address the `addr` matcher judges.
pub fn has_addr(name: &str) -> bool {
    matches!(
        canonical(name),
        "connect" | "bind" | "sendto" | "sendmsg" | "sendmmsg"
    )
}

/// Index of the `flags` argument of an open call in registers (`openat2`
/// keeps it in memory).
pub fn flags_arg(name: &str) -> Option<usize> {
    match canonical(name) {
        "open" => Some(1),
        "openat" => Some(2),
        _ => None,
    }
}

/// Calls the `flags` matcher applies to.
pub fn has_flags(name: &str) -> bool {
    is_open(name)
}

/// Argument indices holding user or group ids, by canonical name.
pub fn id_args(name: &str) -> &'static [usize] {
    match canonical(name) {
        "setuid" | "setgid" | "setfsuid" | "setfsgid" => &[0],
        "setreuid" | "setregid" => &[0, 1],
        "setresuid" | "setresgid" => &[0, 1, 2],
        "chown" | "lchown" | "fchown" => &[1, 2],
        "fchownat" => &[2, 3],
        _ => &[],
    }
}

/// Calls the `uid` matcher applies to.
pub fn has_ids(name: &str) -> bool {
    !id_args(name).is_empty()
}

/// Host (x86-64) syscalls QEMU may issue for guest call `name` (canonical
/// or not): a translation table for the calls QEMU rewrites, the same name
/// otherwise. Empty when QEMU answers the call itself or the name has no
/// host counterpart (the host layers cannot see such a call).
pub fn host_calls(name: &str) -> Vec<&'static str> {
    let c = canonical(name);
    let list: &[&'static str] = match c {
        "open" | "openat" | "openat2" | "creat" => &["open", "openat", "openat2", "creat"],
        "execve" | "execveat" => &["execve", "execveat"],
        "stat" | "lstat" | "newfstatat" | "statx" => &["stat", "lstat", "newfstatat", "statx"],
        "fstat" => &["fstat", "newfstatat", "statx"],
        "fork" | "vfork" | "clone" | "clone3" => &["clone", "clone3", "fork", "vfork"],
        "select" | "pselect6" | "pselect6_time64" => &["pselect6"],
        "poll" | "ppoll" | "ppoll_time64" => &["ppoll", "poll"],
        "epoll_wait" | "epoll_pwait" => &["epoll_pwait", "epoll_wait"],
        "wait4" | "waitpid" => &["wait4"],
        "waitid" => &["waitid"],
        "access" | "faccessat" | "faccessat2" => &["access", "faccessat", "faccessat2"],
        "dup2" | "dup3" => &["dup2", "dup3"],
        "pipe" | "pipe2" => &["pipe2", "pipe"],
        "getdents" => &["getdents64", "getdents"],
        "signalfd" | "signalfd4" => &["signalfd4", "signalfd"],
        "eventfd" | "eventfd2" => &["eventfd2", "eventfd"],
        "accept" | "accept4" => &["accept4", "accept"],
        "recv" => &["recvfrom"],
        "send" => &["sendto"],
        "socketcall" => &[
            "socket",
            "bind",
            "connect",
            "listen",
            "accept",
            "accept4",
            "getsockname",
            "getpeername",
            "socketpair",
            "sendto",
            "recvfrom",
            "shutdown",
            "setsockopt",
            "getsockopt",
            "sendmsg",
            "recvmsg",
            "sendmmsg",
            "recvmmsg",
        ],
        "ipc" => &[
            "semget",
            "semop",
            "semctl",
            "semtimedop",
            "msgget",
            "msgsnd",
            "msgrcv",
            "msgctl",
            "shmget",
            "shmat",
            "shmdt",
            "shmctl",
        ],
        "utime" | "utimes" | "futimesat" | "utimensat" | "utimensat_time64" => {
            &["utimensat", "utimes", "utime", "futimesat"]
        }
        "chown" | "lchown" | "fchownat" => &["chown", "lchown", "fchownat"],
        "chmod" | "fchmodat" | "fchmodat2" => &["chmod", "fchmodat", "fchmodat2"],
        "unlink" | "unlinkat" | "rmdir" => &["unlink", "unlinkat", "rmdir"],
        "mkdir" | "mkdirat" => &["mkdir", "mkdirat"],
        "rename" | "renameat" | "renameat2" => &["rename", "renameat", "renameat2"],
        "link" | "linkat" => &["link", "linkat"],
        "symlink" | "symlinkat" => &["symlink", "symlinkat"],
        "readlink" | "readlinkat" => &["readlink", "readlinkat"],
        "mknod" | "mknodat" => &["mknod", "mknodat"],
        _ => &[],
    };
    if !list.is_empty() {
        return list.to_vec();
    }
    match tables::host_syscall_nr(c) {
        Some(nr) => tables::host_syscall_name(nr).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Host syscalls QEMU makes for its own work (loading, code buffers,
/// threads, signals, its start-up files): a filter that refused one of
/// these outright would break QEMU itself rather than the guest, so the
/// host layer never compiles a plain deny or kill for them (it can still
/// decide by argument through the supervisor).
pub const QEMU_OWN: &[&str] = &[
    "read",
    "write",
    "pread64",
    "close",
    "open",
    "openat",
    "lseek",
    "fstat",
    "newfstatat",
    "statx",
    "stat",
    "lstat",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "mmap",
    "mprotect",
    "munmap",
    "mremap",
    "madvise",
    "brk",
    "mincore",
    "futex",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "rt_sigsuspend",
    "clone",
    "clone3",
    "exit",
    "exit_group",
    "set_robust_list",
    "rseq",
    "set_tid_address",
    "getrandom",
    "prlimit64",
    "arch_prctl",
    "prctl",
    "getpid",
    "gettid",
    "getppid",
    "tgkill",
    "kill",
    "ioctl",
    "fcntl",
    "membarrier",
    "sched_getaffinity",
    "sched_yield",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "gettimeofday",
    "uname",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "eventfd2",
    "pipe2",
    "poll",
    "ppoll",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "getcwd",
    "sysinfo",
    "timer_create",
    "timer_settime",
    "timer_delete",
];

/// Is host syscall `name` one QEMU needs for itself?
pub fn qemu_needs(host_name: &str) -> bool {
    QEMU_OWN.contains(&host_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_span_architectures() {
        assert!(is_known("open"));
        assert!(is_known("openat"));
        assert!(is_known("setuid32"));
        assert!(is_known("socketcall"));
        assert!(!is_known("no_such_call"));
        // open exists on 32-bit and x86-64, not on the generic 64-bit ABIs.
        let o = arches_with("open");
        assert!(o.contains(&Arch::Mips) && !o.contains(&Arch::Aarch64));
    }

    #[test]
    fn aliases_fold_variants() {
        assert_eq!(canonical("setuid32"), "setuid");
        assert_eq!(canonical("_llseek"), "lseek");
        assert_eq!(canonical("stat64"), "stat");
        assert_eq!(canonical("open"), "open");
        assert_eq!(canonical("getuid32"), "getuid");
        assert_eq!(canonical("x32"), "x32");
    }

    #[test]
    fn every_host_call_is_a_host_syscall() {
        let mut names: Vec<&str> = QEMU_OWN.to_vec();
        for arch in Arch::ALL {
            for nr in 0..5000 {
                if let Some(n) = tables::guest_syscall_name(arch, nr) {
                    names.extend(host_calls(n));
                }
            }
        }
        for n in names {
            assert!(
                tables::host_syscall_nr(n).is_some(),
                "{n} is no x86-64 syscall"
            );
        }
        assert_eq!(host_calls("open"), ["open", "openat", "openat2", "creat"]);
        assert_eq!(host_calls("setuid32"), ["setuid"]);
        assert_eq!(host_calls("set_thread_area"), ["set_thread_area"]);
        assert!(host_calls("cacheflush").is_empty());
    }

    #[test]
    fn argument_kinds() {
        assert!(has_path("openat") && has_path("execve") && !has_path("setuid"));
        assert!(has_addr("connect") && !has_addr("socket"));
        assert_eq!(id_args("setresuid32"), &[0, 1, 2]);
        assert_eq!(flags_arg("openat"), Some(2));
        assert!(is_open("creat") && !is_open("execve"));
    }
}
