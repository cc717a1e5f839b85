#![recursion_limit = "256"]
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Inside Lambda the runtime API is set: serve events instead of the CLI.
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return match sophos_cw_sync::lambda::run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lambda runtime stopped: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    sophos_cw_sync::telemetry::init();
    sophos_cw_sync::cli::main(sophos_cw_sync::cli::Cli::parse()).await
}
