/** The soak's plot, drawn as a small hand-written SVG (no plotting library): memory on top, reply p99 below, over minutes. */

/** A line of a panel. */
interface Series {
  label: string;
  color: string;
  values: number[];
}

const W = 720;
const PANEL_H = 180;
const LEFT = 60;
const RIGHT = 20;
const TOP = 30;
const GAP = 50;

/** A round axis maximum at or above `v`: 1, 2 or 5 times a power of ten. */
export function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v) ?? 10) * p;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
const num = (v: number) => (Math.round(v * 10) / 10).toString();

/** One panel at vertical offset `y0`: the warm-up shaded, frame, four grid lines with labels, the series as polylines, a legend. */
function panel(y0: number, title: string, unit: string, minutes: number[], warmup: number, series: Series[]): string {
  const xMax = Math.max(1, ...minutes);
  const yMax = niceMax(Math.max(0, ...series.flatMap((s) => s.values.filter(Number.isFinite))));
  const x = (m: number) => LEFT + (m / xMax) * (W - LEFT - RIGHT);
  const y = (v: number) => y0 + PANEL_H - (v / yMax) * PANEL_H;
  const out = [`<text x="${LEFT}" y="${y0 - 10}" font-weight="bold">${esc(title)}</text>`];
  if (warmup > 0) out.push(`<rect x="${LEFT}" y="${y0}" width="${num(x(Math.min(warmup, xMax)) - LEFT)}" height="${PANEL_H}" fill="#f2f2f2"/><text x="${LEFT + 4}" y="${y0 + 14}" fill="#888">warm-up</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${num(y(v))}" y2="${num(y(v))}" stroke="#ddd"/>`);
    out.push(`<text x="${LEFT - 6}" y="${num(y(v) + 4)}" text-anchor="end">${num(v)}</text>`);
  }
  out.push(`<text x="14" y="${y0 + PANEL_H / 2}" transform="rotate(-90 14 ${y0 + PANEL_H / 2})" text-anchor="middle">${esc(unit)}</text>`);
  const step = Math.max(1, Math.ceil(xMax / 10));
  for (let m = 0; m <= xMax; m += step) out.push(`<text x="${num(x(m))}" y="${y0 + PANEL_H + 16}" text-anchor="middle">${m}</text>`);
  out.push(`<rect x="${LEFT}" y="${y0}" width="${W - LEFT - RIGHT}" height="${PANEL_H}" fill="none" stroke="#888"/>`);
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => (Number.isFinite(v) ? `${num(x(minutes[i]!))},${num(y(v))}` : "")).filter(Boolean);
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.join(" ")}"/>`);
    for (const p of pts) out.push(`<circle cx="${p.split(",")[0]}" cy="${p.split(",")[1]}" r="2.5" fill="${s.color}"/>`);
    const lx = W - RIGHT - 170 * (series.length - k);
    out.push(`<line x1="${lx}" x2="${lx + 20}" y1="${y0 - 14}" y2="${y0 - 14}" stroke="${s.color}" stroke-width="2"/><text x="${lx + 24}" y="${y0 - 10}">${esc(s.label)}</text>`);
  });
  return out.join("\n");
}

/** The plot of a run: RSS, native memory (where sampled) and heap (MiB) in one panel, reply p99 (ms) in the other, minute by minute, the first `warmup` minutes shaded. */
export function soakSvg(rows: ReadonlyArray<{ minute: number; rssMb: number; heapMb: number; replyP99Ms: number; nativeMb?: number }>, title: string, warmup = 0): string {
  const minutes = rows.map((r) => r.minute);
  const h = TOP + 2 * PANEL_H + GAP + 50;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    panel(TOP + 20, "Service memory", "MiB", minutes, warmup, [
      { label: "RSS", color: "#1f77b4", values: rows.map((r) => r.rssMb) },
      ...(rows.some((r) => r.nativeMb !== undefined) ? [{ label: "native (RSS − V8 heap)", color: "#9467bd", values: rows.map((r) => r.nativeMb ?? Number.NaN) }] : []),
      { label: "heap after GC", color: "#2ca02c", values: rows.map((r) => r.heapMb) },
    ]),
    panel(TOP + 20 + PANEL_H + GAP, "Reply p99 (from intended send time)", "ms", minutes, warmup, [{ label: "reply p99", color: "#d62728", values: rows.map((r) => r.replyP99Ms) }]),
    `<text x="${(W + LEFT) / 2}" y="${h - 8}" text-anchor="middle">minute of the run</text>`,
    `</svg>`,
    "",
  ].join("\n");
}
