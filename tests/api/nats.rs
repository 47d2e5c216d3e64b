//! Real `nats-server`s with JetStream for one test, on free loopback ports, each with a private
//! store directory that JetStream syncs on every write (so a `kill -9` loses nothing it
//! acknowledged): one server, or a cluster of three whose members a test can kill and start
//! again. The server is the static build `scripts/setup` installs into `target/ci-venv` (2.10
//! or newer: the operating system's 2.9 has no `sync_interval`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::redis::free_port;

/// One `nats-server` process, alone or a member of a [`NatsCluster`].
pub struct NatsServer {
    pub port: u16,
    /// The cluster route port of a member.
    route: Option<u16>,
    name: String,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// While the process is killed, its ports held by the test, so that no other test's
    /// server takes them before it starts again.
    held: Vec<TcpListener>,
}

/// Where `scripts/setup` puts the server.
fn binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/nats-server");
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup",
        path.display()
    );
    path
}

impl NatsServer {
    /// A single server with JetStream.
    pub fn start() -> Self {
        let mut server = Self::configured(free_port(), "solo", None, None);
        server.resume();
        server
    }

    fn configured(port: u16, name: &str, route: Option<u16>, cluster: Option<String>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("promised-test-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nats store directory");
        let config = dir.join("nats.conf");
        let store = dir.join("store");
        let text = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
             jetstream {{ store_dir: \"{}\", sync_interval: always }}\n{}",
            store.display(),
            cluster.unwrap_or_default()
        );
        std::fs::write(&config, text).expect("write nats.conf");
        Self {
            port,
            route,
            name: name.to_owned(),
            dir,
            config,
            child: None,
            held: Vec::new(),
        }
    }

    /// The member's server name, as JetStream names a stream's leader.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, with what its store kept, on the ports it had) and waits
    /// until it accepts connections.
    pub fn resume(&mut self) {
        self.held.clear();
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            // A server that cannot bind its ports exits: say so rather than wait.
            let exited = child.try_wait().expect("nats-server status");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "nats-server {} did not listen on port {} ({exited:?})",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Kills the process at once (`kill -9`), and holds its ports until it is resumed.
    pub fn kill(&mut self) {
        self.stop();
        self.held = [Some(self.port), self.route]
            .into_iter()
            .flatten()
            .map(|port| {
                TcpListener::bind(("127.0.0.1", port)).expect("hold a killed server's port")
            })
            .collect();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until JetStream answers for the account (in a cluster: a meta leader is elected,
    /// which on a loaded machine has taken over 20 seconds).
    pub async fn jetstream_ready(&self) -> async_nats::jetstream::Context {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(client) = async_nats::connect(self.url()).await {
                let context = async_nats::jetstream::new(client);
                if context.query_account().await.is_ok() {
                    return context;
                }
            }
            assert!(
                Instant::now() < deadline,
                "JetStream on {} never became ready",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three clustered servers with JetStream: streams with three replicas survive any one of
/// them being killed.
pub struct NatsCluster {
    pub members: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start() -> Self {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let mut members: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, route))| {
                let cluster = format!(
                    "cluster {{ name: promised-test, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    routes.join(", ")
                );
                NatsServer::configured(*port, &format!("n{}", i + 1), Some(*route), Some(cluster))
            })
            .collect();
        for member in &mut members {
            member.resume();
        }
        Self { members }
    }

    /// Every member's URL: a client's server list (`async_nats::connect(&urls[..])`).
    pub fn urls(&self) -> Vec<String> {
        self.members.iter().map(NatsServer::url).collect()
    }
}

/// A relay between the service and a server that, once armed, cuts the connection at the
/// first JetStream delivery from the server and drops it: the server counts it delivered, the
/// client never reads it, as when the member a client is connected to dies with messages in
/// flight. The client then connects again through the relay.
pub struct DeliveryCutter {
    pub port: u16,
    armed: Arc<AtomicBool>,
    cut: Arc<Notify>,
    relay: tokio::task::JoinHandle<()>,
}

impl DeliveryCutter {
    pub async fn start(server_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let port = listener.local_addr().expect("bound").port();
        let (armed, cut) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        let relay = tokio::spawn({
            let (armed, cut) = (armed.clone(), cut.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await
                    else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, armed.clone(), cut.clone()));
                }
            }
        });
        Self {
            port,
            armed,
            cut,
            relay,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Cuts at the next delivery.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until the armed cut has dropped a delivery.
    pub async fn cut(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.cut.notified())
            .await
            .expect("a delivery cut");
    }
}

impl Drop for DeliveryCutter {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Copies bytes both ways until either side closes or, armed, a read from the server holds a
/// delivery (its reply subject is a JetStream ack): that read is dropped with both sockets.
async fn relay(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    armed: Arc<AtomicBool>,
    cut: Arc<Notify>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = tokio::io::copy(&mut from_client, &mut to_server);
    let downstream = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let read = from_server.read(&mut buf).await?;
            if read == 0 {
                return std::io::Result::Ok(());
            }
            let bytes = &buf[..read];
            let delivery = bytes.windows(8).any(|w| w == b"$JS.ACK.");
            if delivery && armed.swap(false, Ordering::SeqCst) {
                cut.notify_one();
                return Ok(());
            }
            to_client.write_all(bytes).await?;
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

/// The cluster keeps a three-replica stream through the loss of one member: what the broker
/// failover tests rely on.
#[tokio::test]
async fn a_replicated_stream_survives_a_killed_member() {
    use async_nats::jetstream::stream;

    let mut cluster = NatsCluster::start();
    let context = cluster.members[0].jetstream_ready().await;
    context
        .create_stream(stream::Config {
            name: "HARNESS".into(),
            subjects: vec!["harness.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("create a replicated stream");
    // A client that knows every member, as a feed or publisher would be configured.
    let client = async_nats::connect(&cluster.urls()[..])
        .await
        .expect("connect");
    let writer = async_nats::jetstream::new(client);
    let publish = |n: u32| {
        let writer = writer.clone();
        async move {
            let pending = writer
                .publish("harness.one", n.to_string().into())
                .await
                .ok()?;
            pending.await.ok()
        }
    };
    publish(1).await.expect("acknowledged");

    cluster.members[0].kill();
    // The stream's leader may have been the killed member: a new one is elected.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ack = loop {
        if let Some(ack) = publish(2).await {
            break ack;
        }
        assert!(Instant::now() < deadline, "no stream leader after the kill");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ack.sequence, 2, "both messages kept, in order");

    cluster.members[0].resume();
    let rejoined = cluster.members[0].jetstream_ready().await;
    let mut stream = rejoined.get_stream("HARNESS").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
}

/// A lone server keeps what it acknowledged through `kill -9` (its store syncs every write):
/// what the exactly-once tests need of the broker.
#[tokio::test]
async fn a_server_keeps_acknowledged_messages_through_a_kill() {
    use async_nats::jetstream::stream;

    let mut server = NatsServer::start();
    let context = server.jetstream_ready().await;
    context
        .create_stream(stream::Config {
            name: "HARNESS".into(),
            subjects: vec!["harness.>".into()],
            ..Default::default()
        })
        .await
        .expect("create a stream");
    for n in 0..10 {
        let pending = context
            .publish("harness.one", n.to_string().into())
            .await
            .expect("publish");
        pending.await.expect("acknowledged");
    }
    server.kill();
    server.resume();
    let context = server.jetstream_ready().await;
    let mut stream = context.get_stream("HARNESS").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 10);
}
