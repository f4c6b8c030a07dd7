//! The join: every guest syscall gets the host syscalls QEMU made for it.
//!
//! Each guest call runs on one host thread. The plugin takes the call's
//! entry timestamp before QEMU makes any host syscall for it and the return
//! timestamp after the last one, on that thread, on the same clock as the
//! eBPF programs. So the host syscalls of a guest call are exactly the host
//! syscalls of its thread inside its window. Host syscalls outside every
//! window are QEMU's own (`internal`), or the plugin's when they fall in a
//! span the plugin announced.
//!
//! Streaming without guessing: the caller drains the guest rings, then the
//! host ring, each *pass*. A host event can only be classified once the
//! guest records that precede it on its thread are known; those were
//! published before the host syscall began, so a host event drained in pass
//! `k` is classifiable after the guest drain of pass `k + 1`. A guest call
//! whose return was drained in pass `k` is final once the host drain of pass
//! `k` (which follows it) is classified. [`Joiner::finish`] settles the rest.

use crate::symbols::Symbolizer;
use crate::tables;
use crate::verdict;
use guestview_bpf::{HostEvent, HostSyscall};
use rustc_hash::FxHashMap as HashMap;
use shmem_proto::record::{
    note_text, PluginInfo, CAP_DISCON, CAP_MEMORY_READ, CAP_PC_REGISTER, CAP_REGISTER_READ,
    CAP_SIGNAL_REGISTER, CAP_SYSCALL_FILTER, EXEC_REFUSED_FOREIGN, EXEC_REFUSED_NATIVE,
    MAX_GUEST_PATH, NOTE_EXEC, NOTE_EXEC_REFUSED, PATH_LAST, PATH_UNREADABLE,
};
use shmem_proto::trace::{
    AlertEvent, FaultEvent, HostCall, InternalEvent, LostEvent, Name, PluginEvent, ProcessEvent,
    SyscallEvent, ThreadEvent, TraceEvent,
};
use shmem_proto::{Arch, GuestRecord, Origin};
use std::borrow::Cow;
use std::collections::VecDeque;

/// Extra time a host event may take to become visible after the guest call
/// that contains it returned (a reservation by another CPU can hold it back
/// in the kernel ring for a moment).
const VISIBILITY_MARGIN_NS: u64 = 2_000_000;

/// Passes (about a millisecond each) a call ended by an exec waits for the
/// exec's own host call before it is emitted without it.
const EXEC_WAIT_PASSES: u64 = 500;

#[derive(Debug)]
struct GuestCall {
    pid: u32,
    tid: u32,
    vcpu: u32,
    nr: i64,
    args: [u64; 8],
    pc: Option<u64>,
    t_enter: u64,
    /// Host ring position at entry (when the plugin reads positions).
    p_enter: Option<u64>,
    exit: Option<(u64, i64)>,
    /// Host ring position at return.
    p_exit: Option<u64>,
    exit_pass: u64,
    /// An exec that replaced the image at this time: host calls that begin
    /// later are the new image's, not this call's.
    end: Option<u64>,
    /// The host ring position of that exec (host calls below it are the
    /// old image's).
    end_pos: Option<u64>,
    /// The program a followed exec runs (the plugin's note): the call's
    /// path, where the host's exec names QEMU's loader.
    exec_program: Option<String>,
    /// The host exec that ended the call has been attributed to it.
    exec_seen: bool,
    /// The call's process started a new image (its plugin's start record
    /// came) before the host exec event that ended the call was read: the
    /// call waits for that event, and every host call of its thread read
    /// until then is still the old image's.
    exec_pending: bool,
    host: Vec<HostCall>,
    /// The path argument as the plugin read it from guest memory.
    guest_path: GuestPath,
}

/// A path argument arriving in chunks after its call's entry record.
#[derive(Debug, Default)]
enum GuestPath {
    /// None sent (API v1, no path argument), or refused.
    #[default]
    None,
    /// Chunks so far.
    Partial(Vec<u8>),
    /// Complete.
    Done(String),
}

impl GuestPath {
    /// Add a chunk; chunks out of order or for another call are dropped
    /// (with what came before: the path is not shown).
    fn add(&mut self, offset: u16, bytes: &[u8], flags: u16) {
        let so_far = match std::mem::take(self) {
            GuestPath::None if offset == 0 => Vec::with_capacity(bytes.len()),
            GuestPath::Partial(v) if v.len() == usize::from(offset) => v,
            _ => return,
        };
        let mut v = so_far;
        v.extend_from_slice(bytes);
        if v.len() > MAX_GUEST_PATH {
            return;
        }
        *self = if flags & PATH_UNREADABLE != 0 {
            // The guest named an address it cannot read (EFAULT).
            GuestPath::None
        } else if flags & PATH_LAST != 0 {
            GuestPath::Done(String::from_utf8_lossy(&v).into_owned())
        } else {
            GuestPath::Partial(v)
        };
    }

    fn take(&mut self) -> Option<String> {
        match std::mem::take(self) {
            GuestPath::Done(p) => Some(p),
            _ => None,
        }
    }
}

#[derive(Default, Debug)]
struct ThreadJoin {
    pid: u32,
    /// Calls are boxed: each is moved from `open` to `done` to the settled
    /// list, and a pointer moves for less than its 288 bytes.
    open: Option<Box<GuestCall>>,
    done: VecDeque<Box<GuestCall>>,
    /// Calls popped from the front of `done` so far: `done[i]` is the
    /// thread's call number `popped + i`.
    popped: u64,
    /// Number of the call the last host event of this thread went to: the
    /// next one almost always goes to it or the one after (host events of a
    /// thread come in time order), which spares a binary search.
    hint: u64,
    spans: VecDeque<(u64, u64)>,
    /// The plugin's spans as host ring positions `[start, end)`.
    pspans: VecDeque<(u64, u64)>,
    /// The thread is gone since this pass (its open call never returns).
    dead_since: Option<u64>,
    /// Guest records seen on this thread.
    seen_guest: bool,
}

/// Counters of the join itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JoinStats {
    /// Guest calls emitted.
    pub syscalls: u64,
    /// Host syscalls seen.
    pub host_syscalls: u64,
    /// Host syscalls attributed to a guest call.
    pub host_attributed: u64,
    /// Host syscalls outside every guest call.
    pub host_internal: u64,
    /// Guest returns without an entry that were not the child side of fork/clone.
    pub unmatched_exits: u64,
    /// Guest calls the plugin held back until the host ring was read down.
    pub host_ring_waits: u64,
}

