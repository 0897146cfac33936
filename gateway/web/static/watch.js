// watch.js: plays /watch/{stream} over WHEP (POST /whep/{stream}).
//
// Query parameters: token=T (sent as Authorization: Bearer T), offer=server
// (POST an empty body, answer the server's offer with PATCH), trickle=1
// (send the offer before ICE gathering ends, candidates by PATCH; proxy
// mode refuses trickle). A stream that is not live yet (503) is tried
// again after its Retry-After.
//
// window.rtgate is for people debugging and for the end-to-end tests:
// state, error, status, offer, resource, ttffMs (POST sent -> first frame
// presented, in ms), timings, pc, framesDecoded() and stats().
import { Session, params, streamName, show, formatBitrate, waitGathering } from './rtgate.js';

const name = streamName();
const video = document.getElementById('video');
const tokenInput = document.getElementById('token');
const offerSelect = document.getElementById('offer');

const rt = (window.rtgate = {
  page: 'watch',
  stream: name,
  state: 'idle',
  error: null,
  status: 0, // HTTP status of the failed request, if one failed
  offer: 'client',
  resource: null,
  ttffMs: null,
  timings: {}, // performance.now() of postSent, response, connected, firstFrame
  attempts: 0,
  pc: null,
  async framesDecoded() {
    return (await this.stats()).framesDecoded;
  },
  // stats sums the inbound RTP of the current PeerConnection.
  async stats() {
    const out = { framesDecoded: 0, videoBytes: 0, audioPackets: 0, width: 0, height: 0, fps: 0, videoCodec: '', audioCodec: '' };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    const codecs = new Map();
    report.forEach(r => { if (r.type === 'codec') codecs.set(r.id, r.mimeType); });
    report.forEach(r => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video') {
        out.framesDecoded += r.framesDecoded || 0;
        out.videoBytes += r.bytesReceived || 0;
        out.width = r.frameWidth || out.width;
        out.height = r.frameHeight || out.height;
        out.fps = r.framesPerSecond || out.fps;
        out.videoCodec = codecs.get(r.codecId) || out.videoCodec;
      } else if (r.kind === 'audio') {
        out.audioPackets += r.packetsReceived || 0;
        out.audioCodec = codecs.get(r.codecId) || out.audioCodec;
      }
    });
    return out;
  },
});

document.getElementById('stream').textContent = name || '(no stream)';
document.title = `rtgate: watch ${name}`;
document.getElementById('publish-link').href = `/publish/${encodeURIComponent(name)}`;
tokenInput.value = params.get('token') || '';
offerSelect.value = params.get('offer') === 'server' ? 'server' : 'client';

function setState(s) {
  rt.state = s;
  document.getElementById('state').textContent = s;
}

function fail(run, err) {
  if (run.stopped) return;
  rt.error = err && err.message ? err.message : String(err);
  rt.status = (err && err.status) || 0;
  setState('failed');
  show('error', rt.error);
}

let current = null; // the running attempt: { pc, session, stopped }

