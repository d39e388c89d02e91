//! The `imgstore` command: parses arguments, calls the library, prints.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <cli::Args as clap::Parser>::parse();
    let filter = match args.default_log_filter() {
        Some(default) if std::env::var_os("IMGSTORE_LOG").is_none() => {
            tracing_subscriber::EnvFilter::new(default)
        }
        _ => tracing_subscriber::EnvFilter::from_env("IMGSTORE_LOG"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
    // Before any store is opened: Ctrl-C or a SIGTERM removes what this
    // process is staging and exits 130 or 143, instead of leaving its temp
    // files for gc. A server stops on them by itself, cleanly, exit 0.
    if !args.stops_on_signals()
        && let Err(e) = imgstore::exit_on_interrupt()
    {
        tracing::warn!("cannot catch SIGINT and SIGTERM: {e}");
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // A closed stdout (`imgstore cat … | head`) is not a failure.
            // `--json` output fails inside serde_json, which hides the io
            // error from the source chain but still knows its kind.
            let broken_pipe = err.chain().any(|c| {
                let kind = c
                    .downcast_ref::<io::Error>()
                    .map(io::Error::kind)
                    .or_else(|| c.downcast_ref::<serde_json::Error>()?.io_error_kind());
                kind == Some(io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            // One line, whatever the arguments and names in it hold.
            let message = format!("{err:#}");
            let _ = writeln!(io::stderr(), "error: {}", cli::output::escape(&message));
            ExitCode::FAILURE
        }
    }
}
