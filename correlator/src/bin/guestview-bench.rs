//! `guestview-bench`: wall time of `guestview run` (full pipeline, trace
//! written) against bare QEMU, `qemu -strace` and `strace -f qemu`, on the
//! same guest programs, in one run; and guestview's lost-event counts.
//!
//! Usage: `guestview-bench [--runs N] [--qemu PATH] [--only PREFIX] [--no-strace] GUEST_DIR`
//! (`--only start-up`: the start-up rows alone; `--no-strace`: leave out
//! `strace -f`, most of a run's time) where GUEST_DIR holds the built guest
//! programs (tests/guest/build.sh).

use shmem_proto::trace::{TraceEvent, TraceReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

struct Workload {
    name: &'static str,
    prog: &'static str,
    args: &'static [&'static str],
    what: &'static str,
    /// Extra options of `guestview run`.
    gv_args: &'static [&'static str],
    /// Also time `strace -f` (slow: 30 s a run on the syscall-heavy loop).
    strace: bool,
}

impl Workload {
    /// Live output on: the row's options say where it goes (no `--quiet`).
    fn live(&self) -> bool {
        self.gv_args.contains(&"--output")
    }
}

/// Start-up first: the syscall-heavy rows also give their ratio without
/// guestview's fixed start-up cost, measured here.
const WORKLOADS: &[Workload] = &[
    Workload {
        name: "start-up",
        prog: "hello",
        args: &[],
        what: "trivial program, sandboxed (the default; root already built)",
        gv_args: &[],
        strace: true,
    },
    Workload {
        name: "start-up nosbx",
        prog: "hello",
        args: &[],
        what: "trivial program, run --no-sandbox",
        gv_args: &["--no-sandbox"],
        strace: false,
    },
    Workload {
        name: "syscall-heavy",
        prog: "syscall_heavy",
        args: &["200000"],
        what: "400,000 guest syscalls (getppid + 1-byte write)",
        gv_args: &[],
        strace: true,
    },
    Workload {
        name: "syscall+policy",
        prog: "syscall_heavy",
        args: &["200000"],
        what: "the syscall-heavy loop under --policy docs/policies/example.toml",
        gv_args: &["--policy", "docs/policies/example.toml"],
        strace: false,
    },
    Workload {
        name: "syscall+strict",
        prog: "syscall_heavy",
        args: &["200000"],
        what: "the syscall-heavy loop under --policy docs/policies/untrusted.toml",
        gv_args: &["--policy", "docs/policies/untrusted.toml"],
        strace: false,
    },
    Workload {
        name: "syscall+text",
        prog: "syscall_heavy",
        args: &["200000"],
        what: "the syscall-heavy loop with live text output (to /dev/null)",
        gv_args: &["--output", "/dev/null"],
        strace: false,
    },
    Workload {
        name: "syscall+jsonl",
        prog: "syscall_heavy",
        args: &["200000"],
        what: "the syscall-heavy loop with live --format jsonl (to /dev/null)",
        gv_args: &["--format", "jsonl", "--output", "/dev/null"],
        strace: false,
    },
    Workload {
        name: "syscall-1M",
        prog: "syscall_heavy",
        args: &["500000"],
        what: "1,000,000 guest syscalls (same loop, longer)",
        gv_args: &[],
        strace: false,
    },
    Workload {
        name: "compute-heavy",
        prog: "compute_heavy",
        args: &[],
        what: "CPU loop, ~15 syscalls",
        gv_args: &[],
        strace: true,
    },
    Workload {
        name: "threads+fork",
        prog: "forkwait",
        args: &[],
        what: "fork/wait of 4 children",
        gv_args: &[],
        strace: true,
    },
];

/// Medians of one workload: bare, `-strace`, `strace -f` (if timed),
/// guestview; lost events; the sandbox's reset (if measured); the lowest
/// and highest of guestview's per-run ratios.
type Row = (f64, f64, Option<f64>, f64, u64, Option<f64>, (f64, f64));

