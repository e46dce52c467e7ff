// A run form generated from a function's argument schema (FunctionInfo.argumentsSchema, JSON
// Schema): one typed input per argument, its default filled in, and each problem — found here
// or reported by the gateway (400 details [{field, expected, got}]) — shown at its field.

import { h } from './dom.js';
import { fieldErrors } from './field-errors.js';

/** What an argument's schema asks for: {kind, nullable, description, schema}. */
export function describe(schema = {}) {
  let inner = schema;
  let nullable = false;
  if (Array.isArray(schema.anyOf)) {
    const others = schema.anyOf.filter((option) => option.type !== 'null');
    nullable = others.length < schema.anyOf.length;
    inner = others.length === 1 ? others[0] : {};
  }
  const kind = ['integer', 'number', 'string', 'boolean'].includes(inner.type) ? inner.type
    : inner.type === 'array' || inner.type === 'object' ? inner.type : 'any';
  return { kind, nullable, description: typeName(inner) + (nullable ? ' or null' : ''), inner };
}

function typeName(schema = {}) {
  if (schema.type === 'array') {
    return schema.items && schema.items.type || schema.items?.anyOf
      ? `array of ${typeName(schema.items)}` : 'array';
  }
  if (schema.type === 'object') {
    const values = schema.additionalProperties;
    return values && typeof values === 'object' && Object.keys(values).length
      ? `object of ${typeName(values)}` : 'object';
  }
  if (Array.isArray(schema.anyOf)) {
    return schema.anyOf.map(typeName).join(' or ');
  }
  return schema.type || 'any JSON value';
}

const EXAMPLES = {
  array: '[1, 2, 3]',
  object: '{"key": "value"}',
  any: 'any JSON value: 1, "text", [1, 2], {"a": 1}',
};

function inputFor(name, info, id) {
  const common = { id, name, 'data-arg': name, 'aria-describedby': `${id}-error` };
  if (info.kind === 'boolean') {
    return h('select', common,
      h('option', { value: '' }, info.required ? '— choose —' : '— not given —'),
      h('option', { value: 'true' }, 'true'),
      h('option', { value: 'false' }, 'false'));
  }
  if (['array', 'object', 'any'].includes(info.kind)) {
    return h('textarea', {
      ...common, rows: 3, spellcheck: 'false', class: 'code',
      placeholder: EXAMPLES[info.kind],
    });
  }
  return h('input', {
    ...common,
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    inputmode: info.kind === 'integer' ? 'numeric' : info.kind === 'number' ? 'decimal' : null,
  });
}

function initialValue(info) {
  if (!('default' in info.schema) || info.schema.default === null) return '';
  const value = info.schema.default;
  if (['array', 'object', 'any'].includes(info.kind)) return JSON.stringify(value);
  return String(value);
}

/** The value to send for `text`, or {error}; undefined when the field is left empty. */
function parse(info, text) {
  const raw = text.trim();
  if (raw === '') {
    return info.required ? { error: `required: give ${article(info.description)}` } : undefined;
  }
  switch (info.kind) {
    case 'integer': {
      if (!/^[-+]?\d+$/.test(raw)) return { error: `expected an integer, got "${raw}"` };
      const value = Number(raw);
      if (!Number.isSafeInteger(value)) return { error: 'this integer is too large to send exactly' };
      return { value };
    }
    case 'number': {
      const value = Number(raw);
      if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw) || !Number.isFinite(value)) {
        return { error: `expected a number, got "${raw}"` };
      }
      return { value };
    }
    case 'boolean':
      return { value: raw === 'true' };
    case 'string':
      return { value: text };
    default: {
      let value;
      try {
        value = JSON.parse(raw);
      } catch (error) {
        return { error: `expected JSON (${EXAMPLES[info.kind]}): ${error.message}` };
      }
      if (info.kind === 'array' && !Array.isArray(value) && !(value === null && info.nullable)) {
        return { error: `expected an array, like ${EXAMPLES.array}` };
      }
      if (info.kind === 'object' && (typeof value !== 'object' || Array.isArray(value)
          || (value === null && !info.nullable))) {
        return { error: `expected an object, like ${EXAMPLES.object}` };
      }
      return { value };
    }
  }
}

function article(text) {
  return /^[aeiou]/i.test(text) ? `an ${text}` : `a ${text}`;
}

