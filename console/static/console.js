// Weft console. It calls the node's ConnectRPC services with JSON over
// fetch() (POST /weft.v1.Service/Method), sending the API token the operator
// logged in with as a bearer token; the token lives in sessionStorage only
// and never in a URL. Everything the API returns reaches the page as text
// (textContent, text nodes): the Content-Security-Policy makes the browser
// refuse innerHTML and every other HTML string sink.
'use strict';

const TOKEN_KEY = 'weft.token';
const POLL_MS = 2000;
const LIST_LIMIT = 200;
const MANIFEST = '/ui/manifest/';

// ---- API ----

class APIError extends Error {
  constructor(code, message) {
    // The text connect-go's Error() gives, so the page shows what the CLI prints.
    super(code + ': ' + message);
    this.code = code;
  }
}

async function call(path, body) {
  const res = await fetch(path, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'Connect-Protocol-Version': '1',
      'Authorization': 'Bearer ' + (sessionStorage.getItem(TOKEN_KEY) || ''),
    },
    body: JSON.stringify(body || {}),
    credentials: 'omit',
    cache: 'no-store',
    redirect: 'error',
  });
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : {};
  } catch (e) {
    throw new APIError('unknown', 'HTTP ' + res.status + ': ' + text);
  }
  if (!res.ok) {
    const err = new APIError(data.code || 'unknown', data.message || 'HTTP ' + res.status);
    if (err.code === 'unauthenticated' && path !== '/weft.v1.ClusterService/Status') {
      logout(err.message);
    }
    throw err;
  }
  return data;
}

function rpc(service, method, body) {
  return call('/weft.v1.' + service + '/' + method, body);
}

// ---- DOM ----

// el builds an element; children are nodes or values shown as text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  e.append(...nodes(children));
  return e;
}

// nodes flattens children (nested arrays of nodes and values) into nodes,
// values as text nodes; null and undefined are left out.
function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== undefined && c !== null)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

// fill replaces parent's children.
function fill(parent, ...children) {
  parent.replaceChildren(...nodes(children));
}

function table(id, headers, rows, empty) {
  if (rows.length === 0) return el('p', {class: 'empty', id: id}, empty || 'None.');
  return el('table', {id: id},
    el('thead', null, el('tr', null, headers.map((h) => el('th', null, h)))),
    el('tbody', null, rows.map((r) => el('tr', r.attrs || null, (r.cells || r).map((c) => el('td', null, c))))));
}

function link(hash, text) {
  return el('a', {href: hash}, text);
}

function lbLink(name) { return link('#/lb/' + encodeURIComponent(name), name); }
function poolLink(name) { return link('#/pool/' + encodeURIComponent(name), name); }

const HEALTH = ['up', 'down', 'unknown'];

function health(h) {
  const v = HEALTH.includes(h) ? h : 'unknown';
  return el('span', {class: 'badge ' + v}, v);
}

function badge(text, kind) {
  return el('span', {class: 'badge ' + kind}, text);
}

function errorBox(id, err) {
  return el('pre', {class: 'error', id: id, role: 'alert'}, err instanceof Error ? err.message : String(err));
}

function hostPort(addr, port) {
  return addr.includes(':') ? '[' + addr + ']:' + port : addr + ':' + port;
}

// ---- numbers ----

function num(v) { return Number(v || 0); }

// si writes a rate with an SI prefix, as the CLI does.
function si(v) {
  const units = ['', 'k', 'M', 'G', 'T'];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  if (v === 0) return '0';
  return (Math.abs(v) >= 100 || i === 0 && Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)) + units[i];
}

function pct(v) { return (100 * v).toFixed(1) + '%'; }

function since(ts) {
  if (!ts) return '';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return s + 's';
  if (s < 7200) return Math.round(s / 60) + 'm';
  if (s < 172800) return Math.round(s / 3600) + 'h';
  return Math.round(s / 86400) + 'd';
}

// ---- rates from two GetStats answers ----

