// #/contexts: each context's settings, its state (ok / broken, with the last failure and a
// repair), and its live workers with what they run.

import { api, seg } from '../api.js';
import { h, replace } from '../dom.js';
import { shortId } from '../format.js';
import { every } from '../live.js';
import { jobLink, route } from '../router.js';
import { confirmButton, errorBox, facts, runningJobs, stateBadge } from '../widgets.js';

const REFRESH_MS = 3000;
// The fields of a context definition, as PUT takes them.
const FIELDS = ['engine', 'sparkConf', 'maxJobs', 'workerMode', 'precreated', 'downtime',
  'maxConnFailures', 'runOptions', 'streamingDuration', 'startTimeout', 'performTimeout'];

/** The engines a context may name, as the API's own schema lists them (jobs/settings.py). */
async function engineNames() {
  const document = await api('openapi.json');
  return document.components.schemas.Context.properties.engine.enum;
}

function failures(n) {
  return n === 1 ? '1 worker failure' : `${n} worker failures`;
}

export async function mount(root) {
  const armed = new Map();
  // The engine picked in a context's switch, kept across the page's refreshes until applied.
  const picked = new Map();
  const engines = await engineNames();
  const notice = h('div', { class: 'notice-area' });
  const list = h('div', { class: 'context-list' });
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Contexts')), notice, list);

  async function load() {
    try {
      const [contexts, workers] = await Promise.all([api('contexts'), api('workers')]);
      replace(list, contexts.map((c) => card(c, workers.filter((w) => w.context === c.name))));
    } catch (error) {
      replace(list, errorBox(error));
    }
  }

  async function update(context, changes) {
    const body = Object.fromEntries(FIELDS.filter((f) => f in context).map((f) => [f, context[f]]));
    try {
      await api(`contexts/${seg(context.name)}`, { method: 'PUT', body: { ...body, ...changes } });
      replace(notice, null);
    } catch (error) {
      replace(notice, errorBox(error));
    }
    await load();
  }

  function engineSwitch(context) {
    const choice = picked.get(context.name) ?? context.engine;
    const select = h('select', { 'data-action': 'engine', 'aria-label': `Engine of ${context.name}` },
      engines.map((name) => h('option', { value: name, selected: name === choice }, name)));
    const apply = confirmButton({
      label: 'Switch', confirm: `Confirm: ${choice}`, armed, id: `engine:${context.name}`,
      action: async () => {
        picked.delete(context.name);
        await update(context, { engine: choice });
      },
    });
    apply.hidden = choice === context.engine;
    select.addEventListener('change', () => {
      picked.set(context.name, select.value);
      load();
    });
    return h('span', { class: 'engine-switch' }, select, apply);
  }

  function card(context, workers) {
    const repair = context.state === 'broken' ? confirmButton({
      label: 'Repair', confirm: 'Confirm repair', armed, id: context.name,
      // An update of the definition (the same settings) is the repair.
      action: () => update(context, {}),
    }) : null;
    const conf = Object.entries(context.sparkConf || {});
    return h('section', { class: `card context state-${context.state}`, 'data-context': context.name },
      h('header', { class: 'card-head' },
        h('h2', {}, context.name, ' ', stateBadge(context.state)),
        h('div', { class: 'head-actions' },
          engineSwitch(context),
          h('a', { class: 'button small', href: route('jobs', { context: context.name }) }, 'Jobs'),
          repair)),
      context.state === 'broken' ? h('p', { class: 'error-box' },
        `Broken after ${failures(context.workerFailures)} in a row: its jobs fail at once until it is repaired (updated).`,
        context.lastFailure ? h('span', { class: 'last-failure' }, `Last failure: ${context.lastFailure}`) : null)
        : context.workerFailures ? h('p', { class: 'muted' },
          `${failures(context.workerFailures)} in a row; broken at ${context.maxConnFailures}.`) : null,
      h('div', { class: 'grid two' },
        facts([
          ['Engine', context.engine],
          ['Max jobs', context.maxJobs],
          ['Worker mode', context.workerMode],
          ['Precreated', String(context.precreated)],
          ['Downtime', context.downtime],
          ['Max failures', context.maxConnFailures],
          ['Start timeout', context.startTimeout],
          ['Perform timeout', context.performTimeout],
          ['Streaming', context.streamingDuration],
          context.runOptions ? ['Run options', context.runOptions] : null,
        ]),
        h('div', {},
          h('h3', {}, 'Spark settings'),
          conf.length ? h('table', { class: 'kv' }, h('tbody', {}, conf.map(([k, v]) =>
            h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))))
            : h('p', { class: 'muted' }, 'Defaults only.'))),
      h('h3', {}, `Live workers (${workers.length})`),
      workers.length ? h('ul', { class: 'worker-list' }, workers.map((w) => h('li', { 'data-worker': w.name },
        h('a', { href: route('workers', { highlight: w.name }) }, w.name), ' ',
        stateBadge(w.state),
        w.runningJobCount
          ? [' running ', runningJobs(w)]
          : h('span', { class: 'muted' }, ' idle'))))
        : h('p', { class: 'muted' }, 'None: one starts when a job is queued for this context.'));
  }

  await load();
  const timer = every(load, REFRESH_MS);
  return () => timer.close();
}
