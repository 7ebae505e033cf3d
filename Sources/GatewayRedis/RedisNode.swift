import CHiredis
import CoreMetrics
import GatewayCore

#if canImport(Glibc)
import Glibc
#endif

/// One hiredis connection to one Redis server, owned by one thread. Connects lazily with a
/// bounded timeout, drops the connection after any error and reconnects with exponential
/// backoff; while backing off every call fails fast, so a dead Redis costs a request nothing.
/// ``RedisConnection`` puts one in front of a single server, or one per node of a cluster.
final class RedisNode {
    typealias Settings = RedisConnection.Settings

    private let settings: Settings
    private let clock: @Sendable () -> UInt64
    private var context: UnsafeMutablePointer<redisContext>?
    private var retryAt: UInt64 = 0
    private var backoffNanoseconds: UInt64 = minimumBackoff
    /// This connection's latency histograms by operation, made once each (the connection belongs
    /// to one thread: no lock). Found by comparing names: an operation's name is the same short
    /// string each call, which compares in a few instructions, where a dictionary hashes it
    /// (about 600 instructions a lookup).
    private var timers: [(operation: String, timer: Timer)] = []

    static let minimumBackoff: UInt64 = 50_000_000
    static let maximumBackoff: UInt64 = 2_000_000_000

    init(settings: Settings, clock: @escaping @Sendable () -> UInt64) {
        self.settings = settings
        self.clock = clock
    }

    deinit {
        if let context { redisFree(context) }
    }

    var isConnected: Bool { context != nil }

    /// Sends one command and returns its reply, within the command timeout (plus `allowance`,
    /// for a command Redis itself holds, as `WAIT`) cut to what `deadline` leaves (under a
    /// millisecond left: nothing is sent). A Redis error reply is returned as `.error`;
    /// transport failures throw.
    func command(
        _ arguments: [[UInt8]], deadline: Deadline = .distantFuture, operation: String? = nil, allowance: Double = 0
    ) throws(StateStoreError) -> RedisReply {
        try command(
            encoded: RESP.encode(arguments), deadline: deadline,
            operation: operation ?? arguments.first.map { String(decoding: $0, as: UTF8.self).uppercased() } ?? "?", allowance: allowance)
    }

    /// ``command(_:deadline:operation:allowance:)`` of a command already in Redis's protocol.
    private func command(encoded: [UInt8], deadline: Deadline, operation: String, allowance: Double) throws(StateStoreError) -> RedisReply {
        let started = clock()
        defer { timer(operation).record(since: started, clock()) }
        guard let timeout = deadline.timeout(cappedAt: settings.commandTimeoutSeconds + allowance, at: clock()) else { throw .timeout }
        let context = try connected(deadline: deadline)
        // The socket's timeout is the configured one; only a deadline closer than that (or an
        // allowance) costs the two setsockopt calls, there and back.
        let changed = timeout != settings.commandTimeoutSeconds
        if changed { redisSetTimeout(context, Self.timeval(timeout)) }
        do {
            let reply = try send(context, encoded: encoded)
            if changed { redisSetTimeout(context, Self.timeval(settings.commandTimeoutSeconds)) }
            return reply
        } catch {
            disconnect()
            throw error
        }
    }

    func command(_ arguments: String...) throws(StateStoreError) -> RedisReply {
        try command(arguments.map { Array($0.utf8) })
    }

    /// Sends `ASKING` and the command together (a cluster's answer for a slot being migrated
    /// here): `ASKING` holds for the next command only, so nothing may come between.
    func commandAsking(_ arguments: [[UInt8]], deadline: Deadline, operation: String? = nil) throws(StateStoreError) -> RedisReply {
        try commandAsking(
            encoded: RESP.encode(arguments), deadline: deadline,
            operation: operation ?? arguments.first.map { String(decoding: $0, as: UTF8.self).uppercased() } ?? "?")
    }

    private func commandAsking(encoded command: [UInt8], deadline: Deadline, operation: String) throws(StateStoreError) -> RedisReply {
        let replies = try pipeline(encoded: [RESP.encode([Array("ASKING".utf8)]), command], deadline: deadline, operation: operation)
        return replies.count == 2 ? replies[1] : .null
    }

