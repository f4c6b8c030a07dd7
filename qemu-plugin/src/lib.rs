// SPDX-License-Identifier: GPL-2.0-or-later
//! `libguestview.so`: a QEMU TCG plugin that records every guest syscall —
//! number, arguments, guest PC of the syscall instruction, return value,
//! host thread, vCPU, CLOCK_MONOTONIC at entry and return — into guestview's
//! shared-memory ring (`ring=PATH`), or into a trace file of its own
//! (`out=FILE`), or into a ring it creates and announces.
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
mod insn;
mod out;
mod sys;

use parking_lot::Mutex;
use shmem_proto::record::{
    note_bytes, EXEC_REFUSED_UNFOLLOWED, NOTE_EXEC, NOTE_EXEC_REFUSED, SPAN_EXEC_CHECK,
    SPAN_FILE_OUTPUT, SPAN_RING_WAIT, SPAN_SETUP,
};
use shmem_proto::{
    monotonic_ns, Arch, GuestRecord, Origin, Producer, Pushed, Region, RegionParams,
};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The plugin API version this library asks for (QEMU reads it on load).
#[no_mangle]
pub static qemu_plugin_version: c_int = 1;

struct Plugin {
    arch: Arch,
    region: Option<&'static Region>,
    out: Option<Mutex<out::OutTrace>>,
    /// Guest numbers of calls after which this process image may be gone
    /// (exec, exit, signals): `out=` is flushed before them.
    flush_before: Vec<i64>,
    /// `exec=on`: how to start QEMU again on a program the guest execs.
    restart: Option<exec::Restart>,
}