// Rates keeps the last GetStats answer of a page and gives per-second rates
// against the next: the API serves counters summed over the nodes, and a
// rate is the difference of two answers over the time between them. When
// the two summed different nodes the differences are no rates, so only open
// flows are given (as weft top does).
class Rates {
  constructor() { this.prev = null; this.cur = null; }

  update(res) {
    this.prev = this.cur;
    this.cur = {time: Date.parse(res.time), nodes: (res.nodes || []).join(','), counters: new Map()};
    for (const lb of res.loadBalancers || []) {
      for (const l of lb.listeners || []) {
        this.cur.counters.set(lb.name + '/' + l.name, l);
        for (const b of l.backends || []) this.cur.counters.set(backendKey(lb.name, l.name, b), b);
      }
    }
  }

  // of returns the rates of the listener or backend counted under key, or
  // null while there is no earlier answer to compare with.
  of(key) {
    const c = this.cur && this.cur.counters.get(key);
    if (!c) return null;
    const t = c.traffic || {}, q = c.requests || {};
    const r = {active: num(t.activeFlows)};
    const p = this.prev && this.prev.counters.get(key);
    const dt = this.prev ? (this.cur.time - this.prev.time) / 1000 : 0;
    if (!p || dt <= 0 || this.prev.nodes !== this.cur.nodes) return r;
    const pt = p.traffic || {}, pq = p.requests || {};
    const d = (a, b) => Math.max(0, num(a) - num(b)) / dt;
    r.packets = d(t.packets, pt.packets);
    r.bits = 8 * d(t.bytes, pt.bytes);
    r.newFlows = d(t.newFlows, pt.newFlows);
    r.drops = d(t.drops, pt.drops);
    r.requests = d(q.requests, pq.requests);
    const bad = d(q.status5xx, pq.status5xx) + d(q.noStatus, pq.noStatus);
    r.errors = r.requests > 0 ? bad / r.requests : 0;
    return r;
  }
}

function backendKey(lb, listener, b) {
  return lb + '/' + listener + '/' + b.pool + '/' + hostPort(b.address, b.port);
}

function isL7(protocol) { return protocol === 'http' || protocol === 'https'; }

// rateCells are a listener's or backend's rates: traffic for tcp and udp,
// requests for http and https.
function rateCells(protocol, r) {
  if (!r) return ['', '', ''];
  // Until a second answer there is nothing to compare with.
  const has = (v, f, unit) => (v === undefined ? '…' : f(v) + unit);
  if (isL7(protocol)) {
    return [has(r.requests, si, ' req/s'), has(r.errors, pct, ' errors'), r.active + ' open'];
  }
  return [has(r.newFlows, si, ' new/s'), has(r.bits, si, 'b/s'), r.active + ' open'];
}

// ---- pages ----

// A page renders its frame into main and returns a refresh function, which
// the router calls at once and then every POLL_MS until the route changes.

function pageLBs(main) {
  const sel = el('input', {id: 'lb-selector', type: 'search', placeholder: 'label selector, e.g. env=prod', spellcheck: 'false'});
  const body = el('div', {id: 'lb-list'});
  const rates = new Rates();
  main.append(el('h1', null, 'Load balancers'),
    el('form', {class: 'filter', onsubmit: (e) => { e.preventDefault(); rates.prev = rates.cur = null; refreshNow(); }},
      sel, el('button', {type: 'submit'}, 'Filter')), body);
  return async () => {
    const list = await rpc('LoadBalancerService', 'ListLoadBalancers', {limit: LIST_LIMIT, selector: sel.value.trim()});
    const lbs = list.loadBalancers || [];
    const stats = lbs.length ? await rpc('StatsService', 'GetStats', {loadBalancers: lbs.map((l) => l.metadata.name)}) : {loadBalancers: []};
    rates.update(stats);
    const byName = new Map((stats.loadBalancers || []).map((s) => [s.name, s]));
    const rows = lbs.map((lb) => {
      const name = lb.metadata.name, spec = lb.spec || {};
      const st = byName.get(name);
      const members = new Map();
      let nf = 0, bits = 0, req = 0, open = 0, seen = false;
      for (const l of (st && st.listeners) || []) {
        for (const b of l.backends || []) members.set(b.pool + '/' + hostPort(b.address, b.port), b.health);
        const r = rates.of(name + '/' + l.name);
        if (!r) continue;
        open += r.active;
        if (r.newFlows !== undefined) { seen = true; nf += r.newFlows; bits += r.bits; req += r.requests; }
      }
      const up = [...members.values()].filter((h) => h === 'up').length;
      return {attrs: {'data-lb': name}, cells: [
        lbLink(name), spec.vip || '',
        (spec.listeners || []).map((l) => (l.protocol || 'tcp') + '/' + l.port).join(' '),
        el('span', {class: up === members.size && up > 0 ? 'ok' : 'warn'}, up + '/' + members.size + ' up'),
        seen ? si(nf) : '…', seen ? si(bits) + 'b/s' : '…', seen ? si(req) : '…', String(open),
      ]};
    });
    const more = list.nextPageToken ? el('p', {class: 'note'}, 'The first ' + LIST_LIMIT + ' by name; narrow them with a label selector.') : null;
    fill(body, table('lbs', ['Name', 'VIP', 'Listeners', 'Members', 'New flows/s', 'Traffic', 'Requests/s', 'Open flows'], rows, 'No load balancers.'), more || '');
  };
}

