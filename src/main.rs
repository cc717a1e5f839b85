use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sophos_cw_sync::telemetry::init();
    sophos_cw_sync::cli::main(sophos_cw_sync::cli::Cli::parse()).await
}
