//! One import point for synchronization primitives, so that `loom` can swap
//! in its model-checked versions (`RUSTFLAGS="--cfg loom"`). Every atomic,
//! lock and thread the pool's protocols use must come from here, or loom
//! cannot see the interleavings it is asked to explore.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
// `std`'s `Arc` even under loom: the pool takes `self: &Arc<Self>` and
// coerces `Arc<impl Fn>` to `Arc<dyn Fn>`, neither of which stable Rust
// allows for loom's `Arc`. Reference counts are not part of the protocols
// modelled; every lock, condvar, atomic and thread they use is loom's.
#[cfg(loom)]
pub(crate) use loom::thread;
#[cfg(loom)]
pub(crate) use std::sync::Arc;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

/// Locks `mutex`, ignoring poisoning.
///
/// User code never runs while the pool holds one of its own locks, so a
/// poisoned lock can only come from a bug in the pool itself; the protected
/// data is still consistent at every point a panic could unwind from.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Waits on `condvar`, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match condvar.wait(guard) {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Waits on `condvar` for at most `timeout`, ignoring poisoning.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}
