#!/usr/bin/env bash
# `make deploy-check`: what `sam deploy` would ship, checked without an AWS account.
#   1. `sam validate --lint` (the SAM transform and cfn-lint over template.yaml);
#   2. `sam build` (BuildMethod rust-cargolambda: `cargo lambda build --release --arm64` per
#      function, no Docker), into target/arm64 so it never forces host test rebuilds;
#   3. every function of the template has an arm64 ELF `bootstrap` in .aws-sam/build.
# Needs only the tools scripts/bootstrap.sh installs (.venv: aws-sam-cli, cargo-lambda, zig) and
# the aarch64-unknown-linux-gnu Rust target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/arm64}"

t0=$(date +%s)
sam validate --lint --template-file template.yaml
t1=$(date +%s)
sam build --template-file template.yaml < /dev/null
t2=$(date +%s)

# Each AWS::Serverless::Function of the template, by logical id.
functions=$(python3 - <<'PY'
import re
text = open("template.yaml").read()
ids, current = [], None
for line in text.splitlines():
    m = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
    if m:
        current = m.group(1)
    elif current and re.match(r"^    Type:\s*AWS::Serverless::Function\s*$", line):
        ids.append(current)
print(" ".join(ids))
PY
)
[ -n "$functions" ] || { echo "deploy-check: no functions found in template.yaml" >&2; exit 1; }
fail=0
for f in $functions; do
  b=".aws-sam/build/$f/bootstrap"
  if [ ! -f "$b" ]; then
    echo "deploy-check: $f: no $b" >&2; fail=1; continue
  fi
  # ELF magic, 64-bit, e_machine 0xB7 (AArch64) at offset 18, little endian.
  magic=$(od -An -tx1 -N4 "$b" | tr -d ' \n')
  class=$(od -An -tx1 -j4 -N1 "$b" | tr -d ' \n')
  machine=$(od -An -tx1 -j18 -N2 "$b" | tr -d ' \n')
  if [ "$magic" != "7f454c46" ] || [ "$class" != "02" ] || [ "$machine" != "b700" ]; then
    echo "deploy-check: $f: $b is not an arm64 ELF executable (magic $magic class $class machine $machine)" >&2
    fail=1; continue
  fi
  printf 'deploy-check: %-28s arm64 bootstrap, %s bytes\n' "$f" "$(stat -c %s "$b")"
done
echo "deploy-check: sam validate --lint $((t1 - t0)) s, sam build $((t2 - t1)) s"
exit $fail
