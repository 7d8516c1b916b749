#!/bin/bash
# Bar c of issue #11 with timed reads: a 10,000-server rollout (1,000 in parallel, 2 steps of
# 2 s) from baton-loadgen, sampling `baton status` and a /metrics scrape while it runs.
# DB=postgres://... to use PostgreSQL (default: a SQLite file in /tmp).
set -u
B=${B:-target/release}   # run from the repository root after a release build
rm -f /tmp/bench.db*
$B/baton-loadgen --workers 10000 --write-fleet /tmp/load10k.toml --write-runbook /tmp/load10k-runbook.toml --fleet-max-parallel 1000 --step-time 2s --runbook-steps 2 > /tmp/plan10k.txt
$B/baton-controller --listen 127.0.0.1:7411 --db "${DB:-sqlite:///tmp/bench.db}" --http 127.0.0.1:9411 2> /tmp/controller-reads.log &
CPID=$!
sleep 1
$B/baton-loadgen --workers 10000 --connect-rate 2000/s --step-time 2s --duration 150s --report-every 10s > /tmp/loadgen-reads.out 2>&1 &
LPID=$!
until grep -q "welcomed after" /tmp/loadgen-reads.out; do sleep 0.5; done
export BATON_CONTROLLER=http://127.0.0.1:7411
ID=$($B/baton apply /tmp/load10k.toml --runbook /tmp/load10k-runbook.toml)
sleep 5
for i in 1 2 3 4 5; do
  s=$(date +%s.%N); $B/baton status $ID --format json > /tmp/status10k.json; e=$(date +%s.%N)
  m0=$(date +%s.%N); curl -s http://127.0.0.1:9411/metrics > /tmp/metrics10k.prom; m1=$(date +%s.%N)
  echo "status $(echo "$e - $s" | bc) s ($(stat -c %s /tmp/status10k.json) bytes); metrics $(echo "$m1 - $m0" | bc) s ($(stat -c %s /tmp/metrics10k.prom) bytes)"
  sleep 3
done
until [ "$($B/baton status $ID --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" != running ]; do sleep 1; done
$B/baton status $ID --format json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], "elapsed", d["elapsed_s"], "plan", d["planned_makespan_s"], "ratio", round(d["elapsed_s"]/d["planned_makespan_s"],3), "succeeded", sum(1 for s in d["servers"] if s["state"]=="succeeded"))'
kill $LPID; wait $LPID 2>/dev/null; grep -E "drops" /tmp/loadgen-reads.out | tail -1
kill $CPID; wait $CPID 2>/dev/null
rm -f /tmp/bench.db*
