// huddle's WHEP viewer: one receive-only peer connection, negotiated over
// HTTP (POST /whep with the offer, PATCH to trickle candidates, DELETE to
// stop). Plain JS, no build step.
//
// When the media path breaks (the connection goes disconnected or failed,
// or the machine's network comes back) the viewer restarts ICE by PATCH
// (RFC 9725 §4.3.2): new credentials of its own in, the server's back, and
// checks start again from wherever the machine now is.
//
// URL parameters: room (prefill), autostart=1 (start at once; the tests use
// it). An access token goes in the fragment, #token=... (see token.js).
//
// For tests, window.whep exposes state(), inboundStats() and restartIce().
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

  /** How long the connection may stay disconnected before an ICE restart. */
  const DISCONNECTED_GRACE_MS = 1000;
  /** Waits between ICE restarts while the connection stays down. */
  const RESTART_BACKOFF_MS = [2000, 4000, 8000, 16000];

  /** The value of the first `a=name:` line of an SDP or fragment. */
  function sdpValue(sdp, name) {
    const m = sdp.match(new RegExp(`^a=${name}:(\\S+)`, 'm'));
    return m ? m[1] : null;
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
    const s = {
      pc,
      resource: null,
      auth,
      etag: null,
      pending: [],
      patches: [],
      ended: false,
      restarting: false,
      restarts: 0,
      downTimer: null,
    };
    session = s;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    const stream = new MediaStream();
    $('video').srcObject = stream;
    pc.ontrack = (e) => stream.addTrack(e.track);
    pc.onconnectionstatechange = () => {
      setStatus(`watching ${room}: ${pc.connectionState}`);
      watchPath(s);
    };
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        s.pending.push(e.candidate);
        flush(s);
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
    s.etag = res.headers.get('ETag');
    // The server's TURN servers, with this session's credentials (RFC 9725
    // §4.4): too late for the first gathering, used by every ICE restart
    // (so a viewer whose direct path fails gets through a relay).
    const iceServers = iceServersFrom(res.headers.get('Link'));
    if (iceServers.length) {
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
      } catch (e) {
        console.warn('watch: TURN servers refused', e);
      }
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: text });
    flush(s);
    $('room-label').textContent = room;
    $('watch-form').hidden = true;
    $('player').hidden = false;
  }

  /**
   * The ICE servers in `Link` headers (RFC 9725 §4.4: `<url>;
   * rel="ice-server"; username="..."; credential="..."`; the browser joins
   * several headers with ", "), as `RTCIceServer`s.
   */
  function iceServersFrom(links) {
    const servers = [];
    for (const [, url, rest] of (links || '').matchAll(/<([^>]*)>([^<]*)/g)) {
      const params = Object.fromEntries([...rest.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      if (params.rel !== 'ice-server') continue;
      const server = { urls: url };
      if (params.username !== undefined) server.username = params.username;
      if (params.credential !== undefined) server.credential = params.credential;
      servers.push(server);
    }
    return servers;
  }

  /** Trickle the candidates gathered so far (RFC 9725 §4.3.1), once the
   *  session exists and no ICE restart is under way. */
  async function flush(s) {
    if (!s.resource || !s.pending.length || s.ended || s.restarting) return;
    const candidates = s.pending.splice(0);
    const res = await fetch(s.resource, {
      method: 'PATCH',
      headers: { ...s.auth, 'Content-Type': 'application/trickle-ice-sdpfrag' },
      body: sdpFrag(s.pc, candidates),
    }).catch((e) => ({ status: `${e.message}` }));
    s.patches.push(res.status);
  }

  /**
   * Restart ICE by PATCH (RFC 9725 §4.3.2): new local credentials go to the
   * server with `If-Match: *`; its reply carries its own, which replace the
   * old ones in the answer. The stream, its decoder and DTLS stay. Returns
   * the PATCH's status, or null when there is nothing to restart.
   */
  async function restartIce() {
    const s = session;
    if (!s || !s.resource || s.ended || s.restarting) return null;
    s.restarting = true;
    const pc = s.pc;
    try {
      pc.restartIce();
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      // Candidates of the old generation still queued are of no use now.
      s.pending = [];
      const res = await fetch(s.resource, {
        method: 'PATCH',
        headers: {
          ...s.auth,
          'Content-Type': 'application/trickle-ice-sdpfrag',
          'If-Match': '*',
        },
        body: sdpFrag(pc, []),
      });
      const text = await res.text();
      s.patches.push(res.status);
      const ufrag = sdpValue(text, 'ice-ufrag');
      const pwd = sdpValue(text, 'ice-pwd');
      if (res.status !== 200 || !ufrag || !pwd) {
        await pc.setLocalDescription({ type: 'rollback' });
        console.warn(`ICE restart refused (${res.status}): ${text}`);
        return res.status;
      }
      const sdp = pc.currentRemoteDescription.sdp
        .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${ufrag}`)
        .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${pwd}`);
      await pc.setRemoteDescription({ type: 'answer', sdp });
      s.etag = res.headers.get('ETag') || s.etag;
      s.restarts += 1;
      return res.status;
    } catch (e) {
      console.warn(`ICE restart failed: ${e.message}`);
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      return `${e.message}`;
    } finally {
      s.restarting = false;
      flush(s);
    }
  }

  /**
   * React to the connection's state: disconnected for DISCONNECTED_GRACE_MS
   * or failed means the path broke, so restart ICE, and again after each
   * RESTART_BACKOFF_MS wait while it stays down.
   */
  function watchPath(s, attempt = 0) {
    const state = s.pc.connectionState;
    if (state === 'connected' || s.ended) {
      clearTimeout(s.downTimer);
      s.downTimer = null;
      if (state === 'connected') showError('');
      return;
    }
    if ((state !== 'disconnected' && state !== 'failed') || s.downTimer) return;
    if (state === 'failed') showError('The media connection failed; reconnecting…');
    const wait = attempt === 0 ? DISCONNECTED_GRACE_MS : RESTART_BACKOFF_MS[Math.min(attempt, RESTART_BACKOFF_MS.length) - 1];
    s.downTimer = setTimeout(async () => {
      s.downTimer = null;
      if (session !== s || s.ended || s.pc.connectionState === 'connected') return;
      await restartIce();
      watchPath(s, attempt + 1);
    }, wait);
  }

  /** End the session: DELETE the resource, close the connection. */
  async function stop() {
    const s = session;
    session = null;
    if (!s) return null;
    s.ended = true;
    clearTimeout(s.downTimer);
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
  // The machine's network came back (or changed): the old path may be gone.
  window.addEventListener('online', () => {
    if (session && session.pc.connectionState !== 'connected') restartIce();
  });
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
      etag: session ? session.etag : null,
      restarts: session ? session.restarts : 0,
    }),
    /**
     * ICE transport statistics of the viewer's connection (or of `pc`):
     * the ICE state, the local ufrag and how often the pair changed.
     */
    transportStats: async (pc = session && session.pc) => {
      if (!pc) return null;
      const report = await pc.getStats();
      let out = null;
      report.forEach((r) => {
        if (r.type === 'transport') {
          const pair = r.selectedCandidatePairId && report.get(r.selectedCandidatePairId);
          const local = pair && report.get(pair.localCandidateId);
          out = {
            iceState: r.iceState,
            iceLocalUsernameFragment: r.iceLocalUsernameFragment,
            selectedCandidatePairChanges: r.selectedCandidatePairChanges,
            // The selected path's local end: host, relay...; for a relay,
            // how it reaches the TURN server.
            localType: local ? local.candidateType : null,
            relayProtocol: (local && local.relayProtocol) || null,
          };
        }
      });
      return out;
    },
    restartIce,
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
            keyFramesDecoded: r.keyFramesDecoded || 0,
            packetsLost: r.packetsLost || 0,
            pliCount: r.pliCount || 0,
            nackCount: r.nackCount || 0,
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
