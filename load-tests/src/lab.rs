//! The lab: the targets of a run started side by side on loopback, each a child process of
//! this binary with its own datastore, loaded with the same catalogue, and stopped when the
//! lab is dropped.
//!
//! - promised: `promised-load serve-promised`, journaling to its own `redis-server`;
//! - the floor: the gRPC health check on that same server;
//! - the Redis peer: `promised-load serve-peer --backend redis` on its own `redis-server`;
//! - the PostgreSQL peer: `promised-load serve-peer --backend postgres` on its own cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context};
use promised::grpc::pb;
use promised::grpc::pb::availability_client::AvailabilityClient;
use serde::Serialize;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::catalogue::{sku, Network};
use crate::datastores::{Postgres, RedisServer, POSTGRES_DURABILITY, REDIS_DURABILITY};
use crate::feed::FeedTarget;
use crate::peer::pb as peer;
use crate::peer::pb::stock_client::StockClient;
use crate::process::{Placement, Process};
use crate::service::{self, Feeds, ServiceSettings};
use crate::workload::{Client, TargetKind};

/// SKUs per peer `Load` call.
const PEER_LOAD_CHUNK: usize = 2_000;

/// SKUs compared across targets after loading.
const CHECKED_SKUS: usize = 20;

struct ServiceTarget {
    // Fields drop in order: heartbeats, then the server, then its Redis.
    heartbeats: JoinHandle<()>,
    process: Process,
    redis: RedisServer,
    addr: SocketAddr,
    channels: Vec<Channel>,
    feeds: Arc<Feeds>,
}

impl Drop for ServiceTarget {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

enum Datastore {
    Redis(RedisServer),
    Postgres(Postgres),
}

struct PeerTarget {
    process: Process,
    datastore: Datastore,
    channels: Vec<Channel>,
}

impl PeerTarget {
    fn client(&self) -> StockClient<Channel> {
        StockClient::new(self.channels[0].clone())
    }
}

/// How the lab was set up, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub skus: usize,
    /// Supply updates the service was loaded with.
    pub updates: u64,
    pub load_seconds: f64,
    /// Total units available over the catalogue, the same on every target.
    pub units_available: i64,
}

pub struct Lab {
    pub network: Network,
    connections: usize,
    service: ServiceTarget,
    redis_peer: Option<PeerTarget>,
    postgres_peer: Option<PeerTarget>,
}

/// `connections` HTTP/2 connections to `addr`.
pub async fn connect(addr: SocketAddr, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(connections);
    // Each `connect` opens its own HTTP/2 connection.
    for _ in 0..connections.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(channels)
}

fn server_command(exe: &Path, placement: &Placement, args: &[&str]) -> std::process::Command {
    let mut command = placement.command(exe);
    command.args(args);
    command
}

impl Lab {
    /// Starts the service (always: the floor is on it, and the peers are loaded with what it
    /// answers) and the peers among `targets`.
    pub async fn start(
        exe: &Path,
        placement: &Placement,
        targets: &[TargetKind],
        connections: usize,
        pg_pool: usize,
        settings: &ServiceSettings,
    ) -> anyhow::Result<Self> {
        let network = Network::demo().await?;
        let redis = RedisServer::start("promised-redis", placement)?;
        let redis_url = redis.url();
        let settings = settings.args();
        let mut args = vec!["serve-promised", "--redis-url", &redis_url];
        args.extend(settings.iter().map(String::as_str));
        let (process, addr) =
            Process::spawn_server("promised", server_command(exe, placement, &args))?;
        let channels = connect(addr, connections).await?;
        let feeds = Arc::new(Feeds::default());
        let service = ServiceTarget {
            heartbeats: service::heartbeats(channels[0].clone(), feeds.clone()),
            process,
            redis,
            addr,
            channels,
            feeds,
        };
        let mut lab = Self {
            network,
            connections,
            service,
            redis_peer: None,
            postgres_peer: None,
        };
        if targets.contains(&TargetKind::RedisPeer) {
            let redis = RedisServer::start("peer-redis", placement)?;
            let args = ["serve-peer", "--backend", "redis", "--url", &redis.url()];
            let datastore = Datastore::Redis(redis);
            let peer = lab.peer(exe, placement, TargetKind::RedisPeer, &args, datastore);
            lab.redis_peer = Some(peer.await?);
        }
        if targets.contains(&TargetKind::PostgresPeer) {
            let postgres = Postgres::start(placement)?;
            let pool = pg_pool.to_string();
            let args = [
                "serve-peer",
                "--backend",
                "postgres",
                "--url",
                &postgres.url(),
                "--pool",
                &pool,
            ];
            let datastore = Datastore::Postgres(postgres);
            let peer = lab.peer(exe, placement, TargetKind::PostgresPeer, &args, datastore);
            lab.postgres_peer = Some(peer.await?);
        }
        Ok(lab)
    }

    async fn peer(
        &self,
        exe: &Path,
        placement: &Placement,
        target: TargetKind,
        args: &[&str],
        datastore: Datastore,
    ) -> anyhow::Result<PeerTarget> {
        let command = server_command(exe, placement, args);
        let (process, addr) = Process::spawn_server(target.name(), command)?;
        Ok(PeerTarget {
            process,
            datastore,
            channels: connect(addr, self.connections).await?,
        })
    }

    fn peer_target(&self, target: TargetKind) -> Option<&PeerTarget> {
        match target {
            TargetKind::RedisPeer => self.redis_peer.as_ref(),
            TargetKind::PostgresPeer => self.postgres_peer.as_ref(),
            _ => None,
        }
    }

