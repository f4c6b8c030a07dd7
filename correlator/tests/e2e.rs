//! End-to-end tests: real qemu-mips, real eBPF in the kernel, real
//! cross-compiled guest programs. They need root; under CI=true a missing
//! prerequisite fails the test instead of skipping it.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const GV: &str = env!("CARGO_BIN_EXE_guestview");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Check a prerequisite: fail in CI, skip (return false) elsewhere.
fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing in CI: {what}");
    }
    eprintln!("SKIPPED: {what}");
    false
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn root() -> bool {
    require(is_root(), "this test needs root (eBPF)")
        && require(
            Path::new("/usr/bin/qemu-mips").exists(),
            "qemu-mips (apt-get install qemu-user)",
        )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The guest programs, cross-compiled once per test run.
fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest");
        let st = Command::new("bash")
            .arg(repo().join("tests/guest/build.sh"))
            .arg("mips")
            .arg(&out)
            .status()
            .expect("run tests/guest/build.sh");
        assert!(st.success(), "building the guest programs failed");
        out.join("mips")
    });
    dir.join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

struct Run {
    events: Vec<Value>,
    out: Output,
}

impl Run {
    fn syscalls(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "syscall")
            .collect()
    }
    fn of_type(&self, t: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == t).collect()
    }
    fn lost_total(&self) -> u64 {
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

/// `guestview run --format jsonl` with extra environment for QEMU.
fn gv_run(tag: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    gv_run_with(tag, prog, args, env, None)
}

fn gv_run_with(
    tag: &str,
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    qemu: Option<&Path>,
) -> Run {
    let jsonl = tmp(&format!("{tag}.jsonl"));
    let mut cmd = Command::new(GV);
    cmd.args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl);
    if let Some(q) = qemu {
        // A QEMU wrapped in a host script (strace) can only run outside the
        // sandbox, which runs nothing of the host's but QEMU itself.
        cmd.arg("--no-sandbox").arg("--qemu").arg(q);
    }
    let out = cmd
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

fn name_of(e: &Value) -> String {
    e["name"]
        .as_str()
        .map_or_else(|| format!("syscall_{}", e["nr"]), str::to_owned)
}

/// `-strace` lines of concurrent threads and processes interleave on a
/// shared stderr, mid-line. To read QEMU's own account exactly, QEMU runs
/// under `strace -f` recording only its writes to fd 2: each thread's
/// stream is then exact, and each line starts with the printing process.
fn strace_wrapper() -> PathBuf {
    let w = tmp("qemu-mips-under-strace");
    std::fs::write(
        &w,
        "#!/bin/sh\nexec strace -f -qq --seccomp-bpf -e trace=write -e signal=none -xx -s 1048576 -o \"$GV_STRACE_OUT\" /usr/bin/qemu-mips \"$@\"\n",
    )
    .unwrap();
    let _ = Command::new("chmod").arg("755").arg(&w).status();
    w
}

/// Per thread, the bytes it wrote to fd 2, from `strace -xx` output.
fn fd2_streams(strace_out: &str) -> BTreeMap<u64, Vec<u8>> {
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
/// syscall names. `Unknown syscall N` is named from guestview's table.
fn parse_strace_streams(streams: &BTreeMap<u64, Vec<u8>>) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut m: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
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
                let name = guestview::tables::guest_syscall_name(
                    shmem_proto::Arch::Mips,
                    nr.parse().unwrap(),
                )
                .map_or_else(|| format!("syscall_{nr}"), str::to_owned);
                *m.entry(pid).or_default().entry(name).or_default() += 1;
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && rest[name.len()..].starts_with('(') {
                *m.entry(pid).or_default().entry(name).or_default() += 1;
            }
        }
    }
    m
}

/// QEMU prints a few names differently from the kernel's table.
fn qemu_name(n: &str) -> &str {
    match n {
        "_llseek" => "_llseek",
        other => other,
    }
}

