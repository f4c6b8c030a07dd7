// SPDX-License-Identifier: GPL-2.0-or-later
//! Following guest execs (`exec=on`): a guest `execve`/`execveat` of a guest
//! program becomes an exec of QEMU with this plugin on that program, so
//! every process of the guest stays under QEMU and reports into the same
//! ring, whatever the guest does to its environment. Anything else — a
//! host-native (x86-64 or i386) ELF, another architecture's ELF — is
//! refused and noted.
//!
//! The decision is made here, before QEMU acts on the call, by reading the
//! call's arguments from guest memory and the file itself, as the kernel
//! would: permission, `#!` interpreters (up to four levels), ELF class,
//! byte order and machine. QEMU is restarted with the command line it was
//! started with, up to and including this plugin's `-plugin` argument, then
//! `-0 ARGV0 PROGRAM ARGS…`; the guest's environment follows, less the
//! `QEMU_*` variables the new QEMU would take as its own options.
//!
//! What this cannot stop on its own (QEMU 7.2 has no way for a plugin to
//! answer a call): after a refusal QEMU still passes the guest's exec to
//! the host kernel. In guestview's sandbox that fails (every file the
//! guest can write or name is on a `noexec` mount, and the exec guard in
//! the kernel kills any other image before it runs); see
//! `correlator/src/sandbox.rs`.

use shmem_proto::Arch;
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// QEMU's `guest_base` (host address of guest address 0), learnt from the
/// first translated instruction.
static GUEST_BASE: AtomicU64 = AtomicU64::new(0);
static GUEST_BASE_KNOWN: AtomicBool = AtomicBool::new(false);

/// Remember where guest address `vaddr` lives in the host (`haddr`).
pub fn note_guest_base(haddr: u64, vaddr: u64) {
    if !GUEST_BASE_KNOWN.load(Ordering::Relaxed) {
        GUEST_BASE.store(haddr.wrapping_sub(vaddr), Ordering::Relaxed);
        GUEST_BASE_KNOWN.store(true, Ordering::Release);
    }
}

/// Has the guest base been learnt yet?
pub fn guest_base_known() -> bool {
    GUEST_BASE_KNOWN.load(Ordering::Acquire)
}

const EFAULT: i32 = libc::EFAULT;
/// Longest path or argument string read from the guest.
const MAX_STRING: usize = 128 * 1024;
/// Most argument or environment strings read from the guest.
const MAX_STRINGS: usize = 64 * 1024;
/// `#!` lines are read as the kernel reads them: the first 256 bytes.
const BINPRM_BUF: usize = 256;
/// Interpreter levels the kernel allows before ELOOP.
const MAX_DEPTH: usize = 4;
/// `AT_EMPTY_PATH`, the same on every Linux architecture.
const AT_EMPTY_PATH: u64 = 0x1000;
/// `AT_FDCWD`.
const AT_FDCWD: i32 = -100;

/// How this QEMU was started, to start it again on another program.
#[derive(Debug)]
pub struct Restart {
    arch: Arch,
    /// The file to exec (this process's executable: QEMU, or the dynamic
    /// loader that runs QEMU in a sandbox).
    exe: CString,
    /// Its arguments up to and including this plugin's `-plugin` argument.
    prefix: Vec<CString>,
    /// The guest program of this image (what `/proc/self/exe` means to it).
    program: Vec<u8>,
    execve: Option<i64>,
    execveat: Option<i64>,
}

impl Restart {
    /// Read this process's command line: find `-plugin` and what follows.
    pub fn from_self(arch: Arch) -> Result<Restart, String> {
        let exe = std::fs::read_link("/proc/self/exe")
            .map_err(|e| format!("exec=on: cannot read /proc/self/exe: {e}"))?;
        let cmdline = std::fs::read("/proc/self/cmdline")
            .map_err(|e| format!("exec=on: cannot read /proc/self/cmdline: {e}"))?;
        Restart::parse(arch, exe.as_os_str().as_bytes(), &cmdline)
    }

