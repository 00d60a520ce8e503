//! Server configuration: embedded defaults, an optional TOML file, environment
//! variables and command-line flags, in increasing order of precedence.

use crate::limits::{LimitsLayer, ServerLimits};
use anyhow::Context;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// Lifetime of tokens the server mints for tests and the development
/// token endpoint (`RunningServer::mint_token`, `GET /dev/token`).
pub const TOKEN_TTL_SECS: u64 = 3600;

/// The secret used when none is configured. Fine on a laptop, never in
/// production: anyone can mint tokens with it. The server refuses it unless
/// every listener is on loopback or development mode is on
/// ([`ServerConfig::validate`]), and warns when it is used.
pub const DEV_SECRET: &str = "huddle-development-secret-change-me";

pub use huddle_signaling::auth::MIN_SECRET_BYTES;

/// Why a configuration cannot be served.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The secret is empty (e.g. `HUDDLE_SECRET=` from an unset variable).
    #[error(
        "the token secret is empty (HUDDLE_SECRET, --secret or `secret` in the file): \
         set at least {MIN_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`"
    )]
    EmptySecret,
    /// The secret is shorter than [`MIN_SECRET_BYTES`].
    #[error(
        "the token secret is {0} bytes; at least {MIN_SECRET_BYTES} are required \
         (HS256 needs a 256-bit key): e.g. `openssl rand -hex 32`"
    )]
    ShortSecret(usize),
    /// The built-in development secret with a listener off loopback and
    /// development mode off.
    #[error(
        "the built-in development secret is only allowed when every listener is on \
         loopback or with --dev (http {http}, media_udp {media_udp}): anyone can mint \
         tokens with it; set HUDDLE_SECRET or `secret` in the configuration file"
    )]
    DevSecretExposed {
        /// The HTTP address.
        http: SocketAddr,
        /// The media address.
        media_udp: SocketAddr,
    },
    /// `token_max_lifetime_secs` is 0.
    #[error("token_max_lifetime_secs must be at least 1")]
    ZeroTokenLifetime,
    /// `turn_credential_ttl_secs` is 0: every credential would be born
    /// expired.
    #[error("turn_credential_ttl_secs must be at least 1")]
    ZeroTurnCredentialTtl,
    /// TURN URLs without the secret their credentials are made with.
    #[error(
        "turn_urls need turn_secret (HUDDLE_TURN_SECRET, --turn-secret or `turn_secret`): \
         the secret the TURN server checks credentials with"
    )]
    TurnWithoutSecret,
    /// A TURN URL that is not `turn:` or `turns:` (or `stun:`).
    #[error("turn_urls: {0:?} is not a stun:, turn: or turns: URL")]
    BadTurnUrl(String),
    /// The embedded TURN server's settings (`[turn]`).
    #[error(transparent)]
    Turn(#[from] crate::turn::TurnConfigError),
}

