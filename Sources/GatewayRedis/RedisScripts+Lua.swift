/// The Lua functions the scripts share, made once when a script's library is loaded (see
/// ``RedisScript``): Redis's clock, the token bucket, a subject's pace (its bucket and its own
/// chat's window in one record), the outbox, and the bot-wide budget's window.
extension RedisScripts {
    /// Redis's clock in milliseconds, shared by the scripts: every responder on every host
    /// agrees on it. Read once per call of a script (a script runs at one instant) into
    /// `clock_now`, which every library declares and every call empties first (``RedisScript``).
    static let clock = #"""
        local function now_ms()
          if not clock_now then
            local time = redis.call('TIME')
            -- Arithmetic reads TIME's two numbers without a call to tonumber each.
            clock_now = time[1] * 1000 + math.floor(time[2] / 1000)
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

    /// Queue mode's token bucket, a record of its own (`MILLI_TOKENS AT WARNED`, little-endian
    /// doubles as in `pace`, Redis ms; WARNED 0 when never warned) set with its expiry:
    /// `take(key, capacity, window ms)` returns allowed, warn.
    static let tokenBucket =
        bucketCore + #"""
            local function take(key, capacity, window)
              local now = now_ms()
              local tokens, at, warned = nil, nil, nil
              local bucket = redis.call('GET', key)
              if bucket and #bucket == 24 then
                tokens, at, warned = struct.unpack('<ddd', bucket)
                if warned == 0 then warned = nil end
              end
              local allowed, warn
              allowed, warn, tokens, at, warned = take_bucket(tokens, at, warned, capacity, window, now)
              redis.call('SET', key, struct.pack('<ddd', tokens, at, warned or 0), 'PX', window * 2)
              return allowed, warn
            end

            """#

    /// A subject's pace, one record read once and written at most once per script: its token bucket
    /// and the sending window of its own chat (a user's private chat, or a group), as little-endian
    /// doubles (`struct.pack('<d…')`, Redis ms): `TOKENS AT UNTIL WARNED KEEP`, then the send times
    /// `T1 T2 …`. UNTIL is 0 when there is no bucket (a group) and a bucket whose UNTIL has passed
    /// was forgotten (it is full again); WARNED is 0 when the subject was never warned; the send
    /// times are the window's, reservations included, ascending, and KEEP (0 without any) when the
    /// last has left the window. The key's expiry is the later of UNTIL and KEEP. Packed, not text:
    /// formatting and matching its numbers in Lua cost Redis about a quarter of the instructions of
    /// a returning user's `begin`. `pace_read(key, now)` returns a table; `pace_take` takes a token
    /// from its bucket; `pace_earliest(pace, limit, span, now)` is when the next message may go
    /// (dropping sends that left the window); `pace_reserve` records one; `pace_write` stores it.
    /// `admit(…)` takes a webhook reply's slot now when nothing waits in the outbox before it
    /// (`empty`: known so already), and otherwise appends the reply to the outbox.
    static let pace =
        bucketCore + outbox + #"""
            local function pace_read(key, now)
              local pace = {times = {}, keep = 0}
              local value = redis.call('GET', key)
              if not value or #value < 40 or #value % 8 ~= 0 then return pace end
              local fields = {struct.unpack('<' .. string.rep('d', #value / 8), value)}
              if fields[3] > now then
                pace.tokens, pace.at, pace.until_at = fields[1], fields[2], fields[3]
                if fields[4] > 0 then pace.warned = fields[4] end
              end
              pace.keep = fields[5]
              for i = 6, #value / 8 do pace.times[i - 5] = fields[i] end
              return pace
            end

            local function pace_take(pace, capacity, window, now)
              local allowed, warn
              allowed, warn, pace.tokens, pace.at, pace.warned = take_bucket(pace.tokens, pace.at, pace.warned, capacity, window, now)
              pace.until_at = now + window * 2
              return allowed, warn
            end

            local function pace_earliest(pace, limit, span, now)
              -- The times ascend: only when the first has left the window is a new list made
              -- (a table per call cost Redis about 2% of a `begin`, callgrind).
              local times = pace.times
              local count = #times
              if count > 0 and times[1] <= now - span then
                local kept = {}
                for i = 1, count do if times[i] > now - span then kept[#kept + 1] = times[i] end end
                pace.times, times, count = kept, kept, #kept
              end
              if count < limit then return now end
              return math.max(now, times[count - limit + 1] + span)
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
              local expiry = pace.keep
              local tokens, at, until_at, warned = 0, 0, 0, 0
              if pace.tokens then
                tokens, at, until_at, warned = pace.tokens, pace.at, pace.until_at, pace.warned or 0
                expiry = math.max(expiry, until_at)
              end
              local keep = 0
              if #pace.times > 0 then keep = pace.keep end
              if expiry > now_ms() then
                local record = struct.pack('<' .. string.rep('d', 5 + #pace.times), tokens, at, until_at, warned, keep, unpack(pace.times))
                -- As an integer's text: a number is formatted by Redis with `%.17g` (about 1.7k
                -- instructions more per call, callgrind).
                redis.call('SET', key, record, 'PXAT', string.format('%d', expiry))
              end
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

    /// `outbox_step(outbox, queued, pace key, own chat, limit, span, longest wait)`: the
    /// outbox's first call and its slot, as a table `{}` (empty: the outbox no longer holds the
    /// user's updates back), `{call, "unpaced"}`, `{call, "elsewhere"}` (its chat's window is
    /// another subject's), `{call, "reserved", wait ms}` or `{call, "later", wait ms}` (no slot
    /// within the longest wait, or a negative longest wait: nothing reserved). Follows `pace`.
    static let outboxStep = #"""
        local function outbox_step(outbox, queued, pace_key, own_chat, limit, span, longest)
          local first = redis.call('LINDEX', outbox, 0)
          if not first then
            redis.call('SREM', queued, 'o')
            return {}
          end
          local chat = string.match(first, '^v1 %d+ (%-?%d+) ')
          if not chat then return {first, 'unpaced'} end
          if chat ~= own_chat then return {first, 'elsewhere'} end
          if longest < 0 then return {first, 'later', 0} end
          local now = now_ms()
          local pace = pace_read(pace_key, now)
          local at = pace_earliest(pace, limit, span, now)
          if at - now > longest then return {first, 'later', at - now} end
          pace_reserve(pace, at, span)
          pace_write(pace_key, pace)
          return {first, 'reserved', at - now}
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
