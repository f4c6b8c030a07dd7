//! The only module with `unsafe`: the embedded eBPF object, the bindgen view
//! of `hostview.h`, and the reads that turn ring-buffer bytes into those
//! plain C structs.

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    dead_code,
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::undocumented_unsafe_blocks
)]
mod raw {
    include!(concat!(env!("OUT_DIR"), "/hostview.rs"));
}

pub(crate) use raw::{
    gv_event_hdr, gv_exec_event, gv_exit_event, gv_fork_event, gv_guard, gv_stats,
    gv_syscall_event, gv_syscall_path_event, GV_F_EXEC_KILLED, GV_F_PATH_FAULT,
    GV_GUARD_PREFIX_MAX, GV_OP_EXEC, GV_OP_EXIT, GV_OP_FORK, GV_OP_NORETURN, GV_OP_SYSCALL,
    GV_OP_SYSCALL_PATH,
};

/// Keeps the embedded ELF 8-byte aligned, as libelf expects of an image in
/// memory.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/hostview.bpf.o")));

/// The compiled `hostview.bpf.c`.
pub(crate) fn bpf_object() -> &'static [u8] {
    &OBJECT.0
}

/// A C record from `hostview.h` that may be read from any bytes.
///
/// # Safety
/// Implementors must be `repr(C)` structs made only of integers and arrays of
/// integers, so that every bit pattern is a valid value.
pub(crate) unsafe trait Record: Copy {}

// SAFETY: bindgen emits these as repr(C) structs of __u16/__u32/__u64/__s64
// fields and u8/c_char arrays (see hostview.h); every bit pattern is valid.
unsafe impl Record for gv_event_hdr {}
// SAFETY: as above: integers and integer arrays only.
unsafe impl Record for gv_syscall_event {}
// SAFETY: as above: a gv_syscall_event, integers and a c_char array.
unsafe impl Record for gv_syscall_path_event {}
// SAFETY: as above: integers and a padding byte array.
unsafe impl Record for gv_fork_event {}
// SAFETY: as above: integers and a c_char array.
unsafe impl Record for gv_exec_event {}
// SAFETY: as above: integers and a padding byte array.
unsafe impl Record for gv_exit_event {}
// SAFETY: as above: four __u64.
unsafe impl Record for gv_stats {}
// SAFETY: as above: integers and a c_char array.
unsafe impl Record for gv_guard {}

/// The bytes of a record, to write it into a map.
pub(crate) fn record_bytes<T: Record>(r: &T) -> &[u8] {
    // SAFETY: `T: Record` is a repr(C) struct of integers with explicit
    // padding fields, so all of its size_of::<T>() bytes are initialised.
    unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(r).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// Copy a `T` out of the front of `bytes`, or `None` if there are too few.
pub(crate) fn read_record<T: Record>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds at least size_of::<T>() initialised bytes (checked
    // above); `read_unaligned` has no alignment requirement; `T: Record`
    // makes any bit pattern a valid `T`.
    Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::Path;
    use std::process::Command;

    /// Sizes and offsets of every shared record as Rust (bindgen) sees them,
    /// named the way the C probe below prints them.
    fn rust_layout() -> Vec<(String, usize)> {
        macro_rules! sz {
            ($t:ident) => {
                (format!("sizeof {}", stringify!($t)), size_of::<$t>())
            };
        }
        macro_rules! off {
            ($t:ident, $($f:tt).+) => {
                (
                    format!("offsetof {} {}", stringify!($t), stringify!($($f).+)),
                    offset_of!($t, $($f).+),
                )
            };
        }
        vec![
            sz!(gv_event_hdr),
            off!(gv_event_hdr, op),
            off!(gv_event_hdr, flags),
            off!(gv_event_hdr, size),
            off!(gv_event_hdr, ktime),
            sz!(gv_syscall_event),
            off!(gv_syscall_event, tgid),
            off!(gv_syscall_event, tid),
            off!(gv_syscall_event, nr),
            off!(gv_syscall_event, args),
            off!(gv_syscall_event, ret),
            off!(gv_syscall_event, t_enter),
            off!(gv_syscall_event, t_exit),
            sz!(gv_syscall_path_event),
            off!(gv_syscall_path_event, path_len),
            off!(gv_syscall_path_event, path_arg),
            off!(gv_syscall_path_event, path),
            sz!(gv_fork_event),
            off!(gv_fork_event, parent_tgid),
            off!(gv_fork_event, parent_tid),
            off!(gv_fork_event, child_tgid),
            off!(gv_fork_event, child_tid),
            off!(gv_fork_event, is_thread),
            sz!(gv_exec_event),
            off!(gv_exec_event, tgid),
            off!(gv_exec_event, tid),
            off!(gv_exec_event, old_tid),
            off!(gv_exec_event, filename_len),
            off!(gv_exec_event, filename),
            sz!(gv_exit_event),
            off!(gv_exit_event, tgid),
            off!(gv_exit_event, tid),
            off!(gv_exit_event, exit_code),
            off!(gv_exit_event, group_dead),
            sz!(gv_stats),
            off!(gv_stats, emitted),
            off!(gv_stats, dropped),
            off!(gv_stats, path_failures),
            off!(gv_stats, pending_failures),
        ]
    }

    /// Builds a C program from hostview.h that prints the same table, so a
    /// change on either side that bindgen and the static asserts let through
    /// still fails here.
    #[test]
    fn layout_matches_c_compiler() {
        let rust = rust_layout();
        let mut c = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"hostview.h\"\nint main(void) {\n",
        );
        for (name, _) in &rust {
            let mut parts = name.split(' ');
            let kind = parts.next().unwrap_or_default();
            let ty = parts.next().unwrap_or_default();
            let expr = match kind {
                "sizeof" => format!("sizeof(struct {ty})"),
                _ => format!(
                    "offsetof(struct {ty}, {})",
                    parts.next().unwrap_or_default()
                ),
            };
            c.push_str(&format!("printf(\"{name} %zu\\n\", (size_t){expr});\n"));
        }
        c.push_str("return 0; }\n");

        let dir = std::env::temp_dir().join(format!("gv-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("probe.c");
        let exe = dir.join("probe");
        std::fs::write(&src, c).unwrap();
        let hdr_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
        let status = Command::new("cc")
            .arg("-I")
            .arg(&hdr_dir)
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .status()
            .expect("run cc (the layout test needs a C compiler)");
        assert!(status.success(), "compiling the layout probe failed");
        let out = Command::new(&exe).output().expect("run layout probe");
        std::fs::remove_dir_all(&dir).ok();
        let text = String::from_utf8(out.stdout).unwrap();
        let c_layout: Vec<(String, usize)> = text
            .lines()
            .map(|l| {
                let (name, n) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), n.parse().unwrap())
            })
            .collect();
        assert_eq!(
            c_layout, rust,
            "Rust (bindgen) and C disagree on the layout"
        );
    }

    #[test]
    fn read_record_refuses_short_input() {
        let bytes = [0u8; 15];
        assert!(read_record::<gv_event_hdr>(&bytes).is_none());
        assert!(read_record::<gv_event_hdr>(&[0u8; 16]).is_some());
    }

    #[test]
    fn embedded_object_is_elf() {
        assert_eq!(&bpf_object()[..4], b"\x7fELF");
    }
}
