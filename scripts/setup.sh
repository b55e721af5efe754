#!/usr/bin/env bash
# Installs what voxgate needs on a Debian/Ubuntu machine, skipping what is already there.
# Sourced by serve.sh and test.sh; safe to run again.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
# audiopus links the system libopus (Ogg Opus recordings).
pkg-config --exists opus 2>/dev/null || need_apt+=(libopus-dev)
# providers::espeak links libespeak-ng (offline speech, in process) and reads its voices.
pkg-config --exists espeak-ng 2>/dev/null || need_apt+=(libespeak-ng-dev espeak-ng-data)
# Offline speech recognition (providers::pocketsphinx) links libpocketsphinx and loads the
# en-us model.
pkg-config --exists pocketsphinx 2>/dev/null || need_apt+=(libpocketsphinx-dev)
[ -f /usr/share/pocketsphinx/model/en-us/en-us/mdef ] || need_apt+=(pocketsphinx-en-us)
if [ "${VOXGATE_SETUP_TEST:-0}" = 1 ]; then
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
  # tests/recording_upload.rs checks Ogg Opus recordings with an independent decoder.
  command -v opusdec >/dev/null 2>&1 || need_apt+=(opus-tools)
  # tests/recording.rs checks recordings with an independent reader (soxi).
  # (sox also resamples the speech fixtures, fixtures/speech/make.sh.)
  command -v soxi >/dev/null 2>&1 || need_apt+=(sox)
  # Audio fixtures are spoken by the espeak-ng command.
  command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if [ "${VOXGATE_SETUP_TEST:-0}" = 1 ]; then
  # test.sh checks formatting and clippy; a minimal rustup profile has neither.
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi
