import GatewayCore

/// The streams' keys and scripts. Everything of one partition carries the partition's hash tag
/// (`{tgq:N}`), so each script touches one Redis Cluster slot.
///
/// Keys of partition N:
/// - `{tgq:N}:stream`: the entries waiting or being processed (deleted when done, so its
///   length is the backlog); consumer group `workers`. An entry holds an update as Telegram
///   sent it (`u`, with `a` when its button press was answered and `replay` when an operator
///   replayed it), a note that a subject's outbox has calls waiting (`o`), or a call replayed
///   from the dead letters (`d`), or an outbound job to fan out (`j`, see ``OutboundKeys``).
/// - `{tgq:N}:seen:UPDATE_ID`: the update was stored (or refused by the rate limit); kept
///   DEDUPE_TTL seconds so a redelivery is acknowledged without a second entry.
/// - `{tgq:N}:rate:u:ID` / `rate:c:ID`: the subject's token bucket at queue mode's front door.
/// - `{tgq:N}:owner`: the worker holding the partition, with a lease its process renews.
/// - `{tgq:N}:attempts`: attempts per entry id, counted before each attempt.
/// - `{tgq:N}:dead`: dead letters (the update or call, the reason, the attempts), trimmed.
public struct QueueKeys: Sendable, Equatable {
    public static let group = "workers"
    public let partition: Int

    public init(partition: Int) {
        self.partition = partition
    }

    // Each key is written when it is asked for: a caller uses one or two of them (the front
    // door only the stream), and writing all four cost it about 1.7k instructions an update.
    public var stream: String { "{tgq:\(partition)}:stream" }
    public var owner: String { "{tgq:\(partition)}:owner" }
    public var attempts: String { "{tgq:\(partition)}:attempts" }
    public var dead: String { "{tgq:\(partition)}:dead" }

    public func seen(_ updateID: Int64) -> String { "{tgq:\(partition)}:seen:\(updateID)" }

    public func rate(_ subject: StateSubject?) -> String {
        switch subject?.kind {
        case .user: "{tgq:\(partition)}:rate:u:\(subject?.id ?? 0)"
        case .chat: "{tgq:\(partition)}:rate:c:\(subject?.id ?? 0)"
        case nil: "{tgq:\(partition)}:rate:none"
        }
    }
}

/// The fleet registry (hash tag `{tgfleet}`, one slot):
/// - `{tgfleet}:members`: every live process (``FleetMember/encoded``), scored by when its
///   registration runs out (Redis's clock, milliseconds); renewed each heartbeat.
/// - `{tgfleet}:partitions`: the streams that may hold entries (`0..<N`): the highest
///   QUEUE_PARTITIONS any process registered with, lowered once the streams above every live
///   process's QUEUE_PARTITIONS are drained.
public enum FleetKeys {
    public static let members = "{tgfleet}:members"
    public static let partitions = "{tgfleet}:partitions"
}

