//! The embedded TURN server (`huddle-turn`): the `[turn]` table of the
//! configuration file, the matching flags and environment variables, and
//! starting it beside the SFU. Ports, limits and firewall advice:
//! `docs/operations.md`.

use anyhow::Context;
use clap::Args;
use huddle_turn::driver::{self, TurnAddrs, TurnHandle};
use huddle_turn::{PeerPolicy, RelayConfig, TurnLimits};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The realm clients see.
const REALM: &str = "huddle";

/// One layer of the embedded TURN server's settings, every key optional:
/// the `[turn]` table of the TOML file, and the flags (each with its
/// environment variable).
///
/// ```toml
/// [turn]
/// listen = "0.0.0.0:3478"
/// tls_listen = "0.0.0.0:443"
/// tls_cert = "/etc/huddle/turn.pem"
/// tls_key = "/etc/huddle/turn.key"
/// host = "turn.example.org"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct TurnLayer {
    /// Run the embedded TURN server on this address, UDP and TCP (the same
    /// port) [default: off].
    #[arg(long = "turn-listen", env = "HUDDLE_TURN_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TURN over TLS on this address too (443 gets through most firewalls);
    /// needs --turn-tls-cert and --turn-tls-key.
    #[arg(
        long = "turn-tls-listen",
        env = "HUDDLE_TURN_TLS_LISTEN",
        value_name = "ADDR"
    )]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for TURN over TLS.
    #[arg(
        long = "turn-tls-cert",
        env = "HUDDLE_TURN_TLS_CERT",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TURN over TLS.
    #[arg(
        long = "turn-tls-key",
        env = "HUDDLE_TURN_TLS_KEY",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,
    /// Host name or IP clients reach the TURN server at, in the URLs they
    /// are given (the TLS certificate's name for `turns:`) [default: the
    /// media_public IP, else the listen IP].
    #[arg(long = "turn-host", env = "HUDDLE_TURN_HOST", value_name = "HOST")]
    pub host: Option<String>,
    /// IP address relay sockets bind to [default: the listen IP].
    #[arg(
        long = "turn-relay-ip",
        env = "HUDDLE_TURN_RELAY_IP",
        value_name = "IP"
    )]
    pub relay_ip: Option<IpAddr>,
    /// Allocations at once, in all [default: 1000].
    #[arg(
        long = "turn-max-allocations",
        env = "HUDDLE_TURN_MAX_ALLOCATIONS",
        value_name = "N"
    )]
    pub max_allocations: Option<usize>,
    /// Allocations at once per participant [default: 16].
    #[arg(
        long = "turn-max-allocations-per-participant",
        env = "HUDDLE_TURN_MAX_ALLOCATIONS_PER_PARTICIPANT",
        value_name = "N"
    )]
    pub max_allocations_per_participant: Option<usize>,
    /// Bitrate one allocation may relay, both ways together, in kbit/s
    /// [default: 20000].
    #[arg(
        long = "turn-max-bitrate-kbps",
        env = "HUDDLE_TURN_MAX_BITRATE_KBPS",
        value_name = "KBPS"
    )]
    pub max_bitrate_kbps: Option<u64>,
}

impl TurnLayer {
    /// Apply this layer's keys over `turn`.
    pub fn apply(&self, turn: &mut EmbeddedTurn) {
        if let Some(v) = self.listen {
            turn.listen = Some(v);
        }
        if let Some(v) = self.tls_listen {
            turn.tls_listen = Some(v);
        }
        if let Some(v) = &self.tls_cert {
            turn.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            turn.tls_key = Some(v.clone());
        }
        if let Some(v) = &self.host {
            turn.host = Some(v.clone());
        }
        if let Some(v) = self.relay_ip {
            turn.relay_ip = Some(v);
        }
        if let Some(v) = self.max_allocations {
            turn.limits.max_allocations = v;
        }
        if let Some(v) = self.max_allocations_per_participant {
            turn.limits.max_allocations_per_participant = v;
        }
        if let Some(v) = self.max_bitrate_kbps {
            turn.limits.max_bitrate_bps = v.saturating_mul(1000);
        }
    }
}

/// The embedded TURN server's settings, resolved. Off unless `listen` or
/// `tls_listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddedTurn {
    /// UDP and TCP address.
    pub listen: Option<SocketAddr>,
    /// TLS address.
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Host in the URLs handed to clients.
    pub host: Option<String>,
    /// IP relay sockets bind to.
    pub relay_ip: Option<IpAddr>,
    /// Allocation and bitrate limits.
    pub limits: TurnLimits,
}

/// Why the embedded TURN server's settings cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnConfigError {
    /// TLS without a certificate or key, or those without TLS.
    #[error(
        "turn tls_listen needs both tls_cert and tls_key (--turn-tls-cert, --turn-tls-key), \
         and they are only used with tls_listen"
    )]
    TlsIncomplete,
    /// No host to put in the URLs.
    #[error(
        "the embedded TURN server listens on an unspecified address ({0}): set the host \
         clients reach it at (--turn-host, HUDDLE_TURN_HOST or `host` in [turn]) or \
         media_public"
    )]
    NoHost(SocketAddr),
}

