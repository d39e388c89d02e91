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
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // A closed stdout (`imgstore cat … | head`) is not a failure.
            if err
                .chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
