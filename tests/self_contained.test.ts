// The suite must pass on a clone with nothing beside it (CI clones main alone): no test, bench or
// source file may read from outside the repository, such as a sibling `shared/` folder.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(import.meta.dir, "..");

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".") || name === "data") continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (/\.(ts|sh|json)$/.test(name)) yield p;
  }
}

describe("the repository is self-contained", () => {
  test("nothing refers to a folder beside the clone", () => {
    const offenders: string[] = [];
    for (const dir of ["src", "tests", "bench"]) {
      for (const f of files(join(root, dir))) {
        if (f === import.meta.path) continue;
        if (/\.\.\/\.\.\/\.\.\/|shared\/data/.test(readFileSync(f, "utf8"))) offenders.push(relative(root, f));
      }
    }
    expect(offenders).toEqual([]);
  });
});
