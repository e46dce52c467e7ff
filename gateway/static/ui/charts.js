// Charts as inline SVG: stacked bars over time, lines over time, horizontal bars. Each is
// drawn at the pixel width of its box (and again when that changes), so text keeps its size;
// colours come from CSS classes.

import { h, s } from './dom.js';
import { formatClock, formatCount, formatDuration, formatDurationShort } from './format.js';

/** A box that draws `draw(width)` into itself at its own width, and again on resize. */
export function responsive(draw) {
  const box = h('div', { class: 'chart-slot' });
  let drawn = 0;
  const observer = new ResizeObserver(() => {
    if (!box.isConnected) {
      observer.disconnect();
      return;
    }
    const width = Math.round(box.clientWidth);
    if (width > 0 && Math.abs(width - drawn) > 2) {
      drawn = width;
      box.replaceChildren(draw(width));
    }
  });
  observer.observe(box);
  return box;
}
const MARGIN = { top: 12, right: 14, bottom: 26, left: 56 };

/** 0 and 4-6 round steps up to at least `max`. */
function ticks(max) {
  if (!(max > 0)) return [0, 1];
  const rough = max / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= rough);
  const top = Math.ceil(max / step) * step;
  const result = [];
  for (let v = 0; v <= top + step / 2; v += step) result.push(Number(v.toPrecision(12)));
  return result;
}

function frame({ width, height, yTicks, yFormat, buckets, bucketMs, x, label }) {
  const plotBottom = height - MARGIN.bottom;
  const top = yTicks.at(-1);
  const y = (v) => plotBottom - (v / top) * (plotBottom - MARGIN.top);
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': label,
  });
  for (const v of yTicks) {
    svg.append(
      s('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v), class: 'gridline' }),
      s('text', { x: MARGIN.left - 6, y: y(v) + 4, class: 'axis-label', 'text-anchor': 'end' },
        yFormat(v)),
    );
  }
  // Time labels on whole multiples of a round step, at most about 7 of them.
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720].map((m) => m * 60_000);
  const span = buckets.length * bucketMs;
  const most = Math.max(2, Math.floor((width - MARGIN.left) / 70));
  const labelStep = steps.find((st) => span / st <= most && st >= bucketMs) ?? span;
  buckets.forEach((bucket, i) => {
    if (bucket.time % labelStep !== 0) return;
    svg.append(
      s('line', { x1: x(i), x2: x(i), y1: plotBottom, y2: plotBottom + 4, class: 'axis' }),
      s('text', { x: x(i), y: height - 8, class: 'axis-label', 'text-anchor': 'middle' },
        formatClock(bucket.time)),
    );
  });
  svg.append(s('line', {
    x1: MARGIN.left, x2: width - MARGIN.right, y1: plotBottom, y2: plotBottom, class: 'axis',
  }));
  return { svg, y, plotBottom };
}

function legend(items) {
  return h('div', { class: 'legend' }, items.map(({ label, cls, kind = 'box' }) =>
    h('span', { class: 'legend-item' }, h('span', { class: `swatch ${kind} ${cls}` }), label)));
}

function emptyNote(svg, width, height, text) {
  svg.append(s('text', {
    x: (MARGIN.left + width - MARGIN.right) / 2, y: height / 2, class: 'empty-note',
    'text-anchor': 'middle',
  }, text));
}

/**
 * Stacked bars per bucket for `series` ([{key, label, cls}]), and optionally a line for
 * `line` ({key, label, cls}).
 */
