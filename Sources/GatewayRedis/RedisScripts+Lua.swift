/// The Lua functions the scripts share, prepended to a script's own source: Redis's clock, the
/// token bucket, a subject's pace (its bucket and its own chat's window in one string), the
/// outbox, and the bot-wide budget's window.
extension RedisScripts {
    /// Redis's clock in milliseconds, shared by the scripts: every responder on every host
    /// agrees on it. Read once per call of a script (a script runs at one instant).
    static let clock = #"""
        local clock_now = nil
        local function now_ms()
          if not clock_now then
            local time = redis.call('TIME')
            clock_now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
          end
          return clock_now
        end

        """#

    /// The token bucket on Redis's clock, in milli-tokens (see TokenBucket.swift):
    /// `take_bucket(tokens, at, warned, capacity, window ms, now)` returns allowed, warn and the
    /// bucket after the update (`tokens`, `at`, `warned`; nil tokens: a full bucket).
    static let bucketCore =
        clock + #"""
            local function take_bucket(tokens, at, warned, capacity, window, now)
              local full = capacity * 1000
              tokens, at = tokens or full, at or now
              local elapsed = math.min(math.max(0, now - at), window)
              local refill = math.floor(elapsed * full / window)
              tokens = math.min(full, tokens + refill)
              if tokens < full then at = at + math.floor(refill * window / full) else at = now end
              local allowed = tokens >= 1000
              local warn = 0
              if allowed then
                tokens = tokens - 1000
              elseif (not warned) or now - warned >= window then
                warned = now
                warn = 1
              end
              return allowed, warn, tokens, at, warned
            end

            """#

    /// Queue mode's token bucket, one string of its own (`MILLI_TOKENS AT [WARNED]`, Redis ms)
    /// set with its expiry: `take(key, capacity, window ms)` returns allowed, warn.
    static let tokenBucket =
        bucketCore + #"""
            local function take(key, capacity, window)
              local now = now_ms()
              local tokens, at, warned = nil, nil, nil
              local bucket = redis.call('GET', key)
              if bucket then
                local t, a, w = string.match(bucket, '^(%-?%d+) (%-?%d+) ?(%-?%d*)$')
                tokens, at, warned = tonumber(t), tonumber(a), tonumber(w)
              end
              local allowed, warn
              allowed, warn, tokens, at, warned = take_bucket(tokens, at, warned, capacity, window, now)
              local value = string.format('%d %d', tokens, at)
              if warned then value = value .. string.format(' %d', warned) end
              redis.call('SET', key, value, 'PX', window * 2)
              return allowed, warn
            end

            """#

    /// A subject's pace, one string read once and written at most once per script: its token
    /// bucket and the sending window of its own chat (a user's private chat, or a group),
    /// `TOKENS AT UNTIL [WARNED]|KEEP T1 T2 …` (Redis ms). The bucket part is empty when there
    /// is none (a group) or it was forgotten (UNTIL passed: it is full again); the window is the
    /// send times, reservations included, ascending, and KEEP when the last has left the window
    /// (the key's expiry is the later of UNTIL and KEEP). `pace_read(key, now)` returns a table;
    /// `pace_take` takes a token from its bucket; `pace_earliest(pace, limit, span, now)` is when
    /// the next message may go (dropping sends that left the window); `pace_reserve` records one;
    /// `pace_write` stores it. `admit(…)` takes a webhook reply's slot now when nothing waits in
    /// the outbox before it (`empty`: known so already), and otherwise appends the reply to the
    /// outbox.
    static let pace =
        bucketCore + outbox + #"""
            local function pace_read(key, now)
              local pace = {times = {}, keep = 0}
              local value = redis.call('GET', key)
              if not value then return pace end
              local head, keep, tail = string.match(value, '^([^|]*)|(%d*) ?(.*)$')
              if not head then return pace end
              local t, a, u, w = string.match(head, '^(%-?%d+) (%-?%d+) (%d+) ?(%-?%d*)$')
              if t and tonumber(u) > now then
                pace.tokens, pace.at, pace.until_at, pace.warned = tonumber(t), tonumber(a), tonumber(u), tonumber(w)
              end
              pace.keep = tonumber(keep) or 0
              for time in string.gmatch(tail, '%d+') do pace.times[#pace.times + 1] = tonumber(time) end
              return pace
            end

            local function pace_take(pace, capacity, window, now)
              local allowed, warn
              allowed, warn, pace.tokens, pace.at, pace.warned = take_bucket(pace.tokens, pace.at, pace.warned, capacity, window, now)
              pace.until_at = now + window * 2
              return allowed, warn
            end

            local function pace_earliest(pace, limit, span, now)
              local kept = {}
              for _, time in ipairs(pace.times) do if time > now - span then kept[#kept + 1] = time end end
              pace.times = kept
              local count = #kept
              if count < limit then return now end
              return math.max(now, kept[count - limit + 1] + span)
            end

            local function pace_reserve(pace, at, span)
              local times = pace.times
              local place = #times + 1
              while place > 1 and times[place - 1] > at do place = place - 1 end
              table.insert(times, place, at)
              -- The window is kept until its latest reservation has left it (and a second).
              pace.keep = math.max(pace.keep, at + span + 1000)
            end

            local function pace_write(key, pace)
              local head = ''
              local expiry = pace.keep
              if pace.tokens then
                head = string.format('%d %d %d', pace.tokens, pace.at, pace.until_at)
                if pace.warned then head = head .. string.format(' %d', pace.warned) end
                expiry = math.max(expiry, pace.until_at)
              end
              local window = ''
              if #pace.times > 0 then window = string.format('%d ', pace.keep) .. table.concat(pace.times, ' ') end
              if expiry > now_ms() then redis.call('SET', key, head .. '|' .. window, 'PXAT', expiry) end
            end

            local function admit(outbox, queued, pace, reply, limit, span, ttl, empty)
              if empty or redis.call('LLEN', outbox) == 0 then
                local now = now_ms()
                if pace_earliest(pace, limit, span, now) == now then
                  pace_reserve(pace, now, span)
                  return 'now'
                end
              end
              keep(outbox, queued, reply, ttl)
              return 'kept'
            end

            """#

    /// `keep(outbox, queued, item, ttl)` appends a call to a subject's outbox, which then holds
    /// the subject's updates back (`o` in its queued set).
    static let outbox = #"""
        local function keep(outbox, queued, item, ttl)
          redis.call('RPUSH', outbox, item)
          redis.call('EXPIRE', outbox, ttl)
          redis.call('SADD', queued, 'o')
          redis.call('EXPIRE', queued, ttl)
        end

        """#

    /// The bot-wide budget's window, a sorted set of send times, future reservations included
    /// (it may hold many: 30 a second, or more where a self-hosted Bot API server allows):
    /// `earliest(key, limit, span, now)` is when the next send may go (and how many the window
    /// holds); `reserve` records one at `at`, keeping the key until its last reservation has
    /// left the window (given the count `earliest` just found: 0 is a new key).
    static let botWindow = #"""
        local function earliest(key, limit, span, now)
          redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
          local count = redis.call('ZCARD', key)
          if count < limit then return now, count end
          local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
          return math.max(now, tonumber(entry[2]) + span), count
        end

        local function reserve(key, at, span, member, count)
          redis.call('ZADD', key, at, member)
          -- Every window key is made here, with an expiry that only moves later.
          if count == 0 then
            redis.call('PEXPIREAT', key, at + span + 1000)
          else
            redis.call('PEXPIREAT', key, at + span + 1000, 'GT')
          end
        end

        """#
}
