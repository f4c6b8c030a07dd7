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
use shmem_proto::trace::{
    HostCall, InternalEvent, LostEvent, Name, ProcessEvent, SyscallEvent, ThreadEvent, TraceEvent,
};
use shmem_proto::{Arch, GuestRecord};
use std::borrow::Cow;
use std::collections::VecDeque;

/// Extra time a host event may take to become visible after the guest call
/// that contains it returned (a reservation by another CPU can hold it back
/// in the kernel ring for a moment).
const VISIBILITY_MARGIN_NS: u64 = 2_000_000;

#[derive(Debug)]
struct GuestCall {
    pid: u32,
    tid: u32,
    vcpu: u32,
    nr: i64,
    args: [u64; 8],
    pc: Option<u64>,
    t_enter: u64,
    exit: Option<(u64, i64)>,
    exit_pass: u64,
    host: Vec<HostCall>,
}

#[derive(Default, Debug)]
struct ThreadJoin {
    pid: u32,
    open: Option<GuestCall>,
    done: VecDeque<GuestCall>,
    /// Calls popped from the front of `done` so far: `done[i]` is the
    /// thread's call number `popped + i`.
    popped: u64,
    /// Number of the call the last host event of this thread went to: the
    /// next one almost always goes to it or the one after (host events of a
    /// thread come in time order), which spares a binary search.
    hint: u64,
    spans: VecDeque<(u64, u64)>,
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
}

