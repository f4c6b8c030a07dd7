//! The sandbox of `guestview run` (the default), end to end: real QEMU,
//! real eBPF, real namespaces, guest programs that try to get out. They
//! need root; under CI=true a missing prerequisite fails the test instead of
//! skipping it. Each test checks only what its own runs made: other tests
//! (and other people's runs) go on at the same time on this machine.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const GV: &str = env!("CARGO_BIN_EXE_guestview");
/// Host uid of the sandbox's root (guestview::sandbox::ID_BASE).
const SANDBOX_UID: u32 = 0x7000_0000;

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
    require(is_root, "this test needs root (eBPF, namespaces)")
        && require(Path::new("/usr/bin/qemu-mips").exists(), "qemu-mips")
        && require(
            Path::new("/usr/mips-linux-gnu/lib/libc.so.6").exists(),
            "libc6-mips-cross (the sandbox's guest root)",
        )
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sandbox");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The directory of the mips builds of the guest test programs.
fn guest_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
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
}

fn guest(name: &str) -> PathBuf {
    guest_dir().join(name)
}

/// `guestview run --format jsonl --output FILE EXTRA… PROG ARGS…`.
fn gv(tag: &str, extra: &[&str], prog: &Path, args: &[&str]) -> (Output, Vec<Value>) {
    let jsonl = tmp(&format!("{tag}.jsonl"));
    let out = Command::new(GV)
        .args(["run", "--format", "jsonl", "--output"])
        .arg(&jsonl)
        .args(extra)
        .arg(prog)
        .args(args)
        .output()
        .expect("run guestview");
    let events = std::fs::read_to_string(&jsonl)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    (out, events)
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

fn assert_nothing_lost(events: &[Value]) {
    let lost = of_type(events, "lost");
    assert_eq!(lost.len(), 1, "one lost record");
    for (k, v) in lost[0].as_object().unwrap() {
        if k != "type" {
            assert_eq!(v, 0, "{k}: {}", lost[0]);
        }
    }
}

/// `key: value` lines of the probes.
fn probe_lines(stdout: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn root_sandbox_keeps_the_guest_from_the_host_and_the_join_whole() {
    if !root() {
        return;
    }
    // A service on the host's loopback the guest must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let tag = format!("guestview-sandbox-test-{}", std::process::id());
    let mark = format!("/tmp/{tag}");
    // Writes anywhere: its /tmp, /etc, /root, / itself, the program's dir.
    let writes = [
        format!("/etc/{tag}"),
        format!("/root/{tag}"),
        format!("/{tag}"),
        format!("/usr/bin/{tag}"),
    ];
    let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let run = |n: &str| {
        let mut args = vec![port.as_str(), mark.as_str()];
        args.extend(writes.iter().map(String::as_str));
        let (out, events) = gv(n, &[], &guest("sandbox_probe"), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (probe_lines(&out.stdout), events)
    };
    let (p, events) = run("probe-1");
    // The root's harmless shadow, never the host's.
    let shadow = &p["shadow"];
    assert!(shadow.starts_with("root:*:19000:"), "{shadow}");
    assert!(host_shadow.is_empty() || !host_shadow.starts_with(shadow.as_str()));
    assert_eq!(p["mark-before"], "no");
    assert_eq!(p["mark-create"], "ok");
    // test -x answers as on an executable mount.
    assert_eq!(p["x-ok self"], "ok");
    assert_eq!(p["x-ok passwd"], "Permission denied");
    assert_eq!(p["r-ok passwd"], "ok");
    // Root of its user namespace, owner of its root, without capabilities.
    assert_eq!(p["uid"], "0");
    assert_eq!(p["capeff"], "0000000000000000");
    for w in &writes {
        assert_eq!(p[&format!("write {w}")], "ok", "{w}");
    }
    // Nothing of it reached the host, nor the cached root.
    let cached_root = Command::new(GV)
        .args(["rootfs", "build", "--arch", "mips"])
        .output()
        .unwrap();
    let cached_root = PathBuf::from(String::from_utf8_lossy(&cached_root.stdout).trim());
    assert!(cached_root.join("etc/passwd").exists());
    for w in writes.iter().chain([&mark]) {
        assert!(
            !Path::new(w).exists(),
            "a guest write reached the host: {w}"
        );
        let in_root = cached_root.join(w.trim_start_matches('/'));
        assert!(!in_root.exists(), "a guest write reached the root: {w}");
    }
    // Its own PID namespace and /proc: the sandbox's init (1) and QEMU (2),
    // nothing else.
    assert_eq!(p["pid"], "2");
    assert_eq!(p["proc-pids"], "2");
    assert_eq!(p["hostname"], "guestview");
    assert!(
        p["connect"].contains("refused") || p["connect"].contains("unreachable"),
        "{}",
        p["connect"]
    );
    assert!(
        listener.accept().is_err(),
        "the guest reached the host's loopback"
    );

    // The join is whole: host ids, every call judged, host calls attached.
    let calls = of_type(&events, "syscall");
    assert!(calls.len() > 20);
    let qemu_pid = calls[0]["pid"].as_u64().unwrap();
    assert_ne!(qemu_pid, 1, "host ids, not the namespace's");
    for c in &calls {
        assert_eq!(c["pid"].as_u64(), Some(qemu_pid), "{c}");
        assert!(c["verdict"].is_string());
        for h in c["host"].as_array().unwrap() {
            assert_eq!(h["tid"], c["tid"], "{c}");
        }
    }
    let open_shadow = calls
        .iter()
        .find(|c| c["path"] == "/etc/shadow" && c["ret"].as_i64().is_some_and(|r| r >= 0))
        .expect("the open of /etc/shadow");
    assert!(open_shadow["host"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["name"] == "openat"));
    // QEMU is process 2 of its namespace (the sandbox's init is 1).
    let getpid = calls.iter().find(|c| c["name"] == "getpid").unwrap();
    assert_eq!(getpid["ret"], 2);
    assert_eq!(getpid["host"][0]["ret"], 2);
    assert_nothing_lost(&events);
    assert!(of_type(&events, "alert").is_empty());

    // A second run starts from the clean root: none of the first's files.
    let (p2, _) = run("probe-2");
    assert_eq!(p2["mark-before"], "no");
}

#[test]
fn root_sandbox_refuses_host_native_code_and_alerts() {
    if !root() {
        return;
    }
    let (out, events) = gv("exec-probe", &[], &guest("exec_probe"), &["/bin/true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = probe_lines(&out.stdout);
    // Nothing ran: every attempt failed, or (an image the kernel loaded
    // that is not QEMU with the plugin) was killed by the exec guard before
    // its first instruction: the tiny ELF would have exited 0 by itself,
    // the loader with 127.
    for key in [
        "x86-elf",
        "fd-exec",
        "proc-fd",
        "script",
        "memfd",
        "qemu",
        "loader",
        "loader-script",
        "/bin/true",
    ] {
        let r = p.get(key).unwrap_or_else(|| panic!("no {key} line: {p:?}"));
        assert!(
            r.starts_with("refused") || r == "killed: signal 9",
            "{key}: {r}"
        );
        // Refused with the errno an executable mount would give.
        if r.starts_with("refused") && key != "fd-exec" && key != "memfd" {
            assert!(
                r == "refused: Exec format error" || r == "refused: No such file or directory",
                "{key}: {r}"
            );
        }
    }
    // Each attempt at host-native code is alerted, by path.
    let alerts = of_type(&events, "alert");
    let alerted = |path: &str, rule: &str| {
        alerts
            .iter()
            .any(|a| a["path"].as_str().is_some_and(|p| p.starts_with(path)) && a["rule"] == rule)
    };
    for path in [
        "/tmp/native-x86",
        "/proc/self/fd/",
        "/.guestview/bin/qemu-mips",
        "/.guestview/lib/ld-linux-x86-64.so.2",
    ] {
        assert!(
            alerted(path, "exec-native"),
            "no alert for {path}: {alerts:#?}"
        );
    }
    for a in &alerts {
        assert!(a["action"] == "deny" || a["action"] == "kill", "{a}");
    }
    // What the kernel did load was killed, and said so.
    if p["loader"] == "killed: signal 9" {
        assert!(alerted(
            "/.guestview/lib/ld-linux-x86-64.so.2",
            "exec-untraced"
        ));
    }
    // No exec other than QEMU's own start and what the guard killed.
    for e in of_type(&events, "process")
        .iter()
        .filter(|e| e["event"] == "exec")
    {
        assert_eq!(e["filename"], "/.guestview/lib/ld-linux-x86-64.so.2", "{e}");
    }

    // A trace keeps the alerts; report lists them.
    let trace = tmp("exec-probe.gvtrace");
    let out = Command::new(GV)
        .args(["run", "-q", "--trace"])
        .arg(&trace)
        .arg(guest("exec_probe"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let rep = Command::new(GV).arg("report").arg(&trace).output().unwrap();
    let rep = String::from_utf8_lossy(&rep.stdout);
    assert!(
        rep.contains("alerts: ")
            && rep.contains("exec-native (deny, sandbox): exec of /tmp/native-x86"),
        "{rep}"
    );

    // Without the sandbox the written x86-64 ELF runs natively (the probe
    // does see it), and guestview says this is not isolation.
    let bare = Command::new(GV)
        .args(["run", "-q", "--no-sandbox"])
        .arg(guest("exec_probe"))
        .output()
        .unwrap();
    assert!(probe_lines(&bare.stdout)["x86-elf"].starts_with("RAN"));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("this is not isolation"));
}

#[test]
fn root_sandbox_runs_a_shell_script_joined_completely() {
    if !root() {
        return;
    }
    // A script of guest programs for the guest's shell: by path, through
    // PATH (a missing directory first), with an empty environment, a
    // nested script through its #! line, a command that is not there.
    let dir = tmp("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.sh"),
        "#!/opt/guest/minish\n/opt/guest/hello\npath /nonexistent:/opt/guest\nhello /etc/passwd\nnoenv /opt/guest/hello /etc/group\n/opt/sh/sub.sh one two\nnotthere\nexit 3\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sub.sh"),
        "#!/opt/guest/minish\n/opt/guest/hello /etc/hosts\n",
    )
    .unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "a+rX,a+x"])
        .arg(&dir)
        .status();
    let binds = [
        "--bind".to_owned(),
        format!("{}:/opt/guest", guest_dir().display()),
        "--bind".to_owned(),
        format!("{}:/opt/sh", dir.display()),
    ];
    let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
    let (out, events) = gv("shell", &binds, &guest("minish"), &["/opt/sh/main.sh"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("hello from MIPS").count(), 4, "{stdout}");
    for f in ["/etc/passwd", "/etc/group", "/etc/hosts"] {
        assert!(stdout.contains(&format!("{f}: ")), "{f}: {stdout}");
    }
    assert!(stdout.contains("minish: notthere: status 127"), "{stdout}");
    assert!(
        of_type(&events, "alert").is_empty(),
        "{:#?}",
        of_type(&events, "alert")
    );
    assert_nothing_lost(&events);

    // Every exec is a guest program under QEMU with the plugin, named.
    let procs = of_type(&events, "process");
    let programs: Vec<&str> = procs
        .iter()
        .filter(|p| p["event"] == "exec")
        .filter_map(|p| p["program"].as_str())
        .collect();
    assert_eq!(
        programs
            .iter()
            .filter(|p| **p == "/opt/guest/hello")
            .count(),
        4,
        "{programs:?}"
    );
    assert_eq!(
        programs
            .iter()
            .filter(|p| **p == "/opt/guest/minish")
            .count(),
        1,
        "{programs:?}"
    );
    // Each of those processes is joined: its calls are there, with their
    // host calls on their own thread, and it exited.
    let calls = of_type(&events, "syscall");
    let exec_pids: BTreeSet<u64> = procs
        .iter()
        .filter(|p| p["event"] == "exec" && p["program"].is_string())
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(exec_pids.len(), 5);
    for pid in &exec_pids {
        let mine: Vec<&&Value> = calls.iter().filter(|c| c["pid"] == *pid).collect();
        assert!(
            mine.iter()
                .filter(|c| !c["host"].as_array().unwrap().is_empty())
                .count()
                > 5
                && mine.iter().any(|c| c["name"] == "exit_group"),
            "process {pid} is not joined: {} calls",
            mine.len()
        );
        assert!(mine
            .iter()
            .filter(|c| c["name"] == "write")
            .all(|c| c["host"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["name"] == "write")));
        assert!(procs
            .iter()
            .any(|p| p["event"] == "exit" && p["pid"] == *pid && p["status"] == 0));
    }
    // The followed execs: the guest's execve has the program as its path
    // and the host's exec of QEMU as its host call.
    let followed: Vec<&&Value> = calls
        .iter()
        .filter(|c| c["name"] == "execve" && c["ret"].is_null())
        .collect();
    assert_eq!(followed.len(), 5, "{followed:#?}");
    for c in &followed {
        assert!(c["path"].as_str().unwrap().starts_with("/opt/"), "{c}");
        assert_eq!(c["host"][0]["name"], "execve", "{c}");
        assert_eq!(c["host"][0]["ret"], 0, "{c}");
    }
    // Through PATH, the missing directory failed first, as on a real system.
    assert!(calls.iter().any(|c| c["name"] == "execve"
        && c["errno"] == "ENOENT"
        && c["path"] == "/nonexistent/hello"));
}

#[test]
fn root_sandbox_forks_are_joined_as_without_it() {
    if !root() {
        return;
    }
    let names = |extra: &[&str]| {
        let (out, events) = gv(
            &format!("forkwait{}", extra.len()),
            extra,
            &guest("forkwait"),
            &[],
        );
        assert!(out.status.success());
        let calls = of_type(&events, "syscall");
        for c in &calls {
            assert!(c["pid"].as_u64().unwrap() > 1, "host ids: {c}");
            for h in c["host"].as_array().unwrap() {
                assert_eq!(h["tid"], c["tid"], "{c}");
            }
        }
        let mut n: Vec<String> = calls.iter().map(|c| c["name"].to_string()).collect();
        n.sort();
        let procs: BTreeSet<u64> = calls.iter().map(|c| c["pid"].as_u64().unwrap()).collect();
        (n, procs.len())
    };
    let (sandboxed, procs) = names(&[]);
    assert!(procs >= 5, "the parent and its four children");
    assert_eq!(sandboxed, names(&["--no-sandbox"]).0);
}

#[test]
fn root_sandbox_binds_and_workdir() {
    if !root() {
        return;
    }
    let dir = tmp("bind-dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note"), "from the host\n").unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(&dir)
        .status();
    let ro = format!("{}:/data", dir.display());
    let rw = format!("{}:/data:rw", dir.display());
    // Read-only by default: readable, not writable.
    let (out, _) = gv(
        "bind-ro",
        &["--bind", &ro],
        &guest("sandbox_probe"),
        &["1", "/tmp/x", "/data/new"],
    );
    assert!(out.status.success());
    let p = probe_lines(&out.stdout);
    assert_eq!(p["write /data/new"], "Read-only file system");
    assert!(!dir.join("new").exists());
    // --workdir: the guest runs there (hello reads a relative path).
    let (out, _) = gv(
        "workdir",
        &["--bind", &ro, "--workdir", "/data"],
        &guest("hello"),
        &["note"],
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("note: \"from the host\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // rw: the guest's write reaches the host (as the sandbox's user).
    let (out, _) = gv(
        "bind-rw",
        &["--bind", &rw],
        &guest("sandbox_probe"),
        &["1", "/tmp/x", "/data/new"],
    );
    assert!(out.status.success());
    assert_eq!(probe_lines(&out.stdout)["write /data/new"], "ok");
    assert_eq!(std::fs::read_to_string(dir.join("new")).unwrap(), "guest\n");
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(dir.join("new")).unwrap().uid(),
            SANDBOX_UID
        );
    }
    // Bad binds: exit 2, saying which.
    for bad in ["/x:relative", "/x:/y:rx", "/nonexistent-guestview:/y"] {
        let (out, _) = gv("bad-bind", &["--bind", bad], &guest("hello"), &[]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--bind") && err.contains(bad.split(':').next().unwrap()),
            "{err}"
        );
    }
}

/// `bpftool -j TYPE show`: guestview's programs (names `gv_*`), or links
/// to them, that no process holds.
fn ownerless_bpf(kind: &str) -> usize {
    let out = Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .expect("run bpftool");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|e| {
                    let name = e["name"].as_str().or(e["prog_name"].as_str()).unwrap_or("");
                    name.starts_with("gv_") && e["pids"].as_array().is_none_or(|p| p.is_empty())
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn root_sandbox_a_hundred_runs_leave_nothing_behind() {
    if !root() || !require(Path::new("/usr/sbin/bpftool").exists(), "bpftool") {
        return;
    }
    // Only what these runs could have made is counted: rings named after
    // their pids, processes whose command line carries this test's mark,
    // mounts of the sandbox, eBPF programs and links of guestview that
    // nobody holds.
    let mark = format!("/guestview-leak-mark-{}", std::process::id());
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains("guestview"))
            .count()
    };
    let (mounts0, progs0, links0) = (mounts(), ownerless_bpf("prog"), ownerless_bpf("link"));
    let mut pids = Vec::new();
    for _ in 0..100 {
        let child = Command::new(GV)
            .args(["run", "-q"])
            .arg(guest("hello"))
            .arg(&mark)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        pids.push(child.id());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{:?}", out.status);
    }
    let shm: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            pids.iter()
                .any(|p| n.starts_with(&format!("guestview-{p}-")))
        })
        .collect();
    assert!(shm.is_empty(), "rings left in /dev/shm: {shm:?}");
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&mark))
        .collect();
    assert!(alive.is_empty(), "processes left: {alive:?}");
    assert_eq!(mounts(), mounts0, "mounts left");
    // The kernel frees a program some time after its last descriptor is
    // closed (RCU): give the last run's a moment.
    let settled = |kind: &str, before: usize| {
        (0..50).any(|_| {
            let now = ownerless_bpf(kind);
            if now > before {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            now <= before
        })
    };
    assert!(settled("prog", progs0), "eBPF programs left");
    assert!(settled("link", links0), "eBPF links left");
}

