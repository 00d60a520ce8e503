//! Admission: how a client becomes a participant of a room, whichever way
//! it comes in (a WebSocket `join`, `POST /whip`, `POST /whep`), and how a
//! participant leaves.
//!
//! Joining is two calls. [`verify`] checks the access token (signature,
//! expiry, bans; see `AppState::verify_token`) and what it grants against
//! what the entry point needs. Then [`admit`]:
//!
//! 1. counts a new WHIP/WHEP session against the session rate (per client
//!    address and per identity of the room);
//! 2. mints a participant id and registers the participant, pending, in the
//!    [`Hub`](crate::hub::Hub), which enforces the participant limits (per
//!    node, room and identity);
//! 3. adds it to the SFU;
//! 4. lets the entry point record what it needs (`before_live`);
//! 5. makes it live: it gets `joined`, the room learns that it joined.
//!
//! When a step fails, what the earlier ones did is undone (out of the hub
//! and the SFU) and a [`Refused`] says why; each entry point turns that into
//! its own reply (an `error` and a close code, an HTTP status). The limits
//! on open WebSockets are counted before the upgrade, by the WebSocket
//! endpoint.

use crate::app::AppState;
use crate::auth::{AuthError, Claims};
use crate::hub::{AddError, Removed};
use crate::outbound::Conn;
use huddle_proto::{ErrorCode, IceServerInfo, ResumeInfo, ServerMessage};
use huddle_sfu::Rights;
use huddle_sfu::{ParticipantId, RoomId, SfuError};
use rand::distr::{Alphanumeric, SampleString};
use std::net::IpAddr;

/// What an entry point needs a token to grant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wants<'a> {
    /// The room the client asked for, if it named one.
    pub(crate) room: Option<&'a str>,
    /// Publishing.
    pub(crate) publish: bool,
    /// Subscribing.
    pub(crate) subscribe: bool,
}

/// Why a client was not admitted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// The token is missing, invalid, expired or banned.
    #[error("{0}")]
    Token(AuthError),
    /// The token grants no room (an admin-only token).
    #[error("token grants no room")]
    NoRoom,
    /// The client asked for another room than the token's.
    #[error("token does not grant the room requested")]
    WrongRoom,
    /// The entry point publishes and the token does not allow it.
    #[error("token does not allow publishing")]
    CannotPublish,
    /// The entry point subscribes and the token does not allow it.
    #[error("token does not allow subscribing")]
    CannotSubscribe,
    /// Too many new WHIP/WHEP sessions from the address or the identity.
    #[error("too many new sessions; slow down")]
    SessionRate,
    /// A participant limit (server, room, identity).
    #[error("{}", .0.message())]
    Limit(AddError),
    /// The SFU refused the participant or its offer.
    #[error("the media server refused participant {participant}: {error}")]
    Sfu {
        /// The participant it refused.
        participant: ParticipantId,
        /// Why.
        error: SfuError,
    },
    /// The participant was removed (kicked, banned, dropped by the SFU)
    /// while it was being set up.
    #[error("removed while joining")]
    Gone,
}

impl Refused {
    /// The protocol error code for the refusal.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Refused::Token(e) => e.code(),
            Refused::NoRoom | Refused::CannotPublish | Refused::CannotSubscribe => {
                ErrorCode::Forbidden
            }
            Refused::WrongRoom => ErrorCode::WrongRoom,
            Refused::SessionRate => ErrorCode::RateLimited,
            Refused::Limit(e) => e.code(),
            Refused::Sfu { .. } | Refused::Gone => ErrorCode::Internal,
        }
    }
}

/// Verify `token` (when given) and check that it grants a room and what
/// `wants` asks for, in that order.
pub(crate) fn verify(
    app: &AppState,
    token: Option<&str>,
    wants: Wants<'_>,
) -> Result<Claims, Refused> {
    let token = token.ok_or(Refused::Token(AuthError::Missing))?;
    let claims = app.verify_token(token).map_err(Refused::Token)?;
    if claims.room.is_empty() {
        return Err(Refused::NoRoom);
    }
    if wants.room.is_some_and(|r| r != claims.room) {
        return Err(Refused::WrongRoom);
    }
    if wants.publish && !claims.publish {
        return Err(Refused::CannotPublish);
    }
    if wants.subscribe && !claims.subscribe {
        return Err(Refused::CannotSubscribe);
    }
    Ok(claims)
}

/// Which way the client comes in.
#[derive(Debug, Clone)]
pub(crate) enum Via {
    /// A WebSocket: counted against the connection limits when it opened;
    /// `joined` tells it how to resume, when it can.
    WebSocket(Option<ResumeInfo>),
    /// A new WHIP/WHEP session from this client address (when known):
    /// counted against the session rate.
    HttpSession {
        /// The client's address for limits.
        ip: Option<IpAddr>,
    },
}

