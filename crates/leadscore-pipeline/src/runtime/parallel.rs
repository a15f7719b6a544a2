//! A poll batch's partition steps, side by side on a few threads. The steps of
//! different partitions share only what they read (the model, and the store
//! through the staged layer, which no one writes while they run), so they can
//! run at once; their results come back in the order of the jobs, so what the
//! runtime publishes and commits does not depend on how many threads ran them.
//!
//! Threads are scoped to one batch rather than kept in a pool: a step borrows
//! the runtime's state, and at the batch sizes worth splitting (hundreds of
//! messages, milliseconds of work) starting a thread costs tens of
//! microseconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// One job and, once run, its result.
type Slot<J, R> = Mutex<(Option<J>, Option<R>)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `f` of every job, in the jobs' order, on up to `threads` threads, the
/// caller's included. Threads take the next job as they finish one, so a
/// partition with many messages does not hold back the jobs behind it. If a
/// helper thread cannot be started, the others (at least the caller) run its
/// share. A panic in `f` reaches the caller once every thread has stopped.
pub(super) fn map_ordered<J: Send, R: Send>(jobs: Vec<J>, threads: usize, f: impl Fn(J) -> R + Sync) -> Vec<R> {
    let helpers = threads.min(jobs.len()).saturating_sub(1);
    if helpers == 0 {
        return jobs.into_iter().map(f).collect();
    }
    let slots: Vec<Slot<J, R>> = jobs.into_iter().map(|j| Mutex::new((Some(j), None))).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(slot) = slots.get(next.fetch_add(1, Ordering::Relaxed)) {
            let job = lock(slot).0.take().expect("each job is taken by one thread");
            let result = f(job);
            lock(slot).1 = Some(result);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..helpers {
            let started = std::thread::Builder::new().name("leadscore-step".into()).spawn_scoped(s, work);
            if let Err(e) = started {
                tracing::warn!(error = %e, "could not start a step thread; the others run its share");
            }
        }
        work();
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()).1.expect("every job ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::map_ordered;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    proptest! {
        /// Whatever the threads and however long each job takes, every job
        /// runs once and the results are in the jobs' order.
        #[test]
        fn results_come_back_in_order(costs in prop::collection::vec(0u32..2_000, 0..40), threads in 1usize..5) {
            let ran = Mutex::new(Vec::new());
            let results = map_ordered(costs.clone(), threads, |cost| {
                // Uneven work, so that threads finish out of order.
                let mut x = u64::from(cost);
                for _ in 0..cost * 50 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                ran.lock().unwrap().push(std::thread::current().id());
                (cost, std::hint::black_box(x) | 1)
            });
            prop_assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), costs.clone());
            prop_assert!(results.iter().all(|r| r.1 != 0));
            prop_assert_eq!(ran.lock().unwrap().len(), costs.len());
        }
    }

    #[test]
    fn more_than_one_thread_runs_jobs_when_asked() {
        // Each job waits until two distinct threads have started jobs: with
        // one thread this would never end, so the test bounds the wait.
        let seen = Mutex::new(HashSet::new());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let results = map_ordered((0..8).collect::<Vec<u32>>(), 2, |j| {
            seen.lock().unwrap().insert(std::thread::current().id());
            while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            j * 2
        });
        assert_eq!(results, (0..8).map(|j| j * 2).collect::<Vec<_>>());
        assert_eq!(seen.lock().unwrap().len(), 2, "the jobs ran on one thread");
    }

    #[test]
    fn one_thread_runs_on_the_caller() {
        let caller = std::thread::current().id();
        let threads = map_ordered(vec![1, 2, 3], 1, |_| std::thread::current().id());
        assert!(threads.iter().all(|t| *t == caller));
    }
}
