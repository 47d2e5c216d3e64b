//! The demo (`cargo run --release --example demo`): the service in memory with a 50-node US
//! network, a synthetic catalogue and a feed that keeps streaming supply through the real gRPC
//! ingest API, as a WMS, store POS systems and an ERP would; at start, the Memphis 3PL sends
//! a CSV full sync in its own codes and cases, through the import `promised import` uses. It
//! uses the service the way any client does: the library to start it, the generated gRPC
//! client to feed it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use clap::Parser;
use indicatif::ProgressBar;
use promised::clock::{Clock, SystemClock};
use promised::config::{process_env, Config, ServeArgs};
use promised::domain::{Day, NodeKind};
use promised::grpc::client;
use promised::grpc::import::{self, Options, Summary};
use promised::grpc::pb::{self, supply_client::SupplyClient};
use promised::network::Network;
use promised::network_file::{self, NetworkFile, DEMO_NETWORK_TOML};
use promised::server::{shutdown_signal, Application};
use promised::telemetry;

/// Updates per batch during the initial load.
const LOAD_BATCH: usize = 1_000;

/// The feed sends one round of batches per tick.
const TICK: Duration = Duration::from_millis(100);

/// Flags: the service's own, and the synthetic load's.
#[derive(Debug, Parser)]
struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// SKUs in the synthetic catalogue.
    #[arg(long, default_value_t = 100_000)]
    skus: usize,
    /// Updates per second the synthetic feed keeps sending after the initial load.
    #[arg(long, default_value_t = 1_000)]
    feed_rate: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = DemoArgs::parse();
    // The demo's own feed is an anonymous client on loopback, so the demo serves without
    // authentication (and says so loudly at start).
    let serve = ServeArgs {
        insecure_no_auth: true,
        ..args.serve
    };
    let config = Config::resolve(&serve, &process_env())?;
    let telemetry = telemetry::init(&config.log_filter, config.otlp_endpoint.as_ref())?;
    let grace = config.shutdown_grace;
    let result = run(config, args.skus, args.feed_rate, shutdown_signal()).await;
    telemetry.shutdown(grace).await;
    result
}

/// Runs the demo until `shutdown` resolves.
async fn run(
    config: Config,
    skus: usize,
    feed_rate: u32,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    network_file::apply(NetworkFile::parse(DEMO_NETWORK_TOML, false)?, app.app()).await?;
    let catalogue = Catalogue::of(&app.engine().network(), skus);
    let target = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), app.grpc_addr().port());
    print_instructions(target, app.http_addr(), app.metrics_addr());
    let synced = tokio::spawn(third_party_sync(target));
    let stop = CancellationToken::new();
    let feeding = stop.clone();
    let feed = tokio::spawn(async move {
        match synced.await {
            Ok(Ok(summary)) => println!("the Memphis 3PL's CSV full sync:\n{summary}"),
            Ok(Err(error)) => tracing::warn!(error = format!("{error:#}"), "3PL sync failed"),
            Err(error) => tracing::warn!(%error, "3PL sync task failed"),
        }
        feed(target, catalogue, feed_rate, feeding).await
    });
    let result = app
        .run_until_stopped(async {
            shutdown.await;
            stop.cancel();
        })
        .await;
    match feed.await {
        Ok(Err(error)) => tracing::warn!(error = format!("{error:#}"), "demo feed stopped"),
        Err(error) => tracing::warn!(%error, "demo feed task failed"),
        Ok(Ok(())) => {}
    }
    result
}