/// How the SFU takes the participant in.
#[derive(Debug)]
pub(crate) enum Media {
    /// Registered with these rights; it negotiates its connections later
    /// (a WebSocket client).
    Negotiated(Rights),
    /// Publish-only, from the client's offer (WHIP).
    Publish {
        /// The client's SDP offer.
        offer: String,
    },
    /// Receive-only, from the client's offer (WHEP).
    View {
        /// The client's SDP offer.
        offer: String,
    },
}

impl Media {
    /// What the participant may do, as `joined` tells it.
    fn rights(&self) -> Rights {
        match self {
            Media::Negotiated(rights) => *rights,
            Media::Publish { .. } => Rights {
                publish: true,
                subscribe: false,
            },
            Media::View { .. } => Rights {
                publish: false,
                subscribe: true,
            },
        }
    }
}

/// A participant now live in its room.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Its id.
    pub(crate) id: ParticipantId,
    /// The SFU's answer to the client's offer, when it made one.
    pub(crate) answer: Option<String>,
}

/// Admit the holder of `claims` (from [`verify`]) into the token's room:
/// the steps of the module documentation. `conn_for` makes the connection
/// the room reaches the participant through, for the id being tried;
/// `before_live` runs once the SFU has it, just before it goes live.
pub(crate) async fn admit(
    app: &AppState,
    claims: &Claims,
    via: Via,
    media: Media,
    mut conn_for: impl FnMut(&ParticipantId) -> Conn,
    before_live: impl FnOnce(&ParticipantId, &Conn),
) -> Result<Admitted, Refused> {
    let resume = match via {
        Via::WebSocket(resume) => resume,
        // A standard WHIP/WHEP client cannot take part in E2EE.
        Via::HttpSession { .. } if claims.e2ee => {
            return Err(Refused::Limit(AddError::E2eeMismatch));
        }
        Via::HttpSession { ip } => {
            if !app
                .http_sessions()
                .take_token(ip, &claims.room, &claims.sub)
            {
                return Err(Refused::SessionRate);
            }
            None
        }
    };
    let hub = app.hub();
    let (id, conn) = loop {
        let id = ParticipantId(format!(
            "PA_{}",
            Alphanumeric.sample_string(&mut rand::rng(), 12)
        ));
        let conn = conn_for(&id);
        match hub.add_pending(
            &claims.room,
            id.clone(),
            claims.sub.clone(),
            claims.name.clone(),
            conn.clone(),
            claims.e2ee,
        ) {
            Ok(()) => break (id, conn),
            Err(AddError::IdTaken) => continue,
            Err(e) => return Err(Refused::Limit(e)),
        }
    };
    hub.set_token_id(&id, claims.jti.clone());
    let rights = media.rights();
    let answer = match set_up(app, RoomId(claims.room.clone()), &id, media).await {
        Ok(answer) => answer,
        Err(error) => {
            hub.remove(&id);
            forget_in_sfu(app, &id).await;
            return Err(Refused::Sfu {
                participant: id,
                error,
            });
        }
    };
    before_live(&id, &conn);
    let room = claims.room.clone();
    let ice_servers = ice_servers_for(app, &id);
    let live = hub.go_live(&id, |participant, others| ServerMessage::Joined {
        room,
        participant,
        others,
        can_publish: rights.publish,
        can_subscribe: rights.subscribe,
        resume,
        ice_servers,
        e2ee: claims.e2ee,
    });
    if !live {
        // Removed while the SFU was setting it up; whoever removed it may
        // have asked the SFU to forget it before the SFU had it.
        forget_in_sfu(app, &id).await;
        return Err(Refused::Gone);
    }
    Ok(Admitted { id, answer })
}

/// The TURN servers `id` may use, with credentials of its own (none when
/// the server has no TURN configured).
pub(crate) fn ice_servers_for(app: &AppState, id: &ParticipantId) -> Vec<IceServerInfo> {
    match &app.config().turn {
        Some(turn) => turn.ice_servers(crate::turn_credentials::unix_now(), &id.0),
        None => Vec::new(),
    }
}

/// Add the participant to the SFU as `media` says; the answer to its offer,
/// if it made one.
async fn set_up(
    app: &AppState,
    room: RoomId,
    id: &ParticipantId,
    media: Media,
) -> Result<Option<String>, SfuError> {
    let sfu = app.sfu();
    match media {
        Media::Negotiated(rights) => {
            sfu.add_participant(room, id.clone(), rights).await?;
            Ok(None)
        }
        Media::Publish { offer } => {
            let rights = Rights {
                publish: true,
                subscribe: false,
            };
            sfu.add_participant(room, id.clone(), rights).await?;
            sfu.publisher_offer(id.clone(), offer).await.map(Some)
        }
        Media::View { offer } => sfu.add_viewer(room, id.clone(), offer).await.map(Some),
    }
}

