// #/webhooks: the subscriptions to job events (admins only), each with the health of its latest
// deliveries; delete. #/webhooks?new=1 opens the form that creates one; the new subscription's
// secret, answered by the gateway this once, is shown once on the list it goes back to.

import { api, seg } from '../api.js';
import { eventBadge, healthCounts, lastAttemptSummary } from '../deliveries.js';
import { h, replace } from '../dom.js';
import { fieldErrors } from '../field-errors.js';
import { formatTime } from '../format.js';
import { STALE, every, latestReads } from '../live.js';
import { route, scheduleLink, webhookLink } from '../router.js';
import { confirmButton, copyText, errorBox } from '../widgets.js';

const REFRESH_MS = 3000;
// The health column counts this many of each subscription's latest deliveries.
const HEALTH_DELIVERIES = 20;
const EVENTS = ['started', 'finished', 'failed', 'cancelled'];
const DEFAULT_EVENTS = new Set(['finished', 'failed', 'cancelled']);
const MIN_SECRET_CHARS = 16;
const MAX_SECRET_CHARS = 255;

// The subscription just made, with its secret: kept in memory for the one list that shows it.
let created = null;

/** The jobs a subscription wants: of one function, of one schedule, or all. */
export function filterOf(webhook) {
  const parts = [];
  if (webhook.function) {
    parts.push(['function ', h('a', { href: route(`functions/${encodeURIComponent(webhook.function)}`) },
      webhook.function)]);
  }
  if (webhook.schedule) {
    parts.push(['schedule ', h('a', { href: scheduleLink(webhook.schedule) }, webhook.schedule)]);
  }
  if (!parts.length) return h('span', { class: 'muted' }, 'all jobs');
  return parts.map((part, i) => [i ? ' and ' : '', part]);
}

export function eventList(webhook) {
  return h('span', { class: 'event-list' }, webhook.events.map(eventBadge));
}

/** Delete (asks once more); `deleted(done)` runs after it, `failed(error)` shows why not. */
export function deleteButton(webhook, { armed, deleted, failed }) {
  return confirmButton({
    label: 'Delete', confirm: 'Confirm delete', armed, id: `delete:${webhook.id}`,
    className: 'danger',
    action: async () => {
      let done = false;
      try {
        await api(`webhooks/${seg(webhook.id)}`, { method: 'DELETE' });
        done = true;
        failed(null);
      } catch (error) {
        failed(error);
      }
      await deleted(done);
    },
  });
}

