//! A private Postgres cluster for one test: `initdb` into a temp dir, `pg_ctl` start and
//! stop on a free port, never the machine's shared server. Postgres refuses to run as
//! root: as root, the cluster runs as the `postgres` user (`runuser`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::harness::free_port;

/// A cluster in a temp dir; stopped (immediately) on drop.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The user the cluster runs as when it is not this process's user.
    run_as: Option<&'static str>,
    pub port: u16,
}

/// The directory of `initdb` and `pg_ctl`.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/local/bin")];
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        dirs.extend(versions.flatten().map(|v| v.path().join("bin")));
    }
    dirs.into_iter().find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl PrivatePostgres {
    /// A new cluster (not started), or why none can be made here.
    pub fn init() -> Result<PrivatePostgres, String> {
        let bin = bin_dir().ok_or("no initdb/pg_ctl in /usr/local/bin or /usr/lib/postgresql/*/bin")?;
        let root = output(Command::new("id").arg("-u"))?.trim() == "0";
        let run_as = root.then_some("postgres");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if let Some(user) = run_as {
            let uid: u32 =
                output(Command::new("id").args(["-u", user]))?.trim().parse().map_err(|_| "no uid")?;
            let gid: u32 =
                output(Command::new("id").args(["-g", user]))?.trim().parse().map_err(|_| "no gid")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let pg = PrivatePostgres { dir, bin, run_as, port: free_port() };
        let data = pg.data();
        pg.run("initdb", &["-D", path(&data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let exe = self.bin.join(tool);
        match self.run_as {
            None => output(Command::new(exe).args(args)),
            Some(user) => output(Command::new("runuser").args(["-u", user, "--"]).arg(exe).args(args)),
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            path(self.dir.path())
        );
        let log = self.dir.path().join("log");
        let data = self.data();
        self.run("pg_ctl", &["-D", path(&data), "-l", path(&log), "-o", &options, "-w", "-t", "30", "start"])
            .unwrap_or_else(|e| panic!("the private Postgres starts: {e}"));
    }

    /// Stops the server at once (connections are cut).
    pub fn stop(&self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", path(&data), "-m", "immediate", "-w", "stop"]);
    }

    /// The store URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}