export function stackedBars({ buckets, bucketMs, series, line = null, height = 230, label, width }) {
  const totals = buckets.map((b) => series.reduce((sum, se) => sum + (b[se.key] || 0), 0));
  const lineMax = line ? Math.max(0, ...buckets.map((b) => b[line.key] || 0)) : 0;
  const yTicks = ticks(Math.max(0, ...totals, lineMax));
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const band = plotWidth / Math.max(1, buckets.length);
  const x = (i) => MARGIN.left + i * band;
  const { svg, y, plotBottom } = frame({
    width, height, yTicks, yFormat: formatCount, buckets, bucketMs, x, label,
  });
  const gap = band > 4 ? Math.min(2, band * 0.2) : 0;
  buckets.forEach((bucket, i) => {
    const group = s('g', { class: 'bar', 'data-time': bucket.time });
    let base = 0;
    const parts = [];
    for (const se of series) {
      const value = bucket[se.key] || 0;
      parts.push(`${se.label} ${value}`);
      if (!value) continue;
      group.append(s('rect', {
        x: x(i) + gap / 2, width: Math.max(0.5, band - gap), y: y(base + value),
        height: Math.max(0.5, y(base) - y(base + value)), class: `series ${se.cls}`,
      }));
      base += value;
    }
    if (line) parts.push(`${line.label} ${bucket[line.key] || 0}`);
    // A full-height transparent target, so the tooltip shows over empty bars too.
    group.prepend(s('rect', {
      x: x(i), width: band, y: MARGIN.top, height: plotBottom - MARGIN.top, class: 'hover',
    }), s('title', {}, `${formatClock(bucket.time)}: ${parts.join(', ')}`));
    svg.append(group);
  });
  if (line) {
    const points = buckets.map((b, i) => `${x(i) + band / 2},${y(b[line.key] || 0)}`);
    svg.append(s('polyline', { points: points.join(' '), class: `line ${line.cls}` }));
  }
  if (totals.every((t) => !t) && !lineMax) emptyNote(svg, width, height, 'no jobs in this window');
  const items = series.map((se) => ({ label: se.label, cls: se.cls }));
  if (line) items.push({ label: line.label, cls: line.cls, kind: 'line' });
  return h('figure', { class: 'chart-box' }, svg, legend(items));
}

/** Lines over the buckets for `series` ([{label, cls, value: bucket => number|null}]). */
export function lines({ buckets, bucketMs, series, height = 230, label, width }) {
  const values = buckets.flatMap((b) => series.map((se) => se.value(b))).filter((v) => v != null);
  const yTicks = ticks(Math.max(0, ...values));
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const band = plotWidth / Math.max(1, buckets.length);
  const x = (i) => MARGIN.left + i * band;
  const { svg, y } = frame({
    width, height, yTicks, yFormat: formatDurationShort, buckets, bucketMs, x, label,
  });
  for (const se of series) {
    // Gaps where a bucket has no value: one path of separate runs.
    let path = '';
    let drawing = false;
    buckets.forEach((bucket, i) => {
      const v = se.value(bucket);
      if (v == null) {
        drawing = false;
        return;
      }
      const cx = x(i) + band / 2;
      path += `${drawing ? 'L' : 'M'}${cx},${y(v)} `;
      drawing = true;
      svg.append(s('circle', { cx, cy: y(v), r: 2.5, class: `dot ${se.cls}` },
        s('title', {}, `${formatClock(bucket.time)}: ${se.label} ${formatDuration(v)}`)));
    });
    if (path) svg.append(s('path', { d: path.trim(), class: `line ${se.cls}` }));
  }
  if (!values.length) emptyNote(svg, width, height, 'no job ran in this window');
  return h('figure', { class: 'chart-box' }, svg,
    legend(series.map((se) => ({ label: se.label, cls: se.cls, kind: 'line' }))));
}

/** Horizontal bars, one per [label, value in ms]. */
export function durationBars({ rows, label, width }) {
  const rowHeight = 26;
  const height = rows.length * rowHeight + 8;
  const left = 56;
  const right = 110;
  const max = Math.max(1, ...rows.map(([, v]) => v ?? 0));
  const barWidth = (v) => ((width - left - right) * (v ?? 0)) / max;
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': label,
  });
  rows.forEach(([name, value], i) => {
    const top = 4 + i * rowHeight;
    svg.append(
      s('text', { x: left - 8, y: top + 16, class: 'axis-label', 'text-anchor': 'end' }, name),
      s('rect', { x: left, y: top + 3, width: width - left - right, height: rowHeight - 8,
        class: 'track' }),
      s('rect', { x: left, y: top + 3, width: Math.max(value ? 1 : 0, barWidth(value)),
        height: rowHeight - 8, class: `series pct-${name}` }),
      s('text', { x: left + Math.max(0, barWidth(value)) + 6, y: top + 16, class: 'value-label' },
        value == null ? '—' : formatDuration(value)),
    );
  });
  return h('figure', { class: 'chart-box' }, svg);
}
