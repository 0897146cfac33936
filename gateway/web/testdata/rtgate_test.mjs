// rtgate_test.mjs checks the pure functions of static/rtgate.js under node
// (web_test.go runs it): Link header parsing, trickle fragments, error text.
// It prints "ok" and exits 0, or throws.
import assert from 'node:assert/strict';

// rtgate.js reads the page's URL at load.
globalThis.location = new URL('http://127.0.0.1:8080/watch/cam%201?token=abc&offer=server');
const m = await import('../static/rtgate.js');

assert.equal(m.streamName(), 'cam 1');
assert.equal(m.params.get('token'), 'abc');
assert.deepEqual(m.authHeaders('t0k'), { Authorization: 'Bearer t0k' });
assert.deepEqual(m.authHeaders(''), {});

// RFC 9725 section 4.6 examples, as one header and as several joined by ", ".
assert.deepEqual(
  m.parseIceServers(
    '<stun:stun.example.net>; rel="ice-server", ' +
      '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="myPassword"; credential-type="password", ' +
      '<https://example.net/other>; rel="next"',
  ),
  [
    { urls: 'stun:stun.example.net' },
    { urls: 'turn:turn.example.net?transport=udp', username: 'user', credential: 'myPassword' },
  ],
);
assert.deepEqual(m.parseIceServers('<stun:a.example:3478>;rel=ice-server'), [{ urls: 'stun:a.example:3478' }]);
assert.deepEqual(m.parseIceServers('<turn:t.example>; rel="ice-server"; username="a\\"b"; credential="p;w"'),
  [{ urls: 'turn:t.example', username: 'a"b', credential: 'p;w' }]);
assert.deepEqual(m.parseIceServers(null), []);
assert.deepEqual(m.parseIceServers(''), []);

// A trickle fragment carries the credentials, the candidate's mid and the
// candidates (RFC 8840).
const pc = {
  localDescription: {
    sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n' +
      'm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ice-ufrag:UF\r\na=ice-pwd:PWD\r\n' +
      'm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=ice-ufrag:UF\r\na=ice-pwd:PWD\r\n',
  },
};
const cand = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMid: '0' };
assert.equal(
  m.sdpFragment(pc, [cand], true),
  'a=ice-ufrag:UF\r\na=ice-pwd:PWD\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n' +
    'a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n',
);
assert.equal(m.sdpFragment({ localDescription: null }, [cand], false), '');

// A candidate of an icecandidate event is found in the SDP that carried it
// although Chromium adds "ufrag" to the former only.
assert.equal(
  m.candidateKey('candidate:891368576 1 udp 2122194687 127.0.0.1 57394 typ host generation 0 ufrag jPVy network-id 3'),
  'candidate:891368576 1 udp 2122194687 127.0.0.1 57394 typ host',
);

// Session trickles: nothing before the description went out, nothing the
// description carried, then each candidate and the end, in order, with the
// latest ETag and the token.
const calls = [];
globalThis.fetch = async (url, init) => {
  calls.push({ url, ...init });
  return new Response(null, { status: 204, headers: { ETag: `"e${calls.length + 1}"` } });
};
const sess = new m.Session('/whep/x', 'tok');
sess.resource = 'http://127.0.0.1:8080/whep/x/1';
sess.etag = '"e1"';
const inSDP = { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0 ufrag UF', sdpMid: '0' };
const late = { candidate: 'candidate:2 1 udp 2122260222 127.0.0.1 50002 typ host generation 0 ufrag UF', sdpMid: '0' };
sess.trickle(pc, inSDP);
sess.trickle(pc, null);
assert.equal(calls.length, 0, 'a candidate went out before its description');
await sess.flush(pc, pc.localDescription.sdp + 'a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\n');
assert.equal(calls.length, 0, 'a candidate the description carried was trickled');
await sess.trickle(pc, late);
await sess.trickle(pc, null);
assert.equal(calls.length, 2);
assert.equal(calls[0].method, 'PATCH');
assert.equal(calls[0].url, sess.resource);
assert.deepEqual(calls[0].headers, {
  Authorization: 'Bearer tok', 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '"e1"',
});
assert.match(calls[0].body, /a=candidate:2 1 udp 2122260222 127\.0\.0\.1 50002 typ host/);
assert.doesNotMatch(calls[0].body, /end-of-candidates/);
assert.equal(calls[1].headers['If-Match'], '"e2"');
assert.match(calls[1].body, /a=end-of-candidates\r\n$/);
await sess.close();
assert.equal(calls[2].method, 'DELETE');
assert.equal(calls[2].keepalive, true);
assert.equal(sess.resource, null);

// Errors say what failed in words.
const e401 = new m.HTTPError('POST', '/whep/x', 401, 'Unauthorized', 'missing token\n');
assert.equal(e401.status, 401);
assert.match(e401.message, /^POST \/whep\/x: 401 unauthorized: a valid token is needed.*\(missing token\)$/);
assert.match(new m.HTTPError('POST', '/whip/x', 409, 'Conflict', '').message, /409 conflict/);
assert.match(new m.HTTPError('POST', '/whep/x', 404, 'Not Found', 'no stream "x"').message, /404 no such stream \(no stream "x"\)/);

assert.equal(m.formatBitrate(0), '—');
assert.equal(m.formatBitrate(640000), '640 kbit/s');
assert.equal(m.formatBitrate(2500000), '2.50 Mbit/s');

console.log('ok');
