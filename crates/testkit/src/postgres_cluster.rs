//! A throwaway PostgreSQL cluster on a free loopback port, as RECIPES.md describes:
//! initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct PostgresCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

#[derive(Debug)]
pub struct ClusterError(pub String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

impl PostgresCluster {
    /// Starts a cluster; the caller stops it with [`PostgresCluster::stop`].
    pub fn start() -> Result<Self, ClusterError> {
        let bin = find_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("conclave-pg.")
            .tempdir_in("/tmp")
            .map_err(|e| ClusterError(format!("temporary directory: {e}")))?
            .keep();
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        run(as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]))?;
        let mut last_error = None;
        // A port found free can be taken before the server binds it: retry on a clash.
        for _ in 0..5 {
            let port = free_port()?;
            let cluster = Self {
                dir: dir.clone(),
                port,
                bin: bin.clone(),
            };
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(err) => last_error = Some(err),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(last_error.unwrap_or_else(|| ClusterError("could not start".into())))
    }

    /// Starts a cluster and a watchdog process that stops and removes it once the process
    /// `owner_pid` has exited (Rust runs no destructors for statics at exit).
    pub fn start_with_watchdog(owner_pid: u32) -> Result<Self, ClusterError> {
        let cluster = Self::start()?;
        let script = format!(
            "while kill -0 {owner_pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf '{dir}'",
            stop = cluster.stop_command(),
            dir = cluster.dir.display()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ClusterError(format!("watchdog: {e}")))?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server of a stopped cluster again, on the same port with the same data.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=300",
            self.port,
            self.dir.display()
        );
        run(as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]))
    }

    /// Stops the server at once (as a crash would: `immediate` mode, no checkpoint),
    /// keeping its files for [`PostgresCluster::start_again`].
    pub fn stop_now(&self) -> Result<(), ClusterError> {
        let status = Command::new("sh")
            .args(["-c", &self.stop_command()])
            .status()
            .map_err(|e| ClusterError(format!("pg_ctl stop: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(ClusterError(format!("pg_ctl stop failed: {status}")))
        }
    }

    /// Stops the server at once and removes its files.
    pub fn stop(self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command()])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn stop_command(&self) -> String {
        let pg_ctl = format!(
            "{} -D '{}' -m immediate stop",
            self.bin.join("pg_ctl").display(),
            self.data_dir().display()
        );
        if is_root() {
            format!("runuser -u postgres -- {pg_ctl} >/dev/null 2>&1")
        } else {
            format!("{pg_ctl} >/dev/null 2>&1")
        }
    }
}

fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            ClusterError(
                "PostgreSQL server binaries not found: install postgresql (or set PG_BIN)".into(),
            )
        })?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| {
        ClusterError("no initdb under /usr/lib/postgresql/*/bin (set PG_BIN)".into())
    })
}

/// initdb refuses to run as root, so root hands it to the `postgres` user. (`id -u` rather
/// than a libc call keeps this crate free of `unsafe`.)
fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|out| out.stdout.starts_with(b"0\n"))
            .unwrap_or(false)
    })
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Result<(), ClusterError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError(format!("{cmd:?}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| ClusterError(format!("no free port: {e}")))
}
