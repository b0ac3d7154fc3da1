//! The `tracker-http` binary: parse the configuration, start logging, serve.

use std::process::ExitCode;

use tracker_http::{Config, logging, server};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::from_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if let Err(e) = config.validate() {
        eprintln!("tracker-http: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = logging::init(config.log_format, &config.log) {
        eprintln!("tracker-http: {e}");
        return ExitCode::from(2);
    }
    tracing::info!(%config, "starting tracker-http {}", env!("CARGO_PKG_VERSION"));
    match server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tracker-http stopped");
            ExitCode::FAILURE
        }
    }
}
