//! Command line: `huddle-server [serve]` and `huddle-server token ...`.
//!
//! The server's flags go before or after `serve` (after wins); `token` takes
//! only what signing needs (`--secret`, `--config`, `--token-max-lifetime`),
//! so its `--help` shows the token's options, not the server's.

use crate::config::{FileConfig, ServerConfig};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// huddle server: WebSocket signaling, REST API and SFU in one process.
#[derive(Debug, Parser)]
#[command(name = "huddle-server", version, about)]
pub struct Cli {
    /// Configuration (flags, environment, file), for `serve`.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The configuration the command runs with: flags > environment > file >
    /// defaults, and flags after the subcommand over those before it.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        match &self.command {
            None => self.config.resolve(),
            Some(Command::Serve(after)) => self.config.resolve_with(&after.layer(), &after.keys),
            Some(Command::Token(token)) => {
                self.config.resolve_with(&token.keys.layer(), &token.keys)
            }
        }
    }
}

/// What signing a token needs, each also readable from the environment:
/// shared by `serve` and `token`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyArgs {
    /// TOML configuration file (keys: http, media_udp, media_public, workers, ice_tcp,
    /// turn_urls, turn_secret, turn_credential_ttl_secs, secret,
    /// token_max_lifetime_secs, dev; [limits] and [turn] tables).
    #[arg(long, env = "HUDDLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Token signing secret, at least 32 bytes (`openssl rand -hex 32`). Prefer
    /// HUDDLE_SECRET or the file: flags show in `ps`. Without one, a built-in
    /// development secret, refused unless every listener is on loopback or --dev.
    #[arg(
        long,
        env = "HUDDLE_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<String>,
    /// Longest token lifetime (exp - iat) accepted, in seconds; also how long
    /// a ban lasts by default [default: 86400, 24 h].
    #[arg(
        long,
        env = "HUDDLE_TOKEN_MAX_LIFETIME",
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub token_max_lifetime: Option<u64>,
}

impl KeyArgs {
    /// These flags as a configuration layer.
    fn layer(&self) -> FileConfig {
        FileConfig {
            secret: self.secret.clone(),
            token_max_lifetime_secs: self.token_max_lifetime,
            ..FileConfig::default()
        }
    }
}

/// The server's configuration flags, each also readable from the
/// environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// The configuration file, the secret and token lifetimes.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// HTTP listen address (signaling WebSocket and REST) [default: 127.0.0.1:7880].
    #[arg(long, env = "HUDDLE_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Media UDP address of the first SFU worker; worker i uses port + i
    /// [default: 127.0.0.1:7882].
    #[arg(long, env = "HUDDLE_MEDIA_UDP", value_name = "ADDR")]
    pub media_udp: Option<SocketAddr>,
    /// Media address announced to clients, if different (NAT, 0.0.0.0 bind).
    #[arg(long, env = "HUDDLE_MEDIA_PUBLIC", value_name = "ADDR")]
    pub media_public: Option<SocketAddr>,
    /// SFU workers, each a thread with its own media port owning whole
    /// rooms [default: the number of CPUs].
    #[arg(long, env = "HUDDLE_WORKERS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// ICE over TCP on the media ports (the same numbers as UDP), for
    /// clients whose networks block UDP. `--ice-tcp=false` turns it off
    /// [default: true].
    #[arg(
        long,
        env = "HUDDLE_ICE_TCP",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub ice_tcp: Option<bool>,
    /// A TURN server clients are told to use, with credentials of their
    /// own made with `--turn-secret` (`turn:host:3478?transport=udp`,
    /// `turns:host:443?transport=tcp`); may be given more than once.
    #[arg(
        long = "turn-url",
        env = "HUDDLE_TURN_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub turn_urls: Vec<String>,
    /// The secret the TURN server checks credentials with (coturn:
    /// `use-auth-secret`, `static-auth-secret`).
    #[arg(long, env = "HUDDLE_TURN_SECRET", value_name = "SECRET")]
    pub turn_secret: Option<String>,
    /// How long TURN credentials stay valid, in seconds [default: 86400].
    #[arg(
        long = "turn-credential-ttl",
        env = "HUDDLE_TURN_CREDENTIAL_TTL",
        value_name = "SECS"
    )]
    pub turn_credential_ttl_secs: Option<u64>,
    /// Development mode: serve `GET /dev/token?room=R&identity=I`, which mints
    /// a token for anyone (the web client uses it). Never in production.
    /// `--dev` alone means true; `--dev=false` turns it off [default: false].
    #[arg(
        long,
        env = "HUDDLE_DEV",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub dev: Option<bool>,
    /// Connection limits and timeouts.
    #[command(flatten)]
    pub limits: crate::limits::LimitsLayer,
    /// The embedded TURN server.
    #[command(flatten)]
    pub turn: crate::turn::TurnLayer,
}

