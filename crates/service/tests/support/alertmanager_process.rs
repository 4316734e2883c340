//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, for the
//! tests that send alerts through it to the service.

use std::path::Path;

/// An Alertmanager child process, killed when the test ends however it ends.
pub struct AlertmanagerProcess {
    child: std::process::Child,
    pub url: String,
    log: std::path::PathBuf,
}

impl AlertmanagerProcess {
    pub fn start(work_dir: &Path, webhook_url: &str) -> AlertmanagerProcess {
        let config = work_dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: lim\n  group_by: ['alertname']\n  group_wait: 100ms\n  \
                 group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: lim\n    webhook_configs:\n      - url: '{webhook_url}'\n        \
                 send_resolved: true\n"
            ),
        )
        .expect("write alertmanager.yml");
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let log = work_dir.join("alertmanager.log");
        let log_file = std::fs::File::create(&log).expect("create alertmanager.log");
        let child = std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", work_dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            // A single instance: no gossip port to find and hold.
            .arg("--cluster.listen-address=")
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `prometheus-alertmanager` ({error}); this test needs Debian's \
                     `prometheus-alertmanager` package (scripts/test.sh installs it)"
                )
            });
        AlertmanagerProcess {
            child,
            url: format!("http://{address}"),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AlertmanagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
