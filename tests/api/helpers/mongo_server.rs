//! A SecantusDB server a test owns: started, stopped and started again on the same port and
//! storage directory (WiredTiger keeps the data, users and change history across the restart),
//! for the fault tests. The program comes from `KEEL_TEST_SECANTUSD`, which
//! `scripts/mongo-test-server` exports beside `KEEL_TEST_MONGODB_URL`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::support::eventually;

/// The variable naming the `secantusd-py` program.
pub const PROGRAM_VARIABLE: &str = "KEEL_TEST_SECANTUSD";

/// The user the tests provision when they want credentials in the URL.
pub const USER: &str = "keel";

pub struct TestMongoServer {
    program: PathBuf,
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    auth: bool,
}

impl TestMongoServer {
    /// A server on a free port with an empty storage directory, not started yet. Panics when
    /// `KEEL_TEST_SECANTUSD` is unset: the fault tests cannot run without a server to stop.
    pub fn new() -> TestMongoServer {
        let program = std::env::var_os(PROGRAM_VARIABLE).unwrap_or_else(|| {
            panic!(
                "{PROGRAM_VARIABLE} is not set: the fault tests start and stop a SecantusDB \
                 of their own (scripts/mongo-test-server cargo test --test api -- --ignored)"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a storage directory");
        std::fs::write(dir.path().join("secantusd.toml"), "").expect("an empty configuration");
        TestMongoServer {
            program: PathBuf::from(program),
            port,
            dir,
            child: None,
            auth: false,
        }
    }

    /// Creates `USER` with `password` (a root user of the server), then requires
    /// authentication from the next start on. Leaves the server stopped.
    pub async fn provision_user(&mut self, password: &str) {
        self.start().await;
        let client = self.client(&self.url_without_credentials("admin")).await;
        client
            .database("admin")
            .run_command(bson::doc! {"createUser": USER, "pwd": password, "roles": ["root"]})
            .await
            .expect("createUser");
        client.shutdown().await;
        self.stop().await;
        self.auth = true;
    }

    /// `mongodb://127.0.0.1:PORT/DATABASE?directConnection=true`.
    pub fn url_without_credentials(&self, database: &str) -> String {
        format!(
            "mongodb://127.0.0.1:{}/{database}?directConnection=true",
            self.port
        )
    }

    /// The URL with `USER:password` (checked against the `admin` database).
    pub fn url_with_credentials(&self, database: &str, password: &str) -> String {
        format!(
            "mongodb://{USER}:{password}@127.0.0.1:{}/{database}?directConnection=true&authSource=admin",
            self.port
        )
    }

    /// Starts the server and waits until it answers `hello` as a writable primary.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let mut command = Command::new(&self.program);
        command
            .arg("--config")
            .arg(self.dir.path().join("secantusd.toml"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.path().join("data"))
            .args(["--log-level", "WARNING"])
            .env("TMPDIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if self.auth {
            command.arg("--auth");
        }
        self.child = Some(command.spawn().expect("starting secantusd-py"));
        let url = self.url_without_credentials("admin");
        eventually("the test MongoDB server to answer", || async {
            let client = self.client(&url).await;
            let hello = client
                .database("admin")
                .run_command(bson::doc! {"hello": 1})
                .await
                .ok();
            client.shutdown().await;
            hello.filter(|h| h.get_bool("isWritablePrimary").unwrap_or(false))
        })
        .await;
    }

    /// Stops the server (SIGTERM) and waits until the process has exited, so a restart can
    /// open the same storage directory.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let pid = child.id().expect("a running server") as libc::pid_t;
        // SAFETY: kill(2) on the child we spawned and still own.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
            Ok(status) => {
                status.expect("waiting for the server");
            }
            Err(_) => {
                child.kill().await.expect("killing the server");
            }
        }
    }

    async fn client(&self, url: &str) -> mongodb::Client {
        let mut options = mongodb::options::ClientOptions::parse(url)
            .await
            .expect("a MongoDB URL");
        options.server_selection_timeout = Some(Duration::from_millis(500));
        options.connect_timeout = Some(Duration::from_millis(500));
        mongodb::Client::with_options(options).expect("a MongoDB client")
    }
}
