// SPDX-License-Identifier: GPL-2.0-or-later
//! The QEMU plugin C API (qemu-plugin.h), the part guestview uses. All FFI
//! of the plugin lives here.
//!
//! One library serves QEMUs with different plugin API versions (Debian's
//! QEMU 7.2 offers v1, guestview's QEMU 10.2 v5). The functions every
//! version has are declared `extern "C"` (their signatures are the same in
//! 7.2's and 10.2's headers); everything newer than v1 is looked up with
//! `dlsym(RTLD_DEFAULT, …)` when the library is loaded, and a constructor
//! (an `.init_array` entry, run by the dynamic loader before QEMU reads
//! `qemu_plugin_version`) declares the version those look-ups found. A
//! function whose signature changed between versions
//! (`qemu_plugin_insn_data`) is called the way the declared version says.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// `qemu_plugin_id_t`.
pub type qemu_plugin_id_t = u64;

/// `qemu_info_t` (the part common to every API version: 7.2's and 10.2's
/// layouts agree up to `system_emulation`).
#[repr(C)]
pub struct qemu_info_t {
    /// Guest architecture (`"mips"`, …).
    pub target_name: *const c_char,
    /// Oldest plugin API version QEMU accepts.
    pub version_min: c_int,
    /// Newest plugin API version QEMU offers.
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

/// Opaque register handle (API v2+).
#[repr(C)]
pub struct qemu_plugin_register {
    _opaque: [u8; 0],
}

/// glib's `GByteArray`.
#[repr(C)]
struct GByteArray {
    data: *mut u8,
    len: c_uint,
}

/// glib's `GArray`.
#[repr(C)]
struct GArray {
    data: *mut c_char,
    len: c_uint,
}

/// `qemu_plugin_reg_descriptor` (API v2+).
#[repr(C)]
struct qemu_plugin_reg_descriptor {
    handle: *mut qemu_plugin_register,
    name: *const c_char,
    feature: *const c_char,
}

/// `QEMU_PLUGIN_CB_NO_REGS`.
pub const QEMU_PLUGIN_CB_NO_REGS: c_int = 0;
/// `QEMU_PLUGIN_DISCON_EXCEPTION`.
pub const QEMU_PLUGIN_DISCON_EXCEPTION: c_int = 1 << 1;

/// `void (*)(unsigned int vcpu_index, void *userdata)`.
pub type vcpu_udata_cb = extern "C" fn(c_uint, *mut c_void);
/// `void (*)(qemu_plugin_id_t, unsigned int vcpu_index)`.
pub type vcpu_simple_cb = extern "C" fn(qemu_plugin_id_t, c_uint);
/// `void (*)(qemu_plugin_id_t, void *userdata)`.
pub type udata_cb = extern "C" fn(qemu_plugin_id_t, *mut c_void);
/// Translation callback.
pub type tb_trans_cb = extern "C" fn(qemu_plugin_id_t, *mut qemu_plugin_tb);
/// Syscall entry: number and eight arguments.
pub type syscall_cb =
    extern "C" fn(qemu_plugin_id_t, c_uint, i64, u64, u64, u64, u64, u64, u64, u64, u64);
/// Syscall return: number and return value.
pub type syscall_ret_cb = extern "C" fn(qemu_plugin_id_t, c_uint, i64, i64);
/// Discontinuity: vCPU, `enum qemu_plugin_discon_type`, from PC, to PC.
pub type discon_cb = extern "C" fn(qemu_plugin_id_t, c_uint, c_int, u64, u64);

// Present in every plugin API version, with the same signature.
extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: qemu_plugin_id_t, cb: tb_trans_cb);
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut qemu_plugin_insn,
        cb: vcpu_udata_cb,
        flags: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_tb_n_insns(tb: *const qemu_plugin_tb) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const qemu_plugin_tb, idx: usize) -> *mut qemu_plugin_insn;
    fn qemu_plugin_insn_vaddr(insn: *const qemu_plugin_insn) -> u64;
    fn qemu_plugin_insn_size(insn: *const qemu_plugin_insn) -> usize;
    fn qemu_plugin_register_vcpu_init_cb(id: qemu_plugin_id_t, cb: vcpu_simple_cb);
    fn qemu_plugin_register_vcpu_syscall_cb(id: qemu_plugin_id_t, cb: syscall_cb);
    fn qemu_plugin_register_vcpu_syscall_ret_cb(id: qemu_plugin_id_t, cb: syscall_ret_cb);
    fn qemu_plugin_register_atexit_cb(id: qemu_plugin_id_t, cb: udata_cb, userdata: *mut c_void);
}

