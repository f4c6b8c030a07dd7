//! Helpers shared by the end-to-end test binaries (`e2e.rs`, `arches.rs`):
//! prerequisites, building the guest programs per architecture, running
//! `guestview run --format jsonl`, and reading QEMU's own `-strace` account
//! of the same run.
// Each test binary uses its own subset.
#![allow(dead_code)]

use serde_json::Value;
use shmem_proto::Arch;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The `guestview` binary under test.
pub const GV: &str = env!("CARGO_BIN_EXE_guestview");

/// Is this a CI run (`CI=true`)?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Check a prerequisite: fail in CI, skip (return false) elsewhere.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing in CI: {what}");
    }
    eprintln!("SKIPPED: {what}");
    false
}

/// Are we root?
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A scratch file `name` in the test binary's own directory `dir`.
pub fn tmp_in(dir: &str, name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Does `tests/guest/build.sh` find a compiler for `arch`?
pub fn have_compiler(arch: Arch) -> bool {
    let cc = match arch {
        Arch::Mips => "mips-linux-gnu-gcc",
        Arch::Mipsel => "mipsel-linux-gnu-gcc",
        Arch::Arm => "arm-linux-gnueabihf-gcc",
        Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        Arch::Ppc => "powerpc-linux-gnu-gcc",
        Arch::Ppc64le => "powerpc64le-linux-gnu-gcc",
        Arch::Riscv64 => "riscv64-linux-gnu-gcc",
        Arch::X86_64 => "gcc",
    };
    Path::new("/usr/bin").join(cc).exists()
}

/// The directory of the guest programs for `arch`, cross-compiled once per
/// test binary (`tests/guest/build.sh` rebuilds only what changed).
pub fn guest_dir(arch: Arch) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<Arch, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(arch)
        .or_insert_with(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest");
            let st = Command::new("bash")
                .arg(repo().join("tests/guest/build.sh"))
                .arg(arch.name())
                .arg(&out)
                .status()
                .expect("run tests/guest/build.sh");
            assert!(
                st.success(),
                "building the {} guest programs failed",
                arch.name()
            );
            out.join(arch.name())
        })
        .clone()
}

/// Guest program `name` built for `arch`.
pub fn guest_of(arch: Arch, name: &str) -> PathBuf {
    guest_dir(arch).join(name)
}

/// One `guestview run`: its JSONL events and its process output.
pub struct Run {
    /// Every JSONL line.
    pub events: Vec<Value>,
    /// guestview's exit status, stdout (the guest's) and stderr.
    pub out: Output,
}

impl Run {
    /// The `syscall` events.
    pub fn syscalls(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "syscall")
            .collect()
    }
    /// The events of one `type`.
    pub fn of_type(&self, t: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == t).collect()
    }
    /// The sum of the one `lost` record's counters.
    pub fn lost_total(&self) -> u64 {
        let l = self.of_type("lost");
        assert_eq!(l.len(), 1, "exactly one lost record");
        l[0].as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "type")
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    }
}

/// `guestview run --format jsonl --output DIR/TAG.jsonl [--qemu Q] PROG ARGS`
/// with extra environment, in `CARGO_TARGET_TMPDIR`.
pub fn gv_run_in(
    dir: &str,
    tag: &str,
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    qemu: Option<&Path>,
) -> Run {
    gv_run_opts_in(dir, tag, prog, args, env, qemu, &[])
}

/// [`gv_run_in`] with more options of `guestview run` (`--no-sandbox` …).
pub fn gv_run_opts_in(
    dir: &str,
    tag: &str,
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    qemu: Option<&Path>,
    opts: &[&str],
) -> Run {
    let jsonl = tmp_in(dir, &format!("{tag}.jsonl"));
    let mut cmd = Command::new(GV);
    cmd.args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .args(opts);
    if let Some(q) = qemu {
        // A QEMU wrapped in a host script (strace) can only run outside the
        // sandbox, which runs nothing of the host's but QEMU itself.
        if std::fs::read(q).is_ok_and(|b| b.starts_with(b"#!")) {
            cmd.arg("--no-sandbox");
        }
        cmd.arg("--qemu").arg(q);
    }
    let out = cmd
        .arg("--")
        .arg(prog)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run guestview");
    let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    Run { events, out }
}

/// A call's name, or `syscall_N` when the table has none.
pub fn name_of(e: &Value) -> String {
    e["name"]
        .as_str()
        .map_or_else(|| format!("syscall_{}", e["nr"]), str::to_owned)
}

