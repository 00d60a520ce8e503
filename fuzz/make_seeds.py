#!/usr/bin/env python3
"""Write the seed inputs of the fuzz targets into fuzz/corpus/<target>/
(seed-*.bin; what the fuzzer finds beside them is kept too). Run from
anywhere; idempotent."""
import base64, hashlib, hmac, json, os, struct

here = os.path.dirname(os.path.abspath(__file__))
SECRET = b"fuzz-secret-0123456789abcdef0123456789"  # as in fuzz_targets/token.rs


def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name + ".bin"), "wb") as f:
        f.write(data)


offer = open(os.path.join(here, "seeds", "offer.sdp"), "rb").read()
simulcast = open(os.path.join(here, "seeds", "offer_simulcast.sdp"), "rb").read()

# client_message: one of each type the server reads.
cand = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0}
messages = {
    "join": {"type": "join", "token": "x.y.z"},
    "join_e2ee": {"type": "join", "token": "x.y.z", "e2ee": True},
    "offer": {"type": "offer", "sdp": offer.decode()},
    "answer": {"type": "answer", "sdp": "v=0\r\n"},
    "candidate": {"type": "candidate", "candidate": cand, "pc": "publisher"},
    "candidate_sub": {"type": "candidate", "candidate": cand, "pc": "subscriber"},
    "mute": {"type": "mute", "track_id": "t", "muted": True},
    "track_settings": {"type": "track_settings", "track_id": "t", "visible": True,
                       "width": 320, "height": 180},
    "ping": {"type": "ping"},
    "leave": {"type": "leave"},
    "resume": {"type": "resume", "token": "x.y.z", "received": 12},
    "restart_ice": {"type": "restart_ice"},
    "e2ee_key_package": {"type": "e2ee_key_package", "key_package": "AAAA"},
    "e2ee_commit": {"type": "e2ee_commit", "epoch": 1, "commit": "AAAA",
                    "welcome": "AAAA", "added": ["PA_b"], "removed": []},
}
for name, m in messages.items():
    put("client_message", name, json.dumps(m))


# token: HS256 tokens as docs/signaling.md specifies, valid until 2100.
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, key=SECRET, alg="HS256"):
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key, (head + "." + body).encode(), hashlib.sha256).digest())
    return head + "." + body + "." + sig


base = {"sub": "alice", "room": "r", "publish": True, "subscribe": True,
        "iat": 1765000000, "exp": 4102444800}
put("token", "valid", jwt(base))
put("token", "e2ee", jwt(dict(base, e2ee=True, name="Alice")))
put("token", "admin", jwt({"sub": "ops", "room": "", "publish": False, "subscribe": False,
                           "admin": True, "iat": 1765000000, "exp": 4102444800}))
put("token", "wrong_key", jwt(base, key=b"another-secret-0123456789abcdef0123"))
put("token", "alg_none", jwt(base, alg="none"))
put("token", "expired", jwt(dict(base, exp=1000)))

# sdp_offer: Chromium-shaped offers, whole and cut.
put("sdp_offer", "offer", offer)
put("sdp_offer", "simulcast", simulcast)
put("sdp_offer", "cut", offer[: len(offer) // 2])

# trickle: a selector byte, then a candidate or a WHIP PATCH body.
cands = [
    "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
    "candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
    "candidate:3 1 udp 1686052607 198.51.100.7 61000 typ srflx raddr 10.0.0.2 rport 50000",
    "candidate:4 1 udp 41885439 203.0.113.9 3478 typ relay raddr 198.51.100.7 rport 61000",
    "candidate:5 1 udp 2122262783 ::1 50001 typ host",
    "candidate:6 1 udp 2122260223 abcd-ef.local 50000 typ host",
]
for i, c in enumerate(cands):
    put("trickle", "cand%d" % i, bytes([i * 2 % 8]) + c.encode())
patch = ("a=ice-ufrag:fzUf\r\na=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
         "a=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n")
put("trickle", "patch", b"\x00" + patch.encode())


# media_port: steps of (op, u16 length, bytes).
def step(op, data):
    return bytes([op]) + struct.pack(">H", len(data)) + data


stun = bytes.fromhex("000100082112a442") + b"\x01" * 12 + bytes.fromhex("00060004") + b"ab:c"
dtls = bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 4, 1, 0, 0, 0])
opus = bytes([0x78]) + b"\x11" * 60
vp8_key = bytes([0x10, 0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xB4, 0x00]) + b"\x22" * 100
vp8_pid = bytes([0x90, 0x80, 0x81, 0x23, 0x00, 0x9D, 0x01, 0x2A]) + b"\x22" * 50
red = bytes([0x80 | 111, 0x0F, 0x00, 40, 111]) + b"\x33" * 40 + b"\x44" * 40
rr = bytes.fromhex("81c90007") + b"\x00\x00\x00\x01" + b"\x10\x00\x00\x01" + b"\x00" * 20
nack = bytes.fromhex("8dcd0003") + b"\x00\x00\x00\x01" + b"\x10\x00\x00\x01" + bytes.fromhex("03e80001")
pli = bytes.fromhex("81ce0002") + b"\x00\x00\x00\x01" + b"\x10\x00\x00\x01"
twcc = (bytes.fromhex("8fcd0005") + b"\x00\x00\x00\x01" + b"\x10\x00\x00\x01"
        + bytes.fromhex("0001000200000001") + bytes.fromhex("20020a0a"))
put("media_port", "stun", step(0, stun) + step(1, stun) + step(2, stun))
put("media_port", "dtls", step(0, dtls) + step(2, dtls[:5]))
put("media_port", "audio", step(3, opus) * 3 + step(7, b"\x14") + step(3, opus))
put("media_port", "video", step(4, vp8_key) + step(4, vp8_pid) + step(7, b"\x21") + step(4, b""))
put("media_port", "red", step(5, red) + step(5, red[:3]) + step(5, b""))
put("media_port", "rtcp", step(6, rr) + step(6, nack) + step(6, pli) + step(6, twcc))
put("media_port", "mixed", step(3, opus) + step(6, nack) + step(0, b"\x80" * 12) + step(7, b"\xff"))
# whip: [how, headers, body]: how bit 0 = WHEP, bits 1-2 the method (0
# POST, 1 PATCH, 2 DELETE, 3 OPTIONS), bits 3-4 the path; headers bits 0-1
# the content type, 2-3 the token (0 valid), bit 4 If-Match.
recvonly = offer.replace(b"a=sendonly", b"a=recvonly")
put("whip", "publish", bytes([0, 0]) + offer)
put("whip", "publish_simulcast", bytes([0, 0]) + simulcast)
put("whip", "view", bytes([1, 0]) + recvonly)
put("whip", "patch", bytes([1 << 1 | 1 << 3, 1]) + patch.encode())
put("whip", "delete", bytes([2 << 1 | 1 << 3, 0]))
put("whip", "options", bytes([3 << 1, 0]))
put("whip", "bad_token", bytes([0, 2 << 2]) + offer)
print("seeds written under", os.path.join(here, "corpus"))