/// Default lifetime of TURN credentials: 24 h.
pub const DEFAULT_TURN_TTL_SECS: u64 = 24 * 3600;

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
    /// ICE over TCP: each worker also listens on TCP at its media address
    /// (the same port numbers as UDP) and announces it, so clients whose
    /// networks block UDP can connect. On by default.
    pub ice_tcp: bool,
    /// TURN servers handed to clients (in `joined`, and in WHIP/WHEP `Link`
    /// headers) with short-lived credentials made with `turn_secret`. None
    /// by default.
    pub turn_urls: Vec<String>,
    /// Secret shared with the TURN server (coturn's `static-auth-secret`
    /// with `use-auth-secret`): credentials are HMACs with it.
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid, in seconds. Default 24 h.
    pub turn_credential_ttl_secs: u64,
    /// The embedded TURN server (`[turn]`): off unless it has a listen
    /// address. Its URLs are handed out with the others, its credentials
    /// made with `turn_secret` (or, without one, a secret drawn at start).
    pub turn: crate::turn::EmbeddedTurn,
    /// HS256 secret access tokens are signed with: at least
    /// [`MIN_SECRET_BYTES`] bytes.
    pub secret: String,
    /// Longest lifetime (`exp` - `iat`) of a token the server accepts, in
    /// seconds; also how long a ban lasts by default. Default 24 h.
    pub token_max_lifetime_secs: u64,
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
            ice_tcp: true,
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_credential_ttl_secs: DEFAULT_TURN_TTL_SECS,
            turn: crate::turn::EmbeddedTurn::default(),
            secret: DEV_SECRET.to_owned(),
            token_max_lifetime_secs: huddle_signaling::auth::DEFAULT_MAX_LIFETIME_SECS,
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
            .field("ice_tcp", &self.ice_tcp)
            .field("turn_urls", &self.turn_urls)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("turn_credential_ttl_secs", &self.turn_credential_ttl_secs)
            .field("turn", &self.turn)
            .field("secret", &"<redacted>")
            .field("token_max_lifetime_secs", &self.token_max_lifetime_secs)
            .field("dev", &self.dev)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ServerConfig {
    /// A configuration for tests: both ports 0 on 127.0.0.1, the given secret
    /// (at least [`MIN_SECRET_BYTES`] bytes, or `start` refuses it).
    pub fn ephemeral(secret: impl Into<String>) -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            media_udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            media_public: None,
            workers: default_workers(),
            ice_tcp: true,
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_credential_ttl_secs: DEFAULT_TURN_TTL_SECS,
            turn: crate::turn::EmbeddedTurn::default(),
            secret: secret.into(),
            token_max_lifetime_secs: huddle_signaling::auth::DEFAULT_MAX_LIFETIME_SECS,
            dev: false,
            limits: ServerLimits::default(),
        }
    }

    /// Whether the embedded development secret is in use.
    pub fn uses_dev_secret(&self) -> bool {
        self.secret == DEV_SECRET
    }

    /// Check the secret alone: not empty, at least [`MIN_SECRET_BYTES`]
    /// bytes. (`huddle-server token` checks this much.)
    pub fn validate_secret(&self) -> Result<(), ConfigError> {
        match self.secret.len() {
            0 => Err(ConfigError::EmptySecret),
            n if n < MIN_SECRET_BYTES => Err(ConfigError::ShortSecret(n)),
            _ => Ok(()),
        }
    }

    /// Whether every listener (HTTP and media) is on a loopback address.
    pub fn loopback_only(&self) -> bool {
        self.http.ip().is_loopback() && self.media_udp.ip().is_loopback()
    }

    /// Check the configuration can be served: the secret passes
    /// [`Self::validate_secret`]; the development secret only with every
    /// listener on loopback or in development mode; a token lifetime of at
    /// least 1 s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_secret()?;
        if self.uses_dev_secret() && !self.dev && !self.loopback_only() {
            return Err(ConfigError::DevSecretExposed {
                http: self.http,
                media_udp: self.media_udp,
            });
        }
        if self.token_max_lifetime_secs == 0 {
            return Err(ConfigError::ZeroTokenLifetime);
        }
        if self.turn_credential_ttl_secs == 0 {
            return Err(ConfigError::ZeroTurnCredentialTtl);
        }
        if let Some(url) = self.turn_urls.iter().find(|u| {
            !["turn:", "turns:", "stun:", "stuns:"]
                .iter()
                .any(|scheme| u.starts_with(scheme))
        }) {
            return Err(ConfigError::BadTurnUrl(url.clone()));
        }
        if !self.turn_urls.is_empty() && self.turn_secret.as_deref().unwrap_or_default().is_empty()
        {
            return Err(ConfigError::TurnWithoutSecret);
        }
        self.turn.validate(self.media_public)?;
        Ok(())
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
            if let Some(v) = layer.ice_tcp {
                self.ice_tcp = v;
            }
            if let Some(v) = &layer.turn_urls {
                self.turn_urls = v.clone();
            }
            if let Some(v) = &layer.turn_secret {
                self.turn_secret = Some(v.clone());
            }
            if let Some(v) = layer.turn_credential_ttl_secs {
                self.turn_credential_ttl_secs = v;
            }
            if let Some(v) = &layer.secret {
                self.secret = v.clone();
            }
            if let Some(v) = layer.token_max_lifetime_secs {
                self.token_max_lifetime_secs = v;
            }
            if let Some(v) = layer.dev {
                self.dev = v;
            }
            layer.limits.apply(&mut self.limits);
            layer.turn.apply(&mut self.turn);
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
/// ice_tcp = true
/// turn_urls = ["turn:turn.example.org:3478?transport=udp"]
/// turn_secret = "the TURN server's static-auth-secret"
/// secret = "at least 32 random bytes, e.g. from openssl rand -hex 32"
/// token_max_lifetime_secs = 86400
/// dev = false
///
/// [limits]
/// max_connections_per_ip = 200
///
/// [turn]
/// listen = "0.0.0.0:3478"
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
    /// See [`ServerConfig::ice_tcp`].
    pub ice_tcp: Option<bool>,
    /// See [`ServerConfig::turn_urls`].
    pub turn_urls: Option<Vec<String>>,
    /// See [`ServerConfig::turn_secret`].
    pub turn_secret: Option<String>,
    /// See [`ServerConfig::turn_credential_ttl_secs`].
    pub turn_credential_ttl_secs: Option<u64>,
    /// See [`ServerConfig::secret`].
    pub secret: Option<String>,
    /// See [`ServerConfig::token_max_lifetime_secs`].
    pub token_max_lifetime_secs: Option<u64>,
    /// See [`ServerConfig::dev`].
    pub dev: Option<bool>,
    /// The `[limits]` table: see [`LimitsLayer`].
    #[serde(default)]
    pub limits: LimitsLayer,
    /// The `[turn]` table (the embedded TURN server): see
    /// [`crate::turn::TurnLayer`].
    #[serde(default)]
    pub turn: crate::turn::TurnLayer,
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
        let c = ServerConfig::default().layered(
            &FileConfig::parse("token_max_lifetime_secs = 600\n").expect("parse"),
            &flags,
        );
        assert_eq!(c.token_max_lifetime_secs, 600);
    }

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn refuses_empty_and_short_secrets() {
        let file = FileConfig::parse("secret = \"\"\n").expect("parse");
        let c = ServerConfig::default().layered(&file, &FileConfig::default());
        assert_eq!(c.validate(), Err(ConfigError::EmptySecret));
        let short = ServerConfig::ephemeral(&GOOD[..31]);
        assert_eq!(short.validate(), Err(ConfigError::ShortSecret(31)));
        assert!(short
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 32"));
        assert_eq!(ServerConfig::ephemeral(GOOD).validate(), Ok(()));
        let mut dev = ServerConfig::ephemeral("");
        dev.dev = true;
        assert_eq!(
            dev.validate(),
            Err(ConfigError::EmptySecret),
            "--dev does not help"
        );
    }

    #[test]
    fn the_development_secret_only_on_loopback_or_in_development_mode() {
        let local = ServerConfig::default();
        assert!(local.uses_dev_secret());
        assert_eq!(local.validate(), Ok(()), "the defaults: 127.0.0.1 only");
        let v6 = ServerConfig {
            http: "[::1]:7880".parse().expect("addr"),
            media_udp: "[::1]:7882".parse().expect("addr"),
            ..ServerConfig::default()
        };
        assert_eq!(v6.validate(), Ok(()));
        for (http, media) in [
            ("0.0.0.0:7880", "127.0.0.1:7882"),
            ("127.0.0.1:7880", "0.0.0.0:7882"),
            ("192.0.2.1:7880", "192.0.2.1:7882"),
        ] {
            let mut c = ServerConfig {
                http: http.parse().expect("addr"),
                media_udp: media.parse().expect("addr"),
                ..ServerConfig::default()
            };
            assert!(
                matches!(c.validate(), Err(ConfigError::DevSecretExposed { .. })),
                "{http} {media}"
            );
            c.dev = true;
            assert_eq!(c.validate(), Ok(()), "--dev allows it: {http} {media}");
            c.dev = false;
            c.secret = GOOD.into();
            assert_eq!(
                c.validate(),
                Ok(()),
                "an own secret anywhere: {http} {media}"
            );
        }
        let mut zero = ServerConfig::ephemeral(GOOD);
        zero.token_max_lifetime_secs = 0;
        assert_eq!(zero.validate(), Err(ConfigError::ZeroTokenLifetime));
        let no_ttl = ServerConfig {
            turn_credential_ttl_secs: 0,
            ..ServerConfig::ephemeral("x".repeat(MIN_SECRET_BYTES))
        };
        assert_eq!(no_ttl.validate(), Err(ConfigError::ZeroTurnCredentialTtl));
    }

    #[test]
    fn turn_needs_its_secret_and_turn_urls() {
        let mut c = ServerConfig::ephemeral("x".repeat(MIN_SECRET_BYTES));
        c.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        assert_eq!(c.validate(), Err(ConfigError::TurnWithoutSecret));
        c.turn_secret = Some(String::new());
        assert_eq!(c.validate(), Err(ConfigError::TurnWithoutSecret));
        c.turn_secret = Some("shared".into());
        assert_eq!(c.validate(), Ok(()));
        c.turn_urls.push("http://example.org".into());
        assert_eq!(
            c.validate(),
            Err(ConfigError::BadTurnUrl("http://example.org".into()))
        );
        let file: FileConfig = toml::from_str(
            "turn_urls = [\"turns:t.example.org:443?transport=tcp\"]\nturn_secret = \"s\"\nturn_credential_ttl_secs = 600\n",
        )
        .expect("toml");
        let c = ServerConfig::default().layered(&file, &FileConfig::default());
        assert_eq!(
            c.turn_urls,
            vec!["turns:t.example.org:443?transport=tcp".to_owned()]
        );
        assert_eq!(c.turn_secret.as_deref(), Some("s"));
        assert_eq!(c.turn_credential_ttl_secs, 600);
        assert!(
            !format!("{c:?}").contains("\"s\""),
            "the TURN secret is not logged"
        );
    }
}
