// publish.js: publishes the camera and microphone to /publish/{stream} over
// WHIP (POST /whip/{stream}); DELETE of the resource on Stop and when the
// page goes away.
//
// Query parameters: token=T (sent as Authorization: Bearer T), video=CODEC
// (vp8, vp9, h264 or av1: offered first), trickle=1 (send the offer before
// ICE gathering ends, candidates by PATCH).
//
// window.rtgate: state, error, status, resource, pc, framesEncoded() and
// stats(), for people debugging and for the end-to-end tests.
import { Session, params, streamName, show, formatBitrate, waitGathering } from './rtgate.js';

const name = streamName();
const video = document.getElementById('video');
const tokenInput = document.getElementById('token');

const rt = (window.rtgate = {
  page: 'publish',
  stream: name,
  state: 'idle',
  error: null,
  status: 0,
  resource: null,
  attempts: 0,
  pc: null,
  async framesEncoded() {
    return (await this.stats()).framesEncoded;
  },
  // stats sums the outbound RTP of the current PeerConnection.
  async stats() {
    const out = { framesEncoded: 0, videoBytes: 0, audioPackets: 0, width: 0, height: 0, fps: 0, videoCodec: '', audioCodec: '' };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    const codecs = new Map();
    report.forEach(r => { if (r.type === 'codec') codecs.set(r.id, r.mimeType); });
    report.forEach(r => {
      if (r.type !== 'outbound-rtp') return;
      if (r.kind === 'video') {
        out.framesEncoded += r.framesEncoded || 0;
        out.videoBytes += r.bytesSent || 0;
        out.width = r.frameWidth || out.width;
        out.height = r.frameHeight || out.height;
        out.fps = r.framesPerSecond || out.fps;
        out.videoCodec = codecs.get(r.codecId) || out.videoCodec;
      } else if (r.kind === 'audio') {
        out.audioPackets += r.packetsSent || 0;
        out.audioCodec = codecs.get(r.codecId) || out.audioCodec;
      }
    });
    return out;
  },
});

document.getElementById('stream').textContent = name || '(no stream)';
document.title = `rtgate: publish ${name}`;
document.getElementById('watch-link').href = `/watch/${encodeURIComponent(name)}`;
tokenInput.value = params.get('token') || '';

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

let current = null; // the running attempt: { pc, session, media, stopped }

// preferCodec puts the codec named by ?video= first in the transceiver's
// list, keeping the others (and RTX/RED/FEC) after it.
function preferCodec(transceiver, codec) {
  if (!codec || typeof transceiver.setCodecPreferences !== 'function') return;
  const want = `video/${codec}`.toLowerCase();
  // Browsers differ on whether a sendonly transceiver's list is checked
  // against the sender's or the receiver's capabilities: try both.
  let lastErr = null;
  for (const caps of [RTCRtpSender.getCapabilities('video'), RTCRtpReceiver.getCapabilities('video')]) {
    if (!caps) continue;
    const first = caps.codecs.filter(c => c.mimeType.toLowerCase() === want);
    if (first.length === 0) continue;
    try {
      transceiver.setCodecPreferences([...first, ...caps.codecs.filter(c => c.mimeType.toLowerCase() !== want)]);
      return;
    } catch (err) {
      lastErr = err;
    }
  }
  throw new Error(`video=${codec}: this browser cannot send it${lastErr ? ` (${lastErr.message})` : ''}`);
}

async function start() {
  await stop();
  show('error', '');
  rt.error = null;
  rt.status = 0;
  const run = { pc: null, session: null, media: null, stopped: false };
  if (!name) {
    fail(run, new Error('no stream in the URL: open /publish/{stream}'));
    return;
  }
  current = run;
  rt.attempts++;
  rt.resource = null;
  lastBytes = 0;
  lastAt = 0;
  setState('camera');
  try {
    run.media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      audio: true,
    });
  } catch (err) {
    const hint = window.isSecureContext ? '' : ' (browsers allow it only over https or on localhost)';
    fail(run, new Error(`camera and microphone: ${err.name}: ${err.message}${hint}`));
    return;
  }
  if (run.stopped) {
    run.media.getTracks().forEach(t => t.stop());
    return;
  }
  video.srcObject = run.media;

  const trickle = params.get('trickle') === '1';
  const session = new Session(`/whip/${encodeURIComponent(name)}`, tokenInput.value.trim());
  const pc = new RTCPeerConnection();
  run.pc = pc;
  run.session = session;
  rt.pc = pc;
  setState('connecting');

  pc.onicecandidate = e => session.trickle(pc, e.candidate);
  pc.onconnectionstatechange = () => {
    if (run.stopped) return;
    switch (pc.connectionState) {
      case 'connected':
        setState('live');
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
    for (const track of run.media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [run.media] });
      if (track.kind === 'video') preferCodec(t, params.get('video'));
    }
    await pc.setLocalDescription();
    if (!trickle) await waitGathering(pc, 1000);
    const offer = pc.localDescription.sdp;
    const answer = await session.offer(offer);
    rt.resource = session.resource;
    if (session.iceServers.length) {
      pc.setConfiguration({ ...pc.getConfiguration(), iceServers: session.iceServers });
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    session.flush(pc, offer);
  } catch (err) {
    fail(run, err);
    session.close().catch(() => {});
  }
}

async function stop() {
  const run = current;
  current = null;
  if (!run) return;
  run.stopped = true;
  if (run.pc) run.pc.close();
  if (run.media) run.media.getTracks().forEach(t => t.stop());
  video.srcObject = null;
  setState('stopped');
  try {
    if (run.session) await run.session.close();
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
  document.getElementById('stat-frames').textContent = String(s.framesEncoded);
  document.getElementById('stat-bitrate').textContent = formatBitrate(bps);
}, 1000);

document.getElementById('form').addEventListener('submit', e => {
  e.preventDefault();
  start();
});
document.getElementById('stop').addEventListener('click', () => stop());
window.addEventListener('pagehide', () => {
  const run = current;
  current = null;
  if (!run) return;
  run.stopped = true;
  if (run.session) run.session.close().catch(() => {});
  if (run.pc) run.pc.close();
  if (run.media) run.media.getTracks().forEach(t => t.stop());
});

start();
