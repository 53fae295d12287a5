//! The progress bar of `rotate`: targets finished out of all targets, and apps whose key is
//! known, on stderr, only for a person at a terminal.

use crate::rotation::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether to draw a progress bar: only when stderr is a terminal that can redraw a line
/// (`TERM=dumb` cannot), so logs captured by CI or a pipe never hold bar frames.
pub fn wanted(stderr_is_terminal: bool, term: Option<&str>) -> bool {
    stderr_is_terminal && term != Some("dumb")
}

/// A bar on stderr, following a run through [`Progress`].
#[derive(Debug)]
pub struct Bar {
    bar: ProgressBar,
    apps: AtomicUsize,
    keys: AtomicUsize,
}

impl Bar {
    /// A spinner until the run starts (settings, the run lock), then the bar; log lines on
    /// stderr are written around it.
    pub fn start() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message("checking settings and taking the run lock");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        crate::logging::set_progress_bar(Some(bar.clone()));
        Self {
            bar,
            apps: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
        }
    }

    /// Leaves the last state drawn ("17/17 targets, keys 3/3 in 2s") on its own line, or
    /// with `ran` false (the run did not start) clears it, and stops stepping around the bar.
    pub fn finish(&self, ran: bool) {
        crate::logging::set_progress_bar(None);
        if !ran {
            self.bar.finish_and_clear();
            return;
        }
        self.bar.set_style(
            ProgressStyle::with_template("  {bar:30} {pos}/{len} targets, {msg} in {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.finish();
        // The bar leaves the cursor at its end: what follows starts on a line of its own.
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }

    fn keys_message(&self) -> String {
        format!(
            "keys {}/{}",
            self.keys.load(Ordering::Relaxed),
            self.apps.load(Ordering::Relaxed)
        )
    }
}

impl Progress for Bar {
    fn start(&self, apps: usize, targets: usize) {
        self.apps.store(apps, Ordering::Relaxed);
        self.bar.set_length(targets as u64);
        self.bar.set_position(0);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed}] {bar:30} {pos}/{len} targets, {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_message(self.keys_message());
    }

    fn key_done(&self) {
        self.keys.fetch_add(1, Ordering::Relaxed);
        self.bar.set_message(self.keys_message());
    }

    fn targets_done(&self, targets: usize) {
        self.bar.inc(targets as u64);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        crate::logging::set_progress_bar(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_on_a_terminal_that_redraws() {
        assert!(wanted(true, Some("xterm-256color")));
        assert!(wanted(true, None));
        assert!(!wanted(false, Some("xterm-256color")));
        assert!(!wanted(true, Some("dumb")));
    }

    #[test]
    fn counts_targets_and_keys() {
        let bar = Bar {
            bar: ProgressBar::hidden(),
            apps: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
        };
        bar.start(2, 5);
        bar.key_done();
        bar.targets_done(3);
        assert_eq!((bar.bar.position(), bar.bar.length()), (3, Some(5)));
        assert_eq!(bar.keys_message(), "keys 1/2");
    }
}
