// SPDX-License-Identifier: GPL-2.0-or-later
//! The QEMU plugin C API (qemu-plugin.h), the part guestview uses. All FFI
//! of the plugin lives here. Declarations follow QEMU 7.2's header (plugin
//! API version 1); entry points of newer versions are resolved at load time
//! with `dlsym` so one `.so` can serve several QEMUs.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `qemu_plugin_id_t`.
pub type qemu_plugin_id_t = u64;

/// `qemu_info_t` (the part common to every API version).
#[repr(C)]
pub struct qemu_info_t {
    /// Guest architecture (`"mips"`, …).
    pub target_name: *const c_char,
    /// Plugin API versions QEMU supports.
    pub version_min: c_int,
    /// Current API version of QEMU.
    pub version_cur: c_int,
    /// System emulation (true) or user mode (false).
    pub system_emulation: bool,
}

/// Opaque translation block handle.
#[repr(C)]
pub struct qemu_plugin_tb {
    _opaque: [u8; 0],
}

/// Opaque instruction handle.
#[repr(C)]
pub struct qemu_plugin_insn {
    _opaque: [u8; 0],
}

/// `QEMU_PLUGIN_CB_NO_REGS`.
pub const QEMU_PLUGIN_CB_NO_REGS: c_int = 0;

/// `void (*)(unsigned int vcpu_index, void *userdata)`.
pub type vcpu_udata_cb = extern "C" fn(c_uint, *mut c_void);
/// `void (*)(qemu_plugin_id_t, void *userdata)`.
pub type udata_cb = extern "C" fn(qemu_plugin_id_t, *mut c_void);
/// Translation callback.
pub type tb_trans_cb = extern "C" fn(qemu_plugin_id_t, *mut qemu_plugin_tb);
/// Syscall entry: number and eight arguments.
pub type syscall_cb =
    extern "C" fn(qemu_plugin_id_t, c_uint, i64, u64, u64, u64, u64, u64, u64, u64, u64);
/// Syscall return: number and return value.
pub type syscall_ret_cb = extern "C" fn(qemu_plugin_id_t, c_uint, i64, i64);

extern "C" {
    pub fn qemu_plugin_register_vcpu_tb_trans_cb(id: qemu_plugin_id_t, cb: tb_trans_cb);
    pub fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut qemu_plugin_insn,
        cb: vcpu_udata_cb,
        flags: c_int,
        userdata: *mut c_void,
    );
    pub fn qemu_plugin_tb_n_insns(tb: *const qemu_plugin_tb) -> usize;
    pub fn qemu_plugin_tb_get_insn(tb: *const qemu_plugin_tb, idx: usize) -> *mut qemu_plugin_insn;
    pub fn qemu_plugin_insn_vaddr(insn: *const qemu_plugin_insn) -> u64;
    pub fn qemu_plugin_insn_size(insn: *const qemu_plugin_insn) -> usize;
    pub fn qemu_plugin_register_vcpu_syscall_cb(id: qemu_plugin_id_t, cb: syscall_cb);
    pub fn qemu_plugin_register_vcpu_syscall_ret_cb(id: qemu_plugin_id_t, cb: syscall_ret_cb);
    pub fn qemu_plugin_register_atexit_cb(
        id: qemu_plugin_id_t,
        cb: udata_cb,
        userdata: *mut c_void,
    );
}

/// API v1 `const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *)`.
type InsnDataV1 = unsafe extern "C" fn(*const qemu_plugin_insn) -> *const c_void;

/// Copy up to `out.len()` bytes of an instruction's encoding into `out`;
/// returns how many were copied. Only call during a translation callback.
pub fn insn_bytes(insn: *mut qemu_plugin_insn, out: &mut [u8]) -> usize {
    // SAFETY: `insn` is a live handle handed to us by QEMU in the current
    // translation callback.
    let size = unsafe { qemu_plugin_insn_size(insn) };
    let n = size.min(out.len());
    let f = insn_data_v1();
    let Some(f) = f else { return 0 };
    // SAFETY: v1's qemu_plugin_insn_data returns a pointer to `size` bytes
    // owned by QEMU, valid during the translation callback.
    let p = unsafe { f(insn) }.cast::<u8>();
    if p.is_null() {
        return 0;
    }
    // SAFETY: p points to at least `size` >= n readable bytes (see above).
    out[..n].copy_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
    n
}