static PLUGIN: OnceLock<Plugin> = OnceLock::new();
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
    /// Entry of the current guest call (for `out=`).
    pending: Option<out::Pending>,
    last_exit_arg: Option<i64>,
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
            };
            p.push(&span);
        }
    }

    /// Make sure the call's entry and exit records can be pushed without
    /// waiting. A wait makes syscalls; between the call's return timestamp
    /// and the publication of its exit record the correlator would take
    /// them for the call's own (the call still looks open). Room for three:
    /// the span that announces a wait here, the entry and the exit.
    fn reserve(&mut self) {
        let Some(p) = self.producer.as_mut() else {
            return;
        };
        if let Pushed::Waited { start_ns, end_ns } = p.reserve_n(3) {
            let span = GuestRecord::PluginSpan {
                at: self.origin(start_ns),
                end_ns,
                reason: SPAN_RING_WAIT,
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
    let mut ts = ThreadState {
        producer,
        pid,
        tid,
        vcpu,
        fork_gen: gen,
        pending: None,
        last_exit_arg: None,
    };
    if ANNOUNCED_PID.swap(pid, Ordering::AcqRel) != pid {
        let arch = plugin.map_or(0, |p| p.arch.id());
        ts.push(&GuestRecord::ProcessStart {
            at: ts.origin(t0),
            ppid: parent.unwrap_or(ppid),
            arch,
        });
    }
    ts.push(&GuestRecord::ThreadStart { at: ts.origin(t0) });
    let end = monotonic_ns();
    ts.push(&GuestRecord::PluginSpan {
        at: ts.origin(t0),
        end_ns: end,
        reason: SPAN_SETUP,
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
    let Some(plugin) = PLUGIN.get() else { return };
    // SAFETY: `tb` is the live handle QEMU passed to this translation callback.
    let n = unsafe { sys::qemu_plugin_tb_n_insns(tb) };
    if plugin.restart.is_some() && !exec::guest_base_known() && n > 0 {
        // SAFETY: index 0 < n_insns.
        let insn = unsafe { sys::qemu_plugin_tb_get_insn(tb, 0) };
        if !insn.is_null() {
            if let Some(h) = sys::insn_haddr(insn) {
                // SAFETY: insn is live during this callback.
                exec::note_guest_base(h, unsafe { sys::qemu_plugin_insn_vaddr(insn) });
            }
        }
    }
    let mut buf = [0u8; insn::MAX_LEN];
    for i in 0..n {
        // SAFETY: i < n_insns, as the API requires.
        let insn = unsafe { sys::qemu_plugin_tb_get_insn(tb, i) };
        if insn.is_null() {
            continue;
        }
        let len = sys::insn_bytes(insn, &mut buf);
        if insn::is_syscall(plugin.arch, &buf[..len]) {
            // SAFETY: insn is live during this callback.
            let vaddr = unsafe { sys::qemu_plugin_insn_vaddr(insn) };
            // SAFETY: insn is live; the callback and its userdata (the PC as
            // an integer, never dereferenced) stay valid for the TB's life.
            unsafe {
                sys::qemu_plugin_register_vcpu_insn_exec_cb(
                    insn,
                    on_syscall_insn,
                    sys::QEMU_PLUGIN_CB_NO_REGS,
                    vaddr as usize as *mut c_void,
                )
            };
        }
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
    let pc = LAST_PC.try_with(|c| c.replace(0)).unwrap_or(0);
    let args = [a1, a2, a3, a4, a5, a6, a7, a8];
    with_thread(vcpu, |ts| {
        // A guest exec is decided before the call's window opens: looking
        // at the file makes host syscalls of the plugin's own.
        let exec_decision = plugin.restart.as_ref().filter(|r| r.is_exec(nr)).map(|r| {
            let t0 = monotonic_ns();
            let d = r.decide(nr, &args);
            let span = GuestRecord::PluginSpan {
                at: ts.origin(t0),
                end_ns: monotonic_ns(),
                reason: SPAN_EXEC_CHECK,
            };
            ts.push(&span);
            (r, d)
        });
        ts.reserve();
        // Everything above may make syscalls; from here to the return
        // callback's timestamp, nothing of ours does.
        let t = monotonic_ns();
        let pc = (pc != 0).then_some(pc);
        ts.push(&GuestRecord::SysEnter {
            at: ts.origin(t),
            nr,
            args,
            pc,
        });
        ts.last_exit_arg = Some(a1 as i64);
        if plugin.out.is_some() {
            ts.pending = Some(out::Pending {
                pid: ts.pid,
                tid: ts.tid,
                vcpu: ts.vcpu,
                nr,
                args,
                pc,
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

extern "C" fn on_syscall_ret(_id: sys::qemu_plugin_id_t, vcpu: c_uint, nr: i64, ret: i64) {
    let t = monotonic_ns();
    let Some(plugin) = PLUGIN.get() else { return };
    with_thread(vcpu, |ts| {
        ts.push(&GuestRecord::SysExit {
            at: ts.origin(t),
            nr,
            ret,
        });
        if let Some(out) = &plugin.out {
            let pending = ts.pending.take();
            let t0 = monotonic_ns();
            {
                let mut o = out.lock();
                if o.finished(pending, nr, ret, t) {
                    let at = ts.origin(t0);
                    ts.push(&GuestRecord::PluginSpan {
                        at,
                        end_ns: monotonic_ns(),
                        reason: SPAN_FILE_OUTPUT,
                    });
                }
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
            "guestview records Linux user-mode guests: load it into qemu-<arch>, not qemu-system-*"
                .into(),
        );
    }
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
    let restart = if opts.exec {
        Some(exec::Restart::from_self(arch)?)
    } else {
        None
    };
    PLUGIN
        .set(Plugin {
            arch,
            region,
            out,
            flush_before,
            restart,
        })
        .map_err(|_| "loaded twice into one QEMU".to_string())?;
    if let Some(path) = &announce {
        eprintln!(
            "guestview: recording guest syscalls into {} ({} mode; guestview watch reads it)",
            path.display(),
            if opts.wait { "wait" } else { "drop" }
        );
    }
    if opts.hold {
        if let Some(r) = region {
            hold_until_released(r)?;
        }
    }
    if opts.wait {
        if let Some(r) = region {
            eprintln!(
                "guestview: waiting for a watcher to attach to {}",
                r.path().display()
            );
            while !r.consumer_attached() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    if let Some(dir) = &opts.hide {
        hide_mounts(dir)?;
    }
    // SAFETY: the handlers are plain extern "C" fns with no captured state.
    unsafe {
        libc::pthread_atfork(
            Some(on_fork_prepare),
            Some(on_fork_parent),
            Some(on_fork_child),
        )
    };
    // SAFETY: registering callbacks with the id QEMU gave us, from within
    // qemu_plugin_install, as the API requires.
    unsafe {
        sys::qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
        sys::qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
        sys::qemu_plugin_register_vcpu_syscall_ret_cb(id, on_syscall_ret);
        sys::qemu_plugin_register_atexit_cb(id, on_atexit, std::ptr::null_mut());
    }
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
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => {
            eprintln!("guestview plugin: {msg}");
            -1
        }
        Err(_) => {
            eprintln!("guestview plugin: internal error during installation");
            -1
        }
    }
}