function pageLB(main, name) {
  const body = el('div', {id: 'lb-detail'});
  const rates = new Rates();
  main.append(el('h1', null, 'Load balancer ', el('span', {class: 'name'}, name)),
    el('p', null, el('button', {type: 'button', id: 'edit', onclick: () => editYAML('LoadBalancer', name)}, 'Edit as YAML')), body);
  return async () => {
    const [got, stats] = await Promise.all([
      rpc('LoadBalancerService', 'GetLoadBalancer', {name: name}),
      rpc('StatsService', 'GetStats', {loadBalancers: [name]}),
    ]);
    rates.update(stats);
    const lb = got.loadBalancer, spec = lb.spec || {};
    const st = (stats.loadBalancers || [])[0] || {};
    const statsOf = new Map((st.listeners || []).map((l) => [l.name, l]));
    const parts = [el('dl', {class: 'facts'},
      fact('VIP', spec.vip), fact('Address pool', spec.addressPool), fact('Region', spec.region),
      fact('Primary zone', spec.primaryZone), fact('Backup zones', (spec.backupZones || []).join(', ')),
      fact('Labels', labels(lb.metadata.labels)), fact('Version', lb.metadata.version))];
    for (const l of spec.listeners || []) {
      const proto = l.protocol || 'tcp';
      const ls = statsOf.get(l.name) || {};
      const pools = [l.pool, ...(l.rules || []).map((r) => r.pool)].filter((p, i, a) => p && a.indexOf(p) === i);
      const how = isL7(proto) ? ((l.rules || []).length + ' rules' + (l.stickySession && l.stickySession.enabled ? ', sticky' : ''))
        : (l.mode || 'fullnat') + ', ' + (l.scheduler || 'maglev');
      parts.push(el('section', {class: 'listener', 'data-listener': l.name},
        el('h2', null, l.name + ' — ' + proto + '/' + l.port),
        el('p', null, how, ' · pools: ', pools.map((p, i) => [i ? ', ' : '', poolLink(p)]), ' · ',
          rateCells(proto, rates.of(name + '/' + l.name)).join(' · ')),
        table('backends-' + l.name, ['Pool', 'Member', 'Health', 'Drain', 'Rate', '', 'Open'],
          (ls.backends || []).map((b) => ({attrs: {'data-member': hostPort(b.address, b.port)}, cells: [
            b.pool, hostPort(b.address, b.port), health(b.health), b.drain ? 'draining' : '',
            ...rateCells(proto, rates.of(backendKey(name, l.name, b)))]})),
          'No members.')));
    }
    if ((st.topClients || []).length) {
      parts.push(el('section', null, el('h2', null, 'Top clients (new flows/s)'),
        table('top-clients', ['Client', 'New flows/s', 'Limited/s'],
          st.topClients.map((c) => [c.source, si(num(c.newFlows)), si(num(c.limited))]))));
    }
    parts.push(missing(stats));
    fill(body, ...parts);
  };
}

