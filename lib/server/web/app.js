// The ompf search page: plain JavaScript, no build step, talks only to this server's API.
const $ = (id) => document.getElementById(id);

const state = {
  /** The current query: { kind: 'file', file } or { kind: 'key', key }. */
  query: undefined,
  limits: { maxImageBytes: Infinity, maxResults: 100 },
  lastIndexed: -1,
  searchSeq: 0,
};

// ---------- API ----------

async function api(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw { message: 'The ompf server is not reachable.', hint: 'Is `npm start` still running?' };
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw body.error ?? { message: `HTTP ${response.status}` };
  return body;
}

function searchParams() {
  const params = new URLSearchParams();
  const n = Number($('n').value);
  if (Number.isInteger(n)) params.set('n', String(n));
  const prefix = $('prefix').value;
  if (prefix) params.set('prefix', prefix);
  return params;
}

function validN() {
  const n = Number($('n').value);
  if (!Number.isInteger(n) || n < 1 || n > state.limits.maxResults) {
    showMessage({
      message: `Results must be a whole number from 1 to ${state.limits.maxResults}.`,
    });
    return false;
  }
  return true;
}

// ---------- searching ----------

async function runSearch() {
  if (!state.query || !validN()) return;
  const seq = ++state.searchSeq;
  const grid = $('results');
  grid.classList.add('loading');
  hideMessage();
  const started = performance.now();
  try {
    let body;
    if (state.query.kind === 'file') {
      body = await api(`/search?${searchParams()}`, {
        method: 'POST',
        headers: { 'content-type': state.query.file.type || 'image/jpeg' },
        body: state.query.file,
      });
    } else {
      body = await api(`/images/${encodeURIComponent(state.query.key)}/similar?${searchParams()}`);
    }
    if (seq !== state.searchSeq) return;
    renderResults(body.hits, performance.now() - started);
  } catch (error) {
    if (seq !== state.searchSeq) return;
    showMessage(error);
    renderResults([], 0, true);
  } finally {
    if (seq === state.searchSeq) grid.classList.remove('loading');
  }
}

function setFileQuery(file) {
  if (!file) return;
  if (!file.type.startsWith('image/') && file.type !== '') {
    showMessage({ message: `${file.name} is not an image (${file.type}).` });
    return;
  }
  if (file.size > state.limits.maxImageBytes) {
    showMessage({
      message: `${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(state.limits.maxImageBytes)}.`,
    });
    return;
  }
  state.query = { kind: 'file', file };
  showPreview(URL.createObjectURL(file), `Your picture: ${file.name}`);
  history.replaceState(null, '', location.pathname);
  void runSearch();
}

function setKeyQuery(key, { push = true } = {}) {
  state.query = { kind: 'key', key };
  showPreview(`/images/${encodeURIComponent(key)}?w=512`, key);
  if (push) history.pushState({ key }, '', `#key=${encodeURIComponent(key)}`);
  void runSearch();
  window.scrollTo({ top: 0, behavior: 'smooth' });
}

function showPreview(src, caption) {
  const img = $('query-preview');
  if (img.dataset.objectUrl) URL.revokeObjectURL(img.dataset.objectUrl);
  img.dataset.objectUrl = src.startsWith('blob:') ? src : '';
  img.src = src;
  img.hidden = false;
  $('query-hint').hidden = true;
  $('query-caption').textContent = caption;
  $('query-caption').hidden = false;
  $('again').disabled = false;
}

function renderResults(hits, ms, failed = false) {
  const grid = $('results');
  grid.replaceChildren();
  $('empty').hidden = hits.length > 0 || failed;
  if (!failed && hits.length === 0 && state.query) {
    $('empty').hidden = false;
    $('empty').firstElementChild.textContent =
      'No results: the gallery is empty, still indexing, or nothing matches the prefix.';
  }
  $('results-summary').textContent = failed
    ? ''
    : `${hits.length} nearest${$('prefix').value ? ` under “${$('prefix').value}”` : ''} · ${Math.round(ms)} ms`;
  hits.forEach((hit, i) => grid.append(resultCard(hit, i + 1)));
}

