/**
 * A Prometheus counter whose values are totals the service already keeps (stats fields counted where the
 * work is done), read when Prometheus scrapes: nothing on the hot path. prom-client's `Counter` only adds
 * to what it holds itself, and a `Gauge` read the same way is exposed as `# TYPE … gauge`, which rate()
 * still takes but promtool and Prometheus' metadata flag for a `_total` name. This one is set from the
 * totals and declares itself a counter, as {@link LeanHistogram} declares itself a histogram.
 */
import type { Registry } from "prom-client";

/** One series: its labels and its latest total. */
interface Series {
  labels: Record<string, string>;
  value: number;
}

/** A counter read from the service's own totals at scrape time; register it with {@link ScrapedCounter.register}. */
export class ScrapedCounter {
  readonly type = "counter";
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly #collect: (c: ScrapedCounter) => void | Promise<void>;
  /**
   * By the label values joined with NUL, in order of first use. Kept between scrapes, as a gauge's values
   * are: a series its collect does not set at one scrape (a source that could not be read) keeps its last total.
   */
  #series = new Map<string, Series>();

  constructor(config: { name: string; help: string; labelNames?: readonly string[]; collect: (c: ScrapedCounter) => void | Promise<void> }) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames ?? [];
    this.#collect = config.collect;
    this.reset();
  }

  /** Sets the total of the series of `labels` (of the counter without labels: `set(value)`). */
  set(labels: Record<string, string>, value: number): void;
  set(value: number): void;
  set(a: Record<string, string> | number, b?: number): void {
    const [labels, value] = typeof a === "number" ? [{}, a] : [a, b!];
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: value is not a valid number: ${String(value)}`);
    for (const n of Object.keys(labels)) if (!this.labelNames.includes(n)) throw new Error(`${this.name}: no label ${n}`);
    const key = this.labelNames.map((n) => labels[n] ?? "").join("\u0000");
    const s = this.#series.get(key);
    if (s) s.value = value;
    else this.#series.set(key, { labels: { ...labels }, value });
  }

  /** Forgets every series; one without labels starts again at 0 (exported before its first collect, as prom-client's are). */
  reset(): void {
    this.#series = new Map();
    if (this.labelNames.length === 0) this.#series.set("", { labels: {}, value: 0 });
  }

  /** Adds the counter to `registry`, as prom-client's `registers` option would. */
  register(registry: Registry): this {
    registry.registerMetric(this as never);
    return this;
  }

  /** What the registry formats /metrics from: the totals as its collect sets them now. */
  async get(): Promise<{ name: string; help: string; type: "counter"; values: Series[]; aggregator: "sum" }> {
    await this.#collect(this);
    return { name: this.name, help: this.help, type: this.type, values: [...this.#series.values()].map((s) => ({ labels: { ...s.labels }, value: s.value })), aggregator: this.aggregator };
  }
}
