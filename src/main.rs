//! The `promised` binary: parse configuration, start logging, build the service, run it until
//! a shutdown signal.

use std::sync::Arc;

use clap::Parser;
use promised::clock::SystemClock;
use promised::config::{process_env, Cli, Command, Config};
use promised::grpc::client;
use promised::http::{openapi, routes};
use promised::server::{shutdown_signal, Application};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = process_env();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(&args, &env)?;
            init_logging(&config.log_filter);
            let app = Application::build(config, Arc::new(SystemClock)).await?;
            tracing::info!(
                grpc = %app.grpc_addr(),
                metrics = %app.metrics_addr(),
                http = %app.http_addr(),
                durability = app.durability().status().mode,
                "promised serving"
            );
            app.run_until_stopped(shutdown_signal()).await
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

fn init_logging(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
