// Hash routes: '#/jobs/abc?status=failed' <-> {page, parts, params}.

/** '#/jobs/abc?status=failed' -> {page: 'job', parts: ['jobs', 'abc'], params}. */
export function parseRoute(hash = location.hash) {
  const text = hash.replace(/^#\/?/, '');
  const cut = text.indexOf('?');
  const path = cut < 0 ? text : text.slice(0, cut);
  const query = cut < 0 ? '' : text.slice(cut + 1);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let page = parts[0] || 'jobs';
  if (page === 'jobs' && parts[1]) page = 'job';
  if (page === 'schedules' && parts[1]) page = 'schedule';
  if (page === 'webhooks' && parts[1]) page = 'webhook';
  return { page, parts, params: new URLSearchParams(query) };
}

/** A hash link: route('jobs', {status: ['failed']}) -> '#/jobs?status=failed'. */
export function route(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    for (const item of Array.isArray(value) ? value : [value]) query.append(name, item);
  }
  const text = query.toString();
  return `#/${path}${text ? `?${text}` : ''}`;
}

export function jobLink(id) {
  return route(`jobs/${encodeURIComponent(id)}`);
}

export function scheduleLink(name) {
  return route(`schedules/${encodeURIComponent(name)}`);
}

export function webhookLink(id) {
  return route(`webhooks/${encodeURIComponent(id)}`);
}
