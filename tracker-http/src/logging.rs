//! Log output: `tracing` events as text or JSON lines on stdout.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` is an env-filter directive
/// such as `info` or `tracker_http=debug`.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("--log `{filter}`: {e}"))?;
    // Colour only for a person at a terminal: escape codes in a log file
    // or a collector's input are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.finish().with(private()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(private())
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Drops, whatever `--log` asks for, the debug and trace lines of the
/// WebSocket library (bridged from the `log` crate): they print every
/// message's text and close reason, that is events with their visitor
/// ids, which must never reach the logs.
fn private<S: tracing::Subscriber>() -> impl tracing_subscriber::Layer<S> {
    filter_fn(|meta| {
        let websocket = ["tungstenite", "tokio_tungstenite"].iter().any(|name| {
            meta.target()
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        });
        !(websocket && *meta.level() > tracing::Level::INFO)
    })
}
