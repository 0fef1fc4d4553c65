//! Worker threads for the GEMM paths.
//!
//! A decode GEMV on 16 threads is over in ~150 us, so waking sleeping
//! threads per call (measured here: ~64 us for a 2-thread rayon broadcast
//! on the dev VM) would eat a third of it. The workers of a `Pool` spin on
//! an epoch counter for a while after each job before they park, the way
//! OpenMP runtimes do; back-to-back calls then start in about a
//! microsecond. One pool per thread count is built on first use and kept
//! for the life of the process.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// Runs `work(t)` for every `t` in `0..threads`, each on its own thread (the
/// caller is thread 0), and returns the first error. `threads <= 1` runs
/// inline.
pub fn run_parallel<E: Send>(threads: usize, work: impl Fn(usize) -> Result<(), E> + Sync) -> Result<(), E> {
    if threads <= 1 {
        return work(0);
    }
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let job = |t: usize| {
        if let Err(e) = work(t) {
            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
        }
    };
    Pool::get(threads).run(&job);
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `work(state, u)` for every work unit `u` in `0..units` on at most
/// `threads` threads (never more than there are units, so any thread count
/// is safe), handing the units out dynamically in increasing order: a
/// thread that starts late does not hold up the call. Each thread makes
/// its `state` (scratch buffers) once. Returns the first error (a thread
/// stops at its first error). Every GEMM driver cuts its output into units and calls
/// this, so a unit's result cannot depend on the thread that runs it.
pub fn run_units<S, E: Send>(
    threads: usize,
    units: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    run_parallel(threads.min(units).max(1), |_| {
        let mut s = state();
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            if u >= units {
                return Ok(());
            }
            work(&mut s, u)?;
        }
    })
}

/// A job as the workers see it: a borrowed closure whose lifetime the
/// caller guarantees by waiting for every worker before it returns.
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; workers run the job whose epoch they have not seen.
    epoch: AtomicU64,
    job: Mutex<Option<SendJob>>,
    /// Workers that have not finished the current job.
    remaining: AtomicUsize,
    panicked: AtomicBool,
    parked: Mutex<usize>,
    wake: Condvar,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the pointee is `Sync`, and the caller keeps it alive until every
// worker has dropped its copy (see `Pool::run`).
unsafe impl Send for SendJob {}

/// `threads - 1` workers plus the calling thread.
struct Pool {
    shared: &'static Shared,
    workers: usize,
    /// One job at a time per pool.
    busy: Mutex<()>,
}

impl Pool {
    fn get(threads: usize) -> &'static Pool {
        static POOLS: OnceLock<Mutex<HashMap<usize, &'static Pool>>> = OnceLock::new();
        let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        pools.entry(threads).or_insert_with(|| Box::leak(Box::new(Pool::start(threads - 1))))
    }

    fn start(workers: usize) -> Pool {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            parked: Mutex::new(0),
            wake: Condvar::new(),
        }));
        for index in 1..=workers {
            std::thread::Builder::new()
                .name(format!("tilejit-{}-{index}", workers + 1))
                .spawn(move || worker(shared, index))
                .expect("the OS refused to start a GEMM worker thread");
        }
        Pool { shared, workers, busy: Mutex::new(()) }
    }

    fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.shared;
        // SAFETY: only the lifetime is erased; this function does not return
        // before `remaining` is zero, i.e. before every worker is done with it.
        let erased: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
        *s.job.lock().unwrap_or_else(|p| p.into_inner()) = Some(SendJob(erased));
        s.remaining.store(self.workers, Ordering::Release);
        s.epoch.fetch_add(1, Ordering::AcqRel);
        if *s.parked.lock().unwrap_or_else(|p| p.into_inner()) > 0 {
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut spins = 0u32;
        while s.remaining.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                // More threads than cores (tests do that): let the workers run.
                std::thread::yield_now();
            }
        }
        *s.job.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a GEMM worker thread panicked");
        }
    }
}

fn worker(s: &'static Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Spin for a while, then park until the next job.
        let start = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                if start.elapsed() < SPIN {
                    std::thread::yield_now();
                    continue;
                }
                let mut parked = s.parked.lock().unwrap_or_else(|p| p.into_inner());
                *parked += 1;
                while s.epoch.load(Ordering::Acquire) == seen {
                    parked = s.wake.wait(parked).unwrap_or_else(|p| p.into_inner());
                }
                *parked -= 1;
            }
        }
        seen = s.epoch.load(Ordering::Acquire);
        let job = s.job.lock().unwrap_or_else(|p| p.into_inner()).expect("a job is set before its epoch is published");
        // SAFETY: the caller of `Pool::run` keeps the job alive until this
        // worker decrements `remaining` below.
        let f = unsafe { &*job.0 };
        if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
            s.panicked.store(true, Ordering::Release);
        }
        s.remaining.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_units_runs_each_unit_once_for_any_thread_count() {
        for (threads, units) in [(1, 5), (3, 5), (8, 3), (usize::MAX, 7), (4, 0)] {
            let hits: Vec<AtomicUsize> = (0..units).map(|_| AtomicUsize::new(0)).collect();
            let states = AtomicUsize::new(0);
            let r: Result<(), ()> = run_units(
                threads,
                units,
                || states.fetch_add(1, Ordering::Relaxed),
                |_, u| {
                    hits[u].fetch_add(1, Ordering::Relaxed);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads, {units} units");
            assert!(states.load(Ordering::Relaxed) <= units.max(1), "a state per thread, threads <= units");
        }
        let e = run_units(2, 4, || (), |_, u| if u == 2 { Err(u) } else { Ok(()) });
        assert_eq!(e, Err(2));
    }

    use super::*;

    #[test]
    fn every_index_runs_once_and_errors_come_back() {
        for threads in [1, 2, 3, 7] {
            for _ in 0..50 {
                let hits: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
                run_parallel::<()>(threads, |t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
                .unwrap();
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads");
            }
            let r = run_parallel(threads, |t| if t + 1 == threads { Err(t) } else { Ok(()) });
            assert_eq!(r, Err(threads - 1));
        }
    }
}
