import GatewayCore

/// The Lua scripts behind `RedisStateStore`. Every key of one call carries one hash tag (the
/// subject's `{tg:42}`, a group's `{tgc:-100}`, or the bot's `{tgout}`), so the scripts run
/// unchanged on Redis Cluster.
///
/// Keys of a subject:
/// - `{tg:ID}:update:UPDATE_ID`: `lease:TOKEN` while the update is processed, then `done`
///   (`done:REPLAY` after an operator's replay) for DEDUPE_TTL seconds.
/// - `{tg:ID}:pace`: the token bucket and the sending window of the user's private chat, one
///   string (see `pace`); a group's window is `{tgc:ID}:pace`. Kept two rate windows after the
///   last update, or until the window's last reservation has left it, whichever is later.
/// - `{tg:ID}:session`: `id` (internal user id), `state` (conversation JSON), `ix` (when the
///   internal id's record `tgi:{INTERNAL_ID}` was last written, ms), SESSION_TTL, refreshed by
///   every update.
/// - `{tg:ID}:job:JOB`: the outbound job's calls were put in the outbox (once per recipient).
/// - `{tg:ID}:lease`: the user's processing lease, the TOKEN of the update holding it (`s…` a
///   webhook request, `w…` a stream worker).
/// - `{tg:ID}:queued`: what of the user waits in the stream (update ids, `o` for the outbox):
///   while it is not empty the webhook path hands the user's updates over instead of
///   overtaking them.
/// - `{tg:ID}:outbox`: Bot API calls waiting to be sent, in order (``PendingSend``).
/// - `{tgout}:bot`: the bot-wide budget's window (a sorted set of send times, reservations
///   included), `{tgout}:pause` a 429's pause.
public enum RedisScripts {
    /// Long callback data behind a button's token: its own key (any responder resolves it,
    /// whoever presses the button), living as long as a session.
    public static func callbackDataKey(_ token: String) -> String { "tgcb:{\(token)}" }

    /// The bot-wide budget of Bot API sends: one key for the whole bot.
    public static let botWindowKey = "{tgout}:bot"
    /// Set for a 429's `retry_after`: no Bot API send of the pool goes out before it expires.
    public static let botPauseKey = "{tgout}:pause"

    /// The pace holding the sending window of `chatID`: the subject's that owns it.
    public static func windowKey(of chatID: Int64) -> String { StateSubject.windowOwner(of: chatID).hashTag + ":pace" }

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

