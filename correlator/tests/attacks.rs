//! The attack suite of issue 5: guest programs (tests/guest/attacks.c)
//! that try what untrusted firmware tries, run by `guestview run --policy
//! docs/policies/example.toml` on Debian's QEMU 7.2 and on our QEMU 10.2,
//! for mips and arm (and a 64-bit guest for the ring). Each ends with the
//! expected verdicts and alerts (with the guest call's `seq`), the host
//! untouched, the run's output intact and guestview itself finishing.
//! Every rule of the example policy is shown enforced at its layer.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "the attack suite needs root (eBPF, seccomp supervisor, sandbox)"
    );
}

/// The guest programs of `arch`, built once.
fn guest(arch: &str, name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-attacks");
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut b = built.lock().unwrap_or_else(|e| e.into_inner());
    if !b.iter().any(|a| a == arch) {
        let st = Command::new("bash")
            .arg(repo().join("tests/guest/build.sh"))
            .arg(arch)
            .arg(&out)
            .status()
            .expect("run tests/guest/build.sh");
        assert!(st.success(), "building the {arch} guest programs failed");
        b.push(arch.to_owned());
    }
    out.join(arch).join(name)
}

/// Debian's QEMU 7.2 and our 10.2 for `arch` (both required in CI).
fn qemus(arch: &str) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(format!("/usr/bin/qemu-{arch}"))];
    if let Ok(o) = Command::new(repo().join("patches/build-qemu"))
        .arg("--print-prefix")
        .output()
    {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if !p.is_empty() {
            v.push(Path::new(&p).join(format!("bin/qemu-{arch}")));
        }
    }
    let present: Vec<PathBuf> = v.into_iter().filter(|q| q.is_file()).collect();
    assert!(
        present.len() == 2 || !in_ci(),
        "CI needs Debian's qemu-{arch} 7.2 and our QEMU 10.2: {present:?}"
    );
    assert!(!present.is_empty(), "no qemu-{arch} at all");
    present
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    events: Vec<Value>,
    /// Guest call seq → index in `events`.
    by_seq: std::collections::HashMap<u64, usize>,
}

impl Run {
    fn of(&self, ty: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == ty).collect()
    }

    /// Alerts of `rule`.
    fn alerts(&self, rule: &str) -> Vec<&Value> {
        self.of("alert")
            .into_iter()
            .filter(|a| a["rule"] == rule)
            .collect()
    }

    /// The guest call with `seq`.
    fn call(&self, seq: &Value) -> &Value {
        let i = self.by_seq[&seq.as_u64().expect("an alert with a seq")];
        &self.events[i]
    }

    fn lost(&self) -> &Value {
        self.of("lost").pop().expect("a lost record")
    }
}

fn shadow_digest() -> Vec<u8> {
    std::fs::read("/etc/shadow").expect("the host has an /etc/shadow")
}

/// `guestview run --qemu Q [extra] --policy example.toml -- PROGRAM ARGS`.
fn run(qemu: &Path, extra: &[&str], program: &Path, args: &[&str]) -> Run {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "attacks-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_guestview"))
        .arg("run")
        .arg("--qemu")
        .arg(qemu)
        .args(extra)
        .arg("--policy")
        .arg(repo().join("docs/policies/example.toml"))
        .args(["--format", "jsonl", "--output"])
        .arg(&out)
        .arg("--")
        .arg(program)
        .args(args)
        .output()
        .expect("run guestview");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL {l:?}: {e}")))
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let events: Vec<Value> = events;
    let by_seq = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["type"] == "syscall")
        .filter_map(|(i, e)| Some((e["seq"].as_u64()?, i)))
        .collect();
    let r = Run {
        by_seq,
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        events,
    };
    // Output intact: it ends with the lost and summary records, and
    // guestview itself ended by itself (an exit status, no signal).
    assert!(r.code.is_some(), "guestview died: {}", r.stderr);
    assert_eq!(
        r.events.last().map(|e| e["type"].clone()),
        Some(Value::from("summary")),
        "{}",
        r.stderr
    );
    r
}

/// The alert of `rule` says `action`, names its call by `seq`, and that
/// call carries the rule and `verdict`.
fn assert_enforced(r: &Run, rule: &str, action: &str, verdict: &str, layers: &[&str]) {
    let alerts: Vec<&Value> = r
        .alerts(rule)
        .into_iter()
        .filter(|a| !a["seq"].is_null())
        .collect();
    assert!(!alerts.is_empty(), "no alert of {rule}: {}", r.stderr);
    for a in alerts {
        assert_eq!(a["action"], action, "{a}");
        assert!(
            layers.iter().any(|l| a["layer"] == *l),
            "{rule} at layer {} (want {layers:?})",
            a["layer"]
        );
        let c = r.call(&a["seq"]);
        assert_eq!(c["policy"]["rule"], rule, "{c}");
        assert_eq!(c["policy"]["action"], action, "{c}");
        assert_eq!(c["verdict"], verdict, "{c}");
    }
}

