//! [`TurnRelay`]: the embedded TURN server, sans-IO. It runs one
//! `turn-server-proto` [`TurnServer`] per listening socket and puts the
//! policy in front of it:
//!
//! - **Credentials**: a request's USERNAME must be a REST username
//!   ([`crate::credentials`]); its password is recomputed from the secret
//!   and given to the TURN server, which checks the message's integrity.
//!   Expired credentials open no allocation (401). An allocation made
//!   before they expired goes on while its client refreshes it (the
//!   client's credentials are renewed over signaling for its next
//!   allocations, and ending a live call's relay at an expiry would cut its
//!   media); once none needs them, expired users are revoked.
//! - **Peers**: only the SFU's media addresses ([`PeerPolicy`]): refused
//!   with 403 in permissions and channels, dropped in sends, and checked
//!   again on every datagram a relay sends.
//! - **Limits**: allocations in all and per participant, and a bitrate per
//!   allocation ([`TurnLimits`]).
//!
//! A driver (the tokio one in this crate) feeds it datagrams and stream bytes and
//! carries out its [`Output`]s; nothing here reads a clock or a socket.

use crate::credentials::{parse_username, password};
use crate::peers::PeerPolicy;
use crate::screen::{self, Verdict};
use huddle_wire::turn_stream::{self, Frames};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info};
use turn_server_proto::api::{SocketAllocateError, TurnServerApi, TurnServerPollRet};
use turn_server_proto::server::TurnServer;
use turn_server_proto::stun::agent::Transmit;
use turn_server_proto::types::message::ALLOCATE;
use turn_server_proto::types::stun::attribute::ErrorCode;
use turn_server_proto::types::stun::message::{Message, MessageClass};
use turn_server_proto::types::{AddressFamily, TransportType};

/// How often expired users are revoked.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Allocate requests remembered (who asked) until the server asks for a
/// socket for them.
const ASKED_KEPT: usize = 256;
/// Longest a relay may send above its rate: the bucket's depth.
const BURST: Duration = Duration::from_millis(250);
/// TURN servers per listener, each with the clients whose address hashes
/// to it: `turn-server-proto` looks a packet's allocation up among all its
/// clients (measured: 0.1 µs a packet with one allocation, 1.5 µs with
/// 200), so each looks among a 32nd of them.
const SHARDS: usize = 32;
/// Revoked users a server may hold before it is replaced by a fresh one,
/// once no allocation lives on it (`turn-server-proto` cannot remove a
/// user, so its table only grows).
const RECYCLE_AFTER: usize = 1024;

/// How a client reaches a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTransport {
    /// TURN over UDP.
    Udp,
    /// TURN over a stream: TCP, or TLS (decrypted by the driver).
    Tcp,
}

impl ClientTransport {
    fn turn(self) -> TransportType {
        match self {
            ClientTransport::Udp => TransportType::Udp,
            ClientTransport::Tcp => TransportType::Tcp,
        }
    }
}

/// A socket clients reach the TURN server on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// UDP, or a stream.
    pub transport: ClientTransport,
    /// Its local address (as clients' packets name it).
    pub addr: SocketAddr,
}

/// Limits on what clients may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnLimits {
    /// Allocations at once, in all. Default 1000.
    pub max_allocations: usize,
    /// Allocations at once per participant: a participant has two
    /// connections, a browser allocates over UDP, TCP and TLS for each, and
    /// during an ICE restart both generations live. Default 16.
    pub max_allocations_per_participant: usize,
    /// Bits per second one allocation may relay, both ways together;
    /// datagrams above it are dropped. Default 20 Mb/s.
    pub max_bitrate_bps: u64,
}

impl Default for TurnLimits {
    fn default() -> Self {
        TurnLimits {
            max_allocations: 1000,
            max_allocations_per_participant: 16,
            max_bitrate_bps: 20_000_000,
        }
    }
}