/// A script that runs `qemu` under `strace -f`, recording only its writes
/// to fd 2 into `$GV_STRACE_OUT`.
///
/// `-strace` lines of concurrent threads and processes interleave on a
/// shared stderr, mid-line. To read QEMU's own account exactly, QEMU runs
/// under `strace -f` recording only its writes to fd 2: each thread's
/// stream is then exact, and each line starts with the printing process.
pub fn strace_wrapper_in(dir: &str, qemu: &Path) -> PathBuf {
    let tag: String = qemu
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let w = tmp_in(dir, &format!("under-strace{tag}"));
    std::fs::write(
        &w,
        format!(
            "#!/bin/sh\nexec strace -f -qq --seccomp-bpf -e trace=write -e signal=none -xx -s 1048576 -o \"$GV_STRACE_OUT\" {} \"$@\"\n",
            qemu.display()
        ),
    )
    .unwrap();
    let _ = Command::new("chmod").arg("755").arg(&w).status();
    w
}

/// Per thread, the bytes it wrote to fd 2, from `strace -xx` output.
pub fn fd2_streams(strace_out: &str) -> BTreeMap<u64, Vec<u8>> {
    let mut m: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for line in strace_out.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("write(2, \"") else {
            continue;
        };
        let Some(end) = rest.find('"') else { continue };
        let hex = &rest[..end];
        let buf = m.entry(tid.parse().unwrap()).or_default();
        for chunk in hex.split("\\x").filter(|c| !c.is_empty()) {
            buf.push(u8::from_str_radix(&chunk[..2], 16).unwrap());
        }
    }
    m
}

/// QEMU's `-strace` lines (each thread's stream): per pid, the multiset of
/// syscall names. `Unknown syscall N` is named from guestview's table of
/// `arch`.
///
/// QEMU 7.2 starts each line with the process id, 10.2 with the thread id.
/// QEMU's own lines say which threads belong together: a
/// `clone(...CLONE_THREAD...) = N` printed by thread `T` makes `N` a thread
/// of `T`'s process, so both versions are counted per process.
pub fn parse_strace_streams_of(
    arch: Arch,
    streams: &BTreeMap<u64, Vec<u8>>,
) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut by_id: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    // A thread's id -> the id of the thread that created it.
    let mut creator: HashMap<u64, u64> = HashMap::new();
    for bytes in streams.values() {
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines() {
            let Some((pid, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u64>() else {
                continue;
            };
            if let Some(r) = rest.strip_prefix("Unknown syscall ") {
                let nr: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
                let name = guestview::tables::guest_syscall_name(arch, nr.parse().unwrap())
                    .map_or_else(|| format!("syscall_{nr}"), str::to_owned);
                *by_id.entry(pid).or_default().entry(name).or_default() += 1;
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && rest[name.len()..].starts_with('(') {
                *by_id
                    .entry(pid)
                    .or_default()
                    .entry(name.clone())
                    .or_default() += 1;
                if name == "clone" && rest.contains("CLONE_THREAD") {
                    let child = rest
                        .rsplit_once(") = ")
                        .and_then(|(_, r)| r.trim().parse::<u64>().ok());
                    if let Some(child) = child.filter(|c| *c != pid) {
                        creator.insert(child, pid);
                    }
                }
            }
        }
    }
    let process_of = |mut id: u64| {
        // Bounded: a cycle in a damaged log must not hang the test.
        for _ in 0..creator.len() {
            match creator.get(&id) {
                Some(p) => id = *p,
                None => break,
            }
        }
        id
    };
    let mut m: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for (id, names) in by_id {
        let calls = m.entry(process_of(id)).or_default();
        for (n, k) in names {
            *calls.entry(n).or_default() += k;
        }
    }
    m
}

/// A joined guest call `s` is consistent: host calls exactly when QEMU made
/// some (passthrough/translated, not emulated/unsupported), and each of
/// them on the call's own thread, inside the call's window (an untimed
/// host call, 0, is placed by ring position instead).
pub fn check_call_window(tag: &str, s: &Value) {
    let tid = s["tid"].as_u64().unwrap();
    let (t0, t1) = (
        s["t_enter_ns"].as_u64().unwrap(),
        s["t_exit_ns"].as_u64().unwrap(),
    );
    let host = s["host"].as_array().unwrap();
    match s["verdict"].as_str().unwrap() {
        "emulated" | "unsupported" => assert!(host.is_empty(), "{tag}: {s}"),
        "passthrough" | "translated" => assert!(!host.is_empty(), "{tag}: {s}"),
        v => panic!("{tag}: unexpected verdict {v}: {s}"),
    }
    for h in host {
        assert_eq!(
            h["tid"].as_u64().unwrap(),
            tid,
            "{tag}: host call of another thread: {s}"
        );
        let (h0, h1) = (
            h["t_enter_ns"].as_u64().unwrap(),
            h["t_exit_ns"].as_u64().unwrap(),
        );
        assert!(
            h0 == 0 || h0 >= t0,
            "{tag}: host call before its guest call: {s}"
        );
        assert!(
            t1 == 0 || h1 <= t1,
            "{tag}: host call after its guest call: {s}"
        );
    }
}
