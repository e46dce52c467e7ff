// #/jobs/<id>: one job, live — status and its timeline, the schedule that made it, progress,
// arguments, result or error with its traceback, logs as they arrive, its deliveries to webhooks
// and its callbackUrl (admins only); cancel, copy as curl, run again.

import { api, curlCommand, request, seg } from '../api.js';
import { deliveriesTable } from '../deliveries.js';
import { h, replace } from '../dom.js';
import { formatDuration, formatTime, isTerminal, runTime } from '../format.js';
import { STALE, coalesce, every, follow, latestReads } from '../live.js';
import { jobLink, route, scheduleLink } from '../router.js';
import {
  confirmButton, copyText, errorBox, facts, jsonBlock, progressBar, section, statusBadge,
} from '../widgets.js';

// While the job runs, or a delivery of it is still pending, its deliveries are re-read this often.
const DELIVERIES_REFRESH_MS = 2500;
const LOG_LINE = /^(DEBUG|INFO|WARN|ERROR) (\S+) \[[^\]]*\] ?(.*)$/;

/** Mist's text log (`LEVEL ISO-time [id] message`, continuation lines indented by two spaces). */
export function parseLogText(text) {
  const records = [];
  for (const line of text.split('\n')) {
    const match = LOG_LINE.exec(line);
    if (match) {
      records.push({ level: match[1], timeStamp: Date.parse(match[2]), message: match[3] });
    } else if (line.startsWith('  ') && records.length) {
      records.at(-1).message += `\n${line.slice(2)}`;
    }
  }
  return records;
}

/**
 * The job's log records after the first `offset` (a multi-line record counts once), and the
 * offset to read on from: the gateway's count, taken as is.
 */
async function readLogsAfter(id, offset) {
  const response = await request(`jobs/${seg(id)}/logs`, {
    query: { offset }, accept: 'text/plain',
  });
  return {
    records: parseLogText(await response.text()),
    next: Number(response.headers.get('X-Sparkgate-Next-Offset')),
  };
}

function submitPath(job) {
  return `functions/${seg(job.function)}/jobs`;
}

function submitQuery(job) {
  return {
    context: job.context,
    startTimeout: job.startTimeout != null ? `${job.startTimeout}ms` : undefined,
    performTimeout: job.performTimeout != null ? `${job.performTimeout}ms` : undefined,
  };
}