public enum QueueScripts {
    /// KEYS: members, partitions. ARGV: member, registration ms, its QUEUE_PARTITIONS.
    /// Registers the member, drops those run out, raises the streams in use to the member's
    /// partitions. Returns `{streams in use, {member, …}}`.
    public static let joinFleet = RedisScript(
        name: "join_fleet",
        body: #"""
            local time = redis.call('TIME')
            local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
            local lease = tonumber(ARGV[2])
            redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
            redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
            if redis.call('PTTL', KEYS[1]) < lease then redis.call('PEXPIRE', KEYS[1], lease) end
            local streams = tonumber(redis.call('GET', KEYS[2]) or '0')
            if tonumber(ARGV[3]) > streams then
              streams = tonumber(ARGV[3])
              redis.call('SET', KEYS[2], streams)
            end
            return {streams, redis.call('ZRANGE', KEYS[1], 0, -1)}
            """#)

    /// KEYS: members, partitions. ARGV: streams in use, new count. Lowers the streams in use
    /// when they are still what the caller read and no live member stores above the new count.
    /// Returns 1 when lowered, else 0.
    public static let retirePartitions = RedisScript(
        name: "retire_partitions",
        body: #"""
            local time = redis.call('TIME')
            local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
            if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then return 0 end
            for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
              local partitions = tonumber(string.match(member, ' (%d+)$'))
              if partitions and partitions > tonumber(ARGV[2]) then return 0 end
            end
            redis.call('SET', KEYS[2], ARGV[2])
            return 1
            """#)

    /// KEYS: stream, seen mark, rate bucket.
    /// ARGV: update body, flags (`1`/`0` each: rate limit; callback; hand-over, that is a busy
    /// user's update from the webhook path, whose button press is answered at once). The policy's
    /// numbers and the queue's bounds are the script's constants (see
    /// `RedisScripts.policyConstants(_:)`).
    /// Returns `{"duplicate"}`, `{"full", backlog, age ms}`, `{"limited", warn}`,
    /// `{"queued", answered now (1/0)}`, or only `"queued"` when not answered now.
    static func enqueue(_ policy: StatePolicy, _ settings: QueueSettings) -> RedisScript {
        let bounds = """
            local MAX_BACKLOG, MAX_AGE_MS, PROMPT_MS = \(settings.maxBacklog), \(settings.maxAgeMilliseconds), \(settings.callbackPromptMilliseconds)

            """
        return RedisScript(name: "enqueue", helpers: RedisScripts.policyConstants(policy) + bounds + RedisScripts.tokenBucket, body: enqueueBody)
    }

    private static let enqueueBody = #"""
        if redis.call('EXISTS', KEYS[2]) == 1 then return {'duplicate'} end
        local limit, callback, handover = string.byte(ARGV[2], 1, 3)
        callback = callback == 49
        local now = now_ms()
        local backlog = redis.call('XLEN', KEYS[1])
        local age = 0
        if backlog > 0 then
          local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
          if first[1] then age = math.max(0, now - tonumber(string.match(first[1][1], '^(%d+)'))) end
        end
        -- Button presses are small and expire: they may use twice the bound and ignore the age.
        local bound = MAX_BACKLOG
        if callback then bound = bound * 2 end
        if backlog >= bound or ((not callback) and age > MAX_AGE_MS) then return {'full', backlog, age} end
        if limit == 49 then
          local allowed, warn = take(KEYS[3], CAPACITY, WINDOW_MS)
          if not allowed then
            redis.call('SET', KEYS[2], 'limited', 'EX', DEDUPE_S)
            return {'limited', warn}
          end
        end
        local answered = 0
        if callback and (handover == 49 or age >= PROMPT_MS) then answered = 1 end
        redis.call('XADD', KEYS[1], '*', 'u', ARGV[1], 'a', answered)
        redis.call('SET', KEYS[2], 'queued', 'EX', DEDUPE_S)
        if answered == 0 then return 'queued' end
        return {'queued', answered}
        """#

    /// KEYS: owner. ARGV: worker, lease ms. Takes a free partition (or our own): 1, else 0.
    public static let take = RedisScript(
        name: "take_partition",
        body: #"""
            local owner = redis.call('GET', KEYS[1])
            if owner and owner ~= ARGV[1] then return 0 end
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return 1
            """#)

    /// KEYS: owner. ARGV: worker, lease ms. Extends the lease only while it is the worker's:
    /// a renewal never takes a free partition (one released, or expired, is someone else's to take).
    public static let renew = RedisScript(
        name: "renew_partition",
        body: #"""
            if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
            """#)

    /// KEYS: owner. ARGV: worker. Gives the partition up if it is still ours.
    public static let release = RedisScript(
        name: "release_partition",
        body: #"""
            if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
            return 0
            """#)

    /// KEYS: stream, attempts. ARGV: entry id, then what the worker takes next: nothing; `c`
    /// and an entry id (count an attempt at it); or `r`, the worker's name and a count (read up
    /// to that many new entries for the worker and count an attempt at the first). The entry
    /// is done: acknowledged and deleted. Returns 1 (nothing next), the attempt counted (`c`),
    /// or `{entries, attempt}` or 0 (`r`; 0: no new entry).
    public static let acknowledge = RedisScript(
        name: "acknowledge",
        body: #"""
            redis.call('XACK', KEYS[1], 'workers', ARGV[1])
            redis.call('XDEL', KEYS[1], ARGV[1])
            redis.call('HDEL', KEYS[2], ARGV[1])
            if ARGV[2] == 'c' then return redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
            if ARGV[2] ~= 'r' then return 1 end
            -- Never blocks inside a script: an empty stream answers at once.
            local read = redis.call('XREADGROUP', 'GROUP', 'workers', ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
            if not read then return 0 end
            local entries = read[1][2]
            return {entries, redis.call('HINCRBY', KEYS[2], entries[1][1], 1)}
            """#)

    /// KEYS: stream, attempts, dead. ARGV: entry id, its payload field (`u`, `d`, `o` or `j`) and value,
    /// reason, attempts, dead-letter bound. Moves the entry to the dead letters in one step.
    public static let deadLetter = RedisScript(
        name: "dead_letter",
        body: #"""
            redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', ARGV[2], ARGV[3], 'reason', ARGV[4], 'attempts', ARGV[5], 'entry', ARGV[1])
            redis.call('XACK', KEYS[1], 'workers', ARGV[1])
            redis.call('XDEL', KEYS[1], ARGV[1])
            redis.call('HDEL', KEYS[2], ARGV[1])
            return 1
            """#)

    /// KEYS: dead, stream. ARGV: dead-letter id, the partition's backlog bound. Puts the update
    /// (or call) back at the end of its partition as a new entry, the update marked as this
    /// replay (processed although it was finished, once), and removes the dead letter; unless
    /// the partition is at its bound. Returns `{"replayed", id}`, `{"full"}` or `{"missing"}`.
    public static let replay = RedisScript(
        name: "replay",
        body: #"""
            if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {'full'} end
            local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
            if not found[1] then return {'missing'} end
            local fields = found[1][2]
            local update, call, job
            for i = 1, #fields, 2 do
              if fields[i] == 'u' then update = fields[i + 1] elseif fields[i] == 'd' then call = fields[i + 1] elseif fields[i] == 'j' then job = fields[i + 1] end
            end
            local id
            if update then
              id = redis.call('XADD', KEYS[2], '*', 'u', update, 'a', 0, 'replay', ARGV[1])
            elseif call then
              id = redis.call('XADD', KEYS[2], '*', 'd', call)
            elseif job then
              id = redis.call('XADD', KEYS[2], '*', 'j', job)
            else
              return {'missing'}
            end
            redis.call('XDEL', KEYS[1], ARGV[1])
            return {'replayed', id}
            """#)
}
