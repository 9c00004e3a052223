#!/usr/bin/env bash
# Builds the single phalanx binary (server and client in one), with the Bun runtime embedded:
#   ./compile.sh [output path]     (default ./phalanx)
# The binary needs no node_modules beside it. On a fresh checkout, dependencies come from the
# lockfile first (npm ci), which also provides the pinned Bun.
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-./phalanx}"
if [ ! -x node_modules/.bin/bun ]; then
  echo "compile.sh: node_modules missing, installing from package-lock.json" >&2
  npm ci --no-audit --no-fund
fi
# --bytecode: the modules ship precompiled, so a start does not parse them (`phalanx serve` is
# serving about 30 ms after exec instead of 65; BENCHMARKS.md, "Cluster start-up"). Bytecode needs ESM named
# explicitly (its default is CommonJS, which has no top-level await).
node_modules/.bin/bun build --compile --minify --bytecode --format=esm main.ts --outfile "$out"
echo "compile.sh: built $out" >&2