// glib, which every plugin-enabled QEMU links dynamically (the plugin API
// hands out GArray and takes GByteArray).
extern "C" {
    fn g_byte_array_sized_new(reserved: c_uint) -> *mut GByteArray;
    fn g_byte_array_set_size(array: *mut GByteArray, len: c_uint) -> *mut GByteArray;
    fn g_byte_array_free(array: *mut GByteArray, free_segment: c_int) -> *mut u8;
    fn g_array_free(array: *mut GArray, free_segment: c_int) -> *mut c_char;
}

/// API v1 `const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *)`.
type InsnDataV1 = unsafe extern "C" fn(*const qemu_plugin_insn) -> *const c_void;
/// API v3+ `size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *, void *dest, size_t len)`.
type InsnDataV3 = unsafe extern "C" fn(*const qemu_plugin_insn, *mut c_void, usize) -> usize;
/// API v2+ `GArray *qemu_plugin_get_registers(void)`.
type GetRegisters = unsafe extern "C" fn() -> *mut GArray;
/// API v2–v5 `int qemu_plugin_read_register(struct qemu_plugin_register *, GByteArray *)`
/// (v6 made it return bool: [`check_api`] refuses v6).
type ReadRegister = unsafe extern "C" fn(*mut qemu_plugin_register, *mut GByteArray) -> c_int;
/// API v4+ `bool qemu_plugin_read_memory_vaddr(uint64_t addr, GByteArray *data, size_t len)`.
type ReadMemoryVaddr = unsafe extern "C" fn(u64, *mut GByteArray, usize) -> bool;
/// `void qemu_plugin_register_vcpu_discon_cb(qemu_plugin_id_t, enum qemu_plugin_discon_type, cb)`.
type RegisterDiscon = unsafe extern "C" fn(qemu_plugin_id_t, c_int, discon_cb);

/// The plugin API entry points this QEMU exports beyond v1, found at load time.
struct Entry {
    insn_data: *mut c_void,
    get_registers: Option<GetRegisters>,
    read_register: Option<ReadRegister>,
    read_memory_vaddr: Option<ReadMemoryVaddr>,
    register_discon: Option<RegisterDiscon>,
    write_register: bool,
    syscall_filter: bool,
    register_filter: Option<RegisterFilter>,
}

/// `qemu_plugin_vcpu_syscall_filter_cb_t`.
pub type SyscallFilterCb = extern "C" fn(
    qemu_plugin_id_t,
    c_uint,
    i64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    *mut u64,
) -> bool;
type RegisterFilter = unsafe extern "C" fn(qemu_plugin_id_t, SyscallFilterCb);

// SAFETY: the entry holds addresses of QEMU functions, valid and callable
// from any thread for the life of the process.
unsafe impl Send for Entry {}
// SAFETY: as above; it is never written after its initialisation.
unsafe impl Sync for Entry {}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name is always
    // safe to call; it returns null when the symbol does not exist.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

fn entry() -> &'static Entry {
    static ENTRY: OnceLock<Entry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let p = |n: &CStr| {
            let f = lookup(n);
            (!f.is_null()).then_some(f)
        };
        // SAFETY (each transmute below): the address is the symbol of that
        // name in QEMU's plugin API, whose C signature is the type named.
        // read_register's v6 signature differs; check_api refuses v6.
        Entry {
            insn_data: lookup(c"qemu_plugin_insn_data"),
            get_registers: p(c"qemu_plugin_get_registers")
                // SAFETY: see above.
                .map(|f| unsafe { std::mem::transmute::<*mut c_void, GetRegisters>(f) }),
            read_register: p(c"qemu_plugin_read_register")
                // SAFETY: see above.
                .map(|f| unsafe { std::mem::transmute::<*mut c_void, ReadRegister>(f) }),
            read_memory_vaddr: p(c"qemu_plugin_read_memory_vaddr")
                // SAFETY: see above.
                .map(|f| unsafe { std::mem::transmute::<*mut c_void, ReadMemoryVaddr>(f) }),
            register_discon: p(c"qemu_plugin_register_vcpu_discon_cb")
                // SAFETY: see above.
                .map(|f| unsafe { std::mem::transmute::<*mut c_void, RegisterDiscon>(f) }),
            write_register: p(c"qemu_plugin_write_register").is_some(),
            syscall_filter: p(c"qemu_plugin_register_vcpu_syscall_filter_cb").is_some(),
            register_filter: p(c"qemu_plugin_register_vcpu_syscall_filter_cb")
                // SAFETY: see above.
                .map(|f| unsafe { std::mem::transmute::<*mut c_void, RegisterFilter>(f) }),
        }
    })
}

