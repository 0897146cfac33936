// rtgate.js: what the watch and publish pages share. A small WHIP/WHEP
// client (RFC 9725 and the WHEP draft): POST an SDP offer (or, for WHEP, an
// empty body to get the server's offer), follow the resource in Location,
// trickle late ICE candidates with PATCH (If-Match: the ETag), DELETE it at
// the end. Written by hand, not taken from npm, because the pages are served
// from the binary with no build step and no external scripts.

// HTTPError is a failed WHIP/WHEP request; message is what the page shows.
export class HTTPError extends Error {
  constructor(method, url, status, statusText, body) {
    const what = {
      400: 'bad request',
      401: 'unauthorized: a valid token is needed (add ?token=... or type it below)',
      403: 'forbidden: the token is not accepted here',
      404: 'no such stream',
      405: 'method not allowed',
      406: 'not acceptable',
      409: 'conflict: the stream is busy (another publisher?)',
      415: 'unsupported media type',
      422: 'the offer was refused',
      429: 'too many requests',
      503: 'the stream is not live (yet)',
    }[status];
    const detail = (body || '').trim().slice(0, 500);
    super(`${method} ${url}: ${status} ${what || statusText || 'error'}` + (detail ? ` (${detail})` : ''));
    this.status = status;
    this.retryAfter = 0; // seconds, from a Retry-After header
  }
}

// params reads the page's own query string.
export const params = new URLSearchParams(location.search);

// streamName is the last path segment of the page's URL: /watch/{stream}.
export function streamName() {
  const parts = location.pathname.split('/').filter(Boolean);
  return parts.length >= 2 ? decodeURIComponent(parts[parts.length - 1]) : '';
}

