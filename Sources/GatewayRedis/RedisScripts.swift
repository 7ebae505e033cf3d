import GatewayCore

/// The Lua scripts behind `RedisStateStore`. Every key of one call carries one hash tag (the
/// subject's `{tg:42}`, a group's `{tgc:-100}`, or the bot's `{tgout}`), so the scripts run
/// unchanged on Redis Cluster.
///
/// Keys of a subject:
/// - `{tg:ID}:update:UPDATE_ID`: `lease:TOKEN` while the update is processed, then `done`
///   (`done:REPLAY` after an operator's replay) for DEDUPE_TTL seconds.
/// - `{tg:ID}:bucket`: the token bucket (`MILLI_TOKENS AT [WARNED]`, ms), 2 windows TTL.
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
/// - `{tg:ID}:out`: the sending window of the user's private chat (a sorted set of send
///   times, reservations included); a group's is `{tgc:ID}:out`, the bot's `{tgout}:bot`.
public enum RedisScripts {
    /// Long callback data behind a button's token: its own key (any responder resolves it,
    /// whoever presses the button), living as long as a session.
    public static func callbackDataKey(_ token: String) -> String { "tgcb:{\(token)}" }

    /// The bot-wide budget of Bot API sends: one key for the whole bot.
    public static let botWindowKey = "{tgout}:bot"
    /// Set for a 429's `retry_after`: no Bot API send of the pool goes out before it expires.
    public static let botPauseKey = "{tgout}:pause"

    /// The sending window of `chatID`, with the subject that owns it.
    public static func windowKey(of chatID: Int64) -> String { StateSubject.windowOwner(of: chatID).hashTag + ":out" }

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

    /// The token bucket on Redis's clock, in milli-tokens (see TokenBucket.swift), shared by
    /// the begin and enqueue scripts: `take(key, capacity, window ms)` returns allowed, warn.
    /// The bucket is one string, `MILLI_TOKENS AT [WARNED]` (Redis ms), written with its expiry
    /// in one command: a write inside a script costs several times a read.
    static let tokenBucket =
        clock + #"""
            local function take(key, capacity, window)
              local now = now_ms()
              local full = capacity * 1000
              local tokens, at, warned = full, now, nil
              local bucket = redis.call('GET', key)
              if bucket then
                local t, a, w = string.match(bucket, '^(%-?%d+) (%-?%d+) ?(%-?%d*)$')
                tokens = tonumber(t) or full
                at = tonumber(a) or now
                warned = tonumber(w)
              end
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
              local value = string.format('%d %d', tokens, at)
              if warned then value = value .. string.format(' %d', warned) end
              redis.call('SET', key, value, 'PX', window * 2)
              return allowed, warn
            end

            """#

    /// Sliding windows of send times in a sorted set, future reservations included:
    /// `earliest(key, limit, span, now)` is when the next message may go (and how many sends the
    /// window holds); `reserve` records one at `at`, keeping the key until its last reservation
    /// has left the window (given the count `earliest` just found: 0 is a new key). `admit(…)`
    /// takes a webhook reply's slot now when nothing waits in the outbox before it, and
    /// otherwise appends the reply to the outbox.
    static let windows = #"""
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

        local function keep(outbox, queued, item, ttl)
          redis.call('RPUSH', outbox, item)
          redis.call('EXPIRE', outbox, ttl)
          redis.call('SADD', queued, 'o')
          redis.call('EXPIRE', queued, ttl)
        end

        local function admit(outbox, queued, window, reply, limit, span, member, ttl)
          if redis.call('LLEN', outbox) == 0 then
            local now = now_ms()
            local at, count = earliest(window, limit, span, now)
            if at == now then
              reserve(window, now, span, member, count)
              return 'now'
            end
          end
          keep(outbox, queued, reply, ttl)
          return 'kept'
        end

