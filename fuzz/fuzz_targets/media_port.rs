//! The media port's datagram path through a connected SFU endpoint, on
//! the sans-IO harness the SFU's tests use (`crates/sfu/tests/harness`):
//! "a" publishes audio (RED negotiated) and video, "b" receives both, ICE,
//! DTLS and SRTP all up. Each input is a series of steps:
//!
//! - raw datagrams from a's publisher address, b's subscriber address or
//!   an unknown one (demultiplexing, STUN/ICE-lite, DTLS, SRTP/SRTCP
//!   checks);
//! - RTP with any payload through a's real SRTP (so the SFU decrypts it and
//!   handles what is inside: RED, VP8 descriptors, keyframe detection,
//!   forwarding to b);
//! - any RTCP that parses, through b's real SRTCP (receiver reports,
//!   NACKs, PLIs, TWCC and RFC 8888 feedback, REMB...);
//! - time passing.
//!
//! Nothing may panic or livelock (the harness panics on a livelock). The
//! connected call is built once and reused; it is built again every
//! [`REBUILD_EVERY`] inputs so that what one input leaves behind stays
//! bounded.

#![no_main]

#[path = "../../crates/sfu/tests/harness/mod.rs"]
#[allow(dead_code, unused_imports, clippy::all)]
mod harness;

use harness::{Client, ClientId, Net, Role};
use huddle_proto::TrackKind;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

/// Inputs run on one connected call before it is built again.
const REBUILD_EVERY: u32 = 2_000;

struct Call {
    net: Net,
    a: ClientId,
    b: ClientId,
    runs: u32,
}

impl Call {
    fn new() -> Self {
        let mut net = Net::new();
        net.red_clients = true;
        let a = net.join("a", true, true);
        let b = net.join("b", false, false);
        net.connect();
        net.start_media(a, TrackKind::Audio, &[b]);
        net.start_media(a, TrackKind::Video, &[b]);
        net.connect();
        Call { net, a, b, runs: 0 }
    }

    /// Send `bytes` as RTCP from b's subscriber connection, if they parse.
    fn rtcp_from_b(&mut self, bytes: &[u8]) {
        let mut buf = bytes;
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut buf) else {
            return;
        };
        let now = self.net.now;
        let Some(pc) = self.net.clients[self.b].subscriber.as_mut() else {
            return;
        };
        let receivers: Vec<_> = pc.pc.get_receivers().collect();
        if let Some(mut receiver) = receivers.first().and_then(|&r| pc.pc.rtp_receiver(r)) {
            let _ = receiver.write_rtcp(now, packets);
        }
    }

    fn step(&mut self, op: u8, bytes: &[u8]) {
        let unknown: SocketAddr = ([127, 0, 0, 1], 9).into();
        let now = self.net.now;
        match op % 8 {
            0 => {
                let from = Client::addr(self.a, Role::Publisher);
                self.net.endpoint.handle_datagram(now, from, bytes);
            }
            1 => {
                let from = Client::addr(self.b, Role::Subscriber);
                self.net.endpoint.handle_datagram(now, from, bytes);
            }
            2 => self.net.endpoint.handle_datagram(now, unknown, bytes),
            3 => self.net.send_rtp(self.a, TrackKind::Audio, bytes),
            4 => self.net.send_rtp(self.a, TrackKind::Video, bytes),
            5 => {
                if self.net.red_payload_type(self.a).is_some() {
                    self.net.send_red(self.a, bytes);
                }
            }
            6 => self.rtcp_from_b(bytes),
            _ => {
                let ms = bytes.first().copied().unwrap_or(0);
                self.net.drive_for(Duration::from_millis(u64::from(ms)));
            }
        }
        self.net.pump();
    }
}

thread_local! {
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    CALL.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.runs >= REBUILD_EVERY) {
            *slot = Some(Call::new());
        }
        let Some(call) = slot.as_mut() else {
            return;
        };
        call.runs += 1;
        // Steps: an op byte, a two-byte length (big-endian, up to a
        // datagram's 1500 bytes), that many bytes.
        let mut rest = data;
        while let [op, hi, lo, tail @ ..] = rest {
            let n = usize::from(u16::from_be_bytes([*hi, *lo]))
                .min(1500)
                .min(tail.len());
            let (bytes, next) = tail.split_at(n);
            call.step(*op, bytes);
            rest = next;
        }
        call.net.drive_for(Duration::from_millis(20));
    });
});
