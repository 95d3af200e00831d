#!/usr/bin/env bash
# The README's second command: set up everything the tests need, then check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
echo "==> lint, format and typecheck"
npm run --silent lint
npm run --silent format:check
npm run --silent typecheck
echo "==> tests"
npm test
