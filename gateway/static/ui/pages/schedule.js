// #/schedules/<name>: one schedule — its definition, next runs, the tick waiting for an earlier
// run, its last refusal, and its latest jobs (all of them: the jobs page filtered by it); run
// now, pause/resume, delete.

import { api, seg } from '../api.js';
import { h, replace } from '../dom.js';
import { formatDuration, formatIn, formatTime, runTime, shortId } from '../format.js';
import { STALE, every, latestReads } from '../live.js';
import { jobLink, route } from '../router.js';
import { errorBox, facts, jsonBlock, section, stateBadge, statusBadge } from '../widgets.js';
import { scheduleActions, stateOf } from './schedules.js';

const REFRESH_MS = 2000;

export async function mount(root, { parts }) {
  const name = parts[1];
  const armed = new Map();
  const badge = h('span', { class: 'head-status' });
  const actions = h('div', { class: 'head-actions' });
  const notice = h('div', { class: 'notice-area' });
  const lastError = h('div');
  const definition = h('div');
  const upcoming = h('div');
  const args = h('div');
  const jobs = h('div', { class: 'table-wrap' });
  const allJobs = h('a', { href: route('jobs', { schedule: name }), 'data-link': 'all-jobs' },
    'All jobs of this schedule');
  const body = h('div', { class: 'page-body' },
    lastError,
    h('div', { class: 'grid two' }, section('Definition', definition), section('Next runs', upcoming)),
    section('Arguments', args),
    section('Last jobs', jobs, { tools: allJobs, id: 'last-jobs' }));
  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/schedules', class: 'back' }, '← Schedules'),
        h('h1', {}, 'Schedule ', h('code', { class: 'schedule-id' }, name), ' ', badge)),
      actions),
    notice, body);

  let unread = false; // the notice says the last read failed
  const failed = (error) => {
    unread = false;
    replace(notice, error ? errorBox(error) : null);
  };
  let timer = null;
  const read = latestReads();

  async function load() {
    let schedule;
    try {
      schedule = await read(() => api(`schedules/${seg(name)}`));
    } catch (error) {
      failed(error);
      unread = true;
      if (error.status === 404) {
        body.hidden = true;
        replace(actions, null);
        replace(badge, null);
        timer?.close();
      }
      return;
    }
    if (schedule === STALE) return; // a later read (after an action) answers instead
    if (unread) failed(null);
    unread = false;
    render(schedule);
  }

  function render(schedule) {
    const now = Date.now();
    root.dataset.state = stateOf(schedule);
    replace(badge, stateBadge(stateOf(schedule)));
    replace(actions, scheduleActions(schedule, {
      armed, changed: load, failed,
      deleted: (done) => {
        if (done) location.hash = '#/schedules';
        else load();
      },
    }));
    replace(lastError, schedule.lastError ? h('div', { class: 'error-box', id: 'last-error' },
      h('strong', {}, `Last tick refused ${formatTime(schedule.lastError.time, { date: 'always' })}: `),
      schedule.lastError.message,
      h('div', { class: 'muted small' }, 'Cleared when the schedule is saved again.')) : null);
    replace(definition, facts([
      ['Function', h('a', { href: route(`functions/${encodeURIComponent(schedule.function)}`) },
        schedule.function)],
      ['Context', schedule.context ?? h('span', { class: 'muted' }, "the function's default")],
      ['Cron', h('code', {}, schedule.cron)],
      ['Time zone', schedule.timezone],
      ['State', schedule.enabled ? 'enabled' : 'paused: no jobs until resumed'],
      ['Overlap', schedule.overlap],
      ['Missed', schedule.missed],
      ['Saved by', schedule.savedBy],
      ['Created', formatTime(schedule.createdAt, { date: 'always' })],
      ['Updated', formatTime(schedule.updatedAt, { date: 'always' })],
    ]));
    replace(upcoming,
      schedule.nextRuns.length
        ? h('ol', { class: 'next-runs', id: 'next-runs' }, schedule.nextRuns.map((ms) => h('li', {},
          h('span', { class: 'time' }, formatTime(ms, { date: 'always' })), ' ',
          h('span', { class: 'muted' }, formatIn(ms, now)))))
        : h('p', { class: 'muted', id: 'next-runs' },
          schedule.enabled ? 'None.' : 'None while paused: resume it to run again.'),
      facts([['Waiting', schedule.waiting
        ? `the tick of ${formatTime(schedule.waiting, { date: 'always' })}, until the run before it ends`
        : h('span', { class: 'muted' }, 'no tick')]]));
    replace(args, jsonBlock(schedule.arguments, { id: 'schedule-arguments' }));
    const last = schedule.lastJobs || [];
    replace(jobs, last.length ? h('table', { class: 'jobs-table' },
      h('thead', {}, h('tr', {}, ['Job', 'Status', 'Created', 'Started', 'Ended', '#Duration']
        .map((title) => h('th', { scope: 'col', class: title.startsWith('#') ? 'num' : null },
          title.replace('#', ''))))),
      h('tbody', {}, last.map((job) => h('tr', { 'data-job-id': job.id, 'data-status': job.status },
        h('td', { class: 'mono' }, h('a', { href: jobLink(job.id), title: job.id }, shortId(job.id))),
        h('td', {}, statusBadge(job.status)),
        h('td', { class: 'time' }, formatTime(job.createTime)),
        h('td', { class: 'time' }, job.startTime ? formatTime(job.startTime) : '—'),
        h('td', { class: 'time' }, job.endTime ? formatTime(job.endTime) : '—'),
        h('td', { class: 'num' }, formatDuration(runTime(job, now)))))))
      : h('p', { class: 'empty' }, 'No jobs yet.'));
  }

  await load();
  if (!body.hidden) timer = every(load, REFRESH_MS);
  return () => timer?.close();
}