async function play() {
  await stop();
  show('error', '');
  rt.error = null;
  rt.status = 0;
  if (!name) {
    fail({ stopped: false }, new Error('no stream in the URL: open /watch/{stream}'));
    return;
  }
  const offerStyle = offerSelect.value;
  const trickle = params.get('trickle') === '1';
  const session = new Session(`/whep/${encodeURIComponent(name)}`, tokenInput.value.trim());
  const pc = new RTCPeerConnection();
  const run = { pc, session, stopped: false };
  current = run;
  rt.attempts++;
  rt.pc = pc;
  rt.offer = offerStyle;
  rt.resource = null;
  rt.ttffMs = null;
  rt.timings = {};
  lastBytes = 0;
  lastAt = 0;
  setState('connecting');

  pc.onicecandidate = e => session.trickle(pc, e.candidate);
  pc.ontrack = e => {
    if (run.stopped) return;
    // One stream of our own: the server's msid may put audio and video in
    // different streams, and the element plays one.
    run.stream ??= new MediaStream();
    run.stream.addTrack(e.track);
    if (video.srcObject !== run.stream) {
      video.srcObject = run.stream;
      // autoplay alone does not restart an element whose source was
      // replaced after a stop; muted playback needs no user gesture.
      video.play().catch(err => console.warn(`play: ${err.message}`));
    }
    if (e.track.kind === 'video') awaitFirstFrame(run);
  };
  pc.onconnectionstatechange = () => {
    if (run.stopped) return;
    switch (pc.connectionState) {
      case 'connected':
        rt.timings.connected ??= performance.now();
        if (rt.state === 'connecting') setState('connected');
        break;
      case 'disconnected':
        setState('disconnected');
        break;
      case 'failed':
        fail(run, new Error('the connection failed (ICE or DTLS)'));
        break;
    }
  };

  try {
    if (offerStyle === 'server') {
      rt.timings.postSent = performance.now();
      const offer = await session.requestOffer();
      rt.timings.response = performance.now();
      rt.resource = session.resource;
      applyIceServers(pc, session);
      await pc.setRemoteDescription({ type: 'offer', sdp: offer });
      await pc.setLocalDescription();
      if (!trickle) await waitGathering(pc, 1000);
      const answer = pc.localDescription.sdp;
      await session.answer(answer);
      session.flush(pc, answer);
    } else {
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      await pc.setLocalDescription();
      if (!trickle) await waitGathering(pc, 1000);
      const offer = pc.localDescription.sdp;
      rt.timings.postSent = performance.now();
      const answer = await session.offer(offer);
      rt.timings.response = performance.now();
      rt.resource = session.resource;
      applyIceServers(pc, session);
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      session.flush(pc, offer);
    }
  } catch (err) {
    // The server may have made the resource before the failure.
    session.close().catch(() => {});
    if (err.status === 503 && !run.stopped) {
      // Not live yet (no publisher): try again when the server says.
      const s = Math.min(Math.max(err.retryAfter || 2, 1), 30);
      setState('waiting');
      show('error', `${err.message}: trying again in ${s} s`);
      run.retry = setTimeout(() => { if (current === run) play(); }, s * 1000);
      return;
    }
    fail(run, err);
  }
}

// applyIceServers uses the STUN/TURN servers of the response's Link
// headers; on loopback there are none.
function applyIceServers(pc, session) {
  if (session.iceServers.length === 0) return;
  try {
    pc.setConfiguration({ ...pc.getConfiguration(), iceServers: session.iceServers });
  } catch (err) {
    console.warn(`ice servers from Link: ${err.message}`);
  }
}

// awaitFirstFrame records the time the first video frame is presented:
// requestVideoFrameCallback where the browser has it, else the first
// 'playing' event (which fires with the first frame too, less precisely).
function awaitFirstFrame(run) {
  const done = t => {
    if (run.stopped || rt.ttffMs !== null || current !== run) return;
    rt.timings.firstFrame = t;
    rt.ttffMs = Math.round(t - rt.timings.postSent);
    document.getElementById('stat-ttff').textContent = `${rt.ttffMs} ms`;
    setState('playing');
  };
  if (typeof video.requestVideoFrameCallback === 'function') {
    video.requestVideoFrameCallback((now, meta) => done(meta && meta.presentationTime ? Math.min(now, meta.presentationTime) : now));
  } else {
    video.addEventListener('playing', () => done(performance.now()), { once: true });
  }
}

async function stop() {
  const run = current;
  current = null;
  if (!run) return;
  run.stopped = true;
  clearTimeout(run.retry);
  run.pc.close();
  video.srcObject = null;
  setState('stopped');
  try {
    await run.session.close();
  } catch (err) {
    console.warn(`stop: ${err.message}`);
  }
}

// Stats on the page, each second.
let lastBytes = 0;
let lastAt = 0;
setInterval(async () => {
  if (!current) return;
  const s = await rt.stats().catch(() => null);
  if (!s) return;
  const now = performance.now();
  const bps = lastAt && s.videoBytes >= lastBytes ? ((s.videoBytes - lastBytes) * 8000) / (now - lastAt) : 0;
  lastBytes = s.videoBytes;
  lastAt = now;
  document.getElementById('stat-video').textContent =
    s.videoCodec ? `${s.videoCodec} ${s.width}x${s.height} ${s.fps || 0} fps` : '—';
  document.getElementById('stat-audio').textContent = s.audioCodec ? `${s.audioCodec}, ${s.audioPackets} packets` : '—';
  document.getElementById('stat-frames').textContent = String(s.framesDecoded);
  document.getElementById('stat-bitrate').textContent = formatBitrate(bps);
}, 1000);

document.getElementById('form').addEventListener('submit', e => {
  e.preventDefault();
  play();
});
document.getElementById('stop').addEventListener('click', () => stop());
// The resource is released when the page goes away; keepalive lets the
// DELETE outlive it.
window.addEventListener('pagehide', () => {
  const run = current;
  current = null;
  if (!run) return;
  run.stopped = true;
  run.session.close().catch(() => {});
  run.pc.close();
});

play();