/**
 * The form for `fn`. `extra` are more fields (context, externalId) given as
 * [{name, label, control}] whose values are read by the caller.
 * `onSubmit(args)` runs when every field parses; it may throw an ApiError, whose
 * details are then shown at their fields.
 */
export function argumentForm(fn, { extra = [], onSubmit }) {
  const prefix = `arg-${fn.name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const schema = fn.argumentsSchema;
  const fields = new Map(); // argument name -> {info, control, error}
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'run-form', novalidate: true, 'data-function': fn.name });

  const rows = [];
  if (schema) {
    const required = new Set(schema.required || []);
    for (const [name, argSchema] of Object.entries(schema.properties || {})) {
      const info = { ...describe(argSchema), schema: argSchema, required: required.has(name) };
      rows.push(fieldRow(name, info, `${prefix}-${name}`, fields));
    }
  } else {
    // Deployed without inspection: any JSON object.
    const info = { kind: 'object', nullable: false, description: 'JSON object of arguments',
      schema: { default: {} }, required: false };
    rows.push(fieldRow('(body)', info, `${prefix}-body`, fields));
  }
  if (!rows.length) rows.push(h('p', { class: 'muted' }, 'This function takes no arguments.'));
  const extraRows = extra.map(({ name, label, control, hint }) => {
    const id = `${prefix}-opt-${name}`;
    control.id = id;
    const error = h('div', { class: 'field-error', id: `${id}-error`, 'data-error-for': name });
    fields.set(`@${name}`, { control, error });
    return h('div', { class: 'field', 'data-field': `@${name}` },
      h('label', { for: id }, label), control, hint ? h('div', { class: 'hint' }, hint) : null,
      error);
  });
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Run');
  form.append(
    h('div', { class: 'fields' }, rows),
    extraRows.length ? h('div', { class: 'fields options' }, extraRows) : null,
    formError,
    h('div', { class: 'actions' }, submit),
  );

  const { show: showError, clear: clearErrors } = fieldErrors(fields, formError);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    let args = {};
    let problems = 0;
    for (const [name, field] of fields) {
      if (name.startsWith('@')) continue;
      const parsed = parse(field.info, field.control.value);
      if (parsed?.error) {
        showError(name, parsed.error);
        problems += 1;
      } else if (parsed !== undefined) {
        if (name === '(body)') args = parsed.value;
        else args[name] = parsed.value;
      }
    }
    if (problems) {
      form.querySelector('[aria-invalid="true"]')?.focus();
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(args);
    } catch (error) {
      showApiError(error, fields, showError);
      form.querySelector('[aria-invalid="true"]')?.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function fieldRow(name, info, id, fields) {
  const control = inputFor(name, info, id);
  control.value = initialValue(info);
  const error = h('div', { class: 'field-error', id: `${id}-error`, 'data-error-for': name });
  fields.set(name, { info, control, error });
  const hasDefault = 'default' in info.schema && name !== '(body)';
  return h('div', { class: `field kind-${info.kind}`, 'data-field': name },
    h('label', { for: id },
      h('span', { class: 'arg-name' }, name),
      h('span', { class: 'arg-type' }, info.description),
      info.required ? h('span', { class: 'required', title: 'required' }, 'required') : null),
    control,
    hasDefault ? h('div', { class: 'hint' }, `default: ${JSON.stringify(info.schema.default)}`)
      : info.nullable ? h('div', { class: 'hint' }, 'optional: leave empty to omit') : null,
    error);
}

/** An API error's details at their fields: `items[2]` and `weights.a` belong to their argument. */
function showApiError(error, fields, showError) {
  const details = Array.isArray(error?.details) ? error.details
    : error?.details && typeof error.details === 'object' && error.details.field
      ? [error.details] : [];
  let shown = 0;
  for (const detail of details) {
    if (!detail || typeof detail.field !== 'string') continue;
    const top = detail.field.split(/[.[]/)[0];
    const key = fields.has(top) ? top : fields.has(`@${detail.field}`) ? `@${detail.field}` : null;
    const text = detail.expected !== undefined
      ? `${detail.field === top ? '' : `${detail.field}: `}expected ${detail.expected}`
        + (detail.got !== undefined ? `, got ${describeGot(detail.got)}` : '')
      : error.message;
    if (key) {
      showError(key, text);
      shown += 1;
    }
  }
  if (!shown || shown < details.length || !details.length) {
    showError(null, error?.message || String(error));
  }
}

function describeGot(got) {
  return typeof got === 'string' ? got : JSON.stringify(got);
}
