#!/usr/bin/env bash
# Set up sound-monitor on a Debian/Ubuntu machine: system packages, then a virtual environment in .venv
# with the `sound-monitor` console script. Safe to run again. Pass --test to add what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

pkgs=(libportaudio2 libsndfile1 python3-venv)
if [ "$want_tests" = 1 ]; then
  # a real broker, a virtual microphone (PulseAudio null sink) and audio tools for the tests
  pkgs+=(mosquitto mosquitto-clients pulseaudio pulseaudio-utils libasound2-plugins sox openssl)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo ">> installing system packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The broker must not be left running by the package: tests start their own on free ports.

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# The CPU build of torch: a bare `torch` may pull a multi-GB CUDA build. Override with TORCH_SPEC.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo ">> installing ${TORCH_SPEC:-torch==2.13.0}"
  "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
fi
extras="eval,metrics"
[ "$want_tests" = 1 ] && extras="eval,metrics,dev"
echo ">> installing sound-monitor[$extras]"
"${pip[@]}" -e ".[$extras]"
echo ">> ready: .venv/bin/sound-monitor"
