// An exclusive advisory lock on a file (flock(2), called through bun:ffi), held by an open file
// descriptor: the kernel releases it when the descriptor is closed or the process dies, however
// it dies. This is what makes the data dir's LOCK a lock. A pid written into the file cannot be:
// a zombie's pid stays "alive" until it is reaped, an unrelated process may get the pid after a
// crash, and two containers in separate PID namespaces see each other's pid as their own (or as
// nothing). The kernel lock sees none of that: it belongs to the open file, on the file's inode,
// across namespaces. The file's content (who holds it) is only there for the error message.
import { dlopen, FFIType, read } from "bun:ffi";
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";

const LOCK_EX = 2;
const LOCK_NB = 4;
const EINTR = 4;
const EWOULDBLOCK = 11; // EAGAIN on Linux
const EWOULDBLOCK_DARWIN = 35;

interface Libc {
  flock(fd: number, op: number): number;
  errno(): number;
}

let libc: Libc | null = null;

function loadLibc(): Libc {
  if (libc !== null) return libc;
  // glibc, musl (Alpine) and macOS name libc and its errno accessor differently.
  const candidates =
    process.platform === "darwin"
      ? [{ path: "libSystem.B.dylib", errno: "__error" }]
      : [
          { path: "libc.so.6", errno: "__errno_location" },
          { path: `libc.musl-${process.arch === "arm64" ? "aarch64" : "x86_64"}.so.1`, errno: "__errno_location" },
        ];
  const failures: string[] = [];
  for (const c of candidates) {
    try {
      const lib = dlopen(c.path, {
        flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
        [c.errno]: { args: [], returns: FFIType.ptr },
      });
      const errnoAt = lib.symbols[c.errno] as () => number | null;
      libc = {
        flock: (fd, op) => lib.symbols.flock(fd, op) as number,
        errno: () => {
          const p = errnoAt();
          return p === null ? -1 : read.i32(p as never, 0);
        },
      };
      return libc;
    } catch (err) {
      failures.push(`${c.path}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot load libc to lock files (${failures.join("; ")})`);
}

/** A held lock; release() closes the descriptor, which releases the lock. Idempotent. */
export interface HeldLock {
  readonly path: string;
  release(): void;
}

export type LockResult = { ok: true; lock: HeldLock } | { ok: false; holder: string };

/**
 * Takes an exclusive lock on `path` without waiting, creating the file if needed, and then
 * records `owner` in it. When another open file holds the lock (another process, or this one
 * through another open), answers the owner text it recorded. The file is never deleted: a
 * deleted lock file lets the next opener lock a new inode while the old holder still runs.
 */
export function tryLockFile(path: string, owner: string): LockResult {
  const c = loadLibc();
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  let held = false;
  try {
    for (;;) {
      if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) break;
      const errno = c.errno();
      if (errno === EINTR) continue;
      if (errno === EWOULDBLOCK || (process.platform === "darwin" && errno === EWOULDBLOCK_DARWIN)) {
        return { ok: false, holder: readFileSync(path, "utf8").trim() };
      }
      throw new Error(`flock(${path}) failed with errno ${errno}: this file system may not support locks`);
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${owner}\n`, 0);
    held = true;
  } finally {
    if (!held) closeSync(fd);
  }
  let open = true;
  return {
    ok: true,
    lock: {
      path,
      release: () => {
        if (!open) return;
        open = false;
        closeSync(fd);
      },
    },
  };
}
