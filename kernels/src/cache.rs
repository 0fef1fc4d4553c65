//! A process-wide cache of generated code (or of anything built from a
//! spec), keyed by the spec: one static per kernel family, shared by every
//! path that uses the family, in this crate's drivers and in `tilejit`'s.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Entries kept before the cache starts over (callers hold `Arc`s, so
/// dropping the map invalidates nothing): a program sweeping shapes cannot
/// grow it without bound.
pub const MAX_ENTRIES: usize = 1024;

pub struct KernelCache<S, K>(Mutex<Option<HashMap<S, Arc<K>>>>);

impl<S: Copy + Eq + Hash, K> KernelCache<S, K> {
    pub const fn new() -> Self {
        KernelCache(Mutex::new(None))
    }

    /// The cached value for `spec`, built on first use. Building runs
    /// outside the lock; a racing thread may build the same spec once more,
    /// which is harmless (the first insert wins).
    ///
    /// # Errors
    /// Whatever `build` returns.
    pub fn get<E>(&self, spec: S, build: impl FnOnce(S) -> Result<K, E>) -> Result<Arc<K>, E> {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = lock().as_ref().and_then(|m| m.get(&spec)) {
            return Ok(k.clone());
        }
        let k = Arc::new(build(spec)?);
        let mut map = lock();
        let map = map.get_or_insert_with(HashMap::new);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        Ok(map.entry(spec).or_insert(k).clone())
    }
}

impl<S: Copy + Eq + Hash, K> Default for KernelCache<S, K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_per_spec_and_stays_bounded() {
        static CACHE: KernelCache<usize, usize> = KernelCache::new();
        let built = std::cell::Cell::new(0);
        let build = |s: usize| -> Result<usize, ()> {
            built.set(built.get() + 1);
            Ok(s * 2)
        };
        assert_eq!(*CACHE.get(3, build).unwrap(), 6);
        assert_eq!(*CACHE.get(3, build).unwrap(), 6);
        assert_eq!(built.get(), 1);
        for s in 0..3 * MAX_ENTRIES {
            CACHE.get(s, build).unwrap();
        }
        assert!(CACHE.0.lock().unwrap().as_ref().unwrap().len() <= MAX_ENTRIES);
        // A failed build is returned, not cached.
        static FRESH: KernelCache<u8, u8> = KernelCache::new();
        assert_eq!(FRESH.get(1, |_| Err("no")).err(), Some("no"));
        assert_eq!(*FRESH.get(1, |s| Ok::<u8, &str>(s + 1)).unwrap(), 2);
    }
}