#[test]
fn root_attack_reading_etc_shadow_is_denied_by_the_guest_layer_or_the_host() {
    require_root();
    let before = shadow_digest();
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        for q in qemus(arch) {
            for extra in [&[][..], &["--no-sandbox"][..]] {
                let r = run(&q, extra, &p, &["shadow"]);
                assert_eq!(r.code, Some(0), "{}", r.stderr);
                assert_eq!(
                    r.stdout, "shadow: Operation not permitted\n",
                    "{arch} {q:?} {extra:?}"
                );
                // Our 10.2's syscall-filter API: the plugin answers and
                // the host never sees the call; on 7.2 the host refuses it.
                let layer = if ours(&q) { "guest" } else { "seccomp" };
                assert_enforced(&r, "no-shadow", "deny", "denied", &[layer]);
                let a = &r.alerts("no-shadow")[0];
                assert_eq!(
                    r.call(&a["seq"])["host"].as_array().unwrap().is_empty(),
                    ours(&q)
                );
            }
        }
    }
    assert_eq!(shadow_digest(), before);
}

/// Our patched QEMU (the guest layer), not Debian's 7.2.
fn ours(q: &Path) -> bool {
    !q.starts_with("/usr/bin")
}

#[test]
fn root_attack_exec_of_a_shell_is_killed_and_the_run_says_so() {
    require_root();
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        // A guest /bin/sh in the sandbox (the minimal root has none): the
        // hello program, which would print if it ran.
        let sh = format!("{}:/bin/sh", guest(arch, "hello").display());
        for q in qemus(arch) {
            for extra in [&["--bind", sh.as_str()][..], &["--no-sandbox"][..]] {
                let r = run(&q, extra, &p, &["shell"]);
                assert_eq!(r.code, Some(137), "killed run's status: {}", r.stderr);
                assert_eq!(r.stdout, "", "nothing ran: {arch} {q:?} {extra:?}");
                assert_enforced(&r, "no-shell", "kill", "killed", &["seccomp", "guest"]);
                let s = r.of("summary").pop().unwrap().clone();
                assert_eq!(s["policy_kill"]["rule"], "no-shell", "{s}");
            }
        }
    }
}

#[test]
fn root_attack_setuid_is_alerted_with_its_call() {
    require_root();
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        for q in qemus(arch) {
            let r = run(&q, &[], &p, &["setuid"]);
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            // Root of its user namespace: allowed, and alerted.
            assert_eq!(r.stdout, "setuid: ok\n");
            let a = r.alerts("privilege");
            assert_eq!(a.len(), 1, "{a:?}");
            assert_eq!(a[0]["action"], "alert");
            let c = r.call(&a[0]["seq"]);
            assert!(c["name"].as_str().unwrap().starts_with("setuid"), "{c}");
            assert_eq!(c["policy"]["action"], "alert");
        }
    }
}

#[test]
fn root_attack_connect_outside_loopback_is_denied() {
    require_root();
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        for q in qemus(arch) {
            let r = run(
                &q,
                &["--no-sandbox"],
                &p,
                &["connect", "10.255.255.1", "80"],
            );
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            assert_eq!(r.stdout, "connect: Operation not permitted\n");
            assert_enforced(&r, "no-network", "deny", "denied", &["seccomp", "guest"]);
        }
    }
}

#[test]
fn root_attack_fork_bomb_is_refused_beyond_the_rate() {
    require_root();
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        for q in qemus(arch) {
            let r = run(&q, &[], &p, &["forkbomb", "60"]);
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            // "forkbomb: F forked, E failed, K killed": more than 20 new
            // processes a second are refused (EAGAIN) before they exist.
            let line = r.stdout.trim();
            let counts: Vec<u32> = line
                .trim_start_matches("forkbomb: ")
                .split(", ")
                .filter_map(|c| c.split(' ').next()?.parse().ok())
                .collect();
            let [forked, failed, killed] = counts[..] else {
                panic!("{line}")
            };
            assert_eq!(forked + failed, 60, "{line}");
            // (How many depends on the pace: at least the 21st of a second,
            // and at most 20 in each second the loop touched.)
            assert!(failed >= 1 && forked >= 20, "{line}");
            assert_eq!(killed, 0, "refused, not killed: {line}");
            let a = r.alerts("limits.fork_per_second");
            assert!(!a.is_empty(), "{}", r.stderr);
            assert!(
                a.iter()
                    .all(|a| a["layer"] == "seccomp" && a["action"] == "deny"),
                "{a:?}"
            );
            // One alert a second, but every refused call is judged so.
            assert!(a.len() as u32 <= failed, "{a:?}");
            let denied = r
                .of("syscall")
                .iter()
                .filter(|c| c["policy"]["rule"] == "limits.fork_per_second")
                .filter(|c| c["verdict"] == "denied" && c["errno"] == "EAGAIN")
                .count() as u32;
            assert_eq!(denied, failed, "{line}");
        }
    }
}