const PROGRAMS: &[(&str, &[&str])] = &[
    ("hello", &[]),
    ("fileio", &[]),
    ("memory", &[]),
    ("threads", &[]),
    ("forkwait", &[]),
    ("signals", &[]),
    ("unsupported", &[]),
    ("emulated", &[]),
    ("errnos", &[]),
    ("syscall_heavy", &["2000"]),
];

#[test]
fn root_every_program_matches_qemu_strace_in_the_same_run() {
    if !root()
        || !require(
            Path::new("/usr/bin/strace").exists(),
            "strace (apt-get install strace)",
        )
    {
        return;
    }
    let wrapper = strace_wrapper();
    for (name, args) in PROGRAMS {
        let prog = guest(name);
        let args: Vec<&str> = if *name == "fileio" {
            vec![env!("CARGO_TARGET_TMPDIR")]
        } else {
            args.to_vec()
        };
        let fd2 = tmp(&format!("strace-{name}.txt"));
        let r = gv_run_with(
            &format!("strace-{name}"),
            &prog,
            &args,
            &[
                ("QEMU_STRACE", "1"),
                ("GV_STRACE_OUT", fd2.to_str().unwrap()),
            ],
            Some(&wrapper),
        );
        assert!(
            r.out.status.success(),
            "{name}: guestview failed: {:?}",
            r.out
        );
        let strace = parse_strace_streams(&fd2_streams(&std::fs::read_to_string(&fd2).unwrap()));
        let mut ours: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
        for s in r.syscalls() {
            assert!(
                s["verdict"].is_string(),
                "{name}: call without verdict: {s}"
            );
            *ours
                .entry(s["pid"].as_u64().unwrap())
                .or_default()
                .entry(qemu_name(&name_of(s)).to_owned())
                .or_default() += 1;
        }
        assert_eq!(
            ours, strace,
            "{name}: guest syscalls differ from qemu -strace of the same run"
        );
        assert_eq!(r.lost_total(), 0, "{name}: lost events");
    }
}

/// Calls whose host result is the guest result (fds, pids, byte counts).
const SAME_RESULT: &[&str] = &[
    "read", "write", "close", "getpid", "getppid", "gettid", "openat", "kill", "wait4", "dup",
    "dup2", "unlink", "rename", "getuid", "getgid",
];

#[test]
fn root_host_calls_belong_to_their_guest_call() {
    if !root() {
        return;
    }
    let arch = shmem_proto::Arch::Mips;
    let mut checked = 0;
    for (name, args) in PROGRAMS {
        // In the sandbox, /tmp is the guest's own (and gone after the run).
        let args: Vec<&str> = if *name == "fileio" {
            vec!["/tmp"]
        } else {
            args.to_vec()
        };
        let r = gv_run(&format!("agree-{name}"), &guest(name), &args, &[]);
        assert!(r.out.status.success(), "{name}: {:?}", r.out);
        for s in r.syscalls() {
            let tid = s["tid"].as_u64().unwrap();
            let (t0, t1) = (
                s["t_enter_ns"].as_u64().unwrap(),
                s["t_exit_ns"].as_u64().unwrap(),
            );
            let host = s["host"].as_array().unwrap();
            let verdict = s["verdict"].as_str().unwrap();
            match verdict {
                "emulated" | "unsupported" => assert!(host.is_empty(), "{name}: {s}"),
                "passthrough" | "translated" => assert!(!host.is_empty(), "{name}: {s}"),
                v => panic!("{name}: unexpected verdict {v}"),
            }
            for h in host {
                assert_eq!(
                    h["tid"].as_u64().unwrap(),
                    tid,
                    "{name}: host call of another thread: {s}"
                );
                let (h0, h1) = (
                    h["t_enter_ns"].as_u64().unwrap(),
                    h["t_exit_ns"].as_u64().unwrap(),
                );
                assert!(
                    h0 == 0 || h0 >= t0,
                    "{name}: host call before its guest call: {s}"
                );
                assert!(
                    t1 == 0 || h1 <= t1,
                    "{name}: host call after its guest call: {s}"
                );
            }
            let gname = name_of(s);
            if verdict == "passthrough" && SAME_RESULT.contains(&gname.as_str()) {
                let same: Vec<_> = host
                    .iter()
                    .filter(|h| h["name"] == gname.as_str())
                    .collect();
                let last = same.last().unwrap();
                let (g, h) = (s["ret"].as_i64().unwrap(), last["ret"].as_i64().unwrap());
                if g >= 0 {
                    assert_eq!(g, h, "{name}: guest and host results differ: {s}");
                } else {
                    let ge = guestview::tables::errno_name(arch, -g);
                    let he = guestview::tables::host_errno_name(-h);
                    assert_eq!(ge, he, "{name}: errno differs: {s}");
                }
                checked += 1;
            }
        }
        assert_eq!(r.lost_total(), 0, "{name}: lost events");
    }
    assert!(checked > 4_000, "results compared: {checked}");
}

