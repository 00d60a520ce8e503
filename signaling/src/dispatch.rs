//! Relays SFU events to participants and rooms.

use crate::app::AppState;
use crate::close_code;
use huddle_proto::ServerMessage;
use huddle_sfu::{SfuEvent, SfuEvents};

/// Handle SFU events until the SFU drops its sender.
pub async fn run(app: AppState, mut events: SfuEvents) {
    while let Some(event) = events.recv().await {
        handle(&app, event);
    }
    tracing::debug!("SFU event stream ended");
}

/// Apply one SFU event.
pub fn handle(app: &AppState, event: SfuEvent) {
    let hub = app.hub();
    match event {
        SfuEvent::SubscriberOffer { participant, sdp } => {
            if !hub.send_to(&participant, ServerMessage::Offer { sdp }) {
                tracing::debug!(%participant, "subscriber offer for unknown participant");
            }
        }
        SfuEvent::Candidate {
            participant,
            pc,
            candidate,
        } => {
            if !hub.send_to(&participant, ServerMessage::Candidate { pc, candidate }) {
                tracing::debug!(%participant, "candidate for unknown participant");
            }
        }
        SfuEvent::TrackPublished {
            room,
            participant,
            track,
        } => {
            if hub.room_of(&participant).as_deref() != Some(room.0.as_str()) {
                tracing::debug!(%participant, %room, "track of unknown participant");
                return;
            }
            tracing::info!(%participant, %room, track = %track.id, "track published");
            hub.track_published(&participant, track);
        }
        SfuEvent::TrackUnpublished {
            room,
            participant,
            track_id,
        } => {
            if hub.room_of(&participant).as_deref() != Some(room.0.as_str()) {
                return;
            }
            tracing::info!(%participant, %room, track = %track_id, "track unpublished");
            hub.track_unpublished(&participant, &track_id);
        }
        SfuEvent::TrackPaused {
            participant,
            track_id,
            reason,
            ..
        } => {
            hub.send_to(
                &participant,
                ServerMessage::TrackPaused { track_id, reason },
            );
        }
        SfuEvent::TrackResumed {
            participant,
            track_id,
            ..
        } => {
            hub.send_to(&participant, ServerMessage::TrackResumed { track_id });
        }
        SfuEvent::PublisherLayers {
            participant,
            track_id,
            layers,
            ..
        } => {
            let layers = layers
                .into_iter()
                .map(|(rid, active)| huddle_proto::LayerActivity { rid, active })
                .collect();
            hub.send_to(
                &participant,
                ServerMessage::PublishLayers { track_id, layers },
            );
        }
        SfuEvent::ActiveSpeaker { room, participant } => {
            tracing::debug!(%room, ?participant, "active speaker");
            hub.tell_room(
                &room.0,
                &ServerMessage::ActiveSpeaker {
                    participant_id: participant.map(|p| p.0),
                },
            );
        }
        SfuEvent::ParticipantGone {
            room,
            participant,
            reason,
        } => {
            tracing::info!(%participant, %room, %reason, "SFU dropped participant");
            if let Some(removed) = hub.remove(&participant) {
                removed
                    .conn
                    .close(close_code::MEDIA_GONE, "media connection lost");
            }
        }
        other => tracing::debug!(?other, "unhandled SFU event"),
    }
}
