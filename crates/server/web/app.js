// huddle web client: plain JavaScript, no build step.
//
// Protocol (docs/signaling.md): one WebSocket to /ws carrying JSON messages,
// and two RTCPeerConnections to the SFU:
//   - "publisher":  WE offer (our microphone and camera), the server answers;
//   - "subscriber": the SERVER offers (everyone else's tracks, again whenever
//                   that set changes), we answer.
// Offers therefore never cross, and no glare handling is needed.
//
// URL parameters: room, name (prefill the form), autojoin=1
// (join at once), aec=0 (turn echo cancellation, gain control and noise
// suppression off, e.g. to compare audio in tests), simulcast=0 (send the
// camera as one encoding instead of three simulcast layers), camera=0 (join
// with the microphone only) or camera=WIDTHxHEIGHT (the capture size to ask
// for instead of 1280x720), layers=Q,H,F (the simulcast layers' highest
// rates in kb/s, lowest layer first, instead of 150,500,1500), relay=1 (use
// only relayed paths through the TURN servers the server hands out: for
// testing them), e2ee=1 (ask the development endpoint for a token of an
// end-to-end encrypted room). An access token goes in the fragment,
// #token=... (see token.js), not in the query.
//
// End-to-end encryption (docs/e2ee.md): when the token says `e2ee`, the
// page joins with `e2ee: true`, runs the room's group and SFrame in a
// worker (e2ee-worker.js, with huddle-e2ee as WebAssembly) and puts every
// sender and receiver through it (encoded transforms); RED is off both
// ways (Chromium wraps RED before the transform, which would encrypt the
// copies as new frames). The safety code shows under the controls.
'use strict';

