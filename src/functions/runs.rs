//! Runs that outlive one HTTP answer: the asynchronous request-reply pattern of
//! `ApiKeyRotator` (docs/operations.md, "Long runs over HTTP").
//!
//! The platform's front end drops an HTTP call after 230 s whatever the plan, and a run over
//! thousands of apps can need longer. So the function starts its run here, waits for it
//! [`crate::settings::HTTP_ANSWER`] at most, and when it has not ended answers `202 Accepted`
//! with a `Location` to poll; the run goes on in this process under the long deadline, and a
//! poll answers the report (or the run's error) once it has ended.
//!
//! One registry per process: the handler is one process, and a poll names a run by id. A
//! finished run's answer is kept [`KEEP_FINISHED`] for its pollers (a lost answer can be asked
//! again), at most [`MAX_FINISHED`] of them; a run still going is never dropped.

use super::ApiError;
use crate::rotation::{Report, RunError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a finished run's answer can be polled.
pub const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// Finished answers kept at most (the oldest goes first): a report of many apps is large.
pub const MAX_FINISHED: usize = 32;

/// How a run ended: its report, or why it could not run.
pub type Outcome = Result<Report, ApiError>;

/// The runs of this process ([`Runs`]).
pub static RUNS: LazyLock<Runs> = LazyLock::new(Runs::default);

/// Runs started over HTTP, by id.
#[derive(Default)]
pub struct Runs {
    runs: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    started: time::OffsetDateTime,
    done: watch::Receiver<Option<Arc<Outcome>>>,
    /// When it ended (`None`: still going), for [`KEEP_FINISHED`].
    ended: Option<Instant>,
}

/// What a poll finds.
pub enum Polled {
    /// Still going, since `started`.
    Running { started: time::OffsetDateTime },
    /// Ended.
    Done(Arc<Outcome>),
    /// Not a run of this process (never started here, forgotten, or the process restarted).
    Unknown,
}

impl Runs {
    /// Starts `run` as run `id` in a task of its own and waits for it `wait` at most: its
    /// outcome when it ended by then (and nothing is kept), else `None` and the run goes on,
    /// registered for [`Runs::poll`].
    pub async fn start(
        &'static self,
        id: &str,
        wait: Duration,
        run: impl Future<Output = Result<Report, RunError>> + Send + 'static,
    ) -> Option<Arc<Outcome>> {
        let (tx, mut rx) = watch::channel(None);
        self.lock().insert(
            id.to_string(),
            Entry {
                started: time::OffsetDateTime::now_utc(),
                done: rx.clone(),
                ended: None,
            },
        );
        let key = id.to_string();
        tokio::spawn(async move {
            let outcome = Arc::new(run.await.map_err(ApiError::from));
            // `send_replace` stores the outcome even when nobody waits any more.
            tx.send_replace(Some(outcome));
            self.finish(&key);
        });
        let ended = tokio::time::timeout(wait, rx.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| v.clone()));
        if ended.is_some() {
            // Answered in full: nobody will poll for it.
            self.lock().remove(id);
        }
        ended
    }

    /// What is known of run `id`.
    pub fn poll(&self, id: &str) -> Polled {
        let mut runs = self.lock();
        Self::forget_old(&mut runs);
        match runs.get(id) {
            None => Polled::Unknown,
            Some(e) => match e.done.borrow().clone() {
                Some(outcome) => Polled::Done(outcome),
                None => Polled::Running { started: e.started },
            },
        }
    }

    /// Waits until every run still going has ended (the process is shutting down: each run
    /// ends by its own deadline and releases its lock).
    pub async fn wait_all(&self) {
        let going: Vec<_> = self
            .lock()
            .values()
            .filter(|e| e.ended.is_none())
            .map(|e| e.done.clone())
            .collect();
        for mut done in going {
            let _ = done.wait_for(Option::is_some).await;
        }
    }

    fn finish(&self, id: &str) {
        let mut runs = self.lock();
        if let Some(e) = runs.get_mut(id) {
            e.ended = Some(Instant::now());
        }
        Self::forget_old(&mut runs);
    }

    /// Drops finished answers older than [`KEEP_FINISHED`], then the oldest beyond
    /// [`MAX_FINISHED`].
    fn forget_old(runs: &mut HashMap<String, Entry>) {
        runs.retain(|_, e| e.ended.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        let mut finished: Vec<(Instant, String)> = runs
            .iter()
            .filter_map(|(id, e)| e.ended.map(|t| (t, id.clone())))
            .collect();
        if finished.len() > MAX_FINISHED {
            finished.sort();
            for (_, id) in &finished[..finished.len() - MAX_FINISHED] {
                runs.remove(id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding it leaves the map usable.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Result<Report, RunError> {
        Ok(Report::new(false))
    }

    /// A run that ends within the wait is answered in full and not kept; one that does not
    /// is polled as running, then done, and an unknown id is unknown.
    #[tokio::test]
    async fn a_run_is_answered_at_once_or_polled() {
        let runs = &*RUNS;
        let quick = runs
            .start("quick", Duration::from_secs(5), async { report() })
            .await;
        assert!(quick.is_some_and(|o| o.is_ok()));
        assert!(matches!(runs.poll("quick"), Polled::Unknown));

        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let slow = runs
            .start("slow", Duration::from_millis(10), async move {
                let _ = wait.await;
                report()
            })
            .await;
        assert!(slow.is_none());
        assert!(matches!(runs.poll("slow"), Polled::Running { .. }));
        go.send(()).unwrap();
        runs.wait_all().await;
        assert!(matches!(runs.poll("slow"), Polled::Done(o) if o.is_ok()));
        assert!(matches!(runs.poll("never"), Polled::Unknown));
    }

    /// A run that fails keeps its error for the poll.
    #[tokio::test]
    async fn a_failed_run_keeps_its_error() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let started = RUNS
            .start("failing", Duration::ZERO, async move {
                let _ = wait.await;
                Err(RunError::InProgress("another run holds the lock".into()))
            })
            .await;
        assert!(started.is_none());
        go.send(()).unwrap();
        RUNS.wait_all().await;
        let Polled::Done(outcome) = RUNS.poll("failing") else {
            panic!("not done");
        };
        let e = outcome.as_ref().as_ref().unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::CONFLICT);
    }

    /// Finished answers beyond the cap go oldest first; running ones stay.
    #[test]
    fn old_answers_are_forgotten() {
        let mut map = HashMap::new();
        let (_tx, rx) = watch::channel(None);
        let now = Instant::now();
        for i in 0..MAX_FINISHED + 3 {
            map.insert(
                format!("r{i}"),
                Entry {
                    started: time::OffsetDateTime::now_utc(),
                    done: rx.clone(),
                    ended: Some(now + Duration::from_millis(i as u64)),
                },
            );
        }
        map.insert(
            "going".into(),
            Entry {
                started: time::OffsetDateTime::now_utc(),
                done: rx.clone(),
                ended: None,
            },
        );
        Runs::forget_old(&mut map);
        assert_eq!(map.len(), MAX_FINISHED + 1);
        assert!(map.contains_key("going"));
        assert!(!map.contains_key("r0") && !map.contains_key("r2"));
        assert!(map.contains_key("r3"));
    }
}
