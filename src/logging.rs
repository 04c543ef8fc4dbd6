//! Logging setup: text or JSON, to the console and/or a daily-rotated file.

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings};

/// Keeps the file writer flushing; drop it last.
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Installs the global subscriber. `verbose` lowers the level to debug for dpsd itself.
pub fn init(settings: &LogSettings, verbose: bool) -> anyhow::Result<LogGuard> {
    let mut level = settings.level.clone();
    if verbose {
        level.push_str(",dpsd=debug");
    }
    // amqprs and actix report every channel and thread at info: debug detail for an operator.
    for chatty in ["amqprs", "actix_server"] {
        if !level.contains(chatty) {
            level.push_str(&format!(",{chatty}=warn"));
        }
    }
    let filter =
        EnvFilter::try_new(&level).map_err(|e| anyhow::anyhow!("bad log.level {level:?}: {e}"))?;
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if settings.console {
        let ansi = std::io::stderr().is_terminal();
        layers.push(layer(
            settings.format,
            BoxMakeWriter::new(std::io::stderr),
            ansi,
        ));
    }
    let mut guard = None;
    if let Some(file) = &settings.file {
        let (writer, g) = tracing_appender::non_blocking(daily(file)?);
        guard = Some(g);
        layers.push(layer(settings.format, BoxMakeWriter::new(writer), false));
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()?;
    Ok(LogGuard(guard))
}

fn layer(
    format: LogFormat,
    writer: BoxMakeWriter,
    ansi: bool,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    let base = fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().flatten_event(true).boxed(),
    }
}

fn daily(file: &Path) -> anyhow::Result<tracing_appender::rolling::RollingFileAppender> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("log.file {} has no file name", file.display()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create log folder {}: {e}", dir.display()))?;
    Ok(tracing_appender::rolling::daily(dir, name))
}
