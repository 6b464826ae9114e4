// feedmux live market page: one WebSocket (protocol in feedmux/web/protocol.py), a Map model
// of every code's latest row, a virtualised table redrawn at most once per animation frame,
// top movers, and a canvas chart of the watched code's minute bars. No library, no build step.
'use strict';

(() => {
  // ---- constants ---------------------------------------------------------------------------
  const ROW_H = 24; // px, fixed: must match `#table tbody tr.r` in style.css
  const MARGIN = 12; // rows rendered above and below the viewport, so fast scrolls stay filled
  const FLASH_MS = 800;
  const RESORT_MS = 500; // a live column re-sorts at most this often (rows jump otherwise)
  const BACKOFF_MIN = 250;
  const BACKOFF_MAX = 5000;
  const WATCHDOG_MS = 8000; // the server sends at least once a second: longer silence, a dead socket
  const CONNECT_MS = 15000; // from opening a socket to its snapshot
  const MOVERS = 10;
  const PROTOCOL_VERSION = 1;

  // Row fields (protocol.Row is a JSON array in this order).
  const CODE = 0, PRICE = 1, OPEN = 2, VOLUME = 3, TURNOVER = 4, TIME = 5, RECV = 6;
  // BarRow fields.
  const B_T = 0, B_O = 1, B_H = 2, B_L = 3, B_C = 4, B_V = 5;

  const ZONES = {
    SH: 'Asia/Shanghai', SZ: 'Asia/Shanghai', BJ: 'Asia/Shanghai',
    HK: 'Asia/Hong_Kong', US: 'America/New_York',
  };
  const LIVE_SORT = new Set(['price', 'change', 'change_pct', 'volume', 'turnover', 'time']);
  const TEXT_SORT = new Set(['code', 'phase']); // first click: A→Z; numbers and time: largest first

  const params = new URLSearchParams(location.search);
  const TOKEN = params.get('token');
  const LAG = params.get('lag') === '1';

  // ---- formatting --------------------------------------------------------------------------
  const fmtCache = new Map(); // zone + kind -> Intl.DateTimeFormat (construction is slow)
  function dateFmt(zone, withSeconds) {
    const key = (zone || '') + (withSeconds ? '|s' : '|m');
    let f = fmtCache.get(key);
    if (f === undefined) {
      const o = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
      if (withSeconds) o.second = '2-digit';
      if (zone) o.timeZone = zone;
      try {
        f = new Intl.DateTimeFormat('en-GB', o);
      } catch (e) { // an unknown zone: the browser's own
        delete o.timeZone;
        f = new Intl.DateTimeFormat('en-GB', o);
      }
      fmtCache.set(key, f);
    }
    return f;
  }

  function fmtInt(x) {
    if (!Number.isFinite(x)) return '';
    const s = String(Math.round(Math.abs(x)));
    let out = '';
    let i = s.length;
    while (i > 3) {
      out = ',' + s.slice(i - 3, i) + out;
      i -= 3;
    }
    out = s.slice(0, i) + out;
    return x < 0 && out !== '0' ? '-' + out : out;
  }

  function fmtAbbr(x) {
    if (!Number.isFinite(x)) return '';
    const a = Math.abs(x);
    if (a >= 1e12) return (x / 1e12).toFixed(2) + 'T';
    if (a >= 1e9) return (x / 1e9).toFixed(2) + 'B';
    if (a >= 1e6) return (x / 1e6).toFixed(2) + 'M';
    if (a >= 1e3) return (x / 1e3).toFixed(1) + 'K';
    return x.toFixed(0);
  }

  function fmtPrice(p) { return p > 0 ? p.toFixed(2) : '—'; }
  function changeOf(r) { return r[PRICE] > 0 && r[OPEN] > 0 ? r[PRICE] - r[OPEN] : NaN; }
  function pctOf(r) {
    return r[PRICE] > 0 && r[OPEN] > 0 ? (r[PRICE] - r[OPEN]) / r[OPEN] * 100 : NaN;
  }
  function fmtSigned(x, digits) {
    if (x !== x) return '';
    const s = x.toFixed(digits);
    if (Number(s) === 0) return (0).toFixed(digits); // no "-0.00" nor "+0.00"
    return x > 0 ? '+' + s : s;
  }
  function fmtAge(ms) {
    if (ms < 0) ms = 0;
    const s = ms / 1000;
    if (s < 100) return s.toFixed(1) + ' s';
    if (s < 3600) return Math.round(s / 60) + ' min';
    if (s < 86400 * 2) return (s / 3600).toFixed(1) + ' h';
    return Math.round(s / 86400) + ' d';
  }
  function phaseText(ph) { return ph ? ph.replace(/_/g, ' ') : ''; }

  const SORT_KEYS = {
    price: (r) => (r[PRICE] > 0 ? r[PRICE] : NaN),
    change: changeOf,
    change_pct: pctOf,
    volume: (r) => r[VOLUME],
    turnover: (r) => r[TURNOVER],
    time: (r) => (r[TIME] > 0 ? r[TIME] : NaN),
  };

  // ---- model -------------------------------------------------------------------------------
  const lines = new Map(); // code -> its latest line (an array) as received (window.feedmux.lines)
  const metas = new Map(); // code -> Meta: what the page derives and remembers per code
  let flashSeq = 0;

  class Meta {
    constructor(code) {
      this.code = code;
      this.lc = code.toLowerCase();
      const dot = code.lastIndexOf('.');
      this.market = dot >= 0 ? code.slice(dot + 1) : '';
      this.zone = ZONES[this.market] || '';
      this.row = null;
      this.flashAt = 0; // Date.now() of the last move
      this.flashDir = 0; // +1 up, -1 down
      this.flashSeq = 0; // unique per move, so a slot knows to restart the animation
      this.sk = 0; // sort key (scratch)
      this.timeMs = -1; // the time_ms timeStr was formatted from
      this.timeStr = '';
      this.gen = 0; // the snapshot that last held it
      this.mark = 0; // the render that last had it in view (scratch)
    }
    time() {
      const t = this.row[TIME];
      if (t !== this.timeMs) {
        this.timeMs = t;
        this.timeStr = t > 0 ? dateFmt(this.zone, true).format(t) : '';
      }
      return this.timeStr;
    }
  }

  const state = {
    hello: null,
    silentMs: 0,
    markets: {},
    marketsKey: '',
    pipeline: '',
    newestMs: 0,
    sortKey: '', // set by setSort('code') at the start
    sortDir: 1,
    filter: '',
    view: [], // the Metas shown, filtered and sorted
    viewDirty: true, // rebuild now (filter, sort or snapshot changed)
    membersDirty: false, // new codes arrived: rebuild within RESORT_MS
    sortDirty: false, // a live sort column changed: re-sort within RESORT_MS
    lastSortMs: 0,
  };

  // Cheap counters for the benchmark and the browser tests (render: one frame's work; apply:
  // parsing and applying one message; snapshotMs: the last snapshot's).
  const perf = {
    renders: 0, renderMsTotal: 0, renderMsMax: 0, recent: [],
    messages: 0, applyMsTotal: 0, applyMsMax: 0, snapshotMs: 0, seqGaps: 0,
    sorts: 0, sortMsTotal: 0, sortMsMax: 0,
  };

  const fm = {
    lines,
    conn: 'connecting',
    hello: null,
    received: 0,
    lastMessageMs: 0,
    scrollToCode,
    lags: [],
    perf,
  };
  window.feedmux = fm;

  // ---- DOM ---------------------------------------------------------------------------------
  const $ = (sel) => document.querySelector(sel);
  const el = {
    conn: $('#conn'), pipeline: $('#pipeline'), age: $('#age'), count: $('#count'),
    silent: $('#silent'), markets: $('#markets'), feed: $('#feed'), error: $('#error'),
    search: $('#search'), shown: $('#shown'), wrap: $('#table-wrap'), table: $('#table'),
    tbody: $('#table tbody'), thead: $('#table thead'),
    chart: $('#chart'), chartTitle: $('#chart-title'), chartInfo: $('#chart-info'),
    chartClose: $('#chart-close'), canvas: $('#chart canvas'), chartBody: $('#chart .chart-body'),
    movers: $('#movers ol'), quiet: $('#quiet ol'), quietMore: $('#quiet .more'),
    adv: $('#adv'), dec: $('#dec'), unch: $('#unch'), breadthBar: $('#breadth .breadth-bar'),
  };

  function setText(node, s) { if (node.textContent !== s) node.textContent = s; }

  // ---- connection --------------------------------------------------------------------------
  let ws = null;
  let backoff = BACKOFF_MIN;
  let retryTimer = 0;
  let everLive = false;
  let failures = 0; // connections closed since the last snapshot
  let connSnapshots = 0; // snapshots on this connection
  let lastSeq = 0; // the last update's seq on this connection
  let connStartMs = 0;

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = TOKEN !== null ? '?token=' + encodeURIComponent(TOKEN) : '';
    return proto + '//' + location.host + '/ws' + q;
  }

  function setConn(c) {
    fm.conn = c;
    document.body.dataset.conn = c;
    setText(el.conn, c);
    el.conn.className = 'pill conn-' + c;
  }

  function connect() {
    retryTimer = 0;
    connSnapshots = 0;
    lastSeq = 0;
    connStartMs = Date.now();
    setConn(everLive ? 'reconnecting' : 'connecting');
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (e) {
      showError('cannot open the WebSocket: ' + e.message);
      scheduleReconnect();
      return;
    }
    ws = sock;
    sock.onmessage = (ev) => { if (ws === sock) onMessage(ev.data); };
    sock.onclose = (ev) => {
      if (ws !== sock) return;
      if (ev.reason) showError('connection closed: ' + ev.reason + ' (' + ev.code + ')');
      else if (failures >= 2) { // a browser hides why (a refused token looks like a network error)
        showError('cannot reach the gateway at /ws (' + (failures + 1) + ' tries): is it running? '
          + (TOKEN === null ? 'does it need ?token=…?' : 'is the token right?'));
      }
      dropped();
    };
    sock.onerror = () => {}; // a close event follows
  }

  function dropped() { // the socket is gone (closed, or given up on): try again
    const s = ws;
    ws = null;
    if (s !== null && s.readyState < WebSocket.CLOSING) {
      try { s.close(); } catch (e) { /* closing already */ }
    }
    failures++;
    state.pipeline = ''; // unknown until the next update
    updatePipeline();
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (fm.conn !== 'connecting' || everLive) setConn('reconnecting');
    if (retryTimer) return;
    const delay = backoff * (0.8 + Math.random() * 0.4); // jitter: many pages, one restart
    backoff = Math.min(backoff * 2, BACKOFF_MAX);
    retryTimer = setTimeout(connect, Math.min(delay, BACKOFF_MAX));
  }

  function send(obj) {
    if (ws !== null && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  setInterval(() => { // a half-open socket never closes by itself
    if (ws === null) return;
    const now = Date.now();
    if (fm.conn === 'live' && now - fm.lastMessageMs > WATCHDOG_MS) {
      showError('no message for ' + (WATCHDOG_MS / 1000) + ' s: reconnecting');
      dropped();
    } else if (fm.conn !== 'live' && now - connStartMs > CONNECT_MS) {
      showError('no snapshot ' + (CONNECT_MS / 1000) + ' s after connecting: trying again');
      dropped();
    }
  }, 1000);

  // ---- messages ----------------------------------------------------------------------------
  function onMessage(data) {
    if (typeof data !== 'string') return;
    const t0 = performance.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      showError('unreadable message from the server');
      return;
    }
    fm.lastMessageMs = Date.now();
    switch (msg.type) {
      case 'hello': onHello(msg); break;
      case 'snapshot': onSnapshot(msg); break;
      case 'update': onUpdate(msg); break;
      case 'bars': onBars(msg); break;
      case 'error': showError(msg.message); break;
      default: break; // a newer server's message: ignore
    }
    const dt = performance.now() - t0;
    if (msg.type === 'snapshot') perf.snapshotMs = dt;
    else {
      perf.messages++;
      perf.applyMsTotal += dt;
      if (dt > perf.applyMsMax) perf.applyMsMax = dt;
    }
  }

  function onHello(msg) {
    state.hello = msg;
    fm.hello = msg;
    state.silentMs = msg.silent_after_s > 0 ? msg.silent_after_s * 1000 : 0;
    let feed = msg.feed === 'trades' ? 'every trade'
      : msg.feed === 'moves' ? 'moves ≥ ' + msg.min_move : String(msg.feed);
    if (msg.interval_ms) feed += ' · ' + msg.interval_ms + ' ms';
    setText(el.feed, feed);
    if (msg.version !== PROTOCOL_VERSION) {
      showError('server protocol ' + msg.version + ', page ' + PROTOCOL_VERSION + ': reload');
    }
  }

  function applyRow(r, now, flash) {
    const code = r[CODE];
    let m = metas.get(code);
    if (m === undefined) {
      m = new Meta(code);
      metas.set(code, m);
      state.membersDirty = true;
    } else if (flash) {
      const prev = m.row[PRICE];
      const p = r[PRICE];
      if (prev > 0 && p > 0 && p !== prev) {
        m.flashAt = now;
        m.flashDir = p > prev ? 1 : -1;
        m.flashSeq = ++flashSeq;
      }
    }
    m.row = r;
    lines.set(code, r);
  }

  // A snapshot replaces the model: the first of a connection, or a catch-up one when the gateway
  // skipped this page while its socket was full (then moved prices flash, as in an update).
  // Metas of codes still present are kept (their flash and formatting caches), others dropped.
  let generation = 0;
  function onSnapshot(msg) {
    const now = Date.now();
    const catchUp = connSnapshots++ > 0;
    const gen = ++generation;
    lines.clear();
    let newest = 0;
    const list = msg.lines || [];
    for (let i = 0; i < list.length; i++) {
      const r = list[i];
      applyRow(r, now, catchUp);
      metas.get(r[CODE]).gen = gen;
      if (r[RECV] > newest) newest = r[RECV];
    }
    for (const [code, m] of metas) if (m.gen !== gen) metas.delete(code);
    fm.received += list.length;
    if (!catchUp || newest > state.newestMs) state.newestMs = newest;
    if (!catchUp) state.pipeline = '';
    setMarkets(msg.markets || {});
    state.viewDirty = true;
    state.membersDirty = false;
    everLive = true;
    failures = 0;
    el.error.hidden = true;
    backoff = BACKOFF_MIN;
    setConn('live');
    updatePipeline();
    // A new connection forgets the watch; a page caught up missed the bars sent meanwhile.
    if (chart.code !== null) {
      chart.whole = false;
      send({ type: 'watch', code: chart.code });
    }
    updateCount();
    refreshSide(now);
    requestRender();
  }

  function onUpdate(msg) {
    const now = Date.now();
    const list = msg.lines || [];
    const n = list.length;
    if (LAG) { // a line sent again for its bar keeps its trade's recv_ms: not a new trade's lag
      const lags = fm.lags;
      for (let i = 0; i < n; i++) {
        const before = lines.get(list[i][CODE]);
        if (before === undefined || before[RECV] !== list[i][RECV]) lags.push(now - list[i][RECV]);
      }
    }
    for (let i = 0; i < n; i++) applyRow(list[i], now, true);
    fm.received += n;
    if (msg.seq) { // numbered from 1: a jump means this page was skipped (a snapshot follows)
      if (lastSeq && msg.seq !== lastSeq + 1) perf.seqGaps++;
      lastSeq = msg.seq;
    }
    if (msg.markets) setMarkets(msg.markets);
    if (msg.pipeline !== state.pipeline) {
      state.pipeline = msg.pipeline;
      updatePipeline();
    }
    if (msg.newest_ms > state.newestMs) state.newestMs = msg.newest_ms;
    if (n > 0) {
      if (LIVE_SORT.has(state.sortKey)) state.sortDirty = true;
      if (state.membersDirty) updateCount();
      requestRender();
    }
  }

  function setMarkets(markets) {
    const keys = Object.keys(markets).sort();
    let key = '';
    for (const k of keys) key += k + '=' + markets[k] + ';';
    if (key === state.marketsKey) return;
    state.markets = markets;
    state.marketsKey = key;
    el.markets.textContent = '';
    for (const k of keys) {
      const chip = document.createElement('span');
      chip.className = 'mkt ph-' + markets[k];
      chip.title = k + ': ' + phaseText(markets[k]);
      const b = document.createElement('b');
      b.textContent = k;
      chip.append(b, ' ' + phaseText(markets[k]));
      el.markets.append(chip);
    }
    if (state.sortKey === 'phase') state.sortDirty = true;
    slotsStale = true; // phase cells and silent marks depend on the markets
    requestRender();
  }

  function updatePipeline() {
    const p = state.pipeline;
    setText(el.pipeline, 'pipeline ' + (p || '–'));
    el.pipeline.className = 'pill pipe-' + (p || 'none');
  }

  let errorTimer = 0;
  function showError(message) {
    const t = new Date().toTimeString().slice(0, 8);
    el.error.textContent = t + '  ' + message;
    el.error.title = message; // the header may cut it short
    el.error.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { el.error.hidden = true; }, 15000);
  }

  function updateCount() {
    setText(el.count, fmtInt(lines.size) + ' codes');
  }

  // ---- view: filter and sort ---------------------------------------------------------------
  function cmpCode(a, b) { return a.code < b.code ? -1 : a.code > b.code ? 1 : 0; }

  function buildView(now) {
    const f = state.filter;
    const v = [];
    for (const m of metas.values()) if (f === '' || m.lc.includes(f)) v.push(m);
    state.view = v;
    state.viewDirty = false;
    state.membersDirty = false;
    sortView(now);
    setText(el.shown, f === '' ? '' : fmtInt(v.length) + ' match');
  }

  function sortView(now) {
    const t0 = performance.now();
    const v = state.view;
    const k = state.sortKey;
    const d = state.sortDir;
    if (k === 'code') {
      v.sort(d > 0 ? cmpCode : (a, b) => cmpCode(b, a));
    } else if (k === 'phase') {
      const mk = state.markets;
      v.sort((a, b) => {
        const pa = mk[a.market] || '', pb = mk[b.market] || '';
        return pa < pb ? -d : pa > pb ? d : cmpCode(a, b);
      });
    } else {
      const key = SORT_KEYS[k];
      for (let i = 0; i < v.length; i++) {
        const x = key(v[i].row);
        v[i].sk = x === x ? x * d : Infinity; // blanks last in either direction
      }
      v.sort((a, b) => (a.sk - b.sk) || cmpCode(a, b)); // Infinity - Infinity: NaN, falsy
    }
    state.sortDirty = false;
    state.lastSortMs = now;
    slotsStale = true;
    const dt = performance.now() - t0;
    perf.sorts++;
    perf.sortMsTotal += dt;
    if (dt > perf.sortMsMax) perf.sortMsMax = dt;
  }

  function setSort(key) {
    if (state.sortKey === key) state.sortDir = -state.sortDir;
    else {
      state.sortKey = key;
      state.sortDir = TEXT_SORT.has(key) ? 1 : -1;
    }
    for (const th of el.thead.querySelectorAll('th[data-sort]')) {
      const on = th.dataset.sort === key;
      th.classList.toggle('sorted', on);
      th.classList.toggle('asc', on && state.sortDir > 0);
      th.classList.toggle('desc', on && state.sortDir < 0);
      if (on) th.setAttribute('aria-sort', state.sortDir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    state.viewDirty = true;
    setScrollTop(0);
    requestRender();
  }

  // ---- virtualised table -------------------------------------------------------------------
  // The table is laid out as blocks (style.css): tbody's height is the whole list's, its
  // padding-top the rows above the first one in the DOM, and each row a fixed-size contained
  // box, so a changed cell lays out only its row. Slots (a <tr> and its cells) are keyed by
  // code while in view: a scroll fills only the rows coming in, a re-sort only moves rows.
  // A slot remembers what it shows (row array, phase, flash) so an unchanged cell is never
  // written again. The DOM order is the visual order.
  const COLS = ['code', 'price', 'change', 'pct', 'vol', 'turn', 'time', 'phase'];
  const emptyRow = document.createElement('tr');
  emptyRow.className = 'empty';
  emptyRow.innerHTML = '<td>No code matches</td>';
  const inView = new Map(); // Meta -> its slot in the DOM
  const spare = []; // slots out of the DOM, for reuse
  let mark = 0;
  let slotsStale = false; // re-check every slot's phase (markets changed, re-sort)
  let padTop = -1, bodyH = -1;
  // Geometry kept from events and observers, so a frame never reads layout (a forced layout).
  let scrollTop = 0;
  let viewH = el.wrap.clientHeight;
  let headH = el.thead.offsetHeight || ROW_H;
  let flashTimer = 0, flashDue = Infinity;

  function makeSlot() {
    const tr = document.createElement('tr');
    tr.className = 'r';
    const cells = [];
    for (const c of COLS) {
      const td = document.createElement('td');
      td.className = c;
      td.append(document.createTextNode(''));
      tr.append(td);
      cells.push(td.firstChild);
    }
    return {
      tr, cells, price: tr.children[1], chg: tr.children[2], pct: tr.children[3],
      m: null, r: null, ph: null, cls: '', dir: 0, fseq: 0, flashing: false, par: 0,
    };
  }

  function setCell(slot, i, s) {
    const t = slot.cells[i];
    if (t.data !== s) t.data = s;
  }

  function renderRows(now) {
    const v = state.view;
    const n = v.length;
    const count = Math.ceil(viewH / ROW_H) + 2 * MARGIN;
    let first = Math.floor(scrollTop / ROW_H) - MARGIN;
    if (first > n - count) first = n - count;
    if (first < 0) first = 0;
    const last = Math.min(n, first + count);
    const tbody = el.tbody;

    const pad = first * ROW_H, h = n * ROW_H;
    if (pad !== padTop) { tbody.style.paddingTop = pad + 'px'; padTop = pad; }
    if (h !== bodyH) { tbody.style.height = h + 'px'; bodyH = h; }

    // Out of view: back to the spare slots.
    const mk = ++mark;
    for (let i = first; i < last; i++) v[i].mark = mk;
    for (const [m, slot] of inView) {
      if (m.mark !== mk) {
        inView.delete(m);
        slot.tr.remove();
        slot.m = null;
        slot.r = null;
        spare.push(slot);
      }
    }
    if (n === 0 && lines.size > 0) {
      if (!emptyRow.isConnected) tbody.append(emptyRow);
    } else if (emptyRow.isConnected) emptyRow.remove();

    const markets = state.markets;
    const silentMs = state.silentMs;
    const sel = chart.code;
    const stale = slotsStale;
    slotsStale = false;
    let due = Infinity;
    let node = tbody.firstChild; // the DOM cursor: rows before it are in place
    for (let i = first; i < last; i++) {
      const m = v[i];
      const r = m.row;
      let slot = inView.get(m);
      if (slot === undefined) {
        slot = spare.pop() || makeSlot();
        inView.set(m, slot);
        slot.m = m;
        slot.r = null;
        slot.ph = null;
        slot.fseq = 0;
        slot.tr.dataset.code = m.code;
        setCell(slot, 0, m.code);
      }
      if (slot.tr === node) node = node.nextSibling;
      else {
        tbody.insertBefore(slot.tr, node);
        slot.fseq = 0; // a moved element's CSS animation starts over: set it again below
      }
      if (slot.r !== r) {
        slot.r = r;
        setCell(slot, 1, fmtPrice(r[PRICE]));
        const ch = changeOf(r);
        setCell(slot, 2, fmtSigned(ch, 2));
        setCell(slot, 3, ch === ch ? fmtSigned(pctOf(r), 2) + '%' : '');
        setCell(slot, 4, fmtInt(r[VOLUME]));
        setCell(slot, 5, fmtAbbr(r[TURNOVER]));
        setCell(slot, 6, m.time());
        const dir = ch > 0 ? 1 : ch < 0 ? -1 : 0;
        if (dir !== slot.dir) {
          slot.dir = dir;
          const c = dir > 0 ? ' up' : dir < 0 ? ' down' : '';
          slot.chg.className = 'change' + c;
          slot.pct.className = 'pct' + c;
        }
      }
      const ph = markets[m.market] || '';
      if (slot.ph !== ph || stale) {
        slot.ph = ph;
        setCell(slot, 7, phaseText(ph));
      }
      const silent = !(r[PRICE] > 0)
        || (silentMs > 0 && ph === 'continuous' && now - r[RECV] > silentMs);
      const cls = 'r' + (silent ? ' silent' : '') + (m.code === sel ? ' sel' : '');
      if (cls !== slot.cls) { slot.cls = cls; slot.tr.className = cls; }

      // Flash: a row coming into view mid-flash resumes it (a negative animation-delay);
      // toggling between two animation names (class `p`) restarts it on a new move.
      if (m.flashDir !== 0 && now - m.flashAt < FLASH_MS) {
        if (slot.fseq !== m.flashSeq) {
          slot.fseq = m.flashSeq;
          slot.par ^= 1;
          slot.flashing = true;
          slot.price.className = 'price ' + (m.flashDir > 0 ? 'flash-up' : 'flash-down')
            + (slot.par ? ' p' : '');
          slot.price.style.animationDelay = (m.flashAt - now) + 'ms';
        }
        if (m.flashAt + FLASH_MS < due) due = m.flashAt + FLASH_MS;
      } else if (slot.flashing) {
        slot.flashing = false;
        slot.fseq = 0;
        slot.price.className = 'price';
        slot.price.style.animationDelay = '';
      }
    }
    if (due !== Infinity) scheduleFlashEnd(due, now);
  }

  function scheduleFlashEnd(due, now) { // remove the flash classes when they lapse
    if (flashTimer && flashDue <= due) return;
    clearTimeout(flashTimer);
    flashDue = due;
    flashTimer = setTimeout(() => {
      flashTimer = 0;
      flashDue = Infinity;
      requestRender();
    }, Math.max(0, due - now) + 1);
  }

  // ---- frame loop --------------------------------------------------------------------------
  let rafId = 0;
  let sortTimer = 0;
  function requestRender() {
    if (rafId === 0) rafId = requestAnimationFrame(frame);
  }

  function frame() {
    rafId = 0;
    const t0 = performance.now();
    const now = Date.now();
    if (state.viewDirty) buildView(now);
    else if (state.membersDirty || state.sortDirty) {
      const wait = state.lastSortMs + RESORT_MS - now;
      if (wait <= 0) {
        if (state.membersDirty) buildView(now);
        else sortView(now);
      } else if (!sortTimer) {
        sortTimer = setTimeout(() => { sortTimer = 0; requestRender(); }, wait + 1);
      }
    }
    renderRows(now);
    if (chart.code !== null) {
      const r = lines.get(chart.code);
      if (r !== chart.row) { chart.row = r; chart.dirty = true; }
      if (chart.dirty) drawChart();
    }
    const dt = performance.now() - t0;
    perf.renders++;
    perf.renderMsTotal += dt;
    if (dt > perf.renderMsMax) perf.renderMsMax = dt;
    if (perf.recent.length >= 2000) perf.recent.splice(0, 1000);
    perf.recent.push(dt);
  }

  function setScrollTop(y) {
    const max = Math.max(0, headH + state.view.length * ROW_H - viewH);
    scrollTop = Math.round(Math.min(Math.max(0, y), max));
    el.wrap.scrollTop = scrollTop; // its scroll event confirms the value the browser kept
  }

  function scrollToCode(code) {
    const m = metas.get(code);
    if (m === undefined) return false;
    const now = Date.now();
    if (state.viewDirty || state.membersDirty) buildView(now);
    else if (state.sortDirty) sortView(now);
    const i = state.view.indexOf(m);
    if (i < 0) return false;
    const target = i * ROW_H - Math.max(0, (viewH - headH - ROW_H) / 2);
    setScrollTop(target);
    renderRows(now); // rendered when this returns, not a frame later
    return true;
  }

  // ---- header and side panels (timers) -----------------------------------------------------
  function tickAge() {
    const now = Date.now();
    if (state.newestMs > 0) {
      const age = now - state.newestMs;
      setText(el.age, fmtAge(age));
      let trading = false;
      for (const k in state.markets) if (state.markets[k] === 'continuous') trading = true;
      el.age.className = !trading ? 'idle' : age > 10000 ? 'bad' : age > 3000 ? 'warn' : 'ok';
    } else {
      setText(el.age, '–');
      el.age.className = 'idle';
    }
  }

  const moverSlots = [];
  for (let i = 0; i < MOVERS; i++) {
    const li = document.createElement('li');
    li.innerHTML = '<span class="m-code"></span><span class="m-price"></span>'
      + '<span class="m-pct"></span><span class="m-bar"><i></i></span>';
    li.hidden = true;
    el.movers.append(li);
    moverSlots.push({
      li, code: li.children[0], price: li.children[1], pct: li.children[2],
      bar: li.children[3].firstChild,
    });
  }

  const QUIET = 12;
  const quietSlots = [];
  for (let i = 0; i < QUIET; i++) {
    const li = document.createElement('li');
    li.innerHTML = '<span class="q-code"></span><span class="q-age"></span>';
    li.hidden = true;
    el.quiet.append(li);
    quietSlots.push({ li, code: li.children[0], age: li.children[1] });
  }

  // Once a second: silent count, top movers, breadth and the codes gone quiet, in one pass.
  function refreshSide(now) {
    const markets = state.markets;
    const silentMs = state.silentMs;
    let silent = 0, adv = 0, dec = 0, unch = 0;
    const top = []; // [abs pct, meta, pct], largest first, at most MOVERS
    const quiet = []; // traded before, silent now while its market trades
    for (const m of metas.values()) {
      const r = m.row;
      const p = r[PRICE];
      if (!(p > 0)) { silent++; continue; }
      if (silentMs > 0 && now - r[RECV] > silentMs && markets[m.market] === 'continuous') {
        silent++;
        quiet.push(m);
      }
      const o = r[OPEN];
      if (!(o > 0)) continue;
      if (p > o) adv++;
      else if (p < o) dec++;
      else unch++;
      const pct = (p - o) / o * 100;
      const a = Math.abs(pct);
      if (top.length === MOVERS && a <= top[MOVERS - 1][0]) continue;
      let j = top.length < MOVERS ? top.length : MOVERS - 1;
      while (j > 0 && top[j - 1][0] < a) { top[j] = top[j - 1]; j--; }
      top[j] = [a, m, pct];
    }
    setText(el.silent, 'silent ' + fmtInt(silent));
    el.silent.classList.toggle('some', silent > 0);
    const maxA = top.length ? top[0][0] : 0;
    for (let i = 0; i < MOVERS; i++) {
      const s = moverSlots[i];
      const t = top[i];
      if (t === undefined) { s.li.hidden = true; s.li.removeAttribute('data-code'); continue; }
      const m = t[1];
      s.li.hidden = false;
      s.li.dataset.code = m.code;
      s.li.className = (t[2] >= 0 ? 'up' : 'down') + (m.code === chart.code ? ' sel' : '');
      setText(s.code, m.code);
      setText(s.price, fmtPrice(m.row[PRICE]));
      setText(s.pct, fmtSigned(t[2], 2) + '%');
      s.bar.style.width = (maxA > 0 ? Math.max(2, t[0] / maxA * 100) : 0).toFixed(1) + '%';
    }
    quiet.sort((a, b) => a.row[RECV] - b.row[RECV]);
    for (let i = 0; i < QUIET; i++) {
      const s = quietSlots[i];
      const m = quiet[i];
      if (m === undefined) { s.li.hidden = true; s.li.removeAttribute('data-code'); continue; }
      s.li.hidden = false;
      s.li.dataset.code = m.code;
      setText(s.code, m.code);
      setText(s.age, fmtAge(now - m.row[RECV]));
    }
    setText(el.quietMore, quiet.length > QUIET ? '+ ' + fmtInt(quiet.length - QUIET) + ' more'
      : quiet.length === 0 ? 'none' : '');
    const total = adv + dec + unch;
    setText(el.adv, '▲ ' + fmtInt(adv));
    setText(el.dec, '▼ ' + fmtInt(dec));
    setText(el.unch, '= ' + fmtInt(unch));
    const bars = el.breadthBar.children;
    bars[0].style.flexGrow = total ? adv : 0;
    bars[1].style.flexGrow = total ? unch : 1;
    bars[2].style.flexGrow = total ? dec : 0;
  }

  setInterval(tickAge, 250);
  setInterval(() => {
    const now = Date.now();
    refreshSide(now);
    updateCount();
    if (state.silentMs > 0) requestRender(); // silent marks age without any update
  }, 1000);

  // ---- chart -------------------------------------------------------------------------------
  const chart = {
    code: null, row: undefined, bars: [], dirty: false, ctx: el.canvas.getContext('2d'),
    whole: false, // the day's bars arrived since the watch (before: closes are kept to merge)
    cssW: 0, cssH: 0, dpr: 0, hoverX: -1, bodyW: 0, bodyH: 0, reveal: null,
  };
  const C = {
    bg: '#0f1419', grid: '#1e2630', axis: '#7d8896', text: '#c6ced8', up: '#26a269',
    down: '#e5484d', flat: '#8b949e', last: '#e6b450', cross: '#56606c',
  };

  function openChart(code) {
    if (!metas.has(code)) return;
    if (chart.code !== code) {
      chart.code = code;
      chart.bars = [];
      chart.whole = false;
      chart.row = undefined;
      chart.hoverX = -1;
      el.chart.dataset.code = code;
      el.chart.dataset.bars = '0';
      send({ type: 'watch', code });
    }
    if (!el.chart.classList.contains('open')) chart.reveal = code;
    el.chart.hidden = false;
    el.chart.classList.add('open');
    chart.dirty = true;
    slotsStale = true;
    requestRender();
    refreshSide(Date.now());
  }

  function closeChart() {
    if (chart.code === null) return;
    chart.code = null;
    chart.bars = [];
    el.chart.classList.remove('open');
    el.chart.hidden = true;
    delete el.chart.dataset.code;
    el.chart.dataset.bars = '0';
    send({ type: 'watch', code: null });
    requestRender();
    refreshSide(Date.now());
  }

  function onBars(msg) {
    if (msg.code !== chart.code) return; // an answer to a watch since replaced
    const incoming = msg.bars || [];
    if (msg.whole) {
      // Bars that closed while the gateway read the day are newer than its answer: keep them.
      const early = chart.whole ? [] : chart.bars;
      chart.bars = incoming.slice().sort((a, b) => a[B_T] - b[B_T]);
      chart.whole = true;
      upsertBars(early);
    } else {
      upsertBars(incoming);
    }
    el.chart.dataset.bars = String(chart.bars.length);
    chart.dirty = true;
    requestRender();
  }

  function upsertBars(incoming) { // by minute_ms; almost always after the last one
    const bars = chart.bars;
    for (const b of incoming) {
      const t = b[B_T];
      let lo = 0, hi = bars.length;
      if (hi > 0 && bars[hi - 1][B_T] < t) lo = hi;
      else {
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (bars[mid][B_T] < t) lo = mid + 1; else hi = mid;
        }
      }
      if (lo < bars.length && bars[lo][B_T] === t) bars[lo] = b;
      else bars.splice(lo, 0, b);
    }
  }

  function niceStep(range, target) {
    const raw = range / Math.max(1, target);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
  }

  function resizeCanvas() {
    const dpr = window.devicePixelRatio || 1;
    const w = chart.bodyW, h = chart.bodyH;
    if (w === chart.cssW && h === chart.cssH && dpr === chart.dpr) return;
    chart.cssW = w;
    chart.cssH = h;
    chart.dpr = dpr;
    el.canvas.width = Math.max(1, Math.round(w * dpr));
    el.canvas.height = Math.max(1, Math.round(h * dpr));
    el.canvas.style.width = w + 'px';
    el.canvas.style.height = h + 'px';
  }

  function drawChart() {
    chart.dirty = false;
    const code = chart.code;
    const m = metas.get(code);
    const r = lines.get(code);
    const zone = m ? m.zone : '';
    // Title: code, last price, change.
    let title = code;
    if (r) {
      title += '   ' + fmtPrice(r[PRICE]);
      const pct = pctOf(r);
      if (pct === pct) title += '   ' + fmtSigned(changeOf(r), 2) + '  ' + fmtSigned(pct, 2) + '%';
    }
    setText(el.chartTitle, title);
    const dir = r ? Math.sign(changeOf(r)) : 0;
    el.chartTitle.className = dir > 0 ? 'up' : dir < 0 ? 'down' : '';

    resizeCanvas();
    const ctx = chart.ctx;
    const W = chart.cssW, H = chart.cssH;
    ctx.setTransform(chart.dpr, 0, 0, chart.dpr, 0, 0);
    ctx.fillStyle = C.bg;
    ctx.fillRect(0, 0, W, H);
    if (W < 80 || H < 80) return;
    const bars = chart.bars;
    const n = bars.length;
    ctx.font = '11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';
    ctx.textBaseline = 'middle';
    if (n === 0) {
      ctx.fillStyle = C.axis;
      ctx.textAlign = 'center';
      ctx.fillText('waiting for bars…', W / 2, H / 2);
      setText(el.chartInfo, '');
      return;
    }

    const L = 8, R = 64, T = 10, B = 22, GAP = 8;
    const plotW = W - L - R;
    const plotH = H - T - B;
    const priceH = Math.round((plotH - GAP) * 0.78);
    const volTop = T + priceH + GAP;
    const volH = plotH - priceH - GAP;
    const slot = Math.min(14, plotW / n);
    const body = Math.max(1, Math.floor(slot * 0.7));

    let lo = Infinity, hi = -Infinity, vmax = 0;
    for (const b of bars) {
      if (b[B_L] > 0 && b[B_L] < lo) lo = b[B_L];
      if (b[B_H] > hi) hi = b[B_H];
      if (b[B_V] > vmax) vmax = b[B_V];
    }
    const last = r && r[PRICE] > 0 ? r[PRICE] : 0;
    if (last > 0) { if (last < lo) lo = last; if (last > hi) hi = last; }
    if (!(hi >= lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 0.01 * (lo || 1); hi += 0.01 * (hi || 1); }
    const pad = (hi - lo) * 0.06;
    lo -= pad;
    hi += pad;
    const y = (p) => T + (hi - p) / (hi - lo) * priceH;
    const x = (i) => L + (i + 0.5) * slot;

    // Grid and price labels.
    const step = niceStep(hi - lo, Math.max(2, Math.floor(priceH / 45)));
    const decimals = Math.max(2, Math.min(6, -Math.floor(Math.log10(step))));
    ctx.strokeStyle = C.grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = C.axis;
    ctx.textAlign = 'left';
    const lastY = last > 0 ? y(last) : -1e9;
    ctx.beginPath();
    for (let k = Math.ceil(lo / step); k * step <= hi; k++) {
      const p = k * step; // from an integer: no drift from adding steps
      const yy = Math.round(y(p)) + 0.5;
      ctx.moveTo(L, yy);
      ctx.lineTo(L + plotW, yy);
      if (Math.abs(yy - lastY) > 13) ctx.fillText(p.toFixed(decimals), L + plotW + 6, yy);
    }
    // Time labels: every k bars, at least 64 px apart.
    const tf = dateFmt(zone, false);
    const every = Math.max(1, Math.ceil(64 / slot));
    ctx.textAlign = 'center';
    for (let i = 0; i < n; i += every) {
      const xx = Math.round(x(i)) + 0.5;
      ctx.moveTo(xx, T);
      ctx.lineTo(xx, T + plotH);
      ctx.fillText(tf.format(bars[i][B_T]), Math.min(Math.max(xx, L + 18), L + plotW - 18), H - B / 2);
    }
    ctx.stroke();
    // Separator between price and volume.
    ctx.strokeStyle = C.cross;
    ctx.beginPath();
    ctx.moveTo(L, volTop - GAP / 2 + 0.5);
    ctx.lineTo(L + plotW, volTop - GAP / 2 + 0.5);
    ctx.stroke();

    // Candles and volume, one path per colour.
    for (const side of [1, -1, 0]) {
      const color = side > 0 ? C.up : side < 0 ? C.down : C.flat;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        const b = bars[i];
        const s = Math.sign(b[B_C] - b[B_O]);
        if (s !== side) continue;
        const xx = Math.round(x(i)) + 0.5;
        ctx.moveTo(xx, Math.round(y(b[B_H])));
        ctx.lineTo(xx, Math.round(y(b[B_L])) + 1);
      }
      ctx.stroke();
      for (let i = 0; i < n; i++) {
        const b = bars[i];
        const s = Math.sign(b[B_C] - b[B_O]);
        if (s !== side) continue;
        const xl = Math.round(x(i) - body / 2);
        const y1 = Math.round(y(Math.max(b[B_O], b[B_C])));
        const y2 = Math.round(y(Math.min(b[B_O], b[B_C])));
        ctx.fillRect(xl, y1, body, Math.max(1, y2 - y1));
      }
      ctx.globalAlpha = 0.55;
      for (let i = 0; i < n; i++) {
        const b = bars[i];
        const s = Math.sign(b[B_C] - b[B_O]);
        if (s !== side || !(vmax > 0)) continue;
        const vh = Math.max(1, Math.round(b[B_V] / vmax * volH));
        ctx.fillRect(Math.round(x(i) - body / 2), volTop + volH - vh, body, vh);
      }
      ctx.globalAlpha = 1;
    }
    ctx.fillStyle = C.axis;
    ctx.textAlign = 'left';
    ctx.fillText(fmtAbbr(vmax), L + plotW + 6, volTop + 6);
    ctx.fillText('vol', L + plotW + 6, volTop + volH - 4);

    // Last price: dashed line and a tag on the axis.
    if (last > 0) {
      const yy = Math.round(y(last)) + 0.5;
      ctx.strokeStyle = C.last;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(L, yy);
      ctx.lineTo(L + plotW, yy);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = C.last;
      ctx.fillRect(L + plotW + 1, yy - 8, R - 2, 16);
      ctx.fillStyle = C.bg;
      ctx.fillText(last.toFixed(decimals), L + plotW + 6, yy);
    }

    // Crosshair and the hovered bar's values (else the last bar's).
    let hi_ = n - 1;
    if (chart.hoverX >= L && chart.hoverX < L + n * slot) {
      hi_ = Math.min(n - 1, Math.max(0, Math.floor((chart.hoverX - L) / slot)));
      const xx = Math.round(x(hi_)) + 0.5;
      ctx.strokeStyle = C.cross;
      ctx.beginPath();
      ctx.moveTo(xx, T);
      ctx.lineTo(xx, T + plotH);
      ctx.stroke();
    }
    const b = bars[hi_];
    const dp = (v) => v.toFixed(decimals);
    setText(el.chartInfo, dateFmt(zone, false).format(b[B_T]) + '  O ' + dp(b[B_O]) + '  H '
      + dp(b[B_H]) + '  L ' + dp(b[B_L]) + '  C ' + dp(b[B_C]) + '  V ' + fmtInt(b[B_V])
      + '   ' + n + ' bars');
  }

  // ---- events ------------------------------------------------------------------------------
  el.wrap.addEventListener('scroll', () => {
    scrollTop = el.wrap.scrollTop;
    requestRender();
  }, { passive: true });
  new ResizeObserver(() => { // runs after layout: these reads are free
    viewH = el.wrap.clientHeight;
    headH = el.thead.offsetHeight || ROW_H;
    if (chart.reveal !== null) { // the chart just took the table's space: keep its row in view
      const i = state.view.indexOf(metas.get(chart.reveal));
      chart.reveal = null;
      if (i >= 0 && (i * ROW_H < scrollTop || (i + 1) * ROW_H > scrollTop + viewH - headH)) {
        setScrollTop(i * ROW_H - Math.max(0, (viewH - headH - ROW_H) / 2));
      }
    }
    requestRender();
  }).observe(el.wrap);
  new ResizeObserver(() => {
    chart.bodyW = el.chartBody.clientWidth;
    chart.bodyH = el.chartBody.clientHeight;
    if (chart.code !== null) { chart.dirty = true; requestRender(); }
  }).observe(el.chartBody);

  el.thead.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (th) setSort(th.dataset.sort);
  });
  el.tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-code]');
    if (tr) openChart(tr.dataset.code);
  });
  for (const list of [el.movers, el.quiet]) {
    list.addEventListener('click', (e) => {
      const li = e.target.closest('li[data-code]');
      if (li) {
        openChart(li.dataset.code);
        scrollToCode(li.dataset.code);
      }
    });
  }
  el.search.addEventListener('input', () => {
    const f = el.search.value.trim().toLowerCase();
    if (f === state.filter) return;
    state.filter = f;
    state.viewDirty = true;
    setScrollTop(0);
    requestRender();
  });
  el.search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && state.view.length > 0) openChart(state.view[0].code);
  });
  el.chartClose.addEventListener('click', closeChart);
  el.canvas.addEventListener('mousemove', (e) => {
    chart.hoverX = e.offsetX;
    chart.dirty = true;
    requestRender();
  });
  el.canvas.addEventListener('mouseleave', () => {
    chart.hoverX = -1;
    chart.dirty = true;
    requestRender();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      if (chart.code !== null) closeChart();
      else if (document.activeElement === el.search && el.search.value) {
        el.search.value = '';
        el.search.dispatchEvent(new Event('input'));
      }
    } else if ((e.key === 'ArrowDown' || e.key === 'ArrowUp') && chart.code !== null
               && !e.altKey && !e.ctrlKey && !e.metaKey) { // step the chart through the table
      const v = state.view;
      const i = v.indexOf(metas.get(chart.code));
      const j = i < 0 ? 0 : i + (e.key === 'ArrowDown' ? 1 : -1);
      if (j >= 0 && j < v.length) {
        e.preventDefault();
        const code = v[j].code;
        openChart(code);
        const top = j * ROW_H;
        if (top < scrollTop || top + ROW_H > scrollTop + viewH - headH) {
          setScrollTop(e.key === 'ArrowDown' ? top + ROW_H - (viewH - headH) : top);
        }
      }
    } else if (e.key === '/' && document.activeElement !== el.search) {
      e.preventDefault();
      el.search.focus();
      el.search.select();
    }
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) requestRender(); });

  setSort('code'); // marks the header
  connect();
})();
