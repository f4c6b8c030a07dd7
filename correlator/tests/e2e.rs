//! End-to-end tests: real qemu-mips, real eBPF in the kernel, real
//! cross-compiled guest programs. They need root; under CI=true a missing
//! prerequisite fails the test instead of skipping it.
//!
//! The join tests run on both QEMUs guestview serves, as two tests each
//! (`<test>::qemu72`, `<test>::qemu102`): Debian's QEMU 7.2 (plugin API v1)
//! and our patched QEMU 10.2 (API v5, `patches/build-qemu --check`).

mod common;

use common::{fd2_streams, is_root, name_of, repo, require, Run, GV};
use serde_json::Value;
use shmem_proto::Arch;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> bool {
    require(is_root(), "this test needs root (eBPF)")
        && require(
            Path::new("/usr/bin/qemu-mips").exists(),
            "qemu-mips (apt-get install qemu-user)",
        )
}

/// A QEMU the join tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Qemu {
    /// Debian bookworm's qemu-user 7.2: plugin API v1.
    Debian72,
    /// Our patched QEMU 10.2 (patches/build-qemu): plugin API v5.
    Ours102,
}

impl Qemu {
    fn tag(self) -> &'static str {
        match self {
            Qemu::Debian72 => "qemu72",
            Qemu::Ours102 => "qemu102",
        }
    }

    /// `qemu-<arch>` of this QEMU, or `None` (after `require`) if missing.
    fn binary(self, arch: &str) -> Option<PathBuf> {
        let p = match self {
            Qemu::Debian72 => PathBuf::from(format!("/usr/bin/qemu-{arch}")),
            Qemu::Ours102 => {
                let prefix = ours_prefix();
                if !require(
                    prefix.is_some(),
                    "our QEMU 10.2 (run patches/build-qemu; scripts/test does)",
                ) {
                    return None;
                }
                prefix?.join(format!("bin/qemu-{arch}"))
            }
        };
        require(p.exists(), &format!("{} ({:?})", p.display(), self)).then_some(p)
    }
}

/// The prefix of our QEMU 10.2 if it is built (never builds it).
fn ours_prefix() -> Option<PathBuf> {
    static PREFIX: OnceLock<Option<PathBuf>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let out = Command::new(repo().join("patches/build-qemu"))
                .arg("--check")
                .output()
                .ok()?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
        })
        .clone()
}

/// Root, eBPF and this QEMU's qemu-mips: its path, or `None` to skip.
fn root_on(q: Qemu) -> Option<PathBuf> {
    if !require(is_root(), "this test needs root (eBPF)") {
        return None;
    }
    q.binary("mips")
}

/// `fn NAME(q: Qemu)` becomes two tests, `NAME::qemu72` and `NAME::qemu102`.
macro_rules! on_both_qemus {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn qemu72() {
                    super::$name(super::Qemu::Debian72)
                }
                #[test]
                fn qemu102() {
                    super::$name(super::Qemu::Ours102)
                }
            }
        )*
    };
}

/// The guest programs for MIPS, cross-compiled once per test run.
fn guest(name: &str) -> PathBuf {
    common::guest_of(Arch::Mips, name)
}

/// The guest programs for `arch` (a guestview architecture name).
fn guest_for(arch: &str, name: &str) -> PathBuf {
    common::guest_of(Arch::from_name(arch).expect("a known architecture"), name)
}

fn tmp(name: &str) -> PathBuf {
    common::tmp_in("e2e", name)
}

/// `guestview run --format jsonl` on QEMU `q` (the `--qemu` binary) with
/// extra environment for QEMU.
fn gv_run(q: &Path, tag: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    gv_run_with(tag, prog, args, env, Some(q))
}

fn gv_run_with(
    tag: &str,
    prog: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    qemu: Option<&Path>,
) -> Run {
    common::gv_run_in("e2e", tag, prog, args, env, qemu)
}

/// QEMU `qemu` under `strace -f` recording its writes to fd 2 (see
/// [`common::strace_wrapper_in`]).
fn strace_wrapper(qemu: &Path) -> PathBuf {
    common::strace_wrapper_in("e2e", qemu)
}

