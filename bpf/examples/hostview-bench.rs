//! Overhead of host tracing on a syscall-heavy program.
//!
//! `cargo run --release -p guestview-bpf --example hostview-bench [ITER] [RUNS]`
//! (as root). Builds `tests/fixtures/syscall_loop.c` with `cc`, then times
//! its loop of ITER x (getppid + 1-byte write) bare, with the programs loaded
//! but the process not traced, and traced with a reader draining every
//! millisecond; prints medians and checks that no event was lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use guestview_bpf::{HostEvent, HostTracer, TracerOptions};

fn build_fixture() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/syscall_loop.c");
    let exe = std::env::temp_dir().join(format!("gv-syscall-loop-{}", std::process::id()));
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run cc")
        .success();
    assert!(ok, "compiling {} failed", src.display());
    exe
}

fn spawn(exe: &Path, iters: u64) -> Child {
    Command::new(exe)
        .arg(iters.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn fixture")
}

/// Release the held child and return its loop time in seconds.
fn release_and_time(mut child: Child, wait: impl FnOnce(&mut Child)) -> f64 {
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"g").expect("release");
    drop(stdin);
    wait(&mut child);
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "fixture failed: {:?}", out.status);
    let ns: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("fixture prints ns");
    ns / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iters: u64 = args.next().map_or(400_000, |a| a.parse().expect("ITER"));
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("RUNS"));
    let exe = build_fixture();

    let bare: Vec<f64> = (0..runs)
        .map(|_| release_and_time(spawn(&exe, iters), |_| {}))
        .collect();

    let mut tracer = match HostTracer::new(&TracerOptions::default()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hostview-bench: {e}");
            std::process::exit(1);
        }
    };
    let loaded: Vec<f64> = (0..runs)
        .map(|_| release_and_time(spawn(&exe, iters), |_| {}))
        .collect();

    let mut traced = Vec::new();
    let mut min_events = u64::MAX;
    for _ in 0..runs {
        let child = spawn(&exe, iters);
        let pid = child.id();
        tracer.trace_pid(pid).expect("trace_pid");
        let mut events = 0u64;
        let t = release_and_time(child, |_| {
            let mut done = false;
            while !done {
                tracer
                    .poll(Duration::from_millis(1), &mut |ev| {
                        events += 1;
                        if matches!(ev, HostEvent::Exit { tgid, group_dead: true, .. } if tgid == pid)
                        {
                            done = true;
                        }
                    })
                    .expect("poll");
            }
        });
        min_events = min_events.min(events);
        traced.push(t);
    }
    let stats = tracer.stats().expect("stats");
    std::fs::remove_file(&exe).ok();

    let (b, l, t) = (median(bare), median(loaded), median(traced));
    println!("workload: {iters} x (getppid + write 1 byte to /dev/null), median of {runs}");
    println!("bare                          {b:.3} s");
    println!("programs loaded, not traced   {l:.3} s  ({:.2}x)", l / b);
    println!("traced, drained every 1 ms    {t:.3} s  ({:.2}x)", t / b);
    println!(
        "events per traced run >= {min_events} (expected >= {}); stats: {stats:?}",
        2 * iters
    );
    if stats.dropped != 0 || stats.malformed != 0 || min_events < 2 * iters {
        eprintln!("hostview-bench: events were lost");
        std::process::exit(1);
    }
}
