//! Worker threads for the GEMM paths: one rayon pool per thread count,
//! built on first use and kept, so a call costs a broadcast, not thread
//! spawns (a decode GEMV on 16 threads takes tens of microseconds).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Runs `work(t)` for every `t` in `0..threads`, each on its own thread, and
/// returns the first error. `threads == 1` runs inline.
pub fn run_parallel<E: Send>(threads: usize, work: impl Fn(usize) -> Result<(), E> + Sync) -> Result<(), E> {
    if threads <= 1 {
        return work(0);
    }
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pool = {
        let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(threads)
            .or_insert_with(|| {
                Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(move |i| format!("tilejit-{threads}-{i}"))
                        .build()
                        .expect("the OS refused to start GEMM worker threads"),
                )
            })
            .clone()
    };
    pool.broadcast(|ctx| work(ctx.index())).into_iter().collect()
}
