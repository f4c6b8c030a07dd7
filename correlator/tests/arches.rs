//! End-to-end tests on every guest architecture: the guest programs of
//! `tests/guest/` cross-compiled for mips, mipsel, arm, aarch64, ppc,
//! ppc64le, riscv64 and x86_64, and Debian's own `busybox-static` for four of
//! them, each run under real QEMU with real eBPF and joined; each run is
//! checked against QEMU's `-strace` account of the same run. They need root;
//! under CI=true a missing prerequisite fails the test instead of skipping
//! it.
//!
//! The QEMUs each architecture runs on are listed in [`QEMUS`]: adding a
//! second one is one line there.

mod common;

use common::{
    check_call_window, fd2_streams, gv_run_in, gv_run_opts_in, have_compiler, is_root, name_of,
    parse_strace_streams_of, require, strace_wrapper_in, Run,
};

/// These tests compare the join with QEMU's own `-strace` of an
/// unsandboxed run, in the host's scratch directories; the sandbox has its
/// own tests (`sandbox.rs`).
const UNSANDBOXED: &[&str] = &["--no-sandbox"];
use guestview::tables;
use object::{Object, ObjectSection, ObjectSymbol};
use serde_json::Value;
use shmem_proto::Arch;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The QEMUs every architecture is tested on, as path templates: `{arch}`
/// is guestview's architecture name (`qemu-{arch}`), `{ours}` the prefix
/// that `patches/build-qemu --print-prefix` prints: Debian bookworm's QEMU
/// 7.2 and our QEMU 10.2.
const QEMUS: &[&str] = &["/usr/bin/qemu-{arch}", "{ours}/bin/qemu-{arch}"];

const DIR: &str = "arches";

/// The QEMU binaries for `arch`, one per [`QEMUS`] entry.
fn qemus(arch: Arch) -> Vec<PathBuf> {
    QEMUS
        .iter()
        .map(|t| {
            let mut p = t.replace("{arch}", arch.name());
            if p.contains("{ours}") {
                let out = Command::new(common::repo().join("patches/build-qemu"))
                    .arg("--print-prefix")
                    .output()
                    .expect("run patches/build-qemu --print-prefix");
                assert!(out.status.success(), "patches/build-qemu: {out:?}");
                p = p.replace("{ours}", String::from_utf8_lossy(&out.stdout).trim());
            }
            PathBuf::from(p)
        })
        .collect()
}

/// Root, strace, the architecture's compiler and its QEMUs.
fn ready(arch: Arch) -> Option<Vec<PathBuf>> {
    let qemus = qemus(arch);
    let ok = require(is_root(), "this test needs root (eBPF)")
        && require(
            Path::new("/usr/bin/strace").exists(),
            "strace (apt-get install strace)",
        )
        && require(
            have_compiler(arch),
            &format!("a {} cross compiler (scripts/setup)", arch.name()),
        )
        && qemus.iter().all(|q| {
            require(
                q.exists(),
                &format!("{} (apt-get install qemu-user)", q.display()),
            )
        });
    ok.then_some(qemus)
}

/// A short label for a QEMU binary in file names and messages.
fn label(arch: Arch, qemu: &Path) -> String {
    let s: String = qemu
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}-{s}", arch.name())
}

/// The guest test programs with their arguments (`{dir}` is a scratch
/// directory of this run).
const PROGRAMS: &[(&str, &[&str])] = &[
    ("hello", &[]),
    ("fileio", &["{dir}"]),
    ("memory", &[]),
    ("threads", &[]),
    ("forkwait", &[]),
    ("signals", &[]),
    ("unsupported", &[]),
    ("emulated", &[]),
    ("errnos", &["{dir}"]),
    ("syscall_heavy", &["500"]),
];

fn scratch() -> String {
    let d = common::tmp_in(DIR, "scratch");
    std::fs::create_dir_all(&d).unwrap();
    d.to_string_lossy().into_owned()
}

/// The run's guest calls as QEMU's `-strace` names them, per pid: every
/// name QEMU prints that guestview's table of `arch` knows is turned into
/// its number and back, so both sides are compared by number.
fn by_number(
    arch: Arch,
    m: BTreeMap<u64, BTreeMap<String, u64>>,
) -> BTreeMap<u64, BTreeMap<String, u64>> {
    m.into_iter()
        .map(|(pid, calls)| {
            let mut out: BTreeMap<String, u64> = BTreeMap::new();
            for (name, n) in calls {
                let key = match tables::guest_syscall_nr(arch, &name) {
                    Some(nr) => format!("{nr} {name}"),
                    None => format!("? {name}"),
                };
                *out.entry(key).or_default() += n;
            }
            (pid, out)
        })
        .collect()
}