/// QEMU's `-strace` lines (each thread's stream): per pid, the multiset of
/// syscall names.
fn parse_strace_streams(streams: &BTreeMap<u64, Vec<u8>>) -> BTreeMap<u64, BTreeMap<String, u64>> {
    common::parse_strace_streams_of(Arch::Mips, streams)
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

fn root_every_program_matches_qemu_strace_in_the_same_run(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    if !require(
        Path::new("/usr/bin/strace").exists(),
        "strace (apt-get install strace)",
    ) {
        return;
    }
    let wrapper = strace_wrapper(&qemu);
    let t = q.tag();
    for (name, args) in PROGRAMS {
        let prog = guest(name);
        let args: Vec<&str> = if *name == "fileio" {
            vec![env!("CARGO_TARGET_TMPDIR")]
        } else {
            args.to_vec()
        };
        let fd2 = tmp(&format!("strace-{name}-{t}.txt"));
        let r = gv_run_with(
            &format!("strace-{name}-{t}"),
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
            "{name} on {q:?}: guestview failed: {:?}",
            r.out
        );
        // Per process on both QEMUs (7.2 prints process ids, 10.2 thread
        // ids; the parser groups threads by QEMU's own clone lines).
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
            "{name} on {q:?}: guest syscalls differ from qemu -strace of the same run"
        );
        assert_eq!(r.lost_total(), 0, "{name} on {q:?}: lost events");
    }
}

/// Calls whose host result is the guest result (fds, pids, byte counts).
const SAME_RESULT: &[&str] = &[
    "read", "write", "close", "getpid", "getppid", "gettid", "openat", "kill", "wait4", "dup",
    "dup2", "unlink", "rename", "getuid", "getgid",
];

