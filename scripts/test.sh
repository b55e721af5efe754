#!/usr/bin/env bash
# One command from a fresh Debian machine to the whole test suite: installs what is
# missing, starts Redis if none answers on 127.0.0.1:6379, checks formatting, clippy
# (warnings are errors) and rustdoc, runs every test and every bench once (test mode), and
# a short smoke of each fuzz target.
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VOXGATE_SETUP_TEST=1 source scripts/setup.sh

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "test: starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# tests/openapi.rs fuzzes the control API with schemathesis and fails without it.
# (schemathesis 4 runs as `python3 -m schemathesis.cli`; `python3 -m schemathesis` does not.)
if ! python3 -m schemathesis.cli --version >/dev/null 2>&1; then
  # A private virtualenv: Debian's system Python refuses pip installs (PEP 668).
  if ! target/pytools/bin/python3 -m schemathesis.cli --version >/dev/null 2>&1; then
    echo "test: installing schemathesis into target/pytools"
    python3 -m venv target/pytools
    target/pytools/bin/python3 -m pip install --quiet schemathesis
  fi
  export PATH="$PWD/target/pytools/bin:$PATH"
fi

# tests/recording_upload.rs uploads to moto, a local S3-compatible server.
if ! command -v moto_server >/dev/null 2>&1; then
  if [ ! -x target/pytools/bin/moto_server ]; then
    echo "test: installing moto[server] into target/pytools"
    [ -x target/pytools/bin/python3 ] || python3 -m venv target/pytools
    target/pytools/bin/python3 -m pip install --quiet 'moto[server]'
  fi
  export PATH="$PWD/target/pytools/bin:$PATH"
fi

# The habits every commit keeps: formatted, warning-free (missing docs included), and
# docs that build without a broken link. Any of them failing fails the suite.
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo doc --no-deps (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet

echo "== cargo test"
log=$(mktemp)
# --all-targets builds every bench too and runs each once in criterion's test mode, so a
# broken bench fails here (a release build of them would only add minutes).
cargo test --locked --all-targets 2>&1 | tee "$log"

if [ "${VOXGATE_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz smoke (${VOXGATE_FUZZ_SECONDS:-10} s per target)"
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
  (
    cd fuzz
    for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
      RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="${VOXGATE_FUZZ_SECONDS:-10}" \
        -max_len=70000 2>&1 | tail -n 2
    done
  )
fi
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