function fact(label, value) {
  if (value === undefined || value === null || value === '') return '';
  return [el('dt', null, label), el('dd', null, String(value))];
}

function labels(m) {
  return Object.entries(m || {}).map(([k, v]) => k + '=' + v).join(', ');
}

// missing names the nodes whose counters are not in the sums.
function missing(stats) {
  const m = stats.missing || [];
  const nodes = (stats.nodes || []).join(', ');
  return el('p', {class: 'note'}, 'Counters of ', nodes || 'no node',
    m.length ? ['; not counted: ', m.map((x) => x.node + ' (' + x.reason + ')').join(', ')] : '', '.');
}

function pagePools(main) {
  const sel = el('input', {id: 'pool-selector', type: 'search', placeholder: 'label selector', spellcheck: 'false'});
  const body = el('div', {id: 'pool-list'});
  main.append(el('h1', null, 'Pools'),
    el('form', {class: 'filter', onsubmit: (e) => { e.preventDefault(); refreshNow(); }}, sel, el('button', {type: 'submit'}, 'Filter')), body);
  return async () => {
    const list = await rpc('LoadBalancerService', 'ListPools', {limit: LIST_LIMIT, selector: sel.value.trim()});
    const rows = (list.pools || []).map((p) => {
      const s = p.status || {}, spec = p.spec || {}, hc = spec.healthCheck || {};
      return {attrs: {'data-pool': p.metadata.name}, cells: [
        poolLink(p.metadata.name), String((spec.members || []).length),
        el('span', {class: 'ok'}, num(s.membersUp) + ' up'), el('span', {class: num(s.membersDown) ? 'bad' : ''}, num(s.membersDown) + ' down'),
        num(s.membersUnknown) + ' unknown', (hc.type || 'tcp') + (hc.interval ? ' every ' + hc.interval : ''), s.observer || '']};
    });
    fill(body, table('pools', ['Name', 'Members', 'Up', 'Down', 'Unknown', 'Health check', 'Health seen by'], rows, 'No pools.'));
  };
}

function pagePool(main, name) {
  const body = el('div', {id: 'pool-detail'});
  main.append(el('h1', null, 'Pool ', el('span', {class: 'name'}, name)),
    el('p', null, el('button', {type: 'button', id: 'edit', onclick: () => editYAML('Pool', name)}, 'Edit as YAML')), body);
  return async () => {
    const [got, st] = await Promise.all([
      rpc('LoadBalancerService', 'GetPool', {name: name}),
      rpc('ClusterService', 'Status'),
    ]);
    const p = got.pool, spec = p.spec || {}, hc = spec.healthCheck || {};
    const view = new Map((st.members || []).filter((m) => m.pool === name).map((m) => [hostPort(m.address, m.port), m]));
    const rows = (spec.members || []).map((m) => {
      const key = hostPort(m.address, m.port), h = view.get(key);
      return {attrs: {'data-member': key}, cells: [
        key, m.weight === undefined ? '1' : String(m.weight), m.zone || '', m.drain ? 'draining' : '',
        health(h ? (h.up ? 'up' : 'down') : 'unknown'), h ? (h.checkers || []).join(', ') : '', h ? h.probe || '' : '', h ? h.lastError || '' : '']};
    });
    fill(body,
      el('dl', {class: 'facts'}, fact('Health check', (hc.type || 'tcp') + (hc.path ? ' ' + hc.path : '')),
        fact('Interval', hc.interval), fact('Timeout', hc.timeout), fact('Rise/fall', hc.rise || hc.fall ? (hc.rise || '') + '/' + (hc.fall || '') : ''),
        fact('Algorithm', spec.algorithm), fact('Labels', labels(p.metadata.labels)), fact('Version', p.metadata.version)),
      table('members', ['Member', 'Weight', 'Zone', 'Drain', 'Health', 'Checked by', 'Probe here', 'Last error'], rows, 'No members.'),
      el('p', {class: 'note'}, 'Health in the agreed view as node ', st.nodeName, ' holds it.'));
  };
}