fn root_host_calls_belong_to_their_guest_call(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let arch = shmem_proto::Arch::Mips;
    let mut checked = 0;
    for (name, args) in PROGRAMS {
        // In the sandbox, /tmp is the guest's own (and gone after the run).
        let args: Vec<&str> = if *name == "fileio" {
            vec!["/tmp"]
        } else {
            args.to_vec()
        };
        let r = gv_run(
            &qemu,
            &format!("agree-{name}-{}", q.tag()),
            &guest(name),
            &args,
            &[],
        );
        assert!(r.out.status.success(), "{name}: {:?}", r.out);
        for s in r.syscalls() {
            common::check_call_window(name, s);
            let host = s["host"].as_array().unwrap();
            let verdict = s["verdict"].as_str().unwrap();
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

fn root_four_threads_each_get_their_own_host_calls(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let r = gv_run(
        &qemu,
        &format!("threads-{}", q.tag()),
        &guest("threads"),
        &[],
        &[],
    );
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

fn root_forked_children_are_joined_in_their_own_process(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let r = gv_run(
        &qemu,
        &format!("forkwait-{}", q.tag()),
        &guest("forkwait"),
        &[],
        &[],
    );
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

fn root_syscall_heavy_every_call_has_exactly_its_host_call(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let n = 20_000;
    let r = gv_run(
        &qemu,
        &format!("heavy-{}", q.tag()),
        &guest("syscall_heavy"),
        &[&n.to_string()],
        &[],
    );
    check_heavy(&r, n, false);
    // The same with every host call timed and joined by time.
    let jsonl = tmp(&format!("heavy-host-times-{}.jsonl", q.tag()));
    let out = Command::new(GV)
        .args(["run", "--host-times", "--format", "jsonl", "--qemu"])
        .arg(&qemu)
        .arg("--output")
        .arg(&jsonl)
        .arg("--")
        .arg(guest("syscall_heavy"))
        .arg(n.to_string())
        .output()
        .unwrap();
    let events = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    check_heavy(&Run { events, out }, n, true);
}

/// A reader that cannot keep up costs the guest time, never events: while
/// guestview is stopped (SIGSTOP, again and again), the plugin holds guest
/// calls back once half of the host ring is unread. The control run, with
/// `--host-times` (no ring positions, so no hold), overflows the same ring
/// under the same stops: the test sees loss when there is any.
fn root_a_stalled_reader_costs_time_never_events(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    // 24 processes of 10,000 guest calls, each with its host call. Each
    // process's own guest ring lets it run ~8,000 calls ahead of the
    // reader; all together that is ~21 MB of host records against the
    // 16 MiB host ring.
    let (n, procs) = (5_000u64, 24u64);
    for host_times in [false, true] {
        let jsonl = tmp(&format!("stalled-{host_times}-{}.jsonl", q.tag()));
        let mut cmd = Command::new(GV);
        cmd.args(["run", "--format", "jsonl", "--qemu"])
            .arg(&qemu)
            .arg("--output")
            .arg(&jsonl);
        if host_times {
            cmd.arg("--host-times");
        }
        let mut child = cmd
            .arg("--")
            .arg(guest("syscall_heavy"))
            .arg(n.to_string())
            .arg(procs.to_string())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id().to_string();
        let signal = |s: &str| {
            Command::new("kill").args([s, &pid]).status().unwrap();
        };
        // Mostly stopped: 150 ms running, 600 ms stopped (the control run
        // 1.5 s, time enough for every process to fill its guest ring even
        // on a busy machine), until it ends.
        let stopped = std::time::Duration::from_millis(if host_times { 1500 } else { 600 });
        while child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(150));
            signal("-STOP");
            std::thread::sleep(stopped);
            signal("-CONT");
        }
        let out = child.wait_with_output().unwrap();
        let events = std::fs::read_to_string(&jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let r = Run { events, out };
        assert!(r.out.status.success(), "{host_times}: {:?}", r.out);
        let summary = &r.of_type("summary")[0];
        let lost = &r.of_type("lost")[0];
        if host_times {
            assert!(
                lost["host_dropped"].as_u64().unwrap() > 0,
                "the control run lost nothing: the stops did not starve the reader ({lost})"
            );
        } else {
            assert_eq!(r.lost_total(), 0, "{lost}");
            assert!(
                summary["host_ring_waits"].as_u64().unwrap() > 0,
                "the plugin never waited: {summary}"
            );
            check_heavy(&r, n * procs, false);
        }
    }
}

/// Every getppid and 1-byte write of the syscall-heavy loop has exactly its
/// own host call. Without `--host-times` the plugin reads ring positions
/// and the host calls of the loop carry no time; with it, all do.
fn check_heavy(r: &Run, n: u64, timed: bool) {
    assert!(r.out.status.success(), "{:?}", r.out);
    let (mut getppid, mut write1, mut untimed) = (0, 0, 0);
    for s in r.syscalls() {
        for h in s["host"].as_array().unwrap() {
            untimed += u64::from(h["t_exit_ns"] == 0);
        }
    }
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
    if timed {
        assert_eq!(untimed, 0, "--host-times: every host call has its time");
    } else {
        // The first calls are timed until guestview learns that the plugin
        // reads positions (a pass, about a millisecond).
        assert!(untimed >= n, "only {untimed} untimed host calls");
    }
}

fn root_emulated_and_unsupported_calls_are_judged_so(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let t = q.tag();
    let r = gv_run(
        &qemu,
        &format!("unsupported-{t}"),
        &guest("unsupported"),
        &[],
        &[],
    );
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
    let r = gv_run(
        &qemu,
        &format!("emulated-{t}"),
        &guest("emulated"),
        &[],
        &[],
    );
    assert!(r.out.status.success(), "{:?}", r.out);
    for n in ["set_thread_area", "sigaltstack", "cacheflush"] {
        let v = verdict(&r, n);
        assert!(
            !v.is_empty() && v.iter().all(|v| v == "emulated"),
            "{n}: {v:?}"
        );
    }
    // /tmp: the sandbox's own (the test's directory is not inside it).
    let r = gv_run(
        &qemu,
        &format!("fileio-{t}"),
        &guest("fileio"),
        &["/tmp"],
        &[],
    );
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

fn root_trace_report_and_damaged_traces(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let trace = tmp(&format!("hello-{}.gvtrace", q.tag()));
    let jsonl = tmp(&format!("hello-trace-{}.jsonl", q.tag()));
    let out = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg("--qemu")
        .arg(&qemu)
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
    let cut = tmp(&format!("cut-{}.gvtrace", q.tag()));
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

on_both_qemus!(
    root_every_program_matches_qemu_strace_in_the_same_run,
    root_host_calls_belong_to_their_guest_call,
    root_four_threads_each_get_their_own_host_calls,
    root_forked_children_are_joined_in_their_own_process,
    root_syscall_heavy_every_call_has_exactly_its_host_call,
    root_a_stalled_reader_costs_time_never_events,
    root_emulated_and_unsupported_calls_are_judged_so,
    root_trace_report_and_damaged_traces,
    plugin_alone_writes_a_trace_that_report_reads,
);

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

fn plugin_rejects_bad_arguments_clearly(q: Qemu) {
    let Some(qemu) = q.binary("mips") else { return };
    let out = Command::new(&qemu)
        .arg("-plugin")
        .arg(format!("{},rung=/x", plugin().display()))
        .arg(guest("hello"))
        .output()
        .unwrap();
    // (and --no-sandbox's warning, which is always said)
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("guestview: warning: --no-sandbox"))
        .collect();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("guestview plugin: unknown argument 'rung'"),
        "{err}"
    );
    let out = Command::new(&qemu)
        .arg("-plugin")
        .arg(format!("{},ring=/nonexistent/ring", plugin().display()))
        .arg(guest("hello"))
        .output()
        .unwrap();
    one_line_error(&out, "cannot attach to the ring");
}

/// The plugin refuses, in one line and with exit code 2, what it cannot
/// serve: a guest architecture it does not know (QEMU's own sparc), a
/// system emulator. (A plugin API version outside v1, v4-v5 cannot be
/// provoked with the QEMUs here; `sys::tests` checks that decision.)
#[test]
fn plugin_refuses_qemus_it_cannot_serve_in_one_line() {
    if require(
        Path::new("/usr/bin/qemu-sparc").exists(),
        "qemu-sparc (apt-get install qemu-user)",
    ) {
        let out = Command::new("/usr/bin/qemu-sparc")
            .arg("-plugin")
            .arg(plugin())
            .arg("/nonexistent/program")
            .output()
            .unwrap();
        one_line_error(
            &out,
            "guestview plugin: guest architecture 'sparc' is not supported",
        );
    }
    if require(
        Path::new("/usr/bin/qemu-system-mips").exists(),
        "qemu-system-mips (apt-get install qemu-system-mips; scripts/setup does)",
    ) {
        // -S: no CPU would run even if the plugin were (wrongly) accepted;
        // timeout ends it then.
        let out = Command::new("timeout")
            .args(["30", "/usr/bin/qemu-system-mips", "-plugin"])
            .arg(plugin())
            .args([
                "-M",
                "malta",
                "-S",
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                "none",
                "-nodefaults",
            ])
            .output()
            .unwrap();
        one_line_error(&out, "guestview plugin: QEMU is a system emulator");
    }
}

/// `run` refuses, before anything starts, a system emulator and a QEMU for
/// another architecture (a QEMU without plugins: see
/// `bad_input_gets_one_clear_line_and_exit_2`); when the plugin refuses
/// the QEMU, its line is all the user sees.
#[test]
fn root_run_refuses_qemus_it_cannot_serve_in_one_line() {
    if !root() {
        return;
    }
    let prog = guest("hello");
    if require(
        Path::new("/usr/bin/qemu-system-mips").exists(),
        "qemu-system-mips (apt-get install qemu-system-mips; scripts/setup does)",
    ) {
        let out = Command::new(GV)
            .args(["run", "--qemu", "/usr/bin/qemu-system-mips"])
            .arg(&prog)
            .output()
            .unwrap();
        one_line_error(&out, "/usr/bin/qemu-system-mips is a system emulator");
    }
    let out = Command::new(GV)
        .args(["run", "--qemu", "/usr/bin/qemu-arm"])
        .arg(&prog)
        .output()
        .unwrap();
    one_line_error(
        &out,
        "/usr/bin/qemu-arm emulates arm, but the program is a mips program",
    );
    // QEMU's own QEMU_PLUGIN variable loads a second instance of the plugin,
    // with an argument it refuses.
    // Unsandboxed: the host path of the plugin in QEMU_PLUGIN is not in
    // the sandbox.
    let out = Command::new(GV)
        .args(["run", "--no-sandbox"])
        .arg(&prog)
        .env("QEMU_PLUGIN", format!("{},rung=1", plugin().display()))
        .output()
        .unwrap();
    // (and --no-sandbox's warning, which is always said)
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("guestview: warning: --no-sandbox"))
        .collect();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("guestview plugin: unknown argument 'rung'"),
        "{err}"
    );
}

/// Programs whose system calls do not depend on timing: the same static
/// binary makes the same calls from the same instructions on any QEMU.
/// (Not `errnos`: glibc's mkdtemp calls getrandom once or twice, as the
/// clock has it.)
const SINGLE_THREADED: &[(&str, &[&str])] = &[
    ("hello", &[]),
    ("fileio", &[]),
    ("memory", &[]),
    ("signals", &[]),
    ("unsupported", &[]),
    ("emulated", &[]),
    ("faults", &[]),
    ("syscall_heavy", &["200"]),
];

/// Guest syscalls QEMU 7.2 answers with ENOSYS before its plugin callbacks
/// (their numbers lie beyond 7.2's `mips_syscall_args[]`; see
/// tests/guest/unsupported.c), which 10.2 reports.
const BEYOND_72: &[&str] = &["landlock_create_ruleset"];

/// The loaded ranges of a static ELF program (its code and data).
fn loaded(prog: &Path) -> Vec<std::ops::Range<u64>> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(prog).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.segments()
        .map(|s| s.address()..s.address() + s.size())
        .collect()
}

/// Every syscall of a run's only thread, in order: its name and guest PC,
/// or `qemu page` when the PC is in code QEMU maps itself (the signal
/// return trampoline, placed differently by each QEMU version).
fn pcs(r: &Run, prog: &Path) -> Vec<(String, String)> {
    let segs = loaded(prog);
    r.syscalls()
        .iter()
        .map(|s| {
            let pc = s["pc"].as_str().unwrap_or("(no pc)");
            let at = u64::from_str_radix(pc.trim_start_matches("0x"), 16).ok();
            let shown = match at {
                Some(a) if !segs.iter().any(|r| r.contains(&a)) => "qemu page".to_owned(),
                _ => pc.to_owned(),
            };
            (name_of(s), shown)
        })
        .collect()
}

/// The same static binary gives the same guest PC for every syscall under
/// QEMU 7.2 (instruction instrumentation) and our QEMU 10.2 (the PC
/// register; instrumentation again where 10.2 lists no PC register, as on
/// MIPS), call by call, on all eight architectures.
#[test]
fn root_guest_pcs_agree_between_qemu_72_and_102() {
    if !root() {
        return;
    }
    for arch in [
        "mips", "mipsel", "arm", "aarch64", "ppc", "ppc64le", "riscv64", "x86_64",
    ] {
        let (Some(q72), Some(q102)) = (Qemu::Debian72.binary(arch), Qemu::Ours102.binary(arch))
        else {
            return;
        };
        let mut compared = 0;
        for (name, args) in SINGLE_THREADED {
            if *name == "faults" && !matches!(arch, "mips" | "x86_64") {
                // Made for MIPS and x86-64 only: elsewhere its portable
                // "illegal instruction" is a breakpoint (aarch64's
                // __builtin_trap is brk, SIGTRAP) and it dies of it.
                continue;
            }
            let prog = guest_for(arch, name);
            let args: Vec<&str> = if *name == "fileio" {
                // The sandbox's own /tmp.
                vec!["/tmp"]
            } else {
                args.to_vec()
            };
            let a = gv_run(&q72, &format!("pcs-{arch}-{name}-72"), &prog, &args, &[]);
            let b = gv_run(&q102, &format!("pcs-{arch}-{name}-102"), &prog, &args, &[]);
            assert!(a.out.status.success(), "{arch} {name} on 7.2: {:?}", a.out);
            assert!(b.out.status.success(), "{arch} {name} on 10.2: {:?}", b.out);
            let (pa, pb) = (pcs(&a, &prog), pcs(&b, &prog));
            assert!(
                pa.iter()
                    .all(|(_, pc)| pc.starts_with("0x") || pc == "qemu page"),
                "{arch} {name}: a call without PC on 7.2: {pa:?}"
            );
            // Aligned call by call (by name): a call both QEMUs report must
            // have the same PC, unless one of them made it from code of its
            // own: 10.2 gives most guests a vDSO, and glibc's clock calls
            // make their syscall there, where 7.2 makes it in the program;
            // such calls are compared by name only. A call only one QEMU
            // reports (the program's allocator trims its heap on one QEMU
            // and not on the other: aarch64's fileio) must still come from
            // a call site, name and PC, the other QEMU reported too. 10.2
            // alone may report the calls 7.2 answers before its plugin
            // callbacks run (numbers beyond its mips syscall table).
            let (na, nb): (Vec<&str>, Vec<&str>) = (
                pa.iter().map(|(n, _)| n.as_str()).collect(),
                pb.iter().map(|(n, _)| n.as_str()).collect(),
            );
            let sites = |p: &[(String, String)]| -> HashSet<(String, String)> {
                p.iter().cloned().collect()
            };
            let (sites_72, sites_102) = (sites(&pa), sites(&pb));
            let mut differ = Vec::new();
            let mut only_72 = Vec::new();
            let mut only_102 = Vec::new();
            for op in similar::capture_diff_slices(similar::Algorithm::Myers, &na, &nb) {
                let (_, old, new) = op.as_tag_tuple();
                if matches!(op, similar::DiffOp::Equal { .. }) {
                    for (x, y) in pa[old].iter().zip(&pb[new]) {
                        if x.1 != y.1 && x.1 != "qemu page" && y.1 != "qemu page" {
                            differ.push((x.clone(), y.1.clone()));
                        }
                    }
                } else {
                    only_72.extend(pa[old].iter().filter(|c| !sites_102.contains(*c)).cloned());
                    only_102.extend(
                        pb[new]
                            .iter()
                            .filter(|c| !sites_72.contains(*c))
                            .filter(|(n, _)| !BEYOND_72.contains(&n.as_str()))
                            .cloned(),
                    );
                }
            }
            // 7.2 maps no vDSO: outside the program it has only QEMU's
            // signal trampoline.
            let outside_72: Vec<_> = pa
                .iter()
                .filter(|(n, pc)| pc == "qemu page" && !n.ends_with("sigreturn"))
                .collect();
            assert!(
                differ.is_empty()
                    && only_72.is_empty()
                    && only_102.is_empty()
                    && outside_72.is_empty(),
                "{arch} {name}: guest PCs differ between QEMU 7.2 and 10.2: (7.2, 10.2) {differ:?}; call sites only on 7.2 {only_72:?}; only on 10.2 {only_102:?}; outside the program on 7.2 {outside_72:?}; lost {} and {}; output {:?} and {:?}",
                a.lost_total(),
                b.lost_total(),
                String::from_utf8_lossy(&a.out.stdout),
                String::from_utf8_lossy(&b.out.stdout),
            );
            compared += pa.iter().filter(|(_, pc)| pc.starts_with("0x")).count();
        }
        assert!(compared > 500, "{arch}: {compared} calls compared");
    }
}

/// The `fault` record's PC, from the program's own line `KIND pc=ADDR`.
fn printed(out: &Output, key: &str) -> Option<String> {
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
    })
}