/// The run's guest calls, per pid, keyed like [`by_number`].
fn ours_by_number(r: &Run) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut m: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for s in r.syscalls() {
        let key = match s["name"].as_str() {
            Some(n) => format!("{} {n}", s["nr"]),
            None => format!("? syscall_{}", s["nr"]),
        };
        *m.entry(s["pid"].as_u64().unwrap())
            .or_default()
            .entry(key)
            .or_default() += 1;
    }
    m
}

/// Run `prog` under guestview with QEMU under `strace -f` and `-strace`:
/// the guest calls must be exactly those QEMU printed, same numbers, same
/// count, per process, every call with a verdict, nothing lost.
fn check_against_strace(arch: Arch, qemu: &Path, tag: &str, prog: &Path, args: &[&str]) -> Run {
    let wrapper = strace_wrapper_in(DIR, qemu);
    let fd2 = common::tmp_in(DIR, &format!("{tag}.strace"));
    let r = gv_run_in(
        DIR,
        &format!("{tag}-strace"),
        prog,
        args,
        &[
            ("QEMU_STRACE", "1"),
            ("GV_STRACE_OUT", fd2.to_str().unwrap()),
        ],
        Some(&wrapper),
    );
    assert!(
        r.out.status.success(),
        "{tag}: guestview failed: {:?}",
        r.out
    );
    let strace =
        parse_strace_streams_of(arch, &fd2_streams(&std::fs::read_to_string(&fd2).unwrap()));
    for s in r.syscalls() {
        assert!(s["verdict"].is_string(), "{tag}: call without verdict: {s}");
        assert_eq!(s["arch"], arch.name(), "{tag}: {s}");
    }
    assert_eq!(
        ours_by_number(&r),
        by_number(arch, strace),
        "{tag}: guest syscalls differ from qemu -strace of the same run"
    );
    assert_eq!(r.lost_total(), 0, "{tag}: lost events");
    r
}

/// Calls whose host result is the guest result (fds, pids, byte counts).
const SAME_RESULT: &[&str] = &[
    "read", "write", "close", "getpid", "getppid", "gettid", "openat", "kill", "wait4", "dup",
    "dup2", "dup3", "unlink", "unlinkat", "rename", "renameat", "getuid", "getgid",
];

