// The API reference: reads the gateway's own OpenAPI document and renders every operation,
// grouped by tag, with its parameters, body, responses and schemas, and a "Try it" form.
// No network beyond the gateway; the DOM is built without innerHTML (text stays text).

import { h, replace } from '/ui/dom.js';

const DOCUMENT_URL = '/v2/api/openapi.json';
const KEY_STORAGE = 'sparkgate.apiKey'; // the dashboard's: one key for both pages
const METHODS = ['get', 'post', 'put', 'delete', 'patch', 'head', 'options'];

function apiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ''; } catch { return ''; }
}

function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch { /* storage refused: nothing to keep */ }
}

// ---------------------------------------------------------------------------------------------
// The document

function resolve(doc, value) {
  let item = value;
  for (let depth = 0; item && item.$ref && depth < 20; depth += 1) {
    item = item.$ref.replace(/^#\//, '').split('/').reduce((node, key) => node?.[key], doc);
  }
  return item || {};
}

/** Every operation as {method, path, op}, in document order; HEAD twins folded into their GET. */
function operations(doc) {
  const list = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      if (method === 'head' && item.get) continue;
      list.push({ method, path, op, head: method === 'get' ? item.head : undefined });
    }
  }
  return list;
}

function anchor(entry) {
  return `op-${entry.op.operationId}`;
}

/** Descriptions use `code` and *emphasis*, as Markdown: rendered as elements, never markup. */
function rich(text) {
  if (!text) return '';
  return String(text).split(/(`[^`]+`|\*[^*\s][^*]*\*)/).map((part) => {
    if (part.startsWith('`') && part.endsWith('`') && part.length > 1) return h('code', {}, part.slice(1, -1));
    if (part.startsWith('*') && part.endsWith('*') && part.length > 2) return h('em', {}, part.slice(1, -1));
    return part;
  });
}

// ---------------------------------------------------------------------------------------------
// Schemas, as short type names and tables

function typeText(doc, schema) {
  if (!schema) return 'any';
  if (schema.$ref) return schema.$ref.split('/').pop();
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  for (const key of ['anyOf', 'oneOf']) {
    if (schema[key]) return schema[key].map((s) => typeText(doc, s)).join(' | ');
  }
  const types = Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type;
  if (types === 'array') return `array of ${typeText(doc, schema.items)}`;
  if (types === 'object' && schema.additionalProperties && !schema.properties) {
    return `map of ${typeText(doc, schema.additionalProperties)}`;
  }
  if (!types) return 'any';
  return schema.format ? `${types} (${schema.format})` : types;
}

function constraints(schema) {
  const parts = [];
  if (!schema) return parts;
  if (schema.minimum !== undefined) parts.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) parts.push(`≤ ${schema.maximum}`);
  if (schema.maxLength !== undefined) parts.push(`at most ${schema.maxLength} characters`);
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts;
}

function typeCell(doc, schema) {
  const text = typeText(doc, schema);
  const ref = schema?.$ref || schema?.items?.$ref;
  const type = ref
    ? h('a', { class: 'type', href: `#schema-${ref.split('/').pop()}` }, text)
    : h('span', { class: 'type' }, text);
  const extra = constraints(schema);
  const pattern = schema?.pattern || schema?.items?.pattern;
  return [type, extra.length ? h('div', { class: 'muted small' }, extra.join(', ')) : null,
    pattern ? h('details', { class: 'schema small' }, h('summary', {}, 'pattern'),
      h('code', {}, pattern)) : null];
}

function propertiesTable(doc, schema, depth = 0) {
  const props = Object.entries(schema.properties || {});
  if (!props.length) return null;
  const required = new Set(schema.required || []);
  return h('table', { class: 'schema-table' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, 'Type'), h('th', {}, ''))),
    h('tbody', {}, props.map(([name, prop]) => h('tr', {},
      h('td', {}, h('code', {}, name), required.has(name) ? h('span', { class: 'required' }, ' *') : null),
      h('td', {}, typeCell(doc, prop),
        depth < 3 && prop.type === 'object' && prop.properties
          ? h('details', { class: 'schema' }, h('summary', {}, 'fields'), propertiesTable(doc, prop, depth + 1))
          : null),
      h('td', {}, rich(prop.description))))));
}

function schemaBlock(doc, schema) {
  const target = schema?.$ref ? resolve(doc, schema) : schema;
  return [typeCell(doc, schema), target && !schema?.$ref ? propertiesTable(doc, target) : null];
}

// ---------------------------------------------------------------------------------------------
// One operation

function parameters(doc, op) {
  return (op.parameters || []).map((p) => resolve(doc, p));
}

function parameterTable(doc, params) {
  if (!params.length) return null;
  return [h('h3', {}, 'Parameters'), h('table', { class: 'params' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'In'), h('th', {}, 'Type'), h('th', {}, ''))),
    h('tbody', {}, params.map((p) => h('tr', { dataset: { param: p.name } },
      h('td', {}, h('code', {}, p.name), p.required ? h('span', { class: 'required' }, ' *') : null),
      h('td', {}, p.in),
      h('td', {}, typeCell(doc, p.schema)),
      h('td', {}, rich(p.description))))))];
}

