#!/usr/bin/env bash
# Smoke test of a running redis-stream-service over HTTP (spec section 4), with bash and curl only.
#
#   ./test-health-checks.sh                      # against http://localhost:8000
#   BASE_URL=http://svc:8000 API_KEY=secret ./test-health-checks.sh
#
# Environment:
#   BASE_URL               service address (default http://localhost:8000)
#   API_KEY                the service's API_KEY, when it has one (sent as X-API-Key)
#   RATE_LIMIT_PER_SECOND  the service's trigger rate limit (default 1)
#   METRICS_ENABLED        false when the service runs with METRICS_ENABLED=false (default true)
#   WAIT_SECONDS           how long to wait for /health/ready to answer 200 first (default 30)
#   TIMEOUT_SECONDS        per request (default 5)
#
# Prints PASS/FAIL per check and, last, `N passed, N failed`; exits 1 when a check failed.
# It publishes a few `manual_test` events on the service's default stream.
set -uo pipefail

BASE_URL="${BASE_URL:-http://localhost:8000}"
BASE_URL="${BASE_URL%/}"
API_KEY="${API_KEY:-}"
RATE_LIMIT_PER_SECOND="${RATE_LIMIT_PER_SECOND:-1}"
METRICS_ENABLED="${METRICS_ENABLED:-true}"
WAIT_SECONDS="${WAIT_SECONDS:-30}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-5}"

if ! command -v curl >/dev/null 2>&1; then
  echo "curl is required" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/health-checks.XXXXXX")"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
STATUS=""
BODY=""
HEADERS=""

# request METHOD PATH [curl options...]: sets STATUS (000 when no answer), BODY and HEADERS
# (headers with CR removed, one per line).
request() {
  local method="$1" path="$2"
  shift 2
  STATUS="$(curl -sS -X "$method" --max-time "$TIMEOUT_SECONDS" \
    -o "$work/body" -D "$work/headers" -w '%{http_code}' "$@" "$BASE_URL$path" 2>"$work/err")" ||
    STATUS="000"
  [[ -n "$STATUS" ]] || STATUS="000"
  BODY="$(cat "$work/body" 2>/dev/null || true)"
  HEADERS="$(tr -d '\r' <"$work/headers" 2>/dev/null || true)"
  : >"$work/body"
  : >"$work/headers"
}

# header NAME: value of the response header NAME (case-insensitive), empty when absent.
header() {
  grep -i "^$1:" <<<"$HEADERS" | tail -n 1 | sed -E 's/^[^:]*:[[:space:]]*//; s/[[:space:]]*$//'
}

# auth_args: curl options carrying the API key, when there is one.
auth_args=()
if [[ -n "$API_KEY" ]]; then auth_args=(-H "X-API-Key: $API_KEY"); fi

pass() {
  passed=$((passed + 1))
  echo "PASS  $1"
}

fail() {
  failed=$((failed + 1))
  echo "FAIL  $1: $2"
  if [[ -s "$work/err" ]]; then sed 's/^/      /' "$work/err"; fi
}

# check NAME REASON CONDITION...: PASS when the command CONDITION succeeds.
check() {
  local name="$1" reason="$2"
  shift 2
  if "$@"; then pass "$name"; else fail "$name" "$reason"; fi
}

is_json_object() { [[ "$BODY" =~ ^[[:space:]]*\{.*\}[[:space:]]*$ ]]; }
body_has() { grep -Eq -- "$1" <<<"$BODY"; }
status_is() {
  local s
  for s in "$@"; do [[ "$STATUS" == "$s" ]] && return 0; done
  return 1
}

# Waits for the token bucket of the trigger route to refill.
rate_pause() { sleep "$(awk -v r="$RATE_LIMIT_PER_SECOND" 'BEGIN { printf "%.2f", 1 / r + 0.2 }')"; }

trigger() {
  request POST /trigger-test-event ${auth_args[@]+"${auth_args[@]}"} "$@"
}

echo "Checking $BASE_URL"

# --- wait until the service is ready (or WAIT_SECONDS pass) -------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
while :; do
  request GET /health/ready
  [[ "$STATUS" == "200" || $SECONDS -ge $deadline ]] && break
  sleep 1
done
if [[ "$STATUS" != "200" ]]; then
  echo "note: /health/ready answers $STATUS after ${WAIT_SECONDS}s; publishing checks will fail"
fi

# --- probes and documents -----------------------------------------------------------------------
request GET /health/live
check "GET /health/live is 200 OK" "status $STATUS, body '${BODY:0:80}'" \
  eval '[[ "$STATUS" == 200 && "$BODY" == OK* ]]'
check "GET /health/live is text/plain" "content-type '$(header content-type)'" \
  eval '[[ "$(header content-type)" == text/plain* ]]'
check "security header X-Content-Type-Options: nosniff" "got '$(header x-content-type-options)'" \
  eval '[[ "$(header x-content-type-options)" == nosniff ]]'

request GET /health/ready
check "GET /health/ready is 200 or 503 with JSON status" "status $STATUS, body '${BODY:0:120}'" \
  eval 'status_is 200 503 && is_json_object && body_has "\"status\"[[:space:]]*:[[:space:]]*\"(not_)?ready\""'