fn root_guest_faults_become_fault_records(q: Qemu) {
    if !root() {
        return;
    }
    // The faults program's portable "illegal instruction" is a breakpoint
    // elsewhere, fatal already on QEMU 7.2.
    for arch in ["mips", "x86_64"] {
        let Some(qemu) = q.binary(arch) else { return };
        let t = q.tag();
        let prog = guest_for(arch, "faults");
        // Handled: each fault is a record with the faulting PC and the
        // handler, and the guest goes on.
        let r = gv_run(&qemu, &format!("faults-{arch}-{t}"), &prog, &[], &[]);
        assert!(r.out.status.success(), "{arch} on {q:?}: {:?}", r.out);
        let plugin = r.of_type("plugin");
        assert_eq!(plugin.len(), 1, "{arch} on {q:?}: one plugin record");
        let faults = r.of_type("fault");
        if q == Qemu::Debian72 {
            // API v1 has no discontinuity callbacks.
            assert_eq!(plugin[0]["discon"], false);
            assert!(faults.is_empty(), "{arch} on 7.2: {faults:?}");
            continue;
        }
        assert_eq!(plugin[0]["discon"], true, "{}", plugin[0]);
        let handler = format!(
            "{:#x}",
            u64::from_str_radix(
                printed(&r.out, "handler").unwrap().trim_start_matches("0x"),
                16
            )
            .unwrap()
        );
        let stdout = String::from_utf8_lossy(&r.out.stdout).into_owned();
        let want_pc = |kind: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{kind} pc=")))
                .map(|p| {
                    format!(
                        "{:#x}",
                        u64::from_str_radix(p.trim_start_matches("0x"), 16).unwrap()
                    )
                })
                .unwrap()
        };
        let kinds = [
            ("segv", 11, "SIGSEGV"),
            ("ill", 4, "SIGILL"),
            ("trap", 5, "SIGTRAP"),
        ];
        assert_eq!(faults.len(), kinds.len(), "{arch}: {faults:?}");
        // Where QEMU exposes no registers (10.2: MIPS) the signal of a
        // handled fault is unknown; elsewhere it is read from the handler's
        // first argument register.
        let signal_known = plugin[0]["handled_fault_signal"] == true;
        assert_eq!(signal_known, arch != "mips", "{}", plugin[0]);
        for (f, (kind, sig, sig_name)) in faults.iter().zip(kinds) {
            assert_eq!(f["pc"], want_pc(kind).as_str(), "{arch} {kind}: {f}");
            assert_eq!(f["handler"], handler.as_str(), "{arch} {kind}: {f}");
            assert_eq!(f["fatal"], false, "{f}");
            if signal_known {
                assert_eq!(
                    (f["signal"].as_i64(), f["signal_name"].as_str()),
                    (Some(sig), Some(sig_name)),
                    "{f}"
                );
            } else {
                assert!(f["signal"].is_null(), "{f}");
            }
        }
        let last_fault = faults.last().unwrap()["t_ns"].as_u64().unwrap();
        assert!(
            r.syscalls()
                .iter()
                .any(|s| name_of(s) == "write" && s["t_enter_ns"].as_u64().unwrap() > last_fault),
            "{arch}: the guest goes on after its faults"
        );
        // Fatal: the signal comes from the kernel's account of the death,
        // in the guest's numbering (MIPS SIGBUS is 10, the host's 7).
        let mut fatal = vec![("segv", 11, "SIGSEGV", 11), ("trap", 5, "SIGTRAP", 5)];
        if arch == "mips" {
            fatal.push(("bus", 10, "SIGBUS", 7));
        }
        for (kind, sig, sig_name, host_sig) in fatal {
            let r = gv_run(
                &qemu,
                &format!("fault-{kind}-{arch}-{t}"),
                &prog,
                &[kind],
                &[],
            );
            assert_eq!(
                r.out.status.code(),
                Some(128 + host_sig),
                "{arch} {kind}: {:?}",
                r.out
            );
            let stdout = String::from_utf8_lossy(&r.out.stdout).into_owned();
            let pc = stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{kind} pc=")))
                .map(|p| {
                    format!(
                        "{:#x}",
                        u64::from_str_radix(p.trim_start_matches("0x"), 16).unwrap()
                    )
                })
                .unwrap();
            let faults = r.of_type("fault");
            assert_eq!(faults.len(), 1, "{arch} {kind}: {faults:?}");
            let f = faults[0];
            assert_eq!(f["pc"], pc.as_str(), "{arch} {kind}: {f}");
            assert_eq!(f["fatal"], true, "{f}");
            assert!(f["handler"].is_null(), "{f}");
            assert_eq!(
                (f["signal"].as_i64(), f["signal_name"].as_str()),
                (Some(sig), Some(sig_name)),
                "{arch} {kind}: {f}"
            );
            assert_eq!(r.lost_total(), 0);
        }
    }
}