/// The streaming join.
pub struct Joiner {
    arch: Arch,
    arch_of_pid: HashMap<u32, Arch>,
    threads: HashMap<u32, ThreadJoin>,
    host_pending: VecDeque<(u64, HostSyscall)>,
    pass: u64,
    last_host_drain_ns: u64,
    /// The host ring's consumer position after the latest drain, and after
    /// the one before it (whose events the current settle classifies).
    consumed_cur: u64,
    consumed_prev: u64,
    ready: Vec<(u64, TraceEvent)>,
    /// Scratch buffers of `settle`, kept so their capacity survives passes
    /// (growing them anew every millisecond was a tenth of the join's time).
    /// (Boxed as they come from `done`: moving them out would copy them.)
    #[allow(clippy::vec_box)]
    finals: Vec<Box<GuestCall>>,
    held: Vec<(u64, TraceEvent)>,
    /// Internal host calls per (process, thread, plugin's own), with the
    /// time to order their record by.
    internal: HashMap<(u32, u32, bool), (u64, Vec<HostCall>)>,
    seq: u64,
    stats: JoinStats,
    /// Native mode (`run --native`): every host syscall is its own call.
    native: bool,
    /// Native mode: the launched process, whose calls count from its exec on.
    native_waiting_exec: Option<u32>,
    /// Symbols of the guest program.
    symbols: Option<Symbolizer>,
    /// Processes whose image is the launched program (the first exec of
    /// the run, and what it forks until they exec again).
    launched_image: HashMap<u32, ()>,
    /// The run's first exec was seen (QEMU starting on the program).
    first_exec_seen: bool,
    /// What the guest side said each process is about to exec
    /// ([`NOTE_EXEC`]), for its `process` exec event.
    exec_notes: HashMap<u32, String>,
    /// Exec events waiting one guest drain for their note.
    exec_pending: Vec<(u64, u64, ProcessEvent)>,
    /// The host view starts here (`watch` attaching to a running QEMU):
    /// calls entered before it are judged `guest-only`.
    host_view_from: u64,
    /// In a PID namespace (the sandbox): the host id of each id the guest
    /// side reports (namespace tid or tgid → host), learnt from forks.
    ns_ids: Option<HashMap<u32, u32>>,
    /// Guest records whose ids are not mapped yet (their fork event comes
    /// in a later host drain): per namespace thread id, in arrival order.
    unmapped: HashMap<u32, Vec<GuestRecord>>,
    /// What each process's QEMU offered the plugin.
    plugins: HashMap<u32, PluginEvent>,
    /// Faults that ended their process, waiting for the kernel to say
    /// with which signal.
    fatal_faults: HashMap<u32, Vec<FaultEvent>>,
    /// Processes the kernel saw end, and the host signal that ended them
    /// (a fault record can be drained after its process's end).
    ended: HashMap<u32, Option<i32>>,
    /// Rule names of the kernel's enforcement, for its alert records.
    enforce_names: crate::enforce::EnforceNames,
}

fn host_call(h: &HostSyscall) -> HostCall {
    HostCall {
        nr: h.nr,
        name: tables::host_syscall_name(h.nr)
            .map(Cow::Borrowed)
            .unwrap_or_else(|| Cow::Owned(format!("syscall_{}", h.nr))),
        args: h.args,
        ret: h.ret,
        path: h.path.clone(),
        tid: h.tid,
        t_enter_ns: h.t_enter_ns,
        t_exit_ns: h.t_exit_ns,
    }
}

/// The `plugin` record for what a process's QEMU offers.
fn plugin_event(at: Origin, p: PluginInfo) -> PluginEvent {
    let has = |c: u32| p.caps & c != 0;
    PluginEvent {
        pid: at.pid,
        api_version: u32::from(p.api),
        qemu_api_min: u32::from(p.qemu_min),
        qemu_api_max: u32::from(p.qemu_max),
        register_read: has(CAP_REGISTER_READ),
        pc_from: if has(CAP_PC_REGISTER) {
            "register"
        } else {
            "instrumentation"
        }
        .into(),
        memory_read: has(CAP_MEMORY_READ),
        discon: has(CAP_DISCON),
        handled_fault_signal: has(CAP_SIGNAL_REGISTER),
        syscall_filter: has(CAP_SYSCALL_FILTER),
        t_ns: at.t_ns,
    }
}

/// Errno name of a host (x86-64) return value, including the kernel's
/// internal restart codes that the syscall exit tracepoint still sees.
fn host_errno(ret: i64) -> Option<Name> {
    if !(-4095..0).contains(&ret) {
        return None;
    }
    Some(match -ret {
        512 => Cow::Borrowed("ERESTARTSYS"),
        513 => Cow::Borrowed("ERESTARTNOINTR"),
        514 => Cow::Borrowed("ERESTARTNOHAND"),
        516 => Cow::Borrowed("ERESTART_RESTARTBLOCK"),
        e => tables::host_errno_name(e).map_or_else(|| Cow::Owned(format!("E{e}")), Cow::Borrowed),
    })
}

impl Joiner {
    /// A join for a run whose main program is for `arch`.
    pub fn new(arch: Arch) -> Joiner {
        Joiner {
            arch,
            arch_of_pid: HashMap::default(),
            threads: HashMap::default(),
            host_pending: VecDeque::new(),
            pass: 1,
            last_host_drain_ns: 0,
            consumed_cur: 0,
            consumed_prev: 0,
            ready: Vec::new(),
            finals: Vec::new(),
            held: Vec::new(),
            internal: HashMap::default(),
            seq: 0,
            stats: JoinStats::default(),
            native: false,
            native_waiting_exec: None,
            symbols: None,
            launched_image: HashMap::default(),
            first_exec_seen: false,
            exec_notes: HashMap::default(),
            exec_pending: Vec::new(),
            host_view_from: 0,
            ns_ids: None,
            unmapped: HashMap::default(),
            plugins: HashMap::default(),
            fatal_faults: HashMap::default(),
            ended: HashMap::default(),
            enforce_names: crate::enforce::EnforceNames::default(),
        }
    }

    /// The host signal that ended process `pid`, once its end was seen.
    pub fn ended_signal(&self, pid: u32) -> Option<i32> {
        self.ended.get(&pid).copied().flatten()
    }

    /// Name the rules behind the kernel's enforcement records (from
    /// [`crate::enforce::Enforcement::names`]), so their alerts carry them.
    pub fn set_enforce_names(&mut self, names: crate::enforce::EnforceNames) {
        self.enforce_names = names;
    }

    /// The guest side runs in its own PID namespace: its pids and tids are
    /// mapped to the host's through fork events before the join.
    pub fn in_pid_namespace(&mut self) {
        self.ns_ids = Some(HashMap::default());
    }

    /// Host ids for a record's namespace ids; `false` if not known yet.
    fn map_ids(ns_ids: &HashMap<u32, u32>, rec: &mut GuestRecord) -> bool {
        let at = rec.origin_mut();
        match (ns_ids.get(&at.pid), ns_ids.get(&at.tid)) {
            (Some(p), Some(t)) => {
                at.pid = *p;
                at.tid = *t;
                true
            }
            _ => false,
        }
    }

    /// Records held back for their ids, now that more forks are known: the
    /// threads whose first held record now maps go on, in their order.
    fn retry_unmapped(&mut self) {
        let Some(ns) = &self.ns_ids else { return };
        let ready: Vec<u32> = self
            .unmapped
            .iter()
            .filter(|(_, q)| {
                q.first().is_some_and(|r| {
                    let at = r.origin();
                    ns.contains_key(&at.pid) && ns.contains_key(&at.tid)
                })
            })
            .map(|(tid, _)| *tid)
            .collect();
        for tid in ready {
            for r in self.unmapped.remove(&tid).unwrap_or_default() {
                self.guest(r);
            }
        }
    }

    /// The eBPF view began at `t_ns`: calls entered earlier have no host
    /// view to be judged by.
    pub fn set_host_view_from(&mut self, t_ns: u64) {
        self.host_view_from = t_ns;
    }

    /// Name guest PCs from the program's symbols, in process `launched`
    /// (QEMU, already running the program) or else the process the run's
    /// first exec starts QEMU in, and the processes it forks, until one of
    /// them execs another image.
    pub fn set_symbols(&mut self, symbols: Symbolizer, launched: Option<u32>) {
        self.symbols = Some(symbols);
        if let Some(p) = launched {
            self.launched_image.insert(p, ());
            self.first_exec_seen = true;
        }
    }

    /// In a PID namespace: the guest side's id `ns` is the host's `host`
    /// (a process whose fork was not traced).
    pub fn map_ns_id(&mut self, ns: u32, host: u32) {
        if let Some(m) = &mut self.ns_ids {
            m.insert(ns, host);
        }
    }

    fn pc_symbol(&mut self, pid: u32, pc: Option<u64>) -> Option<Name> {
        let sym = self.symbols.as_mut()?;
        if !self.launched_image.contains_key(&pid) {
            return None;
        }
        sym.name(pc?)
    }

    fn alert(&mut self, t_ns: u64, a: AlertEvent) {
        self.ready.push((t_ns, TraceEvent::Alert(Box::new(a))));
    }

    /// A join for a host program traced natively, without QEMU: each host
    /// syscall is a call of its own, with verdict `native`. The calls the
    /// launcher makes in process `launched` before its exec are left out.
    pub fn native(launched: u32) -> Joiner {
        Joiner {
            native: true,
            native_waiting_exec: Some(launched),
            ..Joiner::new(Arch::X86_64)
        }
    }