/// The checks of one plain run (no `-strace`): verdicts that agree with the
/// host calls, host calls of the call's own thread inside its window, the
/// same result on both sides for calls that pass it through (errors
/// compared through each side's errno table), the PC of every call at the
/// architecture's syscall instruction, nothing lost. Returns how many
/// results were compared.
fn check_join(arch: Arch, tag: &str, r: &Run, elf: &Elf, vdso: &Vdso) -> usize {
    let mut compared = 0;
    let mut vdso_base = None;
    for s in r.syscalls() {
        check_call_window(tag, s);
        let host = s["host"].as_array().unwrap();
        let verdict = s["verdict"].as_str().unwrap();
        if !arch.is_64bit() {
            for a in s["args"].as_array().unwrap() {
                let v =
                    u64::from_str_radix(a.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
                assert!(
                    v <= 0xffff_ffff,
                    "{tag}: 32-bit guest, 64-bit argument: {s}"
                );
            }
            if let Some(ret) = s["ret"].as_i64() {
                assert!(
                    (-4095..=0xffff_ffff).contains(&ret),
                    "{tag}: 32-bit guest, result out of range: {s}"
                );
            }
        }
        let gname = name_of(s);
        if verdict == "passthrough" && SAME_RESULT.contains(&gname.as_str()) {
            let same: Vec<_> = host
                .iter()
                .filter(|h| h["name"] == gname.as_str())
                .collect();
            let last = same.last().unwrap();
            if let (Some(g), Some(h)) = (s["ret"].as_i64(), last["ret"].as_i64()) {
                if g >= 0 {
                    assert_eq!(g, h, "{tag}: guest and host results differ: {s}");
                } else {
                    assert_eq!(
                        tables::errno_name(arch, -g),
                        tables::host_errno_name(-h),
                        "{tag}: errno differs: {s}"
                    );
                }
                compared += 1;
            }
        }
        elf.check_pc(arch, tag, s, vdso, &mut vdso_base);
    }
    assert_eq!(r.lost_total(), 0, "{tag}: lost events");
    compared
}

/// Is `at(pc, len)` the architecture's syscall instruction?
fn is_syscall_insn(arch: Arch, at: impl Fn(u64, u64) -> Option<Vec<u8>>, pc: u64) -> bool {
    let w4 = at(pc, 4);
    let word = |big: bool| {
        w4.as_ref().map(|b| {
            let b: [u8; 4] = b[..4].try_into().unwrap();
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        })
    };
    match arch {
        // syscall (the code field is free)
        Arch::Mips => word(true).is_some_and(|w| w & 0xfc00_003f == 0x0000_000c),
        Arch::Mipsel => word(false).is_some_and(|w| w & 0xfc00_003f == 0x0000_000c),
        // Thumb svc 0 (0xdf00), or ARM-state svc 0 (0xef000000)
        Arch::Arm => {
            at(pc, 2).as_deref() == Some(&[0x00, 0xdf][..]) || word(false) == Some(0xef00_0000)
        }
        Arch::Aarch64 => word(false) == Some(0xd400_0001), // svc #0
        Arch::Ppc => word(true) == Some(0x4400_0002),      // sc
        Arch::Ppc64le => word(false) == Some(0x4400_0002), // sc
        Arch::Riscv64 => word(false) == Some(0x0000_0073), // ecall
        Arch::X86_64 => at(pc, 2).as_deref() == Some(&[0x0f, 0x05][..]), // syscall
    }
}

/// The guest vDSO images a QEMU binary carries (QEMU 8.1 and later map one
/// into every guest of most architectures; 7.2 has none): each an ELF of
/// the guest's machine embedded in QEMU's own data, found by its header.
struct Vdso {
    images: Vec<Vec<u8>>,
}

impl Vdso {
    fn of(arch: Arch, qemu: &Path) -> Vdso {
        let data = std::fs::read(qemu).unwrap();
        let machine = match arch {
            Arch::Mips | Arch::Mipsel => object::Architecture::Mips,
            Arch::Arm => object::Architecture::Arm,
            Arch::Aarch64 => object::Architecture::Aarch64,
            Arch::Ppc => object::Architecture::PowerPc,
            Arch::Ppc64le => object::Architecture::PowerPc64,
            Arch::Riscv64 => object::Architecture::Riscv64,
            Arch::X86_64 => object::Architecture::X86_64,
        };
        let little = !matches!(arch, Arch::Mips | Arch::Ppc);
        let mut images = Vec::new();
        let mut from = 1;
        while let Some(i) = data[from..].windows(4).position(|w| w == b"\x7fELF") {
            let at = from + i;
            from = at + 1;
            let Ok(f) = object::File::parse(&data[at..]) else {
                continue;
            };
            if f.architecture() != machine
                || f.is_little_endian() != little
                || f.kind() != object::ObjectKind::Dynamic
            {
                continue;
            }
            use object::ObjectSegment;
            let len = f
                .segments()
                .map(|s| s.file_range().0 + s.file_range().1)
                .max()
                .unwrap_or(0);
            if len > 0 && len < 0x10000 {
                images.push(data[at..at + len as usize].to_vec());
            }
        }
        Vdso { images }
    }

    /// The load addresses at which `pc` is a syscall instruction of one of
    /// the images (the vDSO is mapped at a page boundary, 4 KiB or more).
    fn bases(&self, arch: Arch, pc: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for img in &self.images {
            let at = |a: u64, n: u64| img.get(a as usize..(a + n) as usize).map(<[u8]>::to_vec);
            for off in (pc & 0xfff..img.len() as u64).step_by(0x1000) {
                if off <= pc && is_syscall_insn(arch, at, off) {
                    out.push(pc - off);
                }
            }
        }
        out
    }
}

/// A guest ELF's code, to check that recorded PCs are syscall instructions.
struct Elf {
    data: Vec<u8>,
    /// Function symbols by name: (address with ARM's Thumb bit cleared).
    funcs: HashMap<String, u64>,
}

impl Elf {
    fn read(path: &Path) -> Elf {
        let data = std::fs::read(path).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let thumb = file.architecture() == object::Architecture::Arm;
        let funcs = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text)
            .filter_map(|s| {
                let a = if thumb { s.address() & !1 } else { s.address() };
                Some((s.name().ok()?.to_owned(), a))
            })
            .collect();
        Elf { data, funcs }
    }

    fn bytes_at(&self, addr: u64, len: u64) -> Option<Vec<u8>> {
        let file = object::File::parse(&*self.data).ok()?;
        file.sections().find_map(|sec| {
            let (start, size) = (sec.address(), sec.size());
            (addr >= start && addr + len <= start + size)
                .then(|| sec.data().ok())
                .flatten()
                .map(|d| d[(addr - start) as usize..(addr - start + len) as usize].to_vec())
        })
    }

    /// The call's PC is the architecture's syscall instruction in the
    /// program's code, and its `pc_sym` names the function it is in at the
    /// right offset. Outside the program a PC may be only in QEMU's signal
    /// trampoline (a return from a handler) or in the guest vDSO of the
    /// QEMU that ran it (10.2 gives most guests one: glibc's clock calls
    /// go there, and its fallback syscall has its PC there): then it is a
    /// syscall instruction of that QEMU's vDSO image, every such call of
    /// the run at the same load address, and has no `pc_sym`.
    fn check_pc(&self, arch: Arch, tag: &str, s: &Value, vdso: &Vdso, base: &mut Option<u64>) {
        let pc = u64::from_str_radix(
            s["pc"]
                .as_str()
                .unwrap_or_else(|| panic!("{tag}: call without PC: {s}"))
                .trim_start_matches("0x"),
            16,
        )
        .unwrap();
        if self.bytes_at(pc, 4).is_none() && self.bytes_at(pc, 2).is_none() {
            assert!(
                s["pc_sym"].is_null(),
                "{tag}: a symbol outside the program: {s}"
            );
            if matches!(name_of(s).as_str(), "sigreturn" | "rt_sigreturn") {
                // QEMU's signal trampoline page (or the vDSO's), where the
                // guest returns from a handler without SA_RESTORER.
                return;
            }
            let bases = vdso.bases(arch, pc);
            assert!(
                !bases.is_empty(),
                "{tag}: PC {pc:#x} outside the program and not a syscall of QEMU's vDSO: {s}"
            );
            match base {
                Some(b) => assert!(
                    bases.contains(b),
                    "{tag}: PC {pc:#x} in a vDSO elsewhere than {b:#x}: {s}"
                ),
                None if bases.len() == 1 => *base = Some(bases[0]),
                None => {}
            }
            return;
        }
        let ok = is_syscall_insn(arch, |a, n| self.bytes_at(a, n), pc);
        assert!(ok, "{tag}: PC {pc:#x} is not a syscall instruction: {s}");
        if let Some(sym) = s["pc_sym"].as_str() {
            let (name, off) = match sym.split_once('+') {
                Some((n, o)) => (
                    n,
                    u64::from_str_radix(o.trim_start_matches("0x"), 16).unwrap(),
                ),
                None => (sym, 0),
            };
            let start = self.funcs.get(name).copied();
            assert_eq!(
                start.map(|a| a + off),
                Some(pc),
                "{tag}: {sym} is not {pc:#x}"
            );
        }
    }
}