export async function mount(root, { params }) {
  const highlight = params.get('highlight');
  const armed = new Map();
  const notice = h('div', { class: 'notice-area' });
  const body = h('div', { class: 'table-wrap' });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Webhooks'),
    params.has('new') ? null
      : h('a', { class: 'button primary', href: route('webhooks', { new: 1 }) }, 'New webhook')));
  if (created && created.id === highlight) root.append(secretCard(created));
  created = null;
  if (params.has('new')) root.append(await createForm());
  root.append(notice, h('section', { class: 'card flush' }, body));

  const failed = (error) => replace(notice, error ? errorBox(error) : null);
  const read = latestReads();

  async function load() {
    let answer;
    try {
      answer = await read(async () => {
        const webhooks = await api('webhooks');
        // One subscription's deliveries unreadable (deleted meanwhile): its health unknown.
        const health = await Promise.all(webhooks.map((w) => api(
          `webhooks/${seg(w.id)}/deliveries`, { query: { limit: HEALTH_DELIVERIES } },
        ).catch(() => null)));
        return { webhooks, health };
      });
    } catch (error) {
      replace(body, errorBox(error));
      return;
    }
    if (answer === STALE) return; // a later read (after an action) answers instead
    const { webhooks, health } = answer;
    if (!webhooks.length) {
      replace(body, h('p', { class: 'empty' }, 'No webhooks yet. ',
        h('a', { href: route('webhooks', { new: 1 }) }, 'Subscribe a URL to job events'), '.'));
      return;
    }
    const now = Date.now();
    replace(body, h('table', { class: 'webhooks-table' },
      h('thead', {}, h('tr', {}, ['URL', 'Events', 'Jobs', 'Created', 'Latest deliveries',
        'Last attempt', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, webhooks.map((w, i) => h('tr', {
        'data-webhook-id': w.id, 'data-url': w.url, class: w.id === highlight ? 'highlight' : null,
      },
      h('td', { class: 'webhook-url' }, h('a', { href: webhookLink(w.id), title: w.url }, w.url)),
      h('td', { 'data-cell': 'events' }, eventList(w)),
      h('td', { 'data-cell': 'jobs' }, filterOf(w)),
      h('td', { class: 'time', 'data-cell': 'created' }, formatTime(w.createdAt),
        h('div', { class: 'muted small' }, w.createdBy)),
      h('td', { 'data-cell': 'health', title: `of the latest ${HEALTH_DELIVERIES} deliveries` },
        health[i] ? healthCounts(health[i]) : h('span', { class: 'muted' }, 'unknown')),
      h('td', { 'data-cell': 'last-attempt' },
        health[i] ? lastAttemptSummary(health[i], now) : '—'),
      h('td', { class: 'actions' }, deleteButton(w, { armed, deleted: load, failed })))))));
  }

  await load();
  const timer = every(load, REFRESH_MS);
  return () => timer.close();
}

/** The secret the gateway answered once: copy it now, or never see it again. */
function secretCard(webhook) {
  const status = h('span', { class: 'muted', 'data-copy-status': '' });
  const card = h('section', { class: 'card secret-card', id: 'new-secret' },
    h('header', { class: 'card-head' }, h('h2', {}, 'Webhook created: its secret'),
      h('button', {
        type: 'button', class: 'button small ghost', onclick: () => card.remove(),
      }, 'Done')),
    h('p', { class: 'secret-note' }, h('strong', {}, 'Copy it now: it is not shown again. '),
      'Each delivery to ', h('code', {}, webhook.url), ' is signed with it (',
      h('code', {}, 'X-Sparkgate-Signature'), ', HMAC-SHA256); the receiver needs it to verify '
      + 'them. Lost, it cannot be read back: delete the webhook and create another.'),
    h('div', { class: 'secret-row' },
      h('code', { class: 'secret', id: 'webhook-secret' }, webhook.secret),
      h('button', {
        type: 'button', class: 'button small', 'data-action': 'copy-secret',
        onclick: async () => {
          status.textContent = await copyText(webhook.secret) ? 'Copied.' : 'Select it and copy it.';
        },
      }, 'Copy'), status));
  return card;
}

async function createForm() {
  const [functions, schedules] = await Promise.all([api('functions'), api('schedules')]);
  const fields = new Map(); // name -> {control, error}
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });

  const control = (name, element) => Object.assign(element, { id: `webhook-${name}`, name });
  const url = control('url', h('input', {
    type: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://hooks.example.com/sparkgate',
  }));
  const boxes = EVENTS.map((event) => h('input', {
    type: 'checkbox', id: `webhook-event-${event}`, name: 'events', value: event,
    checked: DEFAULT_EVENTS.has(event),
  }));
  const events = h('div', { class: 'checkboxes', id: 'webhook-events', role: 'group' },
    boxes.map((box) => h('label', { class: 'inline', for: box.id }, box, box.value)));
  const secret = control('secret', h('input', {
    type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'left empty: one is made',
  }));
  const fn = control('function', h('select', {}, h('option', { value: '' }, 'any function'),
    functions.map((f) => h('option', { value: f.name }, f.name))));
  const schedule = control('schedule', h('select', {}, h('option', { value: '' }, 'any schedule'),
    schedules.map((s) => h('option', { value: s.name }, s.name))));

  const row = (key, label, element, hint, wide = false) => {
    const error = h('div', { class: 'field-error', id: `webhook-${key}-error`, 'data-error-for': key });
    element.setAttribute('aria-describedby', error.id);
    fields.set(key, { control: element, error });
    // A group of checkboxes is named by its caption; a single control is the label's.
    const group = element.getAttribute('role') === 'group';
    const caption = group ? h('span', { class: 'label', id: `webhook-${key}-label` }, label)
      : h('label', { for: element.id }, label);
    if (group) element.setAttribute('aria-labelledby', caption.id);
    return h('div', { class: `field${wide ? ' wide' : ''}`, 'data-field': key },
      caption, element, hint ? h('div', { class: 'hint' }, hint) : null, error);
  };
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Create');
  const form = h('form', { class: 'run-form webhook-form', novalidate: true },
    h('div', { class: 'fields' },
      row('url', 'URL', url, 'where each delivery is POSTed: http:// or https://', true),
      row('events', 'Events', events, 'the job events to deliver'),
      row('secret', 'Secret', secret,
        `${MIN_SECRET_CHARS} to ${MAX_SECRET_CHARS} characters; signs each delivery`),
      row('function', 'Only the jobs of the function', fn, null),
      row('schedule', 'Only the jobs of the schedule', schedule, null)),
    formError,
    h('div', { class: 'actions' }, submit, h('a', { class: 'button', href: '#/webhooks' }, 'Cancel')));

  const { show: showError, clear: clearErrors, showApi } = fieldErrors(fields, formError);

  // Checked here: what is missing. What the URL may be is the gateway's to say.
  const read = () => {
    const body = { url: url.value.trim(), events: boxes.filter((b) => b.checked).map((b) => b.value) };
    if (!body.url) showError('url', 'required');
    if (!body.events.length) showError('events', 'pick at least one event');
    if (secret.value) {
      if (secret.value.length < MIN_SECRET_CHARS || secret.value.length > MAX_SECRET_CHARS) {
        showError('secret', `${MIN_SECRET_CHARS} to ${MAX_SECRET_CHARS} characters, or left empty`);
      }
      body.secret = secret.value;
    }
    if (fn.value) body.function = fn.value;
    if (schedule.value) body.schedule = schedule.value;
    return body;
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const body = read();
    if (!form.querySelector('[aria-invalid="true"]')) {
      submit.disabled = true;
      try {
        created = await api('webhooks', { method: 'POST', body });
        location.hash = route('webhooks', { highlight: created.id });
        return;
      } catch (error) {
        showApi(error);
      } finally {
        submit.disabled = false;
      }
    }
    const invalid = form.querySelector('[aria-invalid="true"]');
    (invalid?.matches('input, select') ? invalid : invalid?.querySelector('input'))?.focus();
  });
  return h('section', { class: 'card', id: 'new-webhook' },
    h('header', { class: 'card-head' }, h('h2', {}, 'New webhook')), form);
}
