// Access tokens for the huddle pages (index.html, watch.html).
//
// A token given in the page's address (?token=...) wins. Otherwise the page
// asks the server's development endpoint, GET /dev/token, which exists only
// when the server runs with --dev; without it the error says what to do.
'use strict';

/** A token for (room, identity). Rejects with a message a person can act on. */
window.huddleToken = async function huddleToken(room, identity) {
  const given = new URLSearchParams(location.search).get('token');
  if (given) return given;
  const url = `/dev/token?room=${encodeURIComponent(room)}&identity=${encodeURIComponent(identity)}`;
  let res;
  try {
    res = await fetch(url, { cache: 'no-store' });
  } catch (e) {
    throw new Error(`cannot reach the server for a token: ${e.message}`);
  }
  if (res.status === 404) {
    throw new Error(
      'This server does not hand out tokens (it is not running in development mode, --dev). ' +
        'Ask for an access token and open this page with ?token=... in its address.',
    );
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok || !body.token) {
    throw new Error(`the server refused a token: ${body.error || res.status}`);
  }
  return body.token;
};