(() => {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);

  /** inbound/outbound audioLevel (0..1) above which a participant is speaking. */
  const SPEAKING_LEVEL = 0.02;
  /** A tile stays highlighted this long after the level drops. */
  const SPEAKING_HOLD_MS = 400;
  /** How often the audio levels are read from getStats. */
  const LEVEL_INTERVAL_MS = 200;
  /** Keep-alive on the WebSocket: a ping this often... */
  const PING_INTERVAL_MS = 5000;
  /** ...and a connection silent this long is taken for dead and resumed. */
  const SILENCE_LIMIT_MS = 15000;
  /** Our messages kept for sending again after a resume. */
  const RESEND_KEPT = 256;
  /** Waits between attempts to resume: the first, and the longest. */
  const RESUME_BACKOFF_MS = [100, 2000];
  /** How long the page tries to join again after its session was lost. */
  const REJOIN_FOR_MS = 60000;
  /** ICE restarts while the media path stays down: the first wait, the longest. */
  const ICE_RESTART_WAIT_MS = [2000, 16000];
  /** Sending this long with nothing back from the server: the media path is lost. */
  const PATH_SILENCE_MS = 1000;
  const PATH_LOOK_MS = 250;
  /**
   * The inbound-rtp numbers window.huddle.inboundStats() passes on (0 where
   * the browser reports none). The jitter-buffer ones (NetEQ for audio), from
   * packetsLost on, are what scripts/neteq_reference.js compares with huddle's.
   */
  const INBOUND_NUMBERS = [
    'packetsReceived', 'bytesReceived', 'totalAudioEnergy', 'audioLevel',
    'framesDecoded', 'frameWidth', 'frameHeight', 'freezeCount', 'totalFreezesDuration',
    'packetsLost', 'jitterBufferDelay', 'jitterBufferTargetDelay', 'jitterBufferEmittedCount',
    'totalSamplesReceived', 'concealedSamples', 'concealmentEvents',
    'insertedSamplesForDeceleration', 'removedSamplesForAcceleration', 'fecPacketsReceived',
    'keyFramesDecoded', 'pliCount', 'nackCount', 'framesReceived', 'framesDropped',
  ];
  /**
   * The camera is sent as three simulcast layers (RFC 8853), lowest first:
   * the SFU forwards each viewer one of them (the best to someone watching
   * one or two videos, smaller ones as the grid grows) and switches at
   * keyframes. The browser may send fewer: Chromium drops layers for small
   * captures (below about 960x540 it sends two, below 480x270 one) and stops
   * the top one when bandwidth or CPU run short.
   */
  const VIDEO_ENCODINGS = [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: 'f', maxBitrate: 1500000 },
  ];

  /** WebSocket close codes of docs/signaling.md, for people. */
  const CLOSE_REASONS = {
    1000: 'you left the call',
    1001: 'the server is shutting down',
    1008: 'the server refused to let you in',
    1011: 'the server failed while you joined',
    4001: 'an administrator removed you from the call',
    4002: 'the media connection to the server failed or timed out',
    4004: 'the connection to the server was lost and could not be resumed',
  };

  /** The call in progress, or null. */
  let session = null;
  /** Between two attempts to join again: { timer, stream }, or null. */
  let pendingRejoin = null;
  /** When the server last gave up our media (close 4002), newest last. */
  const mediaGoneAt = [];
  /** Joining again after 4002 more often than this within the window ends the call. */
  const MEDIA_GONE_LIMIT = 3;
  const MEDIA_GONE_WINDOW_MS = 180000;

  /** Count a 4002; whether they came too often to join again. */
  function mediaKeepsFailing() {
    const now = Date.now();
    while (mediaGoneAt.length && now - mediaGoneAt[0] > MEDIA_GONE_WINDOW_MS) mediaGoneAt.shift();
    mediaGoneAt.push(now);
    return mediaGoneAt.length > MEDIA_GONE_LIMIT;
  }

  // ---------------------------------------------------------------- UI helpers

  function setStatus(text) {
    $('status').textContent = text;
  }

  function showError(text) {
    const el = $('error');
    el.textContent = text;
    el.hidden = !text;
  }

  function showCallUi(inCall) {
    $('join-form').hidden = inCall;
    $('call').hidden = !inCall;
    $('join').disabled = false;
    if (inCall) layoutTiles();
  }

  /** A tile for one participant: video, name, mute and level indicators. */
  function createTile(participantId, identity, isLocal, displayName) {
    const tile = document.createElement('div');
    tile.className = 'tile' + (isLocal ? ' local' : '');
    tile.dataset.participantId = participantId;
    tile.dataset.identity = identity;

    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    // Video elements never play sound: audio has <audio> elements of its own.
    video.muted = true;
    tile.appendChild(video);

    const placeholder = document.createElement('div');
    placeholder.className = 'placeholder';
    placeholder.textContent = (identity[0] || '?').toUpperCase();
    tile.appendChild(placeholder);

    const label = document.createElement('div');
    label.className = 'label';
    const nameEl = document.createElement('span');
    nameEl.className = 'name';
    const shown = displayName || identity;
    nameEl.textContent = isLocal ? `${shown} (you)` : shown;
    const micOff = document.createElement('span');
    micOff.className = 'mic-off';
    micOff.textContent = 'muted';
    label.append(nameEl, micOff);
    tile.appendChild(label);

    const level = document.createElement('div');
    level.className = 'level';
    level.appendChild(document.createElement('span'));
    tile.appendChild(level);

    $('tiles').appendChild(tile);
    layoutTiles();
    return tile;
  }

  /**
   * Size the grid to the window and the number of people: the number of
   * columns that makes the (4:3) tiles largest while every tile fits in
   * the space below the controls. Big tiles get the better simulcast
   * layers (the server is told each video's size, see watchView).
   */
  function layoutTiles() {
    const grid = $('tiles');
    const n = grid.children.length;
    if (!n) return;
    const style = getComputedStyle(grid);
    const gap = parseFloat(style.columnGap) || 0;
    const padX = (parseFloat(style.paddingLeft) || 0) + (parseFloat(style.paddingRight) || 0);
    const width = grid.clientWidth - padX;
    const height = window.innerHeight - grid.getBoundingClientRect().top - (parseFloat(style.paddingBottom) || 0);
    let best = { cols: 1, tile: 0 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const byWidth = (width - gap * (cols - 1)) / cols;
      const byHeight = ((height - gap * (rows - 1)) / rows) * (4 / 3);
      const tile = Math.min(byWidth, byHeight);
      if (tile > best.tile) best = { cols, tile };
    }
    // Never below the size a name and the indicators need.
    const tile = Math.max(160, Math.floor(best.tile));
    grid.style.gridTemplateColumns = `repeat(${best.cols}, ${tile}px)`;
  }
  window.addEventListener('resize', () => layoutTiles());

  /** Show `level` (0..1) on a participant's tile; highlight it while speaking. */
  function showLevel(p, level, now) {
    if (level > SPEAKING_LEVEL) p.speakingUntil = now + SPEAKING_HOLD_MS;
    p.tile.classList.toggle('speaking', now < (p.speakingUntil || 0));
    // audioLevel is linear; a square root makes quiet speech visible.
    p.tile.querySelector('.level span').style.height = `${Math.min(100, Math.sqrt(level) * 100)}%`;
  }

  /** Reflect the participant's tracks' mute states on its tile. */
  function refreshTile(p) {
    const tracks = [...p.tracks.values()];
    p.tile.classList.toggle('audio-muted', tracks.some((t) => t.kind === 'audio' && t.muted));
    p.tile.classList.toggle('video-muted', tracks.some((t) => t.kind === 'video' && t.muted));
  }

  // ------------------------------------------------------------------- tokens

  /** A token for (room, identity): see token.js. */
  const getToken = (room, identity) => window.huddleToken(room, identity, params.get('e2ee') === '1');

  /** The claims of a JWT, read without checking it (the server does). */
  function tokenClaims(token) {
    try {
      const body = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(body.padEnd(body.length + ((4 - (body.length % 4)) % 4), '=')));
    } catch {
      return {};
    }
  }

  // -------------------------------------------------------------------- SDP

  /**
   * What each m-section of a (subscriber) offer carries: mid -> {kind,
   * streamId, trackId, receiving}. The SFU labels every remote track with
   * msid "<publisher participant id> <room track id>". We read it from the
   * SDP rather than from MediaStreamTrack.id, which browsers need not keep.
   */
  function parseMsids(sdp) {
    const byMid = new Map();
    for (const section of sdp.split(/\r?\nm=/).slice(1)) {
      const lines = section.split(/\r?\n/);
      const [kind, port] = lines[0].split(' ');
      let mid = null;
      let msid = null;
      let direction = 'sendrecv';
      for (const line of lines) {
        if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
        else if (line.startsWith('a=msid:')) msid = line.slice(7).trim().split(/\s+/);
        else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) direction = line.slice(2);
      }
      if (mid === null) continue;
      // From the server's point of view: it sends on sendonly/sendrecv.
      const receiving = port !== '0' && (direction === 'sendonly' || direction === 'sendrecv');
      byMid.set(mid, {
        kind,
        streamId: msid ? msid[0] : null,
        trackId: msid && msid.length > 1 ? msid[1] : null,
        receiving,
      });
    }
    return byMid;
  }

  // -------------------------------------------------------------- the session

  /**
   * Send a message. Every message is counted and the last ones kept: if the
   * connection drops, the session is resumed on a new one (docs/signaling.md,
   * "Resuming a session") and what the server missed goes again, what is
   * sent meanwhile included.
   */
  function send(msg) {
    if (!session) return;
    const open = session.ws.readyState === WebSocket.OPEN && !session.reconnecting;
    // Until the session can be resumed (before `joined`), what cannot go
    // now is dropped, not counted: the count must match the server's.
    if (!open && !session.resume) return;
    const text = JSON.stringify(msg);
    session.sent.push(text);
    session.sentCount += 1;
    if (session.sent.length > RESEND_KEPT) session.sent.shift();
    if (open) session.ws.send(text);
  }

  /** The signaling WebSocket's URL: /ws on the page's own host. */
  function signalingUrl() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws`;
  }

  /** Hand what `ws` brings to `current` (the session it belongs to). */
  function attach(current, ws) {
    current.heard = Date.now();
    ws.onmessage = (e) => {
      if (session !== current || current.ws !== ws) return;
      current.heard = Date.now();
      current.received += 1;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        console.warn('huddle: not JSON', e.data);
        return;
      }
      onMessage(msg).catch((err) => {
        console.error('huddle: handling', msg.type, err);
        showError(`${msg.type}: ${err.message || err}`);
      });
    };
    ws.onclose = (e) => {
      if (session !== current || current.ws !== ws) return;
      // 1006: gone without a close frame (network change, proxy timeout):
      // take the session back. 1001: the server is going away (a restart):
      // join again. So too when a join again does not get through (the
      // server is not back yet). Any other close the server sent ends the
      // call.
      if (!current.leaving && current.resume && e.code === 1006) {
        resumeSession(current);
        return;
      }
      const joining = !current.me && current.rejoinUntil;
      // 4002: the server lost our media (the network changed or failed):
      // join again too, with new connections, unless that keeps happening
      // (media that never gets through would leave and join forever).
      const mediaGone = e.code === 4002 && current.me && !mediaKeepsFailing();
      if (!current.leaving && (e.code === 1001 && current.me || mediaGone || joining && [1001, 1006, 1011, 1013].includes(e.code))) {
        rejoinSession(current);
        return;
      }
      const why = current.leaving ? '' : `${CLOSE_REASONS[e.code] || 'disconnected from the server'} (code ${e.code}${e.reason ? `: ${e.reason}` : ''})`;
      cleanup();
      if (why) showError(why);
    };
  }

  /**
   * The WebSocket dropped: connect again with backoff and send `resume`
   * until the server's grace period is over. The media connections carry on
   * meanwhile; nobody else in the room notices.
   */
  function resumeSession(current) {
    if (current.reconnecting) return;
    current.reconnecting = true;
    const old = current.ws;
    old.onmessage = null;
    old.onclose = null;
    if (old.readyState === WebSocket.OPEN || old.readyState === WebSocket.CONNECTING) old.close();
    console.info('huddle: signaling connection lost, resuming');
    updateStatus();
    const giveUp = Date.now() + current.resume.grace_ms;
    let wait = RESUME_BACKOFF_MS[0];
    const attempt = () => {
      if (session !== current) return;
      if (Date.now() >= giveUp) {
        rejoinSession(current);
        return;
      }
      const ws = new WebSocket(signalingUrl());
      let settled = false;
      const retry = () => {
        if (settled) return;
        settled = true;
        ws.onopen = ws.onmessage = ws.onclose = null;
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
        setTimeout(attempt, wait);
        wait = Math.min(wait * 2, RESUME_BACKOFF_MS[1]);
      };
      const timer = setTimeout(retry, 5000);
      ws.onopen = () => ws.send(JSON.stringify({
        type: 'resume', token: current.resume.token, received: current.received,
      }));
      ws.onclose = () => { clearTimeout(timer); retry(); };
      ws.onmessage = (e) => {
        if (settled || session !== current) return;
        settled = true;
        clearTimeout(timer);
        let msg = null;
        try { msg = JSON.parse(e.data); } catch { /* handled below */ }
        if (!msg || msg.type !== 'resumed') {
          // Refused: join again, unless the session ended for good (the
          // close that follows says 4001: removed by an administrator).
          ws.onmessage = null;
          ws.onclose = (closed) => {
            if (session !== current) return;
            if (closed.code === 4001) {
              cleanup();
              showError(`${CLOSE_REASONS[4001]} (code 4001)`);
            } else {
              rejoinSession(current);
            }
          };
          return;
        }
        // What the server missed of ours goes again, in order.
        const missed = Math.max(0, current.sentCount - msg.received);
        for (const text of current.sent.slice(Math.max(0, current.sent.length - missed))) ws.send(text);
        current.ws = ws;
        current.reconnecting = false;
        current.resumes += 1;
        attach(current, ws);
        console.info('huddle: session resumed');
        updateStatus();
      };
    };
    attempt();
  }

  /**
   * One of our two peer connections with its trickle ICE bookkeeping.
   *
   * Our candidates are held until the offer (publisher) or answer
   * (subscriber) they belong to has been sent: the server must know the
   * connection before it gets candidates for it. The server's candidates are
   * held until the remote description is set.
   */
  function makePeer(role) {
    // The server's TURN servers, with this participant's credentials (in
    // `joined`); relay=1 in the URL allows relayed paths only (for testing
    // a TURN server).
    const pc = new RTCPeerConnection({
      iceServers: (session && session.iceServers) || [],
      iceTransportPolicy: params.get('relay') === '1' ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
    });
    const side = { role, pc, described: false, localQueue: [], remoteQueue: [] };
    pc.onicecandidate = (e) => {
      // null: gathering finished; an empty string: end of candidates.
      if (!e.candidate || !e.candidate.candidate) return;
      // Exactly the fields of RTCIceCandidateInit: the server refuses others.
      const { candidate: line, sdpMid, sdpMLineIndex, usernameFragment } = e.candidate;
      const candidate = { candidate: line, sdpMid, sdpMLineIndex, usernameFragment };
      if (side.described) send({ type: 'candidate', pc: role, candidate });
      else side.localQueue.push(candidate);
    };
    pc.onconnectionstatechange = () => {
      console.info(`huddle: ${role} connection ${pc.connectionState}`);
      if (pc.connectionState === 'disconnected' || pc.connectionState === 'failed') {
        mediaPathLost(`${role} connection ${pc.connectionState}`);
      } else if (pc.connectionState === 'connected' && session && !mediaDown()) {
        session.iceRestartWait = ICE_RESTART_WAIT_MS[0];
      }
      updateStatus();
    };
    return side;
  }

  /** Whether a media connection of the session is disconnected or failed. */
  function mediaDown() {
    return [session.pub, session.sub].some((side) => side
      && (side.pc.connectionState === 'disconnected' || side.pc.connectionState === 'failed'));
  }

  /**
   * Whether the path to the server still carries anything back: while the
   * publisher connection sends, the server answers with RTCP (transport-wide
   * feedback ten times a second, receiver reports). Sending for
   * PATH_SILENCE_MS with nothing back means the path is gone, as when this
   * device's address changed (the browser takes seconds longer to call the
   * connection `disconnected`). Looked at every PATH_LOOK_MS.
   */
  async function lookAtMediaPath(current) {
    if (session !== current || !current.pub || current.path.looking) return;
    const { pc } = current.pub;
    if (pc.connectionState !== 'connected') return;
    current.path.looking = true;
    try {
      let sent = 0;
      let received = 0;
      for (const s of (await pc.getStats()).values()) {
        if (s.type !== 'transport') continue;
        sent += s.bytesSent || 0;
        received += s.bytesReceived || 0;
      }
      const path = current.path;
      const now = Date.now();
      // Heard something, or sent nothing (nothing to answer): no sign.
      if (received !== path.received || sent === path.sent) path.quietSince = now;
      // Flowing again past the last restart's wait: the outage is over.
      if (received !== path.received && now >= current.nextIceRestart) {
        current.iceRestartWait = ICE_RESTART_WAIT_MS[0];
      }
      path.sent = sent;
      path.received = received;
      if (now - path.quietSince >= PATH_SILENCE_MS && session === current) {
        path.quietSince = now;
        mediaPathLost(`nothing back from the server for ${PATH_SILENCE_MS} ms`);
      }
    } catch (e) {
      console.warn('huddle: getStats failed', e);
    } finally {
      current.path.looking = false;
    }
  }

  /**
   * The media path is lost. The signaling connection most likely went with
   * it (a new address strands every connection of the old one, and the
   * browser may not notice for many seconds): the first time in an outage
   * it is resumed on a new connection at once, then ICE restarts.
   */
  function mediaPathLost(why) {
    const current = session;
    if (!current || !current.me || current.leaving) return;
    const firstOfOutage = Date.now() >= current.nextIceRestart
      && current.iceRestartWait === ICE_RESTART_WAIT_MS[0];
    if (firstOfOutage && current.resume && !current.reconnecting) resumeSession(current);
    restartIce(why);
  }

  /**
   * Restart ICE (RFC 8445 §9) on both
   * connections. The publisher connection sends an ICE-restart offer of its
   * own; the subscriber connection asks the server for one (`restart_ice`).
   * DTLS, the tracks and the session stay; only the path changes. While the
   * connections stay down it is tried again, with backoff.
   */
  function restartIce(why) {
    const current = session;
    if (!current || !current.me || current.leaving) return;
    const now = Date.now();
    if (now < current.nextIceRestart) {
      // One is in flight: look again when its wait is over.
      if (!current.iceRestartCheck) {
        current.iceRestartCheck = setTimeout(() => {
          current.iceRestartCheck = null;
          if (session === current && mediaDown()) restartIce('still down');
        }, current.nextIceRestart - now);
      }
      return;
    }
    current.iceRestarts += 1;
    current.nextIceRestart = now + current.iceRestartWait;
    current.iceRestartWait = Math.min(current.iceRestartWait * 2, ICE_RESTART_WAIT_MS[1]);
    console.info(`huddle: restarting ICE (${why})`);
    if (current.sub) send({ type: 'restart_ice' });
    const pub = current.pub;
    // An offer already outstanding is answered first; the next look retries.
    if (pub && pub.pc.signalingState === 'stable') {
      pub.pc.createOffer({ iceRestart: true })
        .then((offer) => pub.pc.setLocalDescription(offer))
        .then(() => {
          if (session === current) send({ type: 'offer', sdp: pub.pc.localDescription.sdp });
        })
        .catch((e) => console.warn('huddle: ICE restart offer failed', e));
    }
    // Schedules the look after this restart's wait.
    restartIce('still down');
  }

  /**
   * The path `side`'s connection takes now (its selected candidate pair):
   * local and remote protocol (udp, tcp), candidate types (host, relay...),
   * how a relay candidate reaches its TURN server, the remote address; null
   * when there is none.
   */
  async function selectedPath(side) {
    if (!side) return null;
    const stats = await side.pc.getStats();
    for (const s of stats.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      if (!local || !remote) return null;
      return {
        protocol: local.protocol,
        localType: local.candidateType,
        relayProtocol: local.relayProtocol || null,
        remoteProtocol: remote.protocol,
        remoteType: remote.candidateType,
        remote: `${remote.address}:${remote.port}`,
      };
    }
    return null;
  }

  /**
   * New TURN credentials (`ice_servers`, before the last ones expire): both
   * connections gather with them from their next ICE restart on. Relays in
   * use stay (the TURN server refreshes an allocation with the credentials
   * it was made with).
   */
  function renewIceServers(servers) {
    const current = session;
    current.iceServers = servers;
    current.iceServerRenewals += 1;
    for (const side of [current.pub, current.sub].filter(Boolean)) {
      try {
        side.pc.setConfiguration({ ...side.pc.getConfiguration(), iceServers: servers });
      } catch (e) {
        console.warn('huddle: new ICE servers refused', e);
      }
    }
  }

  /** Our offer or answer for `side` went out: release its queued candidates. */
  function described(side) {
    side.described = true;
    for (const candidate of side.localQueue.splice(0)) {
      send({ type: 'candidate', pc: side.role, candidate });
    }
  }

  /** The remote description of `side` is set: apply held server candidates. */
  async function flushRemoteCandidates(side) {
    for (const c of side.remoteQueue.splice(0)) {
      await side.pc.addIceCandidate(c).catch((e) => console.warn('huddle: bad candidate', e));
    }
  }

  function updateStatus() {
    if (!session) return setStatus('not connected');
    const reconnecting = session.reconnecting || Boolean(session.rejoinUntil && !session.me);
    document.body.classList.toggle('reconnecting', reconnecting);
    if (reconnecting) return setStatus('connection lost: reconnecting…');
    if (!session.me) return setStatus('joining…');
    const states = [session.pub, session.sub]
      .filter(Boolean)
      .map((s) => `${s.role} ${s.pc.connectionState}`);
    setStatus(`in call as ${session.identity} · ${session.participants.size - 1} other(s) · ${states.join(', ')}`);
  }

  /** Join `room` as `name`: token, microphone and camera, WebSocket. */
  async function join(room, name) {
    showError('');
    $('join').disabled = true;
    setStatus('getting a token…');
    let token;
    let stream;
    try {
      token = await getToken(room, name);
      setStatus('asking for microphone and camera…');
      stream = await getMedia();
    } catch (e) {
      $('join').disabled = false;
      setStatus('not connected');
      showError(e.message || String(e));
      return;
    }
    openSession({ room, name, token, stream });
  }

  /**
   * Open the WebSocket and join: a new call, or the same call again after
   * its session was lost (`again`: { rejoinUntil, rejoins, muted, wait }).
   */
  function openSession({ room, name, token, stream, again = null }) {
    const ws = new WebSocket(signalingUrl());
    const e2ee = tokenClaims(token).e2ee === true;
    session = {
      ws,
      /** The room is end-to-end encrypted (the token says so). */
      e2ee,
      /** Its worker (e2ee-worker.js) once joined; the current epoch. */
      e2eeWorker: null,
      e2eeEpoch: null,
      /** Receivers put through the worker already. */
      transformed: new WeakSet(),
      identity: name,
      room,
      token,
      me: null,
      stream,
      audioTrack: stream.getAudioTracks()[0] || null,
      videoTrack: stream.getVideoTracks()[0] || null,
      muted: again ? again.muted : { audio: false, video: false },
      /** While joining again: until when to keep trying, and the next wait. */
      rejoinUntil: again ? again.rejoinUntil : 0,
      rejoinWait: again ? again.wait : RESUME_BACKOFF_MS[0],
      /** Times this call joined again after losing its session. */
      rejoins: again ? again.rejoins : 0,
      pub: null,
      sub: null,
      /** Subscriber offers are handled one at a time, in order. */
      subChain: Promise.resolve(),
      /** mid -> msid of the latest subscriber offer (see parseMsids). */
      midInfo: new Map(),
      /** participant id -> {id, identity, tile, tracks: Map<track id, TrackInfo>} */
      participants: new Map(),
      /** room track id -> {mid, kind, track, participantId, element} */
      remote: new Map(),
      /** our local MediaStreamTrack id -> the server's room track id */
      ownTrackIds: new Map(),
      /** room track ids of videos the server paused for us (bandwidth) */
      paused: new Set(),
      /** room track id -> the last track_settings sent for it (JSON) */
      views: new Map(),
      leaving: false,
      timers: [],
      /** From `joined`: how to resume the session if the WebSocket drops. */
      resume: null,
      reconnecting: false,
      /** Sessions resumed so far. */
      resumes: 0,
      /** Server messages received in the session (`resumed` not counted). */
      received: 0,
      /** Our messages: how many were sent, and the last ones. */
      sentCount: 0,
      sent: [],
      /** When the server was last heard from. */
      heard: Date.now(),
      /** ICE restarts so far, when the next may start, the wait after it. */
      iceRestarts: again ? again.iceRestarts : 0,
      /** TURN credentials renewed (`ice_servers`) so far. */
      iceServerRenewals: 0,
      nextIceRestart: 0,
      iceRestartWait: ICE_RESTART_WAIT_MS[0],
      iceRestartCheck: null,
      /** What lookAtMediaPath last saw of the publisher connection. */
      path: { sent: 0, received: 0, quietSince: Date.now(), looking: false },
    };
    const current = session;
    setStatus('connecting…');
    ws.onopen = () => {
      if (session !== current) return;
      send(e2ee ? { type: 'join', token, e2ee: true } : { type: 'join', token });
    };
    attach(current, ws);
    current.timers.push(setInterval(() => {
      if (session !== current || current.reconnecting) return;
      if (current.resume && Date.now() - current.heard > SILENCE_LIMIT_MS) {
        resumeSession(current);
        return;
      }
      send({ type: 'ping' });
    }, PING_INTERVAL_MS));
    current.timers.push(setInterval(() => updateLevels(current), LEVEL_INTERVAL_MS));
    current.timers.push(setInterval(() => lookAtMediaPath(current), PATH_LOOK_MS));
    $('room-label').textContent = room;
    showCallUi(true);
    if (again) updateStatus();
  }

  /**
   * The session is lost (the server restarted or went away, or the
   * connection stayed down past its grace period): join the room again with
   * the same token, microphone and camera, with backoff, for up to
   * REJOIN_FOR_MS. The page shows "reconnecting" meanwhile.
   */
  function rejoinSession(current) {
    if (session !== current) return;
    const until = current.rejoinUntil || Date.now() + REJOIN_FOR_MS;
    if (Date.now() > until) {
      cleanup();
      showError(`${CLOSE_REASONS[4004]} (could not join again)`);
      return;
    }
    const again = {
      rejoinUntil: until,
      rejoins: current.rejoins,
      iceRestarts: current.iceRestarts,
      muted: current.muted,
      wait: Math.min(current.rejoinWait * 2, RESUME_BACKOFF_MS[1]),
    };
    const { room, identity: name, token, stream } = current;
    const wait = current.me ? 0 : current.rejoinWait;
    cleanup({ keepMedia: true });
    console.info(`huddle: joining again in ${wait} ms`);
    setStatus('connection lost: reconnecting…');
    document.body.classList.add('reconnecting');
    showCallUi(true);
    pendingRejoin = {
      stream,
      timer: setTimeout(() => {
        pendingRejoin = null;
        openSession({ room, name, token, stream, again });
      }, wait),
    };
  }

  /** Microphone and camera; the microphone alone if there is no camera. */
  async function getMedia() {
    const raw = params.get('aec') === '0';
    const audio = { echoCancellation: !raw, autoGainControl: !raw, noiseSuppression: !raw };
    // 720p: enough for Chromium to send all three simulcast layers.
    // camera=WIDTHxHEIGHT asks for another size, camera=0 for none.
    const camera = params.get('camera');
    if (camera === '0') {
      try {
        return await navigator.mediaDevices.getUserMedia({ audio });
      } catch (e) {
        throw new Error(`cannot use the microphone: ${e.message || e.name}`);
      }
    }
    const size = /^(\d+)x(\d+)$/.exec(camera || '');
    const [width, height] = size ? [Number(size[1]), Number(size[2])] : [1280, 720];
    const video = { width: { ideal: width }, height: { ideal: height } };
    try {
      return await navigator.mediaDevices.getUserMedia({ audio, video });
    } catch (first) {
      try {
        return await navigator.mediaDevices.getUserMedia({ audio });
      } catch {
        throw new Error(`cannot use the microphone or camera: ${first.message || first.name}`);
      }
    }
  }

  function addParticipant(info, isLocal) {
    let p = session.participants.get(info.id);
    if (!p) {
      p = { id: info.id, identity: info.identity, tracks: new Map(), tile: createTile(info.id, info.identity, isLocal, info.name) };
      session.participants.set(info.id, p);
      p.tile.classList.toggle('active-speaker', info.id === session.activeSpeaker);
    }
    for (const t of info.tracks || []) p.tracks.set(t.id, t);
    refreshTile(p);
    updateStatus();
    tellWorkerWho();
    return p;
  }

  function removeParticipant(id) {
    const p = session.participants.get(id);
    if (!p) return;
    for (const [trackId, r] of session.remote) {
      if (r.participantId === id) detachRemote(trackId);
    }
    p.tile.remove();
    layoutTiles();
    session.participants.delete(id);
    updateStatus();
  }

  async function onMessage(msg) {
    if (!session) return;
    switch (msg.type) {
      case 'joined': {
        if (session.rejoinUntil) {
          // Joined again after the session was lost.
          session.rejoins += 1;
          session.rejoinUntil = 0;
          session.rejoinWait = RESUME_BACKOFF_MS[0];
          console.info('huddle: joined again');
        }
        session.resume = msg.resume || null;
        session.iceServers = msg.ice_servers || [];
        session.me = msg.participant.id;
        session.identity = msg.participant.identity; // the token's, which wins over the form
        const me = addParticipant(msg.participant, true);
        if (session.videoTrack) {
          me.tile.querySelector('video').srcObject = new MediaStream([session.videoTrack]);
          me.tile.classList.add('has-video');
        }
        for (const other of msg.others) addParticipant(other, false);
        if (msg.e2ee && !startE2ee(msg)) break;
        if (msg.can_publish) await startPublishing();
        break;
      }
      case 'e2ee_create':
      case 'e2ee_add':
      case 'e2ee_remove':
      case 'e2ee_commit_result':
      case 'e2ee_commit':
      case 'e2ee_welcome':
        if (session.e2eeWorker) session.e2eeWorker.postMessage({ type: 'server', text: JSON.stringify(msg) });
        break;
      case 'ice_servers':
        renewIceServers(msg.ice_servers || []);
        break;
      case 'answer': // to our publisher offer
        await session.pub.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
        await flushRemoteCandidates(session.pub);
        break;
      case 'offer': {
        // Subscriber (re-)offers are chained so that each one is answered
        // before the next is applied.
        const sdp = msg.sdp;
        const handled = session.subChain.then(() => onSubscriberOffer(sdp));
        session.subChain = handled.catch(() => {}); // a failure must not block later offers
        await handled;
        break;
      }
      case 'candidate': {
        const side = msg.pc === 'publisher' ? session.pub : session.sub;
        if (side && side.pc.remoteDescription) {
          await side.pc.addIceCandidate(msg.candidate);
        } else if (side) {
          side.remoteQueue.push(msg.candidate);
        } else if (msg.pc === 'subscriber') {
          // Before the first subscriber offer: keep it for that connection.
          (session.earlySubCandidates ||= []).push(msg.candidate);
        }
        break;
      }
      case 'participant_joined':
        addParticipant(msg.participant, false);
        break;
      case 'participant_left':
        removeParticipant(msg.participant_id);
        break;
      case 'participants_changed': // several joins and leaves at once
        for (const p of msg.joined || []) addParticipant(p, false);
        for (const id of msg.left || []) removeParticipant(id);
        break;
      case 'track_published': {
        const p = session.participants.get(msg.participant_id);
        if (p) {
          p.tracks.set(msg.track.id, msg.track);
          refreshTile(p);
        }
        if (msg.participant_id === session.me) onOwnTrackPublished(msg.track);
        reconcileReceivers();
        break;
      }
      case 'track_unpublished': {
        const p = session.participants.get(msg.participant_id);
        if (p) {
          p.tracks.delete(msg.track_id);
          refreshTile(p);
        }
        detachRemote(msg.track_id);
        break;
      }
      case 'mute_changed': {
        const p = session.participants.get(msg.participant_id);
        const t = p && p.tracks.get(msg.track_id);
        if (t) {
          t.muted = msg.muted;
          refreshTile(p);
        }
        break;
      }
      case 'active_speaker':
        // The server's choice of dominant speaker (from the audio levels
        // every publisher sends): one tile at a time is marked.
        session.activeSpeaker = msg.participant_id;
        for (const [id, p] of session.participants) {
          p.tile.classList.toggle('active-speaker', id === msg.participant_id);
        }
        break;
      case 'track_paused':
      case 'track_resumed': {
        // The server stopped (or restarted) sending us a video because of
        // the bandwidth it estimates toward us; audio is never paused.
        const paused = msg.type === 'track_paused';
        if (paused) session.paused.add(msg.track_id);
        else session.paused.delete(msg.track_id);
        const r = session.remote.get(msg.track_id);
        const p = r && session.participants.get(r.participantId);
        if (p) p.tile.classList.toggle('video-paused', paused);
        break;
      }
      case 'publish_layers':
        await setPublishedLayers(msg.track_id, msg.layers);
        break;
      case 'error':
        console.warn('huddle: server error', msg.code, msg.message);
        showError(`server: ${msg.code}: ${msg.message}`);
        break;
      case 'pong':
        break;
      default:
        console.warn('huddle: unknown message', msg);
    }
  }

  /**
   * Send the microphone as RED (RFC 2198, audio/red: each packet carries the
   * previous frame again, so a packet lost on the way is heard anyway):
   * Chromium sends RED only when it comes before Opus in the negotiated
   * codecs, so it goes first. The SFU forwards RED to viewers that take it
   * and plain Opus, with lost packets rebuilt from the copies, to the
   * others. `red=0` in the page's URL sends plain Opus.
   */
  function preferRed(transceiver) {
    const caps = window.RTCRtpSender && RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('audio');
    if (!caps || typeof transceiver.setCodecPreferences !== 'function') return;
    const red = caps.codecs.filter((c) => c.mimeType.toLowerCase() === 'audio/red');
    if (red.length === 0) return;
    const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== 'audio/red');
    try {
      transceiver.setCodecPreferences([...red, ...rest]);
    } catch (e) {
      console.warn(`RED not preferred: ${e.message}`);
    }
  }

  /** Take RED out of what `transceiver` negotiates (`side`: RTCRtpSender or RTCRtpReceiver). */
  function withoutRed(transceiver, side) {
    const caps = side.getCapabilities && side.getCapabilities('audio');
    if (!caps || typeof transceiver.setCodecPreferences !== 'function') return;
    try {
      transceiver.setCodecPreferences(caps.codecs.filter((c) => c.mimeType.toLowerCase() !== 'audio/red'));
    } catch (e) {
      console.warn(`huddle: RED not taken out: ${e.message}`);
    }
  }

  /**
   * E2EE room: start the worker that holds this participant's E2EE state
   * (a new one after joining anew: a new session, a new group), relay what
   * it sends, show its epochs. False (and the call left) when this browser
   * cannot.
   */
  function startE2ee(joined) {
    if (!('RTCRtpScriptTransform' in window)) {
      leave();
      showError('this browser cannot take part in end-to-end encrypted calls (no RTCRtpScriptTransform)');
      return false;
    }
    if (session.e2eeWorker) session.e2eeWorker.terminate();
    session.transformed = new WeakSet();
    const current = session;
    const worker = new Worker('/e2ee-worker.js', { type: 'module' });
    worker.onmessage = (e) => {
      if (session !== current) return;
      const m = e.data;
      if (m.type === 'send') send(m.msg);
      else if (m.type === 'epoch') {
        current.e2eeEpoch = m.epoch;
        const el = $('e2ee');
        el.hidden = false;
        el.textContent = `End-to-end encrypted · safety code ${m.epoch.safety_code} · ${m.epoch.members.length} in the group`;
      } else if (m.type === 'stats' && current.e2eeStatsWanted) {
        current.e2eeStatsWanted.shift()(m.stats);
      } else if (m.type === 'error') {
        console.warn(`huddle: e2ee: ${m.message}`);
      } else if (m.type === 'fatal') {
        leave();
        showError(`end-to-end encryption failed: ${m.message}`);
      }
    };
    worker.onerror = (e) => showError(`end-to-end encryption failed: ${e.message}`);
    session.e2eeWorker = worker;
    worker.postMessage({ type: 'start', identity: joined.participant.identity, room: joined.room });
    tellWorkerWho();
    return true;
  }

  /** Tell the worker whose track each subscriber m-line carries, and their identities. */
  function tellWorkerWho() {
    if (!session || !session.e2eeWorker) return;
    const mids = [...session.midInfo].filter(([, info]) => info.streamId).map(([mid, info]) => [mid, info.streamId]);
    const identities = [...session.participants.values()].map((p) => [p.id, p.identity]);
    session.e2eeWorker.postMessage({ type: 'who', mids, identities });
  }

  /** Put every receiver of the subscriber connection through the worker (once each). */
  function decryptReceivers(pc) {
    tellWorkerWho();
    for (const tr of pc.getTransceivers()) {
      if (tr.mid === null || session.transformed.has(tr.receiver)) continue;
      const kind = tr.receiver.track.kind;
      if (kind === 'audio') withoutRed(tr, RTCRtpReceiver);
      tr.receiver.transform = new RTCRtpScriptTransform(session.e2eeWorker, { side: 'recv', kind, mid: tr.mid });
      session.transformed.add(tr.receiver);
    }
  }

  /**
   * Publisher connection: add microphone and camera (the camera as simulcast
   * layers, see VIDEO_ENCODINGS), offer.
   */
  async function startPublishing() {
    session.pub = makePeer('publisher');
    for (const track of session.stream.getTracks()) {
      // sendonly: the publisher connection never receives.
      const init = { direction: 'sendonly', streams: [session.stream] };
      if (track.kind === 'video' && params.get('simulcast') !== '0') {
        // layers=Q,H,F: each layer's most kb/s instead of the defaults.
        const kbps = (params.get('layers') || '').split(',').map(Number);
        init.sendEncodings = VIDEO_ENCODINGS.map((e, i) => ({
          ...e,
          ...(kbps[i] > 0 ? { maxBitrate: kbps[i] * 1000 } : {}),
        }));
      }
      const transceiver = session.pub.pc.addTransceiver(track, init);
      if (session.e2eeWorker) {
        if (track.kind === 'audio') withoutRed(transceiver, RTCRtpSender);
        transceiver.sender.transform = new RTCRtpScriptTransform(session.e2eeWorker, { side: 'send', kind: track.kind });
      } else if (track.kind === 'audio' && params.get('red') !== '0') {
        preferRed(transceiver);
      }
    }
    const offer = await session.pub.pc.createOffer();
    await session.pub.pc.setLocalDescription(offer);
    send({ type: 'offer', sdp: session.pub.pc.localDescription.sdp });
    described(session.pub);
  }

  /**
   * The server published one of our tracks. `source_track_id` is the track
   * id from our SDP (our MediaStreamTrack's id): remember the server's id for
   * `mute`, and apply a mute the person chose before the server knew it.
   */
  /**
   * Dynacast: turn off the simulcast layers of our camera that nobody
   * receives, and back on when someone does (the server says which).
   */
  async function setPublishedLayers(trackId, layers) {
    const localId = [...session.ownTrackIds].find(([, id]) => id === trackId)?.[0];
    const sender = session.pub && session.pub.pc.getSenders().find((s) => s.track && s.track.id === localId);
    if (!sender) return;
    const params = sender.getParameters();
    let changed = false;
    for (const e of params.encodings || []) {
      const layer = layers.find((l) => l.rid === e.rid);
      if (layer && e.active !== layer.active) {
        e.active = layer.active;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(params);
    session.layers = Object.fromEntries(layers.map((l) => [l.rid, l.active]));
  }

  function onOwnTrackPublished(track) {
    const local = [session.audioTrack, session.videoTrack].find((t) => t && t.id === track.source_track_id);
    if (!local) return;
    session.ownTrackIds.set(local.id, track.id);
    const kind = local.kind;
    if (session.muted[kind] !== track.muted) {
      send({ type: 'mute', track_id: track.id, muted: session.muted[kind] });
    }
  }

  /** The server (re-)offered the subscriber connection: answer it. */
  async function onSubscriberOffer(sdp) {
    if (!session) return;
    if (!session.sub) {
      session.sub = makePeer('subscriber');
      session.sub.remoteQueue.push(...(session.earlySubCandidates || []));
      // Tracks are matched to participants in reconcileReceivers; ontrack
      // only tells us that something changed.
      session.sub.pc.ontrack = () => reconcileReceivers();
    }
    const { pc } = session.sub;
    session.midInfo = parseMsids(sdp);
    await pc.setRemoteDescription({ type: 'offer', sdp });
    if (session.e2eeWorker) decryptReceivers(pc);
    await flushRemoteCandidates(session.sub);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    send({ type: 'answer', sdp: pc.localDescription.sdp });
    described(session.sub);
    reconcileReceivers();
  }

  /**
   * Make the tiles show exactly what the subscriber connection receives:
   * each receiving m-section's track goes to the tile of the participant in
   * its msid; tracks no longer offered are taken off.
   */
  function reconcileReceivers() {
    if (!session || !session.sub) return;
    const wanted = new Map(); // room track id -> {mid, info, transceiver}
    for (const tr of session.sub.pc.getTransceivers()) {
      const info = tr.mid !== null ? session.midInfo.get(tr.mid) : undefined;
      if (info && info.receiving && info.trackId && !tr.stopped) {
        wanted.set(info.trackId, { mid: tr.mid, info, transceiver: tr });
      }
    }
    for (const [trackId, r] of session.remote) {
      const w = wanted.get(trackId);
      if (!w || w.transceiver.receiver.track !== r.track) detachRemote(trackId);
    }
    for (const [trackId, w] of wanted) {
      if (!session.remote.has(trackId)) attachRemote(trackId, w);
    }
  }

  function attachRemote(trackId, { mid, info, transceiver }) {
    const track = transceiver.receiver.track;
    let p = session.participants.get(info.streamId);
    if (!p) {
      // Media can precede participant_joined in theory; show it anyway.
      p = addParticipant({ id: info.streamId, identity: info.streamId, tracks: [] }, false);
    }
    let element;
    if (track.kind === 'video') {
      element = p.tile.querySelector('video');
      element.srcObject = new MediaStream([track]);
      p.tile.classList.add('has-video');
      p.tile.classList.toggle('video-paused', session.paused.has(trackId));
      watchView(trackId, element);
    } else {
      // One <audio> per remote audio track. It must not be muted: a muted
      // element also makes getStats' inbound audioLevel read 0.
      element = document.createElement('audio');
      element.autoplay = true;
      element.dataset.trackId = trackId;
      element.srcObject = new MediaStream([track]);
      p.tile.appendChild(element);
    }
    element.play().catch((e) => console.warn('huddle: autoplay blocked', e));
    session.remote.set(trackId, { mid, kind: track.kind, track, participantId: p.id, element });
  }

  /**
   * Tell the server how a remote video is shown (track_settings): whether
   * it is on screen at all and its size, so that it sends the smallest
   * simulcast layer that fills the tile and nothing of a hidden one. Sent
   * when that changes (sizes rounded, to not chatter while resizing).
   */
  function watchView(trackId, element) {
    const state = { visible: true, width: 0, height: 0 };
    const report = () => {
      if (!session || !session.remote.has(trackId)) return;
      const view = {
        type: 'track_settings',
        track_id: trackId,
        visible: state.visible && !document.hidden,
        width: Math.round(state.width / 16) * 16,
        height: Math.round(state.height / 16) * 16,
      };
      if (!view.width || !view.height) {
        delete view.width;
        delete view.height;
      }
      const json = JSON.stringify(view);
      if (session.views.get(trackId) === json) return;
      session.views.set(trackId, json);
      send(view);
    };
    const resized = new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      state.width = box.width * (window.devicePixelRatio || 1);
      state.height = box.height * (window.devicePixelRatio || 1);
      report();
    });
    const seen = new IntersectionObserver((entries) => {
      state.visible = entries[entries.length - 1].isIntersecting;
      report();
    });
    resized.observe(element);
    seen.observe(element);
    const onVisibility = () => report();
    document.addEventListener('visibilitychange', onVisibility);
    (session.viewWatchers ||= new Map()).set(trackId, () => {
      resized.disconnect();
      seen.disconnect();
      document.removeEventListener('visibilitychange', onVisibility);
    });
  }

  function detachRemote(trackId) {
    const r = session.remote.get(trackId);
    if (!r) return;
    session.remote.delete(trackId);
    const unwatch = session.viewWatchers && session.viewWatchers.get(trackId);
    if (unwatch) {
      unwatch();
      session.viewWatchers.delete(trackId);
      session.views.delete(trackId);
    }
    if (r.kind === 'video') {
      r.element.srcObject = null;
      const p = session.participants.get(r.participantId);
      if (p) p.tile.classList.remove('has-video');
    } else {
      r.element.srcObject = null;
      r.element.remove();
    }
  }

  /** Read audio levels: remote ones per inbound track, ours from the source. */
  async function updateLevels(current) {
    if (session !== current || !current.me) return;
    const now = performance.now();
    const levels = new Map(); // participant id -> max audio level
    if (current.sub) {
      const stats = await current.sub.pc.getStats().catch(() => null);
      for (const s of stats ? stats.values() : []) {
        if (s.type !== 'inbound-rtp' || s.kind !== 'audio') continue;
        const info = current.midInfo.get(s.mid);
        if (!info || !info.streamId) continue;
        levels.set(info.streamId, Math.max(levels.get(info.streamId) || 0, s.audioLevel || 0));
      }
    }
    if (current.pub && !current.muted.audio) {
      const stats = await current.pub.pc.getStats().catch(() => null);
      for (const s of stats ? stats.values() : []) {
        if (s.type === 'media-source' && s.kind === 'audio') {
          levels.set(current.me, s.audioLevel || 0);
        }
      }
    }
    if (session !== current) return;
    for (const p of current.participants.values()) showLevel(p, levels.get(p.id) || 0, now);
  }

  /** Mute or unmute our microphone or camera. */
  function setMuted(kind, muted) {
    if (!session) return;
    session.muted[kind] = muted;
    const local = kind === 'audio' ? session.audioTrack : session.videoTrack;
    if (local) {
      // Disabled tracks send silence / black at once; the server's mute
      // (below) stops forwarding them altogether.
      local.enabled = !muted;
      const serverId = session.ownTrackIds.get(local.id);
      if (serverId) send({ type: 'mute', track_id: serverId, muted });
    }
    const button = $(kind === 'audio' ? 'mute-audio' : 'mute-video');
    button.setAttribute('aria-pressed', String(muted));
    button.textContent = kind === 'audio'
      ? (muted ? 'Unmute microphone' : 'Mute microphone')
      : (muted ? 'Start camera' : 'Stop camera');
    const me = session.participants.get(session.me);
    if (me) {
      me.tile.classList.toggle(kind === 'audio' ? 'audio-muted' : 'video-muted', muted);
    }
  }

  /** Leave the room (the server closes the WebSocket with code 1000). */
  function leave() {
    if (pendingRejoin) {
      clearTimeout(pendingRejoin.timer);
      for (const t of pendingRejoin.stream.getTracks()) t.stop();
      pendingRejoin = null;
      document.body.classList.remove('reconnecting');
      $('tiles').replaceChildren();
      showCallUi(false);
      setStatus('not connected');
      return;
    }
    if (!session) return;
    session.leaving = true;
    send({ type: 'leave' });
    // Anything sent before close() still goes out before the close frame.
    session.ws.close(1000);
    cleanup();
  }

  /**
   * Forget the session: connections, devices, tiles. `keepMedia`: keep the
   * microphone and camera (to join again with them).
   */
  function cleanup({ keepMedia = false } = {}) {
    const s = session;
    if (!s) return;
    session = null;
    s.timers.forEach(clearInterval);
    clearTimeout(s.iceRestartCheck);
    if (s.e2eeWorker) s.e2eeWorker.terminate();
    $('e2ee').hidden = true;
    for (const side of [s.pub, s.sub]) if (side) side.pc.close();
    if (!keepMedia) for (const t of s.stream.getTracks()) t.stop();
    if (s.ws.readyState === WebSocket.OPEN || s.ws.readyState === WebSocket.CONNECTING) s.ws.close(1000);
    $('tiles').replaceChildren();
    $('room-label').textContent = '';
    for (const kind of ['audio', 'video']) {
      const b = $(kind === 'audio' ? 'mute-audio' : 'mute-video');
      b.setAttribute('aria-pressed', 'false');
      b.textContent = kind === 'audio' ? 'Mute microphone' : 'Stop camera';
    }
    showCallUi(false);
    setStatus('not connected');
  }

  // ------------------------------------------------------- hooks for testing

  /**
   * A read-only view for tests and for debugging from the console:
   * `await huddle.inboundStats()` lists what arrives per remote track.
   */
  window.huddle = {
    /** Restart ICE on both connections now, as a network change would. */
    restartIce() {
      if (!session || !session.me) return false;
      session.nextIceRestart = 0;
      session.iceRestartWait = ICE_RESTART_WAIT_MS[0];
      restartIce('asked');
      return true;
    },
    state() {
      if (!session) return { joined: false };
      return {
        joined: Boolean(session.me),
        me: session.me,
        reconnecting: session.reconnecting || Boolean(session.rejoinUntil && !session.me),
        resumes: session.resumes,
        rejoins: session.rejoins,
        iceRestarts: session.iceRestarts,
        iceServerRenewals: session.iceServerRenewals,
        room: session.room,
        activeSpeaker: session.activeSpeaker || null,
        participants: [...session.participants.values()].map((p) => ({
          id: p.id,
          identity: p.identity,
          speaking: p.tile.classList.contains('speaking'),
          activeSpeaker: p.tile.classList.contains('active-speaker'),
          tracks: [...p.tracks.values()],
        })),
        receiving: [...session.remote.entries()].map(([trackId, r]) => ({
          trackId,
          kind: r.kind,
          participantId: r.participantId,
        })),
        paused: [...session.paused],
        /** rid -> sent, as the server last asked (dynacast) */
        publishedLayers: session.layers || null,
        publisher: session.pub ? session.pub.pc.connectionState : null,
        subscriber: session.sub ? session.sub.pc.connectionState : null,
        /** End-to-end encryption: whether the room has it, its current epoch. */
        e2ee: session.e2ee ? { epoch: session.e2eeEpoch } : null,
      };
    },
    /** E2EE: frames encrypted, decrypted, dropped and held so far (the worker's count). */
    e2eeStats() {
      if (!session || !session.e2eeWorker) return Promise.resolve(null);
      session.e2eeStatsWanted = session.e2eeStatsWanted || [];
      return new Promise((resolve) => {
        session.e2eeStatsWanted.push(resolve);
        session.e2eeWorker.postMessage({ type: 'stats' });
      });
    },
    /** The subscriber connection's descriptions (what was negotiated). */
    subscriberSdp() {
      if (!session || !session.sub) return null;
      const { localDescription: local, remoteDescription: remote } = session.sub.pc;
      return { local: local && local.sdp, remote: remote && remote.sdp };
    },
    /** inbound-rtp stats of the subscriber connection, by room track id. */
    async inboundStats() {
      if (!session || !session.sub) return [];
      const stats = await session.sub.pc.getStats();
      const out = [];
      for (const s of stats.values()) {
        if (s.type !== 'inbound-rtp') continue;
        const info = session.midInfo.get(s.mid) || {};
        const entry = {
          trackId: info.trackId || null,
          participantId: info.streamId || null,
          kind: s.kind,
          codec: s.codecId ? (stats.get(s.codecId) || {}).mimeType || null : null,
        };
        for (const name of INBOUND_NUMBERS) entry[name] = s[name] || 0;
        out.push(entry);
      }
      return out;
    },
    /**
     * outbound-rtp stats of the publisher connection: one entry per audio
     * track, one per simulcast layer (rid) of the camera.
     */
    async outboundStats() {
      if (!session || !session.pub) return [];
      const stats = await session.pub.pc.getStats();
      const out = [];
      for (const s of stats.values()) {
        if (s.type !== 'outbound-rtp') continue;
        out.push({
          kind: s.kind,
          rid: s.rid || null,
          ssrc: s.ssrc,
          active: s.active !== false,
          packetsSent: s.packetsSent || 0,
          bytesSent: s.bytesSent || 0,
          framesEncoded: s.framesEncoded || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          qualityLimitationReason: s.qualityLimitationReason || null,
          encoderImplementation: s.encoderImplementation || null,
          codec: s.codecId ? (stats.get(s.codecId) || {}).mimeType || null : null,
        });
      }
      return out;
    },
    /**
     * The path each media connection takes now: the selected candidate
     * pair's local and remote protocol (udp, tcp), types (host, relay...),
     * the protocol to the TURN server of a relay candidate, and the
     * remote address. `{ publisher, subscriber }`, null where none.
     */
    async paths() {
      if (!session) return { publisher: null, subscriber: null };
      return { publisher: await selectedPath(session.pub), subscriber: await selectedPath(session.sub) };
    },
    /** The SDP of the publisher connection (our offer, the server's answer). */
    publisherSdp() {
      if (!session || !session.pub) return null;
      const { localDescription: l, remoteDescription: r } = session.pub.pc;
      return { offer: l ? l.sdp : null, answer: r ? r.sdp : null };
    },
  };

  // -------------------------------------------------------------- wiring

  $('room').value = params.get('room') || '';
  $('name').value = params.get('name') || '';
  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (session) return;
    join($('room').value.trim(), $('name').value.trim());
  });
  $('mute-audio').addEventListener('click', () => session && setMuted('audio', !session.muted.audio));
  $('mute-video').addEventListener('click', () => session && setMuted('video', !session.muted.video));
  $('leave').addEventListener('click', leave);
  window.addEventListener('pagehide', leave);
  // Back online after the network went away: the old path may be gone.
  window.addEventListener('online', () => mediaPathLost('the browser is online again'));

  if (params.get('autojoin') === '1' && $('room').value && $('name').value) {
    join($('room').value.trim(), $('name').value.trim());
  }
})();
