//! The `promised` binary: parse configuration, start logging (and traces when configured),
//! build the service, run it until a shutdown signal.

use std::sync::Arc;

use clap::Parser;
use promised::clock::SystemClock;
use promised::config::{process_env, Cli, Command, Config};
use promised::grpc::client;
use promised::http::{openapi, routes};
use promised::server::{shutdown_signal, Application};
use promised::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = process_env();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(&args, &env)?;
            let telemetry = telemetry::init(&config.log_filter, config.otlp_endpoint.as_ref())?;
            let grace = config.shutdown_grace;
            // Installed before the listeners answer, so an early SIGTERM is a graceful stop.
            let stop = shutdown_signal();
            let app = Application::build(config, Arc::new(SystemClock)).await?;
            tracing::info!(
                grpc = %app.grpc_addr(),
                metrics = %app.metrics_addr(),
                http = %app.http_addr(),
                durability = app.durability().status().mode,
                "promised serving"
            );
            let served = app.run_until_stopped(stop).await;
            telemetry.shutdown(grace).await;
            served
        }
        Command::Openapi => {
            let document = openapi::document(&routes::table());
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        Command::Import(args) => {
            let summary = client::import_file(&args).await?;
            print!("{summary}");
            Ok(())
        }
    }
}