fn verdicts_of<'a>(r: &'a Run, name: &str) -> Vec<&'a Value> {
    r.syscalls()
        .into_iter()
        .filter(|s| name_of(s) == name)
        .collect()
}

/// Every call named `name` in `r` (at least one) has verdict `want`.
fn all_judged(tag: &str, r: &Run, name: &str, want: &str) {
    let calls = verdicts_of(r, name);
    assert!(!calls.is_empty(), "{tag}: no {name} call");
    for s in calls {
        assert_eq!(s["verdict"], want, "{tag}: {name}: {s}");
    }
}

/// The calls each architecture's `unsupported` and `emulated` programs make
/// that QEMU 7.2 answers itself (see the comments in those programs).
fn own_calls(arch: Arch) -> (&'static [&'static str], &'static [&'static str]) {
    match arch {
        Arch::Mips | Arch::Mipsel => (&[], &["set_thread_area", "cacheflush"]),
        Arch::Arm => (&["pciconfig_iobase"], &[]),
        Arch::Aarch64 => (&["lookup_dcookie"], &["prctl"]),
        Arch::Ppc => (&["sys_debug_setcontext"], &["swapcontext"]),
        Arch::Ppc64le => (&["subpage_prot"], &["swapcontext"]),
        Arch::Riscv64 => (&["lookup_dcookie"], &[]),
        Arch::X86_64 => (&["iopl"], &["arch_prctl"]),
    }
}

