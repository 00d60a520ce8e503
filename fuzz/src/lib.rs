//! What the fuzz targets share: an SFU endpoint with one participant.

use huddle_sfu::endpoint::Endpoint;
use huddle_sfu::{ParticipantId, Rights, RoomId, SfuConfig};
use std::net::SocketAddr;
use std::time::Instant;

/// A fresh endpoint (at a made-up address) with one participant, `fuzz`,
/// that may publish and subscribe, in room `room`.
pub fn endpoint_with_participant(now: Instant) -> (Endpoint, ParticipantId) {
    let addr: SocketAddr = ([127, 0, 0, 1], 7882).into();
    let mut endpoint = Endpoint::new(SfuConfig::default(), addr);
    let id = ParticipantId("fuzz".into());
    let rights = Rights {
        publish: true,
        subscribe: true,
    };
    endpoint
        .add_participant(now, RoomId("room".into()), id.clone(), rights)
        .expect("a new participant");
    (endpoint, id)
}