#[test]
fn root_attack_connect_flood_to_a_host_port_is_cut_by_the_kernel() {
    require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c);
        }
    });
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        for q in qemus(arch) {
            // Unsandboxed: the host's loopback port is reachable.
            let r = run(&q, &["--no-sandbox"], &p, &["connflood", &port, "30"]);
            assert_eq!(r.code, Some(137), "{}", r.stderr);
            assert_eq!(r.stdout, "", "the flood never finished");
            let a = r.alerts("limits.connect_per_second");
            assert_eq!(a.len(), 1, "{}", r.stderr);
            assert_eq!(
                (&a[0]["layer"], &a[0]["action"]),
                (&"ebpf".into(), &"kill".into())
            );
            assert_eq!(r.of("summary")[0]["exit_code"], 137);
        }
    }
}

#[test]
fn root_attack_path_race_never_reads_shadow() {
    require_root();
    let before = shadow_digest();
    for arch in ["mips", "arm"] {
        let p = guest(arch, "attacks");
        for q in qemus(arch) {
            // Whether the flipper wins between the plugin's read of the
            // path and the kernel's is chance (a loaded machine shifts the
            // odds): up to four runs for one the host layer had to refuse.
            // Every run must keep every other promise.
            let host_layer_refused = (0..4).any(|_| path_race_once(arch, &q, &p));
            assert!(
                host_layer_refused,
                "{arch} {q:?}: in four runs the host layer never refused a call"
            );
        }
    }
    assert_eq!(shadow_digest(), before);
}

/// One run of the path race; whether the host layer (seccomp) refused a
/// call in it.
fn path_race_once(arch: &str, q: &Path, p: &Path) -> bool {
    // Unsandboxed: the host's /etc/shadow is the prize.
    let r = run(q, &["--no-sandbox"], p, &["race", "/etc/hostname", "20000"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let last = r.stdout.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.ends_with(" 0 other content") && !r.stdout.contains("OTHER"),
        "{arch} {q:?}: {}",
        r.stdout
    );
    // The flipper won some reads of the path: refused, each alerted.
    let refused: u32 = last
        .split(", ")
        .nth(1)
        .and_then(|x| x.strip_suffix(" refused"))
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "{last}");
    // Each denial is the host layer's or the guest layer's, on the call it
    // refused. The plugin's read of the path may see the other name than
    // the kernel's: such a call is alerted by the join ("join"), and then it
    // was not refused because what the kernel was asked for was the
    // allowed file (or a torn name that names nothing: ENOENT).
    let shadow = r.alerts("no-shadow");
    for a in &shadow {
        let c = r.call(&a["seq"]);
        match a["layer"].as_str() {
            Some("seccomp") | Some("guest") => {
                assert_eq!(
                    (&a["action"], &c["verdict"]),
                    (&"deny".into(), &"denied".into()),
                    "{c}"
                )
            }
            Some("join") => {
                assert!(c["errno"] != "EPERM" && c["verdict"] != "denied", "{c}")
            }
            l => panic!("layer {l:?}"),
        }
    }
    shadow.iter().any(|a| a["layer"] == "seccomp")
}

#[test]
fn root_attack_scribbling_over_the_ring_is_reported_not_believed() {
    require_root();
    let p = guest("x86_64", "attacks");
    for q in qemus("x86_64") {
        for extra in [&[][..], &["--no-sandbox"][..]] {
            let r = run(&q, extra, &p, &["ring"]);
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            assert!(r.stdout.contains(" scribbled, "), "{}", r.stdout);
            let lost = r.lost();
            assert!(lost["guest_corrupt"].as_u64().unwrap() > 0, "{lost}");
            // Garbage counters are not believed as drops.
            assert!(lost["guest_dropped"].as_u64().unwrap() < 1 << 40, "{lost}");
            // Every call shown is one the guest could make.
            for c in r.of("syscall") {
                assert!(c["seq"].is_u64() && c["name"].is_string(), "{c}");
            }
        }
    }
}

#[test]
fn run_refuses_a_malformed_policy_before_the_guest_starts() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("badpol-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "default = \"allow\"\n[[rule]]\nname = \"x\"\nsyscalls = [\"open\"]\naction = \"maybe\"\n",
    )
    .unwrap();
    let mark = dir.join("ran");
    let o = Command::new(env!("CARGO_BIN_EXE_guestview"))
        .args(["run", "--no-sandbox", "--policy"])
        .arg(&bad)
        .arg("--")
        .arg("/bin/touch")
        .arg(&mark)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("malformed policy") && err.contains("bad.toml:5:"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!mark.exists(), "nothing started");
    std::fs::remove_dir_all(&dir).unwrap();
}
