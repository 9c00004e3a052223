// Bun.serve wants Bun's own Response. @hono/node-server's serve() replaces the global Response
// with a lightweight subclass (whose prototype is the original), so a module that reads
// globalThis.Response after some serve() call would get the lightweight one: how modules happen
// to load (a test file order, a lazy import) must not decide which one the debug server answers
// with. Unwrap it instead.
const current = globalThis.Response;

export const NativeResponse: typeof Response =
  Object.getPrototypeOf(current) === Function.prototype ? current : (Object.getPrototypeOf(current) as typeof Response);