impl EmbeddedTurn {
    /// Whether it runs.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.tls_listen.is_some()
    }

    /// Checks what can be checked before anything is bound.
    pub fn validate(&self, media_public: Option<SocketAddr>) -> Result<(), TurnConfigError> {
        let tls_parts = (self.tls_cert.is_some(), self.tls_key.is_some());
        match (self.tls_listen.is_some(), tls_parts) {
            (true, (true, true)) | (false, (false, false)) => {}
            _ => return Err(TurnConfigError::TlsIncomplete),
        }
        if self.enabled() {
            self.host_for(media_public)?;
        }
        Ok(())
    }

    /// The host clients are told.
    fn host_for(&self, media_public: Option<SocketAddr>) -> Result<String, TurnConfigError> {
        if let Some(host) = &self.host {
            return Ok(host.clone());
        }
        let ip = match media_public {
            Some(public) => public.ip(),
            None => {
                let Some(listen) = self.listen.or(self.tls_listen) else {
                    return Ok(String::new());
                };
                if listen.ip().is_unspecified() {
                    return Err(TurnConfigError::NoHost(listen));
                }
                listen.ip()
            }
        };
        Ok(match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        })
    }

    /// The URLs clients are given for a server listening on `addrs`.
    pub fn urls(
        &self,
        addrs: TurnAddrs,
        media_public: Option<SocketAddr>,
    ) -> Result<Vec<String>, TurnConfigError> {
        let host = self.host_for(media_public)?;
        let mut urls = Vec::new();
        if let Some(udp) = addrs.udp {
            urls.push(format!("turn:{host}:{}?transport=udp", udp.port()));
        }
        if let Some(tcp) = addrs.tcp {
            urls.push(format!("turn:{host}:{}?transport=tcp", tcp.port()));
        }
        if let Some(tls) = addrs.tls {
            urls.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
        }
        Ok(urls)
    }
}

/// Starts the embedded TURN server relaying to the SFU's media addresses
/// (`sfu_addrs`, bound; clients know them as `media_public` + worker index
/// when that is set) with credentials made with `secret`.
pub async fn start(
    turn: &EmbeddedTurn,
    secret: &str,
    sfu_addrs: &[SocketAddr],
    media_public: Option<SocketAddr>,
) -> anyhow::Result<TurnHandle> {
    let peers = PeerPolicy::new(sfu_addrs.iter().enumerate().map(|(i, &bound)| {
        let advertised = media_public
            .map(|p| SocketAddr::new(p.ip(), p.port().wrapping_add(i as u16)))
            .unwrap_or(bound);
        (advertised, bound)
    }));
    let tls = match (turn.tls_listen, &turn.tls_cert, &turn.tls_key) {
        (Some(addr), Some(cert), Some(key)) => Some((
            addr,
            huddle_turn::tls::server_config(cert, key).context("TURN over TLS")?,
        )),
        _ => None,
    };
    let handle = driver::start(driver::TurnConfig {
        relay: RelayConfig {
            realm: REALM.to_owned(),
            secret: secret.to_owned(),
            peers,
            limits: turn.limits.clone(),
        },
        listen: turn.listen,
        tls,
        relay_ip: turn.relay_ip,
    })
    .await
    .with_context(|| {
        format!(
            "cannot open the embedded TURN server's sockets (udp and tcp {:?}, tls {:?})",
            turn.listen, turn.tls_listen
        )
    })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn urls_name_the_host_clients_reach() {
        let turn = EmbeddedTurn {
            listen: Some(a("0.0.0.0:3478")),
            ..EmbeddedTurn::default()
        };
        let addrs = TurnAddrs {
            udp: Some(a("0.0.0.0:3478")),
            tcp: Some(a("0.0.0.0:3478")),
            tls: Some(a("0.0.0.0:5349")),
        };
        assert_eq!(
            turn.validate(None),
            Err(TurnConfigError::NoHost(a("0.0.0.0:3478")))
        );
        assert_eq!(
            turn.urls(addrs, Some(a("203.0.113.7:7882"))),
            Ok(vec![
                "turn:203.0.113.7:3478?transport=udp".to_owned(),
                "turn:203.0.113.7:3478?transport=tcp".to_owned(),
                "turns:203.0.113.7:5349?transport=tcp".to_owned(),
            ])
        );
        let named = EmbeddedTurn {
            host: Some("turn.example.org".into()),
            ..turn.clone()
        };
        assert_eq!(
            named.urls(addrs, None).expect("urls")[2],
            "turns:turn.example.org:5349?transport=tcp"
        );
        let v6 = EmbeddedTurn {
            listen: Some(a("[::1]:3478")),
            ..EmbeddedTurn::default()
        };
        assert_eq!(
            v6.urls(
                TurnAddrs {
                    udp: Some(a("[::1]:3478")),
                    ..TurnAddrs::default()
                },
                None
            ),
            Ok(vec!["turn:[::1]:3478?transport=udp".to_owned()])
        );
    }

    #[test]
    fn tls_needs_its_certificate_and_key() {
        let tls = EmbeddedTurn {
            tls_listen: Some(a("127.0.0.1:5349")),
            tls_cert: Some("c.pem".into()),
            ..EmbeddedTurn::default()
        };
        assert_eq!(tls.validate(None), Err(TurnConfigError::TlsIncomplete));
        let stray = EmbeddedTurn {
            tls_key: Some("k.pem".into()),
            ..EmbeddedTurn::default()
        };
        assert_eq!(stray.validate(None), Err(TurnConfigError::TlsIncomplete));
        assert_eq!(EmbeddedTurn::default().validate(None), Ok(()));
    }

    #[test]
    fn layers_set_what_they_name() {
        let mut turn = EmbeddedTurn::default();
        TurnLayer {
            listen: Some(a("127.0.0.1:3478")),
            max_bitrate_kbps: Some(5000),
            max_allocations_per_participant: Some(2),
            ..TurnLayer::default()
        }
        .apply(&mut turn);
        assert!(turn.enabled());
        assert_eq!(turn.limits.max_bitrate_bps, 5_000_000);
        assert_eq!(turn.limits.max_allocations_per_participant, 2);
        assert_eq!(
            turn.limits.max_allocations,
            TurnLimits::default().max_allocations
        );
    }
}
