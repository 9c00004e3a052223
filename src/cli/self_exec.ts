// How to start this same program again (for `phalanx dev`): the compiled binary is its own
// executable; under `bun main.ts` it is the runtime plus the entry script.

/** True inside a `bun build --compile` binary, whose modules live in Bun's embedded filesystem. */
export function isCompiled(): boolean {
  return Bun.main.startsWith("/$bunfs/") || /^[A-Z]:[\\/]~BUN[\\/]/.test(Bun.main);
}

export function selfCommand(): string[] {
  return isCompiled() ? [process.execPath] : [process.execPath, Bun.main];
}
