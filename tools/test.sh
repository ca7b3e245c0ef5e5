#!/usr/bin/env bash
# The whole test run: types (twice: the library must compile without Node types), lint, tests.
# `npm test` and `.ci/run` both call this, so CI runs exactly what the README says.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./node_modules/.bin
"$bin/tsc" --noEmit -p tsconfig.json
"$bin/tsc" --noEmit -p tsconfig.lib.json
"$bin/biome" ci --colors=off
exec "$bin/vitest" run
