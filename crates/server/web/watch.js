// huddle's WHEP viewer: one receive-only peer connection, negotiated over
// HTTP (POST /whep with the offer, PATCH to trickle candidates, DELETE to
// stop). Plain JS, no build step.
//
// URL parameters: room (prefill), autostart=1 (start at once; the tests use
// it). An access token goes in the fragment, #token=... (see token.js).
//
// For tests, window.whep exposes state() and inboundStats().
'use strict';

(() => {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  /** The current viewing session, or null. */
  let session = null;

  function setStatus(text) {
    $('status').textContent = text;
  }

  function showError(message) {
    $('error').textContent = message;
    $('error').hidden = !message;
  }

  /** An application/trickle-ice-sdpfrag body for `candidates` (RFC 8840). */
  function sdpFrag(pc, candidates) {
    const sdp = pc.localDescription.sdp;
    const ufrag = (sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
    const pwd = (sdp.match(/a=ice-pwd:(\S+)/) || [])[1];
    let body = `a=ice-ufrag:${ufrag}\r\na=ice-pwd:${pwd}\r\n`;
    const byMid = new Map();
    for (const c of candidates) {
      if (!byMid.has(c.sdpMid)) byMid.set(c.sdpMid, []);
      byMid.get(c.sdpMid).push(c);
    }
    for (const [mid, list] of byMid) {
      const t = pc.getTransceivers().find((x) => x.mid === mid);
      const kind = t ? t.receiver.track.kind : 'audio';
      body += `m=${kind} 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${mid}\r\n`;
      for (const c of list) body += `a=${c.candidate}\r\n`;
    }
    return body;
  }

  async function watch(room) {
    showError('');
    setStatus('getting a token…');
    const token = await window.huddleToken(room, `viewer-${Math.random().toString(36).slice(2, 8)}`);
    const auth = { Authorization: `Bearer ${token}` };
    const pc = new RTCPeerConnection();
    const s = { pc, resource: null, auth, pending: [], patches: [], ended: false };
    session = s;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const stream = new MediaStream();
    $('video').srcObject = stream;
    pc.ontrack = (e) => stream.addTrack(e.track);
    pc.onconnectionstatechange = () => {
      setStatus(`watching ${room}: ${pc.connectionState}`);
      if (pc.connectionState === 'failed') showError('The media connection failed.');
    };
    // Trickle our candidates once the session exists (RFC 9725 §4.3.1).
    const flush = async () => {
      if (!s.resource || !s.pending.length || s.ended) return;
      const candidates = s.pending.splice(0);
      const res = await fetch(s.resource, {
        method: 'PATCH',
        headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag' },
        body: sdpFrag(pc, candidates),
      }).catch((e) => ({ status: `${e.message}` }));
      s.patches.push(res.status);
    };
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        s.pending.push(e.candidate);
        flush();
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    setStatus('asking the server…');
    const res = await fetch('/whep', {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    const text = await res.text();
    if (res.status !== 201) {
      pc.close();
      throw new Error(`the server refused to play the room (${res.status}): ${text}`);
    }
    s.resource = new URL(res.headers.get('Location'), location.href).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    flush();
    $('room-label').textContent = room;
    $('watch-form').hidden = true;
    $('player').hidden = false;
  }

  /** End the session: DELETE the resource, close the connection. */
  async function stop() {
    const s = session;
    session = null;
    if (!s) return null;
    s.ended = true;
    let status = null;
    if (s.resource) {
      status = await fetch(s.resource, { method: 'DELETE', headers: s.auth }).then(
        (r) => r.status,
        () => null,
      );
    }
    s.pc.close();
    $('video').srcObject = null;
    $('player').hidden = true;
    $('watch-form').hidden = false;
    setStatus('not watching');
    return status;
  }

  $('watch-form').addEventListener('submit', (e) => {
    e.preventDefault();
    watch($('room').value.trim()).catch((err) => {
      session = null;
      setStatus('not watching');
      showError(err.message);
    });
  });
  $('stop').addEventListener('click', () => stop());
  window.addEventListener('pagehide', () => {
    if (session && session.resource) {
      // Best effort: let the server free the session at once.
      fetch(session.resource, { method: 'DELETE', headers: session.auth, keepalive: true });
    }
  });

  window.whep = {
    state: () => ({
      watching: !!session,
      connection: session ? session.pc.connectionState : 'closed',
      resource: session ? session.resource : null,
      patches: session ? [...session.patches] : [],
    }),
    /** inbound-rtp statistics by kind. */
    inboundStats: async () => {
      if (!session) return [];
      const report = await session.pc.getStats();
      const out = [];
      report.forEach((r) => {
        if (r.type === 'inbound-rtp') {
          out.push({
            kind: r.kind,
            packetsReceived: r.packetsReceived || 0,
            totalAudioEnergy: r.totalAudioEnergy || 0,
            framesDecoded: r.framesDecoded || 0,
          });
        }
      });
      return out;
    },
    stop,
  };

  $('room').value = params.get('room') || '';
  if (params.get('autostart') === '1' && $('room').value) {
    $('watch-form').requestSubmit();
  }
})();
