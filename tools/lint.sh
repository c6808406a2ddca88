#!/usr/bin/env bash
# Every lint and type check over the whole tree, as CI runs it: the hooks of
# .pre-commit-config.yaml (ruff, ruff format, mypy, clang-format, whitespace/end-of-file/large
# files, yaml/toml). Needs the dev venv (requirements-dev.txt). Arguments go to pre-commit:
# `tools/lint.sh mypy` runs one hook; `SKIP=clang-format tools/lint.sh` skips one.
set -euo pipefail
cd "$(dirname "$0")/.."
exec pre-commit run --all-files --show-diff-on-failure "$@"
