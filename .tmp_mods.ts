await import("./src/cli/serve.ts");
// @ts-ignore
const keys = [...(globalThis as any).Loader.registry.keys()] as string[];
console.log(keys.length);
for (const k of keys.filter((k) => k.includes("/work/wt/startup/src")).sort()) console.log(k.replace("/work/wt/startup/", ""));