        """#

    /// KEYS: update mark, rate bucket, session, user lease, queued, outbox, the reply's window.
    /// ARGV: token, lease ms, dedupe TTL s, capacity, window ms, session TTL s, needs session
    /// (1/0), new internal id, origin (`s` webhook, `w` worker), replay id or '', update id,
    /// reply or '', reply window limit, reply window ms, reply member.
    /// Returns `{"duplicate", outbox}`, `{"in_progress", pttl}`, `{"limited", warn}`,
    /// `{"deferred"}`, `{"busy", pttl}`, `{"done", reply admission, outbox}` (nothing to
    /// claim) or `{"claimed", internal id, state or false, created, outbox, needs index}`
    /// (the internal id's record is missing or older than half a session's life).
    public static let begin = RedisScript(
        name: "begin",
        source: tokenBucket + windows + #"""
            local worker = ARGV[9] == 'w'
            local mark = redis.call('GET', KEYS[1])
            local finished = mark and string.sub(mark, 1, 4) == 'done'
            if finished and (ARGV[10] == '' or mark == 'done:' .. ARGV[10]) then
              if worker then redis.call('SREM', KEYS[5], ARGV[11]) end
              return {'duplicate', redis.call('LLEN', KEYS[6])}
            end
            if mark and not finished and not worker then return {'in_progress', redis.call('PTTL', KEYS[1])} end

