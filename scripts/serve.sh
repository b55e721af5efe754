#!/usr/bin/env bash
# One command from a fresh Debian machine to a running gateway on embedded defaults:
# installs what is missing, builds, and runs `voxgate serve` (extra args are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked --bin voxgate
exec ./target/release/voxgate serve "$@"