    fn emit_native(&mut self, h: HostSyscall) {
        if self.native_waiting_exec == Some(h.tgid) {
            // guestview's own launcher, before the exec.
            self.stats.host_internal += 1;
            return;
        }
        let call = host_call(&h);
        let errno = h.ret.and_then(host_errno);
        let mut args = [0u64; 8];
        args[..6].copy_from_slice(&h.args);
        let start = if h.t_enter_ns == 0 {
            h.t_exit_ns
        } else {
            h.t_enter_ns
        };
        self.stats.syscalls += 1;
        self.stats.host_attributed += 1;
        self.ready.push((
            start,
            TraceEvent::Syscall(Box::new(SyscallEvent {
                seq: 0,
                pid: h.tgid,
                tid: h.tid,
                vcpu: 0,
                arch: Cow::Borrowed(Arch::X86_64.name()),
                pc: None,
                pc_sym: None,
                nr: h.nr,
                name: Some(call.name.clone()),
                args,
                path: h.path,
                ret: h.ret,
                errno,
                t_enter_ns: start,
                t_exit_ns: h.t_exit_ns,
                host: vec![call],
                verdict: Cow::Borrowed(crate::diff::NATIVE_VERDICT),
                policy_action: Cow::Borrowed("allow"),
                policy_rule: None,
                guest_path: None,
            })),
        ));
    }

    /// Counters so far.
    pub fn stats(&self) -> JoinStats {
        self.stats
    }

    /// Start of a pass: the guest rings are about to be drained.
    pub fn begin_guest_drain(&mut self) {
        self.pass += 1;
    }

    /// The host ring is about to be drained at monotonic time `now_ns`.
    pub fn begin_host_drain(&mut self, now_ns: u64) {
        self.last_host_drain_ns = now_ns;
    }

    /// The host ring has been drained up to `consumed_pos` (see
    /// `guestview_bpf::HostTracer::consumed_pos`).
    pub fn host_drained(&mut self, consumed_pos: u64) {
        self.consumed_prev = self.consumed_cur;
        self.consumed_cur = consumed_pos;
    }

    /// A validated guest record.
    pub fn guest(&mut self, mut rec: GuestRecord) {
        if let Some(ns) = &self.ns_ids {
            // Keep each thread's order: once one record waits, the later
            // ones of that thread wait behind it.
            let tid = rec.origin().tid;
            if let Some(q) = self.unmapped.get_mut(&tid) {
                q.push(rec);
                return;
            }
            if !Self::map_ids(ns, &mut rec) {
                self.unmapped.insert(tid, vec![rec]);
                return;
            }
        }
        let at = *rec.origin();
        if let GuestRecord::Fault {
            pc,
            handler,
            signal,
            ..
        } = rec
        {
            self.fault(at, pc, handler, signal);
            return;
        }
        let th = self.threads.entry(at.tid).or_default();
        th.pid = at.pid;
        let first = !th.seen_guest;
        th.seen_guest = true;
        match rec {
            GuestRecord::SysEnter {
                nr, args, pc, hpos, ..
            } => {
                if let Some(mut prev) = th.open.take() {
                    // An entry while another call is open: the previous one
                    // never returned (e.g. a restarted call after a signal).
                    prev.exit_pass = self.pass;
                    th.done.push_back(prev);
                }
                th.open = Some(Box::new(GuestCall {
                    pid: at.pid,
                    tid: at.tid,
                    vcpu: at.vcpu,
                    nr,
                    args,
                    pc,
                    t_enter: at.t_ns,
                    p_enter: hpos,
                    exit: None,
                    p_exit: None,
                    exit_pass: 0,
                    end: None,
                    end_pos: None,
                    exec_program: None,
                    exec_seen: false,
                    exec_pending: false,
                    // Nearly every call gets one host call: room for it
                    // now is cheaper than growing from nothing.
                    host: Vec::with_capacity(1),
                    guest_path: GuestPath::None,
                }));
            }
            GuestRecord::GuestPath {
                nr,
                offset,
                bytes,
                len,
                flags,
                ..
            } => {
                // It follows its call's entry on the same ring.
                if let Some(g) = th.open.as_mut().filter(|g| g.nr == nr) {
                    g.guest_path.add(offset, &bytes[..usize::from(len)], flags);
                }
            }
            GuestRecord::SysExit { nr, ret, hpos, .. } => match th.open.take() {
                Some(mut g) if g.nr == nr => {
                    g.exit = Some((at.t_ns, ret));
                    g.p_exit = hpos;
                    g.exit_pass = self.pass;
                    th.done.push_back(g);
                }
                other => {
                    th.open = other;
                    // The child side of fork/clone returns without an entry
                    // on its (new) thread; anything else is unexpected.
                    if !(first || th.done.is_empty() && th.open.is_none()) {
                        self.stats.unmatched_exits += 1;
                    }
                }
            },
            GuestRecord::ThreadStart { .. } => self.ready.push((
                at.t_ns,
                TraceEvent::Thread(ThreadEvent {
                    event: "start".into(),
                    pid: at.pid,
                    tid: at.tid,
                    vcpu: at.vcpu,
                    t_ns: at.t_ns,
                }),
            )),
            GuestRecord::ThreadExit { .. } => {
                th.dead_since.get_or_insert(self.pass);
                self.ready.push((
                    at.t_ns,
                    TraceEvent::Thread(ThreadEvent {
                        event: "exit".into(),
                        pid: at.pid,
                        tid: at.tid,
                        vcpu: at.vcpu,
                        t_ns: at.t_ns,
                    }),
                ));
            }
            GuestRecord::PluginSpan {
                end_ns,
                hpos,
                reason,
                ..
            } => {
                if reason == shmem_proto::record::SPAN_HOST_BACKLOG {
                    self.stats.host_ring_waits += 1;
                }
                th.spans.push_back((at.t_ns, end_ns));
                if let Some(p) = hpos {
                    th.pspans.push_back(p);
                }
            }
            GuestRecord::ProcessStart { arch, plugin, .. } => {
                // A new image on a thread with a call open: that call was an
                // exec whose host event is not read yet (the reader was
                // behind; the new QEMU got as far as its plugin first).
                if let Some(mut g) = th.open.take() {
                    g.exec_pending = true;
                    g.exit_pass = self.pass;
                    th.done.push_back(g);
                }
                if let Some(a) = Arch::from_id(arch) {
                    self.arch_of_pid.insert(at.pid, a);
                }
                let ev = plugin_event(at, plugin);
                if self.plugins.get(&at.pid) != Some(&ev) {
                    self.plugins.insert(at.pid, ev.clone());
                    self.ready.push((at.t_ns, TraceEvent::Plugin(ev)));
                }
            }
            GuestRecord::ProcessExit { .. } | GuestRecord::Fault { .. } => {}
            GuestRecord::Note {
                code: NOTE_EXEC,
                text,
                ..
            } => {
                let program = note_text(&text);
                if let Some(g) = th.open.as_mut() {
                    g.exec_program = Some(program.clone());
                }
                self.exec_notes.insert(at.pid, program);
            }
            GuestRecord::Note {
                code: NOTE_EXEC_REFUSED,
                detail,
                text,
                ..
            } => {
                let path = note_text(&text);
                let (rule, why) = match detail {
                    EXEC_REFUSED_NATIVE => ("exec-native", "is host-native code (an x86 ELF)"),
                    EXEC_REFUSED_FOREIGN => (
                        "exec-foreign",
                        "is a program for another architecture than this QEMU's",
                    ),
                    _ => (
                        "exec-unfollowed",
                        "could not be started under QEMU with the plugin",
                    ),
                };
                self.alert(
                    at.t_ns,
                    AlertEvent {
                        rule: Some(rule.into()),
                        action: "deny".into(),
                        layer: "sandbox".into(),
                        seq: None,
                        pid: at.pid,
                        tid: at.tid,
                        syscall: Some("execve".into()),
                        detail: None,
                        message: format!("exec of {path} refused: it {why}"),
                        path: Some(path),
                        t_ns: at.t_ns,
                    },
                );
            }
            GuestRecord::Note { .. } => {}
        }
    }

