// The one version of this build, for `phalanx version`, /v1/status and phalanx_build_info.
// `bun build --compile` inlines the JSON import into the binary, so the compiled binary reports
// the version it was built from with no package.json beside it.
import pkg from "../../package.json" with { type: "json" };

export const VERSION: string = pkg.version;