    /// KEYS: update mark, pace, session, user lease, queued, outbox.
    /// ARGV: token, lease ms, dedupe TTL s, capacity, window ms, session TTL s, needs session
    /// (1/0), new internal id, origin (`s` webhook, `w` worker), replay id or '', update id,
    /// reply or '', reply window limit, reply window ms.
    /// Returns `{"duplicate", outbox}`, `{"in_progress", pttl}`, `{"limited", warn}`,
    /// `{"deferred"}`, `{"busy", pttl}`, `{"done", reply admission, outbox}` (nothing to
    /// claim) or `{"claimed", internal id, state or false, created, outbox, needs index}`
    /// (the internal id's record is missing or older than half a session's life).
    public static let begin = RedisScript(
        name: "begin",
        source: pace + #"""
            local worker = ARGV[9] == 'w'
            local needs = ARGV[7] == '1'
            local mark
            if worker then
              mark = redis.call('GET', KEYS[1])
            elseif needs then
              -- A webhook request marks a new update at once (one write, not a read and a write):
              -- held by its lease when it needs the session, else done (`fresh`). The paths that
              -- end otherwise replace or remove that mark below.
              mark = redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'NX', 'GET', 'PX', ARGV[2])
            else
              mark = redis.call('SET', KEYS[1], 'done', 'NX', 'GET', 'EX', ARGV[3])
            end
            local fresh = not worker and not mark
            local finished = mark and string.sub(mark, 1, 4) == 'done'
            if finished and (ARGV[10] == '' or mark == 'done:' .. ARGV[10]) then
              if worker then redis.call('SREM', KEYS[5], ARGV[11]) end
              return {'duplicate', redis.call('LLEN', KEYS[6])}
            end
            if mark and not finished and not worker then return {'in_progress', redis.call('PTTL', KEYS[1])} end
            local function mark_done()
              if worker or not fresh or needs then redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3]) end
            end

            -- The rate limit comes before anything that could make the update wait. The pace
            -- (the bucket, and the window of the reply's chat, which is the subject's own) is
            -- written once, on the way out.
            local pace = nil
            local allowed, warn = true, 0
            if not worker then
              pace = pace_read(KEYS[2], now_ms())
              allowed, warn = pace_take(pace, tonumber(ARGV[4]), tonumber(ARGV[5]), now_ms())
            end
            redis.call('EXPIRE', KEYS[3], ARGV[6])
            if not allowed then
              pace_write(KEYS[2], pace)
              mark_done()
              return {'limited', warn}
            end

            local holder = false
            if needs or worker then holder = redis.call('GET', KEYS[4]) end
            if not worker then
              -- Busy: another update holds the user, or the user's earlier updates or answers wait
              -- in the stream. The update is counted as waiting; the caller appends it to the stream.
              if (needs and holder and holder ~= ARGV[1]) or redis.call('SCARD', KEYS[5]) > 0 then
                pace_write(KEYS[2], pace)
                if fresh then redis.call('DEL', KEYS[1]) end
                redis.call('SADD', KEYS[5], ARGV[11])
                redis.call('EXPIRE', KEYS[5], ARGV[3])
                return {'deferred'}
              end
            elseif holder and holder ~= ARGV[1] and string.sub(holder, 1, 1) == 's' then
              -- A webhook request holds the user: the worker waits. A worker's lease left by an
              -- earlier holder of this partition is simply taken over.
              return {'busy', redis.call('PTTL', KEYS[4])}
            end

            if not needs then
              mark_done()
              if worker then redis.call('SREM', KEYS[5], ARGV[11]) end
              -- A webhook request got here with nothing of the user waiting: the outbox is empty
              -- (a call in it keeps `o` in the queued set).
              local admitted = 'none'
              if ARGV[12] ~= '' then
                pace = pace or pace_read(KEYS[2], now_ms())
                admitted = admit(KEYS[6], KEYS[5], pace, ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[3], not worker)
              end
              if not worker or admitted == 'now' then pace_write(KEYS[2], pace) end
              -- Admitted now, the reply found the outbox empty and left it so.
              if admitted == 'now' or (admitted == 'none' and not worker) then return {'done', admitted, 0} end
              return {'done', admitted, redis.call('LLEN', KEYS[6])}
            end
            if not worker then pace_write(KEYS[2], pace) end
            local session = redis.call('HMGET', KEYS[3], 'id', 'state', 'ix')
            local created = 0
            if not session[1] then
              -- A new session (an existing one's expiry was refreshed above).
              redis.call('HSET', KEYS[3], 'id', ARGV[8])
              redis.call('EXPIRE', KEYS[3], ARGV[6])
              session[1] = ARGV[8]
              created = 1
            end
            local indexed = tonumber(session[3])
            local stale = 0
            if not indexed or now_ms() - indexed > tonumber(ARGV[6]) * 500 then stale = 1 end
            if not fresh then redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'PX', ARGV[2]) end
            redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
            -- A webhook request got here with nothing of the user waiting: the outbox is empty.
            local waiting = 0
            if worker then waiting = redis.call('LLEN', KEYS[6]) end
            return {'claimed', session[1], session[2] or false, created, waiting, stale}
            """#)

    /// KEYS: update mark, session, user lease, queued, outbox, pace.
    /// ARGV: token ('' when nothing was claimed), dedupe TTL s, session TTL s, state action
    /// (keep/set/clear), state JSON, internal id ('' keeps it), replay id or '', update id,
    /// reply or '', reply window limit, reply window ms, indexed ('1': the internal id's record
    /// was written now), then the tail's calls.
    /// With a token: marks the update done, writes the state it was given whoever holds the
    /// lease now (it is never lost), and releases the lease if it is still the token's. Then
    /// the update no longer waits, the reply is admitted or kept, the tail kept.
    /// Returns `{reply admission, calls in the outbox, lease was ours (1/0)}`.
    public static let finish = RedisScript(
        name: "finish",
        source: pace + #"""
            local ours = 1
            if ARGV[1] ~= '' then
              local done = 'done'
              if ARGV[7] ~= '' then done = 'done:' .. ARGV[7] end
              redis.call('SET', KEYS[1], done, 'EX', ARGV[2])
              local holder = redis.call('GET', KEYS[3])
              if holder == ARGV[1] then redis.call('DEL', KEYS[3]) elseif holder then ours = 0 end
              -- The session's fields in one write, then its expiry (nothing when it is gone).
              local fields = {}
              if ARGV[4] == 'set' then
                fields = {'state', ARGV[5]}
              elseif ARGV[4] == 'clear' then
                redis.call('HDEL', KEYS[2], 'state')
              end
              if ARGV[6] ~= '' then fields[#fields + 1] = 'id'; fields[#fields + 1] = ARGV[6] end
              if ARGV[12] == '1' then fields[#fields + 1] = 'ix'; fields[#fields + 1] = now_ms() end
              if #fields > 0 then redis.call('HSET', KEYS[2], unpack(fields)) end
              redis.call('EXPIRE', KEYS[2], ARGV[3])
            end
            redis.call('SREM', KEYS[4], ARGV[8])
            local admitted = 'none'
            if ARGV[9] ~= '' then
              local pace = pace_read(KEYS[6], now_ms())
              admitted = admit(KEYS[5], KEYS[4], pace, ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[2])
              if admitted == 'now' then pace_write(KEYS[6], pace) end
            end
            for i = 13, #ARGV do keep(KEYS[5], KEYS[4], ARGV[i], ARGV[2]) end
            -- Admitted now with no tail, the reply found the outbox empty and left it so.
            if admitted == 'now' and #ARGV < 13 then return {admitted, 0, ours} end
            return {admitted, redis.call('LLEN', KEYS[5]), ours}
            """#)

    /// KEYS: a chat's pace (its owner's). ARGV: limit, window ms, longest wait ms.
    /// Returns the milliseconds to wait, having reserved the slot, or, when the wait would be
    /// longer than allowed (nothing reserved), -1 - the milliseconds until the window could give
    /// a send a slot.
    public static let reserveChat = RedisScript(
        name: "reserve_chat",
        source: pace + #"""
            local now = now_ms()
            local span = tonumber(ARGV[2])
            local pace = pace_read(KEYS[1], now)
            local at = pace_earliest(pace, tonumber(ARGV[1]), span, now)
            if at - now > tonumber(ARGV[3]) then return -(at - now) - 1 end
            pace_reserve(pace, at, span)
            pace_write(KEYS[1], pace)
            return at - now
            """#)

    /// KEYS: the bot's window, the bot's pause (same slot).
    /// ARGV: limit, window ms, longest wait ms, a unique member, shortest wait ms (after the
    /// chat's slot), spacing ms (the bot's sends spread evenly, never closer than this to the
    /// latest reservation; 0 lets a window's sends go together).
    /// Returns the milliseconds to wait, having reserved the slot, or, when the wait would be
    /// longer than allowed (nothing reserved), -1 - the milliseconds until the window (or the
    /// pause) could give any send a slot.
    public static let reserveBot = RedisScript(
        name: "reserve_bot",
        source: clock + botWindow + #"""
            local now = now_ms()
            local span = tonumber(ARGV[2])
            local soonest, count = earliest(KEYS[1], tonumber(ARGV[1]), span, now)
            local paused = redis.call('PTTL', KEYS[2])
            if paused > 0 then soonest = math.max(soonest, now + paused) end
            local at = math.max(now + tonumber(ARGV[5]), soonest)
            local spacing = tonumber(ARGV[6])
            if spacing > 0 then
              local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
              if last[2] then at = math.max(at, tonumber(last[2]) + spacing) end
            end
            if at - now > tonumber(ARGV[3]) then return -(soonest - now) - 1 end
            reserve(KEYS[1], at, span, ARGV[4], count)
            return at - now
            """#)

    /// KEYS: the bot's pause. ARGV: ms. Pauses the pool's Bot API sends; never shortens a pause.
    public static let pause = RedisScript(
        name: "pause",
        source: #"""
            if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
            return 1
            """#)

    /// KEYS: outbox, queued, the subject's pace. ARGV: the call done with ('': none), the
    /// subject's own chat id, its window's limit and ms, the longest wait ms (negative: reserve
    /// nothing).
    /// Removes the call done with if it is still first (an empty outbox no longer holds the
    /// user's updates back), then returns `{}` (empty), `{call, "unpaced"}`, `{call,
    /// "elsewhere"}` (its chat's window is another subject's), `{call, "reserved", wait ms}` or
    /// `{call, "later", wait ms}` (no slot within the longest wait; nothing reserved).
    public static let advanceOutbox = RedisScript(
        name: "advance_outbox",
        source: pace + #"""
            if ARGV[1] ~= '' and redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
            local first = redis.call('LINDEX', KEYS[1], 0)
            if not first then
              redis.call('SREM', KEYS[2], 'o')
              return {}
            end
            local chat = string.match(first, '^v1 %d+ (%-?%d+) ')
            if not chat then return {first, 'unpaced'} end
            if chat ~= ARGV[2] then return {first, 'elsewhere'} end
            local longest = tonumber(ARGV[5])
            if longest < 0 then return {first, 'later', 0} end
            local now = now_ms()
            local span = tonumber(ARGV[4])
            local pace = pace_read(KEYS[3], now)
            local at = pace_earliest(pace, tonumber(ARGV[3]), span, now)
            if at - now > longest then return {first, 'later', at - now} end
            pace_reserve(pace, at, span)
            pace_write(KEYS[3], pace)
            return {first, 'reserved', at - now}
            """#)

    /// KEYS: outbox. ARGV: the call expected first, its replacement.
    public static let replaceOutboxHead = RedisScript(
        name: "replace_outbox_head",
        source: #"""
            if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LSET', KEYS[1], 0, ARGV[2]) end
            return 1
            """#)
}

/// The keys of one subject, as the scripts expect them.
public struct StateSubjectKeys: Sendable, Equatable {
    public let update: String
    /// The token bucket and the subject's own chat window (`pace`).
    public let pace: String
    public let session: String
    public let lease: String
    public let queued: String
    public let outbox: String

    public init(subject: StateSubject, updateID: Int64) {
        let tag = subject.hashTag
        update = "\(tag):update:\(updateID)"
        pace = "\(tag):pace"
        session = "\(tag):session"
        lease = "\(tag):lease"
        queued = "\(tag):queued"
        outbox = "\(tag):outbox"
    }
}

/// A Lua script by name; connections load it once and call it by digest.
public struct RedisScript: Sendable {
    public let name: String
    public let source: String
}