/// On QEMU 10.2 each path argument also comes as the guest named it, read
/// from guest memory; 7.2 (API v1) cannot read guest memory. The plugin
/// record and the summary say what the QEMU offers.
fn root_guest_paths_and_what_the_qemu_offers(q: Qemu) {
    let Some(qemu) = root_on(q) else { return };
    let r = gv_run(
        &qemu,
        &format!("paths-{}", q.tag()),
        &guest("fileio"),
        // The sandbox's own /tmp (the test's directory is not inside it).
        &["/tmp"],
        &[],
    );
    assert!(r.out.status.success(), "{:?}", r.out);
    let plugin = r.of_type("plugin");
    assert_eq!(plugin.len(), 1);
    let p = plugin[0];
    let summary = r.of_type("summary");
    let mut without_type = p.clone();
    without_type.as_object_mut().unwrap().remove("type");
    assert_eq!(
        summary[0]["qemu_plugin"], without_type,
        "the summary repeats it"
    );
    let calls = r.syscalls();
    let path_of = |name: &str| -> Vec<&Value> {
        calls
            .iter()
            .filter(|s| name_of(s) == name)
            .map(|s| &s["guest_path"])
            .collect()
    };
    match q {
        Qemu::Debian72 => {
            assert_eq!(
                (
                    p["api_version"].as_u64(),
                    p["register_read"].as_bool(),
                    p["memory_read"].as_bool(),
                    p["pc_from"].as_str(),
                    p["syscall_filter"].as_bool()
                ),
                (
                    Some(1),
                    Some(false),
                    Some(false),
                    Some("instrumentation"),
                    Some(false)
                ),
                "{p}"
            );
            assert!(calls.iter().all(|s| s["guest_path"].is_null()));
        }
        Qemu::Ours102 => {
            assert_eq!(
                (
                    p["api_version"].as_u64(),
                    p["register_read"].as_bool(),
                    p["memory_read"].as_bool(),
                    p["pc_from"].as_str(),
                    p["syscall_filter"].as_bool(),
                    p["discon"].as_bool()
                ),
                (
                    Some(5),
                    Some(true),
                    Some(true),
                    Some("instrumentation"),
                    Some(true),
                    Some(true)
                ),
                "MIPS on 10.2: no PC register, so instrumentation: {p}"
            );
            // readlink("/proc/self/exe"): QEMU answers it itself.
            assert_eq!(path_of("readlink"), [&Value::from("/proc/self/exe")]);
            // fileio names its file after its pid as the guest sees it
            // (the sandbox's own numbering).
            let created = |p: &str| p.starts_with("/tmp/gv-fileio-") && p.ends_with("-a");
            let opens: Vec<&&Value> = calls
                .iter()
                .filter(|s| name_of(s) == "openat" && s["guest_path"].as_str().is_some_and(created))
                .collect();
            assert_eq!(opens.len(), 1, "{opens:?}");
            assert_eq!(
                opens[0]["path"], opens[0]["guest_path"],
                "the host saw the same"
            );
            // Every call that takes a path has the guest's.
            for s in &calls {
                let name = name_of(s);
                if guestview::tables::path_arg(&name).is_some() {
                    assert!(s["guest_path"].is_string(), "{s}");
                } else {
                    assert!(s["guest_path"].is_null(), "{s}");
                }
            }
        }
    }
    assert_eq!(r.lost_total(), 0);
}