fn print_instructions(grpc: SocketAddr, http: SocketAddr, metrics: SocketAddr) {
    let port = grpc.port();
    let web = format!("localhost:{}", http.port());
    let json = "-H 'content-type: application/json'";
    println!(
        "\npromised demo: 50 nodes, 3 sources, synthetic catalogue loading through the feed API\n\
         \nOver HTTP/JSON (the OpenAPI document is at http://{web}/openapi.json):\n\
         \n  curl -s '{web}/v1/skus/SKU-000042/availability?group_ids=EAST&quantity=50'\
         \n  curl -s {web}/v1/promises {json} \\\
         \n      -d '{{\"lines\":[{{\"sku\":\"SKU-000042\",\"quantity\":1}}],\"destination\":{{\"postalCode\":\"10001\"}}}}'\
         \n  curl -s {web}/v1/reservations {json} \\\
         \n      -d '{{\"reservationId\":\"cart-42\",\"ttlSeconds\":900,\"lines\":[{{\"sku\":\"SKU-000042\",\"quantity\":2}}]}}'\
         \n  curl -s {web}/v1/routes {json} \\\
         \n      -d '{{\"orderId\":\"order-7\",\"lines\":[{{\"sku\":\"SKU-000042\",\"quantity\":1}}],\"destination\":{{\"postalCode\":\"10001\"}},\"serviceLevel\":\"GROUND\"}}'\
         \n  curl -s {web}/v1/stats\n\
         \nOver gRPC:\n\
         \n  grpcurl -plaintext localhost:{port} list\
         \n  grpcurl -plaintext -d '{{\"skus\":[\"SKU-000042\"],\"node_ids\":[\"DC-EDISON-NJ\",\"STORE-BOSTON-MA\"],\"group_ids\":[\"EAST\"],\"quantity\":50}}' \\\
         \n      localhost:{port} promised.v1.Availability/GetAvailability\
         \n  grpcurl -plaintext localhost:{port} promised.v1.Admin/GetStats\
         \n  grpcurl -plaintext -d '{{\"limit\":5}}' localhost:{port} promised.v1.Supply/ListRejections\
         \n  curl -s localhost:{}/metrics | grep ^promised_\n\
         \nCtrl-C stops it.\n",
        metrics.port()
    );
}

/// The Memphis 3PL's file, in its codes: item numbers or a GTIN, its warehouse code, cases of
/// 12. The last row names an item its table does not map, to show a rejected line.
const THIRD_PARTY_CSV: &str = "\
sku,node,supply_type,quantity,as_of
MEM-0001,MEM01,on_hand,40,{as_of}
MEM-0002,MEM01,on_hand,5,{as_of}
00012345000424,MEM01,on_hand,12,{as_of}
MEM-9999,MEM01,on_hand,1,{as_of}
";

/// Sends the 3PL's file as a full sync, through the import `promised import` uses.
async fn third_party_sync(target: SocketAddr) -> anyhow::Result<Summary> {
    let as_of = chrono::DateTime::from_timestamp_millis(SystemClock.now_ms())
        .context("the clock is in range")?
        .to_rfc3339();
    let csv = THIRD_PARTY_CSV.replace("{as_of}", &as_of);
    let mut client = client::connect(&format!("http://{target}"), None, None).await?;
    let options = Options {
        source_id: "3PL-MEMPHIS".into(),
        full: true,
        force: false,
        rows_per_call: 1000,
    };
    let input = std::io::Cursor::new(csv.into_bytes());
    Ok(import::run(input, &mut client, &options, &ProgressBar::hidden()).await?)
}

/// What the synthetic feed knows of the demo network.
struct Catalogue {
    skus: usize,
    /// DCs and 3PL warehouses owned by the WMS source.
    fulfilment: Vec<String>,
    /// Stores, owned by the POS source.
    stores: Vec<String>,
}

impl Catalogue {
    fn of(network: &Network, skus: usize) -> Self {
        let ids = |stores: bool| {
            let nodes = network.nodes().iter();
            let nodes = nodes.filter(|n| (n.kind == NodeKind::Store) == stores);
            nodes.map(|n| n.id.clone()).collect()
        };
        let wms = network
            .source("WMS")
            .map(|source| &source.def.owned_node_ids);
        let fulfilment: Vec<String> = ids(false);
        Self {
            skus,
            fulfilment: fulfilment
                .into_iter()
                .filter(|id| wms.is_some_and(|owned| owned.contains(id)))
                .collect(),
            stores: ids(true),
        }
    }
}

fn sku(i: usize) -> String {
    format!("SKU-{i:06}")
}

/// One feed connection per source, each with its own sequence.
struct FeedStream {
    source_id: &'static str,
    seq: u64,
    batches: mpsc::Sender<pb::SupplyBatch>,
}

impl FeedStream {
    async fn open(target: SocketAddr, source_id: &'static str) -> anyhow::Result<Self> {
        let mut client = SupplyClient::connect(format!("http://{target}"))
            .await
            .context("connecting the demo feed")?;
        let (batches, outbound) = mpsc::channel(4);
        let mut acks = client
            .stream_updates(ReceiverStream::new(outbound))
            .await?
            .into_inner();
        tokio::spawn(async move { while let Ok(Some(_)) = acks.message().await {} });
        Ok(Self {
            source_id,
            seq: 0,
            batches,
        })
    }