function bodySection(doc, op) {
  const body = resolve(doc, op.requestBody);
  if (!op.requestBody) return null;
  return [h('h3', {}, `Request body${body.required ? '' : ' (optional)'}`),
    body.description ? h('p', {}, rich(body.description)) : null,
    Object.entries(body.content || {}).map(([media, { schema }]) => h('div', { class: 'body' },
      h('code', {}, media), ' ', schemaBlock(doc, schema)))];
}

function responseTable(doc, op) {
  return [h('h3', {}, 'Responses'), h('table', { class: 'responses' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Status'), h('th', {}, ''), h('th', {}, 'Body'))),
    h('tbody', {}, Object.entries(op.responses || {}).map(([status, raw]) => {
      const response = resolve(doc, raw);
      const headers = Object.keys(response.headers || {});
      return h('tr', { dataset: { status } },
        h('td', {}, h('span', { class: `status-code status-${status[0]}` }, status)),
        h('td', {}, rich(response.description),
          headers.length ? h('div', { class: 'muted small' }, `headers: ${headers.join(', ')}`) : null),
        h('td', {}, Object.entries(response.content || {}).map(([media, { schema }]) =>
          h('div', {}, h('code', { class: 'muted' }, media), ' ', typeCell(doc, schema)))));
    })))];
}

function security(op) {
  if (!op.security) return null;
  if (!op.security.length) return h('p', { class: 'note muted security' }, 'Public: no credentials needed.');
  const role = op['x-sparkgate-role'];
  const ways = op.security.map((s) => Object.keys(s)[0]).map((name) =>
    (name === 'accessToken' ? '?access_token=' : 'Authorization: Bearer'));
  return h('p', { class: 'note security' }, `Needs credentials (${ways.join(' or ')})`,
    role ? `, role ${role}.` : '.');
}

function operationCard(doc, entry) {
  const { method, path, op, head } = entry;
  return h('section', {
    class: 'card operation', id: anchor(entry),
    dataset: { operationId: op.operationId, method: method.toUpperCase(), path },
  },
  h('div', { class: 'card-head' },
    h('span', { class: `method method-${method}` }, method),
    h('code', { class: 'op-path' }, path),
    h('span', { class: 'summary' }, op.summary || ''),
    op.deprecated ? h('span', { class: 'badge' }, 'deprecated') : null),
  op.description ? h('p', {}, rich(op.description)) : null,
  head ? h('p', { class: 'note muted', dataset: { head: head.operationId } },
    'Also answers HEAD (the same headers, no body).') : null,
  security(op),
  parameterTable(doc, parameters(doc, op)),
  bodySection(doc, op),
  responseTable(doc, op),
  tryIt(doc, entry));
}

// ---------------------------------------------------------------------------------------------
// Try it

function tryIt(doc, entry) {
  const { method, path, op } = entry;
  const params = parameters(doc, op).filter((p) => p.in === 'path' || p.in === 'query');
  const media = Object.keys(resolve(doc, op.requestBody).content || {})[0];
  const result = h('div', { class: 'try-result', 'aria-live': 'polite' });
  const fields = params.map((p) => {
    const id = `${op.operationId}-${p.in}-${p.name}`;
    return [h('label', { for: id }, `${p.name}${p.required ? ' *' : ''}`),
      h('input', { id, name: p.name, dataset: { in: p.in }, required: p.required || undefined,
        placeholder: p.schema?.default !== undefined ? String(p.schema.default) : p.in })];
  });
  const bodyId = `${op.operationId}-body`;
  let bodyField = null;
  if (media === 'application/json') {
    bodyField = [h('label', { for: bodyId }, 'body (JSON)'),
      h('textarea', { id: bodyId, class: 'code', name: '__body', spellcheck: 'false' }, '{}')];
  } else if (media === 'multipart/form-data') {
    bodyField = [h('label', { for: bodyId }, 'file *'),
      h('input', { id: bodyId, name: '__file', type: 'file', required: true })];
  }
  const form = h('form', { class: 'try-form' }, fields, bodyField);
  const streaming = /^\/v2\/api\/(ws|events)/.test(path);
  const send = h('button', { type: 'button', class: 'button small primary', disabled: streaming,
    title: streaming ? 'an event stream: open it with a WebSocket or EventSource client' : undefined,
    onclick: () => run(method, path, form, media, result) }, 'Send');
  return h('details', { class: 'try' }, h('summary', {}, 'Try it'), form, send, result);
}

async function run(method, path, form, media, result) {
  let url = path;
  const query = new URLSearchParams();
  for (const input of form.querySelectorAll('input[data-in]')) {
    if (input.dataset.in === 'path') {
      url = url.replace(`{${input.name}}`, encodeURIComponent(input.value));
    } else if (input.value !== '') {
      query.append(input.name, input.value);
    }
  }
  const headers = { Accept: 'application/json, text/plain, */*' };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const init = { method: method.toUpperCase(), headers, cache: 'no-store', redirect: 'manual' };
  const text = form.querySelector('textarea[name="__body"]');
  const file = form.querySelector('input[name="__file"]');
  if (text) {
    headers['Content-Type'] = 'application/json';
    init.body = text.value;
  } else if (file && file.files.length) {
    const data = new FormData();
    data.append('file', file.files[0]);
    init.body = data;
  }
  const target = query.toString() ? `${url}?${query}` : url;
  replace(result, h('p', { class: 'muted' }, `${init.method} ${target} …`));
  try {
    const response = await fetch(target, init);
    const body = await response.text();
    let shown = body;
    try { shown = JSON.stringify(JSON.parse(body), null, 2); } catch { /* not JSON */ }
    replace(result,
      h('p', {}, h('span', { class: `status-code status-${String(response.status)[0]}`, dataset: { status: response.status } },
        String(response.status)), ' ', response.statusText, ' ',
        h('code', { class: 'muted' }, response.headers.get('Content-Type') || '')),
      h('pre', {}, shown || '(empty)'));
  } catch (error) {
    replace(result, h('p', { class: 'status-5' }, `request failed: ${error.message}`));
  }
}

// ---------------------------------------------------------------------------------------------
// The page

function schemasSection(doc) {
  const schemas = Object.entries(doc.components?.schemas || {});
  return h('section', { class: 'tag-section schemas', id: 'schemas' },
    h('h1', {}, 'Schemas'),
    schemas.map(([name, schema]) => h('section', { class: 'card', id: `schema-${name}`, dataset: { schema: name } },
      h('div', { class: 'card-head' }, h('h2', {}, name), h('span', { class: 'type' }, typeText(doc, schema))),
      schema.description ? h('p', {}, rich(schema.description)) : null,
      propertiesTable(doc, schema))));
}

function render(doc) {
  const entries = operations(doc);
  const tags = (doc.tags || []).map((t) => t.name);
  for (const entry of entries) {
    const tag = entry.op.tags?.[0] || 'other';
    if (!tags.includes(tag)) tags.push(tag);
  }
  const byTag = (tag) => entries.filter((e) => (e.op.tags?.[0] || 'other') === tag);
  const describe = (tag) => (doc.tags || []).find((t) => t.name === tag)?.description;

  document.getElementById('version').textContent = `${doc.info.title} ${doc.info.version} · OpenAPI ${doc.openapi}`;
  replace(document.getElementById('toc-list'),
    tags.map((tag) => [h('h3', {}, tag), byTag(tag).map((e) => h('a', { href: `#${anchor(e)}`, dataset: { toc: e.op.operationId } },
      h('span', { class: `method method-${e.method}` }, e.method), h('code', {}, e.path)))]),
    h('h3', {}, h('a', { href: '#schemas' }, 'Schemas')));
  replace(document.getElementById('main'),
    h('div', { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', {}, doc.info.title, ' API reference')),
      h('p', { class: 'muted' }, rich(doc.info.description)),
      tags.map((tag) => h('section', { class: 'tag-section', id: `tag-${tag}`, dataset: { tag } },
        h('h1', {}, tag), describe(tag) ? h('p', { class: 'muted' }, rich(describe(tag))) : null,
        byTag(tag).map((entry) => operationCard(doc, entry)))),
      schemasSection(doc)));
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

function filter(text) {
  const needle = text.trim().toLowerCase();
  for (const card of document.querySelectorAll('.operation')) {
    const haystack = `${card.dataset.method} ${card.dataset.path} ${card.querySelector('.summary').textContent}`.toLowerCase();
    const shown = !needle || haystack.includes(needle);
    card.hidden = !shown;
    const link = document.querySelector(`[data-toc="${card.dataset.operationId}"]`);
    if (link) link.hidden = !shown;
  }
}

function keyDialog() {
  const dialog = document.getElementById('key-dialog');
  document.getElementById('key-button').addEventListener('click', () => {
    document.getElementById('key-input').value = apiKey();
    dialog.showModal();
  });
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'save') setApiKey(document.getElementById('key-input').value.trim());
    else if (dialog.returnValue === 'clear') setApiKey('');
  });
}

async function main() {
  keyDialog();
  document.getElementById('filter').addEventListener('input', (event) => filter(event.target.value));
  try {
    const response = await fetch(DOCUMENT_URL, { cache: 'no-store' });
    if (!response.ok) throw new Error(`${DOCUMENT_URL} answered ${response.status}`);
    render(await response.json());
    document.body.dataset.ready = 'true';
  } catch (error) {
    const banner = document.getElementById('banner');
    banner.textContent = `Could not load the API document: ${error.message}`;
    banner.hidden = false;
  }
}

main();
