//! Panics are caught per job: the worker survives, the handle gets the
//! message, the stats count it, and the on_panic hook hears about it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{guard, quiet_intentional_panics, Gate, IntentionalPayload, INTENTIONAL};
use crew::{JobError, Pool};

/// Panics with the intentional marker followed by `detail`.
fn boom(detail: &str) {
    panic!("{INTENTIONAL}{detail}")
}

#[test]
fn a_panicking_job_does_not_kill_its_worker() {
    quiet_intentional_panics();
    guard("100 panics on one worker", || {
        let pool = Pool::new(1);
        let worker_thread = pool
            .spawn(|| thread::current().id())
            .unwrap()
            .join()
            .unwrap();
        for i in 0..100 {
            pool.submit(move || boom(&format!(" #{i}"))).unwrap();
        }
        // Still one worker, still the same thread, still running jobs.
        let after = pool.spawn(|| thread::current().id()).unwrap();
        assert_eq!(after.join(), Ok(worker_thread));
        for i in 0..10 {
            assert_eq!(pool.spawn(move || i).unwrap().join(), Ok(i));
        }
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!(stats.panicked, 100);
        assert_eq!(stats.completed, 12);
        assert_eq!(stats.submitted, 112);
    });
}

#[test]
fn a_panicked_handle_reports_the_panic_message() {
    quiet_intentional_panics();
    guard("panic message", || {
        let pool = Pool::new(2);
        let literal = pool
            .spawn(|| -> u8 { panic!("intentional test panic: literal") })
            .unwrap();
        assert_eq!(
            literal.join(),
            Err(JobError::Panicked(
                "intentional test panic: literal".to_owned()
            ))
        );
        let code = 42;
        let formatted = pool
            .spawn(move || -> u8 { panic!("{INTENTIONAL}: code {code}") })
            .unwrap();
        assert_eq!(
            formatted.join(),
            Err(JobError::Panicked(format!("{INTENTIONAL}: code 42")))
        );
        let with_context = pool
            .spawn_with(|_| -> u8 { panic!("{INTENTIONAL}: with context") })
            .unwrap();
        let error = with_context.join().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("job panicked: {INTENTIONAL}: with context")
        );
    });
}

#[test]
fn a_non_string_panic_payload_is_still_reported_as_panicked() {
    quiet_intentional_panics();
    guard("non-string payload", || {
        let pool = Pool::new(1);
        let handle = pool
            .spawn(|| -> u8 { std::panic::panic_any(IntentionalPayload(7)) })
            .unwrap();
        assert!(matches!(handle.join(), Err(JobError::Panicked(_))));
        pool.shutdown();
        assert_eq!(pool.stats().panicked, 1);
    });
}

#[test]
fn the_on_panic_hook_is_called_with_each_message_on_a_worker_thread() {
    quiet_intentional_panics();
    guard("on_panic hook", || {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let pool = Pool::builder()
            .workers(2)
            .thread_name("hooked")
            .on_panic(move |message| {
                let thread = thread::current().name().map(str::to_owned);
                tx.lock()
                    .unwrap()
                    .send((message.to_owned(), thread))
                    .unwrap();
            })
            .build();
        for i in 0..5 {
            pool.submit(move || boom(&format!(" {i}"))).unwrap();
        }
        let handle = pool.spawn(|| boom(" spawned")).unwrap();
        assert!(handle.join().is_err());
        pool.submit(|| ()).unwrap(); // no panic, no call
        let mut messages: Vec<_> = (0..6)
            .map(|_| {
                let (message, thread) = rx.recv().unwrap();
                assert!(
                    thread.as_deref().is_some_and(|t| t.starts_with("hooked-")),
                    "hook ran on {thread:?}"
                );
                message
            })
            .collect();
        messages.sort();
        let mut expected: Vec<_> = (0..5).map(|i| format!("{INTENTIONAL} {i}")).collect();
        expected.push(format!("{INTENTIONAL} spawned"));
        expected.sort();
        assert_eq!(messages, expected);
        pool.shutdown();
        assert!(
            rx.try_recv().is_err(),
            "the hook ran for a job that did not panic"
        );
        assert_eq!(pool.stats().panicked, 6);
    });
}

#[test]
fn a_panicking_on_panic_hook_does_not_kill_the_worker() {
    quiet_intentional_panics();
    guard("panicking hook", || {
        let calls = Arc::new(AtomicUsize::new(0));
        let pool = {
            let calls = calls.clone();
            Pool::builder()
                .workers(1)
                .on_panic(move |message| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    panic!("{INTENTIONAL}: the hook too, after {message}");
                })
                .build()
        };
        for _ in 0..10 {
            pool.submit(|| boom("")).unwrap();
        }
        assert_eq!(pool.spawn(|| "alive").unwrap().join(), Ok("alive"));
        pool.shutdown();
        assert_eq!(calls.load(Ordering::SeqCst), 10);
        let stats = pool.stats();
        assert_eq!((stats.panicked, stats.completed), (10, 1));
    });
}

#[test]
fn panics_are_counted_apart_from_failures_and_completions() {
    quiet_intentional_panics();
    guard("panicked vs failed", || {
        let pool = Pool::new(2);
        for i in 0..30 {
            match i % 3 {
                0 => pool.submit(|| boom("")).unwrap(),
                1 => pool.submit(|| Err::<(), _>("failed")).unwrap(),
                _ => pool.submit(|| Ok::<_, ()>(())).unwrap(),
            }
        }
        pool.shutdown();
        let stats = pool.stats();
        assert_eq!(stats.panicked, 10);
        assert_eq!(stats.failed, 10);
        assert_eq!(stats.completed, 10);
        assert_eq!(stats.run_time.count(), 30, "panicked jobs ran too");
    });
}

#[test]
fn wait_idle_waits_for_the_on_panic_hook_and_the_lane_release_of_a_panicking_job() {
    // A job is finished only once the worker is done with it: its panic hook
    // has run and its lane is released. wait_idle must not return earlier,
    // or stats().lanes reads 1 on an idle pool.
    quiet_intentional_panics();
    guard("wait_idle vs panic hook", || {
        let hook_gate = Gate::new();
        let _open = hook_gate.open_on_drop();
        let (hook_entered_tx, hook_entered_rx) = mpsc::channel();
        let pool = {
            let hook_gate = hook_gate.clone();
            let hook_entered_tx = Mutex::new(hook_entered_tx);
            Pool::builder()
                .workers(1)
                .on_panic(move |_| {
                    hook_entered_tx.lock().unwrap().send(()).unwrap();
                    hook_gate.wait();
                })
                .build()
        };
        pool.submit_keyed(&"k", || boom("")).unwrap();
        hook_entered_rx.recv().unwrap();
        let (idle_tx, idle_rx) = mpsc::channel();
        let waiter = {
            let pool = pool.clone();
            thread::spawn(move || {
                pool.wait_idle();
                idle_tx.send(pool.stats().lanes).unwrap();
            })
        };
        match idle_rx.recv_timeout(Duration::from_millis(200)) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(lanes) => panic!(
                "wait_idle returned while the on_panic hook of the job was still running \
                 (stats().lanes = {lanes})"
            ),
            Err(RecvTimeoutError::Disconnected) => panic!("waiter died"),
        }
        hook_gate.open();
        assert_eq!(idle_rx.recv().unwrap(), 0, "lanes after wait_idle");
        waiter.join().unwrap();
    });
}
