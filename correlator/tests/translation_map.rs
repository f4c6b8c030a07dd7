//! `docs/translation-map.md` is what `tools/translation-map` produces now:
//! a section for each of the eight architectures on both QEMUs, made with
//! the QEMU versions installed, and (root) the verdicts of one architecture
//! regenerated on both QEMUs equal to the committed ones: the same calls,
//! each with the same most frequent verdict. Host call sequences of
//! translated calls and a call's rarer verdicts are not compared: threads
//! make them vary from run to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const GV: &str = env!("CARGO_BIN_EXE_guestview");
const ARCHES: [&str; 8] = [
    "mips", "mipsel", "arm", "aarch64", "ppc", "ppc64le", "riscv64", "x86_64",
];
const LABELS: [&str; 2] = ["QEMU 7.2", "QEMU 10.2"];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn require(ok: bool, what: &str) -> bool {
    if !ok && in_ci() {
        panic!("prerequisite missing in CI: {what}");
    }
    if !ok {
        eprintln!("SKIPPED: {what}");
    }
    ok
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The map's sections: `## LABEL` → its lines; `### LABEL: ARCH` → its
/// lines.
fn sections(map: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = String::new();
    for line in map.lines() {
        if let Some(h) = line.strip_prefix("### ").or(line.strip_prefix("## ")) {
            cur = h.to_owned();
        }
        out.entry(cur.clone()).or_default().push(line.to_owned());
    }
    out
}

/// One architecture's calls in a section's overview: each call it made
/// and its most frequent verdict (the first letter: the others of a call
/// that has several, such as a thread's `exit` that sometimes makes a host
/// `futex` wake, depend on timing).
fn verdicts_of(secs: &BTreeMap<String, Vec<String>>, label: &str, arch: &str) -> Vec<String> {
    let overview = secs
        .get(label)
        .unwrap_or_else(|| panic!("no section {label}"));
    let header = overview
        .iter()
        .find(|l| l.starts_with("| syscall |"))
        .unwrap_or_else(|| panic!("{label}: no overview table"));
    let col = header
        .split('|')
        .map(str::trim)
        .position(|c| c == arch)
        .unwrap_or_else(|| panic!("{label}: no column {arch}"));
    assert!(
        secs.contains_key(&format!("{label}: {arch}")),
        "no section {label}: {arch}"
    );
    overview
        .iter()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let first = cells[col].split('/').next().unwrap();
            (first != "—").then(|| format!("{} {first}", cells[1]))
        })
        .collect()
}

fn version(qemu: &Path) -> String {
    let out = Command::new(qemu).arg("--version").output().unwrap();
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    first
        .split_once(" version ")
        .map_or(first.clone(), |(_, v)| v.trim().to_owned())
}

fn our_prefix() -> Option<PathBuf> {
    let out = Command::new(repo().join("patches/build-qemu"))
        .arg("--print-prefix")
        .output()
        .expect("run patches/build-qemu --print-prefix");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let ok = out.status.success() && p.join("bin/qemu-mips").is_file();
    require(ok, "our QEMU 10.2 (patches/build-qemu)").then_some(p)
}

#[test]
fn the_translation_map_covers_every_architecture_on_both_qemus_as_installed() {
    let map = std::fs::read_to_string(repo().join("docs/translation-map.md")).unwrap();
    let secs = sections(&map);
    for label in LABELS {
        for arch in ARCHES {
            let v = verdicts_of(&secs, label, arch);
            // Every architecture's programs pass through write and exit.
            assert!(
                v.iter().any(|l| l.starts_with("`write` ")),
                "{label} {arch}: {v:?}"
            );
        }
    }
    // Made with the QEMU releases installed now: a new release means a new
    // map (major.minor only: a distribution's rebuild or security fix of
    // the same release does not change what QEMU translates, and CI may
    // install a newer one; root_translation_map_is_current checks the
    // verdicts themselves).
    if !require(
        Path::new("/usr/bin/qemu-mips").exists(),
        "qemu-mips (Debian's 7.2)",
    ) {
        return;
    }
    let Some(ours) = our_prefix() else { return };
    for (label, qemu) in [
        (LABELS[0], PathBuf::from("/usr/bin/qemu-mips")),
        (LABELS[1], ours.join("bin/qemu-mips")),
    ] {
        let v = version(&qemu);
        let release: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
        let line = &secs[label][2];
        assert!(
            line.contains(&format!(" — {release}.")),
            "{label}: the map was made with {line:?}, {} is {v}: run sudo tools/translation-map",
            qemu.display()
        );
    }
}

#[test]
fn root_translation_map_is_current() {
    // SAFETY: geteuid cannot fail.
    let is_root = unsafe { libc::geteuid() == 0 };
    if !require(is_root, "this test needs root (eBPF)")
        || !require(Path::new("/usr/bin/python3").exists(), "python3")
        || !require(
            Path::new("/usr/bin/mips-linux-gnu-gcc").exists(),
            "mips cross compiler",
        )
        || our_prefix().is_none()
    {
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("translation-map-mips.md");
    let run = Command::new(repo().join("tools/translation-map"))
        .args(["--arch", "mips", "--guestview", GV, "--out"])
        .arg(&out)
        .output()
        .expect("run tools/translation-map");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let now = sections(&std::fs::read_to_string(&out).unwrap());
    let committed =
        sections(&std::fs::read_to_string(repo().join("docs/translation-map.md")).unwrap());
    for label in LABELS {
        assert_eq!(
            verdicts_of(&committed, label, "mips"),
            verdicts_of(&now, label, "mips"),
            "{label} mips: docs/translation-map.md is stale: run sudo tools/translation-map"
        );
    }
}