/// Which plugin API entry points this QEMU exports (what the load-time
/// probes found).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// `qemu_plugin_read_register` and `qemu_plugin_get_registers` (v2+).
    pub read_register: bool,
    /// `qemu_plugin_read_memory_vaddr` (v4+).
    pub read_memory: bool,
    /// `qemu_plugin_write_register` (v5+).
    pub write_register: bool,
    /// `qemu_plugin_register_vcpu_discon_cb`.
    pub discon: bool,
    /// `qemu_plugin_register_vcpu_syscall_filter_cb` (our patch series, QEMU 11).
    pub syscall_filter: bool,
}

/// What this QEMU exports.
pub fn probes() -> Probes {
    let e = entry();
    Probes {
        read_register: e.read_register.is_some() && e.get_registers.is_some(),
        read_memory: e.read_memory_vaddr.is_some(),
        write_register: e.write_register,
        discon: e.register_discon.is_some(),
        syscall_filter: e.syscall_filter,
    }
}

/// The plugin API version to declare for what the probes found: 1 without
/// register access (QEMU 7.2), 5 with `write_register`, 4 with memory read
/// but no `write_register`; 2 for a QEMU with registers but no memory read,
/// which QEMU accepts and [`check_api`] then refuses with a clear message.
pub fn declared_version(p: &Probes) -> c_int {
    if !p.read_register {
        1
    } else if p.write_register {
        5
    } else if p.read_memory {
        4
    } else {
        2
    }
}

/// API versions this library can serve.
pub const SUPPORTED: &str = "v1 (Debian's QEMU 7.2) and v4-v5 (guestview's QEMU 10.2 is v5)";

/// Can this library serve a QEMU that offers API versions `min..=cur`,
/// having declared `declared`? `Err` says which version and why not.
pub fn check_api(declared: c_int, min: c_int, cur: c_int) -> Result<c_int, String> {
    if cur > 5 {
        return Err(format!(
            "QEMU offers plugin API v{cur}, newer than this libguestview.so knows (it serves {SUPPORTED}; v6 changed how registers are read): use a guestview built for that QEMU"
        ));
    }
    if !(min..=cur).contains(&declared) {
        return Err(format!(
            "QEMU accepts plugin API v{min}-v{cur} but this libguestview.so could only declare v{declared} for it (it serves {SUPPORTED})"
        ));
    }
    match declared {
        1 | 4 | 5 => Ok(declared),
        v => Err(format!(
            "QEMU offers plugin API v{cur} with register access but without qemu_plugin_read_memory_vaddr (v{v}); this libguestview.so serves {SUPPORTED}"
        )),
    }
}

/// `qemu_plugin_version`: the API version this library asks for. QEMU reads
/// it right after loading the library; [`choose_api_at_load`] sets it first.
#[no_mangle]
pub static qemu_plugin_version: AtomicI32 = AtomicI32::new(1);

/// The version declared at load time.
pub fn declared() -> c_int {
    qemu_plugin_version.load(Ordering::Relaxed)
}

