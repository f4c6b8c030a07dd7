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

/// Receive one file descriptor (SCM_RIGHTS) from the unix socket `sock`
/// without waiting, then map the BPF ring buffer behind it read-only and
/// return its producer position word. The descriptors are closed either
/// way: the mapping is all the plugin keeps.
pub fn map_host_position(sock: c_int) -> Result<&'static std::sync::atomic::AtomicU64, String> {
    let fd = recv_fd(sock);
    // SAFETY: closing a descriptor number the caller handed us for this.
    unsafe { libc::close(sock) };
    let fd = fd?;
    // SAFETY: sysconf has no memory effects.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .map_err(|_| "hostpos: no page size".to_string())?;
    // SAFETY: a new read-only shared mapping of one page of the ring buffer
    // map at offset one page (its producer page, which the kernel lets any
    // holder of the descriptor map read-only); the kernel checks the rest.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            page as libc::off_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: we own fd (received above); the mapping outlives it.
    unsafe { libc::close(fd) };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "hostpos: cannot map the host ring's producer page: {err}"
        ));
    }
    // SAFETY: the page is mapped for the life of the process (never
    // unmapped) and page-aligned; its first word is the kernel's u64
    // producer position, which we only ever load atomically.
    Ok(unsafe { &*p.cast::<std::sync::atomic::AtomicU64>() })
}

fn recv_fd(sock: c_int) -> Result<c_int, String> {
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: std::ptr::addr_of_mut!(byte).cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message (CMSG_SPACE(4) is 24).
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!(
            "hostpos: no ring descriptor on fd {sock}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: CMSG_FIRSTHDR reads msg's control fields set above.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(format!("hostpos: fd {sock} sent no descriptor"));
    }
    // SAFETY: cmsg points into cbuf (CMSG_FIRSTHDR checked the length).
    let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_LEN is arithmetic.
    let one_fd = unsafe { libc::CMSG_LEN(4) } as usize;
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || len < one_fd {
        return Err(format!(
            "hostpos: fd {sock} sent something else than a descriptor"
        ));
    }
    // SAFETY: the control message holds at least one int (checked above).
    Ok(unsafe { libc::CMSG_DATA(cmsg).cast::<c_int>().read_unaligned() })
}
