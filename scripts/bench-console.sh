#!/usr/bin/env bash
# Measures the web console on a store of N jobs (default 1,000,000): render time (p50, p95
# over 40 requests) and HTML size of each list page, a bulk retry of 100,000 matching jobs,
# and the daemon's CPU with ten idle dashboards open (server-sent-event streams) against none.
# Usage: scripts/bench-console.sh [path/to/fabric] [jobs]
set -euo pipefail
FABRIC="${1:-target/release/fabric}"
N="${2:-1000000}"
RETRY=100000
PORT=$((20000 + RANDOM % 20000))
BASE="http://127.0.0.1:$PORT"
TOKEN=bench-admin-token
export FABRIC_HOME="$(mktemp -d)"
trap '"$FABRIC" stop --all --force >/dev/null 2>&1 || true; rm -rf "$FABRIC_HOME"' EXIT
mkdir -p "$FABRIC_HOME/config"
printf 'api:\n  listen: 127.0.0.1:%s\n  tokens:\n    - {name: bench, token: %s, role: admin}\n' "$PORT" "$TOKEN" \
    > "$FABRIC_HOME/config/fabric.yaml"
chmod 600 "$FABRIC_HOME/config/fabric.yaml"

echo "== a store of $N jobs (kinds noop/sleep/shell over 4 shards)"
python3 - "$N" > "$FABRIC_HOME/jobs.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
kinds = ["noop", "sleep", "shell"]
shards = ["earth", "mars", "venus", "edge"]
for i in range(n):
    payload = {"ms": 1} if i % 3 == 1 else ({"cmd": ["true"]} if i % 3 == 2 else {"i": i})
    print(json.dumps({"kind": kinds[i % 3], "shard": shards[i % 4], "payload": payload,
                      "run_at": 4102444800000}))
PY
t0=$(date +%s.%N)
"$FABRIC" jobs submit --file "$FABRIC_HOME/jobs.jsonl" >/dev/null
echo "submitted in $(echo "$(date +%s.%N) - $t0" | bc) s"
# The fixture, a store with history: the oldest $RETRY jobs quarantined with an error and a
# quarantine entry (as a failing source leaves them), the newest $PENDING still pending (due
# in 2099), every other one succeeded. (A store of a million jobs all pending in the future is another matter: the
# dispatcher's idle poll then reads the whole queue; see docs/benchmarks.md.)
PENDING=20000
sqlite3 "$FABRIC_HOME/queue.db" "UPDATE jobs SET state = 'quarantined', attempt = max_attempts,
    last_error = 'parse error: unexpected end of file', finished_at = updated_at
    WHERE id <= $RETRY;
  INSERT INTO quarantine (job_id, reason, error, failure, attempts, quarantined_at)
    SELECT id, 'parse_error', last_error, 'permanent', attempt, updated_at FROM jobs
    WHERE id <= $RETRY;
  UPDATE jobs SET state = 'succeeded', attempt = 1, started_at = updated_at,
    finished_at = updated_at WHERE id > $RETRY AND id <= $N - $PENDING;"
"$FABRIC" start >/dev/null
until curl -sf -o /dev/null "$BASE/api/v1/ping"; do sleep 0.2; done
H=(-H "Authorization: Bearer $TOKEN")

echo "== list pages: p50 / p95 / max render time (40 requests each; the first of the overview"
echo "   measures the counts and the SLOs, the rest share those measurements), HTML bytes"
for page in "/ui" "/ui/jobs" "/ui/jobs?state=quarantined" "/ui/jobs?kind=shell&shard=mars" \
            "/ui/jobs?q=unexpected" "/ui/jobs?state=succeeded&before=500000" "/ui/jobs?state=pending" "/ui/quarantine" \
            "/ui/shards" "/ui/sources" "/ui/batches" "/ui/schedules" "/ui/bus" "/ui/alerts" "/ui/audit"; do
    for i in $(seq 40); do
        curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "${H[@]}" "$BASE$page"
    done | sort -n | awk -v p="$page" '{t[NR]=$1; s=$2} END {printf "%-40s p50 %6.1f ms  p95 %6.1f ms  max %6.1f ms  %7d B\n", p, t[int(NR*0.5)]*1000, t[int(NR*0.95)]*1000, t[NR]*1000, s}'
done

PID=$(cat "$FABRIC_HOME"/run/*.pid 2>/dev/null | head -1 || pgrep -f "$FABRIC.*daemon" | head -1)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
TICK=$(getconf CLK_TCK)
SECS="${SECS:-60}"
echo "== daemon CPU over ${SECS} s: no dashboard, then ten idle dashboards"
a=$(cpu); sleep $SECS; b=$(cpu)
echo "no dashboard:        $(echo "scale=3; ($b - $a) * 100 / $TICK / $SECS" | bc) % of a core"
for i in $(seq 10); do curl -s -N "${H[@]}" "$BASE/ui/events" >/dev/null & done
sleep 2
a=$(cpu); sleep $SECS; b=$(cpu)
echo "ten idle dashboards: $(echo "scale=3; ($b - $a) * 100 / $TICK / $SECS" | bc) % of a core"
kill $(jobs -p) 2>/dev/null || true
echo "== bulk retry of every quarantined job ($RETRY)"
CSRF=$(curl -s "${H[@]}" "$BASE/ui/jobs" | grep -o 'name="csrf-token" content="[0-9a-f]*"' | grep -o '[0-9a-f]\{64\}')
t0=$(date +%s.%N)
LOC=$(curl -s -o /dev/null -w '%{redirect_url}' "${H[@]}" \
    -d "csrf=$CSRF&action=retry&request=bench-$RANDOM&state=quarantined" "$BASE/ui/jobs/bulk")
until curl -s "${H[@]}" "$LOC" | grep -q 'id="bulk-state"><span class="state state-succeeded"'; do sleep 0.1; done
t1=$(date +%s.%N)
curl -s "${H[@]}" "$LOC" | grep -o 'id="bulk-\(matched\|done\|skipped\)">[0-9]*' | tr '\n' ' '; echo
echo "bulk retry took $(echo "$t1 - $t0" | bc) s (submit to the bulk job's end, polled every 0.1 s)"