function pageCluster(main) {
  const body = el('div', {id: 'cluster'});
  main.append(el('h1', null, 'Cluster'), body);
  return async () => {
    const [nodes, st] = await Promise.all([rpc('ClusterService', 'ListNodes', {}), rpc('ClusterService', 'Status')]);
    const rows = (nodes.nodes || []).map((n) => {
      const s = n.status || {}, spec = n.spec || {};
      const live = s.liveness || 'unknown';
      return {attrs: {'data-node': n.metadata.name}, cells: [
        n.metadata.name, (spec.region || '') + '/' + (spec.zone || ''), spec.apiAddress || '',
        s.leader ? badge('leader', 'up') : (s.suffrage || ''),
        badge(live, live === 'alive' ? 'up' : live === 'dead' ? 'down' : 'unknown'),
        spec.drain ? 'draining' : '', s.version || '']};
    });
    const bgp = st.bgp;
    fill(body,
      table('nodes', ['Node', 'Region/zone', 'API', 'Raft', 'Liveness', 'Drain', 'Version'], rows),
      el('h2', null, 'This node: ', st.nodeName),
      el('dl', {class: 'facts'}, fact('Raft state', st.state), fact('Leader', st.leaderName), fact('Term', st.term),
        fact('Commit index', st.commitIndex), fact('Applied index', st.appliedIndex), fact('Version', st.version)),
      table('subsystems', ['Subsystem', 'Applied index', 'Error'],
        (st.subsystems || []).map((s) => [s.name, String(s.appliedIndex || 0), s.error ? el('span', {class: 'bad'}, s.error) : ''])),
      el('h2', null, 'BGP on ', st.nodeName),
      bgp ? [
        el('dl', {class: 'facts'}, fact('Router ID', bgp.routerId), fact('ASN', bgp.asn), fact('Draining', bgp.draining ? 'yes' : ''),
          fact('Error', bgp.error)),
        table('bgp-peers', ['Peer', 'ASN', 'State', 'Up for', 'Hold time'],
          (bgp.peers || []).map((p) => [p.address, String(p.asn || ''), badge(p.state || 'idle', p.state === 'established' ? 'up' : 'down'),
            since(p.establishedSince), p.holdTime || '']), 'No peers.'),
        table('bgp-announced', ['Announced prefix', 'AS-path prepends'],
          (bgp.announced || []).map((a) => [a.prefix, String(a.prepend || 0)]), 'Nothing announced.'),
      ] : el('p', {class: 'empty', id: 'bgp-off'}, 'BGP is off on this node (no --bgp-asn).'),
      el('p', {class: 'note'}, 'Each node shows its own BGP sessions; open the console on another node to see that node’s.'));
  };
}

// draft is the apply text box's content, kept while the operator looks at
// other pages.
let draft = '';

async function editYAML(kind, name) {
  const get = kind === 'Pool' ? ['GetPool', 'pool'] : ['GetLoadBalancer', 'loadBalancer'];
  try {
    const got = await rpc('LoadBalancerService', get[0], {name: name});
    const res = {};
    res[get[1]] = got[get[1]];
    const out = await call(MANIFEST + 'encode', {resources: [res]});
    draft = out.yaml;
    location.hash = '#/apply';
  } catch (e) {
    document.getElementById('main').append(errorBox('edit-error', e));
  }
}