#[test]
fn root_four_threads_each_get_their_own_host_calls() {
    if !root() {
        return;
    }
    let r = gv_run("threads", &guest("threads"), &[], &[]);
    assert!(r.out.status.success(), "{:?}", r.out);
    let mut per_tid: HashMap<u64, u64> = HashMap::new();
    let mut ns_tids = HashSet::new();
    let mut gettids = 0;
    for s in r.syscalls() {
        let tid = s["tid"].as_u64().unwrap();
        *per_tid.entry(tid).or_default() += 1;
        if name_of(s) == "gettid" {
            gettids += 1;
            // The guest's id is its PID namespace's (the sandbox's); the
            // host gettid QEMU made for it, on the same host thread, saw
            // the same namespace.
            let host: Vec<&Value> = s["host"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["name"] == "gettid")
                .collect();
            assert_eq!(host.len(), 1, "{s}");
            assert_eq!(
                host[0]["tid"].as_u64().unwrap(),
                tid,
                "host gettid of another thread attributed: {s}"
            );
            assert_eq!(
                host[0]["ret"], s["ret"],
                "guest gettid returned another thread's id: {s}"
            );
            ns_tids.insert(s["ret"].as_u64().unwrap());
        }
    }
    let busy = per_tid.values().filter(|n| **n >= 100).count();
    assert!(
        busy >= 4,
        "4 threads with >=100 calls each, got {per_tid:?}"
    );
    assert!(gettids >= 4 * 40, "gettid calls: {gettids}");
    assert_eq!(ns_tids.len(), 4, "four threads, four ids: {ns_tids:?}");
    assert_eq!(
        r.of_type("thread")
            .iter()
            .filter(|t| t["event"] == "start")
            .count(),
        5
    );
    assert_eq!(r.lost_total(), 0);
}