    /// What process `pid`'s QEMU offered the plugin, if it said.
    pub fn plugin_info(&self, pid: u32) -> Option<PluginEvent> {
        self.plugins.get(&pid).cloned()
    }

    /// What the first QEMU process to announce itself offered the plugin.
    pub fn first_plugin(&self) -> Option<PluginEvent> {
        self.plugins.values().min_by_key(|p| p.t_ns).cloned()
    }

    /// A guest exception. One that ended its process waits for the kernel
    /// to say by which signal (the plugin cannot read it: QEMU kills itself
    /// with the host signal that has the guest signal's name).
    fn fault(&mut self, at: Origin, pc: u64, handler: Option<u64>, signal: Option<u32>) {
        let arch = self.arch_of(at.pid);
        let signal = signal.map(i64::from);
        let ev = FaultEvent {
            pid: at.pid,
            tid: at.tid,
            vcpu: at.vcpu,
            arch: arch.name().into(),
            pc,
            pc_sym: self.pc_symbol(at.pid, Some(pc)).map(Cow::into_owned),
            signal: signal.map(|s| s as i32),
            signal_name: signal
                .and_then(|s| tables::signal_name(arch, s))
                .map(str::to_owned),
            handler,
            fatal: handler.is_none(),
            t_ns: at.t_ns,
        };
        match self.ended.get(&at.pid) {
            _ if !ev.fatal || ev.signal.is_some() => {
                self.ready.push((at.t_ns, TraceEvent::Fault(Box::new(ev))))
            }
            Some(&host_signal) => self.fatal_signal(ev, host_signal),
            None => self.fatal_faults.entry(at.pid).or_default().push(ev),
        }
    }

    /// A fatal fault gets the signal its process died of, in the guest's numbering.
    fn fatal_signal(&mut self, mut f: FaultEvent, host_signal: Option<i32>) {
        let arch = self.arch_of(f.pid);
        let guest = host_signal.and_then(|s| tables::host_signal_to_guest(arch, i64::from(s)));
        f.signal = guest.map(|s| s as i32);
        f.signal_name = guest
            .and_then(|s| tables::signal_name(arch, s))
            .map(str::to_owned);
        self.ready.push((f.t_ns, TraceEvent::Fault(Box::new(f))));
    }

    /// A host event from the kernel.
    pub fn host(&mut self, ev: HostEvent) {
        let mut learnt = false;
        if let (
            Some(ns),
            HostEvent::Fork {
                child_tgid,
                child_tid,
                child_ns_tgid,
                child_ns_tid,
                ..
            },
        ) = (&mut self.ns_ids, &ev)
        {
            ns.insert(*child_ns_tid, *child_tid);
            ns.insert(*child_ns_tgid, *child_tgid);
            learnt = true;
        }
        self.host_event(ev);
        if learnt {
            self.retry_unmapped();
        }
    }

    fn host_event(&mut self, ev: HostEvent) {
        match ev {
            HostEvent::Syscall(h) => {
                self.stats.host_syscalls += 1;
                if self.native {
                    self.emit_native(h);
                } else {
                    self.host_pending.push_back((self.pass, h));
                }
            }
            HostEvent::Fork {
                parent_tgid,
                child_tgid,
                child_ns_tgid,
                is_thread: false,
                t_ns,
                ..
            } => {
                if self.launched_image.contains_key(&parent_tgid) {
                    self.launched_image.insert(child_tgid, ());
                }
                self.ready.push((
                    t_ns,
                    TraceEvent::Process(Box::new(ProcessEvent {
                        event: "fork".into(),
                        pid: child_tgid,
                        ppid: Some(parent_tgid),
                        ns_pid: self.ns_ids.is_some().then_some(child_ns_tgid),
                        t_ns,
                        ..Default::default()
                    })),
                ))
            }
            HostEvent::Fork { .. } => {}
            HostEvent::Exec {
                tgid,
                old_tid,
                filename,
                killed,
                t_ns,
                pos,
                ..
            } => {
                if self.native_waiting_exec == Some(tgid) {
                    self.native_waiting_exec = None;
                }
                // An exec before the process made any guest call is QEMU's
                // own start (seen when tracing began a moment before it
                // finished): the image is still the launched one.
                let started = self.threads.values().any(|t| t.pid == tgid && t.seen_guest);
                if self.first_exec_seen {
                    if started {
                        self.launched_image.remove(&tgid);
                    }
                } else {
                    self.first_exec_seen = true;
                    self.launched_image.insert(tgid, ());
                }
                // The exec that replaced the image ends the guest call that
                // asked for it: what the new image does is not that call's.
                let pass = self.pass;
                if let Some(th) = self.threads.get_mut(&old_tid) {
                    if th.open.as_ref().is_some_and(|g| g.t_enter <= t_ns) {
                        if let Some(mut g) = th.open.take() {
                            g.end = Some(t_ns);
                            g.end_pos = Some(pos);
                            g.exit_pass = pass;
                            th.done.push_back(g);
                        }
                    } else if let Some(g) = th
                        .done
                        .iter_mut()
                        .rev()
                        .find(|g| g.exec_pending && g.t_enter <= t_ns)
                    {
                        g.exec_pending = false;
                        g.end = Some(t_ns);
                        g.end_pos = Some(pos);
                        g.exit_pass = pass;
                    }
                }
                if killed {
                    self.alert(
                        t_ns,
                        AlertEvent {
                            rule: Some("exec-untraced".into()),
                            action: "kill".into(),
                            layer: "sandbox".into(),
                            seq: None,
                            syscall: Some("execve".into()),
                            detail: None,
                            pid: tgid,
                            tid: old_tid,
                            message: format!(
                                "exec of {filename} would have run outside QEMU with the plugin: killed before its first instruction"
                            ),
                            path: Some(filename.clone()),
                            t_ns,
                        },
                    );
                }
                // Its note (what guest program QEMU now runs) was sent
                // before the exec: it is there after the next guest drain.
                self.exec_pending.push((
                    self.pass,
                    t_ns,
                    ProcessEvent {
                        event: "exec".into(),
                        pid: tgid,
                        filename: Some(filename),
                        t_ns,
                        ..Default::default()
                    },
                ));
            }
            HostEvent::Enforce {
                tgid,
                tid,
                nr,
                reason,
                count,
                limit,
                killed,
                t_ns,
            } => {
                let alert = crate::enforce::ebpf_alert(
                    &self.enforce_names,
                    tgid,
                    tid,
                    nr,
                    reason,
                    count,
                    limit,
                    killed,
                    t_ns,
                );
                self.ready.push((t_ns, TraceEvent::Alert(Box::new(alert))));
            }
            HostEvent::Exit {
                tgid,
                tid,
                exit_code,
                group_dead,
                t_ns,
            } => {
                let pass = self.pass;
                if let Some(th) = self.threads.get_mut(&tid) {
                    th.dead_since.get_or_insert(pass);
                }
                if group_dead {
                    for th in self.threads.values_mut().filter(|t| t.pid == tgid) {
                        th.dead_since.get_or_insert(pass);
                    }
                    let (status, signal) = if exit_code & 0x7f == 0 {
                        (Some((exit_code >> 8) & 0xff), None)
                    } else {
                        (None, Some(exit_code & 0x7f))
                    };
                    self.ended.insert(tgid, signal);
                    for f in self.fatal_faults.remove(&tgid).unwrap_or_default() {
                        self.fatal_signal(f, signal);
                    }
                    self.ready.push((
                        t_ns,
                        TraceEvent::Process(Box::new(ProcessEvent {
                            event: "exit".into(),
                            pid: tgid,
                            status,
                            signal,
                            t_ns,
                            ..Default::default()
                        })),
                    ));
                }
            }
        }
    }

