//! The one way the rotator runs many calls at once: a bounded fan-out whose results come back
//! in the order the calls were given.
//!
//! The run uses it for its apps and containers (the settings' concurrency), the targets for
//! the entries of one container ([`crate::azure::call::Call::fan_out`]); the retry policy's
//! per-host and total caps bound what is actually on the wire.

use futures::stream::{self, BoxStream, StreamExt};
use std::future::Future;

/// Runs `calls` with at most `limit` (at least 1) at once, whichever finishes first making room
/// for the next; the results are in the order of `calls`.
///
/// A call is taken from `calls` only when there is room for it, so at most `limit` of them
/// exist at a time: a container of 5,000 entries or a run of 50,000 apps never holds a future
/// per item (each is kilobytes before it is polled). The stream is boxed, so the returned future
/// names no closure of the caller's and stays `Send` for any lifetime (which the async-trait
/// methods of the targets and the HTTP handlers need).
pub fn bounded<'a, T, F, I>(limit: usize, calls: I) -> impl Future<Output = Vec<T>> + Send + 'a
where
    T: Send + 'a,
    F: Future<Output = T> + Send + 'a,
    I: IntoIterator<Item = F>,
    I::IntoIter: Send + 'a,
{
    let running: BoxStream<'a, (usize, T)> = stream::iter(calls.into_iter().enumerate())
        .map(|(i, call)| async move { (i, call.await) })
        .buffer_unordered(limit.max(1))
        .boxed();
    async move {
        let mut done: Vec<(usize, T)> = running.collect().await;
        done.sort_unstable_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, out)| out).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// At most `limit` calls run at once, a slow first call does not hold the others back,
    /// and the results keep the calls' order.
    #[tokio::test]
    async fn bounded_in_order_and_never_more_than_the_limit() {
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let finished = std::sync::Mutex::new(Vec::new());
        let calls = (0..10u64).map(|i| {
            let (running, most, finished) = (&running, &most, &finished);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // The first call is the slowest: the others finish around it.
                let pause = if i == 0 { 8 } else { 1 };
                for _ in 0..pause {
                    tokio::task::yield_now().await;
                }
                running.fetch_sub(1, Ordering::SeqCst);
                finished.lock().unwrap().push(i);
                i * 10
            }
        });
        let out = bounded(3, calls).await;
        assert_eq!(out, (0..10).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert_ne!(
            finished.lock().unwrap()[0],
            0,
            "a finished call makes room for the next while the first still runs"
        );
        assert_eq!(
            bounded(0, [async { 1 }]).await,
            vec![1],
            "a limit of 0 is 1"
        );
    }
}
