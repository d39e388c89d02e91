//! Independent pieces of work spread over a few threads: the members of a
//! plain archive staged from their byte ranges, the layers of a layout
//! directory, the blobs `fsck` re-hashes. Hashing and decompressing are the
//! costly stages of all of these, and the pieces do not depend on each
//! other, so one thread per core keeps every core busy where one stream
//! would leave one idle.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Threads to use for work that wants at most `max`: one per core.
pub(crate) fn workers(max: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, max.max(1))
}

/// Runs `work` on every item on up to `workers` threads, taking the items
/// in the order `order` gives (indices into `items`; largest first, say).
/// Each thread has a state of its own, made by `init` (a cache of open
/// files). After the first failure no thread takes a new item. Results
/// come back in the items' order; an item that no thread took (after a
/// failure) has none.
pub(crate) fn run<T, S, R, E>(
    items: &[T],
    order: Vec<usize>,
    workers: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> Result<R, E> + Sync,
) -> Vec<Option<Result<R, E>>>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<R, E>>>> =
        items.iter().map(|_| Mutex::new(None)).collect();
    let workers = workers.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut state = init();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= order.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = order[k];
                    let result = work(&mut state, &items[i]);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_done_once_in_order_and_a_failure_stops_the_rest() {
        let items: Vec<u32> = (0..100).collect();
        let order: Vec<usize> = (0..100).rev().collect();
        let done = run(
            &items,
            order,
            4,
            || 0u32,
            |count, &n| {
                *count += 1;
                Ok::<_, ()>(n * 2)
            },
        );
        let doubled: Vec<u32> = done.into_iter().map(|r| r.unwrap().unwrap()).collect();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());

        // One worker, so the order is exact: items after the failure are
        // never taken.
        let done = run(
            &items,
            (0..100).collect(),
            1,
            || (),
            |_, &n| {
                if n == 10 { Err(n) } else { Ok(n) }
            },
        );
        assert!(done[..10].iter().all(|r| matches!(r, Some(Ok(_)))));
        assert_eq!(done[10], Some(Err(10)));
        assert!(done[11..].iter().all(Option::is_none));
    }
}
