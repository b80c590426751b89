//! Launching the Causeway binary for end-to-end tests.
//!
//! ```no_run
//! use causeway_integration::causeway::{free_port, userlist, CausewayBuilder};
//! let port = free_port().unwrap();
//! let b = CausewayBuilder::new().unwrap();
//! let users = b.write_file("userlist.txt", &userlist(&[("app", "app_pw")])).unwrap();
//! let toml = format!("listen_port = {port}\nauth_file = \"{}\"\n", users.display());
//! let cw = b.start(&toml).unwrap();
//! println!("causeway on {}", cw.port());
//! ```

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::wait::poll_blocking;

/// How long [`CausewayBuilder::start`] waits for the listen port.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bind to port 0, read it, release it).
/// Another process could take it before it is used; fine for tests.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    Ok(l.local_addr()
        .map_err(|e| format!("local_addr: {e}"))?
        .port())
}

/// First port in `from..=to` that can be bound on 127.0.0.1.
pub fn first_free_port(from: u16, to: u16) -> Option<u16> {
    (from..=to).find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// A PgBouncer-style auth file: one `"user" "password"` line per entry.
pub fn userlist(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(u, p)| {
            format!(
                "\"{}\" \"{}\"\n",
                u.replace('"', "\"\""),
                p.replace('"', "\"\"")
            )
        })
        .collect()
}

/// The Causeway binary: `$CAUSEWAY_BIN`, else a `causeway` file in an
/// ancestor of the current executable (test binaries live in
/// `target/<profile>/deps`, `causeway-demo` in `target/<profile>`).
pub fn causeway_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CAUSEWAY_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("CAUSEWAY_BIN={} is not a file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join("causeway"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "causeway binary not found above {} (run `cargo build -p causeway` or set CAUSEWAY_BIN)",
                exe.display()
            )
        })
}

/// Prepares the directory a Causeway process runs in (config, log, and any
/// extra files such as a userlist), then starts it.
#[derive(Debug)]
pub struct CausewayBuilder {
    dir: PathBuf,
    /// Present when `dir` is a temp dir that goes away with the process.
    temp: Option<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    bin: Option<PathBuf>,
}

impl CausewayBuilder {
    /// Uses a fresh temp dir, removed when the process handle is dropped.
    pub fn new() -> Result<Self, String> {
        let temp = tempfile::Builder::new()
            .prefix("causeway-proc-")
            .tempdir()
            .map_err(|e| format!("create temp dir: {e}"))?;
        Ok(CausewayBuilder {
            dir: temp.path().to_path_buf(),
            temp: Some(temp),
            args: Vec::new(),
            envs: Vec::new(),
            bin: None,
        })
    }

