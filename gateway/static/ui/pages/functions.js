// #/functions and #/functions/<name>: the deployed functions, each with a run form generated
// from its argument schema.

import { api, seg } from '../api.js';
import { h, replace } from '../dom.js';
import { jobLink, route } from '../router.js';
import { argumentForm, describe } from '../schema-form.js';
import { errorBox } from '../widgets.js';

export async function mount(root, { parts }) {
  const selected = parts[1] || null;
  root.append(h('div', { class: 'page-head' }, h('h1', {}, 'Functions')));
  let functions;
  let contexts;
  try {
    [functions, contexts] = await Promise.all([api('functions'), api('contexts')]);
  } catch (error) {
    root.append(errorBox(error));
    return null;
  }
  if (!functions.length) {
    root.append(h('p', { class: 'empty card' }, 'No functions are deployed yet.'));
    return null;
  }
  if (selected && !functions.some((f) => f.name === selected)) {
    root.append(errorBox({ message: `function '${selected}' does not exist` }));
  }
  const list = h('div', { class: 'function-list' });
  root.append(list);
  for (const fn of functions) list.append(card(fn, contexts, fn.name === selected));
  if (selected) {
    list.querySelector(`[data-function-card="${CSS.escape(selected)}"]`)?.scrollIntoView({ block: 'start' });
  }
  return null;
}

function signature(fn) {
  const props = fn.argumentsSchema?.properties;
  if (!fn.argumentsSchema) return '(any JSON arguments: deployed without inspection)';
  const required = new Set(fn.argumentsSchema.required || []);
  return `(${Object.entries(props || {}).map(([name, schema]) =>
    `${name}: ${describe(schema).description}${required.has(name) ? '' : '?'}`).join(', ')})`;
}

function card(fn, contexts, open) {
  const formSlot = h('div', { class: 'form-slot' });
  const details = h('details', { class: 'card function', open, 'data-function-card': fn.name },
    h('summary', {},
      h('span', { class: 'fn-name' }, fn.name),
      h('code', { class: 'fn-signature' }, signature(fn)),
      h('span', { class: 'fn-meta muted' }, `${fn.path} · ${fn.className} · context ${fn.defaultContext}`),
      h('a', { class: 'fn-jobs', href: route('jobs', { function: fn.name }) }, 'jobs')),
    formSlot);
  const build = () => {
    if (formSlot.firstChild) return;
    const context = h('select', { name: 'context' }, contexts.map((c) => h('option', {
      value: c.name, selected: c.name === fn.defaultContext,
    }, c.state === 'broken' ? `${c.name} (broken)` : c.name)));
    const externalId = h('input', { type: 'text', name: 'externalId', autocomplete: 'off', placeholder: 'optional' });
    replace(formSlot, argumentForm(fn, {
      extra: [
        { name: 'context', label: 'Context', control: context },
        { name: 'externalId', label: 'External id', control: externalId, hint: 'your own id for the job' },
      ],
      onSubmit: async (args) => {
        const created = await api(`functions/${seg(fn.name)}/jobs`, {
          method: 'POST', body: args,
          query: { context: context.value, externalId: externalId.value.trim() },
        });
        location.hash = jobLink(created.id);
      },
    }));
  };
  if (open) build();
  details.addEventListener('toggle', () => {
    if (details.open) build();
  });
  return details;
}
