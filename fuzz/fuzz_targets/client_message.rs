//! A WebSocket text frame from a client, as the signaling reads it
//! (`huddle_proto::decode_client_message`): any input gives a message or
//! a clear error, never a panic; a message it accepts, written again,
//! reads back the same.

#![no_main]

use huddle_proto::decode_client_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(message) = decode_client_message(text) else {
        return;
    };
    let written = serde_json::to_string(&message).expect("an accepted message serializes");
    let again = decode_client_message(&written).expect("what the server accepts it accepts again");
    assert_eq!(
        serde_json::to_string(&again).expect("serializes"),
        written,
        "a round trip changes nothing"
    );
});