            -- The rate limit comes before anything that could make the update wait.
            local allowed, warn = true, 0
            if not worker then allowed, warn = take(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5])) end
            redis.call('EXPIRE', KEYS[3], ARGV[6])
            if not allowed then
              redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3])
              return {'limited', warn}
            end

            local needs = ARGV[7] == '1'
            local holder = false
            if needs or worker then holder = redis.call('GET', KEYS[4]) end
            if not worker then
              -- Busy: another update holds the user, or the user's earlier updates or answers wait
              -- in the stream. The update is counted as waiting; the caller appends it to the stream.
              if (needs and holder and holder ~= ARGV[1]) or redis.call('SCARD', KEYS[5]) > 0 then
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
              redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3])
              if worker then redis.call('SREM', KEYS[5], ARGV[11]) end
              local admitted = 'none'
              if ARGV[12] ~= '' then
                admitted = admit(KEYS[6], KEYS[5], KEYS[7], ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[15], ARGV[3])
              end
              -- Admitted now, the reply found the outbox empty and left it so.
              if admitted == 'now' then return {'done', admitted, 0} end
              return {'done', admitted, redis.call('LLEN', KEYS[6])}
            end
            local session = redis.call('HMGET', KEYS[3], 'id', 'state', 'ix')
            local created = 0
            if not session[1] then
              redis.call('HSET', KEYS[3], 'id', ARGV[8])
              session[1] = ARGV[8]
              created = 1
            end
            local indexed = tonumber(session[3])
            local stale = 0
            if not indexed or now_ms() - indexed > tonumber(ARGV[6]) * 500 then stale = 1 end
            redis.call('EXPIRE', KEYS[3], ARGV[6])
            redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'PX', ARGV[2])
            redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
            return {'claimed', session[1], session[2] or false, created, redis.call('LLEN', KEYS[6]), stale}
            """#)

    /// KEYS: update mark, session, user lease, queued, outbox, the reply's window.
    /// ARGV: token ('' when nothing was claimed), dedupe TTL s, session TTL s, state action
    /// (keep/set/clear), state JSON, internal id ('' keeps it), replay id or '', update id,
    /// reply or '', reply window limit, reply window ms, reply member, indexed ('1': the
    /// internal id's record was written now), then the tail's calls.
    /// With a token: marks the update done, writes the state it was given whoever holds the
    /// lease now (it is never lost), and releases the lease if it is still the token's. Then
    /// the update no longer waits, the reply is admitted or kept, the tail kept.
    /// Returns `{reply admission, calls in the outbox, lease was ours (1/0)}`.
    public static let finish = RedisScript(
        name: "finish",
        source: clock + windows + #"""
            local ours = 1
            if ARGV[1] ~= '' then
              local done = 'done'
              if ARGV[7] ~= '' then done = 'done:' .. ARGV[7] end
              redis.call('SET', KEYS[1], done, 'EX', ARGV[2])
              local holder = redis.call('GET', KEYS[3])
              if holder == ARGV[1] then redis.call('DEL', KEYS[3]) elseif holder then ours = 0 end
              if ARGV[4] == 'set' then
                redis.call('HSET', KEYS[2], 'state', ARGV[5])
              elseif ARGV[4] == 'clear' then
                redis.call('HDEL', KEYS[2], 'state')
              end
              if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'id', ARGV[6]) end
              if ARGV[13] == '1' then redis.call('HSET', KEYS[2], 'ix', now_ms()) end
              if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
            end
            redis.call('SREM', KEYS[4], ARGV[8])
            local admitted = 'none'
            if ARGV[9] ~= '' then
              admitted = admit(KEYS[5], KEYS[4], KEYS[6], ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[12], ARGV[2])
            end
            for i = 14, #ARGV do keep(KEYS[5], KEYS[4], ARGV[i], ARGV[2]) end
            return {admitted, redis.call('LLEN', KEYS[5]), ours}
            """#)

    /// KEYS: a window (a chat's, or the bot's), optionally the bot's pause (same slot).
    /// ARGV: limit, window ms, longest wait ms, a unique member, shortest wait ms (the bot's
    /// budget after the chat's slot), spacing ms (the bot's: its sends spread evenly, never
    /// closer than this to the latest reservation; 0 lets a window's sends go together).
    /// Returns the milliseconds to wait, having reserved the slot, or, when the wait would be
    /// longer than allowed (nothing reserved), -1 - the milliseconds until the window (or the
    /// pause) could give any send a slot.
    public static let reserve = RedisScript(
        name: "reserve",
        source: clock + windows + #"""
            local now = now_ms()
            local span = tonumber(ARGV[2])
            local soonest, count = earliest(KEYS[1], tonumber(ARGV[1]), span, now)
            if KEYS[2] then
              local paused = redis.call('PTTL', KEYS[2])
              if paused > 0 then soonest = math.max(soonest, now + paused) end
            end
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

    /// KEYS: outbox, queued, the subject's own chat window. ARGV: the call done with ('': none),
    /// the subject's own chat id, its window's limit and ms, the longest wait ms (negative:
    /// reserve nothing), a unique member.
    /// Removes the call done with if it is still first (an empty outbox no longer holds the
    /// user's updates back), then returns `{}` (empty), `{call, "unpaced"}`, `{call,
    /// "elsewhere"}` (its chat's window is another subject's), `{call, "reserved", wait ms}` or
    /// `{call, "later", wait ms}` (no slot within the longest wait; nothing reserved).
    public static let advanceOutbox = RedisScript(
        name: "advance_outbox",
        source: clock + windows + #"""
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
            local at, count = earliest(KEYS[3], tonumber(ARGV[3]), span, now)
            if at - now > longest then return {first, 'later', at - now} end
            reserve(KEYS[3], at, span, ARGV[6], count)
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
    public let rate: String
    public let session: String
    public let lease: String
    public let queued: String
    public let outbox: String
    public let window: String

    public init(subject: StateSubject, updateID: Int64) {
        let tag = subject.hashTag
        update = "\(tag):update:\(updateID)"
        rate = "\(tag):bucket"
        session = "\(tag):session"
        lease = "\(tag):lease"
        queued = "\(tag):queued"
        outbox = "\(tag):outbox"
        window = "\(tag):out"
    }
}

/// A Lua script by name; connections load it once and call it by digest.
public struct RedisScript: Sendable {
    public let name: String
    public let source: String
}
