// Temporary data directories under os.tmpdir(), removed by the caller's afterEach/afterAll.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export class TempDirs {
  private readonly dirs: string[] = [];

  make(label = "phalanx-storage"): string {
    const dir = mkdtempSync(join(tmpdir(), `${label}-`));
    this.dirs.push(dir);
    return dir;
  }

  cleanup(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}
