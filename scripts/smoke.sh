#!/usr/bin/env bash
# Smoke test against a deployed stack (docs/deploy.md). Costs at most one Enrow verification credit.
# Usage: scripts/smoke.sh API_URL TOKEN EMAIL_TO_VERIFY
set -euo pipefail
api=${1:?API_URL (stack output ApiUrl)}; token=${2:?RELAY_API_TOKEN}; email=${3:?an email address you own}
auth=(-H "Authorization: Bearer $token")

code=$(curl -s -o /dev/null -w '%{http_code}' "$api/jobs/job_smoke")
[ "$code" = 401 ] || { echo "FAIL: no token should be 401, got $code"; exit 1; }

job=$(curl -sf -X POST "$api/jobs" "${auth[@]}" -H 'content-type: application/json' \
  -d "{\"provider\":\"enrow\",\"operation\":\"email_verify\",\"contacts\":[{\"email\":\"$email\",\"custom\":{\"smoke\":\"1\"}}]}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo "job $job submitted"

code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$api/webhooks/enrow/$job/event/forged" -d '{}')
[ "$code" = 401 ] || { echo "FAIL: a forged webhook should be 401, got $code"; exit 1; }

for _ in $(seq 1 60); do
  status=$(curl -sf "$api/jobs/$job" "${auth[@]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case "$status" in completed|partially_failed|failed) break ;; esac
  sleep 5
done
echo "job $job: $status"
curl -sf "$api/jobs/$job/results" "${auth[@]}" | python3 -c '
import json,sys
r=json.load(sys.stdin)["results"]
assert len(r)==1 and r[0]["custom"]=={"smoke":"1"}, r
print("result:", r[0]["outcome"])'
[ "$status" = completed ] || { echo "FAIL: job ended $status"; exit 1; }
echo "smoke test ok"
