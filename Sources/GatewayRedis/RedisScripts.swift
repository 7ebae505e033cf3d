import GatewayCore

/// The Lua scripts behind `RedisStateStore`. Every key of one call carries the subject's hash
/// tag (`{tg:42}`), so the scripts run unchanged on Redis Cluster.
///
/// Keys of a subject:
/// - `{tg:ID}:update:UPDATE_ID`: `lease:TOKEN` while the update is processed, then `done`
///   for DEDUPE_TTL seconds.
/// - `{tg:ID}:rate`: the token bucket (`mt` milli-tokens, `at` ms, `warned` ms), 2 windows TTL.
/// - `{tg:ID}:session`: `id` (internal user id), `state` (conversation JSON), SESSION_TTL,
///   refreshed by every update.
/// - `{tg:ID}:lease`: the user's processing lease, the TOKEN of the update holding it.
public enum RedisScripts {
    /// Long callback data behind a button's token: its own key (any responder resolves it,
    /// whoever presses the button), living as long as a session.
    public static func callbackDataKey(_ token: String) -> String { "tgcb:{\(token)}" }

    /// The token bucket on Redis's clock, in milli-tokens (see TokenBucket.swift), shared by
    /// the begin and enqueue scripts: `take(key, capacity, window ms)` returns allowed, warn.
    static let tokenBucket = #"""
        local function take(key, capacity, window)
          local time = redis.call('TIME')
          local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
          local full = capacity * 1000
          local bucket = redis.call('HMGET', key, 'mt', 'at', 'warned')
          local tokens = tonumber(bucket[1]) or full
          local at = tonumber(bucket[2]) or now
          local warned = tonumber(bucket[3])
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
          if warned then
            redis.call('HSET', key, 'mt', tokens, 'at', at, 'warned', warned)
          else
            redis.call('HSET', key, 'mt', tokens, 'at', at)
          end
          redis.call('PEXPIRE', key, window * 2)
          return allowed, warn
        end

        """#

    /// KEYS: update mark, rate bucket, session, user lease.
    /// ARGV: token, lease ms, dedupe TTL s, capacity, window ms, session TTL s, needs session
    /// (1/0), new internal id, queued (1/0: a queue worker; no rate limit, leases taken over),
    /// replay (1/0: an operator's replay, processed although marked done).
    /// Returns `{"duplicate"}`, `{"in_progress", pttl}`, `{"busy", pttl}`, `{"limited", warn}`,
    /// `{"ok"}` (done at once) or `{"ok", internal id, state or false, created}`.
    public static let begin = RedisScript(name: "begin", source: tokenBucket + #"""
        local queued = ARGV[9] == '1'
        local mark = redis.call('GET', KEYS[1])
        if mark == 'done' and ARGV[10] ~= '1' then return {'duplicate'} end
        if mark and not queued then return {'in_progress', redis.call('PTTL', KEYS[1])} end
        local needs = ARGV[7] == '1'
        if needs and not queued then
          local holder = redis.call('GET', KEYS[4])
          if holder and holder ~= ARGV[1] then return {'busy', redis.call('PTTL', KEYS[4])} end
        end

        local allowed, warn = true, 0
        if not queued then allowed, warn = take(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5])) end

        if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[6]) end
        if not allowed then
          redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3])
          return {'limited', warn}
        end
        if not needs then
          redis.call('SET', KEYS[1], 'done', 'EX', ARGV[3])
          return {'ok'}
        end
        local session = redis.call('HMGET', KEYS[3], 'id', 'state')
        local created = 0
        if not session[1] then
          redis.call('HSET', KEYS[3], 'id', ARGV[8])
          session[1] = ARGV[8]
          created = 1
        end
        redis.call('EXPIRE', KEYS[3], ARGV[6])
        redis.call('SET', KEYS[1], 'lease:' .. ARGV[1], 'PX', ARGV[2])
        redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
        return {'ok', session[1], session[2] or false, created}
        """#)

    /// Outgoing limits, sliding windows of send times (sorted sets, future reservations
    /// included). KEYS: the bot's window, the chat's window (`{tgout}:…`: one slot, as the bot's
    /// budget is one counter anyway). ARGV: bot limit per second (0: none), chat limit, chat
    /// window ms, longest wait ms, a unique member.
    /// Returns the milliseconds to wait before sending, having reserved the slot, or -1 when
    /// the wait would be longer than allowed (nothing reserved).
    public static let outgoing = RedisScript(name: "outgoing", source: #"""
        local time = redis.call('TIME')
        local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
        local function earliest(key, limit, window)
          redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
          local count = redis.call('ZCARD', key)
          if count < limit then return now end
          local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
          return math.max(now, tonumber(entry[2]) + window)
        end
        local chatWindow = tonumber(ARGV[3])
        local at = earliest(KEYS[2], tonumber(ARGV[2]), chatWindow)
        local botLimit = tonumber(ARGV[1])
        if botLimit > 0 then at = math.max(at, earliest(KEYS[1], botLimit, 1000)) end
        local wait = at - now
        if wait > tonumber(ARGV[4]) then return -1 end
        redis.call('ZADD', KEYS[2], at, ARGV[5])
        redis.call('PEXPIRE', KEYS[2], chatWindow + wait + 1000)
        if botLimit > 0 then
          redis.call('ZADD', KEYS[1], at, ARGV[5])
          redis.call('PEXPIRE', KEYS[1], wait + 2000)
        end
        return wait
        """#)

    public static let outgoingBotKey = "{tgout}:bot"
    public static func outgoingChatKey(_ chatID: Int64) -> String { "{tgout}:chat:\(chatID)" }

    /// KEYS: update mark, session, user lease.
    /// ARGV: token, dedupe TTL s, session TTL s, state action (keep/set/clear), state JSON,
    /// internal id ('' keeps it).
    /// Returns 1 when the user's lease was still ours and the changes were applied, else 0
    /// (the lease expired and another update may own the state now).
    public static let finish = RedisScript(name: "finish", source: #"""
        if redis.call('GET', KEYS[1]) == 'lease:' .. ARGV[1] then
          redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
        end
        if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
        redis.call('DEL', KEYS[3])
        if ARGV[4] == 'set' then
          redis.call('HSET', KEYS[2], 'state', ARGV[5])
        elseif ARGV[4] == 'clear' then
          redis.call('HDEL', KEYS[2], 'state')
        end
        if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'id', ARGV[6]) end
        if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
        return 1
        """#)
}

/// The keys of one subject, as the scripts expect them.
public struct StateSubjectKeys: Sendable, Equatable {
    public let update: String
    public let rate: String
    public let session: String
    public let lease: String

    public init(subject: StateSubject, updateID: Int64) {
        let tag = subject.hashTag
        update = "\(tag):update:\(updateID)"
        rate = "\(tag):rate"
        session = "\(tag):session"
        lease = "\(tag):lease"
    }
}

/// A Lua script by name; connections load it once and call it by digest.
public struct RedisScript: Sendable {
    public let name: String
    public let source: String
}
