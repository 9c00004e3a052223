// The byte semaphore that bounds concurrent large reads: grants in arrival order, waits for room,
// gives up at the deadline, and never lets one request wait forever for more than the capacity.
import { expect, test } from "bun:test";
import { ByteBudget } from "../../src/api/byte_budget.ts";

test("grants up to the capacity, queues the rest in order, releases once", async () => {
  const b = new ByteBudget(10);
  const r1 = await b.acquire(6, 1000);
  expect(r1).not.toBeNull();
  const order: string[] = [];
  const second = b.acquire(6, 5000).then((r) => (order.push("second"), r));
  const third = b.acquire(1, 5000).then((r) => (order.push("third"), r));
  await Bun.sleep(0);
  // Room for the 1-byte request, but it arrived after the 6-byte one: no overtaking.
  expect(order).toEqual([]);
  expect(b.inUse).toBe(6);
  r1!();
  r1!(); // a second release is a no-op
  const [r2, r3] = await Promise.all([second, third]);
  expect(order).toEqual(["second", "third"]);
  expect(b.inUse).toBe(7);
  r2!();
  r3!();
  expect(b.inUse).toBe(0);
});

test("a waiter gives up at its deadline; a request larger than the capacity runs alone", async () => {
  const b = new ByteBudget(10);
  const hold = await b.acquire(10, 1000);
  expect(await b.acquire(1, 20)).toBeNull();
  hold!();
  const huge = await b.acquire(1_000_000, 1000);
  expect(huge).not.toBeNull();
  expect(b.inUse).toBe(10);
  huge!();
  expect(b.inUse).toBe(0);
});
