#!/usr/bin/env bash
# Installs what the project needs and is missing: the Python venv (moto, cargo-lambda, zig, cfn-lint).
# Idempotent: a second run with nothing to do takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
stamp="$VENV/.requirements.sha"
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV" >&2
  python3 -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing requirements-dev.txt into $VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
# cargo-lambda's wheel brings zig (ziglang); put a `zig` beside it so cargo-lambda and sam find it on PATH.
if [ ! -e "$VENV/bin/zig" ]; then
  zig=$("$VENV/bin/python" - <<'PY'
import os, ziglang
print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))
PY
)
  ln -sf "$zig" "$VENV/bin/zig"
fi