function pageApply(main) {
  const text = el('textarea', {id: 'yaml', spellcheck: 'false', rows: '24', 'aria-label': 'YAML documents'});
  text.value = draft;
  text.addEventListener('input', () => { draft = text.value; });
  const out = el('div', {id: 'apply-result', 'aria-live': 'polite'});
  const run = async (dryRun) => {
    fill(out, el('p', {class: 'note'}, dryRun ? 'Checking…' : 'Applying…'));
    try {
      const req = await call(MANIFEST + 'decode', {yaml: text.value});
      req.dryRun = dryRun;
      const res = await rpc('LoadBalancerService', 'Apply', req);
      fill(out,
        table('apply-results', ['Kind', 'Name', dryRun ? 'Would be' : 'Result', 'Version'],
          (res.results || []).map((r) => [r.kind, r.name, r.action + (dryRun ? ' (dry run)' : ''), String(r.version || '')])),
        el('p', {class: 'note', id: 'apply-index'}, dryRun ? 'Checked against the state at index ' : 'Raft index ', String(res.index || 0), '.'));
    } catch (e) {
      fill(out, errorBox('apply-error', e));
    }
  };
  main.append(el('h1', null, 'Apply'),
    el('p', null, 'YAML documents as ', el('code', null, 'weft apply -f'), ' reads them, applied in one Raft entry: all or nothing. ',
      'A resource opened with “Edit as YAML” carries its version, so the apply fails if someone changed it meanwhile.'),
    text,
    el('p', {class: 'buttons'},
      el('button', {type: 'button', id: 'dry-run', onclick: () => run(true)}, 'Dry run'),
      el('button', {type: 'button', id: 'apply', class: 'primary', onclick: () => run(false)}, 'Apply')),
    out);
  return null;
}

// ---- login and routing ----

const routes = [
  [/^#\/lbs$/, 'lbs', pageLBs],
  [/^#\/lb\/(.+)$/, 'lbs', pageLB],
  [/^#\/pools$/, 'pools', pagePools],
  [/^#\/pool\/(.+)$/, 'pools', pagePool],
  [/^#\/cluster$/, 'cluster', pageCluster],
  [/^#\/apply$/, 'apply', pageApply],
];

let generation = 0;
let refreshNow = () => {};

function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showLogin('');
    return;
  }
  let match = null;
  for (const [re, nav, page] of routes) {
    const m = location.hash.match(re);
    if (m) { match = [nav, page, m.slice(1).map(decodeURIComponent)]; break; }
  }
  if (!match) {
    location.replace('#/lbs');
    return;
  }
  const [nav, page, args] = match;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.page === nav);
  const main = document.getElementById('main');
  main.replaceChildren();
  const status = el('p', {class: 'status', id: 'status'});
  const refresh = page(main, ...args);
  main.append(status);
  const gen = ++generation;
  let timer = null;
  const tick = async () => {
    clearTimeout(timer);
    if (gen !== generation) return;
    try {
      await refresh();
      fill(status, 'Updated ', new Date().toLocaleTimeString(), '.');
      status.classList.remove('bad');
    } catch (e) {
      if (gen !== generation) return;
      fill(status, 'Could not refresh: ', e.message);
      status.classList.add('bad');
    }
    if (gen === generation) timer = setTimeout(tick, POLL_MS);
  };
  if (refresh) {
    refreshNow = tick;
    tick();
  }
}

function showLogin(message) {
  generation++;
  document.getElementById('bar').hidden = true;
  const input = el('input', {id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    placeholder: 'weft API token', 'aria-label': 'API token'});
  const out = el('div', {id: 'login-result'}, message ? errorBox('login-error', message) : '');
  const form = el('form', {id: 'login', class: 'login'},
    el('h1', null, 'Weft console'),
    el('p', null, 'Log in with an API token (', el('code', null, 'weft token create --role viewer'),
      '; operator or admin to apply). It is kept in this tab only.'),
    input, el('button', {type: 'submit', class: 'primary'}, 'Log in'), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await enter();
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      fill(out, errorBox('login-error', err));
    }
  });
  document.getElementById('main').replaceChildren(form);
  input.focus();
}

// enter checks the token with Status and shows the console.
async function enter() {
  const st = await rpc('ClusterService', 'Status');
  document.getElementById('whoami').textContent = 'node ' + st.nodeName + ' (' + st.state + ')';
  document.getElementById('bar').hidden = false;
  route();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message || '');
}

document.getElementById('logout').addEventListener('click', () => logout(''));
window.addEventListener('hashchange', route);
if (sessionStorage.getItem(TOKEN_KEY)) {
  enter().catch((e) => logout(e.message));
} else {
  showLogin('');
}
