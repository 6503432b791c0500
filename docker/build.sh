#!/usr/bin/env bash
# Build the kit's image from the repository root: docker/build.sh [tag]   (default tag stereomae:latest)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-stereomae:latest}"
docker build -f "$repo/docker/Dockerfile" -t "$tag" "$repo"
