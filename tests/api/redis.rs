//! A real `redis-server` for one test, on a free loopback port, persisting to a private
//! directory with an fsync'd append-only file so that it can be stopped and started again
//! without losing what it had; in plaintext, or over TLS with an ACL user.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::security::Ca;

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// How it listens and who may log in: `--port`, or `--tls-port` with its files and users.
    listen: Vec<String>,
    url: String,
    /// A client that reaches it (with the CA and the user when it speaks TLS).
    client: redis::Client,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("bound").port()
}

impl RedisServer {
    pub fn start() -> Self {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}/0");
        let client = redis::Client::open(url.as_str()).expect("valid url");
        Self::launch(port, vec!["--port".into(), port.to_string()], url, client)
    }

    /// Over TLS only (a certificate for 127.0.0.1 from `ca`), where the default user is off
    /// and only `user` with `password` may log in.
    pub fn start_tls(ca: &Ca, user: &str, password: &str) -> Self {
        let port = free_port();
        let dir = data_dir(port);
        std::fs::create_dir_all(&dir).expect("redis data directory");
        let issued = ca.issue("127.0.0.1", &["127.0.0.1"]);
        let file = |name: &str, contents: &str| {
            let path = dir.join(name);
            std::fs::write(&path, contents).expect("write");
            path.display().to_string()
        };
        let listen = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("redis.pem", &issued.cert),
            "--tls-key-file".into(),
            file("redis.key", &issued.key),
            "--tls-ca-cert-file".into(),
            file("ca.pem", &ca.pem()),
            "--tls-auth-clients".into(),
            "no".into(),
            "--user".into(),
            "default".into(),
            "off".into(),
            "--user".into(),
            user.into(),
            "on".into(),
            format!(">{password}"),
            "~*".into(),
            "&*".into(),
            "+@all".into(),
        ];
        let url = format!("rediss://127.0.0.1:{port}/0");
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).expect("url");
        let settings = info
            .redis_settings()
            .clone()
            .set_username(user)
            .set_password(password);
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.pem().into_bytes()),
        };
        promised::tls::provider();
        let client = redis::Client::build_with_tls(info.set_redis_settings(settings), certificates)
            .expect("TLS client");
        Self::launch(port, listen, url, client)
    }

    fn launch(port: u16, listen: Vec<String>, url: String, client: redis::Client) -> Self {
        let dir = data_dir(port);
        std::fs::create_dir_all(&dir).expect("redis data directory");
        let mut server = Self {
            port,
            dir,
            child: None,
            listen,
            url,
            client,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Starts the server process (again) and waits until it answers.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.listen)
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (see .ci/run)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        self.client
            .get_connection()
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
            .is_ok()
    }

    /// Kills the server process at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (`STOP`) or continues (`CONT`) the server process: a Redis that hangs, not one
    /// that is gone.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }
}

fn data_dir(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("promised-test-redis-{}-{port}", std::process::id()))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
