//! The tools around the join: `diff`, `run --native`, the `mismatch`
//! verdict, PC symbols, `watch` and `rootfs build` (the sandbox has its own
//! file, `sandbox.rs`),
//! end to end: real QEMU,
//! real eBPF, real guest and host programs. They need root; under CI=true a
//! missing prerequisite fails the test instead of skipping it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const GV: &str = env!("CARGO_BIN_EXE_guestview");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

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

fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() == 0 };
    require(is_root, "this test needs root (eBPF)")
        && require(Path::new("/usr/bin/qemu-mips").exists(), "qemu-mips")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The mips build of a guest test program.
fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest");
            let st = Command::new("bash")
                .arg(repo().join("tests/guest/build.sh"))
                .arg("mips")
                .arg(&out)
                .status()
                .expect("run tests/guest/build.sh");
            assert!(st.success(), "building the guest programs failed");
            out.join("mips")
        })
        .join(name)
}

/// The build of a guest test program for another architecture.
fn guest_of(arch: &str, name: &str) -> PathBuf {
    if arch == "mips" {
        return guest(name);
    }
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest");
    let mut built = BUILT.lock().unwrap();
    if !built.iter().any(|a| a == arch) {
        let st = Command::new("bash")
            .arg(repo().join("tests/guest/build.sh"))
            .arg(arch)
            .arg(&out)
            .status()
            .expect("run tests/guest/build.sh");
        assert!(st.success(), "building the {arch} guest programs failed");
        built.push(arch.to_owned());
    }
    out.join(arch).join(name)
}

/// Our patched QEMU 10.2 for `arch` (`patches/build-qemu --print-prefix`).
fn our_qemu(arch: &str) -> Option<PathBuf> {
    let out = Command::new(repo().join("patches/build-qemu"))
        .arg("--print-prefix")
        .output()
        .expect("run patches/build-qemu --print-prefix");
    let prefix = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let q = Path::new(&prefix).join(format!("bin/qemu-{arch}"));
    let ok = out.status.success() && !prefix.is_empty() && q.is_file();
    require(ok, "our QEMU 10.2 (patches/build-qemu)").then_some(q)
}

/// The same source built for the host, static like the guest builds.
fn native(name: &str) -> PathBuf {
    let out = tmp(&format!("native-{name}"));
    let st = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(repo().join(format!("tests/guest/{name}.c")))
        .status()
        .expect("run gcc");
    assert!(st.success(), "building {name} for the host failed");
    out
}

/// `guestview run -q --trace T [extra] PROG ARGS`; returns the trace path.
fn traced(tag: &str, extra: &[&str], prog: &Path, args: &[&str]) -> PathBuf {
    let trace = tmp(&format!("{tag}.gvtrace"));
    let out = Command::new(GV)
        .args(["run", "-q", "--trace"])
        .arg(&trace)
        .args(extra)
        .arg(prog)
        .args(args)
        .output()
        .expect("run guestview");
    assert!(
        out.status.success(),
        "guestview run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    trace
}

fn gv_diff(a: &Path, b: &Path) -> (Output, Vec<Value>) {
    let out = Command::new(GV)
        .args(["diff", "--format", "jsonl"])
        .arg(a)
        .arg(b)
        .output()
        .expect("run guestview diff");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    (out, lines)
}

fn summary(lines: &[Value]) -> &Value {
    let s = lines.last().expect("a summary line");
    assert_eq!(s["type"], "diff_summary");
    s
}

#[test]
fn root_diff_finds_exactly_the_calls_one_more_iteration_makes() {
    if !root() {
        return;
    }
    let prog = guest("syscall_heavy");
    let a = traced("iter10", &[], &prog, &["10"]);
    let b = traced("iter12", &[], &prog, &["12"]);
    let (out, lines) = gv_diff(&a, &b);
    assert_eq!(out.status.code(), Some(1), "differences exit with 1");
    let s = summary(&lines);
    assert_eq!(s["added"], 4, "{s}");
    assert_eq!(s["removed"], 0, "{s}");
    assert_eq!(s["changed"], 0, "{s}");
    assert_eq!(s["threads_paired"], 1, "{s}");
    let added: Vec<&str> = lines
        .iter()
        .filter(|l| l["op"] == "added")
        .map(|l| l["b"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["getppid", "write", "getppid", "write"]);
    for l in lines.iter().filter(|l| l["op"] == "added") {
        assert_eq!(l["thread"], "1.1");
        assert_eq!(l["b"]["verdict"], "passthrough");
        assert_eq!(l["b"]["host"][0], l["b"]["name"], "{l}");
    }
    // The other way round they are removed; a trace against itself is equal.
    let (_, back) = gv_diff(&b, &a);
    assert_eq!(summary(&back)["removed"], 4);
    let (same, lines) = gv_diff(&a, &a);
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(lines.len(), 1, "only the summary");
    // The text form says the same.
    let text = Command::new(GV)
        .arg("diff")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("summary: ") && text.contains(" 0 changed, 4 added, 0 removed"),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("+ B#")).count(), 4);
}