/// Regression: in the sandbox the plugin's own libraries must be there
/// too (our 10.2, unlike Debian's 7.2, does not link libgcc_s, and the
/// loader then found the MIPS guest root's: "wrong ELF class").
#[test]
fn root_sandboxed_run_on_qemu_102_loads_the_plugin_with_its_own_libraries() {
    let Some(qemu) = root_on(Qemu::Ours102) else {
        return;
    };
    let jsonl = tmp("sandbox-qemu102.jsonl");
    let out = Command::new(GV)
        .args(["run", "--sandbox", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg("--qemu")
        .arg(&qemu)
        .arg(guest("hello"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let r = Run { events, out };
    assert!(r.syscalls().len() > 15, "{:?}", r.out);
    assert_eq!(r.of_type("plugin")[0]["api_version"], 5);
    assert_eq!(r.lost_total(), 0);
}

on_both_qemus!(
    plugin_rejects_bad_arguments_clearly,
    root_guest_faults_become_fault_records,
    root_guest_paths_and_what_the_qemu_offers,
);

fn plugin_alone_writes_a_trace_that_report_reads(q: Qemu) {
    let Some(qemu) = q.binary("mips") else { return };
    if !require(Path::new("/usr/bin/strace").exists(), "strace") {
        return;
    }
    let trace = tmp(&format!("plugin-out-{}.gvtrace", q.tag()));
    let fd2 = tmp(&format!("plugin-out-strace-{}.txt", q.tag()));
    let out = Command::new(strace_wrapper(&qemu))
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
    assert!(text.contains("9 passed, 0 failed"), "{text}");
}
