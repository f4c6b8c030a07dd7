// SPDX-License-Identifier: GPL-2.0-or-later
//! `out=FILE`: the plugin alone writes a guest-side trace (no host view)
//! that `guestview report` reads.

use shmem_proto::trace::{FaultEvent, RunInfo, SyscallEvent, TraceEvent, TraceWriter};
use shmem_proto::{Arch, Origin};
use std::path::Path;

/// A guest call that has entered but not returned.
#[derive(Clone, Debug)]
pub struct Pending {
    pub pid: u32,
    pub tid: u32,
    pub vcpu: u32,
    pub nr: i64,
    pub args: [u64; 8],
    pub pc: Option<u64>,
    pub guest_path: Option<String>,
    pub t_enter_ns: u64,
}

/// The open trace file.
pub struct OutTrace {
    w: TraceWriter,
    arch: Arch,
    seq: u64,
    failed: bool,
    last_flush_ns: u64,
}

/// The guest number of a syscall by name, from the maintained table.
pub fn syscall_nr(arch: Arch, name: &str) -> Option<i64> {
    use std::str::FromStr;
    let n = match arch {
        Arch::Mips | Arch::Mipsel => syscalls::mips::Sysno::from_str(name).ok()? as i64,
        Arch::Arm => syscalls::arm::Sysno::from_str(name).ok()? as i64,
        Arch::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()? as i64,
        Arch::Ppc => syscalls::powerpc::Sysno::from_str(name).ok()? as i64,
        Arch::Ppc64le => syscalls::powerpc64::Sysno::from_str(name).ok()? as i64,
        Arch::Riscv64 => syscalls::riscv64::Sysno::from_str(name).ok()? as i64,
        Arch::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()? as i64,
    };
    Some(n)
}

impl OutTrace {
    pub fn create(path: &Path, arch: Arch) -> Result<OutTrace, String> {
        let mut w = TraceWriter::create(path).map_err(|e| e.to_string())?;
        let argv = std::fs::read("/proc/self/cmdline")
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let start_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        w.push(&TraceEvent::Run(Box::new(RunInfo {
            arch: arch.name().into(),
            qemu: String::new(),
            argv,
            guestview: env!("CARGO_PKG_VERSION").into(),
            start_unix_ns,
            source: "plugin".into(),
        })))
        .map_err(|e| e.to_string())?;
        Ok(OutTrace {
            w,
            arch,
            seq: 0,
            failed: false,
            last_flush_ns: 0,
        })
    }

    fn event(&mut self, p: &Pending, ret: Option<i64>, t_exit_ns: u64) -> TraceEvent {
        self.seq += 1;
        TraceEvent::Syscall(Box::new(SyscallEvent {
            seq: self.seq,
            pid: p.pid,
            tid: p.tid,
            vcpu: p.vcpu,
            arch: self.arch.name().into(),
            pc: p.pc,
            nr: p.nr,
            // What the guest's registers hold (QEMU sign-extends a 32-bit
            // guest's values).
            args: p.args.map(|a| self.arch.guest_word(a)),
            guest_path: p.guest_path.clone(),
            ret: ret.map(|r| self.arch.guest_ret(r)),
            t_enter_ns: p.t_enter_ns,
            t_exit_ns,
            verdict: "guest-only".into(),
            policy_action: "allow".into(),
            ..Default::default()
        }))
    }

    fn push(&mut self, ev: TraceEvent) -> bool {
        if self.failed {
            return false;
        }
        match self.w.push(&ev) {
            Ok(wrote) => wrote,
            Err(e) => {
                eprintln!("guestview plugin: writing the trace failed, recording stops: {e}");
                self.failed = true;
                false
            }
        }
    }

    /// A call returned. Returns true when this wrote to the file (a syscall).
    pub fn finished(&mut self, p: Option<Pending>, nr: i64, ret: i64, t: u64) -> bool {
        // A return without an entry is the child side of fork/clone: the
        // call itself is recorded once, by the parent.
        let Some(p) = p.filter(|p| p.nr == nr) else {
            return false;
        };
        let ev = self.event(&p, Some(ret), t);
        let wrote = self.push(ev);
        // A process killed from outside loses at most this much.
        if t.saturating_sub(self.last_flush_ns) > 50_000_000 {
            self.flush();
            return true;
        }
        wrote
    }

    /// A call that will not return (exit, exec, thread or process end).
    pub fn unfinished(&mut self, p: Pending) {
        let ev = self.event(&p, None, 0);
        self.push(ev);
    }

    /// A guest exception (the signal's name is left to `report`).
    pub fn fault(&mut self, at: Origin, pc: u64, handler: Option<u64>, signal: Option<u32>) {
        let ev = TraceEvent::Fault(Box::new(FaultEvent {
            pid: at.pid,
            tid: at.tid,
            vcpu: at.vcpu,
            arch: self.arch.name().into(),
            pc,
            signal: signal.map(|s| s as i32),
            handler,
            fatal: handler.is_none(),
            t_ns: at.t_ns,
            ..Default::default()
        }));
        self.push(ev);
    }

    pub fn discard_pending(&mut self) {
        self.w.discard_pending();
    }

    pub fn flush(&mut self) {
        self.last_flush_ns = shmem_proto::monotonic_ns();
        if !self.failed {
            if let Err(e) = self.w.flush() {
                eprintln!("guestview plugin: flushing the trace failed: {e}");
                self.failed = true;
            }
        }
    }
}
