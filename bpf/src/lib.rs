//! Host-side view of guestview: eBPF programs that record every host syscall
//! of a traced process tree (a QEMU process and everything it forks), plus
//! fork, exec and exit, and the loader that reads them back.
//!
//! ```no_run
//! use std::time::Duration;
//! use guestview_bpf::{HostTracer, TracerOptions};
//!
//! let mut tracer = HostTracer::new(&TracerOptions::default())?;
//! tracer.trace_pid(1234)?;
//! tracer.poll(Duration::from_millis(1), &mut |ev| println!("{ev:?}"))?;
//! # Ok::<(), guestview_bpf::BpfError>(())
//! ```
//!
//! Records are submitted without waking the reader, so the reader is
//! expected to call [`HostTracer::drain`] (or [`HostTracer::poll`]) on a
//! short timer — every millisecond or so.
#![deny(missing_docs)]

mod btf;
mod decode;
mod sys;

use std::os::fd::AsFd;
use std::time::Duration;

use libbpf_rs::{ErrorKind, Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder};

pub use decode::DecodeError;

/// Options for [`HostTracer::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracerOptions {
    /// Where the kernel types the programs need are cached, cut down from
    /// the kernel's BTF (see `btf.rs`; about 10 ms less per load); `None`
    /// resolves against the whole kernel BTF every time. Default
    /// `$GUESTVIEW_CACHE/btf`, else `/var/cache/guestview/btf`.
    pub btf_cache: Option<std::path::PathBuf>,
}

impl Default for TracerOptions {
    fn default() -> Self {
        Self {
            btf_cache: Some(btf::default_dir()),
        }
    }
}

/// Counters since the tracer was created, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Records taken from the ring so far (decodable or not).
    pub emitted: u64,
    /// Records lost because the ring was full; must be 0 in a normal run.
    pub dropped: u64,
    /// Path arguments that could not be read (the record has `path: None`).
    pub path_failures: u64,
    /// Records the reader could not decode (counted in user space).
    pub malformed: u64,
    /// Exec file names that could not be kept for the exec's sys_exit
    /// (task storage full); that exec is recorded without its path.
    pub pending_failures: u64,
}

/// One host event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A host syscall (enter and exit together), or one that never returned.
    Syscall(HostSyscall),
    /// A new process or thread in the traced tree.
    Fork {
        /// Process that forked.
        parent_tgid: u32,
        /// Thread that forked.
        parent_tid: u32,
        /// New process (equals `parent_tgid` for a thread).
        child_tgid: u32,
        /// New thread.
        child_tid: u32,
        /// The new process in its own PID namespace (what it calls its pid;
        /// equal to `child_tgid` outside a sandbox).
        child_ns_tgid: u32,
        /// The new thread in its own PID namespace.
        child_ns_tid: u32,
        /// `clone(CLONE_THREAD)`: a thread, not a process.
        is_thread: bool,
        /// Monotonic time, ns.
        t_ns: u64,
    },
    /// A successful execve/execveat.
    Exec {
        /// Process.
        tgid: u32,
        /// Thread after exec (equals `tgid`).
        tid: u32,
        /// Thread that called exec (differs when a non-leader thread exec'd).
        old_tid: u32,
        /// The file name given to exec (lossy UTF-8, at most 255 bytes).
        filename: String,
        /// The exec guard ([`HostTracer::guard_exec`]) found this image is
        /// not the allowed one and killed it before its first instruction.
        killed: bool,
        /// Monotonic time, ns.
        t_ns: u64,
        /// The record's position in the ring: the old image's host calls
        /// were recorded below it (see [`HostSyscall::pos`]).
        pos: u64,
    },
    /// The kernel enforced the policy (see [`HostTracer::enforce`]).
    Enforce {
        /// Process that made the call (for a fork rate: the parent).
        tgid: u32,
        /// Its thread.
        tid: u32,
        /// Host syscall; -1 for a process creation.
        nr: i64,
        /// Why.
        reason: EnforceReason,
        /// Events of this kind in the current one-second window.
        count: u32,
        /// The limit (rates), 0 for kill rules.
        limit: u32,
        /// SIGKILL was sent (to the caller; for a fork rate, to the new process).
        killed: bool,
        /// Monotonic time, ns.
        t_ns: u64,
    },
    /// A thread exited.
    Exit {
        /// Process.
        tgid: u32,
        /// Thread.
        tid: u32,
        /// The kernel's `task->exit_code`, in wait(2) status form
        /// (`exit(3)` gives `0x300`; death by SIGKILL gives `9`).
        exit_code: i32,
        /// Last thread of the process: the process is gone.
        group_dead: bool,
        /// Monotonic time, ns.
        t_ns: u64,
    },
}