    fn classify(&mut self, h: HostSyscall) {
        let call = host_call(&h);
        let Some(th) = self.threads.get_mut(&h.tid) else {
            self.stats.host_internal += 1;
            let e = self
                .internal
                .entry((h.tgid, h.tid, false))
                .or_insert((h.t_exit_ns, Vec::new()));
            e.1.push(call);
            return;
        };
        // Where the host call is, and where each guest call begins and
        // ends, on one scale. A host call without a time (its process reads
        // ring positions, so all its guest calls carry them) is placed by
        // ring position: exact by construction, the plugin reads the
        // position before QEMU's first host call for a guest call and after
        // its last. A timed one by the one clock both sides read.
        let by_pos = h.t_exit_ns == 0;
        let key = if by_pos {
            h.pos
        } else if h.t_enter_ns == 0 {
            h.t_exit_ns
        } else {
            h.t_enter_ns
        };
        let enter = |g: &GuestCall| {
            if by_pos {
                // Calls of a later image without positions sort last.
                g.p_enter.unwrap_or(u64::MAX)
            } else {
                g.t_enter
            }
        };
        // Is the host call before the end of guest call g? Positions: the
        // return position is read after the last host call was recorded
        // (pos < p_exit); times: it ended no later than the return. A call
        // ended by an exec (no return) owns what came before the exec.
        let before_end = |g: &GuestCall| {
            if g.exec_pending {
                // Its exec event is not read yet: neither is anything after.
                true
            } else if by_pos {
                g.p_exit.is_some_and(|p| h.pos < p) || g.end_pos.is_some_and(|e| h.pos < e)
            } else {
                g.exit.is_some_and(|(t_exit, _)| h.t_exit_ns <= t_exit)
                    || g.end.is_some_and(|end| key <= end)
            }
        };
        if let Some(g) = th.open.as_mut() {
            if enter(g) <= key {
                g.host.push(call);
                self.stats.host_attributed += 1;
                return;
            }
        }
        // Calls of one thread do not overlap and `done` is in entry
        // order: the only candidate is the last call entered before it.
        // Try the hint and its successor before searching.
        let at = |i: usize| th.done.get(i).map(|g| enter(g));
        let h0 = th.hint.saturating_sub(th.popped) as usize;
        let idx = if at(h0).is_some_and(|t| t <= key) && at(h0 + 1).is_none_or(|t| t > key) {
            h0 + 1
        } else if at(h0 + 1).is_some_and(|t| t <= key) && at(h0 + 2).is_none_or(|t| t > key) {
            h0 + 2
        } else {
            th.done.partition_point(|g| enter(g) <= key)
        };
        th.hint = th.popped + idx.saturating_sub(1) as u64;
        // An untimed host call is ordered in the output by the guest call
        // it follows.
        let mut when = h.t_exit_ns;
        if idx > 0 {
            let g = &mut th.done[idx - 1];
            // The exec itself is recorded at its return, in the new image,
            // just after the exec event that ended the call (timed: a new
            // image reads no positions).
            let own_exec = g.end.is_some() && h.t_enter_ns == 0 && matches!(h.nr, 59 | 322);
            if before_end(g) || own_exec {
                g.exec_seen |= own_exec;
                g.host.push(call);
                self.stats.host_attributed += 1;
                return;
            }
            if when == 0 {
                when = g.exit.map_or(g.t_enter, |(t, _)| t);
            }
        }
        let plugin = if by_pos {
            th.pspans.iter().any(|(s, e)| *s <= h.pos && h.pos < *e)
        } else {
            th.spans.iter().any(|(s, e)| *s <= key && h.t_exit_ns <= *e)
        };
        self.stats.host_internal += 1;
        let e = self
            .internal
            .entry((h.tgid, h.tid, plugin))
            .or_insert((when, Vec::new()));
        e.0 = e.0.min(when);
        e.1.push(call);
    }

    fn arch_of(&self, pid: u32) -> Arch {
        self.arch_of_pid.get(&pid).copied().unwrap_or(self.arch)
    }

    fn emit_call(&mut self, g: Box<GuestCall>) {
        let arch = self.arch_of(g.pid);
        let name = tables::guest_syscall_name(arch, g.nr);
        // What the guest's registers hold: 32-bit guests' values come
        // sign-extended from QEMU.
        let ret = g.exit.map(|(_, r)| arch.guest_ret(r));
        let args = g.args.map(|a| arch.guest_word(a));
        let errno = ret.and_then(|r| verdict::errno_of(arch, r));
        let path = match g.exec_program {
            Some(p) => Some(p),
            None => verdict::path_of(name, &g.host),
        };
        let v = if g.t_enter < self.host_view_from {
            "guest-only"
        } else {
            verdict::verdict(arch, name, ret, &g.host)
        };
        let pc_sym = self.pc_symbol(g.pid, g.pc);
        let mut guest_path = g.guest_path;
        let guest_path = guest_path.take();
        self.stats.syscalls += 1;
        self.ready.push((
            g.t_enter,
            TraceEvent::Syscall(Box::new(SyscallEvent {
                seq: 0,
                pid: g.pid,
                tid: g.tid,
                vcpu: g.vcpu,
                arch: Cow::Borrowed(arch.name()),
                pc: g.pc,
                pc_sym,
                nr: g.nr,
                name: name.map(Cow::Borrowed),
                args,
                path,
                ret,
                errno,
                t_enter_ns: g.t_enter,
                t_exit_ns: g.exit.map_or(0, |(t, _)| t),
                host: g.host,
                verdict: Cow::Borrowed(v),
                policy_action: Cow::Borrowed("allow"),
                policy_rule: None,
                guest_path,
            })),
        ));
    }

    /// Classify and finalize what this pass allows; returns the events that
    /// are final, in time order.
    pub fn settle(&mut self) -> Vec<TraceEvent> {
        let mut out = Vec::new();
        self.settle_inner(false, &mut out);
        out
    }

    /// [`Joiner::settle`] into `out` (appended), whose capacity the caller
    /// keeps from pass to pass.
    pub fn settle_into(&mut self, out: &mut Vec<TraceEvent>) {
        self.settle_inner(false, out);
    }

    /// Everything is drained for good (all traced processes are gone):
    /// settle every remaining call and event.
    pub fn finish(&mut self) -> Vec<TraceEvent> {
        let mut out = Vec::new();
        self.settle_inner(true, &mut out);
        out
    }

