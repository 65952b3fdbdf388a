import type { ReactElement } from 'react';

/** One line or stack of a chart: its name, its colour class and a value per bucket (null: no data). */
export type Series = { name: string; className: string; values: Array<number | null> };

type ChartProps = {
  title: string;
  /** A unique key per bucket (its start), since labels may repeat (the same hour on two days). */
  keys: string[];
  labels: string[];
  series: Series[];
  format: (value: number) => string;
};

const width = 640;
const height = 220;
const pad = { top: 12, right: 12, bottom: 28, left: 64 };

/** The top of the scale: the data's maximum rounded up to 1, 2 or 5 times a power of ten. */
function scaleMax(values: number[]): number {
  const max = Math.max(0, ...values);
  if (max <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  return ([1, 2, 5, 10].find((f) => f * magnitude >= max) ?? 10) * magnitude;
}

/** Every other label thinned out so they do not overlap. */
function tickEvery(count: number): number {
  return Math.max(1, Math.ceil(count / 8));
}

function Axes({
  keys,
  labels,
  max,
  format,
}: {
  keys: string[];
  labels: string[];
  max: number;
  format: (v: number) => string;
}): ReactElement {
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(1, labels.length);
  const every = tickEvery(labels.length);
  return (
    <g className="axes">
      {[0, 0.5, 1].map((f) => (
        <g key={f}>
          <line x1={pad.left} x2={width - pad.right} y1={pad.top + plotH * (1 - f)} y2={pad.top + plotH * (1 - f)} />
          <text x={pad.left - 6} y={pad.top + plotH * (1 - f) + 4} textAnchor="end">
            {format(max * f)}
          </text>
        </g>
      ))}
      {labels.map((label, i) =>
        i % every === 0 ? (
          <text key={keys[i]} x={pad.left + step * (i + 0.5)} y={height - 8} textAnchor="middle">
            {label}
          </text>
        ) : null,
      )}
    </g>
  );
}

/** The chart's numbers as a table, for screen readers and for reading exact values. */
function DataTable({ title, keys, labels, series, format }: ChartProps): ReactElement {
  return (
    <details>
      <summary>{title} as a table</summary>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Bucket</th>
              {series.map((s) => (
                <th scope="col" key={s.name}>
                  {s.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {labels.map((label, i) => (
              <tr key={keys[i]}>
                <th scope="row">{label}</th>
                {series.map((s) => (
                  <td key={s.name}>{s.values[i] === null || s.values[i] === undefined ? '—' : format(s.values[i]!)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}

function Legend({ series }: { series: Series[] }): ReactElement {
  return (
    <ul className="legend">
      {series.map((s) => (
        <li key={s.name}>
          <span className={`swatch ${s.className}`} aria-hidden="true" /> {s.name}
        </li>
      ))}
    </ul>
  );
}

/** Stacked bars, one per bucket: counts by kind. */
export function StackedBars(props: ChartProps): ReactElement {
  const { title, keys, labels, series, format } = props;
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
  const max = scaleMax(totals);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(1, labels.length);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={title}>
        <Axes keys={keys} labels={labels} max={max} format={format} />
        {labels.map((label, i) => {
          let y = pad.top + plotH;
          return (
            <g key={keys[i]}>
              {series.map((s) => {
                const h = ((s.values[i] ?? 0) / max) * plotH;
                y -= h;
                return h > 0 ? (
                  <rect
                    key={s.name}
                    className={s.className}
                    x={pad.left + step * i + step * 0.15}
                    y={y}
                    width={step * 0.7}
                    height={h}
                  >
                    <title>{`${label}, ${s.name}: ${format(s.values[i] ?? 0)}`}</title>
                  </rect>
                ) : null;
              })}
            </g>
          );
        })}
      </svg>
      <Legend series={series} />
      <DataTable {...props} />
    </figure>
  );
}

/** Lines over the buckets (gaps where a bucket has no value): percentiles over time. */
export function Lines(props: ChartProps): ReactElement {
  const { title, keys, labels, series, format } = props;
  const max = scaleMax(series.flatMap((s) => s.values.filter((v): v is number => v !== null)));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(1, labels.length);
  const x = (i: number): number => pad.left + step * (i + 0.5);
  const y = (v: number): number => pad.top + plotH * (1 - v / max);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={title}>
        <Axes keys={keys} labels={labels} max={max} format={format} />
        {series.map((s) => {
          let d = '';
          s.values.forEach((v, i) => {
            if (v === null) return;
            d += `${d && s.values[i - 1] !== null ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
          });
          return (
            <g key={s.name} className={s.className}>
              <path d={d} fill="none" />
              {s.values.map((v, i) =>
                v === null ? null : (
                  <circle key={keys[i]} cx={x(i)} cy={y(v)} r={3}>
                    <title>{`${labels[i]}, ${s.name}: ${format(v)}`}</title>
                  </circle>
                ),
              )}
            </g>
          );
        })}
      </svg>
      <Legend series={series} />
      <DataTable {...props} />
    </figure>
  );
}