/// Runs when the dynamic loader maps the library (`.init_array`), before
/// QEMU reads `qemu_plugin_version`: declare the version QEMU's exports say.
extern "C" fn choose_api_at_load() {
    let v = declared_version(&probes());
    qemu_plugin_version.store(v, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static CHOOSE_API_AT_LOAD: extern "C" fn() = choose_api_at_load;

/// Registering callbacks. Only call from `qemu_plugin_install` (or later
/// from a callback), with the id QEMU gave.
pub mod register {
    use super::*;

    /// `qemu_plugin_register_vcpu_tb_trans_cb`.
    pub fn tb_trans(id: qemu_plugin_id_t, cb: tb_trans_cb) {
        // SAFETY: a plain extern "C" fn with QEMU's id, as the API requires.
        unsafe { qemu_plugin_register_vcpu_tb_trans_cb(id, cb) }
    }

    /// `qemu_plugin_register_vcpu_init_cb`.
    pub fn vcpu_init(id: qemu_plugin_id_t, cb: vcpu_simple_cb) {
        // SAFETY: as above.
        unsafe { qemu_plugin_register_vcpu_init_cb(id, cb) }
    }

    /// `qemu_plugin_register_vcpu_syscall_filter_cb`, where QEMU has it;
    /// whether it was registered.
    pub fn syscall_filter(id: qemu_plugin_id_t, cb: super::SyscallFilterCb) -> bool {
        match super::entry().register_filter {
            Some(f) => {
                // SAFETY: QEMU's registration function (found by name, its
                // C signature) with QEMU's id and a plain extern "C" fn.
                unsafe { f(id, cb) };
                true
            }
            None => false,
        }
    }

    /// `qemu_plugin_register_vcpu_syscall_cb` and `…_syscall_ret_cb`.
    pub fn syscalls(id: qemu_plugin_id_t, enter: syscall_cb, ret: syscall_ret_cb) {
        // SAFETY: as above.
        unsafe {
            qemu_plugin_register_vcpu_syscall_cb(id, enter);
            qemu_plugin_register_vcpu_syscall_ret_cb(id, ret);
        }
    }

    /// `qemu_plugin_register_atexit_cb` (no user data).
    pub fn atexit(id: qemu_plugin_id_t, cb: udata_cb) {
        // SAFETY: as above; the user data is null and never dereferenced.
        unsafe { qemu_plugin_register_atexit_cb(id, cb, std::ptr::null_mut()) }
    }

    /// Exception discontinuities; `false` if this QEMU has no discon API.
    pub fn exceptions(id: qemu_plugin_id_t, cb: discon_cb) -> bool {
        let Some(f) = entry().register_discon else {
            return false;
        };
        // SAFETY: f is QEMU's qemu_plugin_register_vcpu_discon_cb.
        unsafe { f(id, QEMU_PLUGIN_DISCON_EXCEPTION, cb) };
        true
    }

    /// Call `cb` when the instruction executes, with its address as the user
    /// data. Only during a translation callback, with its live handle.
    pub fn insn_exec_with_vaddr(insn: Insn<'_>, cb: vcpu_udata_cb) {
        // SAFETY: the handle is live in this translation callback; the
        // user data is the address as an integer, never dereferenced.
        unsafe {
            qemu_plugin_register_vcpu_insn_exec_cb(
                insn.0,
                cb,
                QEMU_PLUGIN_CB_NO_REGS,
                insn.vaddr() as usize as *mut c_void,
            )
        }
    }
}

/// A translation block, valid during its translation callback only.
#[derive(Clone, Copy)]
pub struct Tb<'a>(*mut qemu_plugin_tb, std::marker::PhantomData<&'a ()>);

/// An instruction of a translation block, valid as long as the block is.
#[derive(Clone, Copy)]
pub struct Insn<'a>(*mut qemu_plugin_insn, std::marker::PhantomData<&'a ()>);

impl<'a> Tb<'a> {
    /// Wrap the handle QEMU passed to a translation callback.
    ///
    /// # Safety
    /// `tb` must be the live handle of the current translation callback,
    /// and the result must not outlive it.
    pub unsafe fn new(tb: *mut qemu_plugin_tb) -> Tb<'a> {
        Tb(tb, std::marker::PhantomData)
    }

    /// Its instructions.
    pub fn insns(self) -> impl Iterator<Item = Insn<'a>> {
        // SAFETY: the handle is live (see `new`).
        let n = unsafe { qemu_plugin_tb_n_insns(self.0) };
        (0..n).filter_map(move |i| {
            // SAFETY: i < n_insns, as the API requires.
            let p = unsafe { qemu_plugin_tb_get_insn(self.0, i) };
            (!p.is_null()).then_some(Insn(p, std::marker::PhantomData))
        })
    }
}

