// index.js: the stream list, polled from GET /api/streams each second.
//
// It reads what the API gives and shows a dash for what it does not: the
// stream's own codecs/bitrate/viewers fields where the API has them, else
// the sums over its tracks.
//
// window.rtgate: streams (the last list), updates (successful polls),
// error; for the end-to-end tests.
import { formatBitrate, show } from './rtgate.js';

const rt = (window.rtgate = { page: 'index', streams: [], updates: 0, error: null });

// view reduces one stream of the API to the table's columns.
export function view(s) {
  const tracks = Array.isArray(s.tracks) ? s.tracks : [];
  let codecs = s.codecs;
  if (Array.isArray(codecs)) codecs = codecs.join(', ');
  if (!codecs) codecs = tracks.map(t => t.codec).filter(Boolean).join(', ');
  let bitrate = typeof s.bitrate === 'number' ? s.bitrate : NaN;
  if (Number.isNaN(bitrate) && tracks.length) bitrate = tracks.reduce((sum, t) => sum + (t.bitrate || 0), 0);
  let viewers = s.viewers;
  if (Array.isArray(viewers)) viewers = viewers.length;
  // A WHIP stream without a publisher has no publication state.
  let state = String(s.state ?? '');
  if (!state && s.whip) state = s.whip.publisher === 'connecting' ? 'connecting' : 'no publisher';
  const modes = [];
  if (s.whip && s.whip.mode) modes.push(`WHIP ${s.whip.mode}`);
  if (s.whepMode) modes.push(`WHEP ${s.whepMode}`);
  return {
    name: String(s.name ?? ''),
    state,
    error: String(s.lastError ?? s.error ?? ''),
    mode: modes.join(', '),
    codecs: codecs || '—',
    bitrate: formatBitrate(bitrate),
    viewers: typeof viewers === 'number' ? String(viewers) : '—',
  };
}

function cell(tr, text, cls) {
  const td = tr.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function link(td, href, text) {
  const a = document.createElement('a');
  a.href = href;
  a.textContent = text;
  td.append(a, ' ');
}

function render(list) {
  const tbody = document.querySelector('#streams tbody');
  const rows = list.map(view);
  tbody.replaceChildren();
  for (const v of rows) {
    const tr = tbody.insertRow();
    tr.dataset.stream = v.name;
    const name = cell(tr, v.name, 'name');
    if (v.mode) name.append(` (${v.mode})`);
    const state = cell(tr, v.state, `state state-${v.state.replace(/[^a-z]/g, '')}`);
    if (v.error) state.title = v.error;
    cell(tr, v.codecs);
    cell(tr, v.bitrate, 'num');
    cell(tr, v.viewers, 'num');
    const links = tr.insertCell();
    const path = encodeURIComponent(v.name);
    link(links, `/watch/${path}`, 'watch');
    link(links, `/publish/${path}`, 'publish');
  }
  document.getElementById('empty').hidden = rows.length > 0;
}

async function poll() {
  try {
    const resp = await fetch('/api/streams', { cache: 'no-store' });
    if (!resp.ok) throw new Error(`GET /api/streams: ${resp.status} ${resp.statusText}`);
    const body = await resp.json();
    const list = Array.isArray(body) ? body : body.streams || [];
    rt.streams = list;
    rt.updates++;
    rt.error = null;
    render(list);
    show('error', '');
    document.getElementById('updated').textContent = `Last update ${new Date().toLocaleTimeString()}.`;
  } catch (err) {
    rt.error = err.message;
    show('error', `Cannot read the streams: ${err.message}`);
  } finally {
    setTimeout(poll, 1000);
  }
}

document.getElementById('publish-form').addEventListener('submit', e => {
  e.preventDefault();
  const name = document.getElementById('publish-name').value.trim();
  if (name) location.href = `/publish/${encodeURIComponent(name)}`;
});

poll();
