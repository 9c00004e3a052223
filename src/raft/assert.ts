// Invariant checks (TigerBeetle style): a broken invariant is a bug in the core, never bad
// input, so it stops the node loudly instead of letting it corrupt replicated state.
export class InvariantError extends Error {
  override name = "InvariantError";
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(`raft invariant violated: ${message}`);
}