/// Everything for one architecture on every QEMU of [`QEMUS`].
fn every_program_joins_exactly(arch: Arch) {
    let Some(qemus) = ready(arch) else { return };
    let dir = scratch();
    for qemu in &qemus {
        let l = label(arch, qemu);
        let vdso = Vdso::of(arch, qemu);
        let mut compared = 0;
        let mut runs: HashMap<&str, Run> = HashMap::new();
        for (name, args) in PROGRAMS {
            let prog = common::guest_of(arch, name);
            let args: Vec<&str> = args
                .iter()
                .map(|a| if *a == "{dir}" { dir.as_str() } else { a })
                .collect();
            let tag = format!("{l}-{name}");
            check_against_strace(arch, qemu, &tag, &prog, &args);
            let r = gv_run_opts_in(DIR, &tag, &prog, &args, &[], Some(qemu), UNSANDBOXED);
            assert!(r.out.status.success(), "{tag}: {:?}", r.out);
            compared += check_join(arch, &tag, &r, &Elf::read(&prog), &vdso);
            runs.insert(name, r);
        }
        assert!(compared > 1000, "{l}: results compared: {compared}");

        // Threads: four busy threads, each with its own host calls.
        let r = &runs["threads"];
        let mut per_tid: HashMap<u64, u64> = HashMap::new();
        for s in r.syscalls() {
            let tid = s["tid"].as_u64().unwrap();
            *per_tid.entry(tid).or_default() += 1;
            if name_of(s) == "gettid" {
                assert_eq!(s["ret"].as_u64(), Some(tid), "{l}: {s}");
            }
        }
        let busy = per_tid.values().filter(|n| **n >= 100).count();
        assert!(
            busy >= 4,
            "{l}: 4 threads with >= 100 calls each: {per_tid:?}"
        );

        // Forked children: their own processes, waited for, one killed.
        let r = &runs["forkwait"];
        let pids: HashSet<u64> = r
            .syscalls()
            .iter()
            .map(|s| s["pid"].as_u64().unwrap())
            .collect();
        assert!(pids.len() >= 5, "{l}: parent + 4 children: {pids:?}");
        let main_pid = r.syscalls()[0]["pid"].as_u64().unwrap();
        let waited: HashSet<u64> = r
            .syscalls()
            .iter()
            .filter(|s| name_of(s) == "wait4" && s["pid"].as_u64() == Some(main_pid))
            .filter_map(|s| s["ret"].as_i64())
            .filter(|v| *v > 0)
            .map(|v| v as u64)
            .collect();
        let children: HashSet<u64> = pids.iter().copied().filter(|p| *p != main_pid).collect();
        assert_eq!(
            waited, children,
            "{l}: wait4 results vs children with calls"
        );
        assert!(
            r.of_type("process")
                .iter()
                .any(|p| p["event"] == "exit" && p["signal"].as_i64() == Some(15)),
            "{l}: the child killed by SIGTERM"
        );

        // QEMU's own answers, through this architecture's errno table.
        let (unsupported, emulated) = own_calls(arch);
        let r = &runs["unsupported"];
        let enosys = tables::errno_number(arch, "ENOSYS").unwrap();
        for n in ["add_key", "io_uring_setup"].iter().chain(unsupported) {
            all_judged(&l, r, n, "unsupported");
        }
        for s in r.syscalls() {
            if s["verdict"] == "unsupported" {
                assert_eq!(s["ret"].as_i64(), Some(-enosys), "{l}: {s}");
                assert_eq!(s["errno"], "ENOSYS", "{l}: {s}");
            }
        }
        let r = &runs["emulated"];
        for n in ["sigaltstack"].iter().chain(emulated) {
            all_judged(&l, r, n, "emulated");
        }

        // Translations: 32-bit guests' 64-bit-offset and page-offset calls.
        let r = &runs["fileio"];
        if let Some(nr) = tables::guest_syscall_nr(arch, "_llseek") {
            let calls = verdicts_of(r, "_llseek");
            assert!(!calls.is_empty(), "{l}: _llseek ({nr}) expected");
            for s in calls {
                assert_eq!(s["verdict"], "translated", "{l}: {s}");
                assert!(
                    s["host"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|h| h["name"] == "lseek"),
                    "{l}: {s}"
                );
            }
        } else {
            all_judged(&l, r, "lseek", "passthrough");
        }
        let r = &runs["memory"];
        let mmap = if tables::guest_syscall_nr(arch, "mmap2").is_some() {
            "mmap2"
        } else {
            "mmap"
        };
        for s in verdicts_of(r, mmap) {
            if s["ret"].as_i64().is_some_and(|v| v >= 0) {
                assert!(
                    s["host"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|h| h["name"] == "mmap"),
                    "{l}: {s}"
                );
                let want = if mmap == "mmap" {
                    "passthrough"
                } else {
                    "translated"
                };
                assert_eq!(s["verdict"], want, "{l}: {s}");
            }
        }
    }
}

