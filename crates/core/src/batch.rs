//! A pool of worker threads for many independent items (files to tokenize, signals to
//! encode). Each worker takes the next item as soon as it finishes one, so long and short
//! items balance without planning. The `tokens batch` command and the Python package's
//! batch calls share it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `work` on every item of `items` on up to `jobs` threads (at least one) and hands
/// each result, with its item's index, to `done`, one call at a time. Once `stop` returns
/// true the workers take no more items, so the rest are left out.
pub fn for_each<T, R>(
    items: &[T],
    jobs: usize,
    stop: impl Fn() -> bool + Sync,
    work: impl Fn(&T) -> R + Sync,
    done: impl FnMut(usize, R) + Send,
) where
    T: Sync,
    R: Send,
{
    let next = AtomicUsize::new(0);
    let done = Mutex::new(done);
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !stop() {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(index) else { return };
                    let result = work(item);
                    // A `done` that panicked has already failed the whole call; the rest
                    // only need the lock.
                    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                    (*done)(index, result);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_with_its_index() {
        let items: Vec<u64> = (0..100).collect();
        let mut seen = vec![None; items.len()];
        for_each(&items, 4, || false, |&x| x * x, |i, r| seen[i] = Some(r));
        assert!(seen.iter().enumerate().all(|(i, r)| *r == Some((i * i) as u64)));
    }

    #[test]
    fn stop_leaves_the_rest_out() {
        let items = [1, 2, 3];
        let mut count = 0;
        for_each(&items, 2, || true, |&x| x, |_, _: i32| count += 1);
        assert_eq!(count, 0);
    }
}
