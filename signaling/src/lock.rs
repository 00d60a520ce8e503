//! Taking the service's mutexes.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, even if a thread panicked while holding it: nothing in this
/// crate panics while holding a lock, and if something ever did, the data
/// is still consistent enough to keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
