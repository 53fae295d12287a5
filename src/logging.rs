//! Logging: one JSON object per line (the Functions host forwards stdout to Application
//! Insights as plain traces; scripts and CI read piped output), or human-readable lines for a
//! person at a terminal; and, with `APPLICATIONINSIGHTS_CONNECTION_STRING`, the same events
//! sent to Application Insights with their fields as custom dimensions ([`crate::telemetry`]).
//! Keys never reach a log: they are held in [`crate::secret::ApiKey`], whose formatting
//! redacts them.

use std::io::Write;
use std::sync::Mutex;
use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's compact format), coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output (the custom handler: the host reads it).
    Stdout,
    /// Standard error, keeping stdout for a command's result (a report, a sealed value).
    Stderr,
}

/// The format to log in: `flag` (`--log-format`) when given; else JSON under the Functions
/// host (`serve`, or `FUNCTIONS_CUSTOMHANDLER_PORT` set) and whenever the stream the lines go
/// to is not a terminal (piped, redirected, captured by CI); text only for a person at a
/// terminal.
pub fn choose_format(
    flag: Option<LogFormat>,
    under_host: bool,
    stream_is_terminal: bool,
) -> LogFormat {
    match flag {
        Some(f) => f,
        None if under_host || !stream_is_terminal => LogFormat::Json,
        None => LogFormat::Text,
    }
}

/// The span a rotation run's events happen in (`rotation::Rotator::run`): its `run_id` goes
/// to Application Insights with every event, not into the log lines.
pub const RUN_SPAN: &str = "rotation_run";

/// The progress bar being drawn on stderr, if any: log lines for stderr are written while it
/// is hidden, so a line never lands in the middle of the bar.
static PROGRESS_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Makes `bar` the one log lines on stderr step around (`None`: no bar any more).
pub fn set_progress_bar(bar: Option<indicatif::ProgressBar>) {
    *PROGRESS_BAR.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// Standard error, hiding the progress bar (if one is drawn) while a line is written.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = PROGRESS_BAR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match bar {
            // The formatter hands over one whole line per event: written at once, it keeps
            // the bar intact.
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf).map(|()| buf.len())),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// JSON lines leave out the module path: its key, `target`, would clash with the events' own
/// `target` field (the target a rotation wrote), and Application Insights queries read that one.
///
/// Installs the global subscriber; the level comes from `RUST_LOG` (default `info`, with the
/// HTTP stack's own chatter at `warn`). Text is coloured only when `stream_is_terminal`.
/// With `APPLICATIONINSIGHTS_CONNECTION_STRING` set, events at `info` and above also go to
/// Application Insights with their fields as custom dimensions ([`crate::telemetry`]).
/// Calling it twice is harmless.
pub fn init(format: LogFormat, stream: LogStream, stream_is_terminal: bool) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    type Base = tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>;
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,hyper=warn,reqwest=warn,rustls=warn,azure_core=warn,azure_identity=warn,h2=warn",
        )
    });
    let lines: Box<dyn Layer<Base> + Send + Sync> = match (format, stream) {
        (LogFormat::Json, LogStream::Stdout) => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_writer(std::io::stdout)
            .boxed(),
        (LogFormat::Json, LogStream::Stderr) => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(false)
            .with_writer(|| Stderr)
            .boxed(),
        (LogFormat::Text, LogStream::Stdout) => fmt::layer()
            .compact()
            .with_target(false)
            .with_ansi(stream_is_terminal)
            .with_writer(std::io::stdout)
            .boxed(),
        (LogFormat::Text, LogStream::Stderr) => fmt::layer()
            .compact()
            .with_target(false)
            .with_ansi(stream_is_terminal)
            .with_writer(|| Stderr)
            .boxed(),
    };
    let (telemetry, problem) = match crate::telemetry::layer_from_env() {
        Ok(layer) => (layer, None),
        Err(e) => (None, Some(e)),
    };
    // The run's span (its ID, for the telemetry) stays out of the lines, which are as they were.
    let lines = lines.with_filter(tracing_subscriber::filter::filter_fn(|m| {
        !(m.is_span() && m.name() == RUN_SPAN)
    }));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(telemetry.map(|t| t.with_filter(LevelFilter::INFO)))
        .try_init();
    if let (Ok(()), Some(problem)) = (installed, problem) {
        tracing::warn!(
            setting = crate::telemetry::CONNECTION_STRING_SETTING,
            "{problem}; nothing is sent to Application Insights"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_unless_a_person_reads_a_terminal() {
        use LogFormat::{Json, Text};
        // (flag, under the host, terminal) -> format
        let cases = [
            (None, false, true, Text),
            (None, false, false, Json),
            (None, true, true, Json),
            (None, true, false, Json),
            (Some(Text), true, false, Text),
            (Some(Text), false, false, Text),
            (Some(Json), false, true, Json),
        ];
        for (flag, host, terminal, expected) in cases {
            assert_eq!(
                choose_format(flag, host, terminal),
                expected,
                "{flag:?} host={host} terminal={terminal}"
            );
        }
    }
}