/// Why the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforceReason {
    /// A traced process returned from a host syscall a kill rule names;
    /// it was killed. One event per kill.
    KillRule,
    /// The traced tree created more processes in a second than allowed;
    /// each new process beyond the limit is killed at its first syscall
    /// exit, before it runs guest code. One event per second.
    ForkRate,
    /// The traced tree made more `connect` calls in a second than allowed;
    /// each caller beyond the limit is killed. One event per second.
    ConnectRate,
}

/// What the kernel enforced so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnforceStats {
    /// SIGKILLs sent.
    pub kills: u64,
    /// Process creations beyond the fork rate.
    pub forks_over: u64,
    /// Connects beyond the connect rate.
    pub connects_over: u64,
}

/// A host syscall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSyscall {
    /// Process.
    pub tgid: u32,
    /// Thread that entered the syscall.
    pub tid: u32,
    /// x86-64 syscall number.
    pub nr: i64,
    /// Raw arguments, from the registers at sys_exit (at the thread's death
    /// for exit/exit_group); all 0 for a successful exec and for
    /// rt_sigreturn, whose exits no longer hold them.
    pub args: [u64; 6],
    /// Raw return value (`-errno` on failure); `None` for a syscall that
    /// never returned (exit, exit_group, or one the thread died in).
    pub ret: Option<i64>,
    /// Monotonic ns at sys_enter: always 0, no program runs there (the
    /// exit time is all the join needs, and cheaper). Kept for the format.
    pub t_enter_ns: u64,
    /// Monotonic ns at sys_exit (when the thread died, for exit/exit_group;
    /// at its exec point for an exec killed before its sys_exit); 0 when
    /// not timed: the process reads ring positions (see
    /// [`HostTracer::set_untimed`]) and `pos` places the call.
    pub t_exit_ns: u64,
    /// The record's position in the ring (where its reservation moved the
    /// producer from; the reader counts it). A plugin that reads the
    /// producer position at a guest call's entry (`p0`) and return (`p1`)
    /// on the same thread owns exactly the host calls of that thread with
    /// `p0 <= pos < p1`.
    pub pos: u64,
    /// The path argument of a path-taking syscall (lossy UTF-8, at most 255
    /// bytes); `None` for other syscalls and when it could not be read.
    pub path: Option<String>,
}