    fn peers(&self) -> impl Iterator<Item = &PeerTarget> {
        self.redis_peer.iter().chain(&self.postgres_peer)
    }

    /// Loads SKUs `0..skus` into the service through its feed API, reads back the network
    /// availability it computes, loads exactly that into the peers, and checks a sample.
    pub async fn load(&self, skus: usize, seed: u64) -> anyhow::Result<Setup> {
        let started = Instant::now();
        let channel = self.service.channels[0].clone();
        let updates = service::load_catalogue(
            channel.clone(),
            &self.network,
            skus,
            seed,
            self.service.feeds.clone(),
        )
        .await?;
        let atp = service::network_atp(channel, &self.network, skus).await?;
        let stock: Vec<peer::Line> = atp
            .iter()
            .enumerate()
            .map(|(i, &quantity)| peer::Line {
                sku: sku(i),
                quantity,
            })
            .collect();
        for target in self.peers() {
            let mut client = target.client();
            for chunk in stock.chunks(PEER_LOAD_CHUNK) {
                let request = peer::LoadRequest {
                    stock: chunk.to_vec(),
                };
                client.load(request).await.context("loading a peer")?;
            }
        }
        self.check_same_availability(&atp).await?;
        Ok(Setup {
            skus,
            updates,
            load_seconds: started.elapsed().as_secs_f64(),
            units_available: atp.iter().sum(),
        })
    }

    async fn check_same_availability(&self, atp: &[i64]) -> anyhow::Result<()> {
        let sample: Vec<String> = (0..CHECKED_SKUS.min(atp.len())).map(sku).collect();
        let expected = &atp[..sample.len()];
        let request = pb::AvailabilityRequest {
            skus: sample.clone(),
            node_ids: vec![self.network.fulfilment[0].clone()],
            ..Default::default()
        };
        let answer = AvailabilityClient::new(self.service.channels[0].clone())
            .get_availability(request)
            .await?
            .into_inner();
        let service: Vec<i64> = answer.items.iter().map(|i| i.network_atp).collect();
        ensure!(
            service == expected,
            "the service's availability moved while loading"
        );
        for target in self.peers() {
            let request = peer::AvailabilityRequest {
                skus: sample.clone(),
            };
            let answer = target.client().availability(request).await?.into_inner();
            let peer: Vec<i64> = answer.items.iter().map(|i| i.available).collect();
            ensure!(
                peer == expected,
                "{} was loaded with {peer:?}, the service has {expected:?}",
                target.process.name
            );
        }
        Ok(())
    }

    /// The promised server's gRPC address, for callers that open connections of their own.
    pub fn service_addr(&self) -> SocketAddr {
        self.service.addr
    }

    /// The URL of the Redis promised journals to.
    pub fn service_redis_url(&self) -> String {
        self.service.redis.url()
    }

    /// The promised server's process id.
    pub fn service_pid(&self) -> u32 {
        self.service.process.pid()
    }

    /// One client per connection to `target`.
    pub fn clients(&self, target: TargetKind) -> anyhow::Result<Vec<Client>> {
        let channels = match target {
            TargetKind::Floor | TargetKind::Promised => &self.service.channels,
            peer => {
                &self
                    .peer_target(peer)
                    .ok_or_else(|| anyhow!("{} was not started", peer.name()))?
                    .channels
            }
        };
        Ok(channels
            .iter()
            .map(|channel| Client::new(target, channel.clone()))
            .collect())
    }

    pub fn feed(&self) -> FeedTarget {
        FeedTarget {
            channel: self.service.channels[0].clone(),
            feeds: self.service.feeds.clone(),
        }
    }

    /// The server-side processes of `target`, named, for CPU accounting (PostgreSQL's with
    /// its backends).
    pub fn processes(&self, target: TargetKind) -> Vec<(String, Vec<u32>)> {
        let named = |name: &str, pid: u32| (name.to_owned(), vec![pid]);
        match target {
            TargetKind::Floor | TargetKind::Promised => vec![
                named("promised", self.service.process.pid()),
                named("redis (journal)", self.service.redis.pid()),
            ],
            peer => match self.peer_target(peer) {
                Some(target) => {
                    let store = match &target.datastore {
                        Datastore::Redis(redis) => named("redis", redis.pid()),
                        Datastore::Postgres(postgres) => named("postgresql", postgres.pid()),
                    };
                    vec![named(peer.name(), target.process.pid()), store]
                }
                None => Vec::new(),
            },
        }
    }

    /// Each started target's datastore durability, for the report.
    pub fn durability(&self) -> Vec<(String, String)> {
        let mut notes = vec![(
            "promised".to_owned(),
            format!("journal to Redis before every acknowledgement; Redis: {REDIS_DURABILITY}"),
        )];
        if self.redis_peer.is_some() {
            notes.push((
                "redis-peer".to_owned(),
                format!("Redis: {REDIS_DURABILITY}"),
            ));
        }
        if self.postgres_peer.is_some() {
            notes.push((
                "postgres-peer".to_owned(),
                format!("PostgreSQL: {POSTGRES_DURABILITY}"),
            ));
        }
        notes
    }

    /// Whether every server process is still running.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        let processes = std::iter::once(&mut self.service.process)
            .chain(self.redis_peer.iter_mut().map(|p| &mut p.process))
            .chain(self.postgres_peer.iter_mut().map(|p| &mut p.process));
        for process in processes {
            ensure!(process.running(), "{} exited during the run", process.name);
        }
        Ok(())
    }
}
