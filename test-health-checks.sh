#!/usr/bin/env bash
# Smoke test of a running redis-stream-service over HTTP, with bash and curl only: every route of
# the README's HTTP API (probes, metrics, OpenAPI, trigger, /admin/streams, /admin/dlq/replay),
# the error shape, trailing slashes, 404/405, auth, body rules, idempotency and the rate limit.
#
#   ./test-health-checks.sh                      # against http://localhost:8000
#   BASE_URL=http://svc:8000 API_KEY=secret ./test-health-checks.sh
#
# Environment:
#   BASE_URL               service address (default http://localhost:8000)
#   API_KEY                the service's API_KEY, when it has one (admin routes and the trigger
#                          are called with it; without it they are expected to need none)
#   RATE_LIMIT_BURST       the service's trigger burst (default 10)
#   METRICS_ENABLED        false when the service runs with METRICS_ENABLED=false (default true)
#   STREAM                 stream to replay dead letters of (default: the first one /health names)
#   WAIT_SECONDS           how long to wait for /health/ready to answer 200 first (default 30)
#   TIMEOUT_SECONDS        per request (default 5)
#   ALLOW_NOT_READY        true: a service that is not ready (Redis away) is not a failure by
#                          itself; its 503 answers are checked instead (default false)
#
# Prints PASS/FAIL per check and, last, `N passed, N failed`; exits 1 when a check failed (a
# service that never got ready counts as one, unless ALLOW_NOT_READY=true), 2 without curl.
# When ready, it publishes a few `manual_test` events on the service's default stream and replays
# at most one dead-letter entry of STREAM.
set -uo pipefail

BASE_URL="${BASE_URL:-http://localhost:8000}"
BASE_URL="${BASE_URL%/}"
API_KEY="${API_KEY:-}"
RATE_LIMIT_BURST="${RATE_LIMIT_BURST:-10}"
METRICS_ENABLED="${METRICS_ENABLED:-true}"
STREAM="${STREAM:-}"
WAIT_SECONDS="${WAIT_SECONDS:-30}"
TIMEOUT_SECONDS="${TIMEOUT_SECONDS:-5}"
ALLOW_NOT_READY="${ALLOW_NOT_READY:-false}"

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
  local head=(-X "$method")
  [[ "$method" == HEAD ]] && head=(-I)
  STATUS="$(curl -sS "${head[@]}" --max-time "$TIMEOUT_SECONDS" \
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

# json_string FIELD: the first string value of "FIELD" in BODY (flat regex, no JSON parser).
json_string() {
  grep -oE "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" <<<"$BODY" | head -n 1 |
    sed -E 's/.*:[[:space:]]*"([^"]*)"$/\1/'
}

# auth: curl options carrying the API key, when there is one.
auth=()
if [[ -n "$API_KEY" ]]; then auth=(-H "X-API-Key: $API_KEY"); fi

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
# The one error shape: {"success": false, "error": "<code>", "message": "..."}.
is_error() {
  is_json_object && body_has '"success"[[:space:]]*:[[:space:]]*false' &&
    body_has "\"error\"[[:space:]]*:[[:space:]]*\"${1:-[a-z_]+}\"" &&
    body_has '"message"[[:space:]]*:[[:space:]]*"'
}
retry_after_ok() { [[ "$(header retry-after)" =~ ^[0-9]+$ ]]; }
# Wraps a short description of the last answer for FAIL lines.
seen() { echo "status $STATUS, body '${BODY:0:160}'"; }

trigger() { request POST /trigger-test-event ${auth[@]+"${auth[@]}"} "$@"; }
admin() { request "$1" "$2" ${auth[@]+"${auth[@]}"} "${@:3}"; }

# trigger_allowed ARGS...: a trigger request that, when rate limited, waits Retry-After and tries
# again (at most 5 times), so that earlier runs cannot make the publishing checks fail.
trigger_allowed() {
  local i
  for ((i = 0; i < 5; i++)); do
    trigger "$@"
    [[ "$STATUS" == "429" ]] || return 0
    sleep "$(header retry-after | grep -E '^[0-9]+$' || echo 1)"
  done
}

echo "Checking $BASE_URL"

