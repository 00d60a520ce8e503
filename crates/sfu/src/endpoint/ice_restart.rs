//! ICE restarts (RFC 8445 §9): a client whose path broke (a network
//! change, a NAT that forgot it) checks again from wherever it is, with new
//! credentials, while the DTLS association and the SRTP keys stay.
//!
//! - A subscriber connection the SFU offers restarts with the SFU's next
//!   offer ([`Endpoint::restart_subscriber_ice`]).
//! - A publisher connection restarts with the client's next offer, as any
//!   renegotiation (`publisher_offer`).
//! - A WHIP or WHEP session has no further offers: its client sends its new
//!   credentials alone (RFC 9725 §4.3.2) and gets the SFU's back
//!   ([`Endpoint::restart_ice_with`]).

use super::Endpoint;
use crate::error::SfuError;
use crate::ice_credentials::IceCredentials;
use crate::ids::ParticipantId;
use huddle_proto::PcRole;
use huddle_wire::sdp::{check_ice_credentials, ice_credentials, with_ice_credentials};
use std::time::Instant;

impl Endpoint {
    /// Restart ICE on `id`'s subscriber connection (RFC 8445 §9), as its
    /// client asks when the connection fails or its network changes: the
    /// SFU's next offer to it (sent now, or once the pending one is
    /// answered) carries new ICE credentials, so the client restarts its
    /// side too and checks again from wherever it is. The DTLS association
    /// and the SRTP keys stay; only the path changes.
    pub fn restart_subscriber_ice(
        &mut self,
        now: Instant,
        id: &ParticipantId,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        if p.slots.is_some() || p.subscriber.is_none() {
            return Err(SfuError::NoSubscriberConnection);
        }
        p.ice_restart = true;
        p.needs_offer = true;
        self.flush(now);
        Ok(())
    }

    /// Restart ICE on a connection whose client sent its new credentials
    /// (`ufrag`, `pwd`) without an offer, as a WHIP or WHEP client does by
    /// `PATCH` (RFC 9725 §4.3.2); returns the SFU's credentials for the
    /// client to check with.
    ///
    /// - A WHEP viewer's connection (the SFU's own transport) gets new SFU
    ///   credentials; the old ones are answered until the client checks
    ///   with the new ones.
    /// - A publisher connection's restart is the client's last offer again
    ///   with the new credentials in it (nothing else of a WHIP session is
    ///   ever renegotiated). `rtc` keeps the SFU's credentials on this side
    ///   (they were fixed when the connection was built), so they come back
    ///   unchanged; the client's are new, which is what the checks need.
    ///
    /// Credentials that are not valid ICE (RFC 8839 §5.4) change nothing.
    pub fn restart_ice_with(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        role: PcRole,
        ufrag: &str,
        pwd: &str,
    ) -> Result<IceCredentials, SfuError> {
        check_ice_credentials(ufrag, pwd).map_err(|e| SfuError::BadIce(e.to_string()))?;
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        match role {
            PcRole::Subscriber => {
                if p.slots.is_none() {
                    // The SFU offers this connection: it restarts by offer.
                    return Err(SfuError::NoSubscriberConnection);
                }
                let conn = p
                    .subscriber
                    .as_mut()
                    .ok_or(SfuError::NoSubscriberConnection)?;
                let (new_ufrag, forget) =
                    conn.restart_ice().ok_or(SfuError::NoSubscriberConnection)?;
                if let Some(wire) = conn.wire.as_mut() {
                    wire.remote_restarted((ufrag.to_owned(), pwd.to_owned()));
                }
                let (u, p) = conn.local_ice();
                let local = IceCredentials {
                    ufrag: u.to_owned(),
                    pwd: p.to_owned(),
                };
                if let Some(old) = forget {
                    self.demux.remove_ufrag(&old);
                }
                self.demux
                    .insert_ufrag(new_ufrag, (id.clone(), PcRole::Subscriber));
                self.dirty.push((id.clone(), PcRole::Subscriber));
                self.flush(now);
                Ok(local)
            }
            PcRole::Publisher => {
                let conn = p
                    .publisher
                    .as_ref()
                    .ok_or_else(|| SfuError::BadIce("no publisher connection to restart".into()))?;
                let offer = conn
                    .pc
                    .remote_description()
                    .map(|d| d.sdp.clone())
                    .ok_or_else(|| SfuError::BadIce("no offer to restart from".into()))?;
                let (u, p) = conn.local_ice();
                let local = IceCredentials {
                    ufrag: u.to_owned(),
                    pwd: p.to_owned(),
                };
                if ice_credentials(&offer).is_some_and(|(u, p)| u == ufrag && p == pwd) {
                    return Ok(local); // nothing changed: a repeated request
                }
                let offer = with_ice_credentials(&offer, ufrag, pwd, true);
                self.publisher_offer(now, id, offer)?;
                Ok(local)
            }
        }
    }
}