// authHeaders is the Authorization header of a bearer token, if any.
export function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// parseIceServers reads the Link headers (rel="ice-server", RFC 9725
// section 4.6) of a response into RTCIceServer objects.
export function parseIceServers(linkHeader) {
  const servers = [];
  if (!linkHeader) return servers;
  // A Link header is a comma-separated list of <uri>; param=value; ...
  // Commas inside quoted values are rare enough here to split on ", <".
  for (const link of linkHeader.split(/,\s*(?=<)/)) {
    const m = link.match(/^\s*<([^>]*)>(.*)$/);
    if (!m) continue;
    const server = { urls: m[1] };
    let rel = '';
    // Each "; name=value", the value a token or a quoted string that may
    // hold ';' and backslash escapes.
    for (const kv of m[2].matchAll(/;\s*([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g)) {
      const value = kv[2] !== undefined ? kv[2].replace(/\\(.)/g, '$1') : kv[3];
      switch (kv[1].toLowerCase()) {
        case 'rel': rel = value; break;
        case 'username': server.username = value; break;
        case 'credential': server.credential = value; break;
      }
    }
    if (rel.split(/\s+/).includes('ice-server')) servers.push(server);
  }
  return servers;
}

// waitGathering resolves once ICE gathering is complete or after ms,
// whichever comes first: on loopback it completes in milliseconds, and a
// candidate that comes later is trickled.
export function waitGathering(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise(resolve => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

// Session is one WHIP or WHEP session: the resource the server made.
export class Session {
  // endpoint: /whip/{stream} or /whep/{stream}; token: bearer token or ''.
  constructor(endpoint, token) {
    this.endpoint = endpoint;
    this.token = token;
    this.resource = null; // absolute URL from Location
    this.etag = null;
    this.iceServers = [];
    this.pending = []; // candidates gathered before the description was sent
    this.ready = false; // the offer or answer is sent: trickle at once
    this.onResponse = null; // called with each Response, for the tests
    this.patches = Promise.resolve();
  }

  async request(method, url, headers, body) {
    const resp = await fetch(url, {
      method,
      headers: { ...authHeaders(this.token), ...headers },
      body,
      cache: 'no-store',
      // DELETE runs from pagehide too; keepalive lets it outlive the page.
      keepalive: method === 'DELETE',
    });
    if (this.onResponse) this.onResponse(method, url, resp);
    if (!resp.ok) {
      const text = await resp.text().catch(() => '');
      const err = new HTTPError(method, url, resp.status, resp.statusText, text);
      err.retryAfter = Number.parseInt(resp.headers.get('Retry-After') || '', 10) || 0;
      throw err;
    }
    return resp;
  }

  // created records what a 201 response says about the resource.
  async created(resp) {
    if (resp.status !== 201) {
      throw new Error(`POST ${this.endpoint}: got ${resp.status}, want 201 Created`);
    }
    const loc = resp.headers.get('Location');
    if (!loc) throw new Error(`POST ${this.endpoint}: 201 without a Location header`);
    this.resource = new URL(loc, new URL(this.endpoint, location.href)).href;
    this.etag = resp.headers.get('ETag');
    this.iceServers = parseIceServers(resp.headers.get('Link'));
    const type = (resp.headers.get('Content-Type') || '').split(';')[0].trim();
    const sdp = await resp.text();
    if (type !== 'application/sdp') {
      throw new Error(`POST ${this.endpoint}: 201 with Content-Type "${type}", want application/sdp`);
    }
    return sdp;
  }

  // offer POSTs the client's offer and returns the server's answer.
  async offer(sdp) {
    const resp = await this.request('POST', this.endpoint, { 'Content-Type': 'application/sdp' }, sdp);
    return this.created(resp);
  }

  // requestOffer POSTs an empty body (WHEP server-offer mode) and returns
  // the server's offer; answer sends the client's answer to the resource.
  async requestOffer() {
    const resp = await this.request('POST', this.endpoint, {}, undefined);
    return this.created(resp);
  }

  async answer(sdp) {
    const resp = await this.request('PATCH', this.resource, this.ifMatch({ 'Content-Type': 'application/sdp' }), sdp);
    this.etag = resp.headers.get('ETag') || this.etag;
  }

  ifMatch(headers) {
    return this.etag ? { ...headers, 'If-Match': this.etag } : headers;
  }

  // trickle sends one candidate (or null: end of candidates) as an SDP
  // fragment (RFC 8840). Until flush, after the offer or answer went out,
  // they are kept: a candidate must not overtake its description.
  trickle(pc, candidate) {
    if (!this.ready) {
      this.pending.push(candidate);
      return this.patches;
    }
    return this.patchCandidates(pc, candidate ? [candidate] : [], !candidate);
  }

  // flush trickles the candidates gathered before the description went
  // out that it did not already carry, and lets later ones go at once.
  flush(pc, sentSDP) {
    this.ready = true;
    const late = this.pending.filter(c => c && !sentSDP.includes(`a=${candidateKey(c.candidate)}`));
    const ended = this.pending.includes(null);
    this.pending = [];
    // A description sent after gathering carries every candidate: nothing
    // to trickle, not even the end.
    if (late.length === 0) return this.patches;
    return this.patchCandidates(pc, late, ended);
  }

  // patchCandidates queues one PATCH; they go out one at a time, in order,
  // each with the latest ETag. A failed trickle is logged, not fatal: the
  // candidates already exchanged may well suffice.
  patchCandidates(pc, candidates, end) {
    const frag = sdpFragment(pc, candidates, end);
    if (!frag || !this.resource) return this.patches;
    this.patches = this.patches
      .then(() => this.request('PATCH', this.resource,
        this.ifMatch({ 'Content-Type': 'application/trickle-ice-sdpfrag' }), frag))
      .then(resp => { this.etag = resp.headers.get('ETag') || this.etag; })
      .catch(err => console.warn(`trickle: ${err.message}`));
    return this.patches;
  }

  // close DELETEs the resource; errors are the caller's to show or drop.
  async close() {
    const url = this.resource;
    this.resource = null;
    this.ready = false;
    if (url) await this.request('DELETE', url, {}, undefined);
  }
}

// candidateKey is a candidate's attribute up to its type ("candidate:F 1
// udp P 127.0.0.1 5000 typ host"): what identifies it. The rest differs
// between the SDP and the event (Chromium adds "ufrag X" to the latter).
export function candidateKey(candidate) {
  return candidate.split(/\s+/).slice(0, 8).join(' ');
}

// sdpFragment is an application/trickle-ice-sdpfrag body (RFC 8840): the
// ICE credentials and, per m-line, its mid and candidates. With BUNDLE every
// candidate belongs to the first m-line, which is the one sent.
export function sdpFragment(pc, candidates, end) {
  const sdp = pc.localDescription && pc.localDescription.sdp;
  if (!sdp) return '';
  const ufrag = sdp.match(/^a=ice-ufrag:(.*)$/m);
  const pwd = sdp.match(/^a=ice-pwd:(.*)$/m);
  const mid = sdp.match(/^a=mid:(.*)$/m);
  const sdpMid = candidates.length && candidates[0].sdpMid != null ? candidates[0].sdpMid : null;
  const mline = sdp.match(/^m=(\S+) .*$/m);
  if (!ufrag || !pwd || !mid || !mline) return '';
  let frag = `a=ice-ufrag:${ufrag[1].trim()}\r\na=ice-pwd:${pwd[1].trim()}\r\n`;
  frag += `m=${mline[1]} 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${sdpMid ?? mid[1].trim()}\r\n`;
  for (const c of candidates) frag += `a=${c.candidate}\r\n`;
  if (end) frag += 'a=end-of-candidates\r\n';
  return frag;
}

// show puts text into the element with id, or hides it when text is empty.
export function show(id, text) {
  const el = document.getElementById(id);
  if (!el) return;
  el.textContent = text || '';
  el.hidden = !text;
}

// formatBitrate writes bits per second for people.
export function formatBitrate(bps) {
  if (!Number.isFinite(bps) || bps <= 0) return '—';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bps / 1e3)} kbit/s`;
}