request GET /health
check "GET /health is 200 or 503 with the detailed report" "status $STATUS, body '${BODY:0:120}'" \
  eval 'status_is 200 503 && is_json_object && body_has "\"status\"[[:space:]]*:[[:space:]]*\"(healthy|degraded|unhealthy)\"" && body_has "\"checks\""'

request GET /health-check
check "GET /health-check is 200 ok or 503 not ok" "status $STATUS, body '${BODY:0:80}'" \
  eval '[[ ( "$STATUS" == 200 && "$BODY" == ok* ) || ( "$STATUS" == 503 && "$BODY" == "not ok"* ) ]]'

request GET /metrics
if [[ "$METRICS_ENABLED" == "false" ]]; then
  check "GET /metrics is 404 (METRICS_ENABLED=false)" "status $STATUS" status_is 404
else
  check "GET /metrics is 200 Prometheus text" "status $STATUS, body '${BODY:0:80}'" \
    eval 'status_is 200 && body_has "^# (HELP|TYPE) "'
fi

request GET /openapi.json
check "GET /openapi.json is an OpenAPI 3 document" "status $STATUS, body '${BODY:0:80}'" \
  eval 'status_is 200 && is_json_object && body_has "\"openapi\"[[:space:]]*:[[:space:]]*\"3"'

request GET /no-such-route-for-health-checks
check "unknown path is 404 JSON not_found" "status $STATUS, body '${BODY:0:80}'" \
  eval 'status_is 404 && is_json_object && body_has "\"error\"[[:space:]]*:[[:space:]]*\"not_found\""'

# --- correlation ids ----------------------------------------------------------------------------
request GET /health/live -H "X-Correlation-ID: health-checks.sh:1234"
check "X-Correlation-ID is echoed" "got '$(header x-correlation-id)'" \
  eval '[[ "$(header x-correlation-id)" == "health-checks.sh:1234" ]]'

request GET /health/live -H "X-Correlation-ID: not valid!"
check "an invalid X-Correlation-ID is replaced by a UUID" "got '$(header x-correlation-id)'" \
  eval '[[ "$(header x-correlation-id)" =~ ^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$ ]]'

request GET /no-such-route-for-health-checks
check "X-Correlation-ID is present on a 404 too" "headers: $(tr '\n' ' ' <<<"$HEADERS")" \
  eval '[[ -n "$(header x-correlation-id)" ]]'

# --- trigger ------------------------------------------------------------------------------------
if [[ -n "$API_KEY" ]]; then
  request POST /trigger-test-event -H "Content-Type: application/json" -d '{}'
  check "POST /trigger-test-event without the API key is 401" "status $STATUS" status_is 401
  request POST /trigger-test-event -H "Content-Type: application/json" \
    -H "X-API-Key: wrong-$API_KEY" -d '{}'
  check "POST /trigger-test-event with a wrong API key is 401" "status $STATUS" status_is 401
  rate_pause
fi

trigger -H "Content-Type: application/json" -H "X-Correlation-ID: health-checks-trigger" \
  -d '{"event":"manual_test","aggregateId":"health-checks","data":{"source":"test-health-checks.sh"}}'
check "POST /trigger-test-event is 200 with success true" "status $STATUS, body '${BODY:0:160}'" \
  eval 'status_is 200 && body_has "\"success\"[[:space:]]*:[[:space:]]*true" && body_has "\"id\"[[:space:]]*:[[:space:]]*\"[0-9]+-[0-9]+\""'
check "trigger answer carries the request's correlation id" "body '${BODY:0:160}'" \
  body_has '"correlationId"[[:space:]]*:[[:space:]]*"health-checks-trigger"'

# Right after it, the bucket is empty: the next request (at most RATE_LIMIT_PER_SECOND more) is 429.
got_429=""
for ((i = 0; i < RATE_LIMIT_PER_SECOND; i++)); do
  trigger -H "Content-Type: application/json" -d '{}'
  if [[ "$STATUS" == "429" ]]; then
    got_429=1
    break
  fi
done
check "immediate second trigger is 429 with Retry-After" \
  "status $STATUS, Retry-After '$(header retry-after)'" \
  eval '[[ -n "$got_429" && "$(header retry-after)" =~ ^[0-9]+$ ]]'

rate_pause
trigger -H "Content-Type: application/json" -d '{"event": "manual_test",'
check "malformed JSON is 400 with success false" "status $STATUS, body '${BODY:0:120}'" \
  eval 'status_is 400 && body_has "\"success\"[[:space:]]*:[[:space:]]*false"'

rate_pause
trigger -H "Content-Type: application/json" -d '{"event":"has spaces and !"}'
check "schema violation is 400" "status $STATUS, body '${BODY:0:120}'" status_is 400

rate_pause
trigger -H "Content-Type: text/plain" -d 'hello'
check "wrong content type is 415" "status $STATUS, body '${BODY:0:120}'" status_is 415

rate_pause
big="$(head -c 11000 /dev/zero | tr '\0' 'x')"
trigger -H "Content-Type: application/json" -d "{\"data\":{\"pad\":\"$big\"}}"
check "body over 10 KB is 413" "status $STATUS" status_is 413

# Health probes are never rate limited.
all_200=1
for _ in 1 2 3 4 5 6 7 8 9 10; do
  request GET /health/live
  [[ "$STATUS" == "200" ]] || all_200=""
done
check "10 quick /health/live requests all answer 200" "last status $STATUS" eval '[[ -n "$all_200" ]]'

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
