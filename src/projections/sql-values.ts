/** Reading raw rows the same way on SQLite and PostgreSQL (integers as bigint strings, booleans as 0/1). */
import type { Money } from "../../contracts/index.js";

/** A numeric column as a number (PostgreSQL returns bigint and count(*) as strings). */
export const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

/** A boolean column as a boolean (SQLite stores 0/1). */
export const bool = (v: unknown): boolean => v === true || v === 1 || v === "1" || v === "t" || v === "true";

/** A price stored as two nullable columns. */
export const moneyOf = (amount: unknown, currency: unknown): Money | null =>
  amount === null || amount === undefined || currency === null || currency === undefined ? null : { amount: Number(amount), currency: String(currency) };