const USAGE: &str =
    "usage: guestview-bench [--runs N] [--qemu PATH] [--only PREFIX] [--no-strace] GUEST_DIR";

/// The command line: runs, QEMU, `--only`, whether to time `strace -f`,
/// and the guest program directory.
struct Opts {
    runs: usize,
    qemu: PathBuf,
    only: Option<String>,
    strace: bool,
    dir: PathBuf,
}

/// Parse the arguments; `Ok(None)` for `--help`, `Err` with the one line
/// to print for anything else it cannot use.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>, String> {
    let mut runs = 5usize;
    let mut qemu = PathBuf::from("/usr/bin/qemu-mips");
    let mut dir = None;
    let mut only = None;
    let mut strace = true;
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--only" => only = Some(value("--only")?),
            "--runs" => {
                let v = value("--runs")?;
                runs = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--runs wants a positive number, not {v:?}"))?;
            }
            "--qemu" => qemu = PathBuf::from(value("--qemu")?),
            "--no-strace" => strace = false,
            "-h" | "--help" => return Ok(None),
            o if o.starts_with('-') => return Err(format!("unknown option {o:?} ({USAGE})")),
            d if dir.is_none() => dir = Some(PathBuf::from(d)),
            d => return Err(format!("one guest program directory, not also {d:?}")),
        }
    }
    let dir = dir
        .ok_or("give the directory of built guest programs (e.g. target/guest/mips)".to_string())?;
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a directory of built guest programs (bash tests/guest/build.sh mips target/guest)",
            dir.display()
        ));
    }
    Ok(Some(Opts {
        runs,
        qemu,
        only,
        strace,
        dir,
    }))
}