# --- readiness (wait up to WAIT_SECONDS) --------------------------------------------------------
deadline=$((SECONDS + WAIT_SECONDS))
while :; do
  request GET /health/ready
  [[ "$STATUS" == "200" || $SECONDS -ge $deadline ]] && break
  sleep 1
done
READY=""
[[ "$STATUS" == "200" ]] && READY=1
if [[ -n "$READY" ]]; then
  pass "GET /health/ready is 200 ready"
elif [[ "$ALLOW_NOT_READY" == "true" ]]; then
  echo "note: not ready after ${WAIT_SECONDS}s ($(seen)); checking the not-ready answers"
  check "GET /health/ready is 503 not_ready with a reason" "$(seen)" \
    eval 'status_is 503 && body_has "\"status\"[[:space:]]*:[[:space:]]*\"not_ready\"" && body_has "\"reason\""'
else
  fail "GET /health/ready is 200 ready within ${WAIT_SECONDS}s" "$(seen)"
fi

# --- probes and documents -----------------------------------------------------------------------
request GET /health/live
check "GET /health/live is 200 OK text/plain" "$(seen), type '$(header content-type)'" \
  eval '[[ "$STATUS" == 200 && "$BODY" == OK* && "$(header content-type)" == text/plain* ]]'
check "security header X-Content-Type-Options: nosniff" "got '$(header x-content-type-options)'" \
  eval '[[ "$(header x-content-type-options)" == nosniff ]]'

request HEAD /health/live
check "HEAD /health/live is 200" "status $STATUS" status_is 200

request GET /health/live/
check "GET /health/live/ (trailing slash) answers as /health/live, no redirect" "$(seen)" \
  eval '[[ "$STATUS" == 200 && "$BODY" == OK* ]]'

request GET /health
if [[ -n "$READY" ]]; then
  check "GET /health is 200 healthy or degraded" "$(seen)" \
    eval 'status_is 200 && body_has "\"status\"[[:space:]]*:[[:space:]]*\"(healthy|degraded)\"" && body_has "\"checks\""'
else
  check "GET /health is 503 unhealthy" "$(seen)" \
    eval 'status_is 503 && body_has "\"status\"[[:space:]]*:[[:space:]]*\"unhealthy\"" && body_has "\"checks\""'
fi
[[ -n "$STREAM" ]] || STREAM="$(json_string stream | cut -d, -f1)"

request GET /health-check
if [[ -n "$READY" ]]; then
  check "GET /health-check is 200 ok" "$(seen)" eval '[[ "$STATUS" == 200 && "$BODY" == ok* ]]'
else
  check "GET /health-check is 503 not ok" "$(seen)" \
    eval '[[ "$STATUS" == 503 && "$BODY" == "not ok"* ]]'
fi

request GET /metrics
if [[ "$METRICS_ENABLED" == "false" ]]; then
  check "GET /metrics is 404 not_found (METRICS_ENABLED=false)" "$(seen)" \
    eval 'status_is 404 && is_error not_found'
else
  check "GET /metrics is 200 Prometheus text" "status $STATUS, body '${BODY:0:80}'" \
    eval 'status_is 200 && body_has "^# (HELP|TYPE) " && body_has "^http_requests_total"'
fi

request GET /openapi.json
check "GET /openapi.json is an OpenAPI 3 document" "status $STATUS, body '${BODY:0:80}'" \
  eval 'status_is 200 && is_json_object && body_has "\"openapi\"[[:space:]]*:[[:space:]]*\"3" && body_has "/admin/dlq/replay"'

# --- errors, correlation ids --------------------------------------------------------------------
request GET /no-such-route-for-health-checks -H "X-Correlation-ID: health-checks.sh:404"
check "unknown path is 404 with the error shape" "$(seen)" eval 'status_is 404 && is_error not_found'
check "X-Correlation-ID is echoed (on a 404 too)" "got '$(header x-correlation-id)'" \
  eval '[[ "$(header x-correlation-id)" == "health-checks.sh:404" ]]'

