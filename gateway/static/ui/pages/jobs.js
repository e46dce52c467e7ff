// #/jobs: the jobs, newest first, live; filters by status, function, context (and worker,
// schedule); search by id or externalId; pages of 25 with "newer"/"older"; cancel.
//
// Pagination asks for one job more than it shows to know whether an older page exists, and
// never for a total: counting every match is a scan of all of them (a million rows), while a
// page is a short range of a (filter, create_time) index however many jobs there are.

import { api, seg } from '../api.js';
import { h, replace } from '../dom.js';
import {
  STATUSES, UUID, formatDuration, formatTime, isTerminal, runTime, shortId,
} from '../format.js';
import { coalesce, follow } from '../live.js';
import { jobLink, route } from '../router.js';
import { confirmButton, errorBox, progressBar, statusBadge } from '../widgets.js';

export const PAGE_SIZE = 25;

function filtersFrom(params) {
  return {
    status: params.getAll('status').flatMap((s) => s.split(',')).filter(Boolean),
    function: params.get('function') || '',
    context: params.get('context') || '',
    externalId: params.get('externalId') || '',
    worker: params.get('worker') || '',
    schedule: params.get('schedule') || '',
    offset: Math.max(0, Number.parseInt(params.get('offset') || '0', 10) || 0),
  };
}

function go(filters, changes) {
  const next = { ...filters, offset: '', ...changes };
  if (!next.offset) next.offset = '';
  location.hash = route('jobs', next);
}

export async function mount(root, { params }) {
  const filters = filtersFrom(params);
  const state = { jobs: [], more: false, error: null, notice: null, armed: new Map() };
  const tbody = h('tbody');
  const pager = h('div', { class: 'pager' });
  const notice = h('div', { class: 'notice-area' });
  const body = h('div', { class: 'table-wrap' });

  root.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'),
      h('a', { class: 'button primary', href: '#/functions' }, 'Run a function')),
    await filterBar(filters),
    notice,
    h('section', { class: 'card flush' }, body, pager),
  );

  const table = h('table', { class: 'jobs-table' },
    h('thead', {}, h('tr', {},
      ['Job', 'Status', 'Function', 'Context', 'External id', 'Created', 'Started', 'Ended',
        '#Duration', 'Progress', ''].map((title) => h('th', {
        scope: 'col', class: title.startsWith('#') ? 'num' : null,
      }, title.replace('#', ''))))),
    tbody);

  async function load() {
    const query = {
      limit: PAGE_SIZE + 1, offset: filters.offset, status: filters.status,
      function: filters.function, context: filters.context, externalId: filters.externalId,
      schedule: filters.schedule,
    };
    const path = filters.worker ? `workers/${seg(filters.worker)}/jobs` : 'jobs';
    try {
      const jobs = await api(path, { query });
      state.more = jobs.length > PAGE_SIZE;
      state.jobs = jobs.slice(0, PAGE_SIZE);
      state.error = null;
    } catch (error) {
      state.error = error;
    }
    render();
  }

  function render() {
    if (state.error) {
      replace(body, errorBox(state.error));
    } else if (!state.jobs.length) {
      replace(body, h('p', { class: 'empty' }, filters.offset
        ? 'No older jobs.'
        : anyFilter(filters) ? 'No job matches these filters.'
          : ['No jobs yet. ', h('a', { href: '#/functions' }, 'Run a function'), '.']));
    } else {
      replace(tbody, state.jobs.map((job) => row(job)));
      if (!body.contains(table)) replace(body, table);
    }
    renderPager();
    replace(notice, state.notice ? errorBox(state.notice) : null);
  }

  function row(job) {
    const cancel = isTerminal(job.status) || job.status === 'cancelling' ? null : confirmButton({
      label: 'Cancel', confirm: 'Confirm cancel', armed: state.armed, id: job.jobId,
      className: 'danger',
      action: async () => {
        try {
          await api(`jobs/${seg(job.jobId)}`, { method: 'DELETE' });
          state.notice = null;
        } catch (error) {
          state.notice = error;
        }
        await load();
      },
    });
    return h('tr', { 'data-job-id': job.jobId, 'data-status': job.status },
      h('td', { class: 'mono' }, h('a', { href: jobLink(job.jobId), title: job.jobId },
        shortId(job.jobId))),
      h('td', {}, statusBadge(job.status)),
      h('td', {}, h('a', { href: route('jobs', { function: job.function }) }, job.function)),
      h('td', {}, h('a', { href: route('jobs', { context: job.context }) }, job.context)),
      h('td', { class: 'ellipsis', title: job.externalId || '' }, job.externalId || ''),
      h('td', { class: 'time', title: formatTime(job.createTime, { date: 'always', millis: true }) },
        formatTime(job.createTime)),
      h('td', { class: 'time' }, job.startTime ? formatTime(job.startTime) : '—'),
      h('td', { class: 'time' }, job.endTime ? formatTime(job.endTime) : '—'),
      h('td', { class: 'num', 'data-cell': 'duration' }, formatDuration(runTime(job))),
      h('td', { 'data-cell': 'progress' }, progressBar(job.progress, job.status)),
      h('td', { class: 'actions' }, cancel));
  }

  function renderPager() {
    const first = filters.offset + 1;
    const last = filters.offset + state.jobs.length;
    replace(pager,
      h('span', { class: 'muted' }, state.jobs.length ? `Jobs ${first}–${last}, newest first` : ''),
      h('span', { class: 'pager-buttons' },
        h('button', {
          type: 'button', class: 'button small', disabled: filters.offset === 0,
          onclick: () => go(filters, { offset: Math.max(0, filters.offset - PAGE_SIZE) }),
        }, '← Newer'),
        h('button', {
          type: 'button', class: 'button small', disabled: !state.more,
          onclick: () => go(filters, { offset: filters.offset + PAGE_SIZE }),
        }, 'Older →')));
  }

  const reloadSoon = coalesce(load, 300);
  function onEvent(event) {
    const shown = state.jobs.find((job) => job.jobId === event.id);
    if (event.event === 'progress') {
      if (!shown) return;
      shown.progress = event.progress;
      const cell = tbody.querySelector(`tr[data-job-id="${CSS.escape(event.id)}"] [data-cell=progress]`);
      if (cell) replace(cell, progressBar(shown.progress, shown.status));
    } else if (event.event !== 'logs' && (shown || filters.offset === 0)) {
      reloadSoon();
    }
  }

  await load();
  const live = follow({
    query: {
      function: filters.function, context: filters.context, withLogs: 'false',
    },
    onEvent,
    refresh: load,
    pollMs: 2000,
  });
  const ticker = setInterval(() => {
    for (const job of state.jobs) {
      if (isTerminal(job.status) || !job.startTime) continue;
      const cell = tbody.querySelector(`tr[data-job-id="${CSS.escape(job.jobId)}"] [data-cell=duration]`);
      if (cell) cell.textContent = formatDuration(runTime(job));
    }
  }, 1000);
  return () => {
    live.close();
    reloadSoon.cancel();
    clearInterval(ticker);
  };
}

