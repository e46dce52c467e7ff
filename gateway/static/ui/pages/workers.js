// #/workers: the live workers (as they announce themselves), what each runs, and stop (drain).

import { api, seg } from '../api.js';
import { h, replace } from '../dom.js';
import { formatAgo, formatDuration, formatTime, shortId } from '../format.js';
import { every } from '../live.js';
import { jobLink, route } from '../router.js';
import { confirmButton, errorBox, runningJobs, stateBadge } from '../widgets.js';

const REFRESH_MS = 2000;

export async function mount(root, { params }) {
  const highlight = params.get('highlight');
  const armed = new Map();
  const notice = h('div', { class: 'notice-area' });
  const body = h('div', { class: 'table-wrap' });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Workers'),
    h('span', { class: 'muted' }, 'Live workers, as each announces itself every few seconds')),
  notice, h('section', { class: 'card flush' }, body));

  async function load() {
    let workers;
    try {
      workers = await api('workers');
    } catch (error) {
      replace(body, errorBox(error));
      return;
    }
    if (!workers.length) {
      replace(body, h('p', { class: 'empty' },
        'No live worker. The supervisor starts one when a job is queued for a context.'));
      return;
    }
    const now = Date.now();
    replace(body, h('table', { class: 'workers-table' },
      h('thead', {}, h('tr', {}, ['Worker', 'Context', 'State', 'Address', 'Started', '#Uptime',
        '#Heartbeat', 'Running', '#Done', '#Slots', ''].map((t) => h('th', {
        scope: 'col', class: t.startsWith('#') ? 'num' : null,
      }, t.replace('#', ''))))),
      h('tbody', {}, workers.map((w) => h('tr', {
        'data-worker': w.name, class: w.name === highlight ? 'highlight' : null,
      },
      h('td', { class: 'mono' }, h('a', { href: route('jobs', { worker: w.name }), title: 'Jobs this worker took' }, w.name)),
      h('td', {}, h('a', { href: '#/contexts' }, w.context),
        w.environment ? h('div', { class: 'muted small mono', title: 'The Python environment of its artifacts\' requirements' }, `env ${w.environment}`) : null),
      h('td', {}, stateBadge(w.state), w.drainReason ? h('div', { class: 'muted small' }, w.drainReason) : null),
      h('td', { class: 'mono' }, w.address),
      h('td', { class: 'time' }, formatTime(w.startedAt)),
      h('td', { class: 'num' }, formatDuration(w.uptimeMs)),
      h('td', { class: 'num' }, formatAgo(w.heartbeatAt, now)),
      h('td', { 'data-cell': 'running' },
        runningJobs(w) ?? h('span', { class: 'muted' }, 'idle')),
      h('td', { class: 'num' }, w.jobsDone),
      h('td', { class: 'num' }, `${w.runningJobCount}/${w.initInfo?.maxJobs ?? '?'}`),
      h('td', { class: 'actions' }, w.state === 'running' ? confirmButton({
        label: 'Stop', confirm: 'Confirm stop', armed, id: w.name, className: 'danger',
        action: async () => {
          try {
            await api(`workers/${seg(w.name)}`, { method: 'DELETE' });
            replace(notice, null);
          } catch (error) {
            replace(notice, errorBox(error));
          }
          await load();
        },
      }) : null))))));
  }

  await load();
  const timer = every(load, REFRESH_MS);
  return () => timer.close();
}
