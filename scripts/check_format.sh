#!/usr/bin/env bash
# Lint and format checks (CI runs this; `make lint` too): ruff for Python,
# clang-format for C++/CUDA, with the configuration in pyproject.toml and
# .clang-format. To apply the formatting: ruff format . && clang-format -i FILES
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/ruff" check .
"$BIN/ruff" format --check .
git ls-files -z 'csrc/*.cpp' 'csrc/*.h' 'csrc/*.cu' 'csrc/*.cuh' | xargs -0 "$BIN/clang-format" --dry-run --Werror
echo "lint and format: clean"