function resultCard(hit, rank) {
  const li = el('li', {
    className: 'card result',
    dataset: { key: hit.key, distance: String(hit.distance) },
  });
  const pick = el('button', { className: 'pick', type: 'button', title: `Search by ${hit.key}` });
  const img = el('img', { alt: hit.key, loading: 'lazy', decoding: 'async' });
  img.src = `${hit.url}?w=320`;
  pick.append(img);
  pick.addEventListener('click', () => setKeyQuery(hit.key));
  const badge = el('span', { className: 'rank', textContent: `#${rank}` });
  const actions = el('div', { className: 'actions' });
  const open = el('a', {
    href: hit.url,
    target: '_blank',
    rel: 'noopener',
    textContent: 'open',
    title: 'Open the original',
  });
  const remove = el('button', { type: 'button', textContent: 'delete', title: 'Delete from the gallery' });
  remove.addEventListener('click', () => void deleteImage(hit.key, li));
  actions.append(open, remove);
  const bar = el('div', { className: 'bar' });
  const fill = el('span');
  // Cosine distance between photos is mostly 0..1: a bar of 1 - distance separates results better than the score.
  fill.style.width = `${Math.round(Math.max(0, Math.min(1, 1 - hit.distance)) * 100)}%`;
  bar.append(fill);
  const meta = el('div', { className: 'meta' });
  meta.append(
    el('span', { className: 'key', textContent: hit.key, title: hit.key }),
    (() => {
      const dist = el('div', { className: 'dist' });
      dist.append(el('span', { className: 'distance', textContent: hit.distance.toFixed(4) }), bar);
      dist.title = `cosine distance ${hit.distance.toFixed(6)} · score ${hit.score.toFixed(4)}`;
      return dist;
    })(),
  );
  li.append(pick, badge, actions, meta);
  return li;
}

async function deleteImage(key, card) {
  if (!confirm(`Delete ${key} from the gallery folder and the index?`)) return;
  try {
    await api(`/images/${encodeURIComponent(key)}`, { method: 'DELETE' });
    card.remove();
    void refreshStatus();
  } catch (error) {
    showMessage(error);
  }
}

// ---------- duplicates ----------

async function findDuplicates() {
  hideMessage();
  const params = new URLSearchParams({ limit: '50' });
  const threshold = $('dup-threshold').value;
  if (threshold !== '') params.set('threshold', threshold);
  try {
    const page = await api(`/duplicates?${params}`);
    renderDuplicates(page);
  } catch (error) {
    showMessage(error);
  }
}

