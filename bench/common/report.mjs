// Medians and markdown tables.

export function median(values) {
  const xs = values
    .filter((v) => typeof v === 'number' && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (xs.length === 0) return undefined;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

export function min(values) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  return xs.length === 0 ? undefined : Math.min(...xs);
}

export function max(values) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  return xs.length === 0 ? undefined : Math.max(...xs);
}

/** A number with `digits` decimals, thousands separated; '–' when missing. */
export function num(value, digits = 0) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function ratio(value) {
  return typeof value === 'number' && Number.isFinite(value) ? `${value.toFixed(2)}×` : '–';
}

export const mb = (bytes) => (typeof bytes === 'number' ? num(bytes / 1048576, 1) : '–');

/** A markdown table: `columns` are [header, align] with align 'l' or 'r'. */
export function table(columns, rows) {
  const header = `| ${columns.map(([h]) => h).join(' | ')} |`;
  const rule = `|${columns.map(([, a]) => (a === 'r' ? '---:' : ':---')).join('|')}|`;
  const body = rows.map((row) => `| ${row.map((c) => String(c ?? '–')).join(' | ')} |`);
  return [header, rule, ...body].join('\n');
}
