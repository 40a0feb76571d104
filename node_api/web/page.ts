/**
 * The catalogue page's script (served as /static/page.js): search the catalogue (GET /tracks?q=), open a
 * track (GET /tracks/:id/nearest, GET /tracks/:id/cluster), play previews (GET /tracks/:id/preview), and show
 * the evaluation headline (GET /eval/summary, GET /models). When /models lists the version's `features`, the
 * page skips the requests a version without previews or clusters could only answer with 404. The view lives
 * in the URL (?q=, ?track=, ?exclude_same_album=1): opening a track pushes a history entry, so a neighbour's
 * view is linkable and the back button returns to the previous track. Every piece of API data reaches the
 * DOM through textContent or an attribute, never as markup.
 */

// --- the API's bodies (the parts the page reads) ---

interface TrackSummary {
  track_id: string;
  title: string;
  composer: string | null;
  composer_key: string | null;
  album_id: string;
}

interface SearchBody {
  q: string;
  total: number;
  limit: number;
  tracks: Array<TrackSummary & { has_preview: boolean }>;
}

interface Hit extends TrackSummary {
  rank: number;
  score: number;
}

interface NearestBody {
  query: TrackSummary;
  k: number;
  method: string;
  ranking: { method: string };
  hits: Hit[];
}

interface ClusterBody {
  track_id: string;
  cluster: number;
  name: string;
  confidence: number;
  n_tracks: number;
}

interface Metrics {
  precision_at_k: number;
  hit_rate_at_k: number;
  ndcg_at_k: number;
  mrr: number;
}

interface EvalPart {
  n_queries: number;
  metrics: Metrics | null;
  random_baseline?: Metrics | null;
}

interface EvalBody {
  k: number;
  model: string;
  overall: EvalPart;
  exclude_same_album: EvalPart | null;
}

interface Feature {
  loaded: boolean;
  reason: string | null;
}

interface ModelsBody {
  artifact_version: string;
  count: number;
  backend: string;
  model: { name: string; version: string };
  /** the version's optional parts (a server that does not say leaves the page to ask each route) */
  features?: { previews?: Feature; clusters?: Feature };
}

const NEIGHBOURS_K = 10;
const SEARCH_LIMIT = 20;
const SEARCH_DEBOUNCE_MS = 250;

// --- DOM helpers ---

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`The page has no element #${id}`);
  return node as T;
}

/** An element with a class and text; children appended in order (never markup). */
function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = '', text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const ui = {
  q: byId<HTMLInputElement>('q'),
  form: byId<HTMLFormElement>('search-form'),
  searchStatus: byId('search-status'),
  results: byId<HTMLUListElement>('results'),
  track: byId('track'),
  trackTitle: byId('track-title'),
  trackMeta: byId('track-meta'),
  trackActions: byId('track-actions'),
  cluster: byId('cluster'),
  excludeAlbum: byId<HTMLInputElement>('exclude-album'),
  neighboursStatus: byId('neighbours-status'),
  neighbours: byId<HTMLOListElement>('neighbours'),
  model: byId('model'),
  evalSummary: byId('eval-summary'),
  error: byId('error'),
};

// --- the API ---

/** An error answer of the API: its status and its message (the `{error, message, statusCode}` body). */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const isAbort = (err: unknown): boolean => err instanceof DOMException && err.name === 'AbortError';

/** GET `path` as JSON; an error answer becomes an ApiError with the server's message. */
async function api<T>(path: string, signal?: AbortSignal): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, { signal: signal ?? null, headers: { accept: 'application/json' } });
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(0, `The API could not be reached (${String(err)})`);
  }
  if (res.ok) return (await res.json()) as T;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { message?: unknown };
    if (typeof body.message === 'string') message = `${res.status}: ${body.message}`;
  } catch {
    // not a JSON error body: keep the status line
  }
  throw new ApiError(res.status, message);
}

const trackPath = (id: string): string => `/tracks/${encodeURIComponent(id)}`;