/// The streaming join.
pub struct Joiner {
    arch: Arch,
    arch_of_pid: HashMap<u32, Arch>,
    threads: HashMap<u32, ThreadJoin>,
    host_pending: VecDeque<(u64, HostSyscall)>,
    pass: u64,
    last_host_drain_ns: u64,
    ready: Vec<(u64, TraceEvent)>,
    /// Scratch buffers of `settle`, kept so their capacity survives passes
    /// (growing them anew every millisecond was a tenth of the join's time).
    finals: Vec<GuestCall>,
    held: Vec<(u64, TraceEvent)>,
    internal: HashMap<(u32, u32, bool), Vec<HostCall>>,
    seq: u64,
    stats: JoinStats,
    /// Native mode (`run --native`): every host syscall is its own call.
    native: bool,
    /// Native mode: the launched process, whose calls count from its exec on.
    native_waiting_exec: Option<u32>,
    /// Symbols of the guest program, and the process QEMU was launched as.
    symbols: Option<(Symbolizer, u32)>,
    /// Execs seen per process (the launched one's first is QEMU's own).
    execs: HashMap<u32, u32>,
    /// The host view starts here (`watch` attaching to a running QEMU):
    /// calls entered before it are judged `guest-only`.
    host_view_from: u64,
    /// In a PID namespace (the sandbox): the host id of each id the guest
    /// side reports (namespace tid or tgid → host), learnt from forks.
    ns_ids: Option<HashMap<u32, u32>>,
    /// Guest records whose ids are not mapped yet (their fork event comes
    /// in a later host drain), in arrival order.
    unmapped: Vec<GuestRecord>,
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
            ready: Vec::new(),
            finals: Vec::new(),
            held: Vec::new(),
            internal: HashMap::default(),
            seq: 0,
            stats: JoinStats::default(),
            native: false,
            native_waiting_exec: None,
            symbols: None,
            execs: HashMap::default(),
            host_view_from: 0,
            ns_ids: None,
            unmapped: Vec::new(),
            enforce_names: crate::enforce::EnforceNames::default(),
        }
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

    /// Records held back for their ids, now that more forks are known.
    fn retry_unmapped(&mut self) {
        if self.unmapped.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.unmapped);
        for r in held {
            self.guest(r);
        }
    }

    /// The eBPF view began at `t_ns`: calls entered earlier have no host
    /// view to be judged by.
    pub fn set_host_view_from(&mut self, t_ns: u64) {
        self.host_view_from = t_ns;
    }

    /// Name guest PCs from the program's symbols, in process `launched`
    /// and the processes it forks, until one of them execs another image.
    pub fn set_symbols(&mut self, symbols: Symbolizer, launched: u32) {
        self.symbols = Some((symbols, launched));
    }

    fn pc_symbol(&mut self, pid: u32, pc: Option<u64>) -> Option<Name> {
        let (sym, launched) = self.symbols.as_mut()?;
        let execs = self.execs.get(&pid).copied().unwrap_or(0);
        let same_image = if pid == *launched {
            execs <= 1
        } else {
            execs == 0
        };
        same_image.then(|| sym.name(pc?)).flatten()
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

    /// A validated guest record.
    pub fn guest(&mut self, mut rec: GuestRecord) {
        if let Some(ns) = &self.ns_ids {
            // Keep each thread's order: once one record waits, the later
            // ones of that thread wait behind it.
            let tid = rec.origin().tid;
            let behind = self.unmapped.iter().any(|r| r.origin().tid == tid);
            if behind || !Self::map_ids(ns, &mut rec) {
                self.unmapped.push(rec);
                return;
            }
        }
        let at = *rec.origin();
        let th = self.threads.entry(at.tid).or_default();
        th.pid = at.pid;
        let first = !th.seen_guest;
        th.seen_guest = true;
        match rec {
            GuestRecord::SysEnter { nr, args, pc, .. } => {
                if let Some(prev) = th.open.take() {
                    // An entry while another call is open: the previous one
                    // never returned (e.g. a restarted call after a signal).
                    th.done.push_back(GuestCall {
                        exit_pass: self.pass,
                        ..prev
                    });
                }
                th.open = Some(GuestCall {
                    pid: at.pid,
                    tid: at.tid,
                    vcpu: at.vcpu,
                    nr,
                    args,
                    pc,
                    t_enter: at.t_ns,
                    exit: None,
                    exit_pass: 0,
                    // Nearly every call gets one host call: room for it
                    // now is cheaper than growing from nothing.
                    host: Vec::with_capacity(1),
                });
            }
            GuestRecord::SysExit { nr, ret, .. } => match th.open.take() {
                Some(mut g) if g.nr == nr => {
                    g.exit = Some((at.t_ns, ret));
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
            GuestRecord::PluginSpan { end_ns, .. } => th.spans.push_back((at.t_ns, end_ns)),
            GuestRecord::ProcessStart { arch, .. } => {
                if let Some(a) = Arch::from_id(arch) {
                    self.arch_of_pid.insert(at.pid, a);
                }
            }
            GuestRecord::ProcessExit { .. } => {}
        }
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
                is_thread: false,
                t_ns,
                ..
            } => self.ready.push((
                t_ns,
                TraceEvent::Process(ProcessEvent {
                    event: "fork".into(),
                    pid: child_tgid,
                    ppid: Some(parent_tgid),
                    t_ns,
                    ..Default::default()
                }),
            )),
            HostEvent::Fork { .. } => {}
            HostEvent::Exec {
                tgid,
                filename,
                t_ns,
                ..
            } => {
                if self.native_waiting_exec == Some(tgid) {
                    self.native_waiting_exec = None;
                }
                *self.execs.entry(tgid).or_default() += 1;
                self.ready.push((
                    t_ns,
                    TraceEvent::Process(ProcessEvent {
                        event: "exec".into(),
                        pid: tgid,
                        filename: Some(filename),
                        t_ns,
                        ..Default::default()
                    }),
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
                self.ready.push((t_ns, TraceEvent::Alert(alert)));
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
                    self.ready.push((
                        t_ns,
                        TraceEvent::Process(ProcessEvent {
                            event: "exit".into(),
                            pid: tgid,
                            status,
                            signal,
                            t_ns,
                            ..Default::default()
                        }),
                    ));
                }
            }
        }
    }

    fn classify(&mut self, h: HostSyscall) {
        let call = host_call(&h);
        let th = self.threads.get_mut(&h.tid);
        let start = if h.t_enter_ns == 0 {
            h.t_exit_ns
        } else {
            h.t_enter_ns
        };
        if let Some(th) = th {
            if let Some(g) = th.open.as_mut() {
                if g.t_enter <= start {
                    g.host.push(call);
                    self.stats.host_attributed += 1;
                    return;
                }
            }
            // Calls of one thread do not overlap and `done` is in entry
            // order: the only candidate is the last call entered before it.
            // Try the hint and its successor before searching.
            let at = |i: usize| th.done.get(i).map(|g| g.t_enter);
            let h0 = th.hint.saturating_sub(th.popped) as usize;
            let idx = if at(h0).is_some_and(|t| t <= start) && at(h0 + 1).is_none_or(|t| t > start)
            {
                h0 + 1
            } else if at(h0 + 1).is_some_and(|t| t <= start) && at(h0 + 2).is_none_or(|t| t > start)
            {
                h0 + 2
            } else {
                th.done.partition_point(|g| g.t_enter <= start)
            };
            th.hint = th.popped + idx.saturating_sub(1) as u64;
            if idx > 0 {
                let g = &mut th.done[idx - 1];
                if g.exit.is_some_and(|(t_exit, _)| h.t_exit_ns <= t_exit) {
                    g.host.push(call);
                    self.stats.host_attributed += 1;
                    return;
                }
            }
            let plugin = th
                .spans
                .iter()
                .any(|(s, e)| *s <= start && h.t_exit_ns <= *e);
            self.stats.host_internal += 1;
            self.internal
                .entry((h.tgid, h.tid, plugin))
                .or_default()
                .push(call);
            return;
        }
        self.stats.host_internal += 1;
        self.internal
            .entry((h.tgid, h.tid, false))
            .or_default()
            .push(call);
    }

    fn arch_of(&self, pid: u32) -> Arch {
        self.arch_of_pid.get(&pid).copied().unwrap_or(self.arch)
    }

    fn emit_call(&mut self, g: GuestCall) {
        let arch = self.arch_of(g.pid);
        let name = tables::guest_syscall_name(arch, g.nr);
        let ret = g.exit.map(|(_, r)| r);
        let errno = ret.and_then(|r| verdict::errno_of(arch, r));
        let path = verdict::path_of(name, &g.host);
        let v = if g.t_enter < self.host_view_from {
            "guest-only"
        } else {
            verdict::verdict(arch, name, ret, &g.host)
        };
        let pc_sym = self.pc_symbol(g.pid, g.pc);
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
                args: g.args,
                path,
                ret,
                errno,
                t_enter_ns: g.t_enter,
                t_exit_ns: g.exit.map_or(0, |(t, _)| t),
                host: g.host,
                verdict: Cow::Borrowed(v),
                policy_action: Cow::Borrowed("allow"),
                policy_rule: None,
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
        if all && !self.unmapped.is_empty() {
            // Their fork was never seen: join them under the ids they gave.
            self.ns_ids = None;
            for r in std::mem::take(&mut self.unmapped) {
                self.guest(r);
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
        let horizon = self.last_host_drain_ns.saturating_sub(VISIBILITY_MARGIN_NS);
        let mut finals = std::mem::take(&mut self.finals);
        for th in self.threads.values_mut() {
            while let Some(g) = th.done.front() {
                let ok = all || (g.exit_pass < pass && g.exit.is_none_or(|(t, _)| t <= horizon));
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
        for ((pid, tid, plugin), host) in self.internal.drain() {
            let t = host.first().map_or(0, |h| h.t_exit_ns);
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
        });
        j.guest(GuestRecord::SysEnter {
            at: at(2, 12),
            nr: 4004,
            args: [1, 0, 1, 0, 0, 0, 0, 0],
            pc: None,
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 20),
            nr: 4064,
            ret: 7,
        });
        j.guest(GuestRecord::SysExit {
            at: at(2, 30),
            nr: 4004,
            ret: 1,
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
    fn verdicts_for_emulated_unsupported_and_never_returning() {
        let mut j = Joiner::new(Arch::Mips);
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4045,
            args: [0; 8],
            pc: None,
        }); // brk
        j.guest(GuestRecord::SysExit {
            at: at(1, 11),
            nr: 4045,
            ret: 0x1000,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 20),
            nr: 4425,
            args: [0; 8],
            pc: None,
        }); // io_uring_setup
        j.guest(GuestRecord::SysExit {
            at: at(1, 21),
            nr: 4425,
            ret: -89,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 30),
            nr: 4246,
            args: [3, 0, 0, 0, 0, 0, 0, 0],
            pc: None,
        }); // exit_group
        j.host(HostEvent::Syscall(HostSyscall {
            tgid: 100,
            tid: 1,
            nr: 231,
            args: [3, 0, 0, 0, 0, 0],
            ret: None,
            t_enter_ns: 31,
            t_exit_ns: 31,
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
        }); // getpid, before its fork event was read
        j.guest(GuestRecord::SysExit {
            at: ns(20),
            nr: 4020,
            ret: 1,
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
    fn plugin_spans_are_tagged_not_attributed() {
        let mut j = Joiner::new(Arch::Mips);
        j.guest(GuestRecord::PluginSpan {
            at: at(1, 5),
            end_ns: 9,
            reason: 1,
        });
        j.guest(GuestRecord::SysEnter {
            at: at(1, 10),
            nr: 4064,
            args: [0; 8],
            pc: None,
        });
        j.guest(GuestRecord::SysExit {
            at: at(1, 20),
            nr: 4064,
            ret: 1,
        });
        j.host(host(1, 186, 6, 7, 1)); // gettid during set-up
        let evs = j.finish();
        assert!(evs
            .iter()
            .any(|e| matches!(e, TraceEvent::Internal(i) if i.origin == "plugin")));
        assert!(calls(&evs)[0].host.is_empty());
    }
}
