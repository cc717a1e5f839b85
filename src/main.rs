#![recursion_limit = "256"]
use clap::Parser;
use sophos_cw_sync::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // Inside Lambda the runtime API is set: serve events instead of the CLI.
    let cli = std::env::var_os("AWS_LAMBDA_RUNTIME_API")
        .is_none()
        .then(Cli::parse);
    // A cycle is one chain of tasks that mostly wait on the vendors and the store;
    // on one thread they hand each other work without waking another thread (at
    // 50,000 customers, cross-thread wake-ups were a large part of a sync's CPU).
    // A Lambda invocation is one event at a time on a fraction of a core. Only
    // `serve`, which answers the console while cycles run, uses every core.
    let mut runtime = match &cli {
        Some(Cli {
            command: Command::Serve { .. },
        }) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli {
            Some(cli) => {
                sophos_cw_sync::telemetry::init();
                sophos_cw_sync::cli::main(cli).await
            }
            None => match sophos_cw_sync::lambda::run().await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lambda runtime stopped: {e}");
                    std::process::ExitCode::FAILURE
                }
            },
        }
    })
}