#[test]
fn root_forked_children_are_joined_in_their_own_process() {
    if !root() {
        return;
    }
    let r = gv_run("forkwait", &guest("forkwait"), &[], &[]);
    assert!(r.out.status.success(), "{:?}", r.out);
    let pids: HashSet<u64> = r
        .syscalls()
        .iter()
        .map(|s| s["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.len() >= 5, "parent + 4 children, got {pids:?}");
    let main_pid = r.syscalls()[0]["pid"].as_u64().unwrap();
    let children: HashSet<u64> = pids.iter().copied().filter(|p| *p != main_pid).collect();
    // Every wait4 in the parent returned one of the children seen. The
    // guest sees the ids of its PID namespace (the sandbox's); records
    // carry host ids, and each fork record says the child's id inside.
    let inside: HashMap<u64, u64> = r
        .of_type("process")
        .iter()
        .filter(|p| p["event"] == "fork")
        .map(|p| {
            let pid = p["pid"].as_u64().unwrap();
            (p["ns_pid"].as_u64().unwrap_or(pid), pid)
        })
        .collect();
    let waited: HashSet<u64> = r
        .syscalls()
        .iter()
        .filter(|s| name_of(s) == "wait4" && s["pid"].as_u64() == Some(main_pid))
        .filter_map(|s| s["ret"].as_i64())
        .filter(|r| *r > 0)
        .map(|r| inside[&(r as u64)])
        .collect();
    assert_eq!(waited, children, "wait4 results vs children with calls");
    for c in &children {
        let calls: Vec<_> = r
            .syscalls()
            .into_iter()
            .filter(|s| s["pid"].as_u64() == Some(*c))
            .collect();
        assert!(calls.iter().all(|s| s["host"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["tid"].as_u64() == s["tid"].as_u64())));
        assert!(
            calls.iter().any(|s| name_of(s) == "exit_group"
                || name_of(s) == "kill"
                || name_of(s) == "tgkill"),
            "child {c} ends: {calls:?}"
        );
    }
    let exits: Vec<_> = r
        .of_type("process")
        .into_iter()
        .filter(|p| p["event"] == "exit")
        .collect();
    assert!(exits.len() >= 5, "{exits:?}");
    assert!(
        exits.iter().any(|p| p["signal"].as_i64() == Some(15)),
        "the child killed by SIGTERM: {exits:?}"
    );
    assert_eq!(r.lost_total(), 0);
}

#[test]
fn root_syscall_heavy_every_call_has_exactly_its_host_call() {
    if !root() {
        return;
    }
    let n = 20_000;
    let r = gv_run("heavy", &guest("syscall_heavy"), &[&n.to_string()], &[]);
    assert!(r.out.status.success(), "{:?}", r.out);
    let (mut getppid, mut write1) = (0, 0);
    for s in r.syscalls() {
        let host = s["host"].as_array().unwrap();
        match name_of(s).as_str() {
            "getppid" => {
                getppid += 1;
                assert_eq!(host.len(), 1, "{s}");
                assert_eq!(host[0]["name"], "getppid");
                assert_eq!(host[0]["ret"], s["ret"]);
            }
            "write" if s["ret"] == 1 => {
                write1 += 1;
                assert_eq!(host.len(), 1, "{s}");
                assert_eq!(host[0]["name"], "write");
                assert_eq!(host[0]["ret"], 1);
            }
            _ => {}
        }
    }
    assert!(
        getppid >= n && write1 >= n,
        "getppid {getppid}, 1-byte writes {write1}, want {n} each"
    );
    assert_eq!(r.lost_total(), 0);
}

#[test]
fn root_emulated_and_unsupported_calls_are_judged_so() {
    if !root() {
        return;
    }
    let r = gv_run("unsupported", &guest("unsupported"), &[], &[]);
    assert!(r.out.status.success(), "{:?}", r.out);
    let verdict = |r: &Run, n: &str| -> Vec<String> {
        r.syscalls()
            .iter()
            .filter(|s| name_of(s) == n)
            .map(|s| s["verdict"].as_str().unwrap().to_owned())
            .collect()
    };
    for n in ["io_uring_setup", "add_key", "set_robust_list"] {
        let v = verdict(&r, n);
        assert!(
            !v.is_empty() && v.iter().all(|v| v == "unsupported"),
            "{n}: {v:?}"
        );
    }
    assert!(r
        .syscalls()
        .iter()
        .filter(|s| s["verdict"] == "unsupported")
        .all(|s| s["errno"] == "ENOSYS" && s["ret"] == -89));
    let r = gv_run("emulated", &guest("emulated"), &[], &[]);
    assert!(r.out.status.success(), "{:?}", r.out);
    for n in ["set_thread_area", "sigaltstack", "cacheflush"] {
        let v = verdict(&r, n);
        assert!(
            !v.is_empty() && v.iter().all(|v| v == "emulated"),
            "{n}: {v:?}"
        );
    }
    let r = gv_run("fileio", &guest("fileio"), &["/tmp"], &[]);
    let llseek: Vec<_> = r
        .syscalls()
        .into_iter()
        .filter(|s| name_of(s) == "_llseek")
        .collect();
    assert!(!llseek.is_empty());
    for s in llseek {
        assert_eq!(s["verdict"], "translated");
        assert!(
            s["host"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == "lseek"),
            "{s}"
        );
    }
}

#[test]
fn root_trace_report_and_damaged_traces() {
    if !root() {
        return;
    }
    let trace = tmp("hello.gvtrace");
    let jsonl = tmp("hello-trace.jsonl");
    let out = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg("--trace")
        .arg(&trace)
        .arg(guest("hello"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("hello from MIPS")
    );
    let n_calls = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"type\":\"syscall\""))
        .count();
    let rep = Command::new(GV).arg("report").arg(&trace).output().unwrap();
    assert!(rep.status.success(), "{rep:?}");
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(
        text.contains(&format!("{n_calls} guest syscalls")),
        "{text}"
    );
    for want in [
        "per verdict:",
        "openat",
        "guest -> host translation:",
        "internal host syscalls (qemu)",
        "lost: host dropped 0, guest dropped 0",
    ] {
        assert!(text.contains(want), "report lacks {want:?}:\n{text}");
    }
    let rep = Command::new(GV)
        .args(["report", "--format", "jsonl"])
        .arg(&trace)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(v["syscalls"].as_u64().unwrap() as usize, n_calls);

    // truncated: the whole frames are reported, then one error line, exit 2
    let bytes = std::fs::read(&trace).unwrap();
    let cut = tmp("cut.gvtrace");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let rep = Command::new(GV).arg("report").arg(&cut).output().unwrap();
    assert_eq!(rep.status.code(), Some(2));
    let err = String::from_utf8_lossy(&rep.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("truncated"), "{err}");
    // corrupt
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&cut, &bad).unwrap();
    let rep = Command::new(GV).arg("report").arg(&cut).output().unwrap();
    assert_eq!(rep.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&rep.stderr).contains("corrupt"));
}

