//! Private datastores on free loopback ports, in temporary directories removed at the end: a
//! `redis-server` per Redis user, and a PostgreSQL cluster for the PostgreSQL peer. The
//! machine's own services on the default ports are never used.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::process::{effective_uid, free_port, Placement, Process};

/// Durability of every Redis a run starts (the service's journal and the Redis peer).
pub const REDIS_DURABILITY: &str = "appendonly yes, appendfsync everysec: each write is in \
     the append-only file (write(2)) before Redis replies, fsync'd once a second; no RDB saves";

/// Durability of the PostgreSQL peer's cluster.
pub const POSTGRES_DURABILITY: &str = "fsync=off, synchronous_commit on: a commit returns \
     after its WAL is written (write(2)), never waits for a flush";

/// Where the PostgreSQL server binaries may be given explicitly.
pub const ENV_PG_BIN: &str = "PROMISED_LOAD_PG_BIN";

/// A directory under the system temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("promised-load-{}-{name}", std::process::id()));
        // A leftover of a killed run with the same pid is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of our own.
pub struct RedisServer {
    port: u16,
    process: Process,
    _dir: TempDir,
}

impl RedisServer {
    pub fn start(name: &str, placement: &Placement) -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = TempDir::new(&format!("{name}-{port}"))?;
        let mut command = placement.command("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let process = Process::spawn(name, command)
            .context("is redis-server installed? (Debian: apt-get install redis-server)")?;
        let server = Self {
            port,
            process,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            if Instant::now() > deadline {
                bail!("redis-server did not answer on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn answers(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
            .is_ok()
    }
}

/// A PostgreSQL cluster of our own: `initdb` in a temporary directory, started with `pg_ctl`
/// on a free loopback port, stopped when dropped. As root (PostgreSQL refuses to run as root)
/// its commands run as the `postgres` user, or `nobody`.
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    placement: Placement,
    /// Whether `pg_ctl start` ran, so that drop stops the cluster.
    started: bool,
    postmaster: u32,
    _dir: TempDir,
}

impl Postgres {
    pub fn start(placement: &Placement) -> anyhow::Result<Self> {
        let bin = server_binaries()?;
        let port = free_port()?;
        let dir = TempDir::new(&format!("postgres-{port}"))?;
        let run_as = if effective_uid()? == 0 {
            let (uid, gid) = unprivileged_user()?;
            std::os::unix::fs::chown(&dir.0, Some(uid), Some(gid))
                .context("handing the PostgreSQL directory to its user")?;
            Some((uid, gid))
        } else {
            None
        };
        let mut postgres = Self {
            port,
            bin,
            data: dir.0.join("data"),
            run_as,
            placement: placement.clone(),
            started: false,
            postmaster: 0,
            _dir: dir,
        };
        let data = postgres.data.clone();
        let mut initdb = postgres.tool("initdb");
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            postgres._dir.0.display()
        );
        let mut start = postgres.tool("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(postgres._dir.0.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        postgres.started = true;
        run(start, "pg_ctl start")?;
        let pid_file = data.join("postmaster.pid");
        postgres.postmaster = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse().ok())
            .ok_or_else(|| anyhow!("no pid in {}", pid_file.display()))?;
        Ok(postgres)
    }

    /// A libpq-style connection string for tokio-postgres, over TCP on loopback.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The postmaster; its backends are its children.
    pub fn pid(&self) -> u32 {
        self.postmaster
    }

    fn tool(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.run_as {
            Some((uid, gid)) => {
                let mut command = self.placement.command("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(program);
                command
            }
            None => self.placement.command(program),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "20", "stop"]);
        if let Err(error) = run(stop, "pg_ctl stop") {
            eprintln!("warning: {error:#}");
        }
    }
}

/// Runs a set-up command to completion, with its output in the error when it fails.
fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what} ({command:?})"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The directory holding `initdb` and `pg_ctl`: `$PROMISED_LOAD_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else the `PATH`.
pub fn server_binaries() -> anyhow::Result<PathBuf> {
    let usable = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os(ENV_PG_BIN).map(PathBuf::from) {
        if usable(&dir) {
            return Ok(dir);
        }
        bail!("{ENV_PG_BIN}={} holds no initdb and pg_ctl", dir.display());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| usable(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| usable(dir));
    on_path.ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under \
             /usr/lib/postgresql/*/bin or on the PATH: install them (Debian: \
             apt-get install postgresql) or set {ENV_PG_BIN}"
        )
    })
}

/// The uid and gid of `postgres`, else `nobody`, from `/etc/passwd`.
fn unprivileged_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("/etc/passwd")?;
    let find = |wanted: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, uid, gid, ..] if *name == wanted => {
                    Some((uid.parse().ok()?, gid.parse().ok()?))
                }
                _ => None,
            }
        })
    };
    find("postgres").or_else(|| find("nobody")).ok_or_else(|| {
        anyhow!("running as root and neither `postgres` nor `nobody` exists to run PostgreSQL as")
    })
}