fn insn_data_v1() -> Option<InsnDataV1> {
    use std::sync::OnceLock;
    static F: OnceLock<Option<InsnDataV1>> = OnceLock::new();
    *F.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always
        // safe to call; a non-null result is the address of QEMU's exported
        // function with the v1 signature declared above.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"qemu_plugin_insn_data".as_ptr()) };
        if p.is_null() {
            None
        } else {
            // SAFETY: see above: p is QEMU's qemu_plugin_insn_data.
            Some(unsafe { std::mem::transmute::<*mut c_void, InsnDataV1>(p) })
        }
    })
}

/// API v1 `void *qemu_plugin_insn_haddr(const struct qemu_plugin_insn *)`:
/// in user mode, the host address of the instruction's bytes.
type InsnHaddr = unsafe extern "C" fn(*const qemu_plugin_insn) -> *mut c_void;

/// Where QEMU keeps the bytes of a guest instruction, in the host's
/// address space (user mode: guest address + QEMU's `guest_base`). Only
/// call during a translation callback.
pub fn insn_haddr(insn: *mut qemu_plugin_insn) -> Option<u64> {
    use std::sync::OnceLock;
    static F: OnceLock<Option<InsnHaddr>> = OnceLock::new();
    let f = (*F.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; a
        // non-null result is QEMU's exported function of this signature.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"qemu_plugin_insn_haddr".as_ptr()) };
        // SAFETY: see above.
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, InsnHaddr>(p) })
    }))?;
    // SAFETY: `insn` is live during the translation callback.
    let p = unsafe { f(insn) };
    (!p.is_null()).then_some(p as u64)
}

/// Copy bytes of this process's memory at `addr` into `buf` without
/// faulting on unmapped addresses (guest pointers are not trusted):
/// returns how many bytes could be read.
pub fn read_own_memory(addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: process_vm_readv on our own pid writes at most buf.len()
    // bytes into `buf` and reports unreadable remote memory as an error
    // instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    usize::try_from(n).unwrap_or(0)
}

/// `openat(dirfd, path, O_RDONLY | O_CLOEXEC)`: an owned file or the errno.
pub fn open_at(dirfd: c_int, path: &std::ffi::CStr) -> Result<std::fs::File, i32> {
    use std::os::fd::FromRawFd;
    // SAFETY: openat with a NUL-terminated path; the fd it returns is ours.
    let fd = unsafe { libc::openat(dirfd, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A copy of `fd` without close-on-exec at or above `min` (so a path
/// `/proc/self/fd/N` to it survives into the next image).
pub fn dup_inheritable(fd: c_int, min: c_int) -> Result<c_int, i32> {
    // SAFETY: fcntl(F_DUPFD) has no memory arguments.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD, min) };
    if n < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EBADF))
    } else {
        Ok(n)
    }
}

/// Close a descriptor made by [`dup_inheritable`] (an exec that failed).
pub fn close_fd(fd: c_int) {
    // SAFETY: closing a descriptor we made.
    unsafe { libc::close(fd) };
}

/// Does the calling process's effective group set contain `gid`?
pub fn in_group(gid: u32) -> bool {
    // SAFETY: getegid cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = [0 as libc::gid_t; 256];
    // SAFETY: getgroups writes at most groups.len() entries.
    let n = unsafe { libc::getgroups(groups.len() as c_int, groups.as_mut_ptr()) };
    groups[..usize::try_from(n).unwrap_or(0)].contains(&gid)
}

/// The calling process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// `execve(path, argv, envp)`; returns the errno if it failed.
pub fn execve(path: &std::ffi::CStr, argv: &[std::ffi::CString], env: &[std::ffi::CString]) -> i32 {
    let mut a: Vec<*const c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const c_char> = env.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NUL-terminated path and NULL-terminated arrays of pointers to
    // NUL-terminated strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
