//! The service binary in a child process, for what only the real process shows: a kill -9 at
//! any point, its memory under load.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::redis::free_port;

/// `promised serve` in a child process, killed and reaped when dropped.
pub struct Binary {
    process: Process,
    pub grpc_addr: SocketAddr,
    /// Where its Prometheus metrics are scraped.
    pub metrics_addr: SocketAddr,
    pub channel: Channel,
}

/// A child process that is killed and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Binary {
    /// Starts `promised serve` with `args` on free loopback ports, and waits until its
    /// feeds are served (with Redis: until it has recovered).
    pub async fn start(args: &[&str]) -> Binary {
        let grpc_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let process = Command::new(env!("CARGO_BIN_EXE_promised"))
            .args(["serve", "--insecure-no-auth"])
            .args(["--grpc-addr", &grpc_addr.to_string()])
            .args(["--metrics-addr", &metrics_addr.to_string()])
            .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Process)
            .expect("service binary starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(channel) = serving(grpc_addr).await {
                return Binary {
                    process,
                    grpc_addr,
                    metrics_addr,
                    channel,
                };
            }
            assert!(Instant::now() < deadline, "service did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// SIGTERM, then waits for the process to exit: the graceful shutdown an orchestrator asks
    /// for.
    pub async fn terminate(mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.expect("kill runs").success(), "SIGTERM sent");
        tokio::task::spawn_blocking(move || self.process.0.wait().expect("process reaped"))
            .await
            .expect("waited")
    }

    /// SIGKILL: no shutdown, no final snapshot.
    pub fn kill(self) {
        drop(self);
    }
}

/// A channel to the server at `addr` once it reports its feeds SERVING.
async fn serving(addr: SocketAddr) -> Option<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .ok()?;
    let request = HealthCheckRequest {
        service: "promised.v1.Supply".into(),
    };
    let reply = HealthClient::new(channel.clone())
        .check(request)
        .await
        .ok()?;
    (reply.into_inner().status() == ServingStatus::Serving).then_some(channel)
}
