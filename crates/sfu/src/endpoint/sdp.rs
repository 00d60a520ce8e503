//! Descriptions of a connection: applying an offer, making an answer or an
//! offer with the SFU's candidate in it, starting a subscriber's own
//! transport, and what a publisher's new offer stopped sending.

use crate::connection::Connection;
use crate::error::SfuError;
use crate::participant::Participant;
use huddle_wire::sdp::{has_ccfb, with_ccfb};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::RTCRtpTransceiverId;
use std::net::SocketAddr;
use std::time::Instant;

pub(super) fn bad_sdp(e: impl std::fmt::Display) -> SfuError {
    SfuError::BadSdp(e.to_string())
}

pub(super) fn rtc_err(e: impl std::fmt::Display) -> SfuError {
    SfuError::Rtc(e.to_string())
}

/// Start a subscriber connection's own transport once both descriptions
/// are applied to `conn` (`remote_sdp` is the one just applied).
pub(super) fn start_wire(
    now: Instant,
    conn: &mut Connection,
    remote_sdp: &str,
) -> Result<(), SfuError> {
    let Some(wire) = conn.wire.as_mut() else {
        return Ok(());
    };
    let local = conn
        .pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
    wire.start(now, &local, remote_sdp)
        .map_err(|e| SfuError::BadSdp(e.to_string()))
}

/// The remote tracks of `p`'s publisher connection that the offer just
/// applied stopped sending (its m-line now `recvonly` or `inactive`). rtc
/// 0.21 reports no end of a remote track (it never emits
/// `RTCTrackEvent::OnClose`), so the SFU looks itself after each offer.
pub(super) fn ended_tracks(p: &mut Participant) -> Vec<String> {
    let Some(conn) = p.publisher.as_mut() else {
        return Vec::new();
    };
    p.incoming
        .iter()
        .filter(|(_, receiver)| {
            conn.pc
                .rtp_transceiver(RTCRtpTransceiverId::from(**receiver))
                .is_none_or(|t| !t.direction().has_recv())
        })
        .map(|(track, _)| track.clone())
        .collect()
}

/// Where the SFU says it can be reached: its media address, over UDP and,
/// with ICE-TCP, over TCP.
#[derive(Debug, Clone, Copy)]
pub(super) struct Host {
    pub addr: SocketAddr,
    pub tcp: bool,
}

pub(super) fn answer_offer(
    now: Instant,
    conn: &mut Connection,
    offer: RTCSessionDescription,
    host: Host,
) -> Result<String, SfuError> {
    conn.pc
        .set_remote_description(now, offer)
        .map_err(bad_sdp)?;
    make_answer(now, conn, host)
}

/// Answer the offer already applied to `conn`, with the SFU's candidates in
/// it. A subscriber connection accepts RFC 8888 feedback if the offer has it.
pub(super) fn make_answer(
    now: Instant,
    conn: &mut Connection,
    host: Host,
) -> Result<String, SfuError> {
    conn.add_host_candidate(host.addr, host.tcp)?;
    let answer = conn.pc.create_answer(None).map_err(rtc_err)?;
    conn.pc
        .set_local_description(now, answer)
        .map_err(rtc_err)?;
    let sdp = conn
        .pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
    let ccfb_offered = conn
        .pc
        .remote_description()
        .is_some_and(|d| has_ccfb(&d.sdp));
    let sdp = conn.with_local_ice(sdp);
    Ok(if conn.wire.is_some() && ccfb_offered {
        with_ccfb(&sdp)
    } else {
        sdp
    })
}

/// An offer for `conn`, with the SFU's candidates in it. A subscriber
/// connection offers RFC 8888 feedback beside TWCC (`rtc` 0.21 knows
/// nothing of it, and need not: the SFU's own transport reads the
/// feedback), so a client that prefers it (Chromium with its field trial)
/// can answer with it.
pub(super) fn make_offer(
    now: Instant,
    conn: &mut Connection,
    host: Host,
) -> Result<String, SfuError> {
    let offer = conn.pc.create_offer(None).map_err(rtc_err)?;
    conn.pc.set_local_description(now, offer).map_err(rtc_err)?;
    conn.add_host_candidate(host.addr, host.tcp)?;
    let sdp = conn
        .pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
    let sdp = conn.with_local_ice(sdp);
    Ok(if conn.wire.is_some() {
        with_ccfb(&sdp)
    } else {
        sdp
    })
}
