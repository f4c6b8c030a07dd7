// SPDX-License-Identifier: GPL-2.0-or-later
//! `libguestview.so`: a QEMU TCG plugin that records every guest syscall —
//! number, arguments, guest PC of the syscall instruction, return value,
//! host thread, vCPU, CLOCK_MONOTONIC at entry and return — into guestview's
//! shared-memory ring (`ring=PATH`), or into a trace file of its own
//! (`out=FILE`), or into a ring it creates and announces.
//!
//! One library serves every QEMU guestview supports: it declares its plugin
//! API version when it is loaded (see [`sys`]). On API v1 (Debian's QEMU
//! 7.2) the guest PC comes from instrumenting syscall instructions; from v4
//! on (guestview's QEMU 10.2 is v5) it is read from the PC register where
//! QEMU exposes it, path arguments are read from guest memory, and guest
//! exceptions (faults, illegal instructions, traps) are recorded with their
//! PC and signal through the discontinuity callbacks.
//!
//! The hot path makes no syscalls: timestamps come from the vDSO, records go
//! to shared memory. Whatever the plugin must do that makes syscalls (thread
//! set-up, waiting for ring space, writing `out=`) happens outside the
//! window between a guest call's entry and return timestamps and is
//! announced with a `PluginSpan` record, so the correlator never attributes
//! it to the guest.
//!
//! Callbacks never panic across the FFI boundary and never take a lock
//! shared between vCPUs on the ring path (per-thread state is thread-local).

mod args;
mod exec;
mod filter;
mod insn;
mod out;
mod paths;
mod regs;
mod sys;

use parking_lot::Mutex;
use shmem_proto::record::{
    note_bytes, PluginInfo, CAP_DISCON, CAP_MEMORY_READ, CAP_PC_REGISTER, CAP_REGISTER_READ,
    CAP_SIGNAL_REGISTER, CAP_SYSCALL_FILTER, EXEC_REFUSED_UNFOLLOWED, NOTE_EXEC, NOTE_EXEC_REFUSED,
    SPAN_EXEC_CHECK, SPAN_FILE_OUTPUT, SPAN_HOST_BACKLOG, SPAN_RING_WAIT, SPAN_SETUP,
};
use shmem_proto::{
    monotonic_ns, Arch, GuestRecord, Origin, Producer, Pushed, Region, RegionParams,
};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

struct Plugin {
    arch: Arch,
    regs: regs::ArchRegs,
    region: Option<&'static Region>,
    out: Option<Mutex<out::OutTrace>>,
    /// Guest numbers of calls after which this process image may be gone
    /// (exec, exit, signals): `out=` is flushed before them.
    flush_before: Vec<i64>,
    /// What this QEMU offers (announced in every ProcessStart record).
    info: PluginInfo,
    /// Path arguments are read from guest memory (API v4+).
    read_paths: bool,
    /// Which argument of each guest syscall is a path.
    paths: paths::PathArgs,
    /// `exec=on`: how to start QEMU again on a program the guest execs.
    restart: Option<exec::Restart>,
    /// The policy's guest layer (`policy=`), when QEMU lets plugins answer calls.
    filter: Option<filter::Rules>,
}

/// Every vCPU so far has a readable PC register: syscall instructions need
/// no instrumentation. Until the first vCPU init says so (and always on API
/// v1, and on QEMUs that expose no PC register, such as 10.2 for MIPS) the
/// plugin instruments them.
static PC_FROM_REGISTER: AtomicBool = AtomicBool::new(false);

static PLUGIN: OnceLock<Plugin> = OnceLock::new();
/// The host ring's positions (a read-only mapping of its position page),
/// when guestview handed it over (`hostpos=FD`).
static HOST_POS: OnceLock<sys::HostRing> = OnceLock::new();

/// The host ring's producer position now (one load from memory the kernel
/// writes as it records each host syscall), if the plugin has it.
#[inline]
fn hpos() -> Option<u64> {
    HOST_POS.get().map(|h| h.prod.load(Ordering::Acquire))
}

/// How long the host ring's reader may make no progress at all before a
/// guest thread stops waiting for it (it is gone or stopped; the eBPF
/// programs then count what they cannot record).
const HOST_READER_STALL_NS: u64 = 5_000_000_000;
/// What must happen before the guest's first instruction (see `install`).
struct BeforeGuest {
    hold: Option<&'static Region>,
    hostpos: Option<i32>,
    wait: Option<&'static Region>,
    hide: Option<std::path::PathBuf>,
}

