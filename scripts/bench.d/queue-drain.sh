# shellcheck shell=bash
# shellcheck disable=SC2154  # dir: set by scripts/bench
# scripts/bench's queue drain, sourced by it: one stream worker working off one partition's
# backlog, entry after entry, with nothing else running (no wrk, no nginx, no front door). A
# partition's entries are worked in order by one worker at a time, so this is how fast one
# partition (and so one user) can go, and the worker's own cost per entry.

# Appends COUNT realistic updates (an unknown command, the loadtest's body: a new user each,
# so each is answered through the Bot API stand-in) to partition 0's stream, as the front
# door stores them, in one pipe.
fill_partition() {  # COUNT
    LC_ALL=C awk -v n="$1" 'BEGIN {
        for (i = 1; i <= n; i++) {
            id = 7000000 + i
            body = sprintf("{\"update_id\":%d,\"message\":{\"message_id\":%d,\"from\":{\"id\":%d,\"is_bot\":false,\"first_name\":\"Load\",\"last_name\":\"Tester\",\"username\":\"load_tester\",\"language_code\":\"en\"},\"chat\":{\"id\":%d,\"first_name\":\"Load\",\"last_name\":\"Tester\",\"username\":\"load_tester\",\"type\":\"private\"},\"date\":1700000000,\"text\":\"/nosuchcommand hello there\",\"entities\":[{\"type\":\"bot_command\",\"offset\":0,\"length\":14}]}}", id, i, id, id)
            printf "*7\r\n$4\r\nXADD\r\n$14\r\n{tgq:0}:stream\r\n$1\r\n*\r\n$1\r\nu\r\n$%d\r\n%s\r\n$1\r\na\r\n$1\r\n0\r\n", length(body), body
        }
    }' | redis-cli -s "$dir/redis.sock" --pipe >/dev/null
}

# BINARY works off COUNT entries with one partition and one worker (QUEUE_PARTITIONS=1,
# QUEUE_WORKERS=1). Timed from the first look that finds 50 entries done or more (the process
# started, the partition taken) until the stream is empty. Prints "ENTRIES SECONDS RESPONDER_US
# REDIS_US" (the CPU per entry of the responder process and of redis-server over that time).
queue_drain() {  # BINARY COUNT
    local binary="$1" count="$2" length started="" start_ticks="" ended="" end_ticks="" timed
    { cat "$dir/.env"; printf 'DELIVERY_MODE=queue\nQUEUE_PARTITIONS=1\nQUEUE_WORKERS=1\n'; } >"$dir/drain.env"
    redis-cli -s "$dir/redis.sock" flushall >/dev/null
    fill_partition "$count"
    spawn_pool "$binary" --env-file "$dir/drain.env"
    # One redis-cli polls the length every 20 ms (60 s at most); bash's clock reads the time.
    while read -r length; do
        if [ -z "$started" ] && [ "$length" -le $((count - 50)) ]; then
            started="$EPOCHREALTIME" timed="$length"
            start_ticks="$(ticks "$(cat "$dir/pool.pid")" "$(cat "$dir/redis.pid")")"
        fi
        if [ -n "$started" ] && [ "$length" -eq 0 ]; then
            ended="$EPOCHREALTIME"
            end_ticks="$(ticks "$(cat "$dir/pool.pid")" "$(cat "$dir/redis.pid")")"
            break
        fi
    done < <(redis-cli -s "$dir/redis.sock" -r 3000 -i 0.02 xlen "{tgq:0}:stream")
    stop_pids "$dir/pool.pid"
    [ -n "$ended" ] || { echo "0 0 0 0"; return; }
    awk -v n="$timed" -v s="$started" -v e="$ended" -v a="$start_ticks" -v b="$end_ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, t0, " "); split(b, t1, " ")
        printf "%d %.3f %.0f %.0f", n, e - s, (t1[1] - t0[1]) * 1e6 / hz / n, (t1[2] - t0[2]) * 1e6 / hz / n }'
}
