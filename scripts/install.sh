#!/usr/bin/env bash
# Set up sound-monitor on a Debian/Ubuntu machine: system packages, then a virtual environment in .venv
# (or $VENV) with the `sound-monitor` console script. Safe to run again.
#   --onnx   the lean set-up: ONNX Runtime instead of torch (inference.backend: onnx; no torch, no transformers)
#   --test   also what the tests need (both backends, the export tools, mosquitto, PulseAudio, sox)
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
lean=0
for arg in "$@"; do
  case "$arg" in
    --test) want_tests=1 ;;
    --onnx) lean=1 ;;
    *) echo "usage: $0 [--onnx] [--test]" >&2; exit 2 ;;
  esac
done
if [ "$want_tests" = 1 ] && [ "$lean" = 1 ]; then
  echo "--test installs both backends already; use one of --onnx, --test" >&2
  exit 2
fi

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

# ffmpeg reads network streams (IP cameras' RTSP, HTTP audio): monitor/sources/stream.py
pkgs=(libportaudio2 libsndfile1 python3-venv ffmpeg)
if [ "$want_tests" = 1 ]; then
  # a real broker, a virtual microphone (PulseAudio null sink) and audio tools for the tests
  pkgs+=(mosquitto mosquitto-clients pulseaudio pulseaudio-utils libasound2-plugins sox openssl)
  # a real RTSP server for the stream tests: GStreamer's, run by the system python3 (tests/support/rtsp.py)
  pkgs+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
         gstreamer1.0-libav)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo ">> installing system packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The broker must not be left running by the package: tests start their own on free ports.

venv=${VENV:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if [ "$lean" = 1 ]; then
  # pyproject.toml's core dependencies less torch and transformers (they are core for the default backend),
  # then the onnx and metrics extras: the package itself goes in with --no-deps.
  echo ">> installing the lean set-up (ONNX Runtime, no torch) into $venv"
  "${pip[@]}" "numpy>=1.24" "soxr>=0.3.7" "sounddevice>=0.4.6" "soundfile>=0.12" "pyyaml>=6" "paho-mqtt>=2.0" \
    "pydantic>=2.5" "onnxruntime>=1.17" "tokenizers>=0.15" "prometheus-client>=0.17"
  "${pip[@]}" --no-deps -e .
  echo ">> ready: $venv/bin/sound-monitor"
  exit 0
else
  # The CPU build of torch: a bare `torch` may pull a multi-GB CUDA build. Override with TORCH_SPEC.
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo ">> installing ${TORCH_SPEC:-torch==2.13.0}"
    "${pip[@]}" "${TORCH_SPEC:-torch==2.13.0}"
  fi
  extras="eval,metrics"
  [ "$want_tests" = 1 ] && extras="onnx,export,eval,metrics,dev"
fi
echo ">> installing sound-monitor[$extras] into $venv"
"${pip[@]}" -e ".[$extras]"
echo ">> ready: $venv/bin/sound-monitor"