function anyFilter(filters) {
  return filters.status.length || filters.function || filters.context || filters.externalId
    || filters.worker || filters.schedule;
}

// A filter set by a link from another page (a worker's, a schedule's jobs), shown with a ×.
function removableChip(filters, name) {
  if (!filters[name]) return null;
  return h('span', { class: 'chip on', 'data-filter-chip': name }, `${name} ${filters[name]} `,
    h('a', { href: route('jobs', { ...filters, [name]: '', offset: '' }), title: 'Remove' }, '×'));
}

async function filterBar(filters) {
  const [functions, contexts] = await Promise.all([
    api('functions').catch(() => []),
    api('contexts').catch(() => []),
  ]);
  const chips = STATUSES.map((status) => {
    const on = filters.status.includes(status);
    const next = on ? filters.status.filter((s) => s !== status) : [...filters.status, status];
    return h('a', {
      class: `chip status-${status} ${on ? 'on' : ''}`, href: route('jobs', { ...filters, status: next, offset: '' }),
      'aria-pressed': on ? 'true' : 'false', 'data-status-filter': status,
    }, status);
  });
  const select = (name, label, values) => h('label', { class: 'inline' }, label,
    h('select', {
      name, 'data-filter': name,
      onchange: (event) => go(filters, { [name]: event.target.value }),
    },
    h('option', { value: '' }, 'all'),
    values.map((value) => h('option', { value, selected: value === filters[name] }, value)),
    filters[name] && !values.includes(filters[name])
      ? h('option', { value: filters[name], selected: true }, filters[name]) : null));
  const search = h('input', {
    type: 'search', name: 'q', placeholder: 'job id or external id', value: filters.externalId,
    'aria-label': 'Search by job id or external id', spellcheck: 'false',
  });
  const searchError = h('span', { class: 'field-error inline-error' });
  const form = h('form', {
    class: 'search', role: 'search',
    onsubmit: async (event) => {
      event.preventDefault();
      const text = search.value.trim();
      searchError.textContent = '';
      if (UUID.test(text)) {
        try {
          await api(`jobs/${seg(text)}`);
          location.hash = jobLink(text);
          return;
        } catch (error) {
          if (error.status !== 404) {
            searchError.textContent = error.message;
            return;
          }
          // Not a job id: it may still be someone's external id.
        }
      }
      go(filters, { externalId: text });
    },
  }, search, h('button', { type: 'submit', class: 'button' }, 'Search'), searchError);
  return h('div', { class: 'filters card' },
    h('div', { class: 'chips', role: 'group', 'aria-label': 'Status' }, chips),
    h('div', { class: 'filter-row' },
      select('function', 'Function', functions.map((f) => f.name)),
      select('context', 'Context', contexts.map((c) => c.name)),
      removableChip(filters, 'worker'),
      removableChip(filters, 'schedule'),
      form,
      anyFilter(filters) ? h('a', { href: '#/jobs', class: 'clear' }, 'Clear filters') : null));
}
