//! Server configuration: embedded defaults, an optional TOML file, environment
//! variables and command-line flags, in increasing order of precedence.

use crate::limits::{LimitsLayer, ServerLimits};
use anyhow::Context;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// The secret used when none is configured. Fine on a laptop, never in
/// production: anyone can mint tokens with it. Its use is logged as a warning.
pub const DEV_SECRET: &str = "huddle-development-secret-change-me";

/// Default HTTP (signaling, REST) address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:7880";
/// Default media UDP address.
pub const DEFAULT_MEDIA_UDP: &str = "127.0.0.1:7882";

/// How the server runs.
#[derive(Clone, PartialEq)]
pub struct ServerConfig {
    /// TCP address of the HTTP server (WebSocket signaling and REST). Port 0
    /// picks a free port.
    pub http: SocketAddr,
    /// UDP address of the SFU's single media socket. Port 0 picks a free port.
    pub media_udp: SocketAddr,
    /// Address announced to clients in ICE candidates when it differs from
    /// `media_udp` (behind NAT, or when bound to 0.0.0.0).
    pub media_public: Option<SocketAddr>,
    /// SFU workers: threads that each own a media port and whole rooms.
    /// Worker `i` binds port `media_udp.port() + i` (and announces
    /// `media_public`'s port + `i`), so open that range in the firewall.
    /// Defaults to the number of CPUs.
    pub workers: usize,
    /// HS256 secret access tokens are signed with.
    pub secret: String,
    /// Development mode: `GET /dev/token?room=R&identity=I` mints a token
    /// for anyone who asks (the web client uses it when its URL has no
    /// token). Never in production. Off by default.
    pub dev: bool,
    /// Connection limits and timeouts (`[limits]` in the file).
    pub limits: ServerLimits,
}

/// One SFU worker per CPU the process may use (1 if that is unknown).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 7880)),
            media_udp: SocketAddr::from(([127, 0, 0, 1], 7882)),
            media_public: None,
            workers: default_workers(),
            secret: DEV_SECRET.to_owned(),
            dev: false,
            limits: ServerLimits::default(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("http", &self.http)
            .field("media_udp", &self.media_udp)
            .field("media_public", &self.media_public)
            .field("workers", &self.workers)
            .field("secret", &"<redacted>")
            .field("dev", &self.dev)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ServerConfig {
    /// A configuration for tests: both ports 0 on 127.0.0.1, the given secret.
    pub fn ephemeral(secret: impl Into<String>) -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            media_udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            media_public: None,
            workers: default_workers(),
            secret: secret.into(),
            dev: false,
            limits: ServerLimits::default(),
        }
    }

    /// Whether the embedded development secret is in use.
    pub fn uses_dev_secret(&self) -> bool {
        self.secret == DEV_SECRET
    }

    /// Apply `file` values over `self`, then `overrides` over those.
    pub fn layered(mut self, file: &FileConfig, overrides: &FileConfig) -> Self {
        for layer in [file, overrides] {
            if let Some(v) = layer.http {
                self.http = v;
            }
            if let Some(v) = layer.media_udp {
                self.media_udp = v;
            }
            if let Some(v) = layer.media_public {
                self.media_public = Some(v);
            }
            if let Some(v) = layer.workers {
                self.workers = v.max(1);
            }
            if let Some(v) = &layer.secret {
                self.secret = v.clone();
            }
            if let Some(v) = layer.dev {
                self.dev = v;
            }
            layer.limits.apply(&mut self.limits);
        }
        self
    }
}

/// One layer of configuration, every key optional: the TOML file's shape, and
/// also what flags and environment variables give.
///
/// ```toml
/// http = "0.0.0.0:7880"
/// media_udp = "0.0.0.0:7882"
/// media_public = "203.0.113.7:7882"
/// workers = 4
/// secret = "a long random string"
/// dev = false
///
/// [limits]
/// max_connections_per_ip = 200
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`ServerConfig::http`].
    pub http: Option<SocketAddr>,
    /// See [`ServerConfig::media_udp`].
    pub media_udp: Option<SocketAddr>,
    /// See [`ServerConfig::media_public`].
    pub media_public: Option<SocketAddr>,
    /// See [`ServerConfig::workers`].
    pub workers: Option<usize>,
    /// See [`ServerConfig::secret`].
    pub secret: Option<String>,
    /// See [`ServerConfig::dev`].
    pub dev: Option<bool>,
    /// The `[limits]` table: see [`LimitsLayer`].
    #[serde(default)]
    pub limits: LimitsLayer,
}

impl FileConfig {
    /// Parse TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        toml::from_str(text).context("invalid configuration file")
    }

    /// Read and parse a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_in_order() {
        let file = FileConfig::parse(
            "http = \"0.0.0.0:9000\"\nmedia_udp = \"0.0.0.0:9002\"\nsecret = \"from-file\"\n",
        )
        .expect("parse");
        let flags = FileConfig {
            http: Some("127.0.0.1:1".parse().expect("addr")),
            ..Default::default()
        };
        let c = ServerConfig::default().layered(&file, &flags);
        assert_eq!(c.http.port(), 1);
        assert_eq!(c.media_udp.port(), 9002);
        assert_eq!(c.secret, "from-file");
        assert!(!c.dev, "development mode is off by default");
        assert!(!c.uses_dev_secret());
        let dev = FileConfig::parse("dev = true\n").expect("parse");
        assert!(ServerConfig::default().layered(&dev, &flags).dev);
        let off = FileConfig {
            dev: Some(false),
            ..Default::default()
        };
        assert!(
            !ServerConfig::default().layered(&dev, &off).dev,
            "flag over file"
        );
        assert!(ServerConfig::default().uses_dev_secret());
        assert!(
            FileConfig::parse("htp = \"x\"").is_err(),
            "unknown keys are refused"
        );
    }
}
