#!/usr/bin/python3
"""A WHEP viewer built on GStreamer's webrtcbin (libnice), for the interop tests.

    /usr/bin/python3 tests/browser/gst_whep_viewer.py \\
        --endpoint http://127.0.0.1:PORT/whep --token TOKEN --seconds 30

Offers one receive-only Opus audio transceiver (bundle-policy max-bundle,
all candidates gathered before the offer is sent, no trickle), POSTs the
offer to the WHEP endpoint, applies the answer, decodes the audio it
receives, and after --seconds of connection ends the session with DELETE.
Like every receive-only libnice peer, it sends the SFU nothing after ICE
nomination but RTCP receiver reports (about every 5 s) and a STUN keepalive
every 25 s: the case the SFU's own consent checks are for.

Needs Debian's GStreamer (gstreamer1.0-plugins-bad, -nice, -good, -base)
and its Python bindings (python3-gi, gir1.2-gst-plugins-bad-1.0), so run it
with /usr/bin/python3. Everything stays on 127.0.0.1: libnice gathers on
loopback only. Progress goes to stdout as one JSON object per line ("event":
"answered", "connected", "deleted", "result"); "result" has the counts:

    packets          RTP packets received (audio, after the jitter buffer)
    per_second       RTP packets in each second of the window, from the
                     moment the connection is connected
    seconds_with_packets  seconds of the window with at least one packet
    longest_gap_s    the longest time between two packets (first to last)
    decoded_s        seconds of audio decoded by opusdec

Any failure or timeout exits non-zero with the reason on stderr.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
HTTP_TIMEOUT_S = 10


def emit(**event):
    print(json.dumps(event), flush=True)


class Viewer:
    def __init__(self, args):
        self.args = args
        self.loop = GLib.MainLoop()
        self.failure = None
        self.location = None
        self.connected_at = None
        self.lock = threading.Lock()
        self.packet_times = []  # monotonic arrival time of every RTP packet
        self.decoded_ns = 0

        self.pipe = Gst.Pipeline.new("viewer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        if self.webrtc is None:
            raise RuntimeError("no webrtcbin element (apt-get install gstreamer1.0-plugins-bad gstreamer1.0-nice)")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)

        # Loopback only: without an explicit address libnice gathers on every
        # interface of the machine, and test traffic must not leave it.
        # PyGObject takes over webrtcbin's own reference to the ICE agent
        # (GStreamer 1.22): the wrapper is kept for the life of the process
        # (main() ends with os._exit), or the agent would be freed under
        # webrtcbin.
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.ice.set_property("ice-tcp", False)

        self.webrtc.emit(
            "add-transceiver",
            GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
            Gst.Caps.from_string(OPUS_CAPS),
        )
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering_state)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        self.webrtc.connect("pad-added", self.on_pad_added)
        self.offered = False

        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_bus_error)

    # --- failure and the end -------------------------------------------------

    def fail(self, message):
        """Record the first failure and stop the main loop (any thread)."""
        if self.failure is None:
            self.failure = message
        GLib.idle_add(self.loop.quit)

    def on_bus_error(self, _bus, message):
        err, debug = message.parse_error()
        self.fail(f"GStreamer error from {message.src.get_name()}: {err.message} ({debug})")

    # --- offer / answer ------------------------------------------------------

    def on_negotiation_needed(self, _element):
        if self.offered:
            return
        self.offered = True
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer_created(self, promise, _data):
        if promise.wait() != Gst.PromiseResult.REPLIED:
            self.fail("create-offer: no reply")
            return
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            self.fail(f"create-offer failed: {reply.to_string() if reply is not None else 'no reply'}")
            return
        self.webrtc.emit("set-local-description", offer, None)

    def on_gathering_state(self, element, _pspec):
        state = element.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            # Not from webrtcbin's thread: the POST blocks.
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        desc = self.webrtc.get_property("local-description")
        if desc is None:
            self.fail("gathering complete but no local description")
            return False
        lines = desc.sdp.as_text().splitlines()
        # Only loopback candidates (belt and braces with add-local-ip-address).
        kept = [
            l for l in lines
            if not l.startswith("a=candidate:") or " 127.0.0.1 " in l
        ]
        if not any(l.startswith("a=candidate:") for l in kept):
            self.fail("the offer has no 127.0.0.1 candidate")
            return False
        offer = "\r\n".join(kept) + "\r\n"
        req = urllib.request.Request(
            self.args.endpoint,
            data=offer.encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.args.token}",
                "Content-Type": "application/sdp",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as res:
                status = res.status
                location = res.headers.get("Location")
                answer = res.read().decode()
        except urllib.error.HTTPError as e:
            self.fail(f"POST {self.args.endpoint}: {e.code} {e.read().decode(errors='replace')}")
            return False
        except OSError as e:
            self.fail(f"POST {self.args.endpoint}: {e}")
            return False
        if status != 201 or not location:
            self.fail(f"POST {self.args.endpoint}: status {status}, Location {location!r} (want 201 and a Location)")
            return False
        self.location = urllib.parse.urljoin(self.args.endpoint, location)
        res, msg = GstSdp.SDPMessage.new_from_text(answer)
        if res != GstSdp.SDPResult.OK:
            self.fail(f"the answer does not parse as SDP: {answer!r}")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", desc, None)
        emit(event="answered", location=location,
             candidates=sum(1 for l in answer.splitlines() if l.startswith("a=candidate:")))
        return False

    # --- connection and media ------------------------------------------------

    def on_connection_state(self, element, _pspec):
        state = element.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and self.connected_at is None:
            self.connected_at = time.monotonic()
            GLib.idle_add(self.on_connected)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.fail("the peer connection failed")

    def on_connected(self):
        emit(event="connected")
        GLib.timeout_add(int(self.args.seconds * 1000), self.finish)
        return False

    def on_pad_added(self, _element, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_string("media") if caps and caps.get_size() else None
        if media != "audio":
            sink = Gst.ElementFactory.make("fakesink")
            self.pipe.add(sink)
            sink.sync_state_with_parent()
            pad.link(sink.get_static_pad("sink"))
            return
        depay = Gst.ElementFactory.make("rtpopusdepay")
        dec = Gst.ElementFactory.make("opusdec")
        sink = Gst.ElementFactory.make("fakesink")
        if None in (depay, dec, sink):
            self.fail("missing rtpopusdepay/opusdec (gstreamer1.0-plugins-good, -base)")
            return
        sink.set_property("sync", False)
        for e in (depay, dec, sink):
            self.pipe.add(e)
        depay.link(dec)
        dec.link(sink)
        for e in (depay, dec, sink):
            e.sync_state_with_parent()
        pad.add_probe(Gst.PadProbeType.BUFFER, self.on_rtp)
        dec.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self.on_decoded)
        if pad.link(depay.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
            self.fail("cannot link the audio pad to rtpopusdepay")

    def on_rtp(self, _pad, info):
        now = time.monotonic()
        with self.lock:
            self.packet_times.append(now)
        return Gst.PadProbeReturn.OK

    def on_decoded(self, pad, info):
        buf = info.get_buffer()
        duration = buf.duration
        if duration == Gst.CLOCK_TIME_NONE:
            caps = pad.get_current_caps()
            s = caps.get_structure(0)
            _, rate = s.get_int("rate")
            _, channels = s.get_int("channels")
            duration = buf.get_size() * Gst.SECOND // (2 * channels * rate)
        with self.lock:
            self.decoded_ns += duration
        return Gst.PadProbeReturn.OK

    # --- the end ---------------------------------------------------------------

    def finish(self):
        end = time.monotonic()
        with self.lock:
            times = list(self.packet_times)
            decoded_ns = self.decoded_ns
        n = int(self.args.seconds)
        per_second = [0] * n
        for t in times:
            i = int(t - self.connected_at)
            if 0 <= i < n:
                per_second[i] += 1
        gaps = [b - a for a, b in zip(times, times[1:])]
        if times:
            # Silence at the end of the window counts as a gap too.
            gaps.append(end - times[-1])
        self.result = dict(
            event="result",
            seconds=n,
            packets=len(times),
            per_second=per_second,
            seconds_with_packets=sum(1 for c in per_second if c > 0),
            first_packet_after_s=round(times[0] - self.connected_at, 3) if times else None,
            longest_gap_s=round(max(gaps), 3) if gaps else None,
            decoded_s=round(decoded_ns / Gst.SECOND, 3),
        )
        self.delete()
        self.loop.quit()
        return False

    def delete(self):
        req = urllib.request.Request(
            self.location, method="DELETE",
            headers={"Authorization": f"Bearer {self.args.token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as res:
                emit(event="deleted", status=res.status)
        except urllib.error.HTTPError as e:
            emit(event="deleted", status=e.code)
            self.fail(f"DELETE {self.location}: {e.code}")
        except OSError as e:
            self.fail(f"DELETE {self.location}: {e}")

    def run(self):
        self.result = None
        limit = self.args.connect_timeout

        def connect_deadline():
            if self.connected_at is None:
                self.fail(f"not connected after {limit} s")
            return False

        GLib.timeout_add(int(limit * 1000), connect_deadline)
        # A hard bound on the whole run, whatever happens.
        GLib.timeout_add(int((limit + self.args.seconds + 2 * HTTP_TIMEOUT_S) * 1000),
                         lambda: self.fail("the run did not finish in time") or False)
        if self.pipe.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the pipeline does not start")
        try:
            self.loop.run()
        finally:
            self.pipe.set_state(Gst.State.NULL)
        if self.failure is not None:
            # Leave the room even after a failure, if a session was made.
            if self.location is not None and self.result is None:
                try:
                    self.delete()
                except Exception:  # noqa: BLE001 -- best effort on the way out
                    pass
            raise RuntimeError(self.failure)
        return self.result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True, help="WHEP endpoint, e.g. http://127.0.0.1:7880/whep")
    p.add_argument("--token", required=True, help="bearer token that may subscribe")
    p.add_argument("--seconds", type=float, default=30, help="how long to view once connected")
    p.add_argument("--connect-timeout", type=float, default=20, help="seconds to get connected")
    args = p.parse_args()
    if urllib.parse.urlparse(args.endpoint).hostname != "127.0.0.1":
        p.error("the endpoint must be on 127.0.0.1")
    Gst.init(None)
    code = 0
    try:
        emit(**Viewer(args).run())
    except RuntimeError as e:
        print(f"gst_whep_viewer: {e}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # No teardown: see the note on the ICE agent in Viewer.__init__.
    os._exit(code)


if __name__ == "__main__":
    main()
