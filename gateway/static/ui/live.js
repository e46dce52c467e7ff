// Live updates: the gateway's Server-Sent Events (GET /v2/api/events), read with fetch() so the
// request carries the API key like every other (EventSource cannot send headers). When the
// stream cannot be had (an older gateway without it, a proxy that cuts it, a network error) the
// page polls instead, and tries the stream again now and then.
//
// Events are at-most-once (the gateway's pub/sub), so each time the stream (re)connects the
// page re-reads what it shows: the database stays the source of truth.

import { request } from './api.js';

const followers = new Set();
let listener = () => {};

/** `fn(state)` is told the page's update mode: 'live', 'polling', 'refresh' or 'idle'. */
export function onLiveState(fn) {
  listener = fn;
  report();
}

function report() {
  const states = [...followers].map((f) => f.state);
  if (states.includes('polling')) listener('polling');
  else if (states.includes('live')) listener('live');
  else if (states.includes('connecting')) listener('connecting');
  else if (states.includes('refresh')) listener('refresh');
  else listener('idle');
}

/**
 * Follow events matching `query` ({job, function, context, withLogs}); `onEvent(event)` gets
 * each one (an object with `event` and `id`). `refresh()` re-reads the page's data: called
 * when the stream connects, and every `pollMs` while there is no stream.
 * Returns {close()}.
 */
export function follow({ query = {}, onEvent, refresh, pollMs = 2000, retryMs = 20000 }) {
  const follower = { state: 'connecting' };
  let closed = false;
  let controller = null;
  let pollTimer = null;
  let retryTimer = null;
  followers.add(follower);
  report();

  const setState = (state) => {
    follower.state = state;
    report();
  };
  const startPolling = () => {
    setState('polling');
    if (pollTimer === null) {
      pollTimer = setInterval(() => {
        if (!document.hidden) refresh();
      }, pollMs);
    }
  };
  const stopPolling = () => {
    clearInterval(pollTimer);
    pollTimer = null;
  };

  async function connect() {
    retryTimer = null;
    controller = new AbortController();
    let wasLive = false;
    try {
      const response = await request('events', {
        query, signal: controller.signal, accept: 'text/event-stream',
      });
      const type = response.headers.get('Content-Type') || '';
      if (!type.startsWith('text/event-stream') || !response.body) {
        throw new Error(`not an event stream: ${type}`);
      }
      stopPolling();
      setState('live');
      wasLive = true;
      refresh();
      await readEvents(response.body, (event) => {
        if (!closed && event.event !== 'keep-alive') onEvent(event);
      });
    } catch (error) {
      if (closed || error.name === 'AbortError') return;
    }
    if (closed) return;
    // The stream is not there, or it ended (the gateway stopping, or cutting off a client
    // that fell behind): poll until it comes back; a stream that was live is retried soon.
    startPolling();
    retryTimer = setTimeout(connect, wasLive ? 1000 : retryMs);
  }

  connect();
  return {
    close() {
      closed = true;
      stopPolling();
      clearTimeout(retryTimer);
      controller?.abort();
      followers.delete(follower);
      report();
    },
  };
}

/** Parse a text/event-stream body, calling `dispatch` with each message's JSON data. */
async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  let name = 'message';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (data.length) deliver(name, data.join('\n'), dispatch);
        data = [];
        name = 'message';
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'data') data.push(text);
        else if (field === 'event') name = text;
      }
    }
  }
}

function deliver(name, text, dispatch) {
  let event;
  try {
    event = JSON.parse(text);
  } catch {
    return; // not JSON: nothing this page can use
  }
  if (event && typeof event === 'object') {
    if (!event.event) event.event = name;
    dispatch(event);
  }
}

/**
 * Call `refresh()` every `ms` while the page is visible (pages whose data has no events:
 * workers, contexts, statistics). Returns {close()}.
 */
export function every(refresh, ms) {
  const follower = { state: 'refresh' };
  followers.add(follower);
  report();
  const timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, ms);
  return {
    close() {
      clearInterval(timer);
      followers.delete(follower);
      report();
    },
  };
}

/** Calls of the result within `ms` of the first one make one call of `fn`, `ms` later. */
export function coalesce(fn, ms) {
  let timer = null;
  const debounced = () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
  debounced.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return debounced;
}

/** What a read of `latestReads` answers when a later read started before it ended. */
export const STALE = Symbol('stale');

/**
 * A page's reads, of which only the latest started is answered: an action reads again at once
 * while the timer's read may still be under way, and an older answer must not overwrite a
 * newer one. `read(fetch)` answers fetch's value, or STALE; it throws fetch's error only if
 * no later read started meanwhile (it answers STALE then too).
 */
export function latestReads() {
  let started = 0;
  return async (fetch) => {
    const mine = ++started;
    try {
      const value = await fetch();
      return mine === started ? value : STALE;
    } catch (error) {
      if (mine !== started) return STALE;
      throw error;
    }
  };
}