request GET /health/live -H "X-Correlation-ID: not valid!"
check "an invalid X-Correlation-ID is replaced by a UUID" "got '$(header x-correlation-id)'" \
  eval '[[ "$(header x-correlation-id)" =~ ^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$ ]]'

request POST /health/live
check "POST /health/live is 405 with Allow: GET, HEAD" "$(seen), Allow '$(header allow)'" \
  eval 'status_is 405 && is_error method_not_allowed && [[ "$(header allow)" == "GET, HEAD" ]]'

request GET /trigger-test-event
check "GET /trigger-test-event is 405 with Allow: POST" "$(seen), Allow '$(header allow)'" \
  eval 'status_is 405 && is_error method_not_allowed && [[ "$(header allow)" == POST ]]'

# --- API key ------------------------------------------------------------------------------------
if [[ -n "$API_KEY" ]]; then
  request POST /trigger-test-event -H "Content-Type: application/json" -d '{}'
  check "POST /trigger-test-event without the API key is 401" "$(seen)" \
    eval 'status_is 401 && is_error unauthorized'
  request POST /trigger-test-event -H "Content-Type: application/json" \
    -H "X-API-Key: wrong-$API_KEY" -d '{}'
  check "POST /trigger-test-event with a wrong API key is 401" "$(seen)" status_is 401
  request GET /admin/streams
  check "GET /admin/streams without the API key is 401" "$(seen)" \
    eval 'status_is 401 && is_error unauthorized'
  request POST /admin/dlq/replay -H "Content-Type: application/json" -d '{"stream":"x"}'
  check "POST /admin/dlq/replay without the API key is 401" "$(seen)" status_is 401
  request GET /admin/streams -H "Authorization: Bearer $API_KEY" -H "X-API-Key: wrong-key"
  check "the right Bearer key is enough beside a wrong X-API-Key" "$(seen)" \
    eval 'status_is 200 || { [[ -z "$READY" ]] && status_is 503; }'
fi

# --- trigger: body rules (validated before the rate limit: they spend no token) ----------------
trigger -H "Content-Type: application/json" -d '{"event": "manual_test",'
check "malformed JSON is 400 invalid_json" "$(seen)" eval 'status_is 400 && is_error invalid_json'

trigger -H "Content-Type: application/json" -d '{"event":"has spaces and !"}'
check "schema violation is 400 validation_failed with details" "$(seen)" \
  eval 'status_is 400 && is_error validation_failed && body_has "\"details\""'

trigger -H "Content-Type: text/plain" -d 'hello'
check "a text/plain body is 415" "$(seen)" eval 'status_is 415 && is_error unsupported_media_type'

big="$(head -c 11000 /dev/zero | tr '\0' 'x')"
trigger -H "Content-Type: application/json" -d "{\"data\":{\"pad\":\"$big\"}}"
check "a body over 10 KB is 413" "$(seen)" eval 'status_is 413 && is_error payload_too_large'