    async fn send(&mut self, updates: Vec<pb::SupplyUpdate>) -> anyhow::Result<()> {
        if !updates.is_empty() {
            self.seq += 1;
        }
        let batch = pb::SupplyBatch {
            source_id: self.source_id.to_owned(),
            seq: self.seq,
            updates,
        };
        self.batches.send(batch).await.context("feed stream closed")
    }
}

fn update(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    op: pb::UpdateOp,
    quantity: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        sku,
        node_id: node.to_owned(),
        supply_type: supply_type.into(),
        op: op.into(),
        quantity,
        ..Default::default()
    }
}

/// A SET as of now.
fn set(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    quantity: i64,
    now_ms: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        as_of: Some(prost_types::Timestamp {
            seconds: now_ms / 1000,
            nanos: 0,
        }),
        ..update(sku, node, supply_type, pb::UpdateOp::Set, quantity)
    }
}

fn receipt(
    sku: String,
    node: &str,
    supply_type: pb::SupplyType,
    reference: String,
    eta: Day,
    quantity: i64,
    now_ms: i64,
) -> pb::SupplyUpdate {
    pb::SupplyUpdate {
        reference,
        eta: eta.to_string(),
        ..set(sku, node, supply_type, quantity, now_ms)
    }
}

/// How one kind of dated receipt is drawn: its supply type, days until it arrives, its size.
struct Receipts {
    supply_type: pb::SupplyType,
    days: Range<i32>,
    quantities: Range<i64>,
}

/// Inbound ASN lines: due within the week.
const ASNS: Receipts = Receipts {
    supply_type: pb::SupplyType::InTransit,
    days: 1..8,
    quantities: 10..200,
};

/// Open purchase-order lines: due in one to six weeks.
const PO_LINES: Receipts = Receipts {
    supply_type: pb::SupplyType::OnOrder,
    days: 7..46,
    quantities: 100..1000,
};

/// A receipt of `kind` under `reference` at one of `nodes`, arriving on a random day.
fn draw_receipt(
    rng: &mut SmallRng,
    nodes: &[String],
    sku: String,
    reference: String,
    kind: &Receipts,
    now_ms: i64,
) -> pb::SupplyUpdate {
    let today = Day::in_zone(chrono_tz::UTC, now_ms);
    let node = pick(rng, nodes);
    let eta = today.plus(rng.random_range(kind.days.clone()));
    let quantity = rng.random_range(kind.quantities.clone());
    receipt(
        sku,
        node,
        kind.supply_type,
        reference,
        eta,
        quantity,
        now_ms,
    )
}

fn pick<'a>(rng: &mut SmallRng, nodes: &'a [String]) -> &'a str {
    &nodes[rng.random_range(0..nodes.len())]
}

/// Updates for each source, gathered before they are sent.
#[derive(Default)]
struct Round {
    wms: Vec<pb::SupplyUpdate>,
    pos: Vec<pb::SupplyUpdate>,
    erp: Vec<pb::SupplyUpdate>,
}

/// The three demo sources' streams and the random choices they share.
struct Feeds {
    wms: FeedStream,
    pos: FeedStream,
    erp: FeedStream,
    rng: SmallRng,
    catalogue: Catalogue,
    /// Live purchase orders opened so far, for their references.
    live_pos: u64,
}

impl Feeds {
    async fn open(target: SocketAddr, catalogue: Catalogue) -> anyhow::Result<Self> {
        Ok(Self {
            wms: FeedStream::open(target, "WMS").await?,
            pos: FeedStream::open(target, "POS").await?,
            erp: FeedStream::open(target, "ERP").await?,
            rng: SmallRng::seed_from_u64(42),
            catalogue,
            live_pos: 0,
        })
    }

    /// Sends every SKU's starting supply in batches of [`LOAD_BATCH`]; false if stopped.
    async fn load(&mut self, stop: &CancellationToken) -> anyhow::Result<bool> {
        let mut round = Round::default();
        for i in 0..self.catalogue.skus {
            if stop.is_cancelled() {
                return Ok(false);
            }
            self.starting_supply(i, SystemClock.now_ms(), &mut round);
            self.send(&mut round, LOAD_BATCH).await?;
        }
        self.send(&mut round, 0).await?;
        Ok(true)
    }

