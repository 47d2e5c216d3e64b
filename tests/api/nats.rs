//! Real `nats-server`s with JetStream for one test, on free loopback ports, each with a private
//! store directory that JetStream syncs on every write (so a `kill -9` loses nothing it
//! acknowledged): one server, or a cluster of three whose members a test can kill and start
//! again. The server is the static build `scripts/setup` installs into `target/ci-venv` (2.10
//! or newer: the operating system's 2.9 has no `sync_interval`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::free_port;

/// One `nats-server` process, alone or a member of a [`NatsCluster`].
pub struct NatsServer {
    pub port: u16,
    name: String,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
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
        let mut server = Self::configured(free_port(), "solo", None);
        server.resume();
        server
    }

    fn configured(port: u16, name: &str, cluster: Option<String>) -> Self {
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
            name: name.to_owned(),
            dir,
            config,
            child: None,
        }
    }

    /// The member's server name, as JetStream names a stream's leader.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, with what its store kept) and waits until it accepts
    /// connections.
    pub fn resume(&mut self) {
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen on port {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (`kill -9`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until JetStream answers for the account (in a cluster: a meta leader is elected).
    pub async fn jetstream_ready(&self) -> async_nats::jetstream::Context {
        let deadline = Instant::now() + Duration::from_secs(20);
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
        self.kill();
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
                NatsServer::configured(*port, &format!("n{}", i + 1), Some(cluster))
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
