//! Logging for weave's binaries: to journald when its socket exists, else to stderr.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber at `level`. `quiet` names crates whose logs are shown only
/// from ERROR up: libraries that warn about things a user cannot act on.
pub fn init(level: Level, quiet: &[&str]) {
    let filter = quiet
        .iter()
        .fold(Targets::new().with_default(level), |f, target| {
            f.with_target(*target, Level::ERROR)
        });
    let journald = std::path::Path::new("/run/systemd/journal/socket")
        .exists()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    match journald {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colour codes only for a person at a terminal, never into a log file
                    // (weave-dns's dns.log) or a runtime's pipe.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false),
            )
            .init(),
    }
}