fn time(cmd: &mut Command) -> Result<f64, String> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let t = Instant::now();
    let st = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    if !st.success() {
        return Err(format!("{cmd:?} failed: {st}"));
    }
    Ok(secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Lost events of a run's trace, and for a sandboxed run its reset: from
/// the exit of QEMU (PID 1 of the sandbox) to the exit of the process that
/// waited for it outside, once the kernel had torn the namespaces down
/// (overlay and tmpfs gone, processes killed).
fn read_trace(trace: &Path) -> Result<(u64, Option<f64>), String> {
    let mut r = TraceReader::open(trace).map_err(|e| e.to_string())?;
    let mut lost = None;
    let mut qemu = None;
    let mut exits = std::collections::HashMap::new();
    while let Some(frame) = r.next_frame().map_err(|e| e.to_string())? {
        for ev in frame {
            match ev {
                TraceEvent::Lost(l) => {
                    lost = Some(
                        l.host_dropped
                            + l.guest_dropped
                            + l.guest_no_ring
                            + l.guest_corrupt
                            + l.host_malformed,
                    )
                }
                TraceEvent::Syscall(c) if qemu.is_none() => qemu = Some(c.pid),
                TraceEvent::Process(p) if p.event == "exit" => {
                    exits.insert(p.pid, p.t_ns);
                }
                _ => {}
            }
        }
    }
    let last = exits.iter().max_by_key(|(_, t)| **t).map(|(p, t)| (*p, *t));
    let reset = match (qemu, last) {
        (Some(q), Some((p, t))) if p != q => {
            exits.get(&q).map(|tq| t.saturating_sub(*tq) as f64 * 1e-9)
        }
        _ => None,
    };
    Ok((lost.ok_or("trace has no lost record")?, reset))
}

/// Guest syscalls in a trace (the summary's count).
fn calls_in(trace: &Path) -> Result<u64, String> {
    let mut r = TraceReader::open(trace).map_err(|e| e.to_string())?;
    let mut calls = 0u64;
    while let Some(frame) = r.next_frame().map_err(|e| e.to_string())? {
        calls += frame
            .iter()
            .filter(|ev| matches!(ev, TraceEvent::Syscall(_)))
            .count() as u64;
    }
    Ok(calls)
}

fn main() -> ExitCode {
    let Opts {
        runs,
        qemu,
        only,
        strace,
        dir,
    } = match parse(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("guestview-bench: error: {e}");
            return ExitCode::from(2);
        }
    };
    let gv = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("guestview")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("guestview"));
    let trace =
        std::env::temp_dir().join(format!("guestview-bench-{}.gvtrace", std::process::id()));
    println!(
        "guestview-bench: {} runs each (strace -f: {}); a ratio is the median over runs of time / the bare run just before (guestview's lowest and highest in brackets); times are median bare × ratio; against bare {}",
        runs,
        if strace { "2" } else { "not timed" },
        qemu.display()
    );
    println!(
        "{:<14} {:>9} {:>17} {:>17} {:>20} {:>6}  workload",
        "", "bare", "qemu -strace", "strace -f qemu", "guestview -q --trace", "lost"
    );
    // The sandboxed start-up is measured with its root already built.
    let _ = Command::new(&gv)
        .args(["rootfs", "build", "--arch", "mips"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let mut failed = false;
    let mut startup = None;
    // guestview's fixed cost (start-up over bare QEMU), from the first row.
    let mut fixed = None;
    // guestview's time on the syscall-heavy loop without a policy.
    let mut unenforced = None;
    for w in WORKLOADS
        .iter()
        .filter(|w| only.as_deref().is_none_or(|o| w.name.starts_with(o)))
    {
        let prog = dir.join(w.prog);
        let res = (|| -> Result<Row, String> {
            let (mut bare, mut qs, mut sf, mut gvt) = (vec![], vec![], vec![], vec![]);
            let mut resets = vec![];
            let mut lost = 0;
            for i in 0..runs {
                // guestview right after bare QEMU: each ratio compares two
                // runs made moments apart (this machine is shared, and its
                // speed drifts between runs).
                let b = time(Command::new(&qemu).arg(&prog).args(w.args))?;
                bare.push(b);
                gvt.push(
                    time(
                        Command::new(&gv)
                            .arg("run")
                            .arg("--qemu")
                            .arg(&qemu)
                            .args(w.gv_args)
                            .args(if w.live() { &[][..] } else { &["--quiet"][..] })
                            .arg("--trace")
                            .arg(&trace)
                            .arg(&prog)
                            .args(w.args),
                    )? / b,
                );
                let (l, reset) = read_trace(&trace)?;
                lost += l;
                resets.extend(reset);
                qs.push(time(Command::new(&qemu).arg("-strace").arg(&prog).args(w.args))? / b);
                // strace -f is 50-300x slower: two runs give its ratio well enough.
                if strace && w.strace && i < 2 {
                    sf.push(
                        time(
                            Command::new("strace")
                                .args(["-f", "-qq", "-o", "/dev/null"])
                                .arg(&qemu)
                                .arg(&prog)
                                .args(w.args),
                        )? / b,
                    );
                }
            }
            let sf = (!sf.is_empty()).then(|| median(sf));
            let reset = (!resets.is_empty()).then(|| median(resets));
            let spread = gvt.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
                (lo.min(*r), hi.max(*r))
            });
            Ok((
                median(bare),
                median(qs),
                sf,
                median(gvt),
                lost,
                reset,
                spread,
            ))
        })();
        match res {
            Ok((b, q, s, g, lost, reset, (lo, hi))) => {
                // Each column: its median time and its median ratio to the
                // bare run just before it (`q`, `s`, `g` are ratios).
                let r = |x: f64| format!("{:.3}s {x:>5.2}x", x * b);
                // guestview's time, from its median ratio.
                let gt = g * b;
                let s = s.map_or_else(|| format!("{:>17}", "-"), r);
                if w.name.starts_with("start-up") {
                    let mut extra = match startup {
                        Some(sandboxed) if !w.gv_args.is_empty() => format!(
                            "; the sandbox (set-up and reset) costs {:.1} ms of the sandboxed run",
                            (sandboxed - gt) * 1e3
                        ),
                        _ => String::new(),
                    };
                    if let Some(r) = reset {
                        extra.push_str(&format!("; reset {:.1} ms", r * 1e3));
                    }
                    startup.get_or_insert(gt);
                    fixed.get_or_insert(gt - b);
                    println!(
                        "{:<14} {:>8.3}s {:>17} {:>17} {:>20} {:>6}  {} (+{:.1} ms over bare{extra})",
                        w.name,
                        b,
                        r(q),
                        s,
                        r(g),
                        lost,
                        w.what,
                        (gt - b) * 1e3
                    );
                } else {
                    // The same ratio once guestview's fixed start-up cost
                    // is taken out: what each call costs.
                    let mut steady = match fixed {
                        Some(f) if w.name.starts_with("syscall") => {
                            format!("; {:.2}x without the start-up", (gt - f) / b)
                        }
                        _ => String::new(),
                    };
                    // The cost of enforcement or live output: against the plain loop.
                    if w.name == "syscall-heavy" {
                        unenforced = Some(g);
                    }
                    if let (true, Some(u)) = (w.name.starts_with("syscall+"), unenforced) {
                        let against = if w.live() {
                            "the run without live output"
                        } else {
                            "the unenforced run"
                        };
                        steady.push_str(&format!("; {:.3}x {against}", g / u));
                    }
                    println!(
                        "{:<14} {:>8.3}s {:>17} {:>17} {:>20} {:>6}  {} [{lo:.2}-{hi:.2}x]{steady}",
                        w.name,
                        b,
                        r(q),
                        s,
                        r(g),
                        lost,
                        w.what
                    );
                }
            }
            Err(e) => {
                failed = true;
                println!("{:<14} error: {e}", w.name);
            }
        }
    }
    // `guestview report` speed (target: >= 2 million guest syscalls a
    // second), on a trace of the 1M-call loop.
    let rep = (|| -> Result<(f64, u64), String> {
        time(
            Command::new(&gv)
                .arg("run")
                .arg("--qemu")
                .arg(&qemu)
                .args(["--quiet", "--trace"])
                .arg(&trace)
                .arg(dir.join("syscall_heavy"))
                .arg("500000"),
        )?;
        let calls = calls_in(&trace)?;
        let mut t = vec![];
        for _ in 0..runs {
            t.push(time(
                Command::new(&gv)
                    .args(["report", "--output", "/dev/null"])
                    .arg(&trace),
            )?);
        }
        Ok((median(t), calls))
    })();
    match rep {
        Ok((secs, calls)) => println!(
            "{:<14} {:>8.3}s  guestview report of a {calls}-call trace: {:.2} million guest syscalls/s (target >= 2)",
            "report",
            secs,
            calls as f64 / secs / 1e6
        ),
        Err(e) => {
            failed = true;
            println!("{:<14} error: {e}", "report");
        }
    }
    let _ = std::fs::remove_file(&trace);
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn options_are_read_and_bad_ones_refused() {
        let dir = std::env::temp_dir();
        let d = dir.to_str().unwrap();
        let o = parse(args(&[
            "--runs",
            "3",
            "--no-strace",
            "--only",
            "syscall",
            d,
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.runs, o.strace, o.only.as_deref()),
            (3, false, Some("syscall"))
        );
        assert_eq!(o.dir, dir);
        let o = parse(args(&[d])).unwrap().unwrap();
        assert_eq!((o.runs, o.strace, o.only), (5, true, None));
        assert!(parse(args(&["--help"])).unwrap().is_none());
        for bad in [
            &["--runs", "0", d][..],
            &["--runs", "many", d],
            &["--runs"],
            &["--skip-strace", d],
            &[d, d],
            &[],
            &["/nonexistent/guest/programs"],
        ] {
            let e = parse(args(bad))
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