    fn settle_inner(&mut self, all: bool, out: &mut Vec<TraceEvent>) {
        if all {
            // Their process's end was never seen: the signal stays unknown.
            for (_, faults) in self.fatal_faults.drain() {
                for f in faults {
                    self.ready.push((f.t_ns, TraceEvent::Fault(Box::new(f))));
                }
            }
        }
        if all && !self.unmapped.is_empty() {
            // Their fork was never seen: join them under the ids they gave.
            self.ns_ids = None;
            for (_, q) in std::mem::take(&mut self.unmapped) {
                for r in q {
                    self.guest(r);
                }
            }
        }
        while let Some((p, _)) = self.host_pending.front() {
            if !all && *p >= self.pass {
                break;
            }
            let (_, h) = self.host_pending.pop_front().expect("front exists");
            self.classify(h);
        }
        let pass = self.pass;
        let mut i = 0;
        while i < self.exec_pending.len() {
            if all || self.exec_pending[i].0 < pass {
                let (_, t, mut ev) = self.exec_pending.swap_remove(i);
                ev.program = self.exec_notes.remove(&ev.pid);
                self.ready.push((t, TraceEvent::Process(Box::new(ev))));
            } else {
                i += 1;
            }
        }
        let horizon = self.last_host_drain_ns.saturating_sub(VISIBILITY_MARGIN_NS);
        let mut finals = std::mem::take(&mut self.finals);
        // Host events drained before this pass are classified: the ring was
        // read up to `covered` by then.
        let covered = self.consumed_prev;
        for th in self.threads.values_mut() {
            while let Some(g) = th.done.front() {
                // A positioned call is final once the ring was read past its
                // return position (every host call it made was reserved
                // below it): exact, whatever held a record back. A timed one
                // once its return is 2 ms older than the latest drain.
                let in_hand = match (g.p_exit, g.end_pos) {
                    (Some(p), _) | (None, Some(p)) => p <= covered,
                    _ => g
                        .exit
                        .map(|(t, _)| t)
                        .or(g.end)
                        .is_none_or(|t| t <= horizon),
                };
                // An exec's own host call is recorded at its return in the
                // new image, after the exec event that ended the call (a
                // loaded machine can run other things in between): wait
                // for it, a while at most.
                let waiting = g.exit.is_none()
                    && (g.end.is_some() && !g.exec_seen || g.exec_pending)
                    && g.exit_pass + EXEC_WAIT_PASSES >= pass;
                let ok = all || (g.exit_pass < pass && !waiting && in_hand);
                if !ok {
                    break;
                }
                finals.push(th.done.pop_front().expect("front exists"));
                th.popped += 1;
            }
            let dead = th.dead_since.is_some_and(|d| d < pass);
            if (all || dead) && th.done.is_empty() {
                if let Some(g) = th.open.take() {
                    finals.push(g);
                }
            }
            // Spans older than anything still pending can go.
            let oldest = th
                .done
                .front()
                .map(|g| g.t_enter)
                .or(th.open.as_ref().map(|g| g.t_enter))
                .unwrap_or(horizon);
            while th.spans.len() > 64 && th.spans.front().is_some_and(|(_, e)| *e < oldest) {
                th.spans.pop_front();
            }
            let oldest_pos = th
                .done
                .front()
                .or(th.open.as_ref())
                .and_then(|g| g.p_enter)
                .unwrap_or(0);
            while th.pspans.len() > 64 && th.pspans.front().is_some_and(|(_, e)| *e < oldest_pos) {
                th.pspans.pop_front();
            }
        }
        for g in finals.drain(..) {
            self.emit_call(g);
        }
        self.finals = finals;
        if all {
            self.threads.clear();
        } else {
            self.threads.retain(|_, t| {
                !(t.dead_since.is_some_and(|d| d + 1 < pass)
                    && t.open.is_none()
                    && t.done.is_empty())
            });
        }
        for ((pid, tid, plugin), (t, host)) in self.internal.drain() {
            self.ready.push((
                t,
                TraceEvent::Internal(InternalEvent {
                    pid,
                    tid,
                    origin: if plugin { "plugin" } else { "qemu" }.into(),
                    host,
                }),
            ));
        }
        // Lifecycle events wait for the calls that began before them, so a
        // process never exits in the output before its last call shows.
        let pending_from = self
            .threads
            .values()
            .flat_map(|t| {
                t.done
                    .front()
                    .map(|g| g.t_enter)
                    .into_iter()
                    .chain(t.open.as_ref().map(|g| g.t_enter))
            })
            .min()
            .unwrap_or(u64::MAX);
        // Events that must wait go to `held`, the rest stay in `ready`.
        let mut ready = std::mem::take(&mut self.ready);
        let mut held = std::mem::take(&mut self.held);
        if !all {
            ready.retain_mut(|(t, ev)| {
                let go = *t < pending_from || matches!(ev, TraceEvent::Syscall(_));
                if !go {
                    held.push((
                        *t,
                        std::mem::replace(ev, TraceEvent::Lost(LostEvent::default())),
                    ));
                }
                go
            });
        }
        if !ready.is_sorted_by_key(|(t, _)| *t) {
            ready.sort_by_key(|(t, _)| *t);
        }
        out.reserve(ready.len());
        for (_, mut ev) in ready.drain(..) {
            if let TraceEvent::Syscall(s) = &mut ev {
                self.seq += 1;
                s.seq = self.seq;
            }
            out.push(ev);
        }
        // What was held back leads the next pass; `ready` keeps its capacity.
        self.ready = held;
        self.held = ready;
    }

    /// The `lost` record for the end of a run.
    pub fn lost(host: &guestview_bpf::HostStats, guest: &shmem_proto::RingStats) -> TraceEvent {
        TraceEvent::Lost(LostEvent {
            host_dropped: host.dropped,
            guest_dropped: guest.dropped,
            guest_no_ring: guest.no_ring,
            guest_corrupt: guest.corrupt,
            host_malformed: host.malformed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmem_proto::Origin;

    fn at(tid: u32, t: u64) -> Origin {
        Origin {
            vcpu: 0,
            pid: 100,
            tid,
            t_ns: t,
        }
    }

    fn host(tid: u32, nr: i64, t0: u64, t1: u64, ret: i64) -> HostEvent {
        HostEvent::Syscall(HostSyscall {
            tgid: 100,
            tid,
            nr,
            args: [0; 6],
            ret: Some(ret),
            t_enter_ns: t0,
            t_exit_ns: t1,
            pos: 0,
            path: None,
        })
    }

    fn calls(evs: &[TraceEvent]) -> Vec<&SyscallEvent> {
        evs.iter()
            .filter_map(|e| match e {
                TraceEvent::Syscall(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn host_calls_go_to_the_window_of_their_own_thread() {
        let mut j = Joiner::new(Arch::Mips);
        j.begin_guest_drain();
        // thread 1: getppid (4064) window 10..20; thread 2: write (4004) window 12..30
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4064,
            args: [0; 8],
            pc: Some(0x400),
            hpos: None,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(2, 12),
            nr: 4004,
            args: [1, 0, 1, 0, 0, 0, 0, 0],
            pc: None,
            hpos: None,
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 20),
            nr: 4064,
            ret: 7,
            hpos: None,
        });
        j.guest(GuestRecord::SysExit {
            at: at(2, 30),
            nr: 4004,
            ret: 1,
            hpos: None,
        });
        j.begin_host_drain(1_000_000_000);
        j.host(host(1, 5, 1, 2, 0)); // before any window: internal
        j.host(host(2, 1, 14, 16, 1)); // write on thread 2
        j.host(host(1, 110, 15, 16, 7)); // getppid on thread 1
        assert!(
            calls(&j.settle()).is_empty(),
            "host events of this pass are not classifiable yet"
        );
        j.begin_guest_drain();
        j.begin_host_drain(2_000_000_000);
        let evs = j.settle();
        let c = calls(&evs);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name.as_deref(), Some("getppid"));
        assert_eq!(c[0].host.len(), 1);
        assert_eq!(c[0].host[0].name, "getppid");
        assert_eq!(c[0].verdict, "passthrough");
        assert_eq!(c[1].name.as_deref(), Some("write"));
        assert_eq!(c[1].host[0].tid, 2);
        assert!(evs.iter().any(
            |e| matches!(e, TraceEvent::Internal(i) if i.host.len() == 1 && i.origin == "qemu")
        ));
        assert_eq!(j.stats().host_attributed, 2);
        assert_eq!(j.stats().host_internal, 1);
    }

    #[test]
    fn an_exec_ends_its_call_and_its_late_host_exec_still_joins_it() {
        let mut j = Joiner::new(Arch::Mips);
        j.begin_guest_drain();
        // execve (4011) entered at 10; the plugin's note; the host exec
        // event at 20.
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4011,
            args: [0; 8],
            pc: None,
            hpos: None,
        });
        j.guest(GuestRecord::Note {
            at: at(1, 11),
            code: NOTE_EXEC,
            detail: 0,
            text: shmem_proto::record::note_bytes(b"/bin/ls"),
        });
        j.begin_host_drain(1_000);
        j.host(HostEvent::Exec {
            tgid: 100,
            tid: 1,
            old_tid: 1,
            filename: "/.guestview/lib/ld-linux-x86-64.so.2".into(),
            killed: false,
            t_ns: 20,
            pos: 0,
        });
        // Passes go by (a loaded machine) before the exec's own host call,
        // recorded at its return in the new image, is drained.
        let mut out = Vec::new();
        for k in 0..5 {
            j.begin_guest_drain();
            j.begin_host_drain(1_000_000_000 * (k + 2));
            j.settle_into(&mut out);
        }
        assert!(calls(&out).is_empty(), "the execve waits for its host call");
        j.host(host(1, 59, 0, 25, 0));
        // What the new image does (QEMU starting) is not the execve's.
        j.host(host(1, 9, 0, 40, 0));
        for k in 0..3 {
            j.begin_guest_drain();
            j.begin_host_drain(1_000_000_000 * (k + 10));
            j.settle_into(&mut out);
        }
        let c = calls(&out);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path.as_deref(), Some("/bin/ls"));
        assert_eq!(c[0].host.len(), 1, "{:?}", c[0].host);
        assert_eq!(c[0].host[0].name, "execve");
        assert_eq!(c[0].ret, None);
        let exec = out
            .iter()
            .find_map(|e| match e {
                TraceEvent::Process(p) if p.event == "exec" => Some(p),
                _ => None,
            })
            .expect("the exec event");
        assert_eq!(exec.program.as_deref(), Some("/bin/ls"));
        assert_eq!(j.stats().host_internal, 1);
    }

