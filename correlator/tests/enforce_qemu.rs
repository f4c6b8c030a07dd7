//! The host layers of a policy around real QEMU processes (no plugin, no
//! eBPF: the seccomp filter and its supervisor alone, as on a QEMU without
//! the syscall-filter API): a MIPS guest that reads /etc/shadow, creates a
//! file and connects to loopback, under the example policy, on
//! Debian's QEMU 7.2 and on our QEMU 10.2.

use guestview::enforce::Enforcement;
use guestview::policy::Policy;
use shmem_proto::Arch;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn probe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-enforce");
            let st = Command::new("bash")
                .arg(repo().join("tests/guest/build.sh"))
                .arg("mips")
                .arg(&out)
                .status()
                .expect("run tests/guest/build.sh");
            assert!(st.success(), "building the guest programs failed");
            out.join("mips/sandbox_probe")
        })
        .clone()
}

fn qemus() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/usr/bin/qemu-mips")];
    let o = Command::new(repo().join("patches/build-qemu"))
        .arg("--print-prefix")
        .output();
    if let Ok(o) = o {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if !p.is_empty() {
            v.push(Path::new(&p).join("bin/qemu-mips"));
        }
    }
    let present: Vec<PathBuf> = v.into_iter().filter(|q| q.is_file()).collect();
    assert!(
        present.len() == 2 || !in_ci(),
        "CI needs Debian's qemu-mips 7.2 and our QEMU 10.2: {present:?}"
    );
    present
}

#[test]
fn root_the_example_policy_holds_around_real_qemu_by_the_host_layers_alone() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")),
        "this test needs root (the supervisor reads QEMU's memory)"
    );
    assert!(
        Path::new("/etc/shadow").is_file(),
        "the host has an /etc/shadow to protect"
    );
    let policy = Arc::new(Policy::load(&repo().join("docs/policies/example.toml")).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    for qemu in qemus() {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("enforce-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mark = dir.join("mark");
        let _ = std::fs::remove_file(&mark);
        let out = dir.join("stdout");
        let mut enf = Enforcement::new(policy.clone(), Arch::Mips);
        let (child, parent) = enf.prepare_seccomp().unwrap();
        let file: std::os::fd::OwnedFd = std::fs::File::create(&out).unwrap().into();
        let guest = probe();
        let argv = [
            qemu.to_str().unwrap(),
            guest.to_str().unwrap(),
            port.as_str(),
            mark.to_str().unwrap(),
        ];
        let pid = guestview_seccomp::spawn(&child, &argv, None, Some(&file)).unwrap();
        let sup = enf.start_supervisor(parent, pid, None).unwrap();
        let st = guestview_seccomp::wait(pid);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(st, Ok(0), "{}: {text}", qemu.display());
        // Denied by the policy, at the host, although QEMU runs as root.
        assert!(
            text.contains("shadow: error Operation not permitted"),
            "{}: {text}",
            qemu.display()
        );
        // Allowed opens (QEMU's own libraries, the guest's new file) went
        // through the supervisor and were injected.
        assert!(text.contains("mark-create: ok"), "{text}");
        assert!(mark.is_file());
        // Loopback is outside "!127.0.0.0/8": connected, by the supervisor.
        assert!(text.contains("connect: ok"), "{text}");
        let stats = sup.stop().unwrap();
        assert!(
            stats.injected.load(Ordering::Relaxed) >= 2,
            "{}",
            qemu.display()
        );
        assert_eq!(stats.on_behalf.load(Ordering::Relaxed), 1);
        let (alerts, dropped) = enf.drain_host_alerts();
        assert_eq!(dropped, 0);
        let shadow: Vec<_> = alerts
            .iter()
            .filter(|a| a.rule.as_deref() == Some("no-shadow"))
            .collect();
        assert!(!shadow.is_empty(), "{alerts:?}");
        assert!(shadow.iter().all(|a| a.action == "deny"
            && a.layer == "seccomp"
            && a.detail.as_deref() == Some("/etc/shadow")));
        assert!(
            alerts
                .iter()
                .all(|a| a.rule.as_deref() == Some("no-shadow")),
            "nothing else alerted: {alerts:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
