// A form's errors, each shown at the field it names, the rest under the form: the run form,
// the schedule and webhook forms share them.

import { h } from './dom.js';

/**
 * `fields`: name -> {control, error} (the control gets aria-invalid, the error element the
 * message); `formError`: where messages for no field go.
 */
export function fieldErrors(fields, formError) {
  const show = (key, message) => {
    const field = fields.get(key);
    if (!field) {
      formError.hidden = false;
      formError.append(h('div', {}, message));
      return;
    }
    field.error.append(h('div', {}, message));
    field.control.setAttribute('aria-invalid', 'true');
  };
  const clear = () => {
    formError.hidden = true;
    formError.replaceChildren();
    for (const { control, error } of fields.values()) {
      error.replaceChildren();
      control.removeAttribute('aria-invalid');
    }
  };
  /**
   * An API error at the fields it names: each of an invalid_arguments' `[{field, expected,
   * got}]` its own (`arguments.x` belongs to `arguments`); a 400's `details.field` the API's
   * message; `conflict` names the field a 409 belongs to, `notFound` the one a 404 naming a
   * function belongs to. Anything else under the form.
   */
  const showApi = (error, { conflict = null, notFound = null } = {}) => {
    const details = error?.details;
    const items = Array.isArray(details) ? details
      : details?.field ? [details]
        : error?.status === 409 && conflict ? [{ field: conflict }]
          : details?.function && notFound ? [{ field: notFound }] : [];
    let shown = 0;
    for (const item of items) {
      const key = typeof item?.field === 'string' ? item.field.split(/[.[]/)[0] : null;
      if (!fields.has(key)) continue;
      show(key, Array.isArray(details) && item.expected !== undefined
        ? `${item.field}: expected ${item.expected}${item.got !== undefined ? `, got ${item.got}` : ''}`
        : error.message);
      shown += 1;
    }
    if (!shown) show(null, error?.message || String(error));
  };
  return { show, clear, showApi };
}
