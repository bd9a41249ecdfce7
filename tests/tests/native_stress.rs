//! The native driver in a busy multithreaded host: 16 threads start containers at once while
//! other threads allocate and hold locks — a child that touched the allocator or a lock after
//! clone would hang here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use execdriver_api::{ExitStatus, Hooks};
use execdriver_tests::native::{driver, run_busybox};
use execdriver_tests::{missing, unique_id};

const THREADS: usize = 16;
const ROUNDS: usize = 4;
const ALLOCATORS: usize = 4;

#[test]
fn sixteen_threads_start_containers_while_others_allocate() {
    let d = match driver() {
        Ok(d) => d,
        Err(why) => {
            return missing(
                "sixteen_threads_start_containers_while_others_allocate",
                &why,
            );
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let allocators: Vec<_> = (0..ALLOCATORS)
        .map(|t| {
            let stop = stop.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Hold the allocator and a lock as often as possible.
                    let v = vec![t as u8; 1 + (n * 7919) % 65536];
                    let mut g = shared.lock().unwrap();
                    g.push(v);
                    if g.len() > 64 {
                        g.clear();
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();

    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..THREADS {
        let d = d.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for r in 0..ROUNDS {
                let code = ((t * ROUNDS + r) % 200) as i32;
                let id = unique_id("stress");
                let res = run_busybox(
                    &*d,
                    &id,
                    &["sh", "-c", &format!("echo {t}-{r}; exit {code}")],
                    &Hooks::new(),
                    |_| {},
                );
                let ok = match res {
                    Ok((st, out, _)) => {
                        st == ExitStatus::exited(code) && out == format!("{t}-{r}\n")
                    }
                    Err(e) => {
                        eprintln!("thread {t} round {r}: {e}");
                        false
                    }
                };
                let _ = tx.send(ok);
            }
        });
    }
    drop(tx);
    let mut done = 0;
    let mut failed = 0;
    while done < THREADS * ROUNDS {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(ok) => {
                done += 1;
                if !ok {
                    failed += 1;
                }
            }
            Err(e) => panic!(
                "hang: only {done} of {} containers finished ({e})",
                THREADS * ROUNDS
            ),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let allocations: usize = allocators.into_iter().map(|a| a.join().unwrap()).sum();
    assert_eq!(failed, 0, "{failed} of {done} containers failed");
    assert!(allocations > 0);
}
