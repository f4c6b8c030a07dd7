//! Micro-benchmark of the correlator's per-call work, without QEMU or eBPF:
//! a synthetic stream shaped like the syscall-heavy loop (one host call per
//! guest call, passes of a millisecond's worth) goes through the join,
//! optionally into a trace file. Prints ns per guest call.
//!
//! `cargo bench -p guestview --bench join` (as any user).

use guestview::join::Joiner;
use guestview_bpf::{HostEvent, HostSyscall};
use shmem_proto::trace::{TraceEvent, TraceWriter};
use shmem_proto::{Arch, GuestRecord, Origin};
use std::time::Instant;

/// The allocator of the `guestview` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLS: u64 = 1_000_000;
/// Guest calls per pass (about a millisecond of the fastest guest).
const PER_PASS: u64 = 2_500;

fn at(t: u64) -> Origin {
    Origin {
        vcpu: 0,
        pid: 100,
        tid: 100,
        t_ns: t,
    }
}

fn run(trace: Option<&std::path::Path>) -> f64 {
    let mut j = Joiner::new(Arch::Mips);
    let mut w = trace.map(|p| TraceWriter::create(p).expect("trace"));
    let mut out: Vec<TraceEvent> = Vec::new();
    let mut emitted = 0u64;
    let started = Instant::now();
    let mut t = 1_000_000u64;
    let mut i = 0u64;
    let mut host: Vec<HostEvent> = Vec::with_capacity(PER_PASS as usize);
    while i < CALLS {
        j.begin_guest_drain();
        for _ in 0..PER_PASS {
            let (nr, hnr, a0) = if i.is_multiple_of(2) {
                (4064, 110, 0)
            } else {
                (4004, 1, 4)
            };
            j.guest(GuestRecord::SysEnter {
                at: at(t),
                nr,
                args: [a0, 0x46e940, 1, 0x4a62d0, 0, 0, 0, 0],
                pc: Some(0x428a14),
                hpos: None,
            });
            host.push(HostEvent::Syscall(HostSyscall {
                tgid: 100,
                tid: 100,
                nr: hnr,
                args: [a0, 0x46f940, 1, 4, 0, 0],
                ret: Some(1),
                t_enter_ns: 0,
                t_exit_ns: t + 100,
                pos: 0,
                path: None,
            }));
            j.guest(GuestRecord::SysExit {
                at: at(t + 200),
                nr,
                ret: 1,
                hpos: None,
            });
            t += 400;
            i += 1;
        }
        j.begin_host_drain(t + 3_000_000);
        for h in host.drain(..) {
            j.host(h);
        }
        j.settle_into(&mut out);
        for ev in out.drain(..) {
            if matches!(ev, TraceEvent::Syscall(_)) {
                emitted += 1;
            }
            if let Some(w) = &mut w {
                w.push(&ev).expect("push");
            }
        }
    }
    for ev in j.finish() {
        if matches!(ev, TraceEvent::Syscall(_)) {
            emitted += 1;
        }
        if let Some(w) = &mut w {
            w.push(&ev).expect("push");
        }
    }
    if let Some(w) = &mut w {
        w.flush().expect("flush");
    }
    assert_eq!(emitted, CALLS);
    started.elapsed().as_secs_f64() * 1e9 / CALLS as f64
}

fn main() {
    let trace = std::env::temp_dir().join(format!("gv-join-bench-{}.gvtrace", std::process::id()));
    if std::env::var_os("GV_BENCH_ONCE").is_some() {
        // One pass with the trace, for `valgrind --tool=callgrind`.
        println!(
            "join + trace file:  {:6.0} ns per guest call",
            run(Some(&trace))
        );
        let _ = std::fs::remove_file(&trace);
        return;
    }
    let best = |f: &dyn Fn() -> f64| (0..5).map(|_| f()).fold(f64::MAX, f64::min);
    println!(
        "join only:          {:6.0} ns per guest call",
        best(&|| run(None))
    );
    println!(
        "join + trace file:  {:6.0} ns per guest call",
        best(&|| run(Some(&trace)))
    );
    let _ = std::fs::remove_file(&trace);
}