#[test]
fn root_sandbox_refuses_what_it_cannot_run_clearly() {
    if !root() {
        return;
    }
    // A program the sandbox's user cannot read: one line, exit 2.
    let p = tmp("unreadable");
    std::fs::copy(guest("hello"), &p).unwrap();
    let _ = Command::new("chmod").arg("0700").arg(&p).status();
    let (out, _) = gv("unreadable", &[], &p, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not readable by the sandbox"), "{err}");
    // --bind needs the sandbox.
    let (out, _) = gv(
        "bind-nosbx",
        &["--no-sandbox", "--bind", "/tmp"],
        &guest("hello"),
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn root_rootfs_build_covers_every_architecture() {
    if !root() {
        return;
    }
    let cache = tmp("rootfs-all");
    let _ = std::fs::remove_dir_all(&cache);
    for (arch, pkg, loader) in [
        ("mips", "libc6-mips-cross", "ld.so.1"),
        ("mipsel", "libc6-mipsel-cross", "ld.so.1"),
        ("arm", "libc6-armhf-cross", "ld-linux-armhf.so.3"),
        ("aarch64", "libc6-arm64-cross", "ld-linux-aarch64.so.1"),
        ("ppc", "libc6-powerpc-cross", "ld.so.1"),
        ("ppc64le", "libc6-ppc64el-cross", "ld64.so.2"),
        (
            "riscv64",
            "libc6-riscv64-cross",
            "ld-linux-riscv64-lp64d.so.1",
        ),
        ("x86_64", "libc6-amd64-cross", "ld-linux-x86-64.so.2"),
    ] {
        let installed = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
        if !require(installed, pkg) {
            continue;
        }
        let out = Command::new(GV)
            .args(["rootfs", "build", "--arch", arch])
            .env("GUESTVIEW_CACHE", &cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(root.starts_with(&cache), "{arch}: {}", root.display());
        for f in [
            format!("lib/{loader}"),
            "lib/libc.so.6".into(),
            "etc/passwd".into(),
            "etc/group".into(),
            "etc/hosts".into(),
            "etc/nsswitch.conf".into(),
            "etc/shadow".into(),
            "tmp".into(),
            "dev".into(),
            "proc".into(),
        ] {
            assert!(root.join(&f).exists(), "{arch}: {f} missing");
        }
        use std::os::unix::fs::MetadataExt;
        for f in ["", "etc/passwd", "lib/libc.so.6", "tmp"] {
            let m = std::fs::symlink_metadata(root.join(f)).unwrap();
            assert_eq!(
                m.uid(),
                SANDBOX_UID,
                "{arch}: {f} owned by the sandbox's root"
            );
        }
        assert_eq!(
            std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
    }
}

#[test]
fn root_rootfs_from_debian_runs_a_real_shell_joined() {
    if !root() || !require(Path::new("/usr/bin/qemu-mipsel").exists(), "qemu-mipsel") {
        return;
    }
    // Debian has no big-endian MIPS any more: one line, exit 2.
    let out = Command::new(GV)
        .args(["rootfs", "build", "--arch", "mips", "--from", "debian"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Debian ships no mips"));
    // A Debian bookworm mipsel minbase root: first stage on the host,
    // second stage (dpkg configuring every package, thousands of execs)
    // under QEMU in the sandbox. Built once, then taken from the cache.
    let out = Command::new(GV)
        .args(["rootfs", "build", "--arch", "mipsel", "--from", "debian"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(root.join("etc/debian_version").exists());
    assert!(root.join("var/lib/dpkg/status").exists());
    // Its own dash runs a script: a pipeline, command substitution, test
    // -x, exec; every program is a guest program under QEMU, joined.
    let (out, events) = gv(
        "debian-sh",
        &["--rootfs", root.to_str().unwrap()],
        Path::new("/bin/sh"),
        &[
            "-c",
            "echo hi from $(uname -m); ls /etc | head -n 2 >/dev/null; test -x /bin/ls && echo x-ok; id -u; export LD_LIBRARY_PATH=/x; /bin/sh -c 'echo L=$LD_LIBRARY_PATH'; exec /bin/true",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hi from mips"), "{stdout}");
    assert!(stdout.contains("x-ok"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "0"), "{stdout}");
    // The guest's LD_* variables reach the next guest program (through
    // QEMU's -E, not the host loader's environment).
    assert!(stdout.contains("L=/x"), "{stdout}");
    assert!(of_type(&events, "alert").is_empty());
    assert_nothing_lost(&events);
    let programs: BTreeSet<String> = of_type(&events, "process")
        .iter()
        .filter(|p| p["event"] == "exec")
        .filter_map(|p| p["program"].as_str().map(str::to_owned))
        .collect();
    for p in [
        "/usr/bin/uname",
        "/usr/bin/ls",
        "/usr/bin/head",
        "/usr/bin/id",
        "/bin/true",
    ] {
        assert!(
            programs.contains(p),
            "{p} not exec'd under QEMU: {programs:?}"
        );
    }
    let calls = of_type(&events, "syscall");
    let pids: BTreeSet<u64> = calls.iter().map(|c| c["pid"].as_u64().unwrap()).collect();
    assert!(pids.len() >= 5, "{pids:?}");
}