/// What a [`TurnRelay`] needs to know.
#[derive(Clone)]
pub struct RelayConfig {
    /// The realm clients see (RFC 8656 long-term credentials).
    pub realm: String,
    /// The secret the signaling service makes credentials with.
    pub secret: String,
    /// Where relayed traffic may go.
    pub peers: PeerPolicy,
    /// Limits.
    pub limits: TurnLimits,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("realm", &self.realm)
            .field("secret", &"<redacted>")
            .field("peers", &self.peers)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A relay socket the driver is to open ([`Output::Allocate`]) and report
/// on with [`TurnRelay::allocated`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// The listener the client came through.
    pub listener: usize,
    /// The client.
    pub client: SocketAddr,
    /// Whether the relay socket is to be IPv6.
    pub ipv6: bool,
    server: usize,
    transport: TransportType,
    listen_addr: SocketAddr,
    allocation_transport: TransportType,
    family: AddressFamily,
    participant: String,
    username: String,
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `data` to `client` through `listener` (a datagram, or bytes on
    /// the client's stream).
    ToClient {
        /// Index of the listener.
        listener: usize,
        /// The client.
        client: SocketAddr,
        /// What to send.
        data: Vec<u8>,
    },
    /// Send `data` from relay socket `relay` to `peer` (an SFU address).
    ToPeer {
        /// The relay socket's address.
        relay: SocketAddr,
        /// Where to.
        peer: SocketAddr,
        /// What to send.
        data: Vec<u8>,
    },
    /// Open a UDP relay socket, then call [`TurnRelay::allocated`].
    Allocate(AllocateRequest),
    /// Close relay socket `relay` (its allocation ended).
    CloseRelay {
        /// The relay socket's address.
        relay: SocketAddr,
    },
    /// Close the stream of `client` on `listener`.
    CloseClient {
        /// Index of the listener.
        listener: usize,
        /// The client.
        client: SocketAddr,
    },
}

/// Counts of what the policy did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Allocations now.
    pub allocations: usize,
    /// Allocations made so far.
    pub allocated: u64,
    /// Requests refused because they named a peer that is not the SFU's,
    /// and sends dropped for that.
    pub refused_peers: u64,
    /// Allocations refused by a limit.
    pub refused_allocations: u64,
    /// Requests whose username had expired.
    pub expired: u64,
    /// Datagrams dropped because an allocation was over its bitrate.
    pub over_rate: u64,
    /// Datagrams relayed, both ways.
    pub relayed: u64,
    /// TURN servers replaced by fresh ones to drop their revoked users.
    pub recycled: u64,
}

/// One allocation's relay.
#[derive(Debug)]
struct Allocation {
    listener: usize,
    server: usize,
    /// The client it relays for.
    client: SocketAddr,
    participant: String,
    /// The credentials it was made with (their user is kept while it
    /// lives).
    username: String,
    bucket: Bucket,
}

/// An authenticated Allocate request, until its server asks for a socket.
#[derive(Debug)]
struct Asked {
    server: usize,
    client: SocketAddr,
    participant: String,
    username: String,
}

/// A token bucket of bytes.
#[derive(Debug)]
struct Bucket {
    bytes_per_s: f64,
    depth: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(bps: u64, now: Instant) -> Self {
        let bytes_per_s = bps as f64 / 8.0;
        let depth = (bytes_per_s * BURST.as_secs_f64()).max(2048.0);
        Bucket {
            bytes_per_s,
            depth,
            tokens: depth,
            at: now,
        }
    }

    /// Whether `len` bytes may go now.
    fn take(&mut self, len: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.bytes_per_s).min(self.depth);
        if self.tokens < len as f64 {
            return false;
        }
        self.tokens -= len as f64;
        true
    }
}

/// The embedded TURN server's sans-IO core: see the module docs.
pub struct TurnRelay {
    config: RelayConfig,
    listeners: Vec<Listener>,
    /// [`SHARDS`] per listener: listener `l`'s are `l * SHARDS ..`.
    servers: Vec<TurnServer>,
    epoch: Instant,
    unix_at_epoch: u64,
    /// Usernames given to a server, with their expiry.
    users: HashMap<(usize, String), u64>,
    /// Who sent which authenticated Allocate request: (server, client,
    /// participant).
    asked: VecDeque<Asked>,
    allocations: HashMap<SocketAddr, Allocation>,
    /// Allocations per participant, opening ones included.
    per_participant: HashMap<String, usize>,
    frames: HashMap<(usize, SocketAddr), Frames>,
    out: VecDeque<Output>,
    next_sweep: Instant,
    wake: Vec<Instant>,
    /// Per server: users revoked since it was made ...
    revoked: Vec<usize>,
    /// ... and allocations asked of the driver, not yet answered.
    opening: Vec<usize>,
    stats: TurnStats,
}