impl Insn<'_> {
    /// Where QEMU keeps the instruction's bytes in the host's address space
    /// (user mode: guest address + QEMU's `guest_base`).
    pub fn haddr(self) -> Option<u64> {
        insn_haddr(self.0)
    }

    /// Guest virtual address.
    pub fn vaddr(self) -> u64 {
        // SAFETY: the handle is live (see `Tb::new`).
        unsafe { qemu_plugin_insn_vaddr(self.0) }
    }

    /// Copy up to `out.len()` bytes of the instruction's encoding into
    /// `out`; returns how many were copied.
    pub fn bytes(self, out: &mut [u8]) -> usize {
        // SAFETY: the handle is live (see `Tb::new`).
        let size = unsafe { qemu_plugin_insn_size(self.0) };
        let n = size.min(out.len());
        let f = entry().insn_data;
        if f.is_null() || n == 0 {
            return 0;
        }
        if declared() >= 3 {
            // SAFETY: from v3 on qemu_plugin_insn_data copies at most `n`
            // bytes into `out`, which has room for them.
            let g = unsafe { std::mem::transmute::<*mut c_void, InsnDataV3>(f) };
            // SAFETY: as above.
            return unsafe { g(self.0, out.as_mut_ptr().cast(), n) }.min(n);
        }
        // SAFETY: in v1 qemu_plugin_insn_data returns a pointer to `size`
        // bytes owned by QEMU, valid during the translation callback.
        let g = unsafe { std::mem::transmute::<*mut c_void, InsnDataV1>(f) };
        // SAFETY: as above.
        let p = unsafe { g(self.0) }.cast::<u8>();
        if p.is_null() {
            return 0;
        }
        // SAFETY: p points to at least `size` >= n readable bytes.
        out[..n].copy_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
        n
    }
}

/// A register of the current vCPU (API v2+), from [`registers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register(usize);

impl Register {
    /// As an integer, to keep in an atomic (never 0).
    pub fn to_bits(self) -> usize {
        self.0
    }

    /// From [`Register::to_bits`]; `None` for 0.
    pub fn from_bits(b: usize) -> Option<Register> {
        (b != 0).then_some(Register(b))
    }
}

/// The current vCPU's registers by name. Call in vCPU context (a vCPU
/// init or syscall callback); empty without the register API.
pub fn registers() -> Vec<(String, Register)> {
    let Some(get) = entry().get_registers else {
        return Vec::new();
    };
    // SAFETY: called in vCPU context, as the API requires; the result is a
    // GArray of qemu_plugin_reg_descriptor that we own and free below.
    let arr = unsafe { get() };
    if arr.is_null() {
        return Vec::new();
    }
    let mut out = Vec::new();
    // SAFETY: arr is a valid GArray whose data holds `len` descriptors.
    let (data, len) = unsafe { ((*arr).data, (*arr).len) };
    for i in 0..len as usize {
        // SAFETY: i < len; the descriptors are plain structs in `data`.
        let d = unsafe { &*data.cast::<qemu_plugin_reg_descriptor>().add(i) };
        if d.handle.is_null() || d.name.is_null() {
            continue;
        }
        // SAFETY: QEMU's names are interned NUL-terminated strings.
        let name = unsafe { CStr::from_ptr(d.name) }
            .to_string_lossy()
            .into_owned();
        out.push((name, Register(d.handle as usize)));
    }
    // SAFETY: freeing the array we own (its strings are QEMU's, not freed).
    unsafe { g_array_free(arr, 1) };
    out
}

/// A glib byte buffer for register and memory reads, one per thread.
pub struct ByteBuf(*mut GByteArray);

impl ByteBuf {
    /// A new buffer (glib allocates; no syscall unless malloc needs memory).
    pub fn new() -> Option<ByteBuf> {
        // SAFETY: g_byte_array_sized_new has no preconditions.
        let p = unsafe { g_byte_array_sized_new(64) };
        (!p.is_null()).then_some(ByteBuf(p))
    }

    fn reset(&mut self) {
        // SAFETY: self.0 is a live GByteArray we own.
        unsafe { g_byte_array_set_size(self.0, 0) };
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: a live GByteArray holds `len` initialised bytes at `data`.
        unsafe {
            let a = &*self.0;
            if a.data.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(a.data, a.len as usize)
        }
    }
}

impl Drop for ByteBuf {
    fn drop(&mut self) {
        // SAFETY: freeing the array we own, with its data.
        unsafe { g_byte_array_free(self.0, 1) };
    }
}

