// Small pieces several pages use: status badges, progress bars, JSON blocks, buttons.

import { h } from './dom.js';
import { shortId } from './format.js';
import { jobLink } from './router.js';

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}`, 'data-status': status }, status);
}

export function stateBadge(state) {
  return h('span', { class: `badge state-${state}`, 'data-state': state }, state);
}

/** A job's progress: percent of its Spark tasks done; a streaming job's latest batch. */
export function progressBar(progress, status) {
  if (!progress) return h('span', { class: 'muted' }, '—');
  if (progress.streaming) return streamSummary(progress.streaming);
  const percent = Math.max(0, Math.min(100, Number(progress.percent) || 0));
  const tasks = progress.tasks || {};
  const fill = h('span', { class: `progress-fill status-${status}` });
  fill.style.width = `${percent}%`;
  return h('span', {
    class: 'progress',
    role: 'progressbar',
    'aria-valuemin': 0,
    'aria-valuemax': 100,
    'aria-valuenow': percent,
    title: `tasks ${tasks.done ?? 0}/${tasks.total ?? 0}`
      + (tasks.active ? `, ${tasks.active} running` : '')
      + (tasks.failed ? `, ${tasks.failed} failed` : ''),
  }, h('span', { class: 'progress-track' }, fill), h('span', { class: 'progress-label' },
    `${percent.toFixed(0)}%`));
}

/** A stream's latest batch in a few words (docs/streaming.md has its fields). */
export function streamSummary(stream) {
  const batch = stream.kind === 'dstream' ? stream.batches : stream.batchId;
  const rate = stream.kind === 'query' ? stream.processedRowsPerSecond : null;
  const words = [batch === undefined || batch === null ? 'no batch yet' : `batch ${batch}`];
  if (rate !== undefined && rate !== null) words.push(`${rate.toFixed(1)} rows/s`);
  return h('span', {
    class: `stream${stream.active ? ' active' : ''}`, 'data-stream': stream.active ? 'active' : 'stopped',
  }, `${stream.active ? 'streaming' : 'stream stopped'} · ${words.join(' · ')}`);
}

/** Pretty JSON with its tokens coloured. */
// Above this many characters a value is shown as plain text: a span per token would be
// hundreds of thousands of elements for a job with megabytes of arguments.
const HIGHLIGHT_MAX_CHARS = 200_000;

export function jsonBlock(value, attrs = {}) {
  const text = JSON.stringify(value, null, 2) ?? 'null';
  const pre = h('pre', { class: 'json', ...attrs });
  if (text.length > HIGHLIGHT_MAX_CHARS) {
    pre.append(text);
    return pre;
  }
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const match of text.matchAll(token)) {
    pre.append(text.slice(last, match.index));
    let kind = 'number';
    if (match[1]) kind = match[2] ? 'key' : 'string';
    else if (match[3]) kind = match[3] === 'null' ? 'null' : 'boolean';
    pre.append(h('span', { class: `json-${kind}` }, match[1] ?? match[0]));
    if (match[2]) pre.append(match[2]);
    last = match.index + match[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

export function errorBox(error, attrs = {}) {
  const code = error?.code && error.code !== 'network' ? ` (${error.code})` : '';
  return h('div', { class: 'error-box', role: 'alert', ...attrs },
    `${error?.message || String(error)}${code}`);
}

const ARM_MS = 4000;

/**
 * A button that asks once more before acting: the first click arms it, a second click within
 * a few seconds runs `action`. `armed` (a Map of id -> time armed) keeps the state across
 * re-renders of the page.
 */
export function confirmButton({ label, confirm, action, armed, id, className = '' }) {
  const button = h('button', {
    type: 'button', class: `button small ${className}`.trim(), 'data-action': label.toLowerCase(),
  }, label);
  let timer = null;
  const show = () => {
    clearTimeout(timer);
    const left = ARM_MS - (Date.now() - (armed.get(id) ?? -Infinity));
    const on = left > 0;
    button.textContent = on ? confirm : label;
    button.classList.toggle('armed', on);
    if (on) timer = setTimeout(show, left);
    else armed.delete(id);
    return on;
  };
  show();
  button.addEventListener('click', async () => {
    if (!show()) {
      armed.set(id, Date.now());
      show();
      return;
    }
    armed.delete(id);
    show();
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** Copy `text` to the clipboard; false if the browser refused. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { class: 'offscreen', readonly: true }, text);
    document.body.append(area);
    area.select();
    let done = false;
    try {
      done = document.execCommand('copy');
    } catch {
      done = false;
    }
    area.remove();
    return done;
  }
}

/** A page section: a heading, an optional toolbar and its content. */
export function section(title, content, { tools = null, id = null } = {}) {
  return h('section', { class: 'card', id },
    h('header', { class: 'card-head' }, h('h2', {}, title), tools),
    content);
}

/** A definition list from [label, value] pairs (values may be nodes). */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([label, value]) => [
    h('dt', {}, label), h('dd', { 'data-fact': label }, value ?? '—'),
  ]));
}

// A worker's running jobs: links to those the key may see, and how many others it runs (a
// submit key sees only its own jobs). Null when the worker is idle.
export function runningJobs(worker) {
  if (!worker.runningJobCount) return null;
  const links = worker.runningJobs.map((id, i) => [i ? ', ' : '',
    h('a', { href: jobLink(id), class: 'mono', title: id }, shortId(id))]);
  const others = worker.runningJobCount - worker.runningJobs.length;
  return [links, others > 0
    ? h('span', { class: 'muted' }, `${links.length ? ' + ' : ''}${others} of other owners`)
    : null];
}
