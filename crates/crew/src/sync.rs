//! One import point for synchronization primitives, so that `loom` can swap
//! in its model-checked versions (`RUSTFLAGS="--cfg loom"`). Every atomic,
//! lock and thread the pool's protocols use must come from here, or loom
//! cannot see the interleavings it is asked to explore.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;
#[cfg(loom)]
pub(crate) use loom_atomics::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize};
// `std`'s `Arc` even under loom: the pool takes `self: &Arc<Self>` and
// coerces `Arc<impl Fn>` to `Arc<dyn Fn>`, neither of which stable Rust
// allows for loom's `Arc`. Reference counts are not part of the protocols
// modelled; every lock, condvar, atomic and thread they use is loom's.
#[cfg(loom)]
pub(crate) use std::sync::Arc;

/// loom's atomics, with their initial value stored again as `SeqCst`.
///
/// loom records an atomic's initial value as a plain (release) store, and a
/// `SeqCst` load elsewhere may return it even after a newer `SeqCst` store
/// that the initialization happens before; C++'s rules for `SeqCst` loads
/// ([atomics.order]) forbid that. Every "register, then re-check" handshake
/// of the pool (sleepers, watchers, producers waiting for space) would show
/// as a lost wake-up in the first interleaving. Re-storing the initial value
/// with `SeqCst` before the atomic is shared closes that gap; every other
/// load, store and read-modify-write is loom's own.
#[cfg(loom)]
mod loom_atomics {
    use loom::sync::atomic::Ordering;

    macro_rules! atomic {
        ($name:ident, $value:ty) => {
            #[derive(Debug)]
            pub(crate) struct $name(loom::sync::atomic::$name);

            impl $name {
                #[track_caller]
                pub(crate) fn new(value: $value) -> Self {
                    let atomic = loom::sync::atomic::$name::new(value);
                    atomic.store(value, Ordering::SeqCst);
                    $name(atomic)
                }
            }

            impl Default for $name {
                fn default() -> Self {
                    Self::new(Default::default())
                }
            }

            impl std::ops::Deref for $name {
                type Target = loom::sync::atomic::$name;

                fn deref(&self) -> &Self::Target {
                    &self.0
                }
            }
        };
    }

    atomic!(AtomicBool, bool);
    atomic!(AtomicU8, u8);
    atomic!(AtomicU64, u64);
    atomic!(AtomicUsize, usize);
}

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