    /// Runs the call's script with FCALL, loading its library only when Redis answers that the
    /// function is missing (a server that never had it, a restart without persistence,
    /// `FUNCTION FLUSH`), then calling again. A library loaded on a master reaches its replicas,
    /// so a new connection, to a promoted replica too, calls at once; a replica not promoted yet
    /// answers the call with `MOVED` to its master, not the library with `READONLY`. Error
    /// replies are returned as `.error`. `asking`: right after `ASKING` (a slot being migrated).
    func evaluate(_ call: ScriptCall, deadline: Deadline = .distantFuture, asking: Bool = false) throws(StateStoreError) -> RedisReply {
        precondition(call.isComplete, "a script call is sent with every key and argument it was made for")
        func send() throws(StateStoreError) -> RedisReply {
            asking
                ? try commandAsking(encoded: call.bytes, deadline: deadline, operation: call.script.name)
                : try command(encoded: call.bytes, deadline: deadline, operation: call.script.name, allowance: 0)
        }
        let reply = try send()
        guard Self.isMissingFunction(reply) else { return reply }
        try load(call.script, deadline: deadline)
        return try send()
    }

    /// Runs each call, every call written at once and the replies read after: one round trip
    /// for them all. Error replies are returned in place. A call whose function was missing
    /// did nothing: only those are sent again, in their order, once its library is loaded.
    func evaluateAll(_ calls: [ScriptCall], deadline: Deadline = .distantFuture) throws(StateStoreError) -> [RedisReply] {
        guard !calls.isEmpty else { return [] }
        precondition(calls.allSatisfy(\.isComplete), "a script call is sent with every key and argument it was made for")
        var replies = try pipeline(encoded: calls.map(\.bytes), deadline: deadline, operation: calls[0].script.name)
        let missing = replies.indices.filter { Self.isMissingFunction(replies[$0]) }
        guard !missing.isEmpty else { return replies }
        var libraries: [String] = []
        for index in missing where !libraries.contains(calls[index].script.function) {
            try load(calls[index].script, deadline: deadline)
            libraries.append(calls[index].script.function)
        }
        let again = try pipeline(encoded: missing.map { calls[$0].bytes }, deadline: deadline, operation: calls[0].script.name)
        for (index, reply) in zip(missing, again) { replies[index] = reply }
        return replies
    }

    /// Loads the script's library. A library of that name already there (another connection
    /// loaded it meanwhile) is the same text: its name carries its digest.
    private func load(_ script: RedisScript, deadline: Deadline) throws(StateStoreError) {
        let reply = try command([Array("FUNCTION".utf8), Array("LOAD".utf8), Array(script.library.utf8)], deadline: deadline)
        switch reply {
        case .error(let message) where message.hasPrefix("ERR Library ") && message.hasSuffix(" already exists"):
            break
        case .error:
            // Redis refusing: still loading its data, out of memory, no permission, a replica.
            throw .refused
        default:
            guard reply.text == script.function else { throw .unexpectedReply }
        }
    }

    private static func isMissingFunction(_ reply: RedisReply) -> Bool {
        if case .error(let message) = reply { message.hasPrefix("ERR Function not found") } else { false }
    }

    /// Writes every command, then reads every reply, in order: one round trip. Error replies
    /// are returned in place.
    func pipeline(_ commands: [[[UInt8]]], deadline: Deadline, operation: String = "pipeline") throws(StateStoreError) -> [RedisReply] {
        try pipeline(encoded: commands.map(RESP.encode), deadline: deadline, operation: operation)
    }

