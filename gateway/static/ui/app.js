// The dashboard's shell: hash routes (#/jobs, #/jobs/<id>, #/functions, #/schedules,
// #/schedules/<name>, #/webhooks, #/webhooks/<id>, #/contexts, #/workers, #/overview), the
// navigation, the API key dialog and the update indicator.
// Each page is a module exporting `mount(root, route)`, which may return a cleanup function.

import { api, apiKey, setApiKey } from './api.js';
import { h, replace } from './dom.js';
import { onLiveState } from './live.js';
import { parseRoute } from './router.js';
import { errorBox } from './widgets.js';

const PAGES = {
  overview: () => import('./pages/overview.js'),
  jobs: () => import('./pages/jobs.js'),
  job: () => import('./pages/job.js'),
  functions: () => import('./pages/functions.js'),
  schedules: () => import('./pages/schedules.js'),
  schedule: () => import('./pages/schedule.js'),
  webhooks: () => import('./pages/webhooks.js'),
  webhook: () => import('./pages/webhook.js'),
  contexts: () => import('./pages/contexts.js'),
  workers: () => import('./pages/workers.js'),
};

// A page of one item lights up the navigation entry of its list.
const LIST_OF = { job: 'jobs', schedule: 'schedules', webhook: 'webhooks' };

const main = document.getElementById('main');
let cleanup = null;
let generation = 0;

async function render() {
  const current = ++generation;
  const routeInfo = parseRoute();
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  for (const link of document.querySelectorAll('#nav a')) {
    const active = link.dataset.page === (LIST_OF[routeInfo.page] ?? routeInfo.page);
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const load = PAGES[routeInfo.page];
  if (!load) {
    replace(main, h('section', { class: 'card' }, h('h1', {}, 'Not found'),
      h('p', {}, 'No such page. ', h('a', { href: '#/jobs' }, 'Go to the jobs.'))));
    return;
  }
  const root = h('div', { class: `page page-${routeInfo.page}`, 'data-page': routeInfo.page });
  replace(main, root);
  try {
    const module = await load();
    if (current !== generation) return;
    const result = await module.mount(root, routeInfo);
    if (current !== generation) {
      if (typeof result === 'function') result();
      return;
    }
    cleanup = result;
  } catch (error) {
    if (current === generation) root.append(errorBox(error));
  }
}

function showBanner(message) {
  const banner = document.getElementById('banner');
  if (!message) {
    banner.hidden = true;
    return;
  }
  replace(banner, message, ' ', h('button', {
    type: 'button', class: 'button small', onclick: openKeyDialog,
  }, 'Set API key'));
  banner.hidden = false;
}

/** `reason`: why the gateway asks (a 401's message), shown above the field. */
function openKeyDialog(reason) {
  const dialog = document.getElementById('key-dialog');
  const why = document.getElementById('key-reason');
  why.textContent = typeof reason === 'string' ? reason : '';
  why.hidden = !why.textContent;
  if (dialog.open) return; // several requests refused at once: one dialog
  document.getElementById('key-input').value = apiKey();
  dialog.showModal();
}

function keyChanged() {
  updateKeyButton();
  showBanner(null);
  render();
  showVersion();
}

function setUpKeyDialog() {
  const dialog = document.getElementById('key-dialog');
  document.getElementById('key-button').addEventListener('click', () => openKeyDialog());
  document.getElementById('sign-out').addEventListener('click', () => {
    setApiKey('');
    keyChanged();
  });
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'save') setApiKey(document.getElementById('key-input').value.trim());
    else if (dialog.returnValue === 'clear') setApiKey('');
    else return;
    keyChanged();
  });
  // 401: no key, or one the gateway no longer takes (revoked, expired): ask for one.
  // 403: the key is valid but its role does not allow this; say so where the page shows it.
  window.addEventListener('sparkgate:auth', (event) => {
    const error = event.detail;
    if (error.status === 401) {
      openKeyDialog(apiKey()
        ? `The gateway refused this key: ${error.message}`
        : 'The gateway requires an API key (or a JWT) to show this.');
    } else {
      showBanner(`This key may not do that: ${error.message}`);
    }
  });
  updateKeyButton();
}

function updateKeyButton() {
  const button = document.getElementById('key-button');
  button.textContent = apiKey() ? 'API key ✓' : 'API key';
  document.getElementById('sign-out').hidden = !apiKey();
}

function setUpLiveIndicator() {
  const live = document.getElementById('live');
  const titles = {
    live: 'Live: updates arrive as events from the gateway',
    polling: 'Polling: the event stream is not available, so the page re-reads every few seconds',
    connecting: 'Connecting to the event stream…',
    refresh: 'This page re-reads its data every few seconds',
    idle: 'Nothing on this page follows events',
  };
  const labels = { refresh: 'auto-refresh' };
  onLiveState((state) => {
    live.dataset.state = state;
    live.textContent = labels[state] || state;
    live.title = titles[state];
  });
}

async function showVersion() {
  try {
    const status = await api('status');
    document.getElementById('version').textContent = `v${status.sparkgateVersion}`;
  } catch {
    // The pages say what is wrong.
  }
}

setUpKeyDialog();
setUpLiveIndicator();
window.addEventListener('hashchange', render);
if (!location.hash) history.replaceState(null, '', '#/jobs');
render();
showVersion();
