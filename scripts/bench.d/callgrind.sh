# shellcheck shell=bash
# shellcheck disable=SC2154  # dir, here, secret, seconds, url: set by scripts/bench
# scripts/bench's instruction counts, sourced by it (they use its settings, helpers and pool):
# the repeatable figure beside the noisy ones, counted under callgrind in the responder and in
# redis-server. Each count zeroes the counters after a warm-up, counts the same seconds idle and
# under one connection's load, and divides the difference by the updates answered.

# The counting itself: PID runs under callgrind, dumping into DIR; the load is loadtest's with
# ARGS. Prints "instructions per update (updates; idle instructions in the same time)".
count_under_load() {  # PID DIR ARGS...
    local pid="$1" out="$2" idle busy line
    shift 2
    dumped() {  # the newest dump's total instructions
        awk '/^(summary|totals):/ { total = $2 } END { print total + 0 }' "$(ls -t "$out"/callgrind.*.* | head -n 1)"
    }
    LOADTEST_SECRET="$secret" "$here/loadtest" -d 3 -c 1 -t 1 "$@" "$url/webhook/telegram" >/dev/null 2>&1  # warm-up
    callgrind_control -z "$pid" >/dev/null
    sleep "$seconds"
    callgrind_control -d "$pid" >/dev/null
    idle="$(dumped)"
    callgrind_control -z "$pid" >/dev/null
    line="$(LOADTEST_SECRET="$secret" "$here/loadtest" -d "$seconds" -c 1 -t 1 "$@" "$url/webhook/telegram" 2>/dev/null)"
    callgrind_control -d "$pid" >/dev/null
    busy="$(dumped)"
    awk -v busy="$busy" -v idle="$idle" -v n="$(field requests "$line")" \
        'BEGIN { printf "%.0f (%d updates; %.0f idle in the same time)", (busy - idle) / (n > 0 ? n : 1), n, idle }'
}

# The responder's instructions per update (one thread, one connection), counted only inside the
# FastCGI thread's handling of a request (ResponderPool.respond: the parameters, the body,
# decoding, the Redis round trips, routing, the service call where there is one, the log line,
# the answer).
instructions() {  # BINARY [KIND] (KIND: loadtest's, unknown-command by default)
    local pid tries=0
    pool_threads=1 start_pool "$(command -v valgrind)" --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" \
        --toggle-collect='$s14GatewayFastCGI13ResponderPoolC7respond*' "$1" --env-file "$dir/.env"
    pid="$(cat "$dir/pool.pid")"
    until LOADTEST_SECRET="$secret" "$here/loadtest" -d 1 -c 1 -t 1 "$url/webhook/telegram" 2>/dev/null | grep -q ' requests=[1-9][0-9]* .* non2xx=0 '; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || { stop_pids "$dir/pool.pid"; fatal "the responder under callgrind does not answer"; }
        sleep 0.5
    done
    count_under_load "$pid" "$dir" -k "${2:-unknown-command}"
    stop_pids "$dir/pool.pid"
    rm -f "$dir"/callgrind.*
}

# Redis's instructions per update: redis-server under callgrind (append-only, as in the bench)
# while a normal responder serves one connection's gateway-path updates, from new users (USERS
# 0, the bench's load) or from USERS returning ones. The responder's own background calls
# (leases, the fleet) and Redis's timers are in the idle count subtracted; with BENCH_SECONDS=5
# the figure swung by up to 10 % between runs, with 15 by a few %.
redis_instructions() {  # BINARY USERS
    local cg="$dir/cg-redis" pid tries=0
    rm -rf "$cg"
    mkdir -p "$cg"
    valgrind --tool=callgrind --callgrind-out-file="$cg/callgrind.%p" redis-server --port 0 --unixsocket "$cg/redis.sock" \
        --unixsocketperm 700 --dir "$cg" --appendonly yes --appendfsync everysec --save "" --logfile "$cg/redis.log" \
        >"$cg/valgrind.log" 2>&1 &
    pid=$!
    echo "$pid" >"$cg/redis.pid"
    until [ "$(redis-cli -s "$cg/redis.sock" ping 2>/dev/null)" = PONG ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 300 ] || { stop_pids "$cg/redis.pid"; fatal "redis-server under callgrind does not answer"; }
        sleep 0.2
    done
    # One stream worker: the sixteen of the default, polling their streams, were a third of
    # Redis's idle work here; subtracted, but it swings with the machine.
    { grep -v '^REDIS_SOCKET=' "$dir/.env"; printf 'REDIS_SOCKET=%s\nQUEUE_PARTITIONS=1\nQUEUE_WORKERS=1\n' "$cg/redis.sock"; } >"$cg/gateway.env"
    start_pool "$1" --env-file "$cg/gateway.env"
    count_under_load "$pid" "$cg" -u "$2"
    stop_pids "$dir/pool.pid"
    stop_pids "$cg/redis.pid"
    rm -rf "$cg"
}
