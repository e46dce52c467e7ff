// #/schedules: the schedules (a function run at the times of a cron expression), each with its
// next run, state and last refusal; run now, pause/resume, delete. #/schedules?new=1 opens the
// form that creates one. The actions are shared with #/schedules/<name> (schedule.js).

import { api, seg } from '../api.js';
import { h, replace } from '../dom.js';
import { fieldErrors } from '../field-errors.js';
import { formatAgo, formatIn, formatTime } from '../format.js';
import { STALE, every, latestReads } from '../live.js';
import { jobLink, route, scheduleLink } from '../router.js';
import { describe } from '../schema-form.js';
import { confirmButton, errorBox, stateBadge } from '../widgets.js';

const REFRESH_MS = 3000;
// The fields of a schedule definition, as PUT takes them (the whole of it).
const FIELDS = ['function', 'arguments', 'context', 'cron', 'timezone', 'enabled', 'missed',
  'overlap'];
const HINTS = {
  missed: 'ticks that fell while no gateway ran: once = run the latest of them, skip = none',
  overlap: 'a tick while the last run still goes: skip it, queue it until that run ends, '
    + 'or cancel that run',
};

export function stateOf(schedule) {
  return schedule.enabled ? 'enabled' : 'paused';
}

/** The next run, ahead and as a time (the browser's), or why there is none. */
export function nextRun(schedule, now = Date.now()) {
  const next = schedule.nextRuns?.[0];
  if (!schedule.enabled) return h('span', { class: 'muted' }, 'none while paused');
  if (next === undefined) return h('span', { class: 'muted' }, 'none');
  return h('span', { class: 'next-run', title: "in this browser's time zone" },
    h('span', { class: 'next-in' }, formatIn(next, now)),
    h('span', { class: 'next-at muted' }, formatTime(next, { date: 'always' })));
}

/**
 * Run now (then the new job's page), pause or resume (a PUT of the whole definition with
 * `enabled` switched), delete (asks once more). `changed(done)` runs after a pause or resume,
 * `deleted(done)` after a delete, whether they were done or not; `failed(error)` shows why not.
 */
export function scheduleActions(schedule, { armed, changed, failed, deleted = changed }) {
  const path = `schedules/${seg(schedule.name)}`;
  const act = (fn, after) => async (event) => {
    const button = event?.target; // confirmButton disables its own
    if (button) button.disabled = true;
    let done = false;
    try {
      await fn();
      done = true;
      failed(null);
    } catch (error) {
      failed(error);
    } finally {
      if (button) button.disabled = false;
    }
    await after(done);
  };
  const runNow = async (event) => {
    event.target.disabled = true;
    try {
      const created = await api(`${path}/jobs`, { method: 'POST' });
      location.hash = jobLink(created.id);
    } catch (error) {
      failed(error);
      event.target.disabled = false;
    }
  };
  const body = Object.fromEntries(FIELDS.map((f) => [f, schedule[f]]));
  const toggle = schedule.enabled ? 'Pause' : 'Resume';
  return [
    h('button', { type: 'button', class: 'button small', 'data-action': 'run-now', onclick: runNow },
      'Run now'),
    h('button', {
      type: 'button', class: 'button small', 'data-action': toggle.toLowerCase(),
      onclick: act(() => api(path, { method: 'PUT', body: { ...body, enabled: !schedule.enabled } }),
        changed),
    }, toggle),
    confirmButton({
      label: 'Delete', confirm: 'Confirm delete', armed, id: `delete:${schedule.name}`,
      className: 'danger', action: act(() => api(path, { method: 'DELETE' }), deleted),
    }),
  ];
}

function lastError(schedule, now) {
  const error = schedule.lastError;
  if (!error) return h('span', { class: 'muted' }, '—');
  return h('span', {
    class: 'error-text', title: `${error.message} (${formatTime(error.time, { date: 'always' })})`,
  }, error.message, h('span', { class: 'muted' }, ` · ${formatAgo(error.time, now)}`));
}

