-- wrk script for scripts/loadtest: posts Telegram-shaped updates with distinct update ids and
-- user ids, then prints one summary line. Ids are unique across runs too (LOADTEST_RUN, set by
-- scripts/loadtest from the clock), so no run meets the dedupe marks or rate limits of another.
local kind = os.getenv("LOADTEST_KIND") or "unknown-command"
local secret = os.getenv("LOADTEST_SECRET") or ""
-- 0: every update from its own user; N: users repeat every N updates.
local users = tonumber(os.getenv("LOADTEST_USERS") or "0")
local run = tonumber(os.getenv("LOADTEST_RUN") or "0")
-- LOADTEST_RATE > 0 paces the whole run at about that many requests a second (wrk's delay()
-- per connection), for latency at a fixed load rather than at saturation.
local rate = tonumber(os.getenv("LOADTEST_RATE") or "0")
local connections = tonumber(os.getenv("LOADTEST_CONNECTIONS") or "1")

local threads = {}
local thread_index = 0

function setup(thread)
  -- Below 2^53, so Lua's doubles keep every id exact.
  thread:set("base", (run % 100000) * 10000000000 + thread_index * 1000000000)
  thread_index = thread_index + 1
  table.insert(threads, thread)
end

local counter = 0
local templates = {
  -- A private-chat message as Telegram sends one: names, username, language, a bot_command entity.
  ["unknown-command"] = '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"Load","last_name":"Tester","username":"load_tester","language_code":"en"},"chat":{"id":%d,"first_name":"Load","last_name":"Tester","username":"load_tester","type":"private"},"date":1700000000,"text":"/nosuchcommand hello there","entities":[{"type":"bot_command","offset":0,"length":14}]}}',
  ["start"] = '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"Load"},"chat":{"id":%d,"type":"private"},"date":1700000000,"text":"/start","entities":[{"type":"bot_command","offset":0,"length":6}]}}',
  ["text"] = '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"Load"},"chat":{"id":%d,"type":"private"},"date":1700000000,"text":"hello from the load test"}}',
  -- The conversation stand-in answers "two actions" with two messages: one Bot API call, one webhook reply.
  ["full"] = '{"update_id":%d,"message":{"message_id":%d,"from":{"id":%d,"is_bot":false,"first_name":"Load"},"chat":{"id":%d,"type":"private"},"date":1700000000,"text":"two actions"}}',
}
local template = templates[kind] or templates["unknown-command"]
local headers = {
  ["Content-Type"] = "application/json",
  ["X-Telegram-Bot-Api-Secret-Token"] = secret,
}

function request()
  counter = counter + 1
  local id = base + counter
  local user = id
  if users > 0 then user = 100000 + (id % users) end
  return wrk.format("POST", nil, headers, string.format(template, id, id, user, user))
end

if rate > 0 then
  function delay()
    return 1000 * connections / rate
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "loadtest: kind=%s requests=%d duration_s=%.1f rps=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f non2xx=%d socket_errors=%d (connect=%d read=%d write=%d timeout=%d)\n",
    kind, summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout))
end
