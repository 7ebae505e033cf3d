import GatewayCore

/// The Lua scripts behind `RedisStateStore`. Every key of one call carries one hash tag (the
/// subject's `{tg:42}`, a group's `{tgc:-100}`, or the bot's `{tgout}`), so the scripts run
/// unchanged on Redis Cluster.
///
/// Keys of a subject:
/// - `{tg:ID}:update:UPDATE_ID`: `lease:TOKEN` while the update is processed, then `done`
///   (`done:REPLAY` after an operator's replay) for DEDUPE_TTL seconds.
/// - `{tg:ID}:pacing`: the token bucket and the sending window of the user's private chat, one
///   packed record (see `pace`); a group's window is `{tgc:ID}:pacing`. Kept two rate windows after the
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
    public static func windowKey(of chatID: Int64) -> String { StateSubject.windowOwner(of: chatID).hashTag + ":pacing" }

    /// The policy's numbers as Lua constants at the head of a store's script: an argument costs
    /// Redis about 1k instructions per call (read, made a Lua string, put in `ARGV`, freed;
    /// callgrind), so what never changes for a store is written into its script once. Stores
    /// with different policies load different libraries (``RedisScript/function`` carries a
    /// digest of the script's text).
    static func policyConstants(_ policy: StatePolicy) -> String {
        let (privateLimit, privateSpan) = policy.outgoing.window(of: 1)
        let (groupLimit, groupSpan) = policy.outgoing.window(of: -1)
        return """
            local LEASE_MS, DEDUPE_S, SESSION_S = '\(policy.leaseMilliseconds)', '\(policy.dedupeTTLSeconds)', '\(policy.sessionTTLSeconds)'
            local CAPACITY, WINDOW_MS, HALF_SESSION_MS = \(policy.rateLimitRequests), \(policy.rateLimitWindowMilliseconds), \(Int64(policy.sessionTTLSeconds) * 500)
            local PRIVATE_LIMIT, PRIVATE_MS, GROUP_LIMIT, GROUP_MS = \(privateLimit), \(privateSpan), \(groupLimit), \(groupSpan)

            """
    }

    /// KEYS: update mark, pace, session, user lease, queued, outbox.
    /// ARGV: token, flags (origin `s` webhook or `w` worker; `1`/`0` needs session; the reply's
    /// window, `p` a private chat's or `g` a group's), update id, new internal id, replay id or
    /// '', reply or ''. The policy's numbers are the script's constants (``policyConstants(_:)``).
    /// Returns `{"duplicate", outbox}`, `{"in_progress", pttl}`, `{"limited", warn}`,
    /// `{"deferred"}`, `{"busy", pttl}`, `{"done", reply admission, outbox}` (nothing to
    /// claim), only the reply admission (`"now"` or `"none"`: done, nothing in the outbox; a
    /// table costs Redis ~5k instructions more to return) or `{"claimed", internal id, state or
    /// false, created, outbox, needs index}` (the internal id's record is missing or older than
    /// half a session's life).
    public static func begin(_ policy: StatePolicy) -> RedisScript {
        RedisScript(name: "begin", helpers: policyConstants(policy) + pace, body: beginBody)
    }

    /// `begin`'s keys, in their order.
    static let beginKeys: [StateSubjectKey] = [.update, .pace, .session, .lease, .queued, .outbox]

    private static let beginBody = #"""
        local origin, needed, kind = string.byte(ARGV[2], 1, 3)
        local worker = origin == 119
        local needs = needed == 49
        local mark
        if worker then
          mark = redis.call('GET', KEYS[1])
        elseif needs then
          -- A webhook request marks a new update at once (one write, not a read and a write):
          -- held by its lease when it needs the session, else done (`fresh`). The paths that
          -- end otherwise replace or remove that mark below.
          mark = redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'NX', 'GET', 'PX', LEASE_MS)
        else
          mark = redis.call('SET', KEYS[1], 'done', 'NX', 'GET', 'EX', DEDUPE_S)
        end
        local fresh = not worker and not mark
        local finished = mark and string.sub(mark, 1, 4) == 'done'
        if finished and (ARGV[5] == '' or mark == 'done:' .. ARGV[5]) then
          if worker then redis.call('SREM', KEYS[5], ARGV[3]) end
          return {'duplicate', redis.call('LLEN', KEYS[6])}
        end
        if mark and not finished and not worker then return {'in_progress', redis.call('PTTL', KEYS[1])} end
        local function mark_done()
          if worker or not fresh or needs then redis.call('SET', KEYS[1], 'done', 'EX', DEDUPE_S) end
        end

        -- The rate limit comes before anything that could make the update wait. The pace
        -- (the bucket, and the window of the reply's chat, which is the subject's own) is
        -- written once, on the way out.
        local pace = nil
        local allowed, warn = true, 0
        if not worker then
          pace = pace_read(KEYS[2], now_ms())
          allowed, warn = pace_take(pace, CAPACITY, WINDOW_MS, now_ms())
        end
        redis.call('EXPIRE', KEYS[3], SESSION_S)
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
            redis.call('SADD', KEYS[5], ARGV[3])
            redis.call('EXPIRE', KEYS[5], DEDUPE_S)
            return {'deferred'}
          end
        elseif holder and holder ~= ARGV[1] and string.sub(holder, 1, 1) == 's' then
          -- A webhook request holds the user: the worker waits. A worker's lease left by an
          -- earlier holder of this partition is simply taken over.
          return {'busy', redis.call('PTTL', KEYS[4])}
        end

        if not needs then
          mark_done()
          if worker then redis.call('SREM', KEYS[5], ARGV[3]) end
          -- A webhook request got here with nothing of the user waiting: the outbox is empty
          -- (a call in it keeps `o` in the queued set).
          local admitted = 'none'
          if ARGV[6] ~= '' then
            pace = pace or pace_read(KEYS[2], now_ms())
            local limit, span = PRIVATE_LIMIT, PRIVATE_MS
            if kind == 103 then limit, span = GROUP_LIMIT, GROUP_MS end
            admitted = admit(KEYS[6], KEYS[5], pace, ARGV[6], limit, span, DEDUPE_S, not worker)
          end
          if not worker or admitted == 'now' then pace_write(KEYS[2], pace) end
          -- Admitted now, the reply found the outbox empty and left it so: the admission alone.
          if admitted == 'now' or (admitted == 'none' and not worker) then return admitted end
          return {'done', admitted, redis.call('LLEN', KEYS[6])}
        end
        if not worker then pace_write(KEYS[2], pace) end
        local session = redis.call('HMGET', KEYS[3], 'id', 'state', 'ix')
        local created = 0
        if not session[1] then
          -- A new session (an existing one's expiry was refreshed above).
          redis.call('HSET', KEYS[3], 'id', ARGV[4])
          redis.call('EXPIRE', KEYS[3], SESSION_S)
          session[1] = ARGV[4]
          created = 1
        end
        local indexed = tonumber(session[3])
        local stale = 0
        if not indexed or now_ms() - indexed > HALF_SESSION_MS then stale = 1 end
        if not fresh then redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'PX', LEASE_MS) end
        redis.call('SET', KEYS[4], ARGV[1], 'PX', LEASE_MS)
        -- A webhook request got here with nothing of the user waiting: the outbox is empty.
        local waiting = 0
        if worker then waiting = redis.call('LLEN', KEYS[6]) end
        return {'claimed', session[1], session[2] or false, created, waiting, stale}
        """#

    /// KEYS: update mark, session, user lease, queued, outbox, pace, and on one Redis the
    /// internal id's record (`tgi:{ID}`) when it is due.
    /// ARGV: token ('' when nothing was claimed), flags (the reply's window, `p` or `g` as in
    /// `begin`; `1` when the internal id's record is written now, by this call with the record's
    /// key, else `0`; the window of the subject's own chat, `p` or `g`), state action
    /// (keep/set/clear), state JSON, internal id ('' keeps it), replay id or '', update id, reply
    /// or '', the longest wait ms for the outbox's first call ('': no advance), the subject's own
    /// chat id (the user the record names; '' when neither is asked), then the tail's calls.
    /// The policy's numbers are the script's constants.
    /// With a token: marks the update done, writes the state it was given whoever holds the
    /// lease now (it is never lost), and releases the lease if it is still the token's. Then
    /// the update no longer waits, the reply is admitted or kept, the tail kept, and when asked
    /// the outbox's first call is read and its slot taken as `advance_outbox` does.
    /// Returns `{reply admission, calls in the outbox, lease was ours (1/0)}` and, when asked to
    /// advance, `advance_outbox`'s answer after them (`false` for an empty outbox); or only
    /// `"now"` when the reply was admitted now into an empty outbox, with no tail and no
    /// advance, and the lease was ours.
    public static func finish(_ policy: StatePolicy) -> RedisScript {
        RedisScript(name: "finish", helpers: policyConstants(policy) + pace + outboxStep, body: finishBody)
    }

    /// `finish`'s keys, in their order.
    static let finishKeys: [StateSubjectKey] = [.update, .session, .lease, .queued, .outbox, .pace]

    private static let finishBody = #"""
        local kind, indexed, own_kind = string.byte(ARGV[2], 1, 3)
        local ours = 1
        if ARGV[1] ~= '' then
          local done = 'done'
          if ARGV[6] ~= '' then done = 'done:' .. ARGV[6] end
          redis.call('SET', KEYS[1], done, 'EX', DEDUPE_S)
          local holder = redis.call('GET', KEYS[3])
          if holder == ARGV[1] then redis.call('DEL', KEYS[3]) elseif holder then ours = 0 end
          -- The session's fields in one write, then its expiry (nothing when it is gone).
          local fields = {}
          if ARGV[3] == 'set' then
            fields = {'state', ARGV[4]}
          elseif ARGV[3] == 'clear' then
            redis.call('HDEL', KEYS[2], 'state')
          end
          if ARGV[5] ~= '' then fields[#fields + 1] = 'id'; fields[#fields + 1] = ARGV[5] end
          if indexed == 49 then
            fields[#fields + 1] = 'ix'; fields[#fields + 1] = now_ms()
            if KEYS[7] then redis.call('SET', KEYS[7], ARGV[10], 'EX', SESSION_S) end
          end
          if #fields > 0 then redis.call('HSET', KEYS[2], unpack(fields)) end
          redis.call('EXPIRE', KEYS[2], SESSION_S)
        end
        redis.call('SREM', KEYS[4], ARGV[7])
        local admitted = 'none'
        if ARGV[8] ~= '' then
          local pace = pace_read(KEYS[6], now_ms())
          local limit, span = PRIVATE_LIMIT, PRIVATE_MS
          if kind == 103 then limit, span = GROUP_LIMIT, GROUP_MS end
          admitted = admit(KEYS[5], KEYS[4], pace, ARGV[8], limit, span, DEDUPE_S)
          if admitted == 'now' then pace_write(KEYS[6], pace) end
        end
        for i = 11, #ARGV do keep(KEYS[5], KEYS[4], ARGV[i], DEDUPE_S) end
        if ARGV[9] ~= '' then
          local limit, span = PRIVATE_LIMIT, PRIVATE_MS
          if own_kind == 103 then limit, span = GROUP_LIMIT, GROUP_MS end
          local step = outbox_step(KEYS[5], KEYS[4], KEYS[6], ARGV[10], limit, span, tonumber(ARGV[9]))
          return {admitted, redis.call('LLEN', KEYS[5]), ours, step[1] or false, step[2] or false, step[3] or 0}
        end
        -- Admitted now with no tail, the reply found the outbox empty and left it so.
        if admitted == 'now' and #ARGV < 11 then
          if ours == 1 then return admitted end
          return {admitted, 0, ours}
        end
        return {admitted, redis.call('LLEN', KEYS[5]), ours}
        """#

    /// KEYS: a chat's pace (its owner's). ARGV: limit, window ms, longest wait ms.
    /// Returns the milliseconds to wait, having reserved the slot, or, when the wait would be
    /// longer than allowed (nothing reserved), -1 - the milliseconds until the window could give
    /// a send a slot.
    public static let reserveChat = RedisScript(
        name: "reserve_chat",
        helpers: pace,
        body: #"""
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
        helpers: clock + botWindow,
        body: #"""
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
        body: #"""
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
        helpers: pace + outboxStep,
        body: #"""
            if ARGV[1] ~= '' and redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
            return outbox_step(KEYS[1], KEYS[2], KEYS[3], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
            """#)

    /// KEYS: outbox. ARGV: the call expected first, its replacement.
    public static let replaceOutboxHead = RedisScript(
        name: "replace_outbox_head",
        body: #"""
            if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LSET', KEYS[1], 0, ARGV[2]) end
            return 1
            """#)
}
