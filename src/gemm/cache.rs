//! A process-wide cache of generated kernels, keyed by spec: one per
//! kernel family, shared by every path that uses the family.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub(crate) struct KernelCache<S, K>(Mutex<Option<HashMap<S, Arc<K>>>>);

impl<S: Copy + Eq + Hash, K> KernelCache<S, K> {
    pub const fn new() -> Self {
        KernelCache(Mutex::new(None))
    }

    /// The cached kernel for `spec`, generating it on first use. Generation
    /// runs outside the lock; a racing thread may generate the same spec
    /// once more, which is harmless (the first insert wins).
    pub fn get<E>(&self, spec: S, generate: impl FnOnce(S) -> Result<K, E>) -> Result<Arc<K>, E> {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = lock().as_ref().and_then(|m| m.get(&spec)) {
            return Ok(k.clone());
        }
        let k = Arc::new(generate(spec)?);
        Ok(lock().get_or_insert_with(HashMap::new).entry(spec).or_insert(k).clone())
    }
}
