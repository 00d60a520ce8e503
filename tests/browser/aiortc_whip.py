#!/usr/bin/env python3
"""A WHIP (RFC 9725) publisher built on aiortc, for the interop tests.

    python3 tests/browser/aiortc_whip.py --endpoint http://127.0.0.1:PORT/whip \\
        --token TOKEN --seconds 20

Publishes a 440 Hz tone (Opus) and a moving test picture (VP8, 320x240,
15 fps) through WHIP, stays for --seconds, then ends the session with DELETE.
Everything stays on 127.0.0.1: ICE gathers on loopback only. Progress is
printed to stdout as one JSON object per line ("event": "connected",
"deleted", "stats"); any failure exits non-zero with the reason on stderr.
"""

import argparse
import asyncio
import fractions
import json
import math
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
)

# Loopback only: the machine has other interfaces, and test traffic must not
# leave it. aioice asks this function for the addresses to gather on.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms
VIDEO_RATE = 90000
FPS = 15


def emit(**event):
    print(json.dumps(event), flush=True)


class Paced:
    """Sleeps until a frame's presentation time, from a common start."""

    def __init__(self):
        self.start = None

    async def wait(self, seconds):
        if self.start is None:
            self.start = time.monotonic()
        delay = self.start + seconds - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class ToneTrack(MediaStreamTrack):
    """A 440 Hz sine at -12 dBFS, mono, 48 kHz, in 20 ms frames."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.pts = 0
        self.pace = Paced()

    async def recv(self):
        await self.pace.wait(self.pts / SAMPLE_RATE)
        amp = 0.25 * 32767
        pcm = bytearray()
        for i in range(FRAME_SAMPLES):
            v = int(amp * math.sin(2 * math.pi * 440 * (self.pts + i) / SAMPLE_RATE))
            pcm += v.to_bytes(2, "little", signed=True)
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(bytes(pcm))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.pts += FRAME_SAMPLES
        return frame


class PictureTrack(MediaStreamTrack):
    """320x240 color bars with a white bar sweeping across, 15 fps."""

    kind = "video"
    width, height = 320, 240

    def __init__(self):
        super().__init__()
        self.n = 0
        self.pace = Paced()

    async def recv(self):
        await self.pace.wait(self.n / FPS)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        bar = (self.n * 8) % self.width
        for i, plane in enumerate(frame.planes):
            w = plane.width
            row = bytearray(plane.line_size)
            for x in range(w):
                band = x * 8 // w  # eight vertical bands
                if i == 0:
                    row[x] = 235 if abs(x - bar * w // self.width) < w // 40 + 1 else 60 + band * 20
                else:
                    row[x] = (40 + band * 25) if i == 1 else (220 - band * 25)
            plane.update(bytes(row) * plane.height)
        frame.pts = self.n * (VIDEO_RATE // FPS)
        frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        self.n += 1
        return frame


def http(method, url, token, body=None, content_type=None):
    """One blocking HTTP request; returns (status, headers, body text).

    The headers are case-insensitive (the server sends lowercase names).
    """
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


async def outbound_packets(pc):
    report = await pc.getStats()
    return {
        s.kind: s.packetsSent
        for s in report.values()
        if s.type == "outbound-rtp"
    }


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True, help="WHIP endpoint URL")
    ap.add_argument("--token", required=True, help="bearer token (publish right)")
    ap.add_argument("--seconds", type=float, default=20, help="how long to publish")
    args = ap.parse_args()

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    pc = RTCPeerConnection()
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected":
            connected.set()
        elif pc.connectionState == "failed":
            stop.set()

    pc.addTrack(ToneTrack())
    pc.addTrack(PictureTrack())
    # aiortc gathers every candidate before setLocalDescription returns, so
    # the offer is complete: no trickle needed.
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await loop.run_in_executor(
        None,
        lambda: http("POST", args.endpoint, args.token, pc.localDescription.sdp, "application/sdp"),
    )
    if status != 201:
        raise SystemExit(f"WHIP POST refused: {status} {answer}")
    location = headers.get("Location")
    if not location:
        raise SystemExit("WHIP answer without a Location header")
    resource = urllib.parse.urljoin(args.endpoint, location)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(connected.wait(), timeout=15)
    except asyncio.TimeoutError:
        raise SystemExit(f"not connected after 15 s (state {pc.connectionState})")
    emit(event="connected", location=location)

    try:
        await asyncio.wait_for(stop.wait(), timeout=args.seconds)
    except asyncio.TimeoutError:
        pass
    emit(event="stats", packets_sent=await outbound_packets(pc))
    status, _, body = await loop.run_in_executor(
        None, lambda: http("DELETE", resource, args.token)
    )
    emit(event="deleted", status=status)
    await pc.close()
    if status != 200:
        raise SystemExit(f"WHIP DELETE answered {status}: {body}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SystemExit as e:
        if e.code not in (None, 0):
            print(f"aiortc_whip: {e.code}", file=sys.stderr)
            sys.exit(1)