    /// Uses (and creates) `dir`, which is kept afterwards (the demo uses this).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Self, String> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("canonicalize {}: {e}", dir.display()))?;
        Ok(CausewayBuilder {
            dir,
            temp: None,
            args: Vec::new(),
            envs: Vec::new(),
            bin: None,
        })
    }

    /// The directory; absolute, so paths in it can go into the config.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` (relative to [`CausewayBuilder::dir`]) and returns its
    /// absolute path.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Extra command-line argument after `--config FILE`.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Extra environment variable (e.g. `RUST_LOG`).
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Binary to run instead of [`causeway_bin`].
    pub fn bin(mut self, p: impl Into<PathBuf>) -> Self {
        self.bin = Some(p.into());
        self
    }

    /// Writes `config_toml` to `causeway.toml` and starts the binary with
    /// `--config`. If the TOML has no top-level `listen_port` (or
    /// `metrics_addr`), a free port is picked and prepended. Waits until the port accepts TCP connections
    /// ([`START_TIMEOUT`]); on failure the error carries the log.
    pub fn start(self, config_toml: &str) -> Result<CausewayProcess, String> {
        let (port, toml) = match top_level_int(config_toml, "listen_port") {
            Some(p) => (
                u16::try_from(p).map_err(|_| format!("listen_port {p} out of range"))?,
                config_toml.to_string(),
            ),
            // Top-level keys must precede the first [table], so prepend.
            None => {
                let p = free_port()?;
                (p, format!("listen_port = {p}\n{config_toml}"))
            }
        };
        // The metrics endpoint defaults to a fixed port (9930), which
        // parallel tests would fight over: give each process its own.
        let (metrics_port, toml) = match top_level_str(&toml, "metrics_addr") {
            Some(a) => (a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()), toml),
            None => {
                let p = free_port()?;
                (Some(p), format!("metrics_addr = \"127.0.0.1:{p}\"\n{toml}"))
            }
        };
        // Connect to 127.0.0.1 unless the config names another IPv4/IPv6
        // literal (0.0.0.0 and :: are reachable via loopback).
        let addr = match top_level_str(&toml, "listen_addr").as_deref() {
            Some(a) if a != "0.0.0.0" && a != "::" && a != "*" => a
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, port))
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], port))),
            _ => SocketAddr::from(([127, 0, 0, 1], port)),
        };

        let config_path = self.write_file("causeway.toml", &toml)?;
        self.launch(&[config_path], port, metrics_port, addr)
    }

    /// Starts the binary with `--config FILE` for each of `files` (any
    /// format, e.g. a PgBouncer `.ini`), then the extra args. `port` is the
    /// one the files or the args (`-p`) set: the builder waits for it on
    /// 127.0.0.1. With `metrics_port`, `--set metrics_addr=127.0.0.1:P` is
    /// added.
    pub fn start_files(
        mut self,
        files: &[PathBuf],
        port: u16,
        metrics_port: Option<u16>,
    ) -> Result<CausewayProcess, String> {
        if let Some(p) = metrics_port {
            self.args.push("--set".into());
            self.args.push(format!("metrics_addr=127.0.0.1:{p}"));
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.launch(files, port, metrics_port, addr)
    }

    fn launch(
        self,
        files: &[PathBuf],
        port: u16,
        metrics_port: Option<u16>,
        addr: SocketAddr,
    ) -> Result<CausewayProcess, String> {
        let config_path = files.first().cloned().unwrap_or_default();
        let log_path = self.dir.join("causeway.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("clone log handle: {e}"))?;
        let bin = match self.bin {
            Some(b) => b,
            None => causeway_bin()?,
        };
        let child = Command::new(&bin)
            .args(
                files
                    .iter()
                    .flat_map(|f| [std::ffi::OsStr::new("--config"), f.as_os_str()]),
            )
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;

        let mut proc = CausewayProcess {
            child,
            port,
            metrics_port,
            addr,
            dir: self.dir,
            _temp: self.temp,
            config_path,
            log_path,
            exited: None,
        };
        proc.wait_listening(START_TIMEOUT)?;
        Ok(proc)
    }
}

/// A running Causeway. Drop sends SIGTERM, waits up to 3 s, then SIGKILLs.
#[derive(Debug)]
pub struct CausewayProcess {
    child: Child,
    port: u16,
    metrics_port: Option<u16>,
    addr: SocketAddr,
    dir: PathBuf,
    // Removed only after Drop has stopped the process.
    _temp: Option<tempfile::TempDir>,
    config_path: PathBuf,
    log_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl CausewayProcess {
    /// `CausewayBuilder::new()?.start(config_toml)`.
    pub fn start(config_toml: &str) -> Result<CausewayProcess, String> {
        CausewayBuilder::new()?.start(config_toml)
    }

    pub fn builder() -> Result<CausewayBuilder, String> {
        CausewayBuilder::new()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Port of the Prometheus endpoint (None if `metrics_addr` was set
    /// empty, i.e. disabled).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Address the harness connects to (listen_addr, or 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// stdout + stderr so far.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Replaces the config file (e.g. before `signal(libc::SIGHUP)`).
    pub fn rewrite_config(&self, config_toml: &str) -> Result<(), String> {
        std::fs::write(&self.config_path, config_toml)
            .map_err(|e| format!("write {}: {e}", self.config_path.display()))
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`, `libc::SIGINT`).
    pub fn signal(&self, sig: libc::c_int) -> Result<(), String> {
        if self.exited.is_some() {
            return Err("causeway already exited".into());
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|e| e.to_string())?;
        // SAFETY: plain syscall on our own child, which has not been reaped
        // yet (so the pid cannot have been reused).
        if unsafe { libc::kill(pid, sig) } != 0 {
            return Err(format!(
                "kill({pid}, {sig}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        poll_blocking(timeout, "causeway exited", || self.try_wait())
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let what = format!("{needle:?} in the causeway log");
        poll_blocking(timeout, &what, || self.log_contents().contains(needle))
            .map_err(|e| format!("{e}:\n{}", self.log_contents()))
    }

    /// SIGTERM, wait up to 3 s, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(3)).is_err() {
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
            }
        }
        self.exited
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = self.addr;
        // Done when it listens (Ok) or has exited (Err, no point waiting).
        let outcome = poll_blocking(timeout, "causeway listening", || {
            if let Some(st) = self.try_wait() {
                return Some(Err(st));
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_ok()
                .then_some(Ok(()))
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(st)) => Err(format!(
                "causeway exited ({st}) before listening on {addr}; log:\n{}",
                self.log_contents()
            )),
            Err(_) => {
                let log = self.log_contents();
                self.stop();
                Err(format!(
                    "causeway not listening on {addr} after {timeout:?}; log:\n{log}"
                ))
            }
        }
    }
}

impl Drop for CausewayProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::io::stderr().flush();
    }
}

/// Value of a top-level `key = <int>` line (before the first `[table]`).
fn top_level_int(toml: &str, key: &str) -> Option<i64> {
    top_level_raw(toml, key)?.parse().ok()
}

/// Value of a top-level `key = "string"` line (before the first `[table]`).
fn top_level_str(toml: &str, key: &str) -> Option<String> {
    let raw = top_level_raw(toml, key)?;
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))?;
    Some(inner.to_string())
}

/// Minimal line scanner, enough for the configs tests write: avoids a TOML
/// dependency just to find the port.
fn top_level_raw<'a>(toml: &'a str, key: &str) -> Option<&'a str> {
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            return None;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            // Drop a trailing comment (values we look for contain no '#').
            let v = v.split('#').next().unwrap_or("").trim();
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_top_level_keys_only() {
        let t = "listen_addr = \"127.0.0.1\"\nlisten_port = 6432 # c\n[databases.app]\nport = 1\n";
        assert_eq!(top_level_int(t, "listen_port"), Some(6432));
        assert_eq!(
            top_level_str(t, "listen_addr").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(top_level_int(t, "port"), None);
        assert_eq!(top_level_int("[x]\nlisten_port = 1\n", "listen_port"), None);
    }

    #[test]
    fn userlist_format() {
        assert_eq!(
            userlist(&[("app", "app_pw"), ("a\"b", "p")]),
            "\"app\" \"app_pw\"\n\"a\"\"b\" \"p\"\n"
        );
    }
}