export async function mount(root, { params }) {
  const highlight = params.get('highlight');
  const armed = new Map();
  const notice = h('div', { class: 'notice-area' });
  const body = h('div', { class: 'table-wrap' });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Schedules'),
    params.has('new') ? null
      : h('a', { class: 'button primary', href: route('schedules', { new: 1 }) }, 'New schedule')));
  if (params.has('new')) root.append(await createForm());
  root.append(notice, h('section', { class: 'card flush' }, body));

  const failed = (error) => replace(notice, error ? errorBox(error) : null);
  const read = latestReads();

  async function load() {
    let schedules;
    try {
      schedules = await read(() => api('schedules'));
    } catch (error) {
      replace(body, errorBox(error));
      return;
    }
    if (schedules === STALE) return; // a later read (after an action) answers instead
    if (!schedules.length) {
      replace(body, h('p', { class: 'empty' }, 'No schedules yet. ',
        h('a', { href: route('schedules', { new: 1 }) }, 'Create one'), '.'));
      return;
    }
    const now = Date.now();
    replace(body, h('table', { class: 'schedules-table' },
      h('thead', {}, h('tr', {}, ['Name', 'Function', 'When', 'State', 'Next run',
        'Overlap · missed', 'Last error', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, schedules.map((s) => h('tr', {
        'data-schedule': s.name, 'data-state': stateOf(s),
        class: s.name === highlight ? 'highlight' : null,
      },
      h('td', {}, h('a', { href: scheduleLink(s.name), class: 'schedule-name' }, s.name)),
      h('td', {}, h('a', { href: route(`functions/${encodeURIComponent(s.function)}`) }, s.function)),
      h('td', { 'data-cell': 'when' }, h('code', {}, s.cron), ' ', h('span', { class: 'muted' }, s.timezone)),
      h('td', {}, stateBadge(stateOf(s))),
      h('td', { class: 'time', 'data-cell': 'next-run' }, nextRun(s, now)),
      h('td', {}, `${s.overlap} · ${s.missed}`),
      h('td', { class: 'ellipsis', 'data-cell': 'last-error' }, lastError(s, now)),
      h('td', { class: 'actions' }, h('span', { class: 'row-actions' },
        scheduleActions(s, { armed, changed: load, failed }))))))));
  }

  await load();
  const timer = every(load, REFRESH_MS);
  return () => timer.close();
}

/** The create form's choices and hints, as the API's own schema states them. */
async function definitionSchema() {
  const document = await api('openapi.json');
  return document.paths['/v2/api/schedules'].post.requestBody.content['application/json']
    .schema.properties;
}

function signature(fn) {
  const schema = fn?.argumentsSchema;
  if (!fn) return '';
  if (!schema) return `${fn.name}(any JSON arguments)`;
  const required = new Set(schema.required || []);
  return `${fn.name}(${Object.entries(schema.properties || {}).map(([name, arg]) =>
    `${name}: ${describe(arg).description}${required.has(name) ? '' : '?'}`).join(', ')})`;
}

/** The arguments to start from: the function's defaults. */
function defaultArguments(fn) {
  const props = fn?.argumentsSchema?.properties || {};
  return Object.fromEntries(Object.entries(props).filter(([, arg]) => 'default' in arg)
    .map(([name, arg]) => [name, arg.default]));
}

async function createForm() {
  const [functions, contexts, schema] = await Promise.all([
    api('functions'), api('contexts'), definitionSchema(),
  ]);
  const fields = new Map(); // name -> {control, error}
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const byName = new Map(functions.map((f) => [f.name, f]));

  const control = (name, element) => Object.assign(element, { id: `schedule-${name}`, name });
  const name = control('name', h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' }));
  const fn = control('function', h('select', {}, functions.length
    ? functions.map((f) => h('option', { value: f.name }, f.name))
    : h('option', { value: '' }, 'no function is deployed')));
  const context = control('context', h('select', {},
    h('option', { value: '' }, "the function's default"),
    contexts.map((c) => h('option', { value: c.name }, c.name))));
  const args = control('arguments', h('textarea', {
    rows: 3, spellcheck: 'false', class: 'code', placeholder: '{"name": "value"}',
  }));
  const cron = control('cron', h('input', {
    type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '0 3 * * *',
  }));
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  const timezone = control('timezone', h('input', {
    type: 'text', autocomplete: 'off', spellcheck: 'false', list: 'schedule-timezones',
    value: schema.timezone.default,
  }));
  const choice = (field) => control(field, h('select', {}, schema[field].enum.map((value) =>
    h('option', { value, selected: value === schema[field].default }, value))));
  const missed = choice('missed');
  const overlap = choice('overlap');
  const enabled = control('enabled', h('input', { type: 'checkbox', checked: schema.enabled.default }));

  const signatureHint = h('div', { class: 'hint mono', 'data-hint': 'signature' });
  let argsEdited = false;
  args.addEventListener('input', () => { argsEdited = true; });
  const pick = () => {
    const picked = byName.get(fn.value);
    signatureHint.textContent = signature(picked);
    if (!argsEdited) args.value = JSON.stringify(defaultArguments(picked));
  };
  fn.addEventListener('change', pick);
  pick();

  const row = (key, label, element, hint, wide = false) => {
    const error = h('div', { class: 'field-error', id: `schedule-${key}-error`, 'data-error-for': key });
    element.setAttribute('aria-describedby', error.id);
    fields.set(key, { control: element, error });
    return h('div', { class: `field${wide ? ' wide' : ''}`, 'data-field': key },
      h('label', { for: element.id }, label), element,
      typeof hint === 'string' ? h('div', { class: 'hint' }, hint) : hint, error);
  };
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Create');
  const form = h('form', { class: 'run-form schedule-form', novalidate: true },
    h('div', { class: 'fields' },
      row('name', 'Name', name, 'letters, digits, _ . -'),
      row('function', 'Function', fn, signatureHint),
      row('context', 'Context', context, null),
      row('cron', 'Cron', cron, schema.cron.description),
      row('timezone', 'Time zone', timezone, schema.timezone.description),
      row('missed', 'Missed ticks', missed, HINTS.missed),
      row('overlap', 'Overlap', overlap, HINTS.overlap),
      row('enabled', 'Enabled', enabled, 'unticked: saved paused, no jobs until resumed'),
      row('arguments', 'Arguments (JSON object)', args, schema.arguments.description, true)),
    h('datalist', { id: 'schedule-timezones' }, zones.map((zone) => h('option', { value: zone }))),
    formError,
    h('div', { class: 'actions' }, submit, h('a', { class: 'button', href: '#/schedules' }, 'Cancel')));

  const { show: showError, clear: clearErrors, showApi } = fieldErrors(fields, formError);

  // Checked here first: what the gateway would refuse for certain.
  const read = () => {
    const required = { name: name.value.trim(), function: fn.value, cron: cron.value.trim() };
    for (const [key, value] of Object.entries(required)) {
      if (!value) showError(key, 'required');
    }
    let parsed = {};
    if (args.value.trim()) {
      try {
        parsed = JSON.parse(args.value);
      } catch (error) {
        showError('arguments', `expected a JSON object: ${error.message}`);
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        showError('arguments', 'expected a JSON object, like {"x": 1}');
      }
    }
    return {
      ...required, arguments: parsed, timezone: timezone.value.trim() || schema.timezone.default,
      missed: missed.value, overlap: overlap.value, enabled: enabled.checked,
      ...(context.value ? { context: context.value } : {}),
    };
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const body = read();
    if (!form.querySelector('[aria-invalid="true"]')) {
      submit.disabled = true;
      try {
        const created = await api('schedules', { method: 'POST', body });
        location.hash = route('schedules', { highlight: created.name });
        return;
      } catch (error) {
        showApi(error, { conflict: 'name', notFound: 'function' });
      } finally {
        submit.disabled = false;
      }
    }
    form.querySelector('[aria-invalid="true"]')?.focus();
  });
  return h('section', { class: 'card', id: 'new-schedule' },
    h('header', { class: 'card-head' }, h('h2', {}, 'New schedule')), form);
}
