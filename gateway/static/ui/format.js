// How times, durations and values read on the page.

const pad = (n, width = 2) => String(n).padStart(width, '0');

export function formatTime(ms, { millis = false, date = 'auto' } = {}) {
  if (ms === undefined || ms === null) return '—';
  const d = new Date(ms);
  let text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (millis) text += `.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  if (date === 'always' || (date === 'auto' && !sameDay)) {
    text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${text}`;
  }
  return text;
}

export function formatClock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function formatDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.floor(ms / 1000);
  const [big, small] = seconds < 3600 ? [[Math.floor(seconds / 60), 'min'], [seconds % 60, 's']]
    : seconds < 86_400 ? [[Math.floor(seconds / 3600), 'h'], [Math.floor(seconds / 60) % 60, 'min']]
      : [[Math.floor(seconds / 86_400), 'd'], [Math.floor(seconds / 3600) % 24, 'h']];
  return small[0] ? `${big[0]} ${big[1]} ${pad(small[0])} ${small[1]}` : `${big[0]} ${big[1]}`;
}

/** A short duration for chart axes: 250 ms, 1.5 s, 2 min. */
export function formatDurationShort(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))} s`;
  if (ms < 3_600_000) return `${Number((ms / 60_000).toFixed(1))} min`;
  return `${Number((ms / 3_600_000).toFixed(1))} h`;
}

export function formatAgo(ms, now = Date.now()) {
  if (ms === undefined || ms === null) return '—';
  return `${formatDuration(Math.max(0, now - ms))} ago`;
}

/** How far ahead `ms` is: 'in 3 h 02 min', or 'due now' once it has come. */
export function formatIn(ms, now = Date.now()) {
  if (ms === undefined || ms === null) return '—';
  return ms <= now ? 'due now' : `in ${formatDuration(ms - now)}`;
}

export function formatCount(n) {
  return new Intl.NumberFormat('en-US').format(n ?? 0);
}

export const TERMINAL = new Set(['finished', 'failed', 'cancelled']);
export const STATUSES = ['queued', 'started', 'cancelling', 'finished', 'failed', 'cancelled'];

export function isTerminal(status) {
  return TERMINAL.has(status);
}

/** Run time: start to end, or to now while it runs. */
export function runTime(job, now = Date.now()) {
  if (!job.startTime) return null;
  return (job.endTime ?? (isTerminal(job.status) ? job.startTime : now)) - job.startTime;
}

/** The end of an id: job ids are UUIDv7, whose first digits are the time they were made. */
export function shortId(id) {
  return id && id.length > 10 ? `…${id.slice(-8)}` : id || '';
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
