#!/usr/bin/env bash
# Run JupyterLab in the kit's container, reachable only on this host's loopback (use `ssh -L` from a laptop).
#   docker/start.sh [--port 8888] [--data DIR] [--token TOKEN] [--gpus auto|all|none|N] [--image stereomae:latest]
# The repository is mounted at /workspace/stereomae (edits persist) and DIR at /data (read-only).
# A token is always required: pass one, set JUPYTER_TOKEN, or a random one is made and printed.
# --gpus auto (the default) passes the host's GPUs when nvidia-smi finds one, else runs on the CPU.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
port=8888; data="${STEREOMAE_DATA:-$HOME/data}"; token="${JUPYTER_TOKEN:-}"; gpus=auto; image=stereomae:latest
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2;;
    --data) data="$2"; shift 2;;
    --token) token="$2"; shift 2;;
    --gpus) gpus="$2"; shift 2;;
    --image) image="$2"; shift 2;;
    -h|--help) sed -n '2,7p' "$0"; exit 0;;
    *) echo "start.sh: unknown argument '$1' (see --help)" >&2; exit 2;;
  esac
done
case "$port" in ''|*[!0-9]*) echo "start.sh: --port must be a number, got '$port'" >&2; exit 2;; esac
[ -d "$data" ] || { echo "start.sh: data directory '$data' does not exist (pass --data DIR)" >&2; exit 2; }
if [ -z "$token" ]; then token="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"; fi
if [ "$gpus" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpus=all
  else gpus=none; echo "No NVIDIA GPU found (nvidia-smi): the container runs on the CPU (--gpus all to insist)."; fi
fi
gpu_args=(); [ "$gpus" = none ] || gpu_args=(--gpus "$gpus")
echo "JupyterLab: http://localhost:${port}/lab?token=${token}"
echo "From a laptop: ssh -N -L ${port}:localhost:${port} you@this-server, then open the URL above."
exec docker run --rm -it "${gpu_args[@]}" --shm-size 8g \
  -p "127.0.0.1:${port}:8888" \
  -v "${repo}:/workspace/stereomae" -v "${data}:/data:ro" \
  -e JUPYTER_TOKEN="${token}" \
  "$image" \
  jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
  --ServerApp.root_dir=/workspace/stereomae/nbs --IdentityProvider.token="${token}"