    /// ``pipeline(_:deadline:operation:)`` of commands already in Redis's protocol.
    private func pipeline(encoded commands: [[UInt8]], deadline: Deadline, operation: String) throws(StateStoreError) -> [RedisReply] {
        let started = clock()
        defer { timer(operation).record(since: started, clock()) }
        guard let timeout = deadline.timeout(cappedAt: settings.commandTimeoutSeconds, at: clock()) else { throw .timeout }
        let context = try connected(deadline: deadline)
        let shortened = timeout < settings.commandTimeoutSeconds
        if shortened { redisSetTimeout(context, Self.timeval(timeout)) }
        defer { if shortened, self.context != nil { redisSetTimeout(context, Self.timeval(settings.commandTimeoutSeconds)) } }
        for command in commands {
            guard Self.append(encoded: command, to: context) == REDIS_OK else {
                disconnect()
                throw .unavailable
            }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK, let reply = raw else {
                let timedOut = context.pointee.err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
                disconnect()
                throw timedOut ? .timeout : .unavailable
            }
            replies.append(RedisReply(reply.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
        return replies
    }

    private func timer(_ operation: String) -> Timer {
        if let known = timers.first(where: { $0.operation == operation }) { return known.timer }
        let made = Timer(label: GatewayMetric.redisSeconds, dimensions: [("operation", operation)])
        timers.append((operation, made))
        return made
    }

    private func send(_ context: UnsafeMutablePointer<redisContext>, _ arguments: [[UInt8]]) throws(StateStoreError) -> RedisReply {
        try send(context, encoded: RESP.encode(arguments))
    }

    private func send(_ context: UnsafeMutablePointer<redisContext>, encoded command: [UInt8]) throws(StateStoreError) -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        guard Self.append(encoded: command, to: context) == REDIS_OK, redisGetReply(context, &raw) == REDIS_OK, let raw else {
            let timedOut = context.pointee.err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
            throw timedOut ? .timeout : .unavailable
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return RedisReply(reply)
    }

    /// Puts a command in the context's output buffer (sent by the next read of a reply).
    private static func append(encoded command: [UInt8], to context: UnsafeMutablePointer<redisContext>) -> Int32 {
        command.withUnsafeBufferPointer { command in
            command.withMemoryRebound(to: CChar.self) { redisAppendFormattedCommand(context, $0.baseAddress, $0.count) }
        }
    }

    private func connected(deadline: Deadline) throws(StateStoreError) -> UnsafeMutablePointer<redisContext> {
        if let context { return context }
        guard clock() >= retryAt else { throw .unavailable }
        guard let connectTimeout = deadline.timeout(cappedAt: settings.connectTimeoutSeconds, at: clock()) else { throw .timeout }
        do {
            let context = try connect(timeout: connectTimeout)
            self.context = context
            backoffNanoseconds = Self.minimumBackoff
            return context
        } catch {
            disconnect()
            throw error
        }
    }

    private func connect(timeout: Double) throws(StateStoreError) -> UnsafeMutablePointer<redisContext> {
        let connectTimeout = Self.timeval(timeout)
        let made: UnsafeMutablePointer<redisContext>? =
            if let socket = settings.socket {
                redisConnectUnixWithTimeout(socket, connectTimeout)
            } else {
                redisConnectWithTimeout(settings.host, Int32(settings.port), connectTimeout)
            }
        guard let context = made else { throw .unavailable }
        guard context.pointee.err == 0, redisSetTimeout(context, Self.timeval(settings.commandTimeoutSeconds)) == REDIS_OK else {
            redisFree(context)
            throw .unavailable
        }
        do throws(StateStoreError) {
            if let password = settings.password {
                guard case .status = try send(context, [Array("AUTH".utf8), Array(password.reveal().utf8)]) else { throw .refused }
            }
            if settings.database != 0 {
                guard case .status = try send(context, [Array("SELECT".utf8), Array(String(settings.database).utf8)]) else { throw .refused }
            }
        } catch {
            redisFree(context)
            throw error
        }
        return context
    }

    /// Drops the connection; the next call reconnects after the backoff.
    func disconnect() {
        if let context { redisFree(context) }
        context = nil
        retryAt = clock() + backoffNanoseconds
        backoffNanoseconds = min(backoffNanoseconds * 2, Self.maximumBackoff)
    }

    /// Never zero: hiredis and the kernel read a zero timeout as none.
    private static func timeval(_ seconds: Double) -> Glibc.timeval {
        let clamped = max(0.001, seconds.isFinite ? seconds : 0.001)
        return Glibc.timeval(tv_sec: Int(clamped), tv_usec: Int((clamped - Double(Int(clamped))) * 1_000_000))
    }
}

extension Timer {
    /// Records the time from `start` to `end` (monotonic nanoseconds; never negative).
    func record(since start: UInt64, _ end: UInt64) {
        recordNanoseconds(Int64(clamping: end > start ? end - start : 0))
    }
}
