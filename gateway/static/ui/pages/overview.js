// #/overview: jobs per minute by status and run-time percentiles over a recent window
// (GET /v2/api/stats), as charts, refreshed every few seconds.

import { api } from '../api.js';
import { h, replace } from '../dom.js';
import { durationBars, lines, responsive, stackedBars } from '../charts.js';
import { formatCount, formatDuration } from '../format.js';
import { every } from '../live.js';
import { route } from '../router.js';
import { errorBox, section } from '../widgets.js';

const WINDOWS = [['15min', '15 min'], ['1h', '1 hour'], ['6h', '6 hours'], ['24h', '24 hours']];
const REFRESH_MS = 10_000;

export async function mount(root, { params }) {
  const chosen = WINDOWS.some(([value]) => value === params.get('window')) ? params.get('window') : '1h';
  const content = h('div', { class: 'overview' });
  const picker = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Window' },
    WINDOWS.map(([value, label]) => h('a', {
      href: route('overview', { window: value }), class: value === chosen ? 'on' : '',
      'aria-pressed': value === chosen ? 'true' : 'false',
    }, label)));
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), picker), content);

  async function load() {
    let stats;
    try {
      stats = await api('stats', { query: { window: chosen } });
    } catch (error) {
      replace(content, errorBox(error));
      return;
    }
    render(stats);
  }

  function render(stats) {
    const per = stats.bucketMs === 60_000 ? 'minute' : formatDuration(stats.bucketMs);
    const t = stats.totals;
    const r = stats.runTime;
    const tile = (label, value, href, cls = '') => h('a', { class: `tile ${cls}`, href },
      h('span', { class: 'tile-value' }, value), h('span', { class: 'tile-label' }, label));
    replace(content,
      h('div', { class: 'tiles' },
        tile('queued now', formatCount(stats.active.queued), route('jobs', { status: 'queued' }), 'status-queued'),
        tile('running now', formatCount(stats.active.started + stats.active.cancelling), route('jobs', { status: ['started', 'cancelling'] }), 'status-started'),
        tile('submitted', formatCount(t.submitted), '#/jobs'),
        tile('finished', formatCount(t.finished), route('jobs', { status: 'finished' }), 'status-finished'),
        tile('failed', formatCount(t.failed), route('jobs', { status: 'failed' }), 'status-failed'),
        tile('cancelled', formatCount(t.cancelled), route('jobs', { status: 'cancelled' }), 'status-cancelled'),
        tile('run time p50', formatDuration(r.p50), '#/jobs'),
        tile('run time p95', formatDuration(r.p95), '#/jobs')),
      h('div', { class: 'grid two charts' },
        section(`Jobs per ${per} by status`, responsive((width) => stackedBars({
          width,
          buckets: stats.buckets,
          bucketMs: stats.bucketMs,
          label: `Jobs ended per ${per} by status, and jobs submitted`,
          series: [
            { key: 'finished', label: 'finished', cls: 'status-finished' },
            { key: 'failed', label: 'failed', cls: 'status-failed' },
            { key: 'cancelled', label: 'cancelled', cls: 'status-cancelled' },
          ],
          line: { key: 'submitted', label: 'submitted', cls: 'submitted' },
        })), { id: 'chart-jobs' }),
        section(`Run time per ${per}`, responsive((width) => lines({
          width,
          buckets: stats.buckets,
          bucketMs: stats.bucketMs,
          label: `Run time percentiles per ${per}`,
          series: [
            { label: 'p50', cls: 'pct-p50', value: (b) => b.runTime.p50 },
            { label: 'p95', cls: 'pct-p95', value: (b) => b.runTime.p95 },
          ],
        })), { id: 'chart-durations' })),
      section(`Run time percentiles over the window (${formatCount(r.count)} jobs ran)`, responsive((width) => durationBars({
        width,
        label: 'Run time percentiles over the window',
        rows: [['p50', r.p50], ['p90', r.p90], ['p95', r.p95], ['p99', r.p99], ['max', r.max]],
      })), { id: 'chart-percentiles' }),
      h('p', { class: 'muted small' },
        'Jobs are counted in the interval they ended in (submitted: created in); run time is from start to end. ',
        `Jobs created more than ${formatDuration(stats.runLookbackMs)} before the window are left out.`));
  }

  await load();
  const timer = every(load, REFRESH_MS);
  return () => timer.close();
}