impl std::fmt::Debug for TurnRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRelay")
            .field("config", &self.config)
            .field("listeners", &self.listeners)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TurnRelay {
    /// A relay serving `listeners`; `now` and `unix_now` (seconds since
    /// the Unix epoch) are the same moment, the clock credentials expire
    /// on.
    pub fn new(config: RelayConfig, listeners: &[Listener], now: Instant, unix_now: u64) -> Self {
        let servers: Vec<TurnServer> = listeners
            .iter()
            .flat_map(|l| {
                (0..SHARDS)
                    .map(|_| TurnServer::new(l.transport.turn(), l.addr, config.realm.clone()))
            })
            .collect();
        let wake = vec![now; servers.len()];
        let (revoked, opening) = (vec![0; servers.len()], vec![0; servers.len()]);
        TurnRelay {
            listeners: listeners.to_vec(),
            servers,
            epoch: now,
            unix_at_epoch: unix_now,
            users: HashMap::new(),
            asked: VecDeque::new(),
            allocations: HashMap::new(),
            per_participant: HashMap::new(),
            frames: HashMap::new(),
            out: VecDeque::new(),
            next_sweep: now + SWEEP_EVERY,
            wake,
            revoked,
            opening,
            stats: TurnStats::default(),
            config,
        }
    }

    /// What the policy did so far.
    pub fn stats(&self) -> TurnStats {
        TurnStats {
            allocations: self.allocations.len(),
            ..self.stats
        }
    }

    /// The listeners, by index.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    fn turn_now(&self, now: Instant) -> turn_server_proto::types::Instant {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        turn_server_proto::types::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// The server of `client` on `listener`.
    fn server_of(listener: usize, client: SocketAddr) -> usize {
        let ip = match client.ip() {
            std::net::IpAddr::V4(ip) => u64::from(u32::from(ip)),
            std::net::IpAddr::V6(ip) => {
                let b = u128::from(ip);
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let h = (ip ^ (u64::from(client.port()) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        listener * SHARDS + (h >> 58) as usize % SHARDS
    }

    fn unix(&self, now: Instant) -> u64 {
        self.unix_at_epoch + now.saturating_duration_since(self.epoch).as_secs()
    }

    /// `data` arrived from `client` on `listener`: a datagram (UDP), or
    /// the next bytes of the client's stream.
    pub fn from_client(&mut self, listener: usize, client: SocketAddr, data: &[u8], now: Instant) {
        let Some(l) = self.listeners.get(listener).copied() else {
            return;
        };
        let server = Self::server_of(listener, client);
        match l.transport {
            ClientTransport::Udp => self.client_message(listener, server, client, data, now),
            ClientTransport::Tcp => {
                let mut frames = self.frames.remove(&(listener, client)).unwrap_or_default();
                frames.push(data);
                loop {
                    match frames.next_frame() {
                        Ok(Some(frame)) => {
                            self.client_message(listener, server, client, &frame, now)
                        }
                        Ok(None) => {
                            self.frames.insert((listener, client), frames);
                            break;
                        }
                        Err(e) => {
                            debug!(%client, "TURN stream closed: {e}");
                            self.out.push_back(Output::CloseClient { listener, client });
                            break;
                        }
                    }
                }
            }
        }
        self.drain(now, Some(server));
    }

    /// The stream of `client` on `listener` ended: its allocations end
    /// with it (RFC 8656 §3.1: an allocation over TCP or TLS lives as long
    /// as its connection), their relay sockets close and no longer count
    /// against the quotas. (`turn-server-proto` keeps its own record until
    /// their lifetime ends; nothing reaches it any more.)
    pub fn client_closed(&mut self, listener: usize, client: SocketAddr) {
        self.frames.remove(&(listener, client));
        let ended: Vec<SocketAddr> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.listener == listener && a.client == client)
            .map(|(relay, _)| *relay)
            .collect();
        for relay in ended {
            if let Some(a) = self.allocations.remove(&relay) {
                info!(%relay, participant = %a.participant, "TURN allocation ended with its connection");
                self.release(&a.participant);
                self.out.push_back(Output::CloseRelay { relay });
            }
        }
    }

    /// `data` arrived on relay socket `relay` from `from`.
    pub fn from_peer(&mut self, relay: SocketAddr, from: SocketAddr, data: &[u8], now: Instant) {
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return;
        };
        // Only the SFU answers: anything else is dropped before the TURN
        // server (which would check its permissions) sees it.
        let Some(peer) = self.config.peers.advertised_for(from) else {
            self.stats.refused_peers += 1;
            return;
        };
        if !allocation.bucket.take(data.len(), now) {
            self.stats.over_rate += 1;
            return;
        }
        let (listener, server) = (allocation.listener, allocation.server);
        let at = self.turn_now(now);
        let transmit = Transmit::new(data, TransportType::Udp, peer, relay);
        if let Some(t) = self.servers[server].recv(transmit, at) {
            self.stats.relayed += 1;
            self.route(listener, t.build(), now, false);
        }
        self.drain(now, Some(server));
    }

    /// The driver opened the relay socket `request` asked for (at `result`'s
    /// address), or could not.
    pub fn allocated(
        &mut self,
        request: AllocateRequest,
        result: std::io::Result<SocketAddr>,
        now: Instant,
    ) {
        let AllocateRequest {
            listener,
            client,
            server,
            transport,
            listen_addr,
            allocation_transport,
            family,
            participant,
            username,
            ..
        } = request;
        if let Some(n) = self.opening.get_mut(server) {
            *n = n.saturating_sub(1);
        }
        let socket = match result {
            Ok(relay) => {
                info!(%client, %relay, %participant, "TURN allocation");
                self.stats.allocated += 1;
                self.allocations.insert(
                    relay,
                    Allocation {
                        listener,
                        server,
                        client,
                        participant,
                        username,
                        bucket: Bucket::new(self.config.limits.max_bitrate_bps, now),
                    },
                );
                Ok(relay)
            }
            Err(e) => {
                tracing::warn!(%client, "cannot open a TURN relay socket: {e}");
                self.release(&participant);
                Err(SocketAllocateError::InsufficientCapacity)
            }
        };
        let at = self.turn_now(now);
        if let Some(turn) = self.servers.get_mut(server) {
            turn.allocated_socket(
                transport,
                listen_addr,
                client,
                allocation_transport,
                family,
                socket,
                at,
            );
        }
        self.drain(now, Some(server));
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`TurnRelay::handle_timeout`] wants to run.
    pub fn poll_timeout(&self) -> Instant {
        self.wake
            .iter()
            .copied()
            .fold(self.next_sweep, Instant::min)
    }

    /// Time passed: allocations, permissions and nonces expire, expired
    /// users are revoked.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.revoke_expired(now);
        }
        self.drain(now, None);
    }

    /// One whole message (or datagram) from a client.
    fn client_message(
        &mut self,
        listener: usize,
        server: usize,
        client: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        if let Ok(msg) = Message::from_bytes(data) {
            if self.screen(listener, server, client, &msg, now) != Verdict::Pass {
                return;
            }
        }
        let l = self.listeners[listener];
        let at = self.turn_now(now);
        let transmit = Transmit::new(data, l.transport.turn(), client, l.addr);
        if let Some(t) = self.servers[server].recv(transmit, at) {
            self.route(listener, t.build(), now, true);
        }
    }

    /// The policy's look at a client's STUN message (see the module docs).
    /// A refusal is answered here.
    fn screen(
        &mut self,
        listener: usize,
        server: usize,
        client: SocketAddr,
        msg: &Message<'_>,
        now: Instant,
    ) -> Verdict {
        let verdict = screen::check_peers(msg, &self.config.peers);
        if verdict == Verdict::Drop {
            self.stats.refused_peers += 1;
            return verdict;
        }
        let Some(username) = screen::username(msg) else {
            // Unauthenticated: the TURN server asks for credentials.
            return Verdict::Pass;
        };
        let username = username.as_str();
        let Ok(parsed) = parse_username(username) else {
            // Never given to the server: it answers 401.
            return Verdict::Pass;
        };
        let participant = parsed.participant.to_owned();
        let expired = parsed.expiry <= self.unix(now);
        let secret_password = password(&self.config.secret, username);
        let key = screen::key(username, &secret_password, &self.config.realm);
        let Some(algorithm) = screen::integrity(msg, &key) else {
            // Not signed with this user's key (nor signed at all): the
            // server refuses it. Nobody adds users without the secret.
            return Verdict::Pass;
        };
        let key_of = (server, username.to_owned());
        let known = self.users.contains_key(&key_of);
        if expired && !known {
            // Not given to the server (it answers 401).
            self.stats.expired += 1;
            return Verdict::Pass;
        }
        if !known {
            self.users.insert(key_of, parsed.expiry);
            self.servers[server].add_user(username.to_owned(), secret_password);
        }
        let allocate = msg.method() == ALLOCATE && msg.has_class(MessageClass::Request);
        let verdict = match verdict {
            // Expired credentials make no new allocation; those made with
            // them before go on (refreshes, permissions, channels).
            Verdict::Pass if allocate && expired => {
                self.stats.expired += 1;
                Verdict::Refuse(ErrorCode::UNAUTHORIZED, "these credentials have expired")
            }
            Verdict::Pass if allocate => self.admit(server, client, &participant, username),
            other => other,
        };
        if let Verdict::Refuse(code, reason) = verdict {
            if code == ErrorCode::FORBIDDEN {
                self.stats.refused_peers += 1;
            }
            debug!(%client, %participant, code, reason, "TURN request refused");
            if let Some(data) = screen::error_response(msg, code, reason, &key, algorithm) {
                self.queue_to_client(listener, client, data);
            }
        }
        verdict
    }

    /// Whether `participant` may have one more allocation; if so, remembers
    /// that `client` (of `server`) asked for it for them.
    fn admit(
        &mut self,
        server: usize,
        client: SocketAddr,
        participant: &str,
        username: &str,
    ) -> Verdict {
        let limits = &self.config.limits;
        let theirs = self.per_participant.get(participant).copied().unwrap_or(0);
        let all: usize = self.per_participant.values().sum();
        if theirs >= limits.max_allocations_per_participant {
            self.stats.refused_allocations += 1;
            return Verdict::Refuse(
                ErrorCode::ALLOCATION_QUOTA_REACHED,
                "too many allocations for this participant",
            );
        }
        if all >= limits.max_allocations {
            self.stats.refused_allocations += 1;
            return Verdict::Refuse(ErrorCode::INSUFFICIENT_CAPACITY, "this TURN server is full");
        }
        self.asked
            .retain(|a| (a.server, a.client) != (server, client));
        if self.asked.len() >= ASKED_KEPT {
            self.asked.pop_front();
        }
        self.asked.push_back(Asked {
            server,
            client,
            participant: participant.to_owned(),
            username: username.to_owned(),
        });
        Verdict::Pass
    }

    fn release(&mut self, participant: &str) {
        if let Some(n) = self.per_participant.get_mut(participant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_participant.remove(participant);
            }
        }
    }

    /// `username` (expired, unused) no longer authenticates on `server`:
    /// its key is replaced by one nobody has (`turn-server-proto` cannot
    /// remove users).
    fn revoke(&mut self, server: usize, username: &str) {
        if self.users.remove(&(server, username.to_owned())).is_some() {
            self.revoked[server] += 1;
            let nobody: [u8; 16] = rand::random();
            let nobody: String = nobody.iter().map(|b| format!("{b:02x}")).collect();
            self.servers[server].add_user(username.to_owned(), nobody);
            debug!(username, "TURN credentials expired: revoked");
        }
    }

    /// Revokes the users whose credentials expired and whom no allocation
    /// (nor an allocation being opened) still needs.
    fn revoke_expired(&mut self, now: Instant) {
        let unix = self.unix(now);
        let needed: std::collections::HashSet<(usize, &str)> = self
            .allocations
            .values()
            .map(|a| (a.server, a.username.as_str()))
            .chain(self.asked.iter().map(|a| (a.server, a.username.as_str())))
            .collect();
        let expired: Vec<(usize, String)> = self
            .users
            .iter()
            .filter(|((server, user), &expiry)| {
                expiry <= unix && !needed.contains(&(*server, user.as_str()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (server, username) in expired {
            self.revoke(server, &username);
        }
        for server in 0..self.servers.len() {
            let idle = self.opening[server] == 0
                && !self.allocations.values().any(|a| a.server == server)
                && !self.asked.iter().any(|a| a.server == server);
            if self.revoked[server] >= RECYCLE_AFTER && idle {
                self.recycle(server, now);
            }
        }
    }

    /// Replaces `server` (no allocation on it) by a fresh one: its revoked
    /// users go, and so do the rest of its users, which their next request
    /// adds again.
    fn recycle(&mut self, server: usize, now: Instant) {
        let l = self.listeners[server / SHARDS];
        self.servers[server] =
            TurnServer::new(l.transport.turn(), l.addr, self.config.realm.clone());
        self.users.retain(|(s, _), _| *s != server);
        info!(
            server,
            revoked = self.revoked[server],
            "TURN server replaced: its revoked users dropped"
        );
        self.revoked[server] = 0;
        self.wake[server] = now;
        self.stats.recycled += 1;
    }

    fn queue_to_client(&mut self, listener: usize, client: SocketAddr, data: Vec<u8>) {
        let data = match self.listeners[listener].transport {
            ClientTransport::Udp => data,
            ClientTransport::Tcp => turn_stream::padded(data),
        };
        self.out.push_back(Output::ToClient {
            listener,
            client,
            data,
        });
    }

    /// Where the TURN server's transmit `t` (handled on `listener`) goes:
    /// to a client, or from a relay to a peer that must be the SFU's.
    fn route(&mut self, listener: usize, t: Transmit<Vec<u8>>, now: Instant, from_client: bool) {
        let l = self.listeners[listener];
        if t.from == l.addr && t.transport == l.transport.turn() {
            self.queue_to_client(listener, t.to, t.data);
            return;
        }
        let Some(allocation) = self.allocations.get_mut(&t.from) else {
            return;
        };
        let Some(peer) = self.config.peers.local_for(t.to) else {
            self.stats.refused_peers += 1;
            return;
        };
        if from_client {
            if !allocation.bucket.take(t.data.len(), now) {
                self.stats.over_rate += 1;
                return;
            }
            self.stats.relayed += 1;
        }
        self.out.push_back(Output::ToPeer {
            relay: t.from,
            peer,
            data: t.data,
        });
    }

    /// Everything the TURN servers want done now: `touched` (which just
    /// handled something), and those whose timers are due.
    fn drain(&mut self, now: Instant, touched: Option<usize>) {
        let at = self.turn_now(now);
        for i in 0..self.servers.len() {
            if touched != Some(i) && self.wake[i] > now {
                continue;
            }
            let listener = i / SHARDS;
            // Bounded: each round takes one pending item off the server.
            for _ in 0..4096 {
                match self.servers[i].poll(at) {
                    TurnServerPollRet::WaitUntil(t) => {
                        let wait = t.checked_duration_since(at).unwrap_or(Duration::ZERO);
                        self.wake[i] = now + wait;
                        break;
                    }
                    TurnServerPollRet::AllocateSocket {
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                    } => self.allocate(
                        listener,
                        i,
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        at,
                    ),
                    TurnServerPollRet::TcpConnect {
                        relayed_addr,
                        peer_addr,
                        listen_addr,
                        client_addr,
                    } => {
                        // Never asked for: CONNECT is refused before.
                        self.servers[i].tcp_connected(
                            relayed_addr,
                            peer_addr,
                            listen_addr,
                            client_addr,
                            Err(turn_server_proto::api::TcpConnectError::Forbidden),
                            at,
                        );
                    }
                    TurnServerPollRet::TcpClose {
                        local_addr,
                        remote_addr,
                    } => {
                        if local_addr == self.listeners[listener].addr {
                            self.out.push_back(Output::CloseClient {
                                listener,
                                client: remote_addr,
                            });
                        }
                    }
                    TurnServerPollRet::SocketClose { listen_addr, .. } => {
                        if let Some(a) = self.allocations.remove(&listen_addr) {
                            info!(relay = %listen_addr, participant = %a.participant, "TURN allocation ended");
                            self.release(&a.participant);
                            self.out
                                .push_back(Output::CloseRelay { relay: listen_addr });
                        }
                    }
                }
            }
            while let Some(t) = self.servers[i].poll_transmit(at) {
                self.route(listener, t, now, false);
            }
        }
    }

    /// The TURN server wants a relay socket for a client it authenticated.
    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &mut self,
        listener: usize,
        server: usize,
        transport: TransportType,
        listen_addr: SocketAddr,
        client: SocketAddr,
        allocation_transport: TransportType,
        family: AddressFamily,
        at: turn_server_proto::types::Instant,
    ) {
        let asked = self
            .asked
            .iter()
            .position(|a| (a.server, a.client) == (server, client))
            .and_then(|i| self.asked.remove(i));
        let ok = allocation_transport == TransportType::Udp;
        let Some(Asked {
            participant,
            username,
            ..
        }) = asked.filter(|_| ok)
        else {
            self.servers[server].allocated_socket(
                transport,
                listen_addr,
                client,
                allocation_transport,
                family,
                Err(SocketAllocateError::InsufficientCapacity),
                at,
            );
            return;
        };
        *self.per_participant.entry(participant.clone()).or_insert(0) += 1;
        self.opening[server] += 1;
        self.out.push_back(Output::Allocate(AllocateRequest {
            listener,
            client,
            server,
            ipv6: family == AddressFamily::IPV6,
            transport,
            listen_addr,
            allocation_transport,
            family,
            participant,
            username,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screen;
    use turn_server_proto::types::stun::attribute::Username;
    use turn_server_proto::types::stun::message::{IntegrityAlgorithm, MessageWriteVec};
    use turn_server_proto::types::stun::prelude::*;

    fn relay() -> (TurnRelay, Instant) {
        let sfu: SocketAddr = "127.0.0.1:7882".parse().expect("address");
        let now = Instant::now();
        let relay = TurnRelay::new(
            RelayConfig {
                realm: "huddle".into(),
                secret: "s".into(),
                peers: PeerPolicy::new([(sfu, sfu)]),
                limits: TurnLimits::default(),
            },
            &[Listener {
                transport: ClientTransport::Udp,
                addr: "127.0.0.1:3478".parse().expect("address"),
            }],
            now,
            1_700_000_000,
        );
        (relay, now)
    }

    /// An Allocate request from `user`, signed with `password`.
    fn allocate(user: &str, password: &str) -> Vec<u8> {
        request(ALLOCATE, user, password)
    }

    /// A `method` request from `user`, signed with `password`.
    fn request(
        method: turn_server_proto::types::stun::message::Method,
        user: &str,
        password: &str,
    ) -> Vec<u8> {
        let mut msg = Message::builder_request(method, MessageWriteVec::new());
        msg.add_attribute(&Username::new(user).expect("username"))
            .expect("attribute");
        let key = screen::key(user, password, "huddle");
        msg.add_message_integrity(&key, IntegrityAlgorithm::Sha1)
            .expect("integrity");
        msg.finish()
    }

    #[test]
    fn only_requests_signed_with_the_secrets_password_add_users() {
        let (mut relay, now) = relay();
        let client: SocketAddr = "127.0.0.1:5000".parse().expect("address");
        // Well-formed usernames, wrong passwords: thousands of them add
        // nothing (the server answers each with 401).
        for i in 0..2000 {
            let user = format!("1800000000:PA_{i}");
            relay.from_client(0, client, &allocate(&user, "guess"), now);
        }
        assert!(relay.users.is_empty());
        while relay.poll_output().is_some() {}
        let user = "1800000000:PA_real";
        relay.from_client(0, client, &allocate(user, &password("s", user)), now);
        assert_eq!(relay.users.len(), 1);
    }

    #[test]
    fn a_server_full_of_revoked_users_is_replaced_once_idle() {
        use turn_server_proto::types::message::REFRESH;
        let (mut relay, now) = relay();
        let client: SocketAddr = "127.0.0.1:5000".parse().expect("address");
        // Users whose credentials expire 10 s after the relay starts, each
        // with one signed request (no allocation: the server refuses a
        // refresh without one).
        for i in 0..RECYCLE_AFTER + 10 {
            let user = format!("1700000010:PA_{i}");
            relay.from_client(
                0,
                client,
                &request(REFRESH, &user, &password("s", &user)),
                now,
            );
        }
        while relay.poll_output().is_some() {}
        assert_eq!(relay.users.len(), RECYCLE_AFTER + 10);
        relay.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(relay.stats().recycled, 0, "not expired yet");
        relay.handle_timeout(now + Duration::from_secs(15));
        assert_eq!(relay.stats().recycled, 1, "{:?}", relay.stats());
        assert!(relay.users.is_empty());
        // The fresh server serves: a new user is added to it.
        let user = "1800000000:PA_new";
        relay.from_client(
            0,
            client,
            &allocate(user, &password("s", user)),
            now + Duration::from_secs(16),
        );
        assert_eq!(relay.users.len(), 1);
    }
}
