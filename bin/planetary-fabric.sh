#!/bin/sh
# The playbook's launcher: forwards every argument to `fabric run`.
#   ./bin/planetary-fabric.sh                         # edge-relief (humanitarian surge)
#   ./bin/planetary-fabric.sh k2-benchmark --jobs 10000 --export reports/planetary-fabric/runs/k2.json
# Uses $FABRIC_BIN if set, else `fabric` on PATH, else builds and runs it from this checkout.
set -e
if [ -n "$FABRIC_BIN" ]; then
    exec "$FABRIC_BIN" run "$@"
fi
if command -v fabric >/dev/null 2>&1; then
    exec fabric run "$@"
fi
here=$(cd "$(dirname "$0")/.." && pwd)
exec cargo run --quiet --release --manifest-path "$here/Cargo.toml" -- run "$@"