    #[test]
    fn a_new_image_read_before_its_exec_event_still_ends_the_exec() {
        // A loaded machine: the new image's plugin start (and a first call)
        // reach the reader before the host exec event that made them.
        let mut j = Joiner::new(Arch::Mips);
        j.begin_guest_drain();
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4011,
            args: [0; 8],
            pc: None,
            hpos: None,
        });
        j.guest(GuestRecord::ProcessStart {
            at: at(1, 50),
            ppid: 90,
            arch: Arch::Mips.id(),
            plugin: PluginInfo::default(),
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 60),
            nr: 4020,
            args: [0; 8],
            pc: None,
            hpos: None,
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 61),
            nr: 4020,
            ret: 100,
            hpos: None,
        });
        let mut out = Vec::new();
        j.begin_host_drain(1_000);
        // Before the exec event: the old image's host call is the execve's.
        j.host(host(1, 21, 0, 12, 0));
        j.settle_into(&mut out);
        j.begin_guest_drain();
        j.begin_host_drain(2_000);
        j.host(HostEvent::Exec {
            tgid: 100,
            tid: 1,
            old_tid: 1,
            filename: "/.guestview/lib/ld-linux-x86-64.so.2".into(),
            killed: false,
            t_ns: 20,
            pos: 0,
        });
        j.host(host(1, 59, 0, 25, 0));
        j.host(host(1, 39, 0, 60, 100));
        out.extend(j.finish());
        let c = calls(&out);
        assert_eq!(c.len(), 2, "{c:?}");
        let names: Vec<&str> = c[0].host.iter().map(|h| h.name.as_ref()).collect();
        assert_eq!(names, ["access", "execve"], "{:?}", c[0]);
        assert_eq!(c[0].ret, None);
        assert_eq!(c[1].host.len(), 1);
        assert_eq!(c[1].host[0].name, "getpid");
        assert_eq!(j.stats().host_internal, 0);
    }

    #[test]
    fn verdicts_for_emulated_unsupported_and_never_returning() {
        let mut j = Joiner::new(Arch::Mips);
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4045,
            args: [0; 8],
            pc: None,
            hpos: None,
        }); // brk
        j.guest(GuestRecord::SysExit {
            at: at(1, 11),
            nr: 4045,
            ret: 0x1000,
            hpos: None,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 20),
            nr: 4425,
            args: [0; 8],
            pc: None,
            hpos: None,
        }); // io_uring_setup
        j.guest(GuestRecord::SysExit {
            at: at(1, 21),
            nr: 4425,
            ret: -89,
            hpos: None,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 30),
            nr: 4246,
            args: [3, 0, 0, 0, 0, 0, 0, 0],
            pc: None,
            hpos: None,
        }); // exit_group
        j.host(HostEvent::Syscall(HostSyscall {
            tgid: 100,
            tid: 1,
            nr: 231,
            args: [3, 0, 0, 0, 0, 0],
            ret: None,
            t_enter_ns: 31,
            t_exit_ns: 31,
            pos: 0,
            path: None,
        }));
        let c = j.finish();
        let c = calls(&c);
        assert_eq!(
            c.iter().map(|s| s.verdict.as_ref()).collect::<Vec<_>>(),
            ["emulated", "unsupported", "passthrough"]
        );
        assert_eq!(c[1].errno.as_deref(), Some("ENOSYS"));
        assert_eq!(c[2].ret, None);
        assert_eq!(c[2].host[0].name, "exit_group");
    }

    #[test]
    fn namespace_ids_wait_for_their_fork_and_are_mapped_to_the_host() {
        let mut j = Joiner::new(Arch::Mips);
        j.in_pid_namespace();
        let ns = |t| Origin {
            vcpu: 0,
            pid: 1,
            tid: 1,
            t_ns: t,
        };
        j.begin_guest_drain();
        j.guest(GuestRecord::SysEnter {
            at: ns(10),
            nr: 4020,
            args: [0; 8],
            pc: None,
            hpos: None,
        }); // getpid, before its fork event was read
        j.guest(GuestRecord::SysExit {
            at: ns(20),
            nr: 4020,
            ret: 1,
            hpos: None,
        });
        j.begin_host_drain(1_000_000_000);
        j.host(HostEvent::Fork {
            parent_tgid: 90,
            parent_tid: 90,
            child_tgid: 100,
            child_tid: 100,
            child_ns_tgid: 1,
            child_ns_tid: 1,
            is_thread: false,
            t_ns: 5,
        });
        j.host(HostEvent::Syscall(HostSyscall {
            tgid: 100,
            tid: 100,
            nr: 39,
            args: [0; 6],
            ret: Some(1),
            t_enter_ns: 0,
            t_exit_ns: 15,
            pos: 0,
            path: None,
        }));
        let evs = j.finish();
        let c = calls(&evs);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].pid, c[0].tid), (100, 100), "host ids");
        assert_eq!(c[0].host.len(), 1, "joined with the host getpid");
        assert_eq!(c[0].verdict, "passthrough");
    }

    #[test]
    fn each_namespace_thread_waits_for_its_own_fork_only() {
        let mut j = Joiner::new(Arch::Mips);
        j.in_pid_namespace();
        let ns = |pid, t| Origin {
            vcpu: 0,
            pid,
            tid: pid,
            t_ns: t,
        };
        j.begin_guest_drain();
        for pid in [1, 2] {
            j.guest(GuestRecord::SysEnter {
                at: ns(pid, 10),
                nr: 4020,
                args: [0; 8],
                pc: None,
                hpos: None,
            });
            j.guest(GuestRecord::SysExit {
                at: ns(pid, 20),
                nr: 4020,
                ret: i64::from(pid),
                hpos: None,
            });
        }
        let fork = |ns_pid: u32, host: u32| HostEvent::Fork {
            parent_tgid: 90,
            parent_tid: 90,
            child_tgid: host,
            child_tid: host,
            child_ns_tgid: ns_pid,
            child_ns_tid: ns_pid,
            is_thread: false,
            t_ns: 5,
        };
        j.begin_host_drain(1_000_000_000);
        // Process 2's fork is read first: its call goes on, 1's still waits.
        j.host(fork(2, 200));
        assert_eq!(j.unmapped.len(), 1);
        assert!(j.unmapped.contains_key(&1));
        assert_eq!(j.threads.get(&200).map(|t| t.done.len()), Some(1));
        j.host(fork(1, 100));
        assert!(j.unmapped.is_empty());
        let evs = j.finish();
        let mut pids: Vec<(u32, Option<i64>)> =
            calls(&evs).iter().map(|c| (c.pid, c.ret)).collect();
        pids.sort();
        assert_eq!(pids, [(100, Some(1)), (200, Some(2))]);
    }

    fn chunk(t: u64, nr: i64, offset: u16, s: &[u8], flags: u16) -> GuestRecord {
        let mut bytes = [0u8; 64];
        bytes[..s.len()].copy_from_slice(s);
        GuestRecord::GuestPath {
            at: at(1, t),
            nr,
            arg: 1,
            offset,
            bytes,
            len: s.len() as u8,
            flags,
        }
    }

    #[test]
    fn guest_paths_are_assembled_from_their_chunks_and_nothing_else() {
        use shmem_proto::record::PATH_TRUNCATED;
        let mut j = Joiner::new(Arch::Mips);
        let long: Vec<u8> = (0..100).map(|i| b'a' + (i % 26) as u8).collect();
        let enter = |t, nr| GuestRecord::SysEnter {
            at: at(1, t),
            nr,
            args: [0; 8],
            pc: None,
            hpos: None,
        };
        let exit = |t, nr| GuestRecord::SysExit {
            at: at(1, t),
            nr,
            ret: 3,
            hpos: None,
        };
        // openat: a 100-byte path in two chunks.
        j.guest(enter(10, 4288));
        j.guest(chunk(11, 4288, 0, &long[..64], 0));
        j.guest(chunk(11, 4288, 64, &long[64..], PATH_LAST));
        j.guest(exit(12, 4288));
        // a chunk for another call number, and one out of order: no path.
        j.guest(enter(20, 4288));
        j.guest(chunk(21, 4005, 0, b"/x", PATH_LAST));
        j.guest(exit(22, 4288));
        j.guest(enter(30, 4288));
        j.guest(chunk(31, 4288, 64, b"/y", PATH_LAST));
        j.guest(exit(32, 4288));
        // unreadable guest memory (EFAULT): no path; truncated: as read.
        j.guest(enter(40, 4288));
        j.guest(chunk(41, 4288, 0, b"", PATH_LAST | PATH_UNREADABLE));
        j.guest(exit(42, 4288));
        j.guest(enter(50, 4288));
        j.guest(chunk(51, 4288, 0, b"/\xffz", PATH_LAST | PATH_TRUNCATED));
        j.guest(exit(52, 4288));
        let evs = j.finish();
        let paths: Vec<Option<&str>> = calls(&evs)
            .iter()
            .map(|c| c.guest_path.as_deref())
            .collect();
        let long = String::from_utf8(long).unwrap();
        assert_eq!(
            paths,
            [Some(long.as_str()), None, None, None, Some("/\u{fffd}z")]
        );
    }

    #[test]
    fn a_fatal_fault_takes_its_signal_from_the_kernel_in_guest_numbering() {
        let mut j = Joiner::new(Arch::Mips);
        j.guest(GuestRecord::Fault {
            at: at(1, 10),
            pc: 0x4009a4,
            handler: None,
            signal: None,
        });
        j.guest(GuestRecord::Fault {
            at: at(1, 5),
            pc: 0x400960,
            handler: Some(0x4009b4),
            signal: Some(11),
        });
        let faults = |evs: &[TraceEvent]| -> Vec<FaultEvent> {
            evs.iter()
                .filter_map(|e| match e {
                    TraceEvent::Fault(f) => Some((**f).clone()),
                    _ => None,
                })
                .collect()
        };
        let first = faults(&j.settle());
        assert_eq!(first.len(), 1, "the handled one at once: {first:?}");
        assert_eq!(first[0].signal_name.as_deref(), Some("SIGSEGV"));
        // The process dies of host SIGBUS (7), which is MIPS SIGBUS (10).
        j.host(HostEvent::Exit {
            tgid: 100,
            tid: 1,
            exit_code: 7,
            group_dead: true,
            t_ns: 20,
        });
        let f = faults(&j.finish());
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].signal, f[0].signal_name.as_deref()),
            (Some(10), Some("SIGBUS"))
        );
        assert!(f[0].fatal && f[0].handler.is_none());
        // The other order: the fault is drained after its process's end.
        let mut j = Joiner::new(Arch::Mips);
        j.host(HostEvent::Exit {
            tgid: 100,
            tid: 1,
            exit_code: 11,
            group_dead: true,
            t_ns: 20,
        });
        j.guest(GuestRecord::Fault {
            at: at(1, 10),
            pc: 0x400960,
            handler: None,
            signal: None,
        });
        let f = faults(&j.finish());
        assert_eq!(f[0].signal_name.as_deref(), Some("SIGSEGV"));
    }

    #[test]
    fn plugin_spans_are_tagged_not_attributed() {
        let mut j = Joiner::new(Arch::Mips);
        j.guest(GuestRecord::PluginSpan {
            at: at(1, 5),
            end_ns: 9,
            reason: 1,
            hpos: None,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4064,
            args: [0; 8],
            pc: None,
            hpos: None,
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 20),
            nr: 4064,
            ret: 1,
            hpos: None,
        });
        j.host(host(1, 186, 6, 7, 1)); // gettid during set-up
        let evs = j.finish();
        assert!(evs
            .iter()
            .any(|e| matches!(e, TraceEvent::Internal(i) if i.origin == "plugin")));
        assert!(calls(&evs)[0].host.is_empty());
    }

    fn host_at(tid: u32, nr: i64, pos: u64) -> HostEvent {
        HostEvent::Syscall(HostSyscall {
            tgid: 100,
            tid,
            nr,
            args: [0; 6],
            ret: Some(0),
            t_enter_ns: 0,
            t_exit_ns: 0,
            pos,
            path: None,
        })
    }

    #[test]
    fn positioned_threads_are_joined_by_ring_position_without_host_times() {
        let mut j = Joiner::new(Arch::Mips);
        j.begin_guest_drain();
        // Thread 1 reads positions: a setup span [0, 224), getppid [224,
        // 336), write [448, 560). Thread 2 does not (times only).
        j.guest(GuestRecord::PluginSpan {
            at: at(1, 1),
            end_ns: 2,
            reason: 1,
            hpos: Some((0, 224)),
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4064,
            args: [0; 8],
            pc: None,
            hpos: Some(224),
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 20),
            nr: 4064,
            ret: 7,
            hpos: Some(336),
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 30),
            nr: 4004,
            args: [1, 0, 1, 0, 0, 0, 0, 0],
            pc: None,
            hpos: Some(448),
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 40),
            nr: 4004,
            ret: 1,
            hpos: Some(560),
        });
        j.begin_host_drain(1_000_000_000);
        j.host(host_at(1, 186, 112)); // the plugin's own, in its span
        j.host(host_at(1, 110, 224)); // getppid: first position of the window
        j.host(host_at(1, 9, 336)); // an mmap at the return position: QEMU's own
        j.host(host_at(1, 1, 448)); // write
        j.host(host_at(1, 1, 560)); // after the write returned: QEMU's own
        let evs = j.finish();
        let c = calls(&evs);
        assert_eq!(c.len(), 2);
        let names = |s: &SyscallEvent| s.host.iter().map(|h| h.nr).collect::<Vec<_>>();
        assert_eq!(names(c[0]), vec![110]);
        assert_eq!(names(c[1]), vec![1]);
        let internal: Vec<_> = evs
            .iter()
            .filter_map(|e| match e {
                TraceEvent::Internal(i) => Some((i.origin.to_string(), i.host.len())),
                _ => None,
            })
            .collect();
        assert!(
            internal.contains(&("plugin".to_string(), 1)),
            "{internal:?}"
        );
        assert!(internal.contains(&("qemu".to_string(), 2)), "{internal:?}");
        assert_eq!(j.stats().host_attributed, 2);
        assert_eq!(j.stats().host_internal, 3);
    }

    #[test]
    fn the_plugin_and_the_ebpf_programs_agree_on_the_untimed_fcntl() {
        assert_eq!(
            shmem_proto::HOSTPOS_FCNTL_CMD as u32,
            guestview_bpf::UNTIMED_FCNTL_CMD
        );
    }
}
