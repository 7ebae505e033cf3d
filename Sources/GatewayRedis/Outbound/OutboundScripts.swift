import GatewayCore

/// The keys of outbound jobs. A job lives with its partition (its id names it), so every
/// script of a job touches one Redis Cluster slot; a recipient's calls go to the recipient's
/// own keys (`{tg:ID}:job:JOB`, the outbox) in a separate script.
///
/// Keys of job J in partition P:
/// - `{tgq:P}:job:J`: `n` recipients, `c` the fan-out's cursor, `d` delivered, `u` unknown
///   internal ids, `at` created (ms), `f:REASON` failed per reason.
/// - `{tgq:P}:job:J:to`, `:calls`: the recipients' chat ids and the calls' templates.
/// - `{tgq:P}:job:J:outcomes`: each finished recipient's outcome (`d` or the reason): counted once.
///
/// The job's keys live DEDUPE_TTL after its last activity (an idempotency key finds the job
/// as long). Per partition, `{tgq:P}:outbound` holds `*` (recipients not yet finished) and each
/// unfinished job's own count; `{tgq:P}:outbound:jobs` the unfinished jobs by creation time.
public struct OutboundKeys: Sendable, Equatable {
    public let job: String
    public let recipients: String
    public let calls: String
    public let outcomes: String
    public let backlog: String
    public let unfinished: String
    public let stream: String

    public init(_ id: OutboundJobID) {
        let tag = "{tgq:\(id.partition)}"
        job = "\(tag):job:\(id)"
        recipients = job + ":to"
        calls = job + ":calls"
        outcomes = job + ":outcomes"
        backlog = Self.backlog(partition: id.partition)
        unfinished = Self.unfinished(partition: id.partition)
        stream = QueueKeys(partition: id.partition).stream
    }

    public static func backlog(partition: Int) -> String { "{tgq:\(partition)}:outbound" }
    public static func unfinished(partition: Int) -> String { "{tgq:\(partition)}:outbound:jobs" }

    /// Where an internal user id's Telegram user is recorded (SESSION_TTL).
    public static func internalUser(_ id: String) -> String { "tgi:{\(id)}" }

    /// A recipient's mark that the job's calls are in its outbox.
    public static func delivery(of subject: StateSubject, job: OutboundJobID) -> String { "\(subject.hashTag):job:\(job)" }
}

public enum OutboundScripts {
    /// KEYS: job, recipients, calls, backlog, unfinished, stream. ARGV: job id, TTL s, the
    /// backlog bound, recipients unfinished in the other partitions, unknown count, template
    /// count, the templates, the recipients. Returns `{"created"}`, `{"existing", recipients}`
    /// or `{"full"}`.
    public static let create = RedisScript(
        name: "outbound_create",
        helpers: RedisScripts.clock,
        body: #"""
            if redis.call('EXISTS', KEYS[1]) == 1 then return {'existing', tonumber(redis.call('HGET', KEYS[1], 'n'))} end
            local templates = tonumber(ARGV[6])
            local first = 7 + templates
            local n = #ARGV - first + 1
            local mine = tonumber(redis.call('HGET', KEYS[4], '*') or '0')
            if tonumber(ARGV[4]) + mine + n > tonumber(ARGV[3]) then return {'full'} end
            local now = now_ms()
            redis.call('HSET', KEYS[1], 'n', n, 'c', 0, 'd', 0, 'u', ARGV[5], 'at', now)
            for i = 7, first - 1 do redis.call('RPUSH', KEYS[3], ARGV[i]) end
            for i = first, #ARGV, 1000 do redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
            for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
            if n > 0 then
              redis.call('HINCRBY', KEYS[4], '*', n)
              redis.call('HSET', KEYS[4], ARGV[1], n)
              redis.call('ZADD', KEYS[5], now, ARGV[1])
              redis.call('XADD', KEYS[6], '*', 'j', ARGV[1])
            end
            return {'created'}
            """#)

    /// KEYS: job, recipients, calls. ARGV: count. Returns `{cursor, recipients, templates}`, or
    /// nil when the job is gone.
    public static let next = RedisScript(
        name: "outbound_next",
        body: #"""
            local cursor = redis.call('HGET', KEYS[1], 'c')
            if not cursor then return false end
            cursor = tonumber(cursor)
            return {cursor, redis.call('LRANGE', KEYS[2], cursor, cursor + tonumber(ARGV[1]) - 1), redis.call('LRANGE', KEYS[3], 0, -1)}
            """#)

    /// KEYS: job, recipients, calls, outcomes. ARGV: cursor, count, TTL s. Moves the cursor if
    /// it still stands where the chunk began.
    public static let advance = RedisScript(
        name: "outbound_advance",
        body: #"""
            if redis.call('HGET', KEYS[1], 'c') == ARGV[1] then redis.call('HSET', KEYS[1], 'c', tonumber(ARGV[1]) + tonumber(ARGV[2])) end
            for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
            return 1
            """#)

    /// KEYS: the recipient's mark for the job, its outbox, its queued set. ARGV: TTL s, the calls.
    /// Appends the calls to the outbox unless the mark says they were (1 appended, 0 not).
    public static let keep = RedisScript(
        name: "outbound_keep",
        helpers: RedisScripts.outbox,
        body: #"""
            if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
            for i = 2, #ARGV do keep(KEYS[2], KEYS[3], ARGV[i], ARGV[1]) end
            return 1
            """#)

    /// KEYS: job, outcomes, backlog, unfinished, recipients, calls. ARGV: job id, chat, outcome
    /// (`d` delivered, or the reason), TTL s. Counts the recipient's outcome once; a job whose
    /// recipients are all counted leaves the backlog.
    public static let record = RedisScript(
        name: "outbound_record",
        body: #"""
            if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
            if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
            if ARGV[3] == 'd' then redis.call('HINCRBY', KEYS[1], 'd', 1) else redis.call('HINCRBY', KEYS[1], 'f:' .. ARGV[3], 1) end
            if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
              redis.call('HINCRBY', KEYS[3], '*', -1)
              if redis.call('HINCRBY', KEYS[3], ARGV[1], -1) <= 0 then
                redis.call('HDEL', KEYS[3], ARGV[1])
                redis.call('ZREM', KEYS[4], ARGV[1])
              end
            end
            for _, key in ipairs({KEYS[1], KEYS[2], KEYS[5], KEYS[6]}) do redis.call('EXPIRE', key, ARGV[4]) end
            return 1
            """#)

    /// KEYS: backlog, unfinished. ARGV: job id. A job whose keys expired unfinished (its
    /// recipients' calls expired unsent) leaves the backlog. Returns the partition's backlog.
    public static let forget = RedisScript(
        name: "outbound_forget",
        body: #"""
            local left = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
            if left > 0 then redis.call('HINCRBY', KEYS[1], '*', -left) end
            redis.call('HDEL', KEYS[1], ARGV[1])
            redis.call('ZREM', KEYS[2], ARGV[1])
            return tonumber(redis.call('HGET', KEYS[1], '*') or '0')
            """#)
}