    /// A SKU's on-hand at a few DCs and stores, and perhaps an ASN and an open PO.
    fn starting_supply(&mut self, i: usize, now_ms: i64, round: &mut Round) {
        let (rng, catalogue) = (&mut self.rng, &self.catalogue);
        for _ in 0..rng.random_range(2..6) {
            let node = pick(rng, &catalogue.fulfilment);
            let quantity = rng.random_range(0..500);
            round
                .wms
                .push(set(sku(i), node, pb::SupplyType::OnHand, quantity, now_ms));
        }
        if rng.random_bool(0.2) {
            let asn = format!("ASN-{i}");
            let nodes = &catalogue.fulfilment;
            round
                .wms
                .push(draw_receipt(rng, nodes, sku(i), asn, &ASNS, now_ms));
        }
        for _ in 0..rng.random_range(0..4) {
            let node = pick(rng, &catalogue.stores);
            let quantity = rng.random_range(0..20);
            round
                .pos
                .push(set(sku(i), node, pb::SupplyType::OnHand, quantity, now_ms));
        }
        if rng.random_bool(0.3) {
            let po = format!("PO-{i}");
            let nodes = &catalogue.fulfilment;
            round
                .erp
                .push(draw_receipt(rng, nodes, sku(i), po, &PO_LINES, now_ms));
        }
    }

    /// One live change: a store count (60 %), a warehouse pick or receipt (30 %; a pick from
    /// an empty position is rejected, as it should be), or a new PO line (10 %).
    fn live_update(&mut self, now_ms: i64, round: &mut Round) {
        let (rng, catalogue) = (&mut self.rng, &self.catalogue);
        let item = sku(rng.random_range(0..catalogue.skus.max(1)));
        match rng.random_range(0..10) {
            0..=5 => {
                let node = pick(rng, &catalogue.stores);
                let quantity = rng.random_range(0..20);
                round
                    .pos
                    .push(set(item, node, pb::SupplyType::OnHand, quantity, now_ms));
            }
            6..=8 => {
                let delta = if rng.random_bool(0.1) {
                    200
                } else {
                    -rng.random_range(1..4)
                };
                let node = pick(rng, &catalogue.fulfilment);
                let op = pb::UpdateOp::Adjust;
                round
                    .wms
                    .push(update(item, node, pb::SupplyType::OnHand, op, delta));
            }
            _ => {
                self.live_pos += 1;
                let po = format!("PO-LIVE-{}", self.live_pos);
                let nodes = &catalogue.fulfilment;
                round
                    .erp
                    .push(draw_receipt(rng, nodes, item, po, &PO_LINES, now_ms));
            }
        }
    }

    /// Sends each source's gathered updates once it has at least `at_least` of them (0 sends
    /// every source, an empty batch being a heartbeat that keeps a quiet source fresh).
    async fn send(&mut self, round: &mut Round, at_least: usize) -> anyhow::Result<()> {
        let streams = [
            (&mut self.wms, &mut round.wms),
            (&mut self.pos, &mut round.pos),
            (&mut self.erp, &mut round.erp),
        ];
        for (stream, updates) in streams {
            if updates.len() >= at_least {
                stream.send(std::mem::take(updates)).await?;
            }
        }
        Ok(())
    }
}

/// Loads the catalogue, then keeps sending `rate` updates a second until stopped.
async fn feed(
    target: SocketAddr,
    catalogue: Catalogue,
    rate: u32,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let skus = catalogue.skus;
    let mut feeds = Feeds::open(target, catalogue).await?;
    let started = std::time::Instant::now();
    if !feeds.load(&stop).await? {
        return Ok(());
    }
    tracing::info!(skus, elapsed = ?started.elapsed(), "demo catalogue sent");
    let per_tick = (rate as usize * TICK.as_millis() as usize / 1000).max(1);
    let mut ticks = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let now_ms = SystemClock.now_ms();
        let mut round = Round::default();
        for _ in 0..per_tick {
            feeds.live_update(now_ms, &mut round);
        }
        feeds.send(&mut round, 0).await?;
    }
}