fn one_line_error(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code for {want}: {out:?}");
    assert_eq!(err.lines().count(), 1, "one line for {want}: {err}");
    assert!(err.contains(want), "{want:?} not in {err:?}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_input_gets_one_clear_line_and_exit_2() {
    let not_elf = tmp("not-elf.sh");
    std::fs::write(&not_elf, "#!/bin/sh\necho hi\n").unwrap();
    let out = Command::new(GV).arg("run").arg(&not_elf).output().unwrap();
    one_line_error(&out, "is not an ELF executable");

    let out = Command::new(GV)
        .args(["run", "/nonexistent/prog"])
        .output()
        .unwrap();
    one_line_error(&out, "not found");

    let out = Command::new(GV)
        .args(["report", "/nonexistent/trace"])
        .output()
        .unwrap();
    one_line_error(&out, "No such file");
    let out = Command::new(GV)
        .arg("report")
        .arg(&not_elf)
        .output()
        .unwrap();
    one_line_error(&out, "is not a guestview trace");

    if !require(
        Path::new("/usr/bin/mips-linux-gnu-gcc").exists(),
        "mips cross compiler",
    ) {
        return;
    }
    let prog = guest("hello");
    let out = Command::new(GV)
        .args(["run", "--arch", "mipsel"])
        .arg(&prog)
        .output()
        .unwrap();
    one_line_error(&out, "--arch mipsel disagrees");
    let out = Command::new(GV)
        .args(["run", "--arch", "sparc"])
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown architecture 'sparc'"));
    let out = Command::new(GV)
        .args(["run", "--qemu", "/nonexistent/qemu-mips"])
        .arg(&prog)
        .output()
        .unwrap();
    one_line_error(&out, "not found");
    if require(
        Path::new("/usr/bin/qemu-mips-static").exists(),
        "qemu-user-static (a QEMU without plugins)",
    ) {
        let out = Command::new(GV)
            .args(["run", "--qemu", "/usr/bin/qemu-mips-static"])
            .arg(&prog)
            .output()
            .unwrap();
        one_line_error(&out, "without TCG plugin support");
    }
}

#[test]
fn root_not_root_is_told_to_use_root() {
    if !root() {
        return;
    }
    // Drop to nobody: eBPF must be refused, with one clear line.
    let prog = guest("hello");
    let dir = prog.parent().unwrap();
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(GV)
        .arg("run")
        .arg(&prog)
        .current_dir("/")
        .output()
        .unwrap();
    one_line_error(&out, "run guestview as root");
}

fn plugin() -> PathBuf {
    let p = Path::new(GV).parent().unwrap().join("libguestview.so");
    assert!(
        p.exists(),
        "{} missing: build the workspace first (cargo build --release --workspace)",
        p.display()
    );
    p
}

#[test]
fn plugin_rejects_bad_arguments_clearly() {
    if !require(Path::new("/usr/bin/qemu-mips").exists(), "qemu-mips") {
        return;
    }
    let out = Command::new("qemu-mips")
        .arg("-plugin")
        .arg(format!("{},rung=/x", plugin().display()))
        .arg(guest("hello"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("guestview plugin: unknown argument 'rung'"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = Command::new("qemu-mips")
        .arg("-plugin")
        .arg(format!("{},ring=/nonexistent/ring", plugin().display()))
        .arg(guest("hello"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot attach to the ring"));
}

#[test]
fn plugin_alone_writes_a_trace_that_report_reads() {
    if !require(Path::new("/usr/bin/qemu-mips").exists(), "qemu-mips")
        || !require(Path::new("/usr/bin/strace").exists(), "strace")
    {
        return;
    }
    let trace = tmp("plugin-out.gvtrace");
    let fd2 = tmp("plugin-out-strace.txt");
    let out = Command::new(strace_wrapper())
        .arg("-strace")
        .arg("-plugin")
        .arg(format!("{},out={}", plugin().display(), trace.display()))
        .arg(guest("forkwait"))
        .env("GV_STRACE_OUT", &fd2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let strace = parse_strace_streams(&fd2_streams(&std::fs::read_to_string(&fd2).unwrap()));
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for m in strace.values() {
        for (k, n) in m {
            *want.entry(k.clone()).or_default() += n;
        }
    }
    // The child that kills itself dies inside tgkill: in out= mode (no host
    // view, no ring) a call that never returns to a living process is not
    // written. Everything else is.
    *want.get_mut("tgkill").unwrap() -= 1;
    want.retain(|_, n| *n > 0);
    let rep = Command::new(GV)
        .args(["report", "--format", "jsonl"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(rep.status.success(), "{rep:?}");
    let v: Value = serde_json::from_slice(&rep.stdout).unwrap();
    let got: BTreeMap<String, u64> = v["per_syscall"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, want, "plugin trace vs -strace");
    let total: u64 = want.values().sum();
    assert_eq!(v["per_verdict"]["guest-only"].as_u64().unwrap(), total);
    assert!(v["per_syscall"]["wait4"]["count"].as_u64().unwrap() >= 4);
}

/// The patch series of `patches/` gives our QEMU 10.2 a syscall-filter
/// plugin API: `patches/tests/run` proves with a C plugin and a MIPS guest
/// that a filtered call is answered by the plugin and never reaches the host.
#[test]
fn root_patched_qemu_filter_api_answers_calls_the_host_never_sees() {
    if !require(is_root(), "this test needs root (it may build QEMU)") {
        return;
    }
    let check = Command::new(repo().join("patches/build-qemu"))
        .arg("--check")
        .output()
        .expect("run patches/build-qemu --check");
    if !require(
        check.status.success(),
        "our QEMU 10.2 (run patches/build-qemu; scripts/test does)",
    ) {
        return;
    }
    let out = Command::new(repo().join("patches/tests/run"))
        .output()
        .expect("run patches/tests/run");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "patches/tests/run failed:\n{text}");
    assert!(text.contains("4 passed, 0 failed"), "{text}");
}