function renderDuplicates(page) {
  $('duplicates-view').hidden = false;
  $('duplicates-summary').textContent =
    `${page.total} group${page.total === 1 ? '' : 's'} at threshold ${page.threshold}, hash ${page.hashBits} bits` +
    (page.groups.length < page.total ? ` · showing ${page.groups.length}` : '');
  const list = $('duplicate-groups');
  list.replaceChildren();
  for (const group of page.groups) {
    const item = el('li', { className: 'group' });
    const members = el('ol', { className: 'grid' });
    for (const member of group.members) members.append(duplicateCard(member));
    item.append(el('p', { className: 'caption', textContent: `${group.members.length} images` }), members);
    list.append(item);
  }
  $('duplicates-view').scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function duplicateCard(member) {
  const li = el('li', { className: 'card duplicate', dataset: { key: member.key } });
  const pick = el('button', { className: 'pick', type: 'button', title: `Search by ${member.key}` });
  const img = el('img', { alt: member.key, loading: 'lazy', decoding: 'async' });
  img.src = `${member.url}?w=320`;
  pick.append(img);
  pick.addEventListener('click', () => setKeyQuery(member.key));
  const actions = el('div', { className: 'actions' });
  const open = el('a', { href: member.url, target: '_blank', rel: 'noopener', textContent: 'open' });
  const remove = el('button', { type: 'button', textContent: 'delete', title: 'Delete from the gallery' });
  remove.addEventListener('click', async () => {
    if (!confirm(`Delete ${member.key} from the gallery folder and the index?`)) return;
    try {
      await api(`/images/${encodeURIComponent(member.key)}`, { method: 'DELETE' });
      li.remove();
      void refreshStatus();
    } catch (error) {
      showMessage(error);
    }
  });
  actions.append(open, remove);
  const meta = el('div', { className: 'meta' });
  meta.append(
    el('span', { className: 'key', textContent: member.key, title: member.key }),
    el('span', {
      className: 'distance',
      textContent: member.exact
        ? 'exact copy'
        : member.distance.toFixed(4) + (member.hashBits === undefined ? '' : ` · ${member.hashBits} bits`),
      title:
        `${member.width}×${member.height}, ${formatBytes(member.bytes)}; cosine distance` +
        (member.hashBits === undefined ? '' : ` and perceptual-hash bits`) +
        ' from the first image',
    }),
  );
  li.append(pick, actions, meta);
  return li;
}

// ---------- adding images ----------

async function addFiles(files) {
  const folder = $('add-folder').value.trim();
  const queue = [...files];
  const list = $('uploads');
  const rows = new Map(
    queue.map((file) => {
      const row = el('li');
      row.append(
        el('span', { className: 'name', textContent: file.name, title: file.name }),
        el('span', { className: 'wait', textContent: 'waiting' }),
      );
      list.prepend(row);
      return [file, row];
    }),
  );
  const setRow = (file, className, text, title = '') => {
    const status = rows.get(file).lastElementChild;
    status.className = className;
    status.textContent = text;
    status.title = title;
  };
  // Two at a time: the server decodes each upload before accepting it.
  const worker = async () => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      if (file.size > state.limits.maxImageBytes) {
        setRow(file, 'bad', 'too large', `limit ${formatBytes(state.limits.maxImageBytes)}`);
        continue;
      }
      setRow(file, 'wait', 'uploading…');
      const form = new FormData();
      if (folder) form.append('folder', folder);
      form.append('file', file, file.name);
      try {
        const { images } = await api('/images', { method: 'POST', body: form });
        const [image] = images;
        setRow(file, 'ok', image.status === 'duplicate' ? 'already there' : 'queued ✓', image.key);
      } catch (error) {
        setRow(file, 'bad', error.code === 'unsupported_image' ? 'not an image' : 'failed', error.message);
      }
    }
  };
  await Promise.all([worker(), worker()]);
  void refreshStatus();
}

// ---------- status ----------

async function refreshStatus() {
  let status;
  try {
    status = await api('/status');
  } catch (error) {
    setPill('trouble', 'server unreachable');
    return 5000;
  }
  state.limits = status.limits;
  $('n').max = String(status.limits.maxResults);
  $('gallery-path').textContent = status.gallery;
  $('model-name').textContent = `model ${status.model}`;
  const { indexed, pending, failed } = status.counts;
  $('count-indexed').textContent = String(indexed);
  $('count-pending').textContent = String(pending);
  $('count-failed').textContent = String(failed);
  $('count-failed').classList.toggle('has', failed > 0);
  const total = indexed + pending;
  const percent = total === 0 ? 100 : Math.round((indexed / total) * 100);
  $('meter-bar').style.width = `${percent}%`;
  $('meter').setAttribute('aria-valuenow', String(percent));
  const busy = pending > 0 || status.state === 'scanning' || status.state === 'starting';
  const words = {
    idle: 'up to date; watching the gallery folder',
    indexing: 'indexing new and changed images…',
    scanning: 'checking the gallery for changes…',
    starting: 'starting…',
    retrying: `paused: ${status.lastError ?? 'retrying'}`,
    stopped: 'stopped',
  };
  $('state-line').textContent = words[status.state] ?? status.state;
  if (status.state === 'retrying') setPill('trouble', 'indexing paused');
  else if (busy) setPill('busy', `indexing · ${pending} pending`);
  else setPill('idle', `${indexed} images indexed${failed ? ` · ${failed} failed` : ''}`);
  renderFailures(status.failures, failed);
  updateFolders(status);
  if (state.lastIndexed !== -1 && indexed !== state.lastIndexed && !busy && state.query) void runSearch();
  state.lastIndexed = busy ? state.lastIndexed : indexed;
  return busy ? 1000 : 3000;
}

