//! `guestview policy check` on the shipped policies and on malformed ones:
//! the binary, its output and its exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GV: &str = env!("CARGO_BIN_EXE_guestview");

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policies")
}

fn check(args: &[&str]) -> Output {
    Command::new(GV)
        .arg("policy")
        .arg("check")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The QEMU builds the project uses: Debian's 7.2 and our patched 10.2.
fn qemus() -> Vec<(PathBuf, bool)> {
    let mut v = vec![(PathBuf::from("/usr/bin/qemu-mips"), false)];
    let prefix = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../patches/build-qemu"))
        .arg("--print-prefix")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Some(p) = prefix.filter(|p| !p.is_empty()) {
        v.push((Path::new(&p).join("bin/qemu-mips"), true));
    }
    v
}

#[test]
fn every_shipped_policy_is_valid_and_explained() {
    let mut seen = 0;
    for e in std::fs::read_dir(policies()).unwrap() {
        let p = e.unwrap().path();
        let o = check(&[p.to_str().unwrap(), "--arch", "arm"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{}: {err}", p.display());
        assert!(out.contains(": valid ("), "{out}");
        assert!(out.contains("BPF LSM:      not used"), "{out}");
        seen += 1;
    }
    assert!(seen >= 3, "docs/policies has {seen} files");
}

#[test]
fn root_the_guest_layer_follows_the_qemus_filter_api() {
    let qs = qemus();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let present: Vec<_> = qs.iter().filter(|(q, _)| q.is_file()).collect();
    assert!(
        present.len() == 2 || !ci,
        "CI needs Debian's qemu-mips 7.2 and our QEMU 10.2 (scripts/test builds it): {qs:?}"
    );
    for (q, api) in present {
        let o = check(&[
            policies().join("example.toml").to_str().unwrap(),
            "--qemu",
            q.to_str().unwrap(),
        ]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        if *api {
            assert!(out.contains("guest layer:  yes"), "{out}");
            assert!(
                out.contains("syscall-filter callback answers -EPERM"),
                "{out}"
            );
        } else {
            assert!(out.contains("guest layer:  no"), "{out}");
            assert!(!out.contains("syscall-filter callback answers"), "{out}");
        }
        // Each rule of the example, at its layer.
        for want in [
            "rule 1 \"no-shadow\"",
            "injects the descriptor",
            "rule 2 \"no-shell\"",
            "USER_NOTIF on execve, execveat",
            "rule 3 \"privilege\"",
            "each matching call is an alert record",
            "rule 4 \"no-network\"",
            "makes the call itself on the guest's socket",
            "fork_per_second = 20: the seccomp supervisor counts",
            "refused with EAGAIN",
            "connect_per_second = 5: eBPF",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}

#[test]
fn a_malformed_policy_is_refused_with_file_line_column_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("gv-policy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("bad.toml", "default = \"allow\"\n\n[[rule]]\nname = \"x\"\nsyscalls = [\"opne\"]\naction = \"deny\"\n", ":5:13: rule \"x\": \"opne\" is not a syscall on any supported architecture"),
        ("bad.json", "{\"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"read\"], \"action\": \"SCMP_ACT_FOO\"}]}", ":2:"),
        ("missing.toml", "", "cannot read the policy"),
    ];
    for (name, body, want) in cases {
        let p = dir.join(name);
        if !body.is_empty() {
            std::fs::write(&p, body).unwrap();
        }
        let o = check(&[p.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("guestview: error: malformed policy: "),
            "{err}"
        );
        assert!(err.contains(&format!("{}", p.display())), "{err}");
        assert!(err.contains(want), "{name}: {err}");
    }
    // An explicit QEMU that does not exist is bad input too.
    let o = check(&[
        policies().join("example.toml").to_str().unwrap(),
        "--qemu",
        "/nonexistent/qemu-mips",
    ]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