/// Read a register of the current vCPU (in a callback that may read
/// registers: syscall, vCPU init, discontinuity). The value is in the
/// guest's byte order (`big_endian`); `None` if QEMU refused.
pub fn read_register(reg: Register, buf: &mut ByteBuf, big_endian: bool) -> Option<u64> {
    let f = entry().read_register?;
    buf.reset();
    // SAFETY: reg came from qemu_plugin_get_registers; buf is a live
    // GByteArray; we are in a callback allowed to read registers.
    let n = unsafe { f(reg.0 as *mut qemu_plugin_register, buf.0) };
    let b = buf.bytes();
    let n = usize::try_from(n)
        .ok()
        .filter(|n| (1..=8).contains(n) && *n <= b.len())?;
    let mut w = [0u8; 8];
    Some(if big_endian {
        w[8 - n..].copy_from_slice(&b[..n]);
        u64::from_be_bytes(w)
    } else {
        w[..n].copy_from_slice(&b[..n]);
        u64::from_le_bytes(w)
    })
}

/// Copy `out.len()` bytes of guest memory at `addr` (API v4+; in vCPU
/// context). `false` if any of them is not readable.
pub fn read_memory(addr: u64, out: &mut [u8], buf: &mut ByteBuf) -> bool {
    let Some(f) = entry().read_memory_vaddr else {
        return false;
    };
    if out.is_empty() {
        return true;
    }
    buf.reset();
    // SAFETY: buf is a live GByteArray that QEMU grows to `len` bytes; we
    // are in vCPU context.
    if !unsafe { f(addr, buf.0, out.len()) } {
        return false;
    }
    let b = buf.bytes();
    if b.len() < out.len() {
        return false;
    }
    out.copy_from_slice(&b[..out.len()]);
    true
}

/// What the plugin keeps of guestview's host ring: read-only views of its
/// two position words and the size of its data area (the position map,
/// `ringctl`, of the eBPF programs: see bpf/src/bpf/hostview.h).
#[derive(Clone, Copy)]
pub struct HostRing {
    /// The producer position: where the next host record will go.
    pub prod: &'static std::sync::atomic::AtomicU64,
    /// The consumer position: how far guestview has read.
    pub cons: &'static std::sync::atomic::AtomicU64,
    /// Bytes of record space.
    pub size: u64,
}

impl HostRing {
    /// Bytes written and not yet read by guestview.
    #[inline]
    pub fn backlog(&self) -> u64 {
        let c = self.cons.load(std::sync::atomic::Ordering::Acquire);
        self.prod
            .load(std::sync::atomic::Ordering::Acquire)
            .saturating_sub(c)
    }
}

/// Offsets in the position page (struct gv_ring_ctl; the tests compare
/// them with the loader's, `guestview_bpf::RING_CTL_LAYOUT`).
const RING_CTL_PROD: usize = 0;
const RING_CTL_CONS: usize = 64;
const RING_CTL_SIZE: usize = 128;
/// sizeof(struct gv_ring_ctl): the map's value size.
const RING_CTL_BYTES: u64 = 4096;

/// Receive one file descriptor (SCM_RIGHTS) from the unix socket `sock`
/// without waiting, then map the host ring's position page behind
/// it read-only. The descriptors are closed either way: the mappings are
/// all the plugin keeps.
pub fn map_host_position(sock: c_int) -> Result<HostRing, HostPosError> {
    let fd = recv_fd(sock);
    // SAFETY: closing a descriptor number the caller handed us for this.
    unsafe { libc::close(sock) };
    let fd = fd?;
    let r = map_host_ring(fd);
    // SAFETY: we own fd (received above); the mappings outlive it.
    unsafe { libc::close(fd) };
    r
}

fn map_host_ring(fd: c_int) -> Result<HostRing, HostPosError> {
    // Only ever map guestview's position map, an array (map_type 2) of one
    // page-sized value: whatever else sits at that number (a guest's
    // descriptor, in an image started by a guest exec) is refused.
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let field = |name: &str| {
        info.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().and_then(|v| v.parse::<u64>().ok()))?
        })
    };
    if field("map_type:") != Some(2)
        || field("value_size:") != Some(RING_CTL_BYTES)
        || field("max_entries:") != Some(1)
    {
        return Err(HostPosError::Unavailable);
    }
    // SAFETY: a new read-only shared mapping of the map's one value (the
    // kernel clears VM_MAYWRITE on it, so it cannot be made writable);
    // checked for failure below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            RING_CTL_BYTES as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let err = std::io::Error::last_os_error();
        return Err(HostPosError::Failed(format!(
            "hostpos: cannot map the host ring's positions: {err}"
        )));
    }
    let word = |off: usize| {
        // SAFETY: the page is mapped for the life of the process (never
        // unmapped) and page-aligned; off is an 8-aligned field offset of
        // gv_ring_ctl, a u64 the programs and guestview access atomically.
        unsafe {
            &*p.cast::<u8>()
                .add(off)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    };
    let size = word(RING_CTL_SIZE).load(std::sync::atomic::Ordering::Acquire);
    if size == 0 {
        return Err(HostPosError::Failed(
            "hostpos: the host ring has no size".to_string(),
        ));
    }
    Ok(HostRing {
        prod: word(RING_CTL_PROD),
        cons: word(RING_CTL_CONS),
        size,
    })
}