function renderFailures(failures, count) {
  $('failures-box').hidden = count === 0;
  $('failures').replaceChildren(
    ...failures.map((f) => {
      const li = el('li');
      li.append(el('b', { textContent: f.key }), document.createTextNode(`: ${f.reason}`));
      return li;
    }),
  );
  if (count > failures.length)
    $('failures').append(el('li', { textContent: `… and ${count - failures.length} more` }));
}

const knownFolders = new Set();
function updateFolders(status) {
  for (const f of status.failures) addFolder(f.key);
}
function addFolder(key) {
  const slash = key.lastIndexOf('/');
  if (slash <= 0) return;
  const folder = `${key.slice(0, slash)}/`;
  if (knownFolders.has(folder)) return;
  knownFolders.add(folder);
  $('folders').append(el('option', { value: folder }));
}

function setPill(kind, text) {
  $('status-pill').className = `status-pill ${kind}`;
  $('status-text').textContent = text;
}

async function pollStatus() {
  const delay = await refreshStatus();
  setTimeout(() => void pollStatus(), delay);
}

// ---------- helpers ----------

function el(tag, props = {}) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  return node;
}

function showMessage(error) {
  const box = $('message');
  box.replaceChildren(document.createTextNode(error.message ?? String(error)));
  if (error.hint) box.append(el('span', { className: 'hint', textContent: error.hint }));
  box.hidden = false;
}

function hideMessage() {
  $('message').hidden = true;
}

function formatBytes(bytes) {
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function wireDropzone(zone, onFiles) {
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length > 0) onFiles(files);
  });
}

// ---------- start ----------

wireDropzone($('query-drop'), (files) => setFileQuery(files[0]));
wireDropzone($('add-drop'), (files) => void addFiles(files));
$('query-file').addEventListener('change', (event) => {
  setFileQuery(event.target.files[0]);
  event.target.value = '';
});
$('add-files').addEventListener('change', (event) => {
  void addFiles([...event.target.files]);
  event.target.value = '';
});
$('again').addEventListener('click', () => void runSearch());
$('find-duplicates').addEventListener('click', () => void findDuplicates());
$('n').addEventListener('change', () => void runSearch());
let prefixTimer;
$('prefix').addEventListener('input', () => {
  clearTimeout(prefixTimer);
  prefixTimer = setTimeout(() => void runSearch(), 350);
});
$('status-pill').addEventListener('click', () => $('indexing').scrollIntoView({ behavior: 'smooth' }));
document.addEventListener('paste', (event) => {
  const file = [...(event.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) setFileQuery(file);
});
// Dropping a file anywhere else must not navigate away from the page.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());
window.addEventListener('popstate', () => {
  const key = new URLSearchParams(location.hash.slice(1)).get('key');
  if (key) setKeyQuery(key, { push: false });
});

const initialKey = new URLSearchParams(location.hash.slice(1)).get('key');
if (initialKey) setKeyQuery(initialKey, { push: false });
void pollStatus();

// Exposed for the folder suggestions: result keys reveal folders too.
new MutationObserver(() => {
  for (const card of document.querySelectorAll('.result')) addFolder(card.dataset.key);
}).observe($('results'), { childList: true });