# --- trigger: publishing ------------------------------------------------------------------------
if [[ -n "$READY" ]]; then
  trigger_allowed -H "Content-Type: application/json" -H "X-Correlation-ID: health-checks-trigger" \
    -d '{"event":"manual_test","aggregateId":"health-checks","data":{"source":"test-health-checks.sh"}}'
  check "POST /trigger-test-event publishes (200, success true, entry id)" "$(seen)" \
    eval 'status_is 200 && body_has "\"success\"[[:space:]]*:[[:space:]]*true" && body_has "\"id\"[[:space:]]*:[[:space:]]*\"[0-9]+-[0-9]+\""'
  check "the answer carries the request's correlation id" "$(seen)" \
    body_has '"correlationId"[[:space:]]*:[[:space:]]*"health-checks-trigger"'

  request POST /trigger-test-event/ ${auth[@]+"${auth[@]}"}
  [[ "$STATUS" == 429 ]] && sleep "$(header retry-after)" &&
    request POST /trigger-test-event/ ${auth[@]+"${auth[@]}"}
  check "POST /trigger-test-event/ (trailing slash, empty body) publishes" "$(seen)" \
    eval 'status_is 200 && body_has "\"event\"[[:space:]]*:[[:space:]]*\"manual_test\""'

  key="health-checks-$$-$(date +%s)"
  trigger_allowed -H "Content-Type: application/json" -H "Idempotency-Key: $key" -d '{}'
  first_id="$(json_string id)"
  check "an Idempotency-Key publishes once (duplicate false)" "$(seen)" \
    eval 'status_is 200 && body_has "\"duplicate\"[[:space:]]*:[[:space:]]*false"'
  trigger_allowed -H "Content-Type: application/json" -H "Idempotency-Key: $key" -d '{}'
  check "the same Idempotency-Key again answers the first id with duplicate true" "$(seen)" \
    eval 'status_is 200 && body_has "\"duplicate\"[[:space:]]*:[[:space:]]*true" && [[ "$(json_string id)" == "$first_id" ]]'

  # Spend the rest of the burst: a 429 with Retry-After comes within RATE_LIMIT_BURST + 5 more
  # (tokens come back at RATE_LIMIT_PER_SECOND meanwhile).
  got_429=""
  for ((i = 0; i < RATE_LIMIT_BURST + 5; i++)); do
    trigger
    if [[ "$STATUS" == "429" ]]; then
      got_429=1
      break
    fi
  done
  check "past the burst, the trigger is 429 rate_limited with Retry-After" \
    "$(seen), Retry-After '$(header retry-after)'" \
    eval '[[ -n "$got_429" ]] && is_error rate_limited && retry_after_ok'
else
  trigger
  check "POST /trigger-test-event is 503 with Retry-After while not ready" \
    "$(seen), Retry-After '$(header retry-after)'" \
    eval 'status_is 503 && is_error && retry_after_ok'
fi

# --- admin --------------------------------------------------------------------------------------
admin GET /admin/streams
if [[ -n "$READY" ]]; then
  check "GET /admin/streams is 200 with the streams" "$(seen)" \
    eval 'status_is 200 && body_has "\"streams\"[[:space:]]*:[[:space:]]*\[" && body_has "\"deadLetter\""'
  [[ -n "$STREAM" ]] || STREAM="$(json_string stream)"
else
  check "GET /admin/streams is 503 with Retry-After while not ready" "$(seen)" \
    eval 'status_is 503 && is_error && retry_after_ok'
fi

admin POST /admin/dlq/replay -H "Content-Type: text/plain" -d "{\"stream\":\"$STREAM\"}"
check "POST /admin/dlq/replay with a text/plain body is 415" "$(seen)" \
  eval 'status_is 415 && is_error unsupported_media_type'
admin POST /admin/dlq/replay -H "Content-Type: application/json" -d '{}'
check "POST /admin/dlq/replay without a stream is 400 validation_failed" "$(seen)" \
  eval 'status_is 400 && is_error validation_failed'
admin POST /admin/dlq/replay -H "Content-Type: application/json" -d "{\"stream\":\"$STREAM\",\"count\":10001}"
check "POST /admin/dlq/replay with count over 10000 is 400" "$(seen)" status_is 400
admin POST /admin/dlq/replay -H "Content-Type: application/json" \
  -d "{\"stream\":\"$STREAM\",\"pad\":\"$big\"}"
check "POST /admin/dlq/replay with a body over 10 KB is 413" "$(seen)" \
  eval 'status_is 413 && is_error payload_too_large'
admin POST /admin/dlq/replay -H "Content-Type: application/json" -d "{\"stream\":\"$STREAM\",\"count\":1}"
if [[ -n "$READY" ]]; then
  check "POST /admin/dlq/replay of $STREAM (count 1) is 200" "$(seen)" \
    eval 'status_is 200 && body_has "\"success\"[[:space:]]*:[[:space:]]*true" && body_has "\"replayed\"[[:space:]]*:[[:space:]]*[01]"'
else
  check "POST /admin/dlq/replay is 503 with Retry-After while not ready" "$(seen)" \
    eval 'status_is 503 && is_error && retry_after_ok'
fi

# --- probes are never rate limited --------------------------------------------------------------
all_200=1
for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  request GET /health/live
  [[ "$STATUS" == "200" ]] || all_200=""
done
check "15 quick /health/live requests all answer 200" "last status $STATUS" eval '[[ -n "$all_200" ]]'

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
