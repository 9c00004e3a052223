// One line of plain text for a failed zod parse, for error answers and logs. z.prettifyError
// decorates each issue with "✖" and "→" glyphs and splits it over lines, which a JSON error
// message, a terminal without UTF-8 and a grep over logs all handle badly.
import type { z } from "zod";

/** `value: expected string, received number; ttl: required` — each issue once, with its path. */
export function plainZodMessage(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const text = issue.message.replace(/^Invalid input: /, "");
      const at = issue.path.map(String).join(".");
      return at === "" ? text : `${at}: ${text}`;
    })
    .join("; ");
}
