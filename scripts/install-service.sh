#!/usr/bin/env bash
# Install sound-monitor as a systemd service: /opt/sound-monitor, user sound-monitor (group audio),
# /etc/sound-monitor/config.yaml, and the unit from systemd/. Run as root. Safe to run again.
# --onnx installs the lean set-up (ONNX Runtime, no torch; set inference.backend: onnx).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dest=${DEST:-/opt/sound-monitor}
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo bash $0)" >&2; exit 1; }

id sound-monitor >/dev/null 2>&1 || useradd --system --home-dir /var/lib/sound-monitor --no-create-home \
  --shell /usr/sbin/nologin --groups audio sound-monitor
usermod -a -G audio sound-monitor

mkdir -p "$dest"
if [ "$src" != "$dest" ]; then
  tar -C "$src" --exclude=.venv --exclude=.venv-lean --exclude=.git --exclude='__pycache__' -cf - . | tar -C "$dest" -xf -
fi
bash "$dest/scripts/install.sh" "$@"  # --onnx: the lean set-up (no torch)

install -d -m 0755 /etc/sound-monitor
[ -f /etc/sound-monitor/config.yaml ] || install -m 0640 -g sound-monitor "$dest/config.yaml" /etc/sound-monitor/config.yaml
"$dest/.venv/bin/sound-monitor" check-config /etc/sound-monitor/config.yaml || echo "fix the config before starting" >&2

install -m 0644 "$dest/systemd/sound-monitor.service" /etc/systemd/system/sound-monitor.service
systemctl daemon-reload
systemctl enable --now sound-monitor
echo "installed; follow the log with: journalctl -u sound-monitor -f"
