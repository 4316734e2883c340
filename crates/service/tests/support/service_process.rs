//! The service binary as an operator runs it, on free loopback ports, for the tests that
//! need a real process (signals, `kill -9`, memory, system calls, the log).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_llm-incident-manager");

/// A port free now, and never handed out before by this process (services started at
/// once must not pick the same one).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// How to start the service.
#[derive(Default)]
pub struct Launch {
    /// TOML written to a file passed with `--config`.
    pub config: Option<String>,
    /// A command the binary runs under (`strace …`); its last argument is followed by the binary.
    pub wrapper: Vec<String>,
    /// The log level (default `warn`).
    pub log_level: Option<String>,
    /// The address the API listeners bind (default `127.0.0.1`).
    pub host: Option<String>,
}

pub struct ServiceProcess {
    child: Child,
    pub base: String,
    pub metrics: String,
    pub http_addr: String,
    /// `http://127.0.0.1:PORT` of the gRPC API.
    pub grpc: String,
    pub log: PathBuf,
    /// The configuration file given with `--config`, if any (rewrite it, then SIGHUP).
    pub config: Option<PathBuf>,
}

impl ServiceProcess {
    /// Starts `serve` in `dir` with only the listen addresses given: the store is the default.
    pub async fn start(dir: &Path) -> ServiceProcess {
        Self::launch(dir, Launch::default()).await
    }

    pub async fn launch(dir: &Path, launch: Launch) -> ServiceProcess {
        // The tests' own HTTP clients need rustls' provider, as the service does.
        llm_incident_manager::tls::install_crypto_provider();
        let (http, metrics, grpc) = (free_port(), free_port(), free_port());
        let host = launch.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let log = dir.join(format!("service-{http}.log"));
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        command
            .current_dir(dir)
            .args(["serve", "--http-addr", &format!("{host}:{http}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
            .args(["--grpc-addr", &format!("{host}:{grpc}")])
            .env("LIM_LOG_LEVEL", launch.log_level.as_deref().unwrap_or("warn"))
            .env_remove("LIM_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"));
        let config = launch.config.map(|config| {
            let path = dir.join(format!("config-{http}.toml"));
            std::fs::write(&path, config).expect("write the configuration");
            command.arg("--config").arg(&path);
            path
        });
        let child = command.spawn().expect("start the binary");
        let server = ServiceProcess {
            child,
            base: format!("http://127.0.0.1:{http}"),
            metrics: format!("http://127.0.0.1:{metrics}/metrics"),
            http_addr: format!("127.0.0.1:{http}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
            log,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(format!("{}/health/ready", server.base)).await
                && response.status() == 200
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become ready; its log:\n{}", server.log_text());
    }

    /// The process id of the child (the wrapper's, when there is one).
    pub fn child_id(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        signal_process(self.child.id(), signal);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the service did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn signal_process(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A test that fails half-way must not leave the service running: its inherited stderr
/// would keep the test command's output pipe open and hang the run.
impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