#[test]
fn root_a_changed_outcome_is_shown_with_both_translations() {
    if !root() {
        return;
    }
    // fileio works in the directory it is given: once in one that exists,
    // once in one that does not, where its first open fails with ENOENT.
    let prog = guest("fileio");
    let a = traced("fileio-ok", &[], &prog, &["/tmp"]);
    let b = tmp("fileio-missing.gvtrace");
    let out = Command::new(GV)
        .args(["run", "-q", "--trace"])
        .arg(&b)
        .arg(&prog)
        .arg("/nonexistent-guestview-dir")
        .output()
        .expect("run guestview");
    assert_ne!(out.status.code(), Some(0), "fileio must fail there");
    let (out, lines) = gv_diff(&a, &b);
    assert_eq!(out.status.code(), Some(1));
    let changed: Vec<&Value> = lines.iter().filter(|l| l["op"] == "changed").collect();
    let open = changed
        .iter()
        .find(|l| {
            l["changes"] == serde_json::json!(["errno"])
                && l["a"]["errno"].is_null()
                && l["b"]["errno"] == "ENOENT"
        })
        .unwrap_or_else(|| panic!("the open that succeeded in A fails in B: {lines:#?}"));
    assert_eq!(open["a"]["name"], open["b"]["name"]);
    // Both sides keep their translation: the host call failed in B too.
    assert_eq!(open["a"]["host"], open["b"]["host"]);
    assert!(
        summary(&lines)["removed"].as_u64().unwrap() > 0,
        "B stopped early"
    );
}

