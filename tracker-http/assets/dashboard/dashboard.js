// The dashboard: reads the service's JSON API from the page's own origin
// and shows it. No dependencies, no build step; the server sends this file
// as it is, under a CSP that allows only same-origin script and style.
'use strict';

(function () {
  const TOKEN_KEY = 'tracker-token';
  const REFRESH_MS = 30000;
  const TOP_LIMIT = 10;
  const PAGE_LIMIT = 25;
  // Sites are found one `/pages` request each; past this many, the picker
  // lists the first ones by name.
  const MAX_SITES = 100;
  // Sites are listed again every this many automatic refreshes (new sites
  // appear within five minutes; a reload shows them at once).
  const SITES_EVERY = 10;
  // Series steps, finest first: the finest that keeps a range within
  // MAX_POINTS points is asked for, a coarser one if the service refuses it
  // (a coarser `--bucket`, or its series limit).
  // Up to 365d: a custom range of decades would pass the service's point
  // limit (1,000 by default) even at weekly steps.
  const STEPS = [['1h', 3600], ['6h', 21600], ['1d', 86400], ['7d', 604800], ['30d', 2592000], ['365d', 31536000]];
  const MAX_POINTS = 60;
  const DAY_MS = 86400000;
  // Times one read is asked again after a 429 before the load fails.
  const RATE_RETRIES = 8;
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat(undefined);
  const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });

  const state = {
    sites: null, // hosts seen, once listed
    path: null, // a page recorded as a bare path, when the listing saw one
    site: null,
    range: '30d',
    custom: null, // {from: 'YYYY-MM-DD', till: 'YYYY-MM-DD'}
    page: null, // the page whose series is shown, or null for the site
    cursors: [null], // `/pages` cursors of the listing pages shown so far
    seq: 0, // the latest load; older ones do not render
    refreshes: 0, // automatic ones
    timer: null,
    points: [],
    starts: [], // each point's start, by its step
    step: null,
    ready: false,
  };

  class AuthNeeded extends Error {}
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // One read of the API, with the tab's token when there is one.
  async function api(path, params) {
    const url = new URL(path, location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined) url.searchParams.set(key, value);
    }
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) {
      headers.Authorization = 'Bearer ' + token;
      // A token no header can carry (a pasted en dash or curly quote)
      // would make every fetch throw, never asking for the token again.
      try {
        new Headers(headers);
      } catch (_) {
        throw new AuthNeeded('unsendable');
      }
    }
    // A read refused by the per-address rate limit (--rate-limit) is
    // asked again when the service says: a load asks several things at
    // once, more than a small burst allows, and would otherwise fail on
    // every refresh.
    let response;
    for (let attempt = 0; ; attempt += 1) {
      response = await fetch(url, { headers, cache: 'no-store', credentials: 'omit' });
      if (response.status !== 429 || attempt === RATE_RETRIES) break;
      const seconds = Math.min(Number(response.headers.get('Retry-After')) || 1, 30);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000 + Math.random() * 500));
    }
    if (response.status === 401) throw new AuthNeeded(token ? 'refused' : 'missing');
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new ApiError(response.status, error.code, error.message || response.statusText);
    }
    return body;
  }

  // --- formatting -------------------------------------------------------

  // An exact count as a number; an estimate as "≈ N ± e", e being one
  // standard error in visitors.
  function countText(row) {
    const n = row.distinct_visitors;
    if (row.exact) return number.format(n);
    const e = Math.round(n * (row.error || 0));
    return '≈ ' + number.format(n) + ' ± ' + number.format(e);
  }

  function bytesText(n) {
    const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? number.format(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function timeText(iso, step) {
    const date = new Date(iso);
    const options = step >= 86400
      ? { year: 'numeric', month: 'short', day: 'numeric' }
      : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
    return date.toLocaleString(undefined, options);
  }

  // A page as shown in a site's lists: its path (and query) when it is
  // on the site's host without a port, else with its host and port in
  // front (the site counts every port of its host).
  function pageText(url) {
    const authority = authorityOf(url);
    const match = /^https?:\/\/[^/?#]*(.*)$/.exec(url);
    if (!match) return url;
    const path = match[1] || '/';
    return authority === state.site ? path : authority + path;
  }

  function authorityOf(url) {
    const match = /^https?:\/\/([^/?#]*)/.exec(url);
    return match ? match[1].replace(/^[^@]*@/, '') : '';
  }

  // A page's site: its host without the port, as the API counts a site
  // (`?site=host:port` answers for the host), so that a host seen on
  // several ports is one site in the picker, not one entry per port.
  function hostOf(url) {
    return authorityOf(url).replace(/:\d*$/, '');
  }

  // --- ranges -----------------------------------------------------------

  // The local midnight starting `ymd`, or `days` later: by the calendar,
  // not by 24 h steps, since a day with a clock change is 23 or 25 h long.
  function localMidnight(ymd, days = 0) {
    const [y, m, d] = ymd.split('-').map(Number);
    return new Date(y, m - 1, d + days).getTime();
  }

  function ymdOf(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
  }

  // The range asked for, in unix seconds (the service aligns it to its
  // buckets and says which range it answered).
  function rangeTimes() {
    const now = Date.now();
    let from;
    let till = now;
    switch (state.range) {
      case 'today': {
        const midnight = new Date(now);
        midnight.setHours(0, 0, 0, 0);
        from = midnight.getTime();
        break;
      }
      case '24h': from = now - DAY_MS; break;
      case '7d': from = now - 7 * DAY_MS; break;
      case 'custom':
        from = localMidnight(state.custom.from);
        till = localMidnight(state.custom.till, 1);
        break;
      default: from = now - 30 * DAY_MS;
    }
    return { from: Math.floor(from / 1000), till: Math.floor(till / 1000) };
  }

  function firstStep(range) {
    const span = range.till - range.from;
    const index = STEPS.findIndex(([, seconds]) => span / seconds <= MAX_POINTS);
    return index < 0 ? STEPS.length - 1 : index;
  }

  // --- reads ------------------------------------------------------------

  // The sites (hosts) seen. `/pages` lists pages by URL, and its cursor is
  // the last URL listed, so one page per request and a cursor just past
  // every URL of that scheme and host jumps to the next host.
  async function listSites() {
    const sites = new Set();
    state.path = null;
    let cursor = null;
    for (let i = 0; i < MAX_SITES; i += 1) {
      const answer = await api('/pages', { limit: 1, cursor });
      const page = answer.pages[0];
      if (!page) break;
      const host = hostOf(page.url);
      if (host) sites.add(host);
      else if (page.url.startsWith('/') && state.path === null) state.path = page.url;
      const prefix = /^(https?:\/\/[^/?#]*)/.exec(page.url);
      const past = (prefix ? prefix[1] : '') + '/\u{10FFFF}';
      cursor = past > page.url ? past : page.url;
      if (!answer.next_cursor) break;
    }
    return [...sites].sort();
  }

  // The site with the most distinct visitors in `range`.
  async function busiestSite(sites, range) {
    let best = sites[0];
    let most = -1;
    for (let i = 0; i < sites.length; i += 6) {
      const batch = sites.slice(i, i + 6);
      const answers = await Promise.all(batch.map((site) =>
        api('/distinct', { site, from: range.from, till: range.till })));
      answers.forEach((answer, j) => {
        if (answer.distinct_visitors > most) {
          most = answer.distinct_visitors;
          best = batch[j];
        }
      });
    }
    return best;
  }

  async function series(target, range) {
    for (let i = firstStep(range); i < STEPS.length; i += 1) {
      try {
        return await api('/series', { ...target, from: range.from, till: range.till, step: STEPS[i][0] });
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 400 || i === STEPS.length - 1) throw error;
      }
    }
    return null;
  }

  // --- loading ----------------------------------------------------------

  async function load(userAction) {
    const seq = ++state.seq;
    clearTimeout(state.timer);
    if (userAction) document.body.dataset.state = 'loading';
    else state.refreshes += 1;
    const relist = !userAction && state.refreshes % SITES_EVERY === 0;
    try {
      if (!state.sites || state.sites.length === 0 || relist) {
        const sites = await listSites();
        if (seq !== state.seq) return;
        state.sites = sites;
        fillSites();
        if (sites.length === 0) {
          showOnly('empty');
          return;
        }
      }
      const range = rangeTimes();
      if (!state.site || !state.sites.includes(state.site)) {
        state.site = await busiestSite(state.sites, range);
        if (seq !== state.seq) return;
        $('site').value = state.site;
      }
      const site = state.site;
      const target = state.page ? { url: state.page } : { site };
      const cursor = state.cursors[state.cursors.length - 1];
      const [distinct, top, points, stats, pages] = await Promise.all([
        api('/distinct', { site, from: range.from, till: range.till }),
        api('/top', { site, limit: TOP_LIMIT, from: range.from, till: range.till }),
        series(target, range),
        api('/stats'),
        api('/pages', { site, limit: PAGE_LIMIT, cursor }),
      ]);
      if (seq !== state.seq) return;
      render(range, distinct, top, points, stats, pages);
    } catch (error) {
      if (seq !== state.seq) return;
      if (error instanceof AuthNeeded) {
        askToken(error.message);
        return;
      }
      document.body.dataset.state = 'error';
      setStatus('Could not load the numbers: ' + error.message + '. Retrying in 30 s.');
    } finally {
      if (seq === state.seq) schedule();
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = null;
    if (!document.hidden && document.body.dataset.state !== 'auth') {
      state.timer = setTimeout(() => load(false), REFRESH_MS);
    }
  }

  // --- rendering ----------------------------------------------------------

  function showOnly(which) {
    $('main').hidden = which !== 'main';
    $('auth').hidden = which !== 'auth';
    $('empty').hidden = which !== 'empty';
    document.body.dataset.state = which === 'main' ? 'ready' : which;
    if (which === 'empty') {
      // Pages sent as bare paths belong to no site (a site is a host), so
      // they cannot show here: say so rather than "nothing recorded".
      const path = state.path;
      $('empty-title').textContent = path ? 'No site recorded yet' : 'Nothing recorded yet';
      $('paths-only').hidden = !path;
      $('paths-only').textContent = path
        ? 'Pages were recorded as bare paths (such as ' + path + '), which belong to no site, '
          + 'so they are not shown here; their counts are in the API (GET /distinct?url=' + path
          + '). Send full URLs to count them under a site.'
        : '';
      $('install').textContent = '<script defer src="' + location.origin + '/tracker.js"></script>';
      setStatus('');
    }
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  function fillSites() {
    const select = $('site');
    select.replaceChildren(...state.sites.map((site) => new Option(site, site)));
    select.disabled = state.sites.length === 0;
    if (state.site) select.value = state.site;
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function countRow(row, pick) {
    const tr = element('tr', {
      'data-url': row.url,
      'data-value': row.distinct_visitors,
      'data-exact': row.exact,
    });
    const th = element('th', { scope: 'row' });
    if (pick) {
      const button = element('button', {
        type: 'button',
        class: 'link',
        title: row.url,
        'aria-pressed': String(state.page === row.url),
      }, pageText(row.url));
      button.addEventListener('click', () => {
        state.page = state.page === row.url ? null : row.url;
        saveHash();
        load(true);
      });
      th.append(button);
    } else {
      th.append(element('span', { title: row.url }, pageText(row.url)));
    }
    tr.append(th, element('td', { class: row.exact ? 'num' : 'num estimate' }, countText(row)));
    return tr;
  }

  function render(range, distinct, top, points, stats, pages) {
    const visitors = $('site-visitors');
    visitors.textContent = countText(distinct);
    visitors.dataset.value = distinct.distinct_visitors;
    visitors.dataset.exact = distinct.exact;
    visitors.classList.toggle('estimate', !distinct.exact);

    // The range asked, and the one the counts cover: the same aligned to
    // the service's buckets (the series starts there), or wider when a
    // sketched page is counted (a sketch tells its visits apart by day).
    const label = $('range-label');
    label.dataset.from = distinct.from;
    label.dataset.till = distinct.till;
    label.dataset.askedFrom = range.from;
    label.dataset.askedTill = range.till;
    const when = (iso) => new Date(iso).toLocaleString();
    const wider = Date.parse(distinct.from) < Date.parse(points.from);
    label.textContent = state.site + ', ' + when(points.from) + ' – '
      + when(wider ? range.till * 1000 : distinct.till);
    $('range-note').hidden = !wider;
    $('range-note').textContent = wider
      ? 'Estimated counts (≈) cover ' + when(distinct.from) + ' – ' + when(distinct.till)
        + ': a page kept as a sketch tells its visits apart by day only.'
      : '';

    $('top-table').tBodies[0].replaceChildren(...top.pages.map((row) => countRow(row, true)));
    $('top-table').hidden = top.pages.length === 0;
    $('top-empty').hidden = top.pages.length !== 0;

    renderSeries(points);
    renderMemory(stats);

    $('pages-table').tBodies[0].replaceChildren(...pages.pages.map((row) => countRow(row, false)));
    state.nextCursor = pages.next_cursor;
    $('pages-next').disabled = !pages.next_cursor;
    $('pages-first').disabled = state.cursors.length === 1;
    const first = (state.cursors.length - 1) * PAGE_LIMIT;
    $('pages-where').textContent = pages.pages.length === 0 ? 'No pages'
      : 'Pages ' + number.format(first + 1) + '–' + number.format(first + pages.pages.length);

    $('whole-site').hidden = !state.page;
    $('chart-title').textContent = 'Visitors over time: ' + (state.page ? pageText(state.page) : 'whole site');

    $('updated').textContent = 'Updated ' + new Date().toLocaleTimeString()
      + ' · refreshes every ' + REFRESH_MS / 1000 + ' s while this tab is visible';
    setStatus('');
    showOnly('main');
    document.body.dataset.generation = Number(document.body.dataset.generation || 0) + 1;
    if (!state.ready) {
      state.ready = true;
      performance.mark('dashboard-ready');
    }
  }

  function renderSeries(answer) {
    const step = STEPS.find(([name]) => name === answer.step);
    state.step = step ? step[1] : 3600;
    state.points = answer.points;
    const table = $('series-table');
    table.dataset.step = answer.step;
    table.dataset.from = answer.from;
    table.dataset.till = answer.till;
    // Each point is labelled by its step; its `from`/`till` say what it
    // covers, wider for a sketched page.
    const start = Date.parse(answer.from);
    state.starts = answer.points.map((_, i) => new Date(start + i * state.step * 1000).toISOString());
    table.tBodies[0].replaceChildren(...answer.points.map((point, i) => {
      const tr = element('tr', {
        'data-from': point.from,
        'data-till': point.till,
        'data-value': point.distinct_visitors,
      });
      tr.append(
        element('th', { scope: 'row' }, timeText(state.starts[i], state.step)),
        element('td', { class: point.exact ? 'num' : 'num estimate' }, countText(point)),
      );
      return tr;
    }));
    $('series-caption').textContent = 'Visitors per ' + answer.step;
    drawChart();
  }

  // One line chart as plain SVG, sized to its box (redrawn on resize).
  function drawChart() {
    const box = $('chart');
    const points = state.points;
    const width = Math.max(240, Math.floor(box.clientWidth || 600));
    const height = width < 480 ? 180 : 240;
    const pad = { left: 48, right: 12, top: 12, bottom: 28 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const svg = document.createElementNS(SVG, 'svg');
    const set = (node, attributes) => {
      for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
      return node;
    };
    const add = (parent, tag, attributes, text) => {
      const node = set(document.createElementNS(SVG, tag), attributes);
      if (text !== undefined) node.textContent = text;
      parent.append(node);
      return node;
    };
    set(svg, {
      viewBox: '0 0 ' + width + ' ' + height,
      width,
      height,
      role: 'img',
      'aria-label': 'Line chart of the visitors per ' + (state.step >= 86400 ? 'day' : 'step')
        + '; the same numbers are in the table beside it.',
      class: 'line-chart',
    });
    const max = Math.max(1, ...points.map((p) => p.distinct_visitors));
    const x = (i) => pad.left + (points.length < 2 ? plotW / 2 : (i * plotW) / (points.length - 1));
    const y = (v) => pad.top + plotH - (v / max) * plotH;
    for (const v of [0, max / 2, max]) {
      add(svg, 'line', { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: 'grid' });
      add(svg, 'text', { x: pad.left - 6, y: y(v) + 4, class: 'axis y' }, compact.format(Math.round(v)));
    }
    if (points.length === 0) {
      add(svg, 'text', { x: width / 2, y: height / 2, class: 'axis none' }, 'No points in this range');
    } else {
      const labels = points.length < 3 ? [0, points.length - 1] : [0, Math.floor((points.length - 1) / 2), points.length - 1];
      for (const i of new Set(labels)) {
        const anchor = i === 0 ? 'start' : i === points.length - 1 ? 'end' : 'middle';
        add(svg, 'text', { x: x(i), y: height - 8, class: 'axis x', 'text-anchor': anchor }, timeText(state.starts[i], state.step));
      }
      add(svg, 'polyline', {
        points: points.map((p, i) => x(i) + ',' + y(p.distinct_visitors)).join(' '),
        class: 'line',
      });
      points.forEach((p, i) => {
        const dot = add(svg, 'circle', {
          cx: x(i), cy: y(p.distinct_visitors), r: points.length > 40 ? 2 : 3,
          class: p.exact ? 'dot' : 'dot estimate',
        });
        add(dot, 'title', {}, timeText(state.starts[i], state.step) + ': ' + countText(p));
      });
    }
    box.replaceChildren(svg);
  }

  function renderMemory(stats) {
    const meter = $('memory-meter');
    if (stats.max_bytes) {
      meter.hidden = false;
      meter.max = stats.max_bytes;
      meter.value = Math.min(stats.bytes, stats.max_bytes);
      const share = Math.round((100 * stats.bytes) / stats.max_bytes);
      $('memory-text').textContent = bytesText(stats.bytes) + ' held of a ' + bytesText(stats.max_bytes)
        + ' budget (' + share + '%)';
    } else {
      meter.hidden = true;
      $('memory-text').textContent = bytesText(stats.bytes) + ' held; no budget set (--max-memory)';
    }
    const exact = stats.pages - stats.sketched_pages;
    $('exact-text').textContent = number.format(exact) + ' of ' + number.format(stats.pages)
      + ' pages counted exactly' + (stats.sketched_pages
        ? '; ' + number.format(stats.sketched_pages) + ' estimated from sketches ('
          + Math.floor(100 * stats.exact_share) + '% of visitors exact)' : '');
    $('exact-text').dataset.sketched = stats.sketched_pages;
  }

  // --- the token ----------------------------------------------------------

  function askToken(why) {
    clearTimeout(state.timer);
    state.timer = null;
    // No numbers stay on screen without the token.
    for (const id of ['top-table', 'pages-table', 'series-table']) $(id).tBodies[0].replaceChildren();
    $('site-visitors').textContent = '';
    $('chart').replaceChildren();
    $('auth-message').textContent = why === 'refused'
      ? 'That token was refused. Enter the token the service was started with (--auth-token).'
      : why === 'unsendable'
        ? 'That token cannot be sent: it has a character no token has (a typographic dash or quote?). '
          + 'Enter the token the service was started with (--auth-token).'
        : 'This tracker was started with --auth-token: its numbers are shown only with that token. '
        + 'It is kept for this tab only and sent with every read.';
    showOnly('auth');
    setStatus(why === 'missing' ? 'An access token is needed.' : 'The token was refused.');
    $('token').value = '';
    $('token').focus();
  }

  $('auth-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('auth').hidden = true;
    load(true);
  });

  // --- controls -------------------------------------------------------------

  function saveHash() {
    const params = new URLSearchParams();
    if (state.site) params.set('site', state.site);
    params.set('range', state.range);
    if (state.range === 'custom') {
      params.set('from', state.custom.from);
      params.set('till', state.custom.till);
    }
    if (state.page) params.set('page', state.page);
    history.replaceState(null, '', '#' + params.toString());
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const range = params.get('range');
    const valid = /^\d{4}-\d{2}-\d{2}$/;
    if (range === 'custom' && valid.test(params.get('from') || '') && valid.test(params.get('till') || '')) {
      state.range = 'custom';
      state.custom = { from: params.get('from'), till: params.get('till') };
      $('custom-from').value = state.custom.from;
      $('custom-till').value = state.custom.till;
      $('custom').hidden = false;
    } else if (['today', '24h', '7d', '30d'].includes(range)) {
      state.range = range;
    }
    $('range-' + state.range).checked = true;
    state.site = params.get('site');
    state.page = params.get('page');
  }

  $('site').addEventListener('change', () => {
    state.site = $('site').value;
    state.page = null;
    state.cursors = [null];
    saveHash();
    load(true);
  });

  for (const radio of document.querySelectorAll('input[name="range"]')) {
    radio.addEventListener('change', () => {
      if (!radio.checked) return;
      if (radio.value === 'custom') {
        $('custom').hidden = false;
        if (!$('custom-from').value) $('custom-from').value = ymdOf(localMidnight(ymdOf(Date.now()), -29));
        if (!$('custom-till').value) $('custom-till').value = ymdOf(Date.now());
        setStatus('Pick the dates, then press Show.');
        return;
      }
      $('custom').hidden = true;
      state.range = radio.value;
      saveHash();
      load(true);
    });
  }

  $('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    const from = $('custom-from').value;
    const till = $('custom-till').value;
    if (!from || !till || from > till) {
      setStatus('Pick a start date on or before the end date.');
      $('custom-from').focus();
      return;
    }
    state.range = 'custom';
    state.custom = { from, till };
    saveHash();
    load(true);
  });

  $('whole-site').addEventListener('click', () => {
    state.page = null;
    saveHash();
    load(true);
  });

  $('pages-next').addEventListener('click', () => {
    if (!state.nextCursor) return;
    state.cursors.push(state.nextCursor);
    load(true);
  });

  $('pages-first').addEventListener('click', () => {
    state.cursors = [null];
    load(true);
  });

  document.addEventListener('visibilitychange', () => {
    if (document.hidden) {
      clearTimeout(state.timer);
      state.timer = null;
    } else if (document.body.dataset.state !== 'auth') {
      load(false);
    }
  });

  // Redrawn when the chart's width changes (its height follows from it).
  let drawnWidth = 0;
  let resizing = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(() => {
      const width = $('chart').clientWidth;
      if (state.ready && width !== drawnWidth) {
        drawnWidth = width;
        drawChart();
      }
    });
  }).observe($('chart'));

  readHash();
  load(true);
}());