impl ConfigArgs {
    /// Resolve the configuration: flags > environment > file > defaults.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        self.resolve_with(&FileConfig::default(), &KeyArgs::default())
    }

    /// [`ConfigArgs::resolve`], with `later` (flags given after a
    /// subcommand) over these flags, and its `keys.config` file, when given,
    /// instead of this one's.
    fn resolve_with(
        &self,
        later: &FileConfig,
        later_keys: &KeyArgs,
    ) -> anyhow::Result<ServerConfig> {
        let file = match later_keys.config.as_ref().or(self.keys.config.as_ref()) {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Ok(ServerConfig::default()
            .layered(&file, &self.layer())
            .layered(later, &FileConfig::default()))
    }

    /// These flags as a configuration layer.
    fn layer(&self) -> FileConfig {
        FileConfig {
            http: self.http,
            media_udp: self.media_udp,
            media_public: self.media_public,
            workers: self.workers.map(usize::from),
            ice_tcp: self.ice_tcp,
            turn_urls: (!self.turn_urls.is_empty()).then(|| self.turn_urls.clone()),
            turn_secret: self.turn_secret.clone(),
            turn_credential_ttl_secs: self.turn_credential_ttl_secs,
            dev: self.dev,
            limits: self.limits.clone(),
            turn: self.turn.clone(),
            ..self.keys.layer()
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ConfigArgs>),
    /// Print a signed access token.
    Token(TokenArgs),
}

/// `huddle-server token` arguments.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Room the token grants (required unless --admin).
    #[arg(long)]
    pub room: Option<String>,
    /// Participant identity (the token's `sub`).
    #[arg(long)]
    pub identity: String,
    /// Optional display name.
    #[arg(long)]
    pub name: Option<String>,
    /// May publish media.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub publish: bool,
    /// May receive media.
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub subscribe: bool,
    /// Lifetime in seconds (at most the server's token_max_lifetime_secs).
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Token id (`jti`), to be able to revoke this one token later
    /// (`POST /api/bans {"jti": ...}`).
    #[arg(long)]
    pub jti: Option<String>,
    /// Grant the REST admin API.
    #[arg(long)]
    pub admin: bool,
    /// The room is end-to-end encrypted (docs/e2ee.md): clients must take
    /// part, WHIP/WHEP sessions are refused. Every token of a room must
    /// agree. Neither the calling crate nor the web client takes part yet.
    #[arg(long)]
    pub e2ee: bool,
    /// The secret to sign with, as the server reads it.
    #[command(flatten)]
    pub keys: KeyArgs,
}

impl TokenArgs {
    /// Mint the token these arguments describe, signed with `config`'s
    /// secret; refused when the server would refuse the secret or the
    /// token's lifetime.
    pub fn mint_for(&self, config: &ServerConfig) -> anyhow::Result<String> {
        config.validate_secret()?;
        if self.ttl > config.token_max_lifetime_secs {
            anyhow::bail!(
                "--ttl {} exceeds the longest token lifetime the server accepts ({} s, \
                 token_max_lifetime_secs)",
                self.ttl,
                config.token_max_lifetime_secs
            );
        }
        self.mint(&config.secret)
    }

