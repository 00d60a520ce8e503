// huddle web client: end-to-end encryption (docs/e2ee.md), in a module
// worker. It holds this participant's E2EE state (huddle-e2ee as
// WebAssembly: /e2ee/huddle_e2ee_web.js), takes the server's e2ee_*
// messages from the page and gives back what to send, and runs the
// encoded transforms (RTCRtpScriptTransform) of the page's senders and
// receivers:
//
//   - sending: each encoded frame encrypted with SFrame under this
//     member's key of the current epoch; an audio frame with its RTP
//     timestamp as metadata, a VP8 frame with its first bytes in clear
//     (the frame tag, and on a keyframe start code and size: the SFU
//     tells keyframes by them) as metadata. Nothing goes out before the
//     group exists.
//   - receiving: each frame decrypted, and dropped unless it authenticates
//     and comes from the member whose track it arrives on (by the m-line's
//     participant) and from the track's kind of stream; a copy of a frame
//     taken already is dropped; a frame of an epoch not begun here waits
//     (up to HOLD_MS, HOLD_MAX frames) for its keys.
//
// Messages from the page: {type: 'start', identity, room} (after joined,
// and again after joining anew), {type: 'server', text} (an e2ee_* message),
// {type: 'who', mids: [[mid, participant id]], identities: [[participant
// id, identity]]}, {type: 'stats'}. To the page: {type: 'send', msg},
// {type: 'epoch', epoch: {epoch, safety_code, members}}, {type: 'stats',
// stats}, {type: 'error', message} (a message not taken), {type: 'fatal',
// message} (the module did not load: nothing can be sent or received).

import init, { E2eeClient } from './e2ee/huddle_e2ee_web.js';

/** How long a received frame waits for its epoch's keys. */
const HOLD_MS = 1000;
/** Most frames waiting at once. */
const HOLD_MAX = 128;

const ready = init().catch((e) => {
  self.postMessage({ type: 'fatal', message: `cannot load the E2EE module: ${e.message || e}` });
  throw e;
});
let client = null;
const midParticipant = new Map();
const participantIdentity = new Map();
/** Frames waiting for their epoch: {at, frame, controller, options}. */
let held = [];
const stats = { encrypted: 0, decrypted: 0, dropped: 0, held: 0, waitedTooLong: 0 };

const post = (m) => self.postMessage(m);

self.onmessage = async (e) => {
  await ready;
  const m = e.data;
  try {
    switch (m.type) {
      case 'start':
        if (client) client.free();
        client = new E2eeClient(m.identity, m.room);
        held = [];
        post({ type: 'send', msg: JSON.parse(client.keyPackageMessage()) });
        break;
      case 'server': {
        if (!client) return;
        const out = JSON.parse(client.handle(m.text));
        for (const msg of out.send) post({ type: 'send', msg });
        if (out.epoch) {
          post({ type: 'epoch', epoch: out.epoch });
          release();
        }
        if (out.removed) post({ type: 'error', message: 'removed from the end-to-end encryption group' });
        break;
      }
      case 'who':
        midParticipant.clear();
        for (const [mid, id] of m.mids) midParticipant.set(mid, id);
        for (const [id, identity] of m.identities) participantIdentity.set(id, identity);
        break;
      case 'stats':
        post({ type: 'stats', stats: { ...stats } });
        break;
      default:
        break;
    }
  } catch (err) {
    post({ type: 'error', message: `${m.type}: ${err.message || err}` });
  }
};

/** Bytes of a VP8 frame kept in clear: 10 of a keyframe, 3 of another. */
function clearLength(data) {
  const keyframe = data.length > 0 && (data[0] & 0x01) === 0;
  return Math.min(keyframe ? 10 : 3, data.length);
}

/** An audio frame's RTP timestamp, 4 bytes big-endian: its metadata. */
function timestampBytes(frame) {
  const md = frame.getMetadata();
  const ts = md.rtpTimestamp ?? frame.timestamp;
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, ts >>> 0);
  return out;
}

function seal(frame, controller, options) {
  if (!client) return; // no keys yet: nothing goes out in clear
  const data = new Uint8Array(frame.data);
  let out;
  if (options.kind === 'audio') {
    out = client.encrypt('audio', timestampBytes(frame), data);
    if (!out) return;
  } else {
    const n = clearLength(data);
    const sealed = client.encrypt('camera', data.subarray(0, n), data.subarray(n));
    if (!sealed) return;
    out = new Uint8Array(n + sealed.length);
    out.set(data.subarray(0, n));
    out.set(sealed, n);
  }
  frame.data = out.buffer;
  stats.encrypted += 1;
  controller.enqueue(frame);
}

/** Decrypt a received frame; false when it must wait for its epoch. */
function open(frame, controller, options) {
  if (!client) return false;
  const data = new Uint8Array(frame.data);
  const audio = options.kind === 'audio';
  const n = audio ? 0 : clearLength(data);
  const clear = data.slice(0, n);
  const sframe = data.subarray(n);
  if (client.isAhead(sframe)) return false;
  if (!client.isFresh(sframe)) {
    stats.dropped += 1;
    return true;
  }
  let opened;
  try {
    opened = client.decrypt(audio ? timestampBytes(frame) : clear, sframe);
  } catch {
    stats.dropped += 1;
    return true;
  }
  const identity = participantIdentity.get(midParticipant.get(options.mid));
  const stream = audio ? 'audio' : 'camera';
  const plaintext = opened.plaintext;
  const ok = opened.identity !== undefined && opened.identity === identity && opened.stream === stream;
  opened.free();
  if (!ok) {
    stats.dropped += 1;
    return true;
  }
  const out = new Uint8Array(n + plaintext.length);
  out.set(clear);
  out.set(plaintext, n);
  frame.data = out.buffer;
  stats.decrypted += 1;
  controller.enqueue(frame);
  return true;
}

function hold(frame, controller, options) {
  held.push({ at: Date.now(), frame, controller, options });
  stats.held += 1;
  while (held.length > HOLD_MAX) held.shift();
}

/** A new epoch began: the frames that waited for it, in order. */
function release() {
  const now = Date.now();
  const waiting = held;
  held = [];
  for (const h of waiting) {
    if (now - h.at > HOLD_MS) {
      stats.waitedTooLong += 1;
      continue;
    }
    try {
      if (!open(h.frame, h.controller, h.options)) held.push(h);
    } catch {
      // The stream closed meanwhile (the track ended).
    }
  }
}

self.onrtctransform = (event) => {
  const { transformer } = event;
  const options = transformer.options;
  const transform =
    options.side === 'send'
      ? (frame, controller) => seal(frame, controller, options)
      : (frame, controller) => {
          if (!open(frame, controller, options)) hold(frame, controller, options);
        };
  transformer.readable
    .pipeThrough(new TransformStream({ transform }))
    .pipeTo(transformer.writable)
    .catch(() => {});
};
