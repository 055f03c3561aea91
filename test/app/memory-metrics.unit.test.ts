import { describe, expect, it } from "vitest";
import { residentSplit } from "../../src/app/metrics.js";

describe("resident memory by kind", () => {
  it("reads RssAnon, RssFile and RssShmem of a /proc status in bytes", async () => {
    const status = "Name:\tnode\nVmRSS:\t  716000 kB\nRssAnon:\t  600000 kB\nRssFile:\t  100000 kB\nRssShmem:\t   16000 kB\nThreads:\t11\n";
    expect(await residentSplit(status)).toEqual({ anon: 600000 * 1024, file: 100000 * 1024, shmem: 16000 * 1024 });
  });

  it("gives nothing for a status without the three fields (an old kernel), rather than a wrong figure", async () => {
    expect(await residentSplit("Name:\tnode\nVmRSS:\t716000 kB\n")).toBeUndefined();
    expect(await residentSplit("RssAnon:\t1 kB\nRssFile:\t2 kB\n")).toBeUndefined();
  });

  it("reads this process's own status on Linux, its parts within its RSS", async () => {
    if (process.platform !== "linux") return;
    const split = await residentSplit();
    expect(split).toBeDefined();
    expect(split!.anon).toBeGreaterThan(0);
    expect(split!.anon + split!.file + split!.shmem).toBeLessThanOrEqual(process.memoryUsage().rss * 1.1);
  });
});