macro_rules! per_arch {
    ($($m:ident => $arch:expr),* $(,)?) => {$(
        mod $m {
            use super::*;

            /// Every guest program: joined exactly (checked against
            /// `-strace`), verdicts, threads, forks, QEMU's own answers.
            #[test]
            fn root_every_program_joins_exactly() {
                every_program_joins_exactly($arch);
            }
        }
    )*};
}

per_arch!(
    mips => Arch::Mips,
    mipsel => Arch::Mipsel,
    arm => Arch::Arm,
    aarch64 => Arch::Aarch64,
    ppc => Arch::Ppc,
    ppc64le => Arch::Ppc64le,
    riscv64 => Arch::Riscv64,
    x86_64 => Arch::X86_64,
);

/// The shell script the real-program tests run. The shell forks for two
/// pipelines and a command substitution, and runs `ls`, `sort`, `head`,
/// `stat`, `rm` and `uname` as busybox applets: Debian's busybox-static
/// runs these (its NOEXEC applets) in a forked child without exec, so every
/// process stays a guest under QEMU. Applets that need an exec (`cat`,
/// `wc`) are not used: under plain QEMU the exec of a guest ELF fails
/// (ENOEXEC) and the shell would go on to the host's `/usr/bin/cat`, host
/// code outside the emulator; `PATH` is emptied so that nothing of the host
/// can run.
const BUSYBOX_SCRIPT: &str = "PATH=/nonexistent; echo start; ls -la {dir} | sort -r; \
     x=$(echo substitution | head -c 3); echo \"sub $x\"; \
     for i in 1 2 3; do echo $i > {dir}/bb-$i; done; head -q {dir}/bb-1 {dir}/bb-2 {dir}/bb-3; \
     stat -c 'size %s' {dir}/bb-1; uname -m | sort; \
     rm -f {dir}/bb-1 {dir}/bb-2 {dir}/bb-3; exec true";

/// Debian's busybox-static for `deb_arch`, from `scripts/fetch-busybox`.
fn busybox(deb_arch: &str) -> PathBuf {
    PathBuf::from(
        std::env::var("GUESTVIEW_BUSYBOX_CACHE")
            .unwrap_or_else(|_| "/var/cache/guestview/busybox".into()),
    )
    .join(deb_arch)
    .join("busybox")
}

