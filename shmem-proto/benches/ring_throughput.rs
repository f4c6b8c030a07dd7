//! Micro-benchmark: one producer thread, one consumer thread, one ring.
//! Prints records/s and ns/record. `cargo bench -p shmem-proto`.

use shmem_proto::{Consumer, GuestRecord, Origin, Region, RegionParams, RingEvent};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::var("GV_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let path = std::env::temp_dir().join(format!("gv-bench-{}.ring", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let region = Region::create(
        &path,
        RegionParams {
            max_rings: 1,
            capacity: 16384,
            ..Default::default()
        },
    )
    .unwrap();
    let done = AtomicBool::new(false);
    let t0 = Instant::now();
    let (got, waits) = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut c = Consumer::new(&region);
            let mut got = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                // Poll the way guestview does: drain, then sleep briefly.
                std::thread::sleep(std::time::Duration::from_micros(100));
                c.poll(|e| {
                    if let RingEvent::Record(_) = e {
                        got += 1
                    }
                });
                if finished {
                    c.poll(|e| {
                        if let RingEvent::Record(_) = e {
                            got += 1
                        }
                    });
                    return (got, c.stats().waits);
                }
            }
        });
        let mut p = region.claim(1, 2, 0).unwrap();
        for i in 0..n {
            p.push(&GuestRecord::SysExit {
                at: Origin {
                    vcpu: 0,
                    pid: 1,
                    tid: 2,
                    t_ns: i,
                },
                nr: 4020,
                ret: i as i64,
                hpos: None,
            });
        }
        done.store(true, Ordering::Release);
        consumer.join().unwrap()
    });
    let secs = t0.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(got, n, "records lost");
    println!(
        "ring: {n} records in {secs:.3} s: {:.1} M records/s, {:.1} ns/record, producer waits {waits}",
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64
    );
}
