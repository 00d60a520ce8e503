//! `--video`: a synthetic VP8 test video (320x180, 15 fps, a keyframe every
//! second and on every keyframe request). Its frames have valid VP8 headers
//! but filler content: it exercises the RTP path (the server forwards it,
//! receivers count its packets and see its keyframes' size), but a real
//! decoder shows nothing.

use huddle::media::rtp::{SyntheticVideo, SyntheticVideoConfig, Vp8Packetizer};
use huddle::LocalTrack;
use std::sync::Arc;
use std::time::Duration;

/// Frames per second sent.
const FPS: u32 = 15;

/// Send the test video on `track` until the call stops taking it.
pub async fn send(track: Arc<LocalTrack>) -> anyhow::Result<()> {
    let mut video = SyntheticVideo::new(SyntheticVideoConfig {
        width: 320,
        height: 180,
        fps: FPS,
        frame_bytes: 600,
        keyframe_bytes: 6000,
        keyframe_interval: FPS,
        seed: 1,
    })?;
    let mut packetizer = Vp8Packetizer::new(track.ssrc().0, huddle::VP8_PT, 0)?;
    let frame_time = Duration::from_secs(1) / FPS;
    let mut tick = tokio::time::interval(frame_time);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let frame = video.next_frame();
                let packets = packetizer.packetize(&frame.data, frame.timestamp)?;
                let payloads: Vec<&[u8]> = packets.iter().map(|p| p.payload.as_slice()).collect();
                track.write_frame(&payloads, frame_time).await?;
            }
            wanted = track.keyframe_requested() => {
                if !wanted {
                    return Ok(());
                }
                video.request_keyframe();
            }
        }
    }
}
