//! Processes of a run: where they run (CPU pinning with `taskset`), child processes that are
//! stopped when dropped, the readiness line of our own server children, and CPU time read
//! from `/proc`. Linux only.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// What a server child prints on stdout once it accepts connections: `READY <addr>`.
pub const READY: &str = "READY";

/// How long a child may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopped child may take to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A memory figure of a process's `/proc/<pid>/status` (`VmRSS`, resident now; `VmHWM`, its
/// peak), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in the status of process {pid}"))?;
    Ok(kib * 1024)
}

/// A port nothing listens on right now, on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

/// Which CPUs the servers (targets and their datastores) and the load generator run on.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `taskset -c` list for every server process; `None` leaves them unpinned.
    pub servers: Option<String>,
    /// `taskset -c` list for the generator itself.
    pub generator: Option<String>,
}

impl Placement {
    /// Servers on the first half of the CPUs, the generator on the rest, when there are at
    /// least two CPUs and `taskset` exists; otherwise nothing is pinned.
    pub fn split(pin: bool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let taskset = Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !pin || cpus < 2 || !taskset {
            return Self::default();
        }
        let half = cpus / 2;
        let range = |from: usize, to: usize| {
            if from == to {
                from.to_string()
            } else {
                format!("{from}-{to}")
            }
        };
        Self {
            servers: Some(range(0, half - 1)),
            generator: Some(range(half, cpus - 1)),
        }
    }

    pub fn describe(&self) -> String {
        match (&self.servers, &self.generator) {
            (Some(servers), Some(generator)) => {
                format!("servers and their datastores on CPU {servers}, load generator on CPU {generator} (taskset)")
            }
            _ => "not pinned".to_owned(),
        }
    }

    /// A command for a server process, started under `taskset` when pinned; its children
    /// (PostgreSQL backends, for one) inherit the CPU set.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.servers {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Pins every thread of this process to the generator's CPUs. Call it before starting the
    /// async runtime, so that its threads inherit the set and size themselves to it.
    pub fn pin_generator(&self) -> anyhow::Result<()> {
        let Some(cpus) = &self.generator else {
            return Ok(());
        };
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .context("running taskset")?;
        if !status.success() {
            bail!("taskset could not pin the load generator to CPU {cpus}");
        }
        Ok(())
    }
}

/// A child process, stopped when dropped: our server children by closing their stdin (then
/// killed after a grace period), others killed at once.
pub struct Process {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Process {
    /// Starts `command`; dropping the process kills it at once (for datastores, whose data
    /// is thrown away).
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(Self::adopt(name, child))
    }

    fn adopt(name: &str, mut child: Child) -> Self {
        let stdin = child.stdin.take();
        Self {
            name: name.to_owned(),
            child,
            stdin,
        }
    }

    /// Starts one of our own server subcommands and waits for its `READY <addr>` line.
    pub fn spawn_server(name: &str, mut command: Command) -> anyhow::Result<(Self, SocketAddr)> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{name}: no stdout"))?;
        let process = Self::adopt(name, child);
        let (lines, ready) = mpsc::channel();
        // Reads until the child exits, so that a later print never meets a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("{name} did not report {READY} within {READY_TIMEOUT:?}");
            }
            let line = ready
                .recv_timeout(left)
                .map_err(|_| anyhow!("{name} did not report {READY} within {READY_TIMEOUT:?}"))?;
            if let Some(addr) = line.strip_prefix(READY) {
                let addr = addr.trim().parse().context("the child's address")?;
                return Ok((process, addr));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Our server children stop when their stdin closes; give them a moment to drain.
        if let Some(stdin) = self.stdin.take() {
            drop(stdin);
            let deadline = Instant::now() + EXIT_GRACE;
            while Instant::now() < deadline && self.running() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resolves when stdin reaches end of file (the parent closed it or died), or on SIGTERM or
/// SIGINT: how our server children know to stop.
pub async fn parent_gone() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let eof = async move { while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {} };
    tokio::select! {
        _ = eof => {}
        _ = promised::server::shutdown_signal() => {}
    }
}

/// Prints the readiness line the parent waits for.
pub fn announce(addr: SocketAddr) {
    println!("{READY} {addr}");
}

/// The effective user id of this process, from `/proc/self/status`.
pub fn effective_uid() -> anyhow::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .ok_or_else(|| anyhow!("no effective uid in /proc/self/status"))
}

/// Clock ticks per second of `/proc/*/stat` CPU times.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `(parent pid, user + system ticks of all threads)` of a process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything; fields follow the last `)`.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// Ticks of every process in the trees under `roots`.
fn tree_ticks(roots: &[u32]) -> HashMap<u32, u64> {
    let mut all: HashMap<u32, (u32, u64)> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_str().and_then(|s| s.parse().ok());
            if let Some(pid) = pid {
                if let Some(stat) = stat(pid) {
                    all.insert(pid, stat);
                }
            }
        }
    }
    let mut members: HashMap<u32, u64> = HashMap::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    // A process tree is finite; the visited check bounds the walk by the number of processes.
    while let Some(pid) = frontier.pop() {
        let Some(&(_, ticks)) = all.get(&pid) else {
            continue;
        };
        if members.insert(pid, ticks).is_none() {
            frontier.extend(
                all.iter()
                    .filter(|(_, (ppid, _))| *ppid == pid)
                    .map(|(child, _)| *child),
            );
        }
    }
    members
}

/// Seconds of CPU this process has used so far (all threads, not its children).
pub fn own_cpu_seconds() -> f64 {
    stat(std::process::id()).map_or(0.0, |(_, ticks)| ticks as f64 / ticks_per_second())
}

/// CPU time used by named groups of process trees between [`CpuMeter::start`] and
/// [`CpuMeter::stop`].
pub struct CpuMeter {
    groups: Vec<(String, Vec<u32>)>,
    before: Vec<HashMap<u32, u64>>,
}

impl CpuMeter {
    pub fn start(groups: Vec<(String, Vec<u32>)>) -> Self {
        let before = groups.iter().map(|(_, roots)| tree_ticks(roots)).collect();
        Self { groups, before }
    }

    /// Seconds of CPU each group used since the start.
    pub fn stop(self) -> BTreeMap<String, f64> {
        let per_second = ticks_per_second();
        self.groups
            .iter()
            .zip(&self.before)
            .map(|((name, roots), before)| {
                let ticks: u64 = tree_ticks(roots)
                    .iter()
                    .map(|(pid, now)| now.saturating_sub(before.get(pid).copied().unwrap_or(0)))
                    .sum();
                (name.clone(), ticks as f64 / per_second)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_figure_is_read_in_bytes_and_a_missing_one_is_an_error() {
        let pid = std::process::id();
        let resident = status_bytes(pid, "VmRSS").expect("VmRSS");
        let peak = status_bytes(pid, "VmHWM").expect("VmHWM");
        assert!(resident > 0 && resident.is_multiple_of(1024), "{resident}");
        assert!(peak >= resident, "{peak} < {resident}");
        // A prefix of a field is not the field.
        assert!(status_bytes(pid, "VmR").is_err());
    }
}
