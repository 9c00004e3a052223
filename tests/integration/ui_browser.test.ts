// The live cluster view in a real browser: headless Chromium opens the leader's /ui against a
// 3-node cluster of real processes, checks what an operator would read (3 members, the leader,
// terms, a write rate), then the leader is killed (SIGKILL) and the same page, without a reload,
// must fail over to a surviving member, show the new leader and the dead one as down; with every
// node killed it must say that nothing answers.
// Skips with a message when Chromium is not installed (.ci/run installs Debian's `chromium`).
import { afterAll, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Browser, findChromium } from "./browser.ts";
import { freePort, TestCluster, waitFor } from "./harness.ts";

const chromium = findChromium();
if (chromium === null) console.warn("ui_browser.test.ts: SKIPPED, no Chromium (apt-get install -y chromium, or set CHROMIUM_PATH)");
/** Where the screenshots go (UI_SCREENSHOT_DIR keeps them for a person to look at). */
const shots = process.env.UI_SCREENSHOT_DIR ?? tmpdir();

let cluster: TestCluster | null = null;
let browser: Browser | null = null;
let stopWriting = false;
afterAll(async () => {
  stopWriting = true;
  await browser?.close();
  await cluster?.stopAll();
});

interface Shown {
  leader: string;
  term: string;
  connected: string | null;
  health: string;
  writes: string;
  rows: { id: string; state: string; role: string; term: string }[];
  rttCells: number;
  marker: number | null;
}

// What the page shows, read from the DOM the way a person reads it (text), not from its script.
const READ_PAGE = `(() => ({
  leader: document.getElementById("leader").textContent,
  term: document.getElementById("term").textContent,
  connected: document.getElementById("connected").getAttribute("data-node"),
  health: document.getElementById("health").textContent,
  writes: document.getElementById("writes").textContent,
  rows: [...document.querySelectorAll("#members tbody tr")].map((r) => ({ id: r.dataset.member, state: r.dataset.state, role: r.dataset.role, term: r.children[3].textContent })),
  rttCells: [...document.querySelectorAll("#rtt td.cell")].filter((c) => / ms$/.test(c.textContent)).length,
  marker: window.__notReloaded ?? null,
}))()`;

test.skipIf(chromium === null)("the cluster view follows a killed leader in a real browser", async () => {
  const started = performance.now();
  cluster = await TestCluster.create(3);
  const debug = new Map<string, number>();
  for (const n of cluster.nodes) {
    debug.set(n.id, await freePort());
    cluster.start(n.id, { DEBUG_ADDR: `127.0.0.1:${debug.get(n.id)}` });
  }
  try {
    const [leader, b] = await Promise.all([cluster.waitForLeader(["n1", "n2", "n3"]), Browser.launch(chromium!)]);
    browser = b;
    const term = (await cluster.status(leader)).term;
    // A trickle of writes, so the page has a rate to show.
    let writes = 0;
    const writer = (async () => {
      // Stops once the page showed a rate; the cap bounds it if the test fails first.
      for (let i = 0; i < 3000 && cluster !== null && !stopWriting; i++) {
        await cluster.request(leader, "PUT", `/v1/kv/ui/${i}`, { body: new TextEncoder().encode(`v${i}`), timeoutMs: 1000 }).then(() => writes++, () => undefined);
        await Bun.sleep(10);
      }
    })();

    await browser.navigate(`http://127.0.0.1:${debug.get(leader)}/ui`);
    const before = await waitFor("the page to show 3 members and the leader", async () => {
      const s = await browser!.evaluate<Shown>(READ_PAGE);
      const ok = s.rows.length === 3 && s.rows.every((r) => r.state === "up") && s.leader === leader && s.connected === leader && s.writes !== "—" && Number(s.writes) > 0 && s.rttCells >= 2;
      return ok ? s : undefined;
    }, 10_000, 100);
    expect(before.rows.map((r) => r.id).sort()).toEqual(["n1", "n2", "n3"]);
    expect(Number(before.term)).toBeGreaterThanOrEqual(term);
    expect(before.rows.find((r) => r.id === leader)!.role).toBe("leader");
    for (const r of before.rows) expect(Number(r.term)).toBe(Number(before.term));
    expect(before.health).toBe("HEALTHY");
    stopWriting = true;
    await writer;
    expect(writes).toBeGreaterThan(0);
    await browser.screenshot(join(shots, "phalanx-ui-healthy.png"));

    // A reload would clear this; the page must follow the cluster by itself.
    await browser.evaluate("window.__notReloaded = 1");
    await cluster.kill(leader);
    const rest = cluster.nodes.map((n) => n.id).filter((id) => id !== leader);
    const killedAt = performance.now();
    const newLeader = await cluster.waitForLeader(rest);
    const after = await waitFor("the page to fail over and show the new leader", async () => {
      const s = await browser!.evaluate<Shown>(READ_PAGE);
      const dead = s.rows.find((r) => r.id === leader);
      return s.leader === newLeader && dead?.state === "down" && s.connected !== null && rest.includes(s.connected) ? s : undefined;
    }, 10_000, 100);
    const followedMs = Math.round(performance.now() - killedAt);
    expect(after.marker).toBe(1);
    expect(after.rows.length).toBe(3);
    expect(after.rows.find((r) => r.id === newLeader)!.role).toBe("leader");
    expect(Number(after.term)).toBeGreaterThan(Number(before.term));
    expect(after.health).toContain("DEGRADED");
    await browser.screenshot(join(shots, "phalanx-ui-leader-killed.png"));

    // With every node gone the page must say so, not go on showing the last picture as current.
    for (const id of rest) await cluster.kill(id);
    const gone = await waitFor("the page to say no node answers", async () => {
      const s = await browser!.evaluate<Shown>(READ_PAGE);
      return s.health === "UNREACHABLE" && s.connected === "" ? s : undefined;
    }, 15_000, 100);
    expect(gone.marker).toBe(1);
    await browser.screenshot(join(shots, "phalanx-ui-all-down.png"));
    console.log(`ui: page followed the kill of ${leader} to leader ${newLeader} via ${after.connected} in ${followedMs} ms; test took ${Math.round(performance.now() - started)} ms; screenshots in ${shots}`);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 90_000);
