//! Time a program with and without a supervised filter (the host layer's
//! cost), e.g. on the syscall-heavy guest:
//!
//! ```text
//! cargo run --release -p guestview-seccomp --example under-filter -- \
//!     5 /usr/bin/qemu-mips target/guest/mips/syscall_heavy
//! ```
//!
//! The filter checks what the issue's example policy checks (open, openat,
//! openat2, creat, execve, execveat, connect, sendto, sendmsg through the
//! supervisor, which allows them); prints the median wall time of RUNS
//! runs, bare and under the filter.

use guestview_seccomp::{prepare, Answer, Filter, Judge, Request, Ret};
use std::sync::Arc;
use std::time::Instant;

struct AllowAll;

impl Judge for AllowAll {
    fn judge(&self, _: &Request<'_>) -> Answer {
        Answer::Allow
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((runs, argv)) = args
        .split_first()
        .and_then(|(r, a)| Some((r.parse::<usize>().ok()?, a)))
    else {
        eprintln!("usage: under-filter RUNS PROGRAM [ARGS…]");
        std::process::exit(2);
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let devnull: std::os::fd::OwnedFd = std::fs::File::create("/dev/null").unwrap().into();
    let mut filter = Filter::default();
    for nr in [2, 257, 437, 85, 59, 322, 42, 44, 46] {
        filter.by_nr.insert(nr, Ret::Notify);
    }
    let (mut bare, mut under) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (child, _) = prepare(&Filter::default()).unwrap();
        let t = Instant::now();
        let pid = guestview_seccomp::spawn(&child, &argv, None, Some(&devnull)).unwrap();
        assert_eq!(guestview_seccomp::wait(pid), Ok(0));
        bare.push(t.elapsed().as_secs_f64());

        let (child, parent) = prepare(&filter).unwrap();
        let t = Instant::now();
        let pid = guestview_seccomp::spawn(&child, &argv, None, Some(&devnull)).unwrap();
        let sup = parent.start_supervisor(Arc::new(AllowAll), pid).unwrap();
        assert_eq!(guestview_seccomp::wait(pid), Ok(0));
        under.push(t.elapsed().as_secs_f64());
        let st = sup.stop().unwrap();
        eprintln!(
            "notifications {} injected {}",
            st.notifications.load(std::sync::atomic::Ordering::Relaxed),
            st.injected.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let (b, u) = (median(bare), median(under));
    println!(
        "bare {b:.3} s, under the filter {u:.3} s, ratio {:.3}",
        u / b
    );
}