fn recv_fd(sock: c_int) -> Result<c_int, HostPosError> {
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
        // Nothing there (no socket, or nothing sent: an image started by a
        // guest exec, whose descriptor is gone).
        return Err(HostPosError::Unavailable);
    }
    // SAFETY: CMSG_FIRSTHDR reads msg's control fields set above.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(HostPosError::Unavailable);
    }
    // SAFETY: cmsg points into cbuf (CMSG_FIRSTHDR checked the length).
    let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_LEN is arithmetic.
    let one_fd = unsafe { libc::CMSG_LEN(4) } as usize;
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || len < one_fd {
        return Err(HostPosError::Unavailable);
    }
    // SAFETY: the control message holds at least one int (checked above).
    Ok(unsafe { libc::CMSG_DATA(cmsg).cast::<c_int>().read_unaligned() })
}

/// Why the plugin reads no host ring positions.
#[derive(Debug)]
pub enum HostPosError {
    /// No ring descriptor was there to take: expected in an image started
    /// by a guest exec; its calls are timed instead.
    Unavailable,
    /// Something went wrong that should not (said once on stderr).
    Failed(String),
}

/// API v1 `void *qemu_plugin_insn_haddr(const struct qemu_plugin_insn *)`:
/// in user mode, the host address of the instruction's bytes.
type InsnHaddr = unsafe extern "C" fn(*const qemu_plugin_insn) -> *mut c_void;

/// Where QEMU keeps the bytes of a guest instruction, in the host's
/// address space (user mode: guest address + QEMU's `guest_base`). Only
/// call during a translation callback.
fn insn_haddr(insn: *mut qemu_plugin_insn) -> Option<u64> {
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

/// `fcntl(-1, cmd)`: a syscall that fails and does nothing, for guestview's
/// eBPF programs to see (see `shmem_proto::HOSTPOS_FCNTL_CMD`).
pub fn say_untimed(cmd: c_int) {
    // SAFETY: fcntl on an invalid descriptor fails with EBADF; no memory
    // is passed.
    unsafe { libc::fcntl(-1, cmd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(read_register: bool, read_memory: bool, write_register: bool) -> Probes {
        Probes {
            read_register,
            read_memory,
            write_register,
            ..Default::default()
        }
    }

    #[test]
    fn the_host_ring_positions_are_where_the_loader_puts_them() {
        assert_eq!(
            [
                RING_CTL_PROD,
                RING_CTL_CONS,
                RING_CTL_SIZE,
                RING_CTL_BYTES as usize
            ],
            guestview_bpf::RING_CTL_LAYOUT
        );
    }

    #[test]
    fn the_declared_version_follows_what_qemu_exports() {
        assert_eq!(declared_version(&probes(false, false, false)), 1);
        assert_eq!(declared_version(&probes(true, true, true)), 5);
        assert_eq!(declared_version(&probes(true, true, false)), 4);
        assert_eq!(declared_version(&probes(true, false, false)), 2);
    }

    #[test]
    fn qemus_outside_the_supported_versions_are_refused_by_version() {
        // Debian's 7.2 (min 0, cur 1) and our 10.2 (min 2, cur 5).
        assert_eq!(check_api(1, 0, 1), Ok(1));
        assert_eq!(check_api(5, 2, 5), Ok(5));
        assert_eq!(check_api(4, 2, 4), Ok(4));
        let e = check_api(5, 2, 6).unwrap_err();
        assert!(e.contains("plugin API v6"), "{e}");
        let e = check_api(2, 2, 3).unwrap_err();
        assert!(e.contains("v3") && e.contains("read_memory_vaddr"), "{e}");
        let e = check_api(1, 2, 5).unwrap_err();
        assert!(e.contains("v2-v5"), "{e}");
    }
}
