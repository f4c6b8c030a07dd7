//! Many producers, one consumer, millions of records: nothing lost, nothing
//! reordered, nothing corrupt — including rings closed and reclaimed mid-run.

use shmem_proto::{Consumer, GuestRecord, Origin, Region, RegionParams, RingEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn four_producers_four_million_records_in_order() {
    const PRODUCERS: u32 = 4;
    const PER_THREAD: u64 = 1_000_000;
    const GENERATIONS: u64 = 4; // each thread closes and reclaims its ring this many times
    let path = std::env::temp_dir().join(format!("gv-stress-{}.ring", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let region = Region::create(
        &path,
        RegionParams {
            max_rings: 8,
            capacity: 1024,
            ..Default::default()
        },
    )
    .unwrap();
    let running = AtomicUsize::new(PRODUCERS as usize);
    let mut next: HashMap<u32, u64> = HashMap::new();
    let mut closed = 0;
    std::thread::scope(|s| {
        for t in 0..PRODUCERS {
            let region = &region;
            let running = &running;
            s.spawn(move || {
                for g in 0..GENERATIONS {
                    // A new claim is a new thread: a ring's records are ordered,
                    // two rings' are not (the correlator orders by time).
                    let tid = 100 + t + 10 * g as u32;
                    let mut p = loop {
                        if let Some(p) = region.claim(1, tid, t) {
                            break p;
                        }
                        std::thread::yield_now();
                    };
                    let per_gen = PER_THREAD / GENERATIONS;
                    for i in 0..per_gen {
                        p.push(&GuestRecord::SysExit {
                            at: Origin {
                                vcpu: t,
                                pid: 1,
                                tid,
                                t_ns: i,
                            },
                            nr: 4000 + i64::from(t),
                            ret: i as i64,
                            hpos: None,
                        });
                    }
                    p.close();
                }
                running.fetch_sub(1, Ordering::Release);
            });
        }
        let mut c = Consumer::new(&region);
        loop {
            let finished = running.load(Ordering::Acquire) == 0;
            c.poll(|e| match e {
                RingEvent::Record(GuestRecord::SysExit { at, ret, nr, .. }) => {
                    let n = next.entry(at.tid).or_default();
                    assert_eq!(ret as u64, *n, "thread {} out of order", at.tid);
                    assert_eq!(nr, 4000 + i64::from((at.tid - 100) % 10));
                    *n += 1;
                }
                RingEvent::Closed { .. } => closed += 1,
                other => panic!("unexpected {other:?}"),
            });
            if finished {
                c.poll(|e| {
                    if let RingEvent::Closed { .. } = e {
                        closed += 1
                    } else {
                        panic!("records after the end: {e:?}")
                    }
                });
                let st = c.stats();
                assert_eq!(st.dropped, 0);
                assert_eq!(st.corrupt, 0);
                assert_eq!(st.records, u64::from(PRODUCERS) * PER_THREAD);
                break;
            }
        }
    });
    assert_eq!(closed, PRODUCERS as usize * GENERATIONS as usize);
    assert_eq!(next.len(), (PRODUCERS as u64 * GENERATIONS) as usize);
    assert!(next.values().all(|n| *n == PER_THREAD / GENERATIONS));
    std::fs::remove_file(&path).unwrap();
}
