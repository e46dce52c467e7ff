// Deliveries of job events (a webhook's, a job's callbackUrl's): their status, every attempt,
// and a webhook's health at a glance. Used by #/webhooks, #/webhooks/<id> and #/jobs/<id>.

import { h } from './dom.js';
import { formatAgo, formatIn, formatTime, shortId } from './format.js';
import { jobLink, webhookLink } from './router.js';

export const DELIVERY_STATUSES = ['delivered', 'pending', 'failed'];

export function deliveryBadge(status) {
  return h('span', { class: `badge delivery-${status}`, 'data-delivery-status': status }, status);
}

/** A job event's name, coloured as the job status it reports. */
export function eventBadge(event) {
  return h('span', { class: `badge status-${event}`, 'data-event': event }, event);
}

/** What an attempt got: the receiver's status code (2xx: delivered), or why there was none. */
export function attemptOutcome(attempt) {
  if (attempt.statusCode !== null && attempt.statusCode !== undefined) {
    const ok = attempt.statusCode >= 200 && attempt.statusCode < 300;
    return h('span', { class: `http-code ${ok ? 'ok' : 'bad'}`, 'data-outcome': 'status-code' },
      String(attempt.statusCode));
  }
  return h('span', { class: 'error-text', 'data-outcome': 'error' }, attempt.error || 'no answer');
}

/** Every attempt of a delivery, oldest first: when, how long, what came back. */
export function attemptList(attempts) {
  if (!attempts.length) return h('span', { class: 'muted' }, 'not attempted yet');
  return h('ol', { class: 'attempts' }, attempts.map((attempt, i) => h('li', {
    'data-attempt': i + 1, title: formatTime(attempt.at, { millis: true, date: 'always' }),
  },
  h('span', { class: 'time' }, formatTime(attempt.at, { millis: true })),
  h('span', { class: 'muted latency' }, `${attempt.latencyMs} ms`),
  attemptOutcome(attempt))));
}

function nextAttempt(delivery, now) {
  if (delivery.status !== 'pending' || delivery.nextAttempt === null) return '—';
  return h('span', { title: formatTime(delivery.nextAttempt, { date: 'always' }) },
    formatIn(delivery.nextAttempt, now));
}

function receiver(delivery) {
  const url = h('div', { class: 'mono small ellipsis-text', title: delivery.url }, delivery.url);
  if (delivery.webhookId === null) return [h('span', {}, "the job's callbackUrl"), url];
  return [h('a', { href: webhookLink(delivery.webhookId), title: delivery.webhookId },
    `webhook ${shortId(delivery.webhookId)}`), url];
}

/**
 * A table of deliveries, newest first as the API answers them. `job`: a column linking each
 * one's job (a webhook's page); `receiver`: a column naming where it goes (a job's page).
 */
export function deliveriesTable(deliveries, { job = false, receiver: to = false } = {}) {
  const now = Date.now();
  const titles = ['Event', job ? 'Job' : null, to ? 'To' : null, 'Status', 'Created',
    'Delivered', 'Next attempt', 'Attempts'].filter(Boolean);
  return h('table', { class: 'deliveries-table' },
    h('thead', {}, h('tr', {}, titles.map((title) => h('th', { scope: 'col' }, title)))),
    h('tbody', {}, deliveries.map((d) => h('tr', {
      'data-delivery-id': d.id, 'data-status': d.status, 'data-job-id': d.jobId,
    },
    h('td', {}, eventBadge(d.event)),
    job ? h('td', { class: 'mono' }, h('a', { href: jobLink(d.jobId), title: d.jobId },
      shortId(d.jobId))) : null,
    to ? h('td', { 'data-cell': 'to' }, receiver(d)) : null,
    h('td', { 'data-cell': 'status' }, deliveryBadge(d.status)),
    h('td', { class: 'time' }, formatTime(d.createdAt, { millis: true })),
    h('td', { class: 'time', 'data-cell': 'delivered' },
      d.deliveredAt ? formatTime(d.deliveredAt, { millis: true }) : '—'),
    h('td', { class: 'time', 'data-cell': 'next-attempt' }, nextAttempt(d, now)),
    h('td', { 'data-cell': 'attempts' }, attemptList(d.attempts))))));
}

/** The latest attempt among `deliveries`, or null. */
export function lastAttempt(deliveries) {
  let last = null;
  for (const d of deliveries) {
    for (const attempt of d.attempts) {
      if (!last || attempt.at >= last.at) last = attempt;
    }
  }
  return last;
}

/** How many of `deliveries` are delivered, pending, failed: one badge per status there is. */
export function healthCounts(deliveries) {
  if (!deliveries.length) return h('span', { class: 'muted' }, 'no deliveries yet');
  const counts = Object.fromEntries(DELIVERY_STATUSES.map((status) => [status, 0]));
  for (const d of deliveries) counts[d.status] = (counts[d.status] ?? 0) + 1;
  return h('span', { class: 'health' }, Object.entries(counts).filter(([, n]) => n)
    .map(([status, n]) => h('span', {
      class: `badge delivery-${status}`, 'data-count': status,
    }, `${n} ${status}`)));
}

/** The last attempt: its outcome and how long ago. */
export function lastAttemptSummary(deliveries, now = Date.now()) {
  const last = lastAttempt(deliveries);
  if (!last) return h('span', { class: 'muted' }, '—');
  return h('span', { title: formatTime(last.at, { millis: true, date: 'always' }) },
    attemptOutcome(last), h('span', { class: 'muted' }, ` · ${formatAgo(last.at, now)}`));
}
