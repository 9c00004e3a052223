// `phalanx version` / `phalanx --version`: the version this binary was built from, and its runtime.
import { VERSION } from "../node/version.ts";
import { printJson } from "./output.ts";

export async function versionCommand(argv: string[]): Promise<number> {
  if (argv.includes("--json")) printJson({ version: VERSION, runtime: `bun ${Bun.version}` });
  else process.stdout.write(`phalanx ${VERSION} (bun ${Bun.version})\n`);
  return 0;
}