    /// Mint the token these arguments describe.
    pub fn mint(&self, secret: &str) -> anyhow::Result<String> {
        let mut claims = match (&self.room, self.admin) {
            (Some(room), _) => huddle_signaling::Claims::new(
                self.identity.clone(),
                room.clone(),
                self.publish,
                self.subscribe,
                self.ttl,
            ),
            (None, true) => huddle_signaling::Claims::admin(self.identity.clone(), self.ttl),
            (None, false) => anyhow::bail!("--room is required (or --admin for an admin token)"),
        };
        if self.admin {
            claims.admin = Some(true);
        }
        claims.name = self.name.clone();
        claims.jti = self.jti.clone();
        claims.e2ee = self.e2ee;
        Ok(huddle_signaling::auth::mint(secret, &claims)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// `precedence` sets HUDDLE_* variables, which every parse reads (clap's
    /// `env`): the tests of this module take turns.
    static ENV: Mutex<()> = Mutex::new(());

    fn env_lock() -> MutexGuard<'static, ()> {
        ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn parses_defaults_and_subcommands() {
        let _env = env_lock();
        let cli = Cli::try_parse_from(["huddle-server"]).expect("parse");
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from([
            "huddle-server",
            "token",
            "--room",
            "r",
            "--identity",
            "alice",
            "--publish",
            "false",
        ])
        .expect("parse");
        let Some(Command::Token(t)) = cli.command else {
            panic!("not token")
        };
        assert!(!t.publish && t.subscribe && !t.admin && t.ttl == 3600);
        // (No assertion on `dev` without the flag: `precedence` sets HUDDLE_DEV
        // while this test may run.)

        let cli = Cli::try_parse_from(["huddle-server", "serve", "--dev"]).expect("parse");
        assert!(matches!(cli.command, Some(Command::Serve(ref a)) if a.dev == Some(true)));
        let cli = Cli::try_parse_from(["huddle-server", "--dev", "serve"]).expect("parse");
        assert_eq!(
            cli.config.dev,
            Some(true),
            "--dev does not swallow the subcommand"
        );
        assert!(matches!(cli.command, Some(Command::Serve(_))));
        let cli = Cli::try_parse_from(["huddle-server", "serve", "--dev=false"]).expect("parse");
        assert!(matches!(cli.command, Some(Command::Serve(ref a)) if a.dev == Some(false)));
        let token = t.mint("s").expect("mint");
        let claims = huddle_signaling::auth::verify("s", &token).expect("verify");
        assert_eq!((claims.room.as_str(), claims.sub.as_str()), ("r", "alice"));
        assert!(!claims.publish && claims.subscribe);

        let cli =
            Cli::try_parse_from(["huddle-server", "token", "--identity", "ops"]).expect("parse");
        let Some(Command::Token(t)) = cli.command else {
            panic!("not token")
        };
        assert!(t.mint("s").is_err(), "room required without --admin");
        let cli = Cli::try_parse_from(["huddle-server", "token", "--identity", "ops", "--admin"])
            .expect("parse");
        let Some(Command::Token(t)) = cli.command else {
            panic!("not token")
        };
        let claims =
            huddle_signaling::auth::verify("s", &t.mint("s").expect("mint")).expect("verify");
        assert!(claims.is_admin());
    }

    #[test]
    fn token_lifetime_and_id() {
        let _env = env_lock();
        let cli = Cli::try_parse_from([
            "huddle-server",
            "token",
            "--room",
            "r",
            "--identity",
            "a",
            "--ttl",
            "700",
            "--jti",
            "t-1",
            "--token-max-lifetime",
            "600",
            "--secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .expect("parse");
        assert!(Cli::try_parse_from(["huddle-server", "--token-max-lifetime", "0"]).is_err());
        let mut config = cli.resolve().expect("resolve");
        let Some(Command::Token(mut t)) = cli.command else {
            panic!("not token")
        };
        assert_eq!(t.keys.token_max_lifetime, Some(600));
        assert_eq!(config.token_max_lifetime_secs, 600);
        let e = t.mint_for(&config).expect_err("ttl over the maximum");
        assert!(e.to_string().contains("--ttl 700 exceeds"), "{e}");
        t.ttl = 600;
        let token = t.mint_for(&config).expect("mint");
        let claims = huddle_signaling::auth::verify(&config.secret, &token).expect("verify");
        assert_eq!(claims.jti.as_deref(), Some("t-1"));
        assert!(!claims.e2ee);
        t.e2ee = true;
        let token = t.mint_for(&config).expect("mint");
        let claims = huddle_signaling::auth::verify(&config.secret, &token).expect("verify");
        assert!(claims.e2ee, "--e2ee");
        config.secret = "short".into();
        assert!(
            t.mint_for(&config).is_err(),
            "a secret the server would refuse"
        );
    }

    #[test]
    fn token_takes_only_what_signing_needs() {
        let _env = env_lock();
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("token")
            .expect("token subcommand")
            .render_long_help()
            .to_string();
        for wanted in ["--identity", "--room", "--ttl", "--secret", "--config"] {
            assert!(help.contains(wanted), "token help lacks {wanted}:\n{help}");
        }
        for server_only in ["--http", "--media-udp", "--workers", "--max-connections"] {
            assert!(
                !help.contains(server_only),
                "token help shows the server's {server_only}:\n{help}"
            );
        }
        let e = Cli::try_parse_from([
            "huddle-server",
            "token",
            "--identity",
            "a",
            "--http",
            "127.0.0.1:9",
        ])
        .expect_err("a server flag after token");
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
        let cli = Cli::try_parse_from(["huddle-server", "serve", "--http", "127.0.0.1:9"])
            .expect("server flags after serve");
        assert!(
            matches!(cli.command, Some(Command::Serve(ref a)) if a.http.map(|h| h.port()) == Some(9))
        );
    }

    /// The only test setting the environment (flags > env > file > defaults).
    #[test]
    fn precedence() {
        let _env = env_lock();
        let dir = std::env::temp_dir().join(format!("huddle-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("huddle.toml");
        std::fs::write(
            &file,
            "http = \"127.0.0.1:1001\"\nmedia_udp = \"127.0.0.1:1002\"\nsecret = \"file\"\ndev = true\n\
             [limits]\nmax_connections_per_ip = 9\nmax_pending_per_ip = 7\n",
        )
        .expect("write");
        std::env::set_var("HUDDLE_CONFIG", &file);
        std::env::set_var("HUDDLE_MEDIA_UDP", "127.0.0.1:2002");
        std::env::set_var("HUDDLE_SECRET", "env");
        std::env::set_var("HUDDLE_DEV", "0");
        std::env::set_var("HUDDLE_MAX_CONNECTIONS_PER_IP", "11");
        let cli = Cli::try_parse_from(["huddle-server", "--http", "127.0.0.1:3001", "serve"])
            .expect("parse");
        let before_serve = cli.resolve().expect("resolve");
        let cli =
            Cli::try_parse_from(["huddle-server", "serve", "--secret", "flag"]).expect("parse");
        let c = cli.resolve().expect("resolve");
        std::env::set_var("HUDDLE_DEV", "1");
        let cli = Cli::try_parse_from(["huddle-server"]).expect("parse");
        let dev_from_env = cli.resolve().expect("resolve").dev;
        std::env::remove_var("HUDDLE_CONFIG");
        std::env::remove_var("HUDDLE_MEDIA_UDP");
        std::env::remove_var("HUDDLE_SECRET");
        std::env::remove_var("HUDDLE_DEV");
        std::env::remove_var("HUDDLE_MAX_CONNECTIONS_PER_IP");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(c.http.port(), 1001, "file over default");
        assert_eq!(before_serve.http.port(), 3001, "a flag before `serve`");
        assert_eq!(c.media_udp.port(), 2002, "env over file");
        assert_eq!(c.secret, "flag", "flag over env");
        assert!(c.media_public.is_none());
        assert!(!c.dev, "HUDDLE_DEV=0 over the file's dev = true");
        assert!(dev_from_env, "HUDDLE_DEV=1");
        let limits = &c.limits.signaling;
        assert_eq!(
            limits.max_connections_per_ip, 11,
            "env over the [limits] table"
        );
        assert_eq!(
            limits.max_pending_per_ip, 7,
            "the [limits] table over defaults"
        );
    }
}
