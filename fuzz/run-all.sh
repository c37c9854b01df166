#!/bin/sh
# Runs every fuzz target in turn (one job, one core) for SECONDS each (default 600), new
# inputs going to corpus-run/<target>/ (not committed), crashes to artifacts/<target>/, and
# the libFuzzer log to runs/<target>.log. Usage: fuzz/run-all.sh [SECONDS] [target...]
set -u
cd "$(dirname "$0")"
secs=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-"ini expand types config_load xmlrpc_call xmlrpc_response xmlrpc_roundtrip base64 shlex output ctl_transport http_server"}
mkdir -p runs
cargo +nightly fuzz build -O -s none --fuzz-dir . || exit 1
for t in $targets; do
    mkdir -p "corpus-run/$t"
    cargo +nightly fuzz run -O -s none --fuzz-dir . "$t" "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=5 -rss_limit_mb=2048 -malloc_limit_mb=512 \
        -print_final_stats=1 > "runs/$t.log" 2>&1
    echo "$t: exit $?; $(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "runs/$t.log" | tail -1)"
done
