/** The chaos run's settings, parsed once from the environment, and its seeded source of choices. */
import { z } from "zod";

/** How long the faults run (s) when CHAOS_SECONDS is unset. */
export const DEFAULT_SECONDS = 120;

const Settings = z.object({
  /** How long faults are injected, in seconds. */
  CHAOS_SECONDS: z.coerce.number().int().positive().default(DEFAULT_SECONDS),
  /** `mixed`: kill -9, SIGSTOP then SIGCONT, or SIGTERM, at random; `freezekill`: SIGSTOP, then kill -9 while frozen. */
  CHAOS_MODE: z.enum(["mixed", "freezekill"]).default("mixed"),
  /** Seed of every random choice (a fresh one when unset; printed either way). */
  CHAOS_SEED: z.coerce.number().int().nonnegative().optional(),
  /** Where the JSON result is written, if anywhere. */
  CHAOS_OUT: z.string().min(1).optional(),
  /** `single`: one nats-server; `r3`: a three-node cluster, R3 streams, and a kill -9 of a node among the faults. */
  CHAOS_NATS: z.enum(["single", "r3"]).default("single"),
});

/** The parsed settings, the seed always set. */
export type ChaosSettings = { seconds: number; mode: "mixed" | "freezekill"; seed: number; out: string | undefined; nats: "single" | "r3" };

/** Parses the CHAOS_* variables of `env`; throws naming what is wrong. */
export function chaosSettings(env: NodeJS.ProcessEnv = process.env): ChaosSettings {
  const parsed = Settings.safeParse(env);
  if (!parsed.success) throw new Error(`chaos settings: ${parsed.error.message}`);
  const s = parsed.data;
  return { seconds: s.CHAOS_SECONDS, mode: s.CHAOS_MODE, seed: s.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31), out: s.CHAOS_OUT, nats: s.CHAOS_NATS };
}

/** A seeded pseudo-random source (mulberry32): the same seed, the same choices. */
export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** One of `items`. */
  pick<T>(items: readonly T[]): T;
}

/** A {@link Random} from `seed`. */
export function seeded(seed: number): Random {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => items[Math.floor(next() * items.length)]!,
  };
}