function showError(message: string): void {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError(): void {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// --- the loaded version ---

let modelsCall: Promise<ModelsBody> | null = null;

/** GET /models, once per page load (the header shows it; the features say which routes to skip). */
function loadModels(): Promise<ModelsBody> {
  modelsCall ??= api<ModelsBody>('/models');
  return modelsCall;
}

/** Whether /models says the version lacks `name` (then its routes would only answer 404). */
async function featureOff(name: 'previews' | 'clusters'): Promise<boolean> {
  try {
    return (await loadModels()).features?.[name]?.loaded === false;
  } catch {
    return false;
  }
}

// --- previews ---

/**
 * Whether each track has a preview: from search results (has_preview), else from one HEAD request (the
 * /nearest hits do not say). Chromium logs the 404 of a track without one as a console error.
 */
const previewKnown = new Map<string, boolean>();

async function hasPreview(id: string, signal: AbortSignal): Promise<boolean> {
  const known = previewKnown.get(id);
  if (known !== undefined) return known;
  if (await featureOff('previews')) return false;
  const res = await fetch(`${trackPath(id)}/preview`, { method: 'HEAD', signal });
  // 404: no preview (the version has none, or none for this track); anything else but 2xx is not an answer
  if (!res.ok && res.status !== 404) throw new ApiError(res.status, `HEAD ${trackPath(id)}/preview answered ${res.status} ${res.statusText}`);
  previewKnown.set(id, res.ok);
  return res.ok;
}

function formatTime(sec: number): string {
  const s = Math.floor(sec);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** A play/pause button driving its own <audio preload="none"> (nothing is fetched before the first play). */
function playButton(id: string, title: string): HTMLElement {
  const box = el('span', 'player');
  const button = el('button', 'play', 'Play');
  button.type = 'button';
  button.setAttribute('aria-label', `Play the preview of ${title}`);
  const time = el('span', 'time muted');
  const audio = el('audio');
  audio.preload = 'none';
  audio.src = `${trackPath(id)}/preview`;
  audio.dataset.trackId = id;
  const label = (playing: boolean): void => {
    button.textContent = playing ? 'Pause' : 'Play';
    button.setAttribute('aria-label', `${playing ? 'Pause' : 'Play'} the preview of ${title}`);
    button.setAttribute('aria-pressed', String(playing));
  };
  button.addEventListener('click', () => {
    if (!audio.paused) {
      audio.pause();
      return;
    }
    for (const other of document.querySelectorAll('audio')) if (other !== audio) other.pause();
    audio.play().catch((err: unknown) => {
      if (!isAbort(err)) showError(`The preview of ${title} could not be played: ${messageOf(err)}`);
    });
  });
  audio.addEventListener('play', () => label(true));
  audio.addEventListener('pause', () => label(false));
  audio.addEventListener('timeupdate', () => {
    time.textContent = formatTime(audio.currentTime);
  });
  audio.addEventListener('error', () => {
    label(false);
    button.disabled = true;
    time.textContent = 'preview unavailable';
  });
  box.append(button, time, audio);
  return box;
}

/** Put a play button into `slot` once the track is known to have a preview. */
function addPlayWhenAvailable(slot: HTMLElement, id: string, title: string, signal: AbortSignal): void {
  hasPreview(id, signal).then(
    (yes) => {
      if (yes && !signal.aborted) slot.replaceChildren(playButton(id, title));
    },
    (err: unknown) => {
      if (!isAbort(err)) showError(`Could not check the preview of ${title}: ${messageOf(err)}`);
    },
  );
}

// --- the URL ---

interface View {
  q: string;
  track: string | null;
  excludeSameAlbum: boolean;
}

function viewFromUrl(): View {
  const p = new URLSearchParams(location.search);
  return { q: p.get('q') ?? '', track: p.get('track'), excludeSameAlbum: p.get('exclude_same_album') === '1' };
}

function urlOf(view: View): string {
  const p = new URLSearchParams();
  if (view.q) p.set('q', view.q);
  if (view.track) p.set('track', view.track);
  if (view.excludeSameAlbum) p.set('exclude_same_album', '1');
  const search = p.toString();
  return `${location.pathname}${search ? `?${search}` : ''}`;
}

function currentView(): View {
  return { q: ui.q.value.trim(), track: current.track, excludeSameAlbum: ui.excludeAlbum.checked };
}

/** Record the view: a new history entry (opening a track) or the current one updated (typing, toggling). */
function saveView(mode: 'push' | 'replace'): void {
  const url = urlOf(currentView());
  if (url === `${location.pathname}${location.search}`) return;
  if (mode === 'push') history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}

// --- search ---

let searchTimer: number | undefined;
let searchAbort: AbortController | null = null;
let lastSearched: string | null = null;

function trackLabel(t: TrackSummary): string {
  return [t.composer ?? 'unknown composer', t.album_id].join(' · ');
}

function resultItem(t: TrackSummary & { has_preview: boolean }, signal: AbortSignal): HTMLLIElement {
  previewKnown.set(t.track_id, t.has_preview);
  const li = el('li');
  li.dataset.trackId = t.track_id;
  li.dataset.hasPreview = String(t.has_preview);
  const open = el('button', 'open', t.title);
  open.type = 'button';
  open.addEventListener('click', () => openTrack(t.track_id, 'push'));
  const slot = el('span', 'slot');
  if (t.has_preview) addPlayWhenAvailable(slot, t.track_id, t.title, signal);
  li.append(open, el('span', 'meta muted', trackLabel(t)), slot);
  return li;
}

async function search(q: string): Promise<void> {
  lastSearched = q;
  searchAbort?.abort();
  if (!q) {
    ui.results.replaceChildren();
    ui.searchStatus.textContent = '';
    return;
  }
  const abort = new AbortController();
  searchAbort = abort;
  ui.searchStatus.textContent = 'Searching…';
  try {
    const body = await api<SearchBody>(`/tracks?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`, abort.signal);
    ui.results.replaceChildren(...body.tracks.map((t) => resultItem(t, abort.signal)));
    markCurrent();
    ui.searchStatus.textContent =
      body.total === 0
        ? `No track matches “${body.q}”.`
        : `${body.total} track${body.total === 1 ? '' : 's'} match “${body.q}”${body.total > body.tracks.length ? ` (first ${body.tracks.length} shown)` : ''}.`;
  } catch (err) {
    if (isAbort(err)) return;
    ui.results.replaceChildren();
    ui.searchStatus.textContent = `Search failed: ${messageOf(err)}`;
  }
}

function searchSoon(): void {
  window.clearTimeout(searchTimer);
  searchTimer = window.setTimeout(() => {
    const q = ui.q.value.trim();
    saveView('replace');
    if (q !== lastSearched) void search(q);
  }, SEARCH_DEBOUNCE_MS);
}

// --- the open track ---

const current: { track: string | null; abort: AbortController | null } = { track: null, abort: null };

function neighbourItem(h: Hit, signal: AbortSignal): HTMLLIElement {
  const li = el('li');
  li.dataset.trackId = h.track_id;
  li.dataset.rank = String(h.rank);
  li.dataset.score = String(h.score);
  const open = el('button', 'open', h.title);
  open.type = 'button';
  open.addEventListener('click', () => openTrack(h.track_id, 'push'));
  const score = el('span', 'score', h.score.toFixed(3));
  score.title = `cosine similarity ${h.score}`;
  const slot = el('span', 'slot');
  addPlayWhenAvailable(slot, h.track_id, h.title, signal);
  li.append(el('span', 'rank', String(h.rank)), open, el('span', 'meta muted', trackLabel(h)), score, slot);
  return li;
}

function renderQuery(t: TrackSummary, signal: AbortSignal): void {
  ui.track.dataset.trackId = t.track_id;
  ui.trackTitle.textContent = t.title;
  ui.trackMeta.textContent = `${trackLabel(t)} · ${t.track_id}`;
  const slot = el('span', 'slot');
  ui.trackActions.replaceChildren(slot);
  addPlayWhenAvailable(slot, t.track_id, t.title, signal);
}

/** Counts neighbour requests: an answer that is no longer the latest (the toggle changed meanwhile) is dropped. */
let neighboursSeq = 0;

async function loadNeighbours(id: string, signal: AbortSignal): Promise<void> {
  const seq = ++neighboursSeq;
  ui.neighboursStatus.textContent = 'Loading the neighbours…';
  const exclude = ui.excludeAlbum.checked ? '&exclude_same_album=true' : '';
  try {
    const body = await api<NearestBody>(`${trackPath(id)}/nearest?k=${NEIGHBOURS_K}${exclude}`, signal);
    if (seq !== neighboursSeq) return;
    if (ui.track.dataset.trackId !== id) renderQuery(body.query, signal);
    ui.neighbours.replaceChildren(...body.hits.map((h) => neighbourItem(h, signal)));
    const ranking = body.ranking.method === 'cosine' ? 'cosine similarity' : `${body.ranking.method} re-ranking`;
    ui.neighboursStatus.textContent = `${body.hits.length} nearest neighbours of “${body.query.title}”${exclude ? ' from other albums' : ''} (${ranking}, answered by ${body.method}).`;
  } catch (err) {
    if (isAbort(err) || seq !== neighboursSeq) return;
    ui.neighbours.replaceChildren();
    ui.neighboursStatus.textContent = `Could not load the neighbours: ${messageOf(err)}`;
    if (err instanceof ApiError && err.status === 404) {
      ui.trackTitle.textContent = 'Track not found';
      ui.trackMeta.textContent = id;
      ui.trackActions.replaceChildren();
    }
  }
}

async function loadCluster(id: string, signal: AbortSignal): Promise<void> {
  ui.cluster.hidden = true;
  ui.cluster.replaceChildren();
  try {
    if (await featureOff('clusters')) return;
    const c = await api<ClusterBody>(`${trackPath(id)}/cluster`, signal);
    ui.cluster.append(
      el('span', 'muted', 'Cluster: '),
      el('strong', 'cluster-name', c.name),
      el('span', 'muted', ` · confidence ${c.confidence.toFixed(2)} · ${c.n_tracks} tracks`),
    );
    ui.cluster.dataset.cluster = String(c.cluster);
    ui.cluster.hidden = false;
  } catch (err) {
    // 404: this version has no clusters, or none for this track; the line stays hidden
    if (isAbort(err) || (err instanceof ApiError && err.status === 404)) return;
    showError(`Could not load the cluster: ${messageOf(err)}`);
  }
}

/** Show track `id` (its neighbours and cluster); `push` records it as a new history entry. */
function openTrack(id: string, mode: 'push' | 'replace' | 'none', focus = mode === 'push'): void {
  current.abort?.abort();
  const abort = new AbortController();
  current.abort = abort;
  current.track = id;
  if (mode !== 'none') saveView(mode);
  clearError();
  ui.track.hidden = false;
  delete ui.track.dataset.trackId;
  ui.trackTitle.textContent = 'Loading…';
  ui.trackMeta.textContent = id;
  ui.trackActions.replaceChildren();
  ui.neighbours.replaceChildren();
  markCurrent();
  if (focus) {
    ui.trackTitle.tabIndex = -1;
    ui.trackTitle.focus();
  }
  void loadNeighbours(id, abort.signal);
  void loadCluster(id, abort.signal);
}

/** Mark the open track in the search results (aria-current), so the list shows where the view came from. */
function markCurrent(): void {
  for (const li of ui.results.querySelectorAll<HTMLLIElement>('li[data-track-id]')) {
    if (li.dataset.trackId === current.track) li.setAttribute('aria-current', 'true');
    else li.removeAttribute('aria-current');
  }
}

function closeTrack(): void {
  current.abort?.abort();
  current.abort = null;
  current.track = null;
  ui.track.hidden = true;
  ui.neighbours.replaceChildren();
  markCurrent();
}

// --- the header: model and evaluation ---

const f3 = (x: number): string => x.toFixed(3);

function metricCells(row: HTMLTableRowElement, m: Metrics | null | undefined): void {
  for (const key of ['precision_at_k', 'hit_rate_at_k', 'ndcg_at_k', 'mrr'] as const) row.append(el('td', 'num', m ? f3(m[key]) : '–'));
}

function evalTable(e: EvalBody): HTMLTableElement {
  const table = el('table', 'metrics');
  table.id = 'eval-table';
  const head = el('tr');
  head.append(el('th', '', 'Queries'), ...[`P@${e.k}`, `HitRate@${e.k}`, `NDCG@${e.k}`, 'MRR'].map((t) => el('th', 'num', t)));
  table.createTHead().append(head);
  const body = table.createTBody();
  const rows: Array<[string, Metrics | null | undefined]> = [
    [`All (${e.overall.n_queries})`, e.overall.metrics],
    ...(e.exclude_same_album ? [[`Other albums only (${e.exclude_same_album.n_queries})`, e.exclude_same_album.metrics] as [string, Metrics | null]] : []),
    ['Random baseline', e.overall.random_baseline],
  ];
  for (const [name, m] of rows) {
    const tr = body.insertRow();
    tr.append(el('th', '', name));
    metricCells(tr, m);
  }
  return table;
}

async function loadHeader(): Promise<void> {
  const [models, evalBody] = await Promise.allSettled([loadModels(), api<EvalBody>('/eval/summary')]);
  if (models.status === 'fulfilled') {
    const m = models.value;
    ui.model.replaceChildren(
      el('span', '', `Model ${m.model.name} · ${m.count} tracks · ${m.backend} search · version ${m.artifact_version}`),
      el('span', 'model-version', ` (encoder ${m.model.version})`),
    );
    ui.model.dataset.artifactVersion = m.artifact_version;
  } else {
    ui.model.textContent = `Could not load the model: ${messageOf(models.reason)}`;
  }
  if (evalBody.status === 'fulfilled') {
    const e = evalBody.value;
    const headline = el('span', 'headline');
    headline.id = 'eval-headline';
    if (e.overall.metrics) headline.dataset.precisionAtK = String(e.overall.metrics.precision_at_k);
    headline.textContent = e.overall.metrics
      ? `Composer retrieval: P@${e.k} ${f3(e.overall.metrics.precision_at_k)} over ${e.overall.n_queries} queries (a neighbour counts when it has the query's composer).`
      : 'Composer retrieval: no scored query.';
    ui.evalSummary.classList.remove('muted');
    ui.evalSummary.replaceChildren(headline, evalTable(e));
  } else {
    ui.evalSummary.textContent = `Could not load the evaluation: ${messageOf(evalBody.reason)}`;
  }
}

// --- wiring ---

/** Bring the page to the URL's view (start-up, back and forward). */
function applyView(view: View): void {
  ui.excludeAlbum.checked = view.excludeSameAlbum;
  if (ui.q.value.trim() !== view.q) ui.q.value = view.q;
  if (view.q !== lastSearched) void search(view.q);
  if (view.track === null) closeTrack();
  else if (view.track !== current.track || !current.abort) openTrack(view.track, 'none');
  else void loadNeighbours(view.track, current.abort.signal);
}

ui.q.addEventListener('input', searchSoon);
ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  window.clearTimeout(searchTimer);
  saveView('replace');
  void search(ui.q.value.trim());
});
ui.excludeAlbum.addEventListener('change', () => {
  saveView('replace');
  if (current.track && current.abort) void loadNeighbours(current.track, current.abort.signal);
});
window.addEventListener('popstate', () => applyView(viewFromUrl()));

applyView(viewFromUrl());
void loadHeader();
