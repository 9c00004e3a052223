// The five Fly regions of the brief and their round trips, for every test that models them (the
// placement and election-rank unit tests, the failover simulation, the geo lab): one table.
// Source: REFERENCE.md, "Round-trip times between the five regions" (ms, P95).

export const REGIONS = ["jnb", "lhr", "ord", "sin", "fra"] as const;
export type Region = (typeof REGIONS)[number];

/** Round trip between two distinct regions (ms); no entry for a region to itself. */
export const REGION_RTT_MS: Record<Region, Partial<Record<Region, number>>> = {
  lhr: { fra: 20, ord: 101, jnb: 169, sin: 183 },
  fra: { lhr: 20, ord: 115, jnb: 173, sin: 179 },
  ord: { lhr: 101, fra: 115, jnb: 241, sin: 214 },
  jnb: { lhr: 169, fra: 173, ord: 241, sin: 200 },
  sin: { lhr: 183, fra: 179, ord: 214, jnb: 200 },
};
