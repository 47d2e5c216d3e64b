//! The client side of the `Supply` API for command-line tools: a channel to a running
//! server (plaintext, or TLS trusting a given CA), each call carrying the bearer token if any.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use super::import::{self, Options, Summary, SupplyCalls};
use super::pb;
use super::pb::supply_client::SupplyClient;
use crate::config::ImportArgs;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A `Supply` client of a running server.
pub type Client = SupplyClient<InterceptedService<Channel, Bearer>>;

/// Connects to `addr` (`http://` or `https://`); `ca` is the PEM of the CA that signed the
/// server's certificate, which makes the channel TLS.
pub async fn connect(addr: &str, token: Option<&str>, ca: Option<&Path>) -> anyhow::Result<Client> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned()).context("--addr")?;
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).context("TLS")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let token = token
        .map(|token| format!("Bearer {token}").parse())
        .transpose()
        .context("the token is not a valid header value")?;
    Ok(SupplyClient::with_interceptor(channel, Bearer(token)))
}

impl SupplyCalls for Client {
    async fn apply_batch(&mut self, batch: pb::SupplyBatch) -> Result<pb::SupplyAck, Status> {
        Ok(SupplyClient::apply_batch(self, batch).await?.into_inner())
    }

    async fn begin_sync(
        &mut self,
        begin: pb::BeginSyncRequest,
    ) -> Result<pb::BeginSyncResponse, Status> {
        Ok(SupplyClient::begin_sync(self, begin).await?.into_inner())
    }

    async fn sync_part(
        &mut self,
        part: pb::SyncPartRequest,
    ) -> Result<pb::SyncPartResponse, Status> {
        Ok(SupplyClient::sync_part(self, part).await?.into_inner())
    }

    async fn commit_sync(&mut self, commit: pb::CommitSyncRequest) -> Result<pb::SyncAck, Status> {
        Ok(SupplyClient::commit_sync(self, commit).await?.into_inner())
    }
}

/// `promised import`: sends the file of `args` to the server it names, with a progress bar
/// on a terminal.
pub async fn import_file(args: &ImportArgs) -> anyhow::Result<Summary> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new(length).with_style(bar_style())
    } else {
        ProgressBar::hidden()
    };
    let mut client = connect(&args.addr, args.token.as_deref(), args.tls_ca.as_deref()).await?;
    let options = Options {
        source_id: args.source.clone(),
        full: args.full,
        force: args.force,
        rows_per_call: args.rows_per_call,
    };
    let input = std::io::BufReader::new(file);
    Ok(import::run(input, &mut client, &options, &progress).await?)
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}