    fn parse(arch: Arch, exe: &[u8], cmdline: &[u8]) -> Result<Restart, String> {
        let args: Vec<&[u8]> = cmdline
            .strip_suffix(b"\0")
            .unwrap_or(cmdline)
            .split(|b| *b == 0)
            .collect();
        let i = args
            .iter()
            .position(|a| *a == b"-plugin")
            .filter(|i| i + 1 < args.len())
            .ok_or(
                "exec=on needs the plugin on QEMU's command line (-plugin), not in QEMU_PLUGIN",
            )?;
        let cs = |b: &[u8]| CString::new(b).map_err(|_| "NUL in QEMU's command line".to_string());
        // The plugin's argument is kept as it is (the sandbox's exec guard
        // wants it so): a hostpos= descriptor is gone in the next image,
        // whose plugin then quietly times its calls.
        let prefix = args[..i + 2]
            .iter()
            .map(|a| cs(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rest = &args[i + 2..];
        if rest.first() == Some(&&b"-0"[..]) && rest.len() >= 2 {
            rest = &rest[2..];
        }
        let program = rest.first().map(|p| p.to_vec()).unwrap_or_default();
        let sysnr = |n: &str| crate::out::syscall_nr(arch, n);
        Ok(Restart {
            arch,
            exe: cs(exe)?,
            prefix,
            program,
            execve: sysnr("execve"),
            execveat: sysnr("execveat"),
        })
    }

    /// Is guest call `nr` an exec?
    pub fn is_exec(&self, nr: i64) -> bool {
        Some(nr) == self.execve || Some(nr) == self.execveat
    }
}

/// What to do with a guest exec.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start QEMU with the plugin on `program`; `argv[0]` is the guest's.
    Run {
        /// The guest program as QEMU should open it.
        program: Vec<u8>,
        /// The guest's argv (with `#!` interpreters applied).
        argv: Vec<Vec<u8>>,
        /// The guest's environment.
        env: Vec<Vec<u8>>,
        /// A descriptor made for `program` (`/proc/self/fd/N`), to close if
        /// the exec fails.
        made_fd: Option<i32>,
    },
    /// Refuse: the host errno the kernel (or guestview) gives, why (an
    /// `EXEC_REFUSED_*` reason, if it is one to alert on) and the file.
    Refuse {
        /// Host errno.
        errno: i32,
        /// `EXEC_REFUSED_*`, or `None` for an ordinary failure (ENOENT …).
        reason: Option<u32>,
        /// The file concerned.
        path: Vec<u8>,
    },
}

fn refuse(errno: i32, path: &[u8]) -> Decision {
    Decision::Refuse {
        errno,
        reason: None,
        path: path.to_vec(),
    }
}

/// Guest memory, read without trusting the guest's pointers.
struct Guest {
    arch: Arch,
}

impl Guest {
    fn host(&self, addr: u64) -> u64 {
        let a = if self.wide() {
            addr
        } else {
            addr & 0xffff_ffff
        };
        GUEST_BASE.load(Ordering::Relaxed).wrapping_add(a)
    }

    fn wide(&self) -> bool {
        matches!(
            self.arch,
            Arch::Aarch64 | Arch::Ppc64le | Arch::Riscv64 | Arch::X86_64
        )
    }

    fn string(&self, addr: u64) -> Result<Vec<u8>, i32> {
        if addr == 0 {
            return Err(EFAULT);
        }
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while out.len() < MAX_STRING {
            // Stay inside a page per read, so a string that ends right
            // before an unmapped page is still read whole.
            let at = self.host(addr).wrapping_add(out.len() as u64);
            let room = 4096 - (at % 4096) as usize;
            let want = room.min(chunk.len());
            let n = crate::sys::read_own_memory(at, &mut chunk[..want]);
            if n == 0 {
                return Err(EFAULT);
            }
            if let Some(end) = chunk[..n].iter().position(|b| *b == 0) {
                out.extend_from_slice(&chunk[..end]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Err(libc::E2BIG)
    }

    fn word(&self, addr: u64) -> Result<u64, i32> {
        let w = if self.wide() { 8 } else { 4 };
        let mut b = [0u8; 8];
        if crate::sys::read_own_memory(self.host(addr), &mut b[..w]) != w {
            return Err(EFAULT);
        }
        Ok(match (w, self.arch.big_endian()) {
            (8, true) => u64::from_be_bytes(b),
            (8, false) => u64::from_le_bytes(b),
            (_, true) => u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            (_, false) => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        })
    }

    /// A NULL-terminated array of string pointers (NULL itself: empty).
    fn strings(&self, addr: u64) -> Result<Vec<Vec<u8>>, i32> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok(out);
        }
        let w = if self.wide() { 8 } else { 4 };
        for i in 0..MAX_STRINGS as u64 {
            let p = self.word(addr.wrapping_add(i * w))?;
            if p == 0 {
                return Ok(out);
            }
            out.push(self.string(p)?);
        }
        Err(libc::E2BIG)
    }
}

/// ELF machine numbers.
const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// (ELF class, big-endian, machine) of the programs QEMU for `arch` runs.
fn elf_of(arch: Arch) -> (u8, bool, u16) {
    match arch {
        Arch::Mips => (1, true, EM_MIPS),
        Arch::Mipsel => (1, false, EM_MIPS),
        Arch::Arm => (1, false, EM_ARM),
        Arch::Aarch64 => (2, false, EM_AARCH64),
        Arch::Ppc => (1, true, EM_PPC),
        Arch::Ppc64le => (2, false, EM_PPC64),
        Arch::Riscv64 => (2, false, EM_RISCV),
        Arch::X86_64 => (2, false, EM_X86_64),
    }
}

/// What an ELF header says about who can run it.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Guest,
    Native,
    Foreign,
    Script,
    Other,
}

fn kind_of(arch: Arch, head: &[u8]) -> Kind {
    if head.starts_with(b"#!") {
        return Kind::Script;
    }
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return Kind::Other;
    }
    let (class, be) = (head[4], head[5] == 2);
    let machine = if be {
        u16::from_be_bytes([head[18], head[19]])
    } else {
        u16::from_le_bytes([head[18], head[19]])
    };
    if (class, be, machine) == elf_of(arch) {
        return Kind::Guest;
    }
    if !be
        && matches!(
            (class, machine),
            (2, EM_X86_64) | (1, EM_386) | (1, EM_X86_64)
        )
    {
        return Kind::Native;
    }
    Kind::Foreign
}