/// What failed while setting up or reading the host tracer.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The kernel refused for lack of privileges.
    #[error("{what} failed (permission denied): guestview needs root or CAP_BPF+CAP_PERFMON")]
    PermissionDenied {
        /// The step that was refused.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The embedded eBPF object could not be opened.
    #[error("opening the embedded eBPF object failed: {0} (rebuild guestview-bpf)")]
    Open(#[source] libbpf_rs::Error),
    /// The exec guard could not be set.
    #[error("{0}")]
    Guard(String),
    /// The kernel refused the eBPF programs or maps.
    #[error("loading eBPF programs failed: {0} (needs Linux 5.11+ with BTF; run with RUST_LOG or check dmesg for the verifier log)")]
    Load(#[source] libbpf_rs::Error),
    /// A program could not be attached.
    #[error("attaching eBPF program {program} failed: {source} (is tracefs mounted? try `mount -t tracefs nodev /sys/kernel/tracing`)")]
    Attach {
        /// The program's name in hostview.bpf.c.
        program: String,
        /// The underlying error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A map the programs need is missing from the object.
    #[error("eBPF map `{0}` is missing from the object (rebuild guestview-bpf)")]
    MissingMap(&'static str),
    /// The process could not be added to the traced set.
    #[error("starting to trace process {tgid} failed: {source} (pids must be below 4194304, the kernel's PID_MAX_LIMIT)")]
    TracePid {
        /// The process.
        tgid: u32,
        /// The underlying error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// Mapping the host ring failed.
    #[error("mapping the eBPF host ring failed: {0}")]
    Ring(#[source] libbpf_rs::Error),
    /// Reading the counters failed.
    #[error("reading the eBPF counters failed: {0}")]
    Stats(#[source] libbpf_rs::Error),
}

impl BpfError {
    /// Wrap `e` as `other`, or as `PermissionDenied` when the kernel said EPERM.
    fn or_eperm(
        what: &'static str,
        e: libbpf_rs::Error,
        other: impl FnOnce(libbpf_rs::Error) -> BpfError,
    ) -> BpfError {
        if e.kind() == ErrorKind::PermissionDenied {
            BpfError::PermissionDenied { what, source: e }
        } else {
            other(e)
        }
    }

    /// Whether this is a lack of privileges (not root, no CAP_BPF).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, BpfError::PermissionDenied { .. })
    }
}

/// The `fcntl` command a plugin that reads ring positions says so with:
/// `fcntl(-1, UNTIMED_FCNTL_CMD)` puts its process in the untimed set (see
/// [`HostTracer::set_untimed`]).
pub const UNTIMED_FCNTL_CMD: u32 = sys::GV_UNTIMED_FCNTL_CMD;

/// Where the host ring's positions sit in the page the plugin maps
/// read-only (`struct gv_ring_ctl`): the producer's, the consumer's and the
/// ring's size (byte offsets), then the page's length. The plugin does not
/// link this crate and keeps its own copy of these numbers; its tests
/// compare the two.
pub const RING_CTL_LAYOUT: [usize; 4] = [
    std::mem::offset_of!(sys::gv_ring_ctl, head),
    std::mem::offset_of!(sys::gv_ring_ctl, cons),
    std::mem::offset_of!(sys::gv_ring_ctl, size),
    std::mem::size_of::<sys::gv_ring_ctl>(),
];

/// The loaded, attached eBPF programs and the reader of their ring.
pub struct HostTracer {
    // Fields drop in order: the reader before the links, the links before
    // the object that owns the programs and maps.
    ring: sys::RingReader,
    /// A descriptor of the ring's position map (`ringctl`), for plugins.
    ring_fd: std::os::fd::OwnedFd,
    /// Records that did not decode.
    malformed: u64,
    /// Records taken from the ring, decodable or not.
    received: u64,
    sets: sys::PidSets,
    enforce: sys::EnforceArea,
    stats: MapHandle,
    guard: MapHandle,
    _links: Vec<Link>,
    _object: Object,
}

impl std::fmt::Debug for HostTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTracer")
            .field("malformed", &self.malformed)
            .finish_non_exhaustive()
    }
}

fn map_handle(object: &Object, name: &'static str) -> Result<MapHandle, BpfError> {
    let map = object
        .maps()
        .find(|m| m.name() == name)
        .ok_or(BpfError::MissingMap(name))?;
    MapHandle::try_from(&map).map_err(BpfError::Load)
}

impl HostTracer {
    /// Load and attach the eBPF programs. Nothing is traced until
    /// [`HostTracer::trace_pid`].
    pub fn new(opts: &TracerOptions) -> Result<Self, BpfError> {
        let types = opts
            .btf_cache
            .as_deref()
            .and_then(|dir| btf::min_core_btf(dir, sys::bpf_object()));
        match Self::load(types.as_deref()) {
            Err(e) if !e.is_permission_denied() && types.is_some() => {
                // A cut-down BTF libbpf cannot use: the whole one, and
                // make it again next time.
                if let Some(t) = &types {
                    btf::forget(t);
                }
                Self::load(None)
            }
            r => r,
        }
    }

    /// The kernel types in the BTF file `types`, if given, for the CO-RE
    /// relocations (attaching still uses the kernel's).
    fn load(types: Option<&std::path::Path>) -> Result<Self, BpfError> {
        // libbpf's own messages would break guestview's one-line errors;
        // the error we return says what failed.
        libbpf_rs::set_print(None);

        let mut builder = ObjectBuilder::default();
        if let Some(t) = types {
            builder.btf_custom_path(t).map_err(BpfError::Open)?;
        }
        let open = builder
            .open_memory(sys::bpf_object())
            .map_err(BpfError::Open)?;
        let object = open
            .load()
            .map_err(|e| BpfError::or_eperm("loading eBPF programs", e, BpfError::Load))?;

        let mut links = Vec::new();
        for prog in object.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let link = prog.attach().map_err(|e| {
                BpfError::or_eperm("attaching eBPF programs", e, |source| BpfError::Attach {
                    program: name.clone(),
                    source,
                })
            })?;
            links.push(link);
        }

        let bss = object
            .maps()
            .find(|m| m.name().as_encoded_bytes().ends_with(b".bss"))
            .ok_or(BpfError::MissingMap(".bss"))?;
        let sets = sys::PidSets::map(bss.as_fd(), bss.value_size() as usize)
            .map_err(|e| BpfError::Load(libbpf_rs::Error::from(e)))?;
        let area = object
            .maps()
            .find(|m| m.name().as_encoded_bytes().ends_with(b".data.enforce"))
            .ok_or(BpfError::MissingMap(".data.enforce"))?;
        let enforce = sys::EnforceArea::map(area.as_fd(), area.value_size() as usize)
            .map_err(|e| BpfError::Load(libbpf_rs::Error::from(e)))?;
        let stats = map_handle(&object, "stats")?;
        let guard = map_handle(&object, "guard")?;
        let data = object
            .maps()
            .find(|m| m.name() == "ring")
            .ok_or(BpfError::MissingMap("ring"))?;
        let ctl = object
            .maps()
            .find(|m| m.name() == "ringctl")
            .ok_or(BpfError::MissingMap("ringctl"))?;
        let ring_fd = ctl
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| BpfError::Load(libbpf_rs::Error::from(e)))?;
        let ring = sys::RingReader::map(data.as_fd(), ring_fd.as_fd())
            .map_err(|e| BpfError::Ring(libbpf_rs::Error::from(e)))?;

        Ok(Self {
            ring,
            ring_fd,
            malformed: 0,
            received: 0,
            sets,
            enforce,
            stats,
            guard,
            _links: links,
            _object: object,
        })
    }

    /// Guard every exec in the traced tree (a sandbox): an exec whose new
    /// image is not the file `(ino, dev)` (`dev` as `stat` gives it) with
    /// arguments that begin with exactly `prefix` (argv strings with their
    /// NULs) is killed with SIGKILL before its first instruction, and its
    /// [`HostEvent::Exec`] says `killed`.
    pub fn guard_exec(&self, ino: u64, dev: u64, prefix: &[u8]) -> Result<(), BpfError> {
        let max = sys::GV_GUARD_PREFIX_MAX as usize;
        if prefix.is_empty() || prefix.len() > max {
            return Err(BpfError::Guard(format!(
                "the allowed exec's arguments take {} bytes (1 to {max} can be checked)",
                prefix.len()
            )));
        }
        // glibc's dev_t encoding (gnu_dev_major/minor) to the kernel's.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let mut g = sys::gv_guard {
            enabled: 1,
            prefix_len: prefix.len() as u32,
            ino,
            dev: ((major << 20) | minor) as u32,
            ..Default::default()
        };
        for (d, s) in g.prefix.iter_mut().zip(prefix) {
            *d = *s as std::ffi::c_char;
        }
        self.guard
            .update(&0u32.to_ne_bytes(), sys::record_bytes(&g), MapFlags::ANY)
            .map_err(|e| BpfError::Guard(format!("cannot set the exec guard: {e}")))
    }

    /// Start tracing process `tgid` (all its threads) and every process it
    /// forks from now on. Children it forked before this call are not
    /// added.
    pub fn trace_pid(&self, tgid: u32) -> Result<(), BpfError> {
        if self.sets.insert(sys::PidSet::Traced, tgid) {
            Ok(())
        } else {
            Err(BpfError::TracePid {
                tgid,
                source: libbpf_rs::Error::from(std::io::Error::from_raw_os_error(libc::ERANGE)),
            })
        }
    }

    /// Enforce in the kernel for the traced tree: the exit of each host
    /// syscall in `kill_nrs` kills its caller with `bpf_send_signal(SIGKILL)`;
    /// more than `fork_per_second` new processes (0: no limit) in a second
    /// are each killed at their first syscall exit; more than
    /// `connect_per_second` connects kill their caller. Each decision is a
    /// [`HostEvent::Enforce`] (rates: one per second). Call before tracing
    /// starts; numbers of 512 and above are refused.
    pub fn enforce(
        &self,
        kill_nrs: &[u32],
        fork_per_second: u32,
        connect_per_second: u32,
    ) -> Result<(), BpfError> {
        for &nr in kill_nrs {
            if !self.enforce.set_kill_nr(nr) {
                return Err(BpfError::TracePid {
                    tgid: nr,
                    source: libbpf_rs::Error::from(std::io::Error::from_raw_os_error(libc::ERANGE)),
                });
            }
        }
        self.enforce.set_limits(fork_per_second, connect_per_second);
        Ok(())
    }

    /// What the kernel enforced so far.
    pub fn enforce_stats(&self) -> EnforceStats {
        let (kills, forks_over, connects_over) = self.enforce.counters();
        EnforceStats {
            kills,
            forks_over,
            connects_over,
        }
    }

    /// Whether `tgid` is in the traced set now (the kernel takes a process
    /// out when it exits).
    pub fn is_traced(&self, tgid: u32) -> bool {
        self.sets.contains(sys::PidSet::Traced, tgid)
    }

    /// Process `tgid`'s plugin reads ring positions (it mapped the ring's
    /// position page, [`HostTracer::ring_fd_for_plugin`]): its host calls
    /// are placed by position alone, and the programs stop timing them (a
    /// clock read is the largest part of a record's cost). Forked children
    /// inherit this; an exec ends it (the new image has no mapping yet).
    /// The plugin itself says so from inside its image
    /// ([`UNTIMED_FCNTL_CMD`]), in step with execs; this is for tests.
    pub fn set_untimed(&self, tgid: u32) {
        self.sets.insert(sys::PidSet::Untimed, tgid);
    }

    /// The descriptor of the ring's position map (`ringctl`, one page:
    /// the producer position at offset 0, the consumer's at 64, the data
    /// size at 128), for a plugin to map read-only and read positions: see
    /// [`HostSyscall::pos`]. The kernel clears `VM_MAYWRITE` on a read-only
    /// mapping of a BPF map, so it cannot be made writable later; the
    /// plugin closes the descriptor before the guest's first instruction,
    /// so the guest never holds it.
    pub fn ring_fd_for_plugin(&self) -> std::os::fd::BorrowedFd<'_> {
        self.ring_fd.as_fd()
    }

    /// How far the ring has been read: every record whose position
    /// ([`HostSyscall::pos`]) is below this has been handed out by a drain.
    /// A guest call whose return position is at most this has all its host
    /// calls in hand.
    pub fn consumed_pos(&self) -> u64 {
        self.ring.consumed()
    }

    /// Whether `tgid`'s host calls are untimed now.
    pub fn is_untimed(&self, tgid: u32) -> bool {
        self.sets.contains(sys::PidSet::Untimed, tgid)
    }

    /// Drain whatever is in the ring now without blocking; returns the
    /// number of events handed to `f` (each record is decoded and handed
    /// out as it is read, with its position in the ring).
    pub fn drain(&mut self, f: &mut dyn FnMut(HostEvent)) -> Result<usize, BpfError> {
        let (mut handed, mut malformed) = (0, 0);
        let received = self
            .ring
            .read(&mut |bytes, pos| match HostEvent::try_from(bytes) {
                Ok(mut ev) => {
                    ev.set_ring_pos(pos);
                    handed += 1;
                    f(ev);
                }
                Err(_) => malformed += 1,
            });
        self.received += received as u64;
        self.malformed += malformed;
        Ok(handed)
    }

    /// Drain the ring; if it was empty, wait `timeout` (records never wake
    /// the reader) and drain it again.
    pub fn poll(
        &mut self,
        timeout: Duration,
        f: &mut dyn FnMut(HostEvent),
    ) -> Result<usize, BpfError> {
        match self.drain(f)? {
            0 => {
                std::thread::sleep(timeout);
                self.drain(f)
            }
            n => Ok(n),
        }
    }

    /// Counters since [`HostTracer::new`], summed over CPUs.
    pub fn stats(&self) -> Result<HostStats, BpfError> {
        let per_cpu = self
            .stats
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(BpfError::Stats)?
            .unwrap_or_default();
        let mut out = HostStats {
            malformed: self.malformed,
            // The programs keep no per-record counter: what was submitted
            // is what was received, plus what is still in the ring.
            emitted: self.received,
            ..HostStats::default()
        };
        for cpu in per_cpu {
            if let Some(s) = sys::read_record::<sys::gv_stats>(&cpu) {
                out.dropped += s.dropped;
                out.path_failures += s.path_failures;
                out.pending_failures += s.pending_failures;
            }
        }
        Ok(out)
    }
}
