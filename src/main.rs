//! The `imgstore` command: parses arguments, calls the library, prints.

mod cli;

use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = <cli::Args as clap::Parser>::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("IMGSTORE_LOG"))
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
            // One line, whatever the arguments and names in it hold.
            let message = format!("{err:#}");
            let _ = writeln!(io::stderr(), "error: {}", cli::output::escape(&message));
            ExitCode::FAILURE
        }
    }
}
