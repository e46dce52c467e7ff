// #/webhooks/<id>: one subscription — its URL, events and filter — and its latest deliveries,
// each with every attempt (time, latency, the receiver's status code or the error); delete.

import { api, seg } from '../api.js';
import { deliveriesTable, healthCounts, lastAttemptSummary } from '../deliveries.js';
import { h, replace } from '../dom.js';
import { formatTime } from '../format.js';
import { STALE, every, latestReads } from '../live.js';
import { errorBox, facts, section } from '../widgets.js';
import { deleteButton, eventList, filterOf } from './webhooks.js';

const REFRESH_MS = 2000;
const DELIVERIES = 50;

export async function mount(root, { parts }) {
  const id = parts[1];
  const armed = new Map();
  const actions = h('div', { class: 'head-actions' });
  const notice = h('div', { class: 'notice-area' });
  const subscription = h('div');
  const health = h('div');
  const deliveries = h('div', { class: 'table-wrap' });
  const count = h('span', { class: 'muted', id: 'delivery-count' });
  const body = h('div', { class: 'page-body' },
    h('div', { class: 'grid two' }, section('Subscription', subscription),
      section('Health', health)),
    section('Deliveries', deliveries, { tools: count, id: 'deliveries' }));
  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/webhooks', class: 'back' }, '← Webhooks'),
        h('h1', {}, 'Webhook ', h('code', { class: 'webhook-id' }, id))),
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
    let answer;
    try {
      answer = await read(() => Promise.all([api(`webhooks/${seg(id)}`),
        api(`webhooks/${seg(id)}/deliveries`, { query: { limit: DELIVERIES } })]));
    } catch (error) {
      failed(error);
      unread = true;
      if (error.status === 404) {
        body.hidden = true;
        replace(actions, null);
        timer?.close();
      }
      return;
    }
    if (answer === STALE) return; // a later read (after an action) answers instead
    if (unread) failed(null);
    unread = false;
    render(...answer);
  }

  function render(webhook, found) {
    replace(actions, deleteButton(webhook, {
      armed, failed,
      deleted: (done) => {
        if (done) location.hash = '#/webhooks';
        else load();
      },
    }));
    replace(subscription, facts([
      ['URL', h('code', { class: 'webhook-url' }, webhook.url)],
      ['Events', eventList(webhook)],
      ['Jobs', filterOf(webhook)],
      ['Created by', webhook.createdBy],
      ['Created', formatTime(webhook.createdAt, { date: 'always' })],
      ['Secret', h('span', { class: 'muted' },
        'shown only when it was created; delete and subscribe again to have a new one')],
    ]));
    replace(health, facts([
      ['Latest deliveries', healthCounts(found)],
      ['Last attempt', lastAttemptSummary(found)],
    ]));
    count.textContent = found.length === DELIVERIES ? `the newest ${DELIVERIES}`
      : `${found.length} ${found.length === 1 ? 'delivery' : 'deliveries'}`;
    replace(deliveries, found.length ? deliveriesTable(found, { job: true })
      : h('p', { class: 'empty' }, 'No deliveries yet: the job events it wants, from its '
        + 'creation on, are delivered here.'));
  }

  await load();
  if (!body.hidden) timer = every(load, REFRESH_MS);
  return () => timer?.close();
}