async fn forget_in_sfu(app: &AppState, id: &ParticipantId) {
    if let Err(e) = app.sfu().remove_participant(id.clone()).await {
        tracing::debug!(error = %e, participant = %id, "SFU remove failed");
    }
}

/// Take a participant out of its room (telling the others) and then out of
/// the SFU. Returns what the hub took out (its connection, to close as the
/// caller sees fit), or `None`, leaving the SFU alone, if it was not in a
/// room: whoever removed it did both.
pub(crate) async fn remove(app: &AppState, id: &ParticipantId) -> Option<Removed> {
    let removed = app.hub().remove(id)?;
    forget_in_sfu(app, id).await;
    Some(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignalingConfig;
    use crate::hub::Hub;
    use crate::outbound::Outbound;
    use crate::sfu::{SfuControl, SfuFuture};
    use huddle_proto::{IceCandidate, PcRole};
    use huddle_sfu::TrackView;
    use std::sync::{Arc, Mutex, OnceLock};
    use tokio::sync::{mpsc, Notify};

    const SECRET: &str = "admission-test-secret-0123456789";

    /// An SFU that refuses offers that are not SDP, and, when told to,
    /// has the participant kicked while adding it.
    #[derive(Default)]
    struct Sfu {
        kick_on_add: Option<OnceLock<Hub>>,
        removed: Mutex<Vec<ParticipantId>>,
    }

    impl SfuControl for Sfu {
        fn add_participant(&self, _: RoomId, p: ParticipantId, _: Rights) -> SfuFuture<'_, ()> {
            Box::pin(async move {
                if let Some(hub) = self.kick_on_add.as_ref().and_then(OnceLock::get) {
                    hub.remove(&p);
                }
                Ok(())
            })
        }
        fn add_viewer(&self, _: RoomId, _: ParticipantId, _: String) -> SfuFuture<'_, String> {
            Box::pin(async { Ok("v=0 viewer".into()) })
        }
        fn publisher_offer(&self, _: ParticipantId, sdp: String) -> SfuFuture<'_, String> {
            Box::pin(async move {
                match sdp.starts_with("v=0") {
                    true => Ok("v=0 answer".into()),
                    false => Err(SfuError::BadSdp("not an SDP".into())),
                }
            })
        }
        fn subscriber_answer(&self, _: ParticipantId, _: String) -> SfuFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn restart_subscriber_ice(&self, _: ParticipantId) -> SfuFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn restart_ice_with(
            &self,
            _: ParticipantId,
            _: huddle_proto::PcRole,
            _: String,
            _: String,
        ) -> SfuFuture<'_, huddle_sfu::IceCredentials> {
            Box::pin(async { Err(SfuError::BadIce("not in this test".into())) })
        }
        fn remote_candidate(
            &self,
            _: ParticipantId,
            _: PcRole,
            _: IceCandidate,
        ) -> SfuFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn set_muted(&self, _: ParticipantId, _: String, _: bool) -> SfuFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn set_track_view(&self, _: ParticipantId, _: String, _: TrackView) -> SfuFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn remove_participant(&self, p: ParticipantId) -> SfuFuture<'_, ()> {
            self.removed.lock().expect("lock").push(p);
            Box::pin(async { Ok(()) })
        }
    }

    fn app(sfu: Arc<Sfu>) -> AppState {
        let app = AppState::new(SignalingConfig::new(SECRET), sfu.clone());
        if let Some(cell) = &sfu.kick_on_add {
            let _ = cell.set(app.hub().clone());
        }
        app
    }

    fn conn() -> (Conn, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(16);
        (Conn::new(tx, Arc::new(Notify::new())), rx)
    }

    fn token(room: &str, publish: bool, subscribe: bool) -> String {
        let claims = Claims::new("alice", room, publish, subscribe, 60);
        crate::auth::mint(SECRET, &claims).expect("mint")
    }

    #[test]
    fn verify_checks_the_token_then_the_room_then_the_rights() {
        let app = app(Arc::default());
        let wants = |room, publish, subscribe| Wants {
            room,
            publish,
            subscribe,
        };
        let code = |token: Option<&str>, w: Wants<'_>| verify(&app, token, w).map_err(|e| e.code());
        assert_eq!(
            code(None, wants(None, false, false)),
            Err(ErrorCode::TokenMissing)
        );
        assert_eq!(
            code(Some("junk"), wants(None, false, false)),
            Err(ErrorCode::TokenInvalid)
        );
        let admin = crate::auth::mint(SECRET, &Claims::admin("root", 60)).expect("mint");
        assert!(matches!(
            verify(&app, Some(&admin), wants(None, true, false)),
            Err(Refused::NoRoom)
        ));
        let viewer = token("r", false, true);
        assert!(matches!(
            verify(&app, Some(&viewer), wants(Some("s"), true, false)),
            Err(Refused::WrongRoom)
        ));
        assert!(matches!(
            verify(&app, Some(&viewer), wants(Some("r"), true, false)),
            Err(Refused::CannotPublish)
        ));
        assert!(verify(&app, Some(&viewer), wants(Some("r"), false, true)).is_ok());
        let publisher = token("r", true, false);
        assert!(matches!(
            verify(&app, Some(&publisher), wants(None, false, true)),
            Err(Refused::CannotSubscribe)
        ));
    }

    #[tokio::test]
    async fn an_admitted_participant_is_live_and_told_so() {
        let app = app(Arc::default());
        let claims = verify(&app, Some(&token("r", true, true)), Wants::default()).expect("claims");
        let (c, mut rx) = conn();
        let mut before_live = None;
        let admitted = admit(
            &app,
            &claims,
            Via::HttpSession { ip: None },
            Media::Publish {
                offer: "v=0 offer".into(),
            },
            |_| c.clone(),
            |id, _| before_live = Some(id.clone()),
        )
        .await
        .expect("admitted");
        assert_eq!(before_live.as_ref(), Some(&admitted.id));
        assert_eq!(admitted.answer.as_deref(), Some("v=0 answer"));
        assert_eq!(app.hub().participants("r").map(|p| p.len()), Some(1));
        let Ok(Outbound::Msg(ServerMessage::Joined {
            participant,
            can_publish: true,
            can_subscribe: false,
            resume: None,
            ice_servers,
            ..
        })) = rx.try_recv()
        else {
            panic!("no joined for a publish-only participant");
        };
        assert_eq!(participant.id, admitted.id.0);
        assert!(
            ice_servers.is_empty(),
            "no TURN configured, none handed out"
        );
    }

    #[tokio::test]
    async fn a_failed_sfu_setup_is_undone() {
        let sfu = Arc::new(Sfu::default());
        let app = app(sfu.clone());
        let claims = verify(&app, Some(&token("r", true, true)), Wants::default()).expect("claims");
        let (c, _rx) = conn();
        let refused = admit(
            &app,
            &claims,
            Via::WebSocket(None),
            Media::Publish {
                offer: "not sdp".into(),
            },
            |_| c.clone(),
            |_, _| panic!("not to go live"),
        )
        .await;
        let Err(Refused::Sfu { participant, error }) = refused else {
            panic!("not refused by the SFU: {refused:?}");
        };
        assert!(matches!(error, SfuError::BadSdp(_)));
        assert!(app.hub().rooms().is_empty(), "still in the hub");
        assert_eq!(*sfu.removed.lock().expect("lock"), [participant]);
    }

    #[tokio::test]
    async fn a_participant_removed_while_joining_does_not_go_live() {
        let sfu = Arc::new(Sfu {
            kick_on_add: Some(OnceLock::new()),
            ..Sfu::default()
        });
        let app = app(sfu.clone());
        let claims = verify(&app, Some(&token("r", true, true)), Wants::default()).expect("claims");
        let (c, mut rx) = conn();
        let rights = Rights {
            publish: true,
            subscribe: true,
        };
        let refused = admit(
            &app,
            &claims,
            Via::WebSocket(None),
            Media::Negotiated(rights),
            |_| c.clone(),
            |_, _| {},
        )
        .await;
        assert!(matches!(refused, Err(Refused::Gone)), "{refused:?}");
        assert!(rx.try_recv().is_err(), "told it joined");
        assert_eq!(sfu.removed.lock().expect("lock").len(), 1, "SFU not told");
    }

    #[tokio::test]
    async fn new_http_sessions_are_rate_limited() {
        let mut config = SignalingConfig::new(SECRET);
        config.limits.http_sessions_per_sec = 0.0;
        config.limits.http_sessions_burst = 1.0;
        let app = AppState::new(config, Arc::new(Sfu::default()));
        let claims =
            verify(&app, Some(&token("r", false, true)), Wants::default()).expect("claims");
        let view = || Media::View {
            offer: "v=0 offer".into(),
        };
        let via = Via::HttpSession {
            ip: Some([192, 0, 2, 1].into()),
        };
        let (c, _rx) = conn();
        let first = admit(&app, &claims, via.clone(), view(), |_| c.clone(), |_, _| {}).await;
        assert!(first.is_ok(), "{first:?}");
        let second = admit(&app, &claims, via, view(), |_| c.clone(), |_, _| {}).await;
        assert!(matches!(second, Err(Refused::SessionRate)), "{second:?}");
        assert_eq!(app.hub().participants("r").map(|p| p.len()), Some(1));
    }
}
