//! `standbyctl`: see the crate documentation and `standbyctl --help`.

use std::process::ExitCode;

use clap::Parser;
use standbyctl::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits with 2 itself on a usage error.
    let cli = Cli::parse();
    match standbyctl::run(cli).await {
        Ok(finish) => finish.into(),
        Err(error) => {
            eprintln!("standbyctl: {error}");
            error.exit_code()
        }
    }
}
