//! Logging: one JSON object per line (the Functions host forwards stdout to Application
//! Insights), or human-readable lines on a terminal. Keys never reach a log: they are held in
//! [`crate::secret::ApiKey`], whose formatting redacts them.

use tracing_subscriber::{fmt, EnvFilter};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// JSON lines on stdout (the custom handler).
    StdoutJson,
    /// JSON lines on stderr, keeping stdout for a report.
    StderrJson,
    /// Human-readable lines on stderr (a terminal).
    StderrText,
}

/// JSON lines leave out the module path: its key, `target`, would clash with the events' own
/// `target` field (the target a rotation wrote), and Application Insights queries read that one.
///
/// Installs the global subscriber; the level comes from `RUST_LOG` (default `info`, with the
/// HTTP stack's own chatter at `warn`). Calling it twice is harmless.
pub fn init(target: LogTarget) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,hyper=warn,reqwest=warn,rustls=warn,azure_core=warn,azure_identity=warn,h2=warn",
        )
    });
    let builder = fmt().with_env_filter(filter);
    let _ = match target {
        LogTarget::StdoutJson => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .with_writer(std::io::stdout)
            .try_init(),
        LogTarget::StderrJson => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(false)
            .with_writer(std::io::stderr)
            .try_init(),
        LogTarget::StderrText => builder
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init(),
    };
}