/// The kernel's reading of a `#!` line: interpreter and optional argument.
fn shebang(head: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let line = head.strip_prefix(b"#!")?;
    let line = match line.iter().position(|b| *b == b'\n') {
        Some(n) => &line[..n],
        None => line,
    };
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b))?;
    let line = &line[start..];
    let end = line.iter().rposition(|b| !blank(b))? + 1;
    let line = &line[..end];
    match line.iter().position(blank) {
        None => Some((line.to_vec(), None)),
        Some(i) => {
            let interp = line[..i].to_vec();
            let rest = &line[i..];
            let s = rest.iter().position(|b| !blank(b)).unwrap_or(rest.len());
            let arg = &rest[s..];
            Some((interp, (!arg.is_empty()).then(|| arg.to_vec())))
        }
    }
}

/// May the calling process execute a file of this mode and owner?
fn may_execute(meta: &std::fs::Metadata) -> bool {
    let mode = meta.mode();
    if mode & 0o111 == 0 {
        return false;
    }
    let uid = crate::sys::euid();
    if uid == 0 {
        // As the kernel treats root: any x bit will do.
        return true;
    }
    if uid == meta.uid() {
        mode & 0o100 != 0
    } else if crate::sys::in_group(meta.gid()) {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

impl Restart {
    /// Decide a guest `execve(path, argv, envp)` or `execveat(dirfd, path,
    /// argv, envp, flags)` from the call's arguments.
    pub fn decide(&self, nr: i64, args: &[u64; 8]) -> Decision {
        let g = Guest { arch: self.arch };
        let (dirfd, p, a, e, flags) = if Some(nr) == self.execveat {
            (args[0] as i32, args[1], args[2], args[3], args[4])
        } else {
            (AT_FDCWD, args[0], args[1], args[2], 0)
        };
        let path = match g.string(p) {
            Ok(s) => s,
            Err(e) => return refuse(e, b""),
        };
        let (argv, env) = match (g.strings(a), g.strings(e)) {
            (Ok(a), Ok(e)) => (a, e),
            (Err(e), _) | (_, Err(e)) => return refuse(e, &path),
        };
        if !guest_base_known() {
            return refuse(EFAULT, &path);
        }
        let env = env
            .into_iter()
            .filter(|v| !v.starts_with(b"QEMU_"))
            .collect();
        // Where the file is, as a path QEMU can open after the exec.
        let mut made_fd = None;
        let (open_dir, program) = if path.is_empty() {
            if flags & AT_EMPTY_PATH == 0 || dirfd < 0 {
                return refuse(libc::ENOENT, &path);
            }
            match crate::sys::dup_inheritable(dirfd, 64) {
                Ok(fd) => {
                    made_fd = Some(fd);
                    (fd, format!("/proc/self/fd/{fd}").into_bytes())
                }
                Err(e) => return refuse(e, &path),
            }
        } else if path.starts_with(b"/") || dirfd == AT_FDCWD {
            (AT_FDCWD, path.clone())
        } else {
            match crate::sys::dup_inheritable(dirfd, 64) {
                Ok(fd) => {
                    made_fd = Some(fd);
                    let mut p = format!("/proc/self/fd/{fd}/").into_bytes();
                    p.extend_from_slice(&path);
                    (AT_FDCWD, p)
                }
                Err(e) => return refuse(e, &path),
            }
        };
        let open_path = if open_dir == AT_FDCWD {
            program.clone()
        } else {
            b"".to_vec()
        };
        let d = self.resolve(&program, &open_path, open_dir, argv, 0);
        match d {
            Decision::Run { program, argv, .. } => Decision::Run {
                program,
                argv,
                env,
                made_fd,
            },
            refused => {
                if let Some(fd) = made_fd {
                    crate::sys::close_fd(fd);
                }
                refused
            }
        }
    }

    /// Follow `program` (opened as `open_path` relative to `dirfd`, or
    /// `dirfd` itself when `open_path` is empty) through `#!` lines to a
    /// guest ELF.
    fn resolve(
        &self,
        program: &[u8],
        open_path: &[u8],
        dirfd: i32,
        argv: Vec<Vec<u8>>,
        depth: usize,
    ) -> Decision {
        // QEMU runs /proc/self/exe as the program it runs, not itself.
        let own = format!("/proc/{}/exe", std::process::id());
        let (program, open_path) = if open_path == b"/proc/self/exe" || open_path == own.as_bytes()
        {
            (self.program.as_slice(), self.program.as_slice())
        } else {
            (program, open_path)
        };
        let file = if open_path.is_empty() {
            let fd = format!("/proc/self/fd/{dirfd}");
            std::fs::File::open(fd).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
        } else {
            match CString::new(open_path) {
                Ok(c) => crate::sys::open_at(dirfd, &c),
                Err(_) => Err(libc::ENOENT),
            }
        };
        let file = match file {
            Ok(f) => f,
            Err(e) => return refuse(e, program),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return refuse(e.raw_os_error().unwrap_or(libc::EIO), program),
        };
        if !meta.is_file() || !may_execute(&meta) {
            return refuse(libc::EACCES, program);
        }
        let mut head = [0u8; BINPRM_BUF];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        let head = &head[..n];
        match kind_of(self.arch, head) {
            Kind::Guest => Decision::Run {
                program: program.to_vec(),
                argv,
                env: Vec::new(),
                made_fd: None,
            },
            Kind::Script => {
                if depth >= MAX_DEPTH {
                    return refuse(libc::ELOOP, program);
                }
                let Some((interp, arg)) = shebang(head) else {
                    return refuse(libc::ENOEXEC, program);
                };
                // The kernel's new argv: interpreter, its argument, the
                // script as named, then the old argv less its argv[0].
                let mut next = vec![interp.clone()];
                next.extend(arg);
                next.push(program.to_vec());
                next.extend(argv.into_iter().skip(1));
                self.resolve(&interp, &interp, AT_FDCWD, next, depth + 1)
            }
            Kind::Native => Decision::Refuse {
                errno: libc::ENOEXEC,
                reason: Some(shmem_proto::record::EXEC_REFUSED_NATIVE),
                path: program.to_vec(),
            },
            Kind::Foreign => Decision::Refuse {
                errno: libc::ENOEXEC,
                reason: Some(shmem_proto::record::EXEC_REFUSED_FOREIGN),
                path: program.to_vec(),
            },
            Kind::Other => refuse(libc::ENOEXEC, program),
        }
    }

    /// Exec QEMU on a program [`Restart::decide`] found runnable. Returns
    /// only if the exec failed (with its errno).
    ///
    /// QEMU's environment is also the guest's. The variables glibc does not
    /// trust for a setuid program (`LD_PRELOAD`, `GLIBC_TUNABLES` …) would
    /// be read by the host's loader that QEMU runs on: they go to the guest
    /// with `-E` instead (dropped if the value has a comma, which `-E`
    /// cannot carry).
    pub fn run(&self, program: &[u8], argv: &[Vec<u8>], env: &[Vec<u8>]) -> i32 {
        let cs = |b: &[u8]| CString::new(b).ok();
        let mut a: Vec<CString> = self.prefix.clone();
        let (guest_only, env): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
            env.iter().partition(|v| unsecure_for_the_host(v));
        for v in guest_only {
            if !v.contains(&b',') {
                if let Some(c) = cs(v) {
                    a.push(c"-E".to_owned());
                    a.push(c);
                }
            }
        }
        a.push(c"-0".to_owned());
        let argv0 = argv.first().map_or(&b""[..], Vec::as_slice);
        let (Some(argv0), Some(prog)) = (cs(argv0), cs(program)) else {
            return libc::EINVAL;
        };
        a.push(argv0);
        a.push(prog);
        for s in argv.iter().skip(1) {
            match cs(s) {
                Some(c) => a.push(c),
                None => return libc::EINVAL,
            }
        }
        let e: Vec<CString> = env.iter().filter_map(|v| cs(v)).collect();
        crate::sys::execve(&self.exe, &a, &e)
    }
}

/// glibc's list of variables it removes for setuid programs (`UNSECURE_ENVVARS`):
/// what the host's dynamic loader and libc would act on.
const UNSECURE: &[&str] = &[
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LD_AUDIT",
    "LD_DEBUG",
    "LD_DEBUG_OUTPUT",
    "LD_DYNAMIC_WEAK",
    "LD_HWCAP_MASK",
    "LD_LIBRARY_PATH",
    "LD_ORIGIN_PATH",
    "LD_PRELOAD",
    "LD_PROFILE",
    "LD_SHOW_AUXV",
    "LD_USE_LOAD_BIAS",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
    "TMPDIR",
    "TZDIR",
];

fn unsecure_for_the_host(var: &[u8]) -> bool {
    let name = var.split(|b| *b == b'=').next().unwrap_or(var);
    name.starts_with(b"LD_") || UNSECURE.iter().any(|u| u.as_bytes() == name)
}

impl Restart {
    /// The executable restarted (for messages).
    pub fn exe(&self) -> &CStr {
        &self.exe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_are_read_as_the_kernel_reads_them() {
        assert_eq!(
            shebang(b"#!/bin/sh\necho"),
            Some((b"/bin/sh".to_vec(), None))
        );
        assert_eq!(
            shebang(b"#! /bin/busybox  sh -e \nx"),
            Some((b"/bin/busybox".to_vec(), Some(b"sh -e".to_vec())))
        );
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"#!/x"), Some((b"/x".to_vec(), None)));
    }

    fn elf(class: u8, be: bool, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = if be { 2 } else { 1 };
        let m = if be {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn elf_headers_say_guest_native_or_foreign() {
        assert_eq!(kind_of(Arch::Mips, &elf(1, true, EM_MIPS)), Kind::Guest);
        assert_eq!(kind_of(Arch::Mips, &elf(1, false, EM_MIPS)), Kind::Foreign);
        assert_eq!(kind_of(Arch::Mips, &elf(2, false, EM_X86_64)), Kind::Native);
        assert_eq!(kind_of(Arch::Mips, &elf(1, false, EM_386)), Kind::Native);
        assert_eq!(
            kind_of(Arch::X86_64, &elf(2, false, EM_X86_64)),
            Kind::Guest
        );
        assert_eq!(
            kind_of(Arch::Aarch64, &elf(2, false, EM_AARCH64)),
            Kind::Guest
        );
        assert_eq!(kind_of(Arch::Mips, b"#!/bin/sh"), Kind::Script);
        assert_eq!(kind_of(Arch::Mips, b"hello"), Kind::Other);
    }

    #[test]
    fn what_the_hosts_loader_would_read_is_kept_from_it() {
        assert!(unsecure_for_the_host(b"LD_PRELOAD=/tmp/x.so"));
        assert!(unsecure_for_the_host(b"LD_ANYTHING=1"));
        assert!(unsecure_for_the_host(
            b"GLIBC_TUNABLES=glibc.malloc.check=3"
        ));
        assert!(!unsecure_for_the_host(b"PATH=/bin"));
        assert!(!unsecure_for_the_host(b"HOME=/root"));
    }

    #[test]
    fn the_restart_command_keeps_everything_up_to_the_plugin() {
        let cmd = b"/.gv/ld.so\0--library-path\0/.gv/lib\0/.gv/qemu-mips\0-plugin\0/.gv/p.so,ring=/r,exec=on\0-0\0sh\0/bin/sh\0-c\0x\0";
        let r = Restart::parse(Arch::Mips, b"/.gv/ld.so", cmd).unwrap();
        assert_eq!(r.prefix.len(), 6);
        assert_eq!(r.prefix[5].as_bytes(), b"/.gv/p.so,ring=/r,exec=on");

        assert_eq!(r.program, b"/bin/sh");
        let plain = b"qemu-mips\0-plugin\0p.so\0/tmp/prog\0";
        assert_eq!(
            Restart::parse(Arch::Mips, b"/usr/bin/qemu-mips", plain)
                .unwrap()
                .program,
            b"/tmp/prog"
        );
        assert!(Restart::parse(Arch::Mips, b"q", b"qemu-mips\0/tmp/prog\0").is_err());
    }
}
