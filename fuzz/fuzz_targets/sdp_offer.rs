//! A client's SDP offer for its publisher connection, through the SFU's
//! own code and `rtc`'s (`Endpoint::publisher_offer`: the SFU's checks of
//! the remote SDP, setting it, and the answer), and through the
//! signaling's readers of offers (`offer::media_ways`,
//! `sdpfrag::ice_ufrag`). A bad offer is an error that leaves the SFU as
//! it was; an answer the SFU writes is SDP it reads back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rtc::peer_connection::sdp::RTCSessionDescription;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = std::str::from_utf8(data) else {
        return;
    };
    let _ = huddle_signaling::offer::media_ways(sdp);
    let _ = huddle_signaling::sdpfrag::ice_ufrag(sdp);

    let now = Instant::now();
    let (mut endpoint, id) = huddle_fuzz::endpoint_with_participant(now);
    if let Ok(answer) = endpoint.publisher_offer(now, &id, sdp.to_owned()) {
        RTCSessionDescription::answer(answer)
            .and_then(|a| a.unmarshal())
            .expect("the SFU's answer is SDP");
    }
    endpoint.handle_timeout(now);
    while endpoint.poll_transmit().is_some() {}
    endpoint
        .remove_participant(now, &id)
        .expect("the participant leaves");
    assert_eq!(endpoint.stats().participants, 0, "nothing of it is kept");
});
