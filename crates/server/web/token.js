// Access tokens for the huddle pages (index.html, watch.html).
//
// A token given in the page's address FRAGMENT (#token=...) wins: a fragment
// is never sent to the server, nor in a Referer, nor into proxy logs. It is
// read once as the page loads and then removed from the address bar (and
// the history entry), so a copied or bookmarked address does not carry it.
// A token in the QUERY (?token=...) has already been sent to the server and
// whatever logs requests on the way: it is removed from the address bar too
// and refused, with a message saying to use #token= instead.
//
// Without a given token the page asks the server's development endpoint,
// GET /dev/token, which exists only when the server runs with --dev; without
// it the error says what to do.
'use strict';

(() => {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const fromHash = hash.get('token');
  const inQuery = query.has('token');
  if (fromHash !== null || inQuery) {
    hash.delete('token');
    query.delete('token');
    const q = query.toString();
    const h = hash.toString();
    history.replaceState(history.state, '', `${location.pathname}${q ? `?${q}` : ''}${h ? `#${h}` : ''}`);
  }
  const given = fromHash || null;

  /**
   * A token for (room, identity), of an end-to-end encrypted room if `e2ee`
   * (from the development endpoint; a given token says what it says).
   * Rejects with a message a person can act on.
   */
  window.huddleToken = async function huddleToken(room, identity, e2ee = false) {
    if (inQuery) {
      throw new Error(
        'This page was opened with ?token=... in its address, which sends the token to the server and its logs. ' +
          'Open it with #token=... instead (after a #, not a ?).',
      );
    }
    if (given) return given;
    const url = `/dev/token?room=${encodeURIComponent(room)}&identity=${encodeURIComponent(identity)}${e2ee ? '&e2ee=1' : ''}`;
    let res;
    try {
      res = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      throw new Error(`cannot reach the server for a token: ${e.message}`);
    }
    if (res.status === 404) {
      throw new Error(
        'This server does not hand out tokens (it is not running in development mode, --dev). ' +
          'Ask for an access token and open this page with #token=... at the end of its address.',
      );
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok || !body.token) {
      throw new Error(`the server refused a token: ${body.error || res.status}`);
    }
    return body.token;
  };
})();
