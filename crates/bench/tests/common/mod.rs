//! Shared by the load tool's integration tests: a `huddle-server` started
//! in this process on free loopback ports, and the tool's view of it.

use huddle_bench::Server;

/// A server running in this test's process.
pub struct InProcess {
    rt: tokio::runtime::Runtime,
    server: huddle_server::RunningServer,
    /// The tool's handle on it.
    pub target: Server,
}

impl InProcess {
    /// Start a server with token secret `secret` and `workers` SFU
    /// workers (the server's default when `None`). With `measure`, the tool
    /// reads this process's CPU as the server's (it includes the tool's own).
    pub fn start(secret: &str, workers: Option<usize>, measure: bool) -> Self {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        let mut config = huddle_server::ServerConfig::ephemeral(secret);
        if let Some(w) = workers {
            config.workers = w;
        }
        let server = rt
            .block_on(huddle_server::start(config))
            .expect("start server");
        let pid = measure.then(std::process::id);
        let target = Server::external(server.ws_url(), secret.to_owned(), pid);
        Self { rt, server, target }
    }

    /// Stop the server.
    pub fn shutdown(self) {
        self.rt.block_on(self.server.shutdown()).expect("shutdown");
    }
}
