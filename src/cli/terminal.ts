/**
 * Text from elsewhere (event payloads, another user's durable names, a server's messages) as the CLI
 * writes it to a terminal: control characters (C0, DEL, C1 — U+009B is CSI on terminals that honour C1),
 * bidirectional controls (U+202E reverses what follows on the line) and line separators are written as
 * `\uXXXX`, so that nothing printed can move the cursor, clear the screen, retitle the window, or fake a
 * line of the report.
 */
const UNSAFE = /[\p{Cc}\p{Bidi_Control}\u2028\u2029]/gu;

/** `s` with every character a terminal would act on written as `\uXXXX`. */
export function displaySafe(s: string): string {
  return s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