export async function mount(root, { parts }) {
  const id = parts[1];
  // logOffset: the records read so far from the stored log, where the next read starts. Lines
  // that came as events do not move it: events may be lost.
  const state = {
    job: null, armed: new Map(), logKeys: new Set(), logCount: 0, logOffset: 0, done: false,
  };
  const statusEl = h('span', { class: 'head-status' });
  const actions = h('div', { class: 'head-actions' });
  const notice = h('div', { class: 'notice-area' });
  const summary = h('div');
  const timeline = h('ol', { class: 'timeline', 'aria-label': 'Status timeline' });
  const progress = h('div', { class: 'progress-detail' });
  const outcome = h('div', { id: 'outcome' });
  const args = h('div');
  const curl = h('div', { class: 'curl', hidden: true });
  const logList = h('div', { class: 'logs', id: 'logs', role: 'log', 'aria-live': 'polite' });
  const logCount = h('span', { class: 'muted', id: 'log-count' });
  const deliveries = h('div', { id: 'deliveries-card' });

  root.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('a', { href: '#/jobs', class: 'back' }, '← Jobs'),
        h('h1', {}, 'Job ', h('code', { class: 'job-id' }, id), ' ', statusEl)),
      actions),
    notice,
    curl,
    h('div', { class: 'grid two' },
      section('Summary', [summary, timeline]),
      section('Progress', progress)),
    h('div', { id: 'outcome-card' }, outcome),
    section('Arguments', args),
    section('Logs', logList, { tools: logCount, id: 'logs-card' }),
    deliveries,
  );

  function showNotice(error) {
    replace(notice, error ? errorBox(error) : null);
  }

  function render() {
    const job = state.job;
    replace(statusEl, statusBadge(job.status));
    root.dataset.status = job.status;
    replace(actions,
      !isTerminal(job.status) && job.status !== 'cancelling' ? confirmButton({
        label: 'Cancel', confirm: 'Confirm cancel', armed: state.armed, id: 'cancel',
        className: 'danger',
        action: async () => {
          try {
            setJob(await api(`jobs/${seg(id)}`, { method: 'DELETE' }));
            showNotice(null);
          } catch (error) {
            showNotice(error);
          }
        },
      }) : null,
      h('button', { type: 'button', class: 'button', 'data-action': 'copy-curl', onclick: copyCurl },
        'Copy as curl'),
      h('button', { type: 'button', class: 'button', 'data-action': 'run-again', onclick: runAgain },
        'Run again'));
    replace(summary, facts([
      ['Function', h('a', { href: route(`functions/${encodeURIComponent(job.function)}`) }, job.function)],
      ['Context', h('a', { href: route('jobs', { context: job.context }) }, job.context)],
      ['Worker', job.workerId ? h('a', { href: route('workers', { highlight: job.workerId }) }, job.workerId) : '—'],
      ['External id', job.externalId || '—'],
      ['Source', job.source],
      job.schedule ? ['Schedule', h('a', { href: scheduleLink(job.schedule) }, job.schedule)] : null,
      job.submitter ? ['Submitted by', job.submitter] : null,
      ['Created', formatTime(job.createTime, { millis: true, date: 'always' })],
      ['Waited', job.startTime ? formatDuration(job.startTime - job.createTime)
        : isTerminal(job.status) ? '—' : formatDuration(Date.now() - job.createTime)],
      ['Ran', h('span', { 'data-cell': 'duration' }, formatDuration(runTime(job)))],
      job.startTimeout != null ? ['Start timeout', formatDuration(job.startTimeout)] : null,
      job.performTimeout != null ? ['Perform timeout', formatDuration(job.performTimeout)] : null,
    ]));
    renderTimeline(job);
    renderProgress();
    renderOutcome(job);
    if (!args.firstChild) replace(args, jsonBlock(job.params?.arguments ?? {}, { id: 'arguments' }));
  }

  function renderTimeline(job) {
    const steps = [['queued', job.createTime]];
    if (job.startTime) steps.push(['started', job.startTime]);
    if (job.status === 'cancelling') steps.push(['cancelling', null]);
    if (isTerminal(job.status)) steps.push([job.status, job.endTime]);
    replace(timeline, steps.map(([status, time], i) => h('li', { 'data-step': status },
      statusBadge(status), ' ',
      h('span', { class: 'time' }, time ? formatTime(time, { millis: true }) : 'now'),
      i && time && steps[i - 1][1]
        ? h('span', { class: 'muted' }, ` +${formatDuration(time - steps[i - 1][1])}`) : null)));
  }

  function renderProgress() {
    const p = state.job.progress;
    if (!p) {
      // No progress is recorded where no Spark runs (the python engine) or before a start.
      const ran = state.job.startTime !== undefined;
      replace(progress, h('p', { class: 'muted' }, ran ? 'The job ran no Spark code.'
        : isTerminal(state.job.status) ? 'The job never ran.' : 'Not started yet.'));
      return;
    }
    if (p.streaming) {
      replace(progress, streamDetail(p.streaming));
      return;
    }
    const t = p.tasks || {};
    if (isTerminal(state.job.status) && !t.total && !p.jobs?.total) {
      replace(progress, h('p', { class: 'muted' }, 'The job ran no Spark code.'));
      return;
    }
    replace(progress, progressBar(p, state.job.status), facts([
      ['Tasks', `${t.done ?? 0} of ${t.total ?? 0} done`
        + (t.active ? `, ${t.active} running` : '') + (t.failed ? `, ${t.failed} failed` : '')],
      ['Stages', `${p.stages?.done ?? 0} of ${p.stages?.total ?? 0}`],
      ['Spark jobs', `${p.jobs?.done ?? 0} of ${p.jobs?.total ?? 0}`],
    ]));
  }

  function renderOutcome(job) {
    if (job.status === 'finished') {
      replace(outcome, section('Result', jsonBlock(job.jobResult, { id: 'result' }),
        { tools: h('button', {
          type: 'button', class: 'button small',
          onclick: () => copyText(JSON.stringify(job.jobResult, null, 2)),
        }, 'Copy') }));
    } else if (job.status === 'failed' || (job.status === 'cancelled' && job.jobResult)) {
      const text = String(job.jobResult ?? '');
      const cut = text.indexOf('\n\n');
      const message = cut < 0 ? text : text.slice(0, cut);
      const trace = cut < 0 ? '' : text.slice(cut + 2);
      replace(outcome, section(job.status === 'failed' ? 'Error' : 'Cancelled', [
        h('p', { class: 'error-message', id: 'error-message' }, message),
        trace ? h('details', { open: true }, h('summary', {}, 'Traceback'),
          h('pre', { class: 'traceback', id: 'traceback' }, trace)) : null,
      ], { id: 'error' }));
    } else {
      replace(outcome, null);
    }
  }

  function addLogs(records) {
    const atBottom = logList.scrollHeight - logList.scrollTop - logList.clientHeight < 40;
    for (const record of records) {
      const key = `${record.timeStamp}|${record.level}|${record.message}`;
      if (state.logKeys.has(key)) continue;
      state.logKeys.add(key);
      state.logCount += 1;
      logList.append(h('div', { class: `log-line level-${record.level}` },
        h('span', { class: 'log-time' }, formatTime(record.timeStamp, { millis: true, date: 'never' })),
        h('span', { class: 'log-level' }, record.level),
        h('span', { class: 'log-message' }, record.message)));
    }
    logCount.textContent = state.logCount === 1 ? '1 line' : `${state.logCount} lines`;
    if (!state.logCount && !logList.firstChild) {
      logList.append(h('p', { class: 'muted empty-logs' }, 'No log lines yet.'));
    } else if (state.logCount) {
      logList.querySelector('.empty-logs')?.remove();
    }
    if (atBottom) logList.scrollTop = logList.scrollHeight;
  }

  function setJob(job) {
    const wasTerminal = state.job && isTerminal(state.job.status);
    state.job = job;
    render();
    if (isTerminal(job.status) && !wasTerminal) finish();
  }

  async function refreshJob() {
    try {
      setJob(await api(`jobs/${seg(id)}`));
      showNotice(null);
    } catch (error) {
      showNotice(error);
      if (error.status === 404) stop();
    }
  }

  // Reads overlap (a refresh by the stream or the poll, the read after the end): only the
  // latest started is answered. It asked from the same offset as the older ones or further on,
  // so an older answer applied too would append its records again, or move the offset back.
  const readLogs = latestReads();
  async function refreshLogs() {
    let read;
    try {
      read = await readLogs(() => readLogsAfter(id, state.logOffset));
    } catch (error) {
      if (error.status !== 404) showNotice(error);
      return;
    }
    if (read === STALE) return;
    state.logOffset = read.next;
    addLogs(read.records);
  }

  async function refresh() {
    if (state.done) return;
    await refreshJob();
    await refreshLogs();
  }

  // The last lines and Spark's final counts may be stored just after the end is announced:
  // read them once more.
  let finishTimer = null;
  function finish() {
    finishTimer = setTimeout(async () => {
      await refreshJob();
      await refreshLogs();
      stop();
    }, 1500);
  }

  let live = null;
  function stop() {
    state.done = true;
    live?.close();
  }

  async function copyCurl() {
    const command = curlCommand('POST', submitPath(state.job), submitQuery(state.job),
      state.job.params?.arguments ?? {});
    const copied = await copyText(command);
    curl.hidden = false;
    replace(curl, h('div', { class: 'curl-head' },
      h('strong', {}, copied ? 'Copied to the clipboard:' : 'Copy this command:'),
      h('button', { type: 'button', class: 'button small ghost', onclick: () => { curl.hidden = true; } }, 'Close')),
    h('pre', { id: 'curl-command' }, command));
  }

  async function runAgain() {
    try {
      const created = await api(submitPath(state.job), {
        method: 'POST', query: submitQuery(state.job), body: state.job.params?.arguments ?? {},
      });
      location.hash = jobLink(created.id);
    } catch (error) {
      showNotice(error);
    }
  }

  // Shown to admins only, and only when there are some: a 403 or none shows nothing.
  let deliveriesTimer = null;
  async function refreshDeliveries() {
    const ended = state.job && isTerminal(state.job.status); // read before: none comes after
    let found;
    try {
      found = await api(`jobs/${seg(id)}/deliveries`, { quietForbidden: true });
    } catch (error) {
      if (error.status === 403 || error.status === 404) {
        replace(deliveries, null);
        deliveriesTimer?.close();
      }
      return; // otherwise: what is shown stays, the job's own read reports the trouble
    }
    const count = found.length === 1 ? '1 delivery' : `${found.length} deliveries`;
    replace(deliveries, found.length ? section('Deliveries', deliveriesTable(found, { receiver: true }),
      { tools: h('span', { class: 'muted' }, count), id: 'deliveries' }) : null);
    if (ended && !found.some((d) => d.status === 'pending')) deliveriesTimer?.close();
  }

  const refreshJobSoon = coalesce(refreshJob, 150);
  function onEvent(event) {
    if (event.id !== id || state.done) return;
    if (event.event === 'logs') {
      addLogs(event.events || []);
    } else if (event.event === 'progress') {
      if (state.job) {
        state.job.progress = event.progress;
        renderProgress();
      }
    } else {
      refreshJobSoon();
    }
  }

  await refreshJob();
  if (!state.job) return () => {};
  await refreshLogs();
  deliveriesTimer = every(refreshDeliveries, DELIVERIES_REFRESH_MS);
  await refreshDeliveries();
  if (!state.done) {
    live = follow({ query: { job: id, withLogs: 'true' }, onEvent, refresh, pollMs: 1000 });
  }
  const ticker = setInterval(() => {
    const cell = summary.querySelector('[data-cell=duration]');
    if (cell && state.job && !isTerminal(state.job.status)) {
      cell.textContent = formatDuration(runTime(state.job));
    }
  }, 1000);
  return () => {
    stop();
    deliveriesTimer.close();
    refreshJobSoon.cancel();
    clearTimeout(finishTimer);
    clearInterval(ticker);
  };
}


/** A streaming job's stream: its state, its latest batch and where each source has got to. */
function streamDetail(stream) {
  const rate = (value) => (value === undefined || value === null ? '—' : `${value.toFixed(1)} rows/s`);
  const rows = stream.kind === 'dstream' ? [
    ['Stream', `DStreams, ${stream.batchDurationMs} ms batches`],
    ['State', stream.active ? 'running' : 'stopped'],
    ['Batches', String(stream.batches ?? 0)],
  ] : [
    ['Stream', stream.name ? `query ${stream.name}` : `query ${stream.id}`],
    ['State', stream.active ? 'running' : 'stopped'],
    ['Batch', stream.batchId === undefined ? 'none yet' : String(stream.batchId)],
    ['Rows in the batch', String(stream.numInputRows ?? '—')],
    ['Input', rate(stream.inputRowsPerSecond)],
    ['Processed', rate(stream.processedRowsPerSecond)],
    ...(stream.sources || []).map((source) => [`Source ${source.description}`,
      `offset ${JSON.stringify(source.endOffset)}`]),
    ...(stream.sink ? [['Sink', stream.sink.description]] : []),
  ];
  return h('div', { id: 'stream' }, progressBar({ streaming: stream }), facts(rows));
}