static BEFORE_FIRST_TB: Mutex<Option<BeforeGuest>> = Mutex::new(None);
static FIRST_TB_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Hold the guest until guestview releases it, map the host ring's
/// producer page, wait for a watcher, hide QEMU's files: in the first
/// translation callback, before any guest instruction runs. A failure
/// ends QEMU: the guest must not run unwatched.
fn before_guest() {
    let Some(b) = BEFORE_FIRST_TB.lock().take() else {
        return;
    };
    let r = (|| -> Result<(), String> {
        if let Some(r) = b.hold {
            hold_until_released(r)?;
        }
        if let Some(sock) = b.hostpos {
            // Sent before the release; without it the host view times every
            // host call instead (slower, as exact).
            match sys::map_host_position(sock) {
                Ok(p) => {
                    let _ = HOST_POS.set(p);
                    // Now that every guest call will carry positions, the
                    // eBPF programs may stop timing this process.
                    sys::say_untimed(shmem_proto::HOSTPOS_FCNTL_CMD);
                }
                Err(sys::HostPosError::Unavailable) => {}
                Err(sys::HostPosError::Failed(e)) => {
                    eprintln!("guestview plugin: {e}; host calls will be placed by time")
                }
            }
        }
        if let Some(r) = b.wait {
            eprintln!(
                "guestview: waiting for a watcher to attach to {}",
                r.path().display()
            );
            while !r.consumer_attached() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if let Some(dir) = &b.hide {
            hide_mounts(dir)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        eprintln!("guestview plugin: {e}");
        // SAFETY: _exit ends the process at once; nothing of ours is
        // half-written that the exit could tear.
        unsafe { libc::_exit(1) };
    }
}

/// Bumped in the child of every fork: thread state from before is the parent's.
static FORK_GEN: AtomicU64 = AtomicU64::new(0);
/// The process that has announced itself with a ProcessStart record.
static ANNOUNCED_PID: AtomicU32 = AtomicU32::new(0);
/// Callbacks that found their thread state busy or gone (should stay 0).
static REENTERED: AtomicU64 = AtomicU64::new(0);

struct ThreadState {
    producer: Option<Producer<'static>>,
    pid: u32,
    tid: u32,
    vcpu: u32,
    fork_gen: u64,
    /// This vCPU's registers (API v4+; all `None` on v1).
    regs: regs::VcpuRegs,
    /// Scratch buffer for register and memory reads (API v4+).
    buf: Option<sys::ByteBuf>,
    /// Entry of the current guest call (for `out=`).
    pending: Option<out::Pending>,
    last_exit_arg: Option<i64>,
    /// The host ring's consumer position when this thread last looked.
    host_cons: u64,
}

thread_local! {
    static LAST_PC: Cell<u64> = const { Cell::new(0) };
    static TS: RefCell<Option<ThreadState>> = const { RefCell::new(None) };
}

impl ThreadState {
    fn origin(&self, t_ns: u64) -> Origin {
        Origin {
            vcpu: self.vcpu,
            pid: self.pid,
            tid: self.tid,
            t_ns,
        }
    }

    /// Push a record; a wait for space becomes a PluginSpan of its own.
    fn push(&mut self, rec: &GuestRecord) {
        let Some(p) = self.producer.as_mut() else {
            return;
        };
        let p0 = hpos();
        if let Pushed::Waited { start_ns, end_ns } = p.push(rec) {
            let span = GuestRecord::PluginSpan {
                at: Origin {
                    vcpu: self.vcpu,
                    pid: self.pid,
                    tid: self.tid,
                    t_ns: start_ns,
                },
                end_ns,
                reason: SPAN_RING_WAIT,
                hpos: p0.zip(hpos()),
            };
            p.push(&span);
        }
    }

    /// Keep the host ring from overflowing: when more than half of it is
    /// unread, wait until guestview has read it down to a quarter. QEMU
    /// makes host calls (and so do the processes they drive, such as a
    /// tracer) only as fast as guest calls come, so holding guest calls
    /// back here bounds them all: a starved reader costs time, never
    /// records. The wait is a span of the plugin's own (it sleeps).
    fn wait_for_host_reader(&mut self) {
        let Some(h) = HOST_POS.get() else { return };
        // The consumer position as last read: it only grows, so the
        // backlog against it is an upper bound, and the line guestview
        // writes is read again only when that bound looks large.
        let prod = h.prod.load(Ordering::Acquire);
        if prod.saturating_sub(self.host_cons) <= h.size / 2 {
            return;
        }
        self.host_cons = h.cons.load(Ordering::Acquire);
        if prod.saturating_sub(self.host_cons) <= h.size / 2 {
            return;
        }
        let p0 = hpos();
        let t0 = monotonic_ns();
        let mut seen = h.cons.load(Ordering::Acquire);
        let mut since = t0;
        let mut backoff = shmem_proto::Backoff::default();
        while h.backlog() > h.size / 4 {
            backoff.sleep();
            let now = monotonic_ns();
            let c = h.cons.load(Ordering::Acquire);
            if c != seen {
                (seen, since) = (c, now);
            } else if now.saturating_sub(since) > HOST_READER_STALL_NS {
                break;
            }
        }
        let span = GuestRecord::PluginSpan {
            at: self.origin(t0),
            end_ns: monotonic_ns(),
            reason: SPAN_HOST_BACKLOG,
            hpos: p0.zip(hpos()),
        };
        self.push(&span);
    }

    /// Make sure the call's entry and exit records (and `extra` more) can be
    /// pushed without waiting. A wait makes syscalls; between the call's
    /// return timestamp and the publication of its exit record the
    /// correlator would take them for the call's own (the call still looks
    /// open). Room for the span that announces a wait here, the entry, the
    /// exit and the extra records.
    fn reserve(&mut self, extra: u64) {
        let Some(p) = self.producer.as_mut() else {
            return;
        };
        let p0 = hpos();
        if let Pushed::Waited { start_ns, end_ns } = p.reserve_n(3 + extra) {
            let span = GuestRecord::PluginSpan {
                at: self.origin(start_ns),
                end_ns,
                reason: SPAN_RING_WAIT,
                hpos: p0.zip(hpos()),
            };
            self.push(&span);
        }
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        let at = self.origin(monotonic_ns());
        self.push(&GuestRecord::ThreadExit { at });
        if let (Some(pending), Some(plugin)) = (self.pending.take(), PLUGIN.get()) {
            if let Some(out) = &plugin.out {
                {
                    let mut o = out.lock();
                    o.unfinished(pending);
                }
            }
        }
        // The producer closes its ring when dropped.
    }
}

fn set_up_thread(vcpu: u32, gen: u64, parent: Option<u32>) -> ThreadState {
    let p0 = hpos();
    let t0 = monotonic_ns();
    // SAFETY: getpid/gettid/getppid cannot fail and touch no memory.
    let (pid, tid, ppid) = unsafe {
        (
            libc::getpid() as u32,
            libc::gettid() as u32,
            libc::getppid() as u32,
        )
    };
    let plugin = PLUGIN.get();
    let producer = plugin
        .and_then(|p| p.region)
        .and_then(|r| r.claim(pid, tid, vcpu));
    let register_api = plugin.is_some_and(|p| p.info.caps & CAP_REGISTER_READ != 0);
    let regs = match (plugin, register_api) {
        // Filled by this vCPU's init callback; a vCPU beyond the table
        // looks its registers up now (we run in its context).
        (Some(p), true) => regs::load(vcpu).unwrap_or_else(|| regs::VcpuRegs::find(&p.regs)),
        _ => regs::VcpuRegs::default(),
    };
    let mut ts = ThreadState {
        producer,
        pid,
        tid,
        vcpu,
        fork_gen: gen,
        regs,
        buf: if register_api {
            sys::ByteBuf::new()
        } else {
            None
        },
        pending: None,
        last_exit_arg: None,
        host_cons: 0,
    };
    if ANNOUNCED_PID.swap(pid, Ordering::AcqRel) != pid {
        let arch = plugin.map_or(0, |p| p.arch.id());
        let mut info = plugin.map(|p| p.info).unwrap_or_default();
        if ts.regs.pc.is_some() {
            info.caps |= CAP_PC_REGISTER;
        }
        if ts.regs.signal_arg.is_some() && info.caps & CAP_DISCON != 0 {
            info.caps |= CAP_SIGNAL_REGISTER;
        }
        ts.push(&GuestRecord::ProcessStart {
            at: ts.origin(t0),
            ppid: parent.unwrap_or(ppid),
            arch,
            plugin: info,
        });
    }
    ts.push(&GuestRecord::ThreadStart { at: ts.origin(t0) });
    let end = monotonic_ns();
    ts.push(&GuestRecord::PluginSpan {
        at: ts.origin(t0),
        end_ns: end,
        reason: SPAN_SETUP,
        hpos: p0.zip(hpos()),
    });
    ts
}

/// Run `f` on this thread's state, setting it up first if this thread (or
/// this forked process) has none yet.
fn with_thread<R>(vcpu: u32, f: impl FnOnce(&mut ThreadState) -> R) -> Option<R> {
    let r = TS.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        let gen = FORK_GEN.load(Ordering::Acquire);
        let stale = slot.as_ref().is_some_and(|ts| ts.fork_gen != gen);
        let mut parent = None;
        if stale {
            // We are the child of a fork: the ring belongs to the parent's
            // thread, which goes on using it. Forget it without closing.
            if let Some(mut old) = slot.take() {
                parent = Some(old.pid);
                if let Some(p) = old.producer.take() {
                    std::mem::forget(p);
                }
                old.pending = None;
                std::mem::forget(old);
            }
        }
        if slot.is_none() {
            *slot = Some(set_up_thread(vcpu, gen, parent));
        }
        slot.as_mut().map(f)
    });
    match r {
        Ok(Some(v)) => Some(v),
        _ => {
            REENTERED.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

extern "C" fn on_syscall_insn(_vcpu: c_uint, udata: *mut c_void) {
    let _ = LAST_PC.try_with(|pc| pc.set(udata as u64));
}

extern "C" fn on_tb_trans(_id: sys::qemu_plugin_id_t, tb: *mut sys::qemu_plugin_tb) {
    if FIRST_TB_PENDING.load(Ordering::Acquire) && FIRST_TB_PENDING.swap(false, Ordering::AcqRel) {
        before_guest();
    }
    let Some(plugin) = PLUGIN.get() else { return };
    // SAFETY: `tb` is the live handle QEMU passed to this translation
    // callback, and the wrapper does not outlive it.
    let tb = unsafe { sys::Tb::new(tb) };
    if plugin.restart.is_some() && !exec::guest_base_known() {
        if let Some(insn) = tb.insns().next() {
            if let Some(h) = insn.haddr() {
                exec::note_guest_base(h, insn.vaddr());
            }
        }
    }
    if PC_FROM_REGISTER.load(Ordering::Relaxed) {
        return;
    }
    let mut buf = [0u8; insn::MAX_LEN];
    for insn in tb.insns() {
        let len = insn.bytes(&mut buf);
        if insn::is_syscall(plugin.arch, &buf[..len]) {
            sys::register::insn_exec_with_vaddr(insn, on_syscall_insn);
        }
    }
}

/// A vCPU starts (on its own thread, before any other callback of it):
/// find its registers.
extern "C" fn on_vcpu_init(_id: sys::qemu_plugin_id_t, vcpu: c_uint) {
    let Some(plugin) = PLUGIN.get() else { return };
    let r = regs::VcpuRegs::find(&plugin.regs);
    regs::store(vcpu, r);
    if r.pc.is_none() {
        // This QEMU does not expose this architecture's PC (10.2: MIPS):
        // instrument syscall instructions, for good.
        NO_PC_REGISTER.store(true, Ordering::Relaxed);
    }
    PC_FROM_REGISTER.store(!NO_PC_REGISTER.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Some vCPU had no readable PC register.
static NO_PC_REGISTER: AtomicBool = AtomicBool::new(false);

/// A path argument read from guest memory, split into ring records.
struct GuestPath {
    arg: u8,
    bytes: [u8; MAX_GUEST_PATH],
    len: usize,
    flags: u16,
}

use shmem_proto::record::{MAX_GUEST_PATH, PATH_CHUNK, PATH_LAST, PATH_TRUNCATED, PATH_UNREADABLE};

impl GuestPath {
    /// Read the NUL-terminated string at `addr`, at most [`MAX_GUEST_PATH`]
    /// bytes, never reading across a 4 KiB boundary in one go (so a string
    /// that ends before an unmapped page is still read whole).
    fn read(arg: u8, addr: u64, buf: &mut sys::ByteBuf) -> GuestPath {
        let mut p = GuestPath {
            arg,
            bytes: [0; MAX_GUEST_PATH],
            len: 0,
            flags: 0,
        };
        while p.len < MAX_GUEST_PATH {
            let at = addr.wrapping_add(p.len as u64);
            let in_page = (4096 - (at & 4095)) as usize;
            let n = in_page.min(MAX_GUEST_PATH - p.len);
            let chunk = &mut p.bytes[p.len..p.len + n];
            if !sys::read_memory(at, chunk, buf) {
                chunk.fill(0);
                p.flags |= PATH_UNREADABLE;
                return p;
            }
            if let Some(z) = chunk.iter().position(|b| *b == 0) {
                chunk[z..].fill(0);
                p.len += z;
                return p;
            }
            p.len += n;
        }
        p.flags |= PATH_TRUNCATED;
        p
    }

    fn chunks(&self) -> u64 {
        (self.len.div_ceil(PATH_CHUNK)).max(1) as u64
    }

    fn push(&self, ts: &mut ThreadState, at: Origin, nr: i64) {
        let n = self.chunks() as usize;
        for i in 0..n {
            let off = i * PATH_CHUNK;
            let len = (self.len - off.min(self.len)).min(PATH_CHUNK);
            let mut bytes = [0u8; PATH_CHUNK];
            bytes[..len].copy_from_slice(&self.bytes[off..off + len]);
            let last = if i + 1 == n {
                PATH_LAST | self.flags
            } else {
                0
            };
            ts.push(&GuestRecord::GuestPath {
                at,
                nr,
                arg: self.arg,
                offset: off as u16,
                bytes,
                len: len as u8,
                flags: last,
            });
        }
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.len]).into_owned()
    }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn on_syscall(
    _id: sys::qemu_plugin_id_t,
    vcpu: c_uint,
    nr: i64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
    a6: u64,
    a7: u64,
    a8: u64,
) {
    let Some(plugin) = PLUGIN.get() else { return };
    let insn_pc = LAST_PC.try_with(|c| c.replace(0)).unwrap_or(0);
    let args = [a1, a2, a3, a4, a5, a6, a7, a8];
    with_thread(vcpu, |ts| {
        // A guest exec is decided before the call's window opens: looking
        // at the file makes host syscalls of the plugin's own.
        let exec_decision = plugin.restart.as_ref().filter(|r| r.is_exec(nr)).map(|r| {
            let p0 = hpos();
            let t0 = monotonic_ns();
            let d = r.decide(nr, &args);
            let span = GuestRecord::PluginSpan {
                at: ts.origin(t0),
                end_ns: monotonic_ns(),
                reason: SPAN_EXEC_CHECK,
                hpos: p0.zip(hpos()),
            };
            ts.push(&span);
            (r, d)
        });
        let pc = match (ts.regs.pc, ts.buf.as_mut()) {
            (Some(_), Some(buf)) => ts
                .regs
                .syscall_pc(&plugin.regs, plugin.arch.big_endian(), buf),
            _ => (insn_pc != 0).then_some(insn_pc),
        };
        // Reading guest memory takes QEMU's mmap lock: before the entry
        // timestamp, so that nothing it might wait for lands in the window.
        let path = if plugin.read_paths {
            match (plugin.paths.arg(nr), ts.buf.as_mut()) {
                (Some(i), Some(buf)) => Some(GuestPath::read(
                    i,
                    plugin.regs.address(args[usize::from(i)]),
                    buf,
                )),
                _ => None,
            }
        } else {
            None
        };
        ts.wait_for_host_reader();
        ts.reserve(path.as_ref().map_or(0, GuestPath::chunks));
        // Everything above may make syscalls; from here to the return
        // callback's position and timestamp, nothing of ours does.
        let p0 = hpos();
        let t = monotonic_ns();
        let at = ts.origin(t);
        ts.push(&GuestRecord::SysEnter {
            at,
            nr,
            args,
            pc,
            hpos: p0,
        });
        if let Some(p) = &path {
            p.push(ts, at, nr);
        }
        ts.last_exit_arg = Some(a1 as i64);
        if plugin.out.is_some() {
            ts.pending = Some(out::Pending {
                pid: ts.pid,
                tid: ts.tid,
                vcpu: ts.vcpu,
                nr,
                args,
                pc,
                guest_path: path.as_ref().map(GuestPath::lossy),
                t_enter_ns: t,
            });
            if plugin.flush_before.contains(&nr) {
                // atexit does not run across execve, nor when a signal
                // kills the process: flush what we have (this call itself
                // is written when it returns).
                if let Some(out) = &plugin.out {
                    {
                        let mut o = out.lock();
                        o.flush();
                    }
                }
            }
        }
        if let Some((restart, d)) = exec_decision {
            follow_exec(plugin, ts, restart, d);
        }
    });
}

/// Carry out an exec decision: start QEMU with this plugin on the guest
/// program (the call never returns then), or note a refusal. After a
/// refusal QEMU goes on and passes the call to the host (see `exec.rs`).
fn follow_exec(plugin: &Plugin, ts: &mut ThreadState, restart: &exec::Restart, d: exec::Decision) {
    let note = |ts: &mut ThreadState, code, detail, path: &[u8]| {
        let rec = GuestRecord::Note {
            at: ts.origin(monotonic_ns()),
            code,
            detail,
            text: note_bytes(path),
        };
        ts.push(&rec);
    };
    match d {
        exec::Decision::Run {
            program,
            argv,
            env,
            made_fd,
        } => {
            note(ts, NOTE_EXEC, 0, &program);
            // This image ends here: its rings go back to the consumer.
            if let Some(r) = plugin.region {
                r.close_rings_of(ts.pid);
            }
            if let Some(p) = ts.producer.take() {
                std::mem::forget(p);
            }
            let errno = restart.run(&program, &argv, &env);
            if let Some(fd) = made_fd {
                sys::close_fd(fd);
            }
            ts.producer = plugin.region.and_then(|r| r.claim(ts.pid, ts.tid, ts.vcpu));
            eprintln!(
                "guestview plugin: cannot restart {} on {}: {}",
                restart.exe().to_string_lossy(),
                String::from_utf8_lossy(&program),
                std::io::Error::from_raw_os_error(errno)
            );
            note(ts, NOTE_EXEC_REFUSED, EXEC_REFUSED_UNFOLLOWED, &program);
        }
        exec::Decision::Refuse {
            reason: Some(reason),
            path,
            ..
        } => note(ts, NOTE_EXEC_REFUSED, reason, &path),
        exec::Decision::Refuse { reason: None, .. } => {}
    }
}

/// The guest layer: answer a call a `deny` rule refuses (QEMU then makes
/// no host call for it; the return callback still records it).
#[allow(clippy::too_many_arguments)]
extern "C" fn on_syscall_filter(
    _id: sys::qemu_plugin_id_t,
    vcpu: c_uint,
    nr: i64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
    a6: u64,
    _a7: u64,
    _a8: u64,
    sysret: *mut u64,
) -> bool {
    let Some(plugin) = PLUGIN.get() else {
        return false;
    };
    let Some(rules) = &plugin.filter else {
        return false;
    };
    let args = [a1, a2, a3, a4, a5, a6];
    let errno = if rules.wants_path(nr) && plugin.read_paths {
        with_thread(vcpu, |ts| {
            let p = match (plugin.paths.arg(nr), ts.buf.as_mut()) {
                (Some(i), Some(buf)) => Some(GuestPath::read(
                    i,
                    plugin.regs.address(args[usize::from(i)]),
                    buf,
                )),
                _ => None,
            };
            let path = p
                .as_ref()
                .filter(|p| p.flags & (PATH_UNREADABLE | PATH_TRUNCATED) == 0)
                .map(|p| &p.bytes[..p.len]);
            rules.decide(nr, path)
        })
        .flatten()
    } else if rules.wants_path(nr) {
        None
    } else {
        rules.decide(nr, None)
    };
    match errno {
        Some(e) if !sysret.is_null() => {
            // SAFETY: QEMU passes a valid pointer to the call's result.
            unsafe { *sysret = e.wrapping_neg() as u64 };
            true
        }
        _ => false,
    }
}

extern "C" fn on_syscall_ret(_id: sys::qemu_plugin_id_t, vcpu: c_uint, nr: i64, ret: i64) {
    let p1 = hpos();
    let t = monotonic_ns();
    let Some(plugin) = PLUGIN.get() else { return };
    with_thread(vcpu, |ts| {
        ts.push(&GuestRecord::SysExit {
            at: ts.origin(t),
            nr,
            ret,
            hpos: p1,
        });
        if let Some(out) = &plugin.out {
            let pending = ts.pending.take();
            let p0 = hpos();
            let t0 = monotonic_ns();
            {
                let mut o = out.lock();
                if o.finished(pending, nr, ret, t) {
                    let at = ts.origin(t0);
                    ts.push(&GuestRecord::PluginSpan {
                        at,
                        end_ns: monotonic_ns(),
                        reason: SPAN_FILE_OUTPUT,
                        hpos: p0.zip(hpos()),
                    });
                }
            }
        }
    });
}

/// A guest exception (with guestview's QEMU patch series, linux-user
/// reports each guest signal QEMU raises for an instruction: `from` is that
/// instruction, `to` the handler, or `from` again when the signal ends the
/// process).
extern "C" fn on_exception(
    _id: sys::qemu_plugin_id_t,
    vcpu: c_uint,
    kind: c_int,
    from: u64,
    to: u64,
) {
    if kind != sys::QEMU_PLUGIN_DISCON_EXCEPTION {
        return;
    }
    let Some(plugin) = PLUGIN.get() else { return };
    let handler = (to != from).then_some(to);
    with_thread(vcpu, |ts| {
        // In a handler's first instruction its first argument register
        // holds the signal; with no handler the correlator takes the signal
        // from the kernel's account of how the process died.
        let signal = match (handler, ts.buf.as_mut()) {
            (Some(_), Some(buf)) => {
                ts.regs
                    .handler_signal(&plugin.regs, plugin.arch.big_endian(), buf)
            }
            _ => None,
        };
        ts.reserve(0);
        let at = ts.origin(monotonic_ns());
        ts.push(&GuestRecord::Fault {
            at,
            pc: from,
            handler,
            signal,
        });
        if let Some(out) = &plugin.out {
            let mut o = out.lock();
            o.fault(at, from, handler, signal);
            if handler.is_none() {
                // QEMU ends the process next (its atexit flush may not run
                // if dumping core fails).
                o.flush();
            }
        }
    });
}

extern "C" fn on_atexit(_id: sys::qemu_plugin_id_t, _udata: *mut c_void) {
    let Some(plugin) = PLUGIN.get() else { return };
    let code = with_thread(0, |ts| {
        let code = ts.last_exit_arg.unwrap_or(0);
        ts.push(&GuestRecord::ProcessExit {
            at: ts.origin(monotonic_ns()),
            code,
        });
        if let Some(p) = ts.pending.take() {
            if let Some(out) = &plugin.out {
                {
                    let mut o = out.lock();
                    o.unfinished(p);
                }
            }
        }
        ts.pid
    });
    if let (Some(region), Some(pid)) = (plugin.region, code) {
        // Other vCPUs are stopped (QEMU holds the exclusive section here):
        // give their rings back so the consumer can drain and reuse them.
        region.close_rings_of(pid);
    }
    if let Some(out) = &plugin.out {
        {
            let mut o = out.lock();
            o.flush();
        }
    }
}

/// Before fork: hold the `out=` lock so the child never inherits it taken
/// by a thread that does not exist in the child.
extern "C" fn on_fork_prepare() {
    if let Some(out) = PLUGIN.get().and_then(|p| p.out.as_ref()) {
        std::mem::forget(out.lock());
    }
}

extern "C" fn on_fork_parent() {
    if let Some(out) = PLUGIN.get().and_then(|p| p.out.as_ref()) {
        // SAFETY: on_fork_prepare locked it on this thread and forgot the guard.
        unsafe { out.force_unlock() };
    }
}

extern "C" fn on_fork_child() {
    FORK_GEN.fetch_add(1, Ordering::AcqRel);
    if let Some(out) = PLUGIN.get().and_then(|p| p.out.as_ref()) {
        // SAFETY: the forking thread (now our only thread) locked it in
        // on_fork_prepare and forgot the guard.
        unsafe { out.force_unlock() };
        // Events not yet written are the parent's: it writes them.
        out.lock().discard_pending();
    }
}

/// Detach every mount at or under `dir`, deepest first. QEMU and this
/// plugin are mapped already; what stays visible is the empty mount points.
fn hide_mounts(dir: &std::path::Path) -> Result<(), String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
        format!(
            "hide={}: cannot read /proc/self/mountinfo: {e}",
            dir.display()
        )
    })?;
    // Field 5 is the mount point (octal escapes for blanks).
    let mut points: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| {
            std::path::PathBuf::from(
                p.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in &points {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("hide: bad mount point {}", p.display()))?;
        // SAFETY: umount2 with a NUL-terminated path and a flag.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(format!(
                "hide={}: cannot detach {}: {}",
                dir.display(),
                p.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Wait (before the first guest instruction) until the ring's owner lets
/// the guest run. Gives up if the owner is gone: its consumer stops
/// beating, or it never released after a generous start-up time.
fn hold_until_released(r: &Region) -> Result<(), String> {
    let t0 = monotonic_ns();
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() };
    let mut spins = 0u32;
    while !r.released() {
        if spins < 200 {
            std::hint::spin_loop();
            spins += 1;
            continue;
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            return Err("hold=on: the process that started QEMU is gone".into());
        }
        if monotonic_ns().saturating_sub(t0) > 30_000_000_000 {
            return Err(format!(
                "hold=on: nobody released the guest within 30 s ({} has no owner?)",
                r.path().display()
            ));
        }
    }
    Ok(())
}

fn install(
    id: sys::qemu_plugin_id_t,
    info: &sys::qemu_info_t,
    argv: &[String],
) -> Result<(), String> {
    if info.system_emulation {
        return Err(
            "QEMU is a system emulator (qemu-system-*): guestview records Linux user-mode guests; run the program under qemu-<arch>"
                .into(),
        );
    }
    let api = sys::check_api(sys::declared(), info.version_min, info.version_cur)?;
    let probes = sys::probes();
    if info.target_name.is_null() {
        return Err("QEMU did not say which guest architecture it emulates".into());
    }
    // SAFETY: QEMU passes a NUL-terminated target name valid for the call.
    let target = unsafe { CStr::from_ptr(info.target_name) }
        .to_string_lossy()
        .into_owned();
    let arch = Arch::from_qemu_target(&target)
        .ok_or_else(|| format!("guest architecture '{target}' is not supported (supported: mips, mipsel, arm, aarch64, ppc, ppc64le, riscv64, x86_64)"))?;
    let opts = args::parse(argv)?;
    let mut announce = None;
    let region: Option<&'static Region> = match (&opts.ring, &opts.out) {
        (Some(path), _) => Some(Box::leak(Box::new(
            Region::open(path).map_err(|e| format!("cannot attach to the ring: {e}"))?,
        ))),
        (None, Some(_)) => None,
        (None, None) => {
            // SAFETY: getpid cannot fail.
            let pid = unsafe { libc::getpid() };
            let path = std::path::PathBuf::from(format!("/dev/shm/guestview-{pid}.ring"));
            let _ = std::fs::remove_file(&path);
            let params = RegionParams {
                mode: if opts.wait {
                    shmem_proto::layout::MODE_WAIT
                } else {
                    shmem_proto::layout::MODE_DROP
                },
                run_id: u64::from(pid as u32) << 32 | monotonic_ns() & 0xffff_ffff,
                ..Default::default()
            };
            let r =
                Region::create(&path, params).map_err(|e| format!("cannot create a ring: {e}"))?;
            announce = Some(path);
            Some(Box::leak(Box::new(r)))
        }
    };
    let out = match &opts.out {
        Some(path) => Some(Mutex::new(
            out::OutTrace::create(path, arch)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        )),
        None => None,
    };
    let flush_before = [
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "kill",
        "tkill",
        "tgkill",
        "rt_sigqueueinfo",
        "rt_tgsigqueueinfo",
    ]
    .iter()
    .filter_map(|n| out::syscall_nr(arch, n))
    .collect();
    let mut caps = 0;
    let register_api = api >= 4 && probes.read_register;
    if register_api {
        caps |= CAP_REGISTER_READ;
    }
    if api >= 4 && probes.read_memory {
        caps |= CAP_MEMORY_READ;
    }
    if probes.discon {
        caps |= CAP_DISCON;
    }
    if probes.syscall_filter {
        caps |= CAP_SYSCALL_FILTER;
    }
    let version = |v: c_int| u8::try_from(v).unwrap_or(0);
    let restart = if opts.exec {
        Some(exec::Restart::from_self(arch)?)
    } else {
        None
    };
    PLUGIN
        .set(Plugin {
            arch,
            regs: regs::of(arch),
            region,
            out,
            flush_before,
            info: PluginInfo {
                api: version(api),
                qemu_min: version(info.version_min),
                qemu_max: version(info.version_cur),
                caps,
            },
            read_paths: caps & CAP_MEMORY_READ != 0,
            paths: paths::PathArgs::new(arch),
            restart,
            filter: opts.policy.clone().filter(|_| probes.syscall_filter),
        })
        .map_err(|_| "loaded twice into one QEMU".to_string())?;
    if let Some(path) = &announce {
        eprintln!(
            "guestview: recording guest syscalls into {} ({} mode; guestview watch reads it)",
            path.display(),
            if opts.wait { "wait" } else { "drop" }
        );
    }
    // Holding the guest, taking the host ring and hiding QEMU's files wait
    // for the first translation: QEMU's own start-up (loading the guest
    // program, setting up its memory) then overlaps guestview's loading of
    // the eBPF programs, and still no guest instruction has run.
    *BEFORE_FIRST_TB.lock() = Some(BeforeGuest {
        hold: opts.hold.then_some(region).flatten(),
        hostpos: opts.hostpos,
        wait: opts.wait.then_some(region).flatten(),
        hide: opts.hide.clone(),
    });
    FIRST_TB_PENDING.store(true, Ordering::Release);
    // SAFETY: the handlers are plain extern "C" fns with no captured state.
    unsafe {
        libc::pthread_atfork(
            Some(on_fork_prepare),
            Some(on_fork_parent),
            Some(on_fork_child),
        )
    };
    if register_api {
        sys::register::vcpu_init(id, on_vcpu_init);
    }
    sys::register::tb_trans(id, on_tb_trans);
    sys::register::syscalls(id, on_syscall, on_syscall_ret);
    if opts.policy.is_some() && probes.syscall_filter {
        sys::register::syscall_filter(id, on_syscall_filter);
    }
    if api >= 4 {
        sys::register::exceptions(id, on_exception);
    }
    sys::register::atexit(id, on_atexit);
    Ok(())
}

/// Entry point QEMU calls after loading the plugin.
///
/// # Safety
/// Called by QEMU with a valid `info` and `argc` NUL-terminated strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: sys::qemu_plugin_id_t,
    info: *const sys::qemu_info_t,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    let result = std::panic::catch_unwind(|| {
        let mut args = Vec::new();
        for i in 0..usize::try_from(argc).unwrap_or(0) {
            // SAFETY: QEMU passes argc valid pointers to NUL-terminated strings.
            let s = unsafe { CStr::from_ptr(*argv.add(i)) };
            args.push(s.to_string_lossy().into_owned());
        }
        if info.is_null() {
            return Err("QEMU passed no qemu_info_t".to_string());
        }
        // SAFETY: info is non-null and points to QEMU's qemu_info_t for this call.
        install(id, unsafe { &*info }, &args)
    });
    let msg = match result {
        Ok(Ok(())) => return 0,
        Ok(Err(msg)) => msg,
        Err(_) => "internal error during installation".to_string(),
    };
    // One line and exit code 2 (bad input or a QEMU we cannot serve):
    // returning an error would make QEMU add a line of its own and exit 1.
    eprintln!("guestview plugin: {msg}");
    // SAFETY: _exit ends the process at once; nothing of the guest has run.
    unsafe { libc::_exit(2) }
}
