//! Builds the eBPF object and the Rust view of its event layout.
//!
//! 1. `vmlinux.h` for CO-RE is dumped from the running kernel's BTF with
//!    `bpftool` into `OUT_DIR` (override the BTF file with
//!    `GUESTVIEW_VMLINUX_BTF`, or give a ready header with
//!    `GUESTVIEW_VMLINUX_H`).
//! 2. `hostview.bpf.c` is compiled with libbpf-cargo (clang, vendored libbpf
//!    headers) into `OUT_DIR/hostview.bpf.o`, which the library embeds.
//! 3. `hostview.h` goes through bindgen into `OUT_DIR/hostview.rs`, so the
//!    record layout is written down once, in C.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SRC: &str = "src/bpf/hostview.bpf.c";
const HDR: &str = "src/bpf/hostview.h";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={HDR}");
    println!("cargo:rerun-if-env-changed=GUESTVIEW_VMLINUX_BTF");
    println!("cargo:rerun-if-env-changed=GUESTVIEW_VMLINUX_H");

    let vmlinux_dir = out.join("vmlinux");
    fs::create_dir_all(&vmlinux_dir).expect("create OUT_DIR/vmlinux");
    write_vmlinux_h(&vmlinux_dir.join("vmlinux.h"));

    let obj = out.join("hostview.bpf.o");
    let include = format!("-I{}", vmlinux_dir.display());
    if let Err(e) = libbpf_cargo::SkeletonBuilder::new()
        .source(SRC)
        .obj(&obj)
        .clang_args([include.as_str(), "-Wall", "-Werror", "-Wno-unused-function"])
        .build()
    {
        panic!("compiling {SRC} failed (needs clang with the BPF target): {e:#}");
    }

    let bindings = bindgen::Builder::default()
        .header(HDR)
        .allowlist_type("gv_.*")
        .allowlist_var("GV_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|e| {
            panic!("bindgen on {HDR} failed (needs libclang and linux-libc-dev): {e}")
        });
    bindings
        .write_to_file(out.join("hostview.rs"))
        .expect("write OUT_DIR/hostview.rs");
}

fn write_vmlinux_h(dst: &Path) {
    if let Some(given) = env::var_os("GUESTVIEW_VMLINUX_H") {
        fs::copy(&given, dst).unwrap_or_else(|e| {
            panic!("copying GUESTVIEW_VMLINUX_H={given:?} failed: {e}");
        });
        return;
    }
    let btf = env::var_os("GUESTVIEW_VMLINUX_BTF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"));
    println!("cargo:rerun-if-changed={}", btf.display());
    let bpftool = ["bpftool", "/usr/sbin/bpftool", "/sbin/bpftool"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("bpftool not found: install it (Debian: apt-get install bpftool)")
        });
    let output = Command::new(bpftool)
        .args(["btf", "dump", "file"])
        .arg(&btf)
        .args(["format", "c"])
        .output()
        .unwrap_or_else(|e| panic!("running {bpftool} failed: {e}"));
    if !output.status.success() {
        panic!(
            "`{bpftool} btf dump file {} format c` failed: {} (the kernel needs CONFIG_DEBUG_INFO_BTF, or set GUESTVIEW_VMLINUX_BTF)",
            btf.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::write(dst, &output.stdout).expect("write vmlinux.h");
}