/// A program someone else built: Debian's busybox-static runs a shell
/// script, joined exactly (checked against `-strace` of the same run), and
/// its plain run joined with host calls that agree.
fn busybox_joins_exactly(arch: Arch, deb_arch: &str) {
    let Some(qemus) = ready(arch) else { return };
    let bb = busybox(deb_arch);
    if !require(
        bb.exists(),
        &format!("{} (scripts/fetch-busybox)", bb.display()),
    ) {
        return;
    }
    let dir = common::tmp_in(DIR, &format!("bb-{deb_arch}"));
    std::fs::create_dir_all(&dir).unwrap();
    let script = BUSYBOX_SCRIPT.replace("{dir}", &dir.to_string_lossy());
    let args = ["sh", "-c", script.as_str()];
    let elf = Elf::read(&bb);
    for qemu in &qemus {
        let tag = format!("{}-busybox", label(arch, qemu));
        let r = check_against_strace(arch, qemu, &tag, &bb, &args);
        let out = String::from_utf8_lossy(&r.out.stdout);
        assert!(
            out.contains("start") && out.contains("sub sub"),
            "{tag}: {out}"
        );
        let r = gv_run_opts_in(DIR, &tag, &bb, &args, &[], Some(qemu), UNSANDBOXED);
        assert!(r.out.status.success(), "{tag}: {:?}", r.out);
        let out = String::from_utf8_lossy(&r.out.stdout);
        assert!(out.contains("1\n2\n3\nsize 2\n"), "{tag}: {out}");
        check_join(arch, &tag, &r, &elf, &Vdso::of(arch, qemu));
        let pids: HashSet<u64> = r
            .syscalls()
            .iter()
            .map(|s| s["pid"].as_u64().unwrap())
            .collect();
        assert!(
            pids.len() >= 3,
            "{tag}: the shell and its children: {pids:?}"
        );
        // No process ran anything but the guest: every exec failed.
        for s in r.syscalls() {
            if name_of(s) == "execve" {
                assert!(
                    s["ret"].as_i64().is_some_and(|v| v < 0),
                    "{tag}: an exec: {s}"
                );
            }
        }
        for want in ["wait4", "write", "getdents64", "uname"] {
            assert!(
                r.syscalls().iter().any(|s| name_of(s) == want),
                "{tag}: no {want}"
            );
        }
    }
}

macro_rules! busybox_arch {
    ($($m:ident => $arch:expr, $deb:expr);* $(;)?) => {$(
        mod $m {
            use super::*;

            /// Debian's busybox-static running a shell script.
            #[test]
            fn root_debian_busybox_joins_exactly() {
                busybox_joins_exactly($arch, $deb);
            }
        }
    )*};
}

busybox_arch!(
    busybox_armhf => Arch::Arm, "armhf";
    busybox_arm64 => Arch::Aarch64, "arm64";
    busybox_mipsel => Arch::Mipsel, "mipsel";
    busybox_ppc64el => Arch::Ppc64le, "ppc64el";
);

/// An ELF header: `class` 1/2, `data` 1 (little) / 2 (big), `machine`.
fn elf_header(class: u8, data: u8, machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = class;
    h[5] = data;
    h[6] = 1;
    let m = if data == 2 {
        machine.to_be_bytes()
    } else {
        machine.to_le_bytes()
    };
    h[18..20].copy_from_slice(&m);
    h
}

/// `guestview run` on an ELF it cannot serve: one line saying which and
/// why, exit code 2. The 64-bit MIPS and 32-bit x86 files are real objects
/// from Debian's compilers where they are installed; s390x, big-endian
/// ppc64 and 32-bit RISC-V are headers.
#[test]
fn unservable_elfs_get_one_line_saying_which_and_why_and_exit_2() {
    let src = common::tmp_in(DIR, "f.c");
    std::fs::write(&src, "int f(void) { return 1; }\n").unwrap();
    let mut cases: Vec<(PathBuf, &str, &str)> = Vec::new();
    for (cc, flags, name, which, why) in [
        (
            "mips-linux-gnu-gcc",
            "-mabi=64",
            "mips64.o",
            "64-bit MIPS (n64)",
            "only the o32 ABI",
        ),
        (
            "gcc",
            "-m32",
            "i386.o",
            "32-bit x86",
            "no syscall and errno tables",
        ),
    ] {
        if !require(Path::new("/usr/bin").join(cc).exists(), cc) {
            continue;
        }
        let obj = common::tmp_in(DIR, name);
        let st = Command::new(cc)
            .args([flags, "-c", "-o"])
            .arg(&obj)
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success(), "{cc} {flags}");
        cases.push((obj, which, why));
    }
    for (class, data, machine, name, which, why) in [
        (
            2,
            2,
            22,
            "s390x",
            "IBM S/390 (s390x)",
            "no syscall and errno tables",
        ),
        (
            2,
            2,
            21,
            "ppc64",
            "big-endian 64-bit PowerPC",
            "only little-endian",
        ),
        (1, 1, 243, "riscv32", "32-bit RISC-V", "only the 64-bit ABI"),
    ] {
        let f = common::tmp_in(DIR, &format!("{name}.elf"));
        std::fs::write(&f, elf_header(class, data, machine)).unwrap();
        cases.push((f, which, why));
    }
    for (f, which, why) in cases {
        let out = Command::new(common::GV)
            .arg("run")
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {out:?}", f.display());
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(which) && err.contains(why),
            "{which}/{why}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
