#!/usr/bin/env bash
# Sets up a fresh machine: Debian packages for TTS/audio, a venv with the CPU torch first, then STAR.
set -euo pipefail
VENV=${VENV:-.venv}
APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts libsndfile1 chromium)
# FreeTTS (an optional data voice, 10 MB) only where Java already is: it is not worth a Java runtime.
command -v java >/dev/null 2>&1 && APT_PACKAGES+=(freetts)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
"$PIP" install -q --upgrade pip 2>/dev/null || true
# The CPU build of torch must come first: any other route resolves to multi-GB CUDA wheels.
"$PIP" install -q torch==2.13.0
"$PIP" install -q -e ".[dev]"
# SVOX Pico (an optional data voice: STUDY part 20's validation set) is C source on PyPI: only with a compiler.
if command -v cc >/dev/null 2>&1; then
    "$PIP" install -q ttspico==0.3.2 || echo "ttspico did not build: the optional pico voices are unavailable"
fi
# aisfx declares dependencies that would replace torch; its code needs none beyond ours.
"$PIP" install -q --no-deps aisfx==0.1.2
echo "setup done: $VENV"