#[test]
fn root_native_runs_are_in_the_same_format_and_align_with_the_guest() {
    if !root() || !require(Path::new("/usr/bin/gcc").exists(), "gcc for host programs") {
        return;
    }
    let host_prog = native("syscall_heavy");
    let jsonl = tmp("native.jsonl");
    let out = Command::new(GV)
        .args(["run", "--native", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg(&host_prog)
        .arg("50")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls: Vec<&Value> = events.iter().filter(|e| e["type"] == "syscall").collect();
    let count = |n: &str| calls.iter().filter(|c| c["name"] == n).count();
    // One more getppid before the loop (the reference value).
    assert_eq!(count("getppid"), 51);
    assert_eq!(count("write"), 50);
    assert_eq!(calls[0]["name"], "execve", "the program starts at its exec");
    for c in &calls {
        assert_eq!(c["verdict"], "native");
        assert_eq!(c["arch"], "x86_64");
        let host = c["host"].as_array().unwrap();
        if c["name"] != "exit_group" {
            assert_eq!(host.len(), 1, "{c}");
            assert_eq!(host[0]["name"], c["name"]);
            assert_eq!(host[0]["ret"], c["ret"]);
        }
    }
    let lost = events.iter().find(|e| e["type"] == "lost").unwrap();
    assert_eq!(lost["host_dropped"], 0);

    // Against the mips build of the same source, the loop lines up call
    // for call: same names, same host translation.
    let n = traced("native-t", &["--native"], &host_prog, &["50"]);
    let g = traced("guest-t", &[], &guest("syscall_heavy"), &["50"]);
    let (_, lines) = gv_diff(&n, &g);
    let s = summary(&lines);
    assert!(s["same"].as_u64().unwrap() >= 101, "{s}");
    // What QEMU (7.2, mips) adds, drops and answers itself: the guest's TLS
    // call; the exec, x86's TLS call and the static start-up's RELRO
    // mprotect, which the guest never makes; rseq and set_robust_list that
    // the host kernel serves and QEMU refuses.
    let names = |op: &str, side: &str| {
        let mut v: Vec<&str> = lines
            .iter()
            .filter(|l| l["op"] == op)
            .map(|l| l[side]["name"].as_str().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(names("added", "b"), ["set_thread_area"]);
    assert_eq!(names("removed", "a"), ["arch_prctl", "execve", "mprotect"]);
    for refused in ["rseq", "set_robust_list"] {
        let l = lines
            .iter()
            .find(|l| l["op"] == "changed" && l["a"]["name"] == refused)
            .unwrap_or_else(|| panic!("{refused} not changed: {lines:#?}"));
        assert_eq!(l["changes"], serde_json::json!(["errno", "host"]), "{l}");
        assert_eq!(l["b"]["verdict"], "unsupported", "{l}");
        assert_eq!(l["b"]["errno"], "ENOSYS", "{l}");
    }
    for l in &lines[..lines.len() - 1] {
        for side in ["a", "b"] {
            let name = l[side]["name"].as_str().unwrap_or("");
            assert!(
                name != "getppid" && name != "write",
                "a loop call did not align: {l}"
            );
        }
    }
}

/// One changed call of a diff, reduced to what the tests below compare:
/// (name in A, name in B, what differs, verdict and host calls in A, in B).
type Change = (String, String, String, String, String, String, String);

fn changes_of(lines: &[Value]) -> Vec<Change> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let host = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect::<Vec<_>>()
            .join("+")
    };
    lines
        .iter()
        .filter(|l| l["op"] == "changed")
        .map(|l| {
            (
                s(&l["a"]["name"]),
                s(&l["b"]["name"]),
                l["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(","),
                s(&l["a"]["verdict"]),
                host(&l["a"]["host"]),
                s(&l["b"]["verdict"]),
                host(&l["b"]["host"]),
            )
        })
        .collect()
}

fn change(c: [&str; 7]) -> Change {
    let [a, b, what, va, ha, vb, hb] = c.map(str::to_owned);
    (a, b, what, va, ha, vb, hb)
}

#[test]
fn root_diff_of_one_program_under_qemu_7_2_and_10_2_shows_what_each_qemu_does() {
    if !root() {
        return;
    }
    let Some(q10) = our_qemu("mips") else { return };
    let prog = guest("fileio");
    let a = traced(
        "q72-fileio",
        &["--qemu", "/usr/bin/qemu-mips"],
        &prog,
        &["/tmp"],
    );
    let q10 = q10.to_string_lossy().into_owned();
    let b = traced("q102-fileio", &["--qemu", &q10], &prog, &["/tmp"]);
    let (out, lines) = gv_diff(&a, &b);
    assert_eq!(out.status.code(), Some(1));
    // The program's own calls align one for one: nothing added or removed.
    let s = summary(&lines);
    assert_eq!(s["added"], 0, "{s}");
    assert_eq!(s["removed"], 0, "{s}");
    assert_eq!(s["threads_paired"], 1, "{s}");
    assert!(s["same"].as_u64().unwrap() >= 30, "{s}");
    let opens = |a_host: &'static str, b_host: &'static str| {
        change([
            "openat",
            "openat",
            "host",
            "passthrough",
            a_host,
            "passthrough",
            b_host,
        ])
    };
    assert_eq!(
        changes_of(&lines),
        [
            // readlink("/proc/self/exe"): 7.2 asks the host (realpath of
            // the executable), 10.2 answers from the path it kept at start.
            change([
                "readlink",
                "readlink",
                "host,verdict",
                "passthrough",
                "readlink",
                "emulated",
                "",
            ]),
            // 10.2's openat runs realpath() first (its /proc check): a host
            // readlink before every open. The access is QEMU's -L prefix
            // lookup (util/path.c), in both.
            opens("access+openat", "readlink+access+openat"),
            opens("access+openat", "readlink+access+openat"),
            // glibc's free trimming the heap: 7.2 only lowers its brk,
            // 10.2 maps the freed page PROT_NONE again.
            change([
                "brk",
                "brk",
                "host,verdict",
                "emulated",
                "",
                "translated",
                "mmap",
            ]),
            opens("openat", "readlink+openat"),
            opens("access+openat", "readlink+access+openat"),
        ]
    );
    // set_thread_area, brk(0), the brk growths, _llseek, statx: the same
    // on both, so not in the diff.
}

#[test]
fn root_diff_of_one_source_built_for_mips_and_aarch64_aligns_its_libc_calls() {
    if !root()
        || !require(
            Path::new("/usr/bin/aarch64-linux-gnu-gcc").exists(),
            "aarch64 cross compiler (scripts/setup)",
        )
        || !require(Path::new("/usr/bin/qemu-aarch64").exists(), "qemu-aarch64")
    {
        return;
    }
    let a = traced("mips-fileio", &[], &guest("fileio"), &["/tmp"]);
    let b = traced(
        "aarch64-fileio",
        &[],
        &guest_of("aarch64", "fileio"),
        &["/tmp"],
    );
    let (out, lines) = gv_diff(&a, &b);
    assert_eq!(out.status.code(), Some(1));
    let names = |op: &str, side: &str| {
        let mut v: Vec<String> = lines
            .iter()
            .filter(|l| l["op"] == op)
            .map(|l| l[side]["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    // Only mips o32 sets its TLS pointer with a syscall, and only its
    // headers have the legacy getdents the program calls on its own
    // directory; aarch64's static start-up protects its RELRO.
    assert_eq!(
        names("removed", "a"),
        ["close", "getdents", "openat", "set_thread_area"]
    );
    assert_eq!(names("added", "b"), ["mprotect"]);
    let verdict = |a: &str, va: &str, b: &str, vb: &str, host: &str| {
        change([a, b, "verdict", va, host, vb, host])
    };
    // Aligned although named differently: statx/newfstatat,
    // rename/renameat, unlink/unlinkat are the same (not listed); these
    // differ in what QEMU did.
    assert_eq!(
        changes_of(&lines),
        [
            verdict(
                "getrlimit",
                "translated",
                "prlimit64",
                "passthrough",
                "prlimit64"
            ),
            verdict(
                "readlink",
                "passthrough",
                "readlinkat",
                "translated",
                "readlink"
            ),
            verdict("_llseek", "translated", "lseek", "passthrough", "lseek"),
            verdict("_llseek", "translated", "lseek", "passthrough", "lseek"),
            verdict("_llseek", "translated", "lseek", "passthrough", "lseek"),
            change([
                "creat",
                "openat",
                "host",
                "passthrough",
                "creat",
                "passthrough",
                "access+openat",
            ]),
        ]
    );
    let s = summary(&lines);
    assert!(s["same"].as_u64().unwrap() >= 24, "{s}");
    let aligned_by_name =
        lines.iter().filter(|l| l["op"] == "changed").count() as u64 + s["same"].as_u64().unwrap();
    let calls_a = s["threads"][0]["calls_a"].as_u64().unwrap();
    assert_eq!(
        aligned_by_name,
        calls_a - 4,
        "every mips call but the 4 removed"
    );
}

#[test]
fn bad_input_to_diff_and_native_gets_one_line_and_exit_2() {
    let bad = tmp("not-a-trace");
    std::fs::write(&bad, b"hello").unwrap();
    let out = Command::new(GV)
        .arg("diff")
        .arg(&bad)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a guestview trace"), "{err}");

    if !require(
        Path::new("/usr/bin/mips-linux-gnu-gcc").exists(),
        "mips cross compiler",
    ) {
        return;
    }
    let out = Command::new(GV)
        .args(["run", "--native"])
        .arg(guest("hello"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--native runs host programs"), "{err}");
}

#[test]
fn root_many_errnos_in_the_guest_numbering_are_no_mismatch() {
    if !root() {
        return;
    }
    let jsonl = tmp("errnos.jsonl");
    let out = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg(guest("errnos"))
        .arg("/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "syscall")
        .collect();
    // Errors the host made and the guest saw, each in its own numbering.
    let mut judged = std::collections::BTreeSet::new();
    for c in &calls {
        let Some(last) = c["host"].as_array().and_then(|h| h.last()) else {
            continue;
        };
        if c["errno"].is_string() && last["ret"].as_i64().is_some_and(|r| r < 0) {
            judged.insert(c["errno"].as_str().unwrap().to_owned());
        }
        assert_ne!(c["verdict"], "mismatch", "false mismatch: {c}");
    }
    assert!(
        judged.len() >= 20,
        "only {} different errnos came from the host: {judged:?}",
        judged.len()
    );
    // Some of them are numbered differently on MIPS than on x86-64.
    for differs in ["ENOTEMPTY", "ENAMETOOLONG", "ELOOP", "ENOSYS"] {
        if judged.contains(differs) {
            return;
        }
    }
    panic!("no errno numbered differently on MIPS was judged: {judged:?}");
}

/// The test-only QEMU of `patches/test-only/` (our qemu-mips 10.2 with one
/// planted translation bug: host `ENOTEMPTY` reaches the guest as `EEXIST`):
/// its `qemu-mips` if it is built (never builds it; `scripts/test` does).
fn mistranslating_qemu() -> Option<PathBuf> {
    let out = Command::new(repo().join("patches/test-only/build-qemu"))
        .arg("--check")
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !p.is_empty()).then(|| Path::new(&p).join("bin/qemu-mips"))
}

/// A real translation bug is caught: under a QEMU that translates host
/// `ENOTEMPTY` (39) into the guest's `EEXIST` (17 on MIPS) instead of its
/// `ENOTEMPTY` (93), exactly the one call of `errnos` whose host call fails
/// with `ENOTEMPTY` (its `rmdir` of a directory that is not empty) is
/// judged `mismatch`, and said why; every other error of the run still
/// reaches the guest correctly and is no mismatch.
#[test]
fn root_a_planted_errno_mistranslation_is_caught_as_mismatch() {
    if !root() {
        return;
    }
    let qemu = mistranslating_qemu();
    if !require(
        qemu.is_some(),
        "the test-only QEMU (patches/test-only/build-qemu; scripts/test builds it)",
    ) {
        return;
    }
    let qemu = qemu.unwrap();
    let jsonl = tmp("errnos-planted.jsonl");
    let out = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg("--qemu")
        .arg(&qemu)
        .arg(guest("errnos"))
        .arg("/tmp")
        .output()
        .unwrap();
    // The guest itself sees the wrong errno, once.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("errnos: rmdir(")
            && lines[0].contains("want ENOTEMPTY"),
        "{printed}"
    );
    let calls: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "syscall")
        .collect();
    let mismatches: Vec<&Value> = calls
        .iter()
        .filter(|c| c["verdict"] == "mismatch")
        .collect();
    assert_eq!(mismatches.len(), 1, "exactly the rmdir: {mismatches:?}");
    let m = mismatches[0];
    assert_eq!(m["name"], "rmdir", "{m}");
    assert_eq!(m["errno"], "EEXIST", "{m}");
    assert_eq!(m["ret"], -17, "{m}");
    let last = m["host"].as_array().and_then(|h| h.last()).unwrap();
    assert_eq!(last["name"], "rmdir", "{m}");
    assert_eq!(last["ret"], -39, "host ENOTEMPTY: {m}");
    // The other host errors were judged and found translated correctly.
    let judged: std::collections::BTreeSet<&str> = calls
        .iter()
        .filter(|c| c["verdict"] != "mismatch")
        .filter(|c| {
            c["host"]
                .as_array()
                .and_then(|h| h.last())
                .is_some_and(|h| h["ret"].as_i64().is_some_and(|r| r < 0))
        })
        .filter_map(|c| c["errno"].as_str())
        .collect();
    assert!(judged.len() >= 20, "{judged:?}");

    // The text output says what differs.
    let text = tmp("errnos-planted.txt");
    let out = Command::new(GV)
        .args(["run", "--format", "text", "--output"])
        .arg(&text)
        .arg("--qemu")
        .arg(&qemu)
        .arg(guest("errnos"))
        .arg("/tmp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = std::fs::read_to_string(&text).unwrap();
    let flagged: Vec<&str> = text.lines().filter(|l| l.contains("<mismatch>")).collect();
    assert!(
        flagged.len() == 1 && flagged[0].contains("(guest EEXIST, host rmdir ENOTEMPTY)"),
        "{flagged:?}"
    );
}

#[test]
fn root_guest_pcs_are_named_from_the_program_symbols() {
    if !root() {
        return;
    }
    let jsonl = tmp("hello-syms.jsonl");
    let out = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg(guest("hello"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "syscall")
        .collect();
    assert!(!calls.is_empty());
    for c in &calls {
        let sym = c["pc_sym"]
            .as_str()
            .unwrap_or_else(|| panic!("no symbol: {c}"));
        assert!(!sym.is_empty() && !sym.starts_with('+'), "{c}");
    }
    // libc's wrappers issue the calls: the write is in write, the exit in _exit.
    let sym_of = |name: &str| {
        calls
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["pc_sym"].as_str())
            .unwrap_or_else(|| panic!("no {name} call"))
            .to_owned()
    };
    assert!(
        sym_of("write").starts_with("write+0x"),
        "{}",
        sym_of("write")
    );
    assert!(
        sym_of("exit_group").starts_with("_exit+0x"),
        "{}",
        sym_of("exit_group")
    );
}

fn plugin() -> PathBuf {
    let p = Path::new(GV).with_file_name("libguestview.so");
    assert!(p.exists(), "build the plugin first (cargo build --release)");
    p
}

/// Wait for the ring a QEMU announces (a loaded machine can take seconds
/// to start it).
fn wait_for(ring: &Path) {
    for _ in 0..3000 {
        if ring.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn root_watch_attaches_to_a_held_qemu_and_joins_every_call() {
    if !root() {
        return;
    }
    let mut qemu = Command::new("/usr/bin/qemu-mips")
        .arg("-plugin")
        .arg(format!("{},wait=on", plugin().display()))
        .arg(guest("fileio"))
        .arg("/nonexistent-guestview-dir")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ring = PathBuf::from(format!("/dev/shm/guestview-{}.ring", qemu.id()));
    wait_for(&ring);
    let jsonl = tmp("watch.jsonl");
    let out = Command::new(GV)
        .args(["watch", "--format", "jsonl", "--pid"])
        .arg(qemu.id().to_string())
        .arg("--output")
        .arg(&jsonl)
        .output()
        .unwrap();
    if !out.status.success() && out.status.code() != Some(1) {
        // Never attached: QEMU would wait for a watcher for ever.
        let _ = qemu.kill();
    }
    let qemu_status = qemu.wait().unwrap();
    // fileio fails in a missing directory: its status comes through watch.
    assert_eq!(qemu_status.code(), Some(1));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls: Vec<&Value> = events.iter().filter(|e| e["type"] == "syscall").collect();
    assert!(calls.len() > 10);
    // wait=on held the guest until the watcher was there: every call has
    // its host view, and the failing open went through to the host.
    for c in &calls {
        assert_ne!(c["verdict"], "guest-only", "{c}");
    }
    assert!(calls
        .iter()
        .any(|c| c["errno"] == "ENOENT"
            && c["host"].as_array().unwrap().iter().any(|h| h["ret"] == -2)));
    let lost = events.iter().find(|e| e["type"] == "lost").unwrap();
    for k in ["host_dropped", "guest_dropped", "guest_corrupt"] {
        assert_eq!(lost[k], 0, "{lost}");
    }
    let summary = events.iter().find(|e| e["type"] == "summary").unwrap();
    assert_eq!(summary["exit_code"], 1);
    assert!(!ring.exists(), "watch removes the ring the plugin left");

    // --ring: the ring the plugin announced, here a process that forks;
    // its children (forked after the attach) are joined as in `run`.
    let mut qemu = Command::new("/usr/bin/qemu-mips")
        .arg("-plugin")
        .arg(format!("{},wait=on", plugin().display()))
        .arg(guest("forkwait"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ring = PathBuf::from(format!("/dev/shm/guestview-{}.ring", qemu.id()));
    wait_for(&ring);
    let jsonl = tmp("watch-ring.jsonl");
    let out = Command::new(GV)
        .args(["watch", "--format", "jsonl", "--ring"])
        .arg(&ring)
        .arg("--output")
        .arg(&jsonl)
        .output()
        .unwrap();
    if !out.status.success() {
        let _ = qemu.kill();
    }
    assert!(
        qemu.wait().unwrap().success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pids: std::collections::BTreeSet<u64> = events
        .iter()
        .filter(|e| e["type"] == "syscall")
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    assert!(
        pids.len() >= 5,
        "the parent and its four children: {pids:?}"
    );
    for e in events.iter().filter(|e| e["type"] == "syscall") {
        assert_ne!(e["verdict"], "guest-only", "{e}");
    }
    assert!(!ring.exists(), "watch removes the ring the plugin left");

    // Nothing to watch: one line, exit 2.
    let out = Command::new(GV)
        .args(["watch", "--pid", "999999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no ring at /dev/shm/guestview-999999999.ring"),
        "{err}"
    );
}

#[test]
fn root_rootfs_build_makes_a_root_a_dynamic_guest_runs_in() {
    if !root()
        || !require(
            Path::new("/usr/mips-linux-gnu/lib/libc.so.6").exists(),
            "libc6-mips-cross",
        )
    {
        return;
    }
    let cache = tmp("rootfs-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let build = |out: Option<&Path>| {
        let mut c = Command::new(GV);
        c.args(["rootfs", "build", "--arch", "mips"])
            .env("GUESTVIEW_CACHE", &cache);
        if let Some(o) = out {
            c.arg("--out").arg(o);
        }
        c.output().unwrap()
    };
    let first = build(None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("root built in"));
    let root_dir = PathBuf::from(String::from_utf8_lossy(&first.stdout).trim());
    assert!(root_dir.starts_with(&cache));
    let again = build(None);
    assert!(String::from_utf8_lossy(&again.stderr).contains("reused"));
    assert_eq!(again.stdout, first.stdout);
    for f in [
        "lib/ld.so.1",
        "lib/libc.so.6",
        "etc/passwd",
        "etc/nsswitch.conf",
        "tmp",
    ] {
        assert!(root_dir.join(f).exists(), "{f} missing");
    }
    let shadow = std::fs::read_to_string(root_dir.join("etc/shadow")).unwrap();
    assert!(!shadow.contains('$'), "the root's shadow holds no hash");

    let out_dir = tmp("rootfs-copy");
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(build(Some(&out_dir)).status.success());
    // A dynamically linked guest finds its loader and libc there.
    let dynhello = tmp("dynhello");
    let st = Command::new("mips-linux-gnu-gcc")
        .arg("-O2")
        .arg("-o")
        .arg(&dynhello)
        .arg(repo().join("tests/guest/hello.c"))
        .status()
        .unwrap();
    assert!(st.success());
    let jsonl = tmp("dynhello.jsonl");
    let run = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg("--rootfs")
        .arg(&out_dir)
        .arg(&dynhello)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("/etc/hostname: \"guestview\""), "{stdout}");
    // libc came from the root (the sandbox's /), not from the host.
    let libc = Path::new("/lib/libc.so.6");
    let opened_libc = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .any(|e| {
            e["type"] == "syscall"
                && e["ret"].as_i64().is_some_and(|r| r >= 0)
                && e["path"].as_str() == libc.to_str()
        });
    assert!(opened_libc, "the guest did not open {}", libc.display());
    // Without the sandbox the root is QEMU's -L prefix: libc from there.
    let bare = Command::new(GV)
        .args(["run", "--no-sandbox", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .arg("--rootfs")
        .arg(&out_dir)
        .arg(&dynhello)
        .output()
        .unwrap();
    assert!(bare.status.success());
    let libc = out_dir.join("lib/libc.so.6");
    assert!(std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .any(|e| e["type"] == "syscall" && e["path"].as_str() == libc.to_str()));

    // An --out that holds something is refused, not overwritten.
    let again = build(Some(&out_dir));
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("exists and is not empty"), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("guestview: error"))
            .count(),
        1
    );
}
