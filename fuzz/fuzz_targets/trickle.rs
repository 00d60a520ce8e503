//! Trickled ICE candidates: a `candidate` message's candidate (applied to
//! a participant's publisher or subscriber connection,
//! `Endpoint::remote_candidate`) and a WHIP/WHEP PATCH body
//! (`sdpfrag::parse`). Whatever the input, an error or an added
//! candidate, never a panic, and the participant still leaves cleanly.
//! The participant is made once and used for [`REBUILD_EVERY`] inputs.

#![no_main]

use huddle_proto::{IceCandidate, PcRole};
use huddle_sfu::endpoint::Endpoint;
use huddle_sfu::ParticipantId;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::time::Instant;

/// A publisher offer the SFU takes (Chromium's shape).
const OFFER: &str = include_str!("../seeds/offer.sdp");

/// Inputs one participant takes before it is made again (its connections
/// keep what was added).
const REBUILD_EVERY: u32 = 1_000;

/// An endpoint with one participant whose publisher connection is
/// negotiated, and how many inputs it has taken.
struct Setup {
    endpoint: Endpoint,
    id: ParticipantId,
    runs: u32,
}

impl Setup {
    fn new() -> Self {
        let now = Instant::now();
        let (mut endpoint, id) = huddle_fuzz::endpoint_with_participant(now);
        endpoint
            .publisher_offer(now, &id, OFFER.to_owned())
            .expect("the seed offer is taken");
        Setup {
            endpoint,
            id,
            runs: 0,
        }
    }
}

thread_local! {
    static SETUP: RefCell<Option<Setup>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = huddle_signaling::sdpfrag::parse(text);

    SETUP.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.runs >= REBUILD_EVERY) {
            if let Some(mut old) = slot.take() {
                old.endpoint
                    .remove_participant(Instant::now(), &old.id)
                    .expect("the participant leaves");
            }
            *slot = Some(Setup::new());
        }
        let Some(setup) = slot.as_mut() else {
            return;
        };
        setup.runs += 1;
        let role = if selector & 1 == 0 {
            PcRole::Publisher
        } else {
            PcRole::Subscriber
        };
        let candidate = IceCandidate {
            candidate: text.to_owned(),
            sdp_mid: (selector & 2 != 0).then(|| "0".to_owned()),
            sdp_mline_index: (selector & 4 != 0).then_some(u16::from(selector >> 4)),
            username_fragment: None,
        };
        let now = Instant::now();
        let _ = setup
            .endpoint
            .remote_candidate(now, &setup.id, role, candidate);
        setup.endpoint.handle_timeout(now);
        while setup.endpoint.poll_transmit().is_some() {}
    });
});
