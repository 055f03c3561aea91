/** Plain-text tables with aligned columns, and the number formats the bench prints. */

/** A cell: text is left-aligned, numbers right-aligned. */
export type Cell = string | number;

/** Renders a titled table; numeric columns are right-aligned. */
export function table(title: string, header: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map((c) => (typeof c === "number" ? fmt(c) : c)));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? "").length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number"));
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [``, `== ${title}`, line(header), rule, ...text.map(line)].join("\n");
}

/** A number with thousands separators; fractions keep two decimals below 100, one below 1,000. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const digits = Number.isInteger(n) ? 0 : Math.abs(n) < 100 ? 2 : Math.abs(n) < 1000 ? 1 : 0;
  return n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
