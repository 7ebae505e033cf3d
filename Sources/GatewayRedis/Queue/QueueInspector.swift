import GatewayCore

/// What `gatewayctl` reads and changes in queue mode: each partition's backlog and holder, and
/// the dead letters, which it can replay.
public final class QueueInspector {
    public struct PartitionStatus: Sendable, Equatable {
        public var partition: Int
        /// Entries waiting or being processed.
        public var backlog: Int
        /// Entries handed to a worker and not yet acknowledged.
        public var pending: Int
        public var owner: String?
        /// Milliseconds since the oldest entry was enqueued (0 when there is none).
        public var oldestAgeMilliseconds: Int64
        public var deadLetters: Int
        /// At or above QUEUE_PARTITIONS: left by a larger count, drained and then retired.
        public var retiring: Bool
    }

    /// A dead letter as shown to the operator: ids, type and reason, never the update's text.
    public struct DeadLetter: Sendable, Equatable {
        public var partition: Int
        public var id: String
        public var reason: String
        public var attempts: Int
        /// The update's id, for an update; nil for a call.
        public var updateID: Int64?
        /// The update's type, or `call:METHOD` for a Bot API call that could not be delivered.
        public var updateType: String
    }

    /// What became of a replay.
    public enum Replay: Sendable, Equatable {
        case replayed
        /// No such dead letter (already replayed, trimmed, or a typo).
        case missing
        /// The partition is at QUEUE_MAX_BACKLOG: nothing was replayed; try again once it drains.
        case full
    }

    private let connection: RedisConnection
    private let settings: QueueSettings

    public init(redis: GatewayConfig.RedisSettings, settings: QueueSettings, clock: @escaping @Sendable () -> UInt64) {
        self.settings = settings
        connection = RedisConnection(
            settings: .init(
                redis, connectTimeoutSeconds: max(1, redis.connectTimeoutSeconds), commandTimeoutSeconds: max(5, redis.commandTimeoutSeconds)),
            clock: clock)
    }

    /// The processes registered in the fleet, every host's.
    public func fleet() throws(StateStoreError) -> [FleetMember] {
        guard case .array(let members) = try connection.command("ZRANGE", FleetKeys.members, "0", "-1") else { throw .unexpectedReply }
        return members.compactMap { $0.text.flatMap(FleetMember.init(encoded:)) }
    }

    /// The streams that may hold entries: QUEUE_PARTITIONS, or more while the streams a larger
    /// count left are not drained yet.
    public func partitions() throws(StateStoreError) -> Int {
        max(settings.partitions, try connection.command("GET", FleetKeys.partitions).text.flatMap { Int($0) } ?? 0)
    }

    public func status() throws(StateStoreError) -> [PartitionStatus] {
        let now = try serverMilliseconds()
        var result: [PartitionStatus] = []
        for partition in 0..<(try partitions()) {
            let keys = QueueKeys(partition: partition)
            let backlog = try integer(connection.command("XLEN", keys.stream))
            let deadLetters = try integer(connection.command("XLEN", keys.dead))
            var pending = 0
            if backlog > 0, case .array(let summary) = try connection.command("XPENDING", keys.stream, QueueKeys.group),
                case .integer(let count)? = summary.first
            {
                pending = Int(count)
            }
            var age: Int64 = 0
            if backlog > 0, case .array(let first) = try connection.command("XRANGE", keys.stream, "-", "+", "COUNT", "1"),
                case .array(let entry)? = first.first, let id = entry.first?.text, let stamp = Int64(id.prefix { $0 != "-" })
            {
                age = max(0, now - stamp)
            }
            let owner = try connection.command("GET", keys.owner).text
            result.append(
                PartitionStatus(
                    partition: partition, backlog: backlog, pending: pending, owner: owner, oldestAgeMilliseconds: age, deadLetters: deadLetters,
                    retiring: partition >= settings.partitions))
        }
        return result
    }

    /// Up to `limit` dead letters of each partition, oldest first.
    public func deadLetters(limit: Int = 100) throws(StateStoreError) -> [DeadLetter] {
        var result: [DeadLetter] = []
        let decoder = UpdateDecoder()
        for partition in 0..<(try partitions()) {
            let reply = try connection.command("XRANGE", QueueKeys(partition: partition).dead, "-", "+", "COUNT", String(limit))
            guard case .array(let entries) = reply else { continue }
            for case let entry? in entries.map(RawStreamEntry.init) {
                let values = entry.fields
                var update: Update?
                if case .string(let body)? = values["u"], case .success(let decoded) = decoder.decode(body) { update = decoded }
                var kind = update.map { "\($0.type)" } ?? "undecodable"
                if case .string(let bytes)? = values["d"], let send = PendingSend.decode(bytes) { kind = "call:\(send.call.name)" }
                result.append(
                    DeadLetter(
                        partition: partition, id: entry.id, reason: values["reason"]?.text ?? "?", attempts: Int(values["attempts"]?.text ?? "") ?? 0,
                        updateID: update?.id, updateType: kind))
            }
        }
        return result
    }

    /// Puts a dead letter back at the end of its partition, unless the partition is at its
    /// backlog bound (a replay is new work like any other).
    public func replay(partition: Int, id: String) throws(StateStoreError) -> Replay {
        guard (0..<(try partitions())).contains(partition) else { return .missing }
        let keys = QueueKeys(partition: partition)
        let reply = try connection.evaluate(
            QueueScripts.replay, keys: [keys.dead, keys.stream], arguments: [Array(id.utf8), Array(String(settings.maxBacklog).utf8)])
        guard case .array(let items) = reply, let kind = items.first?.text else { throw .unexpectedReply }
        switch kind {
        case "replayed": return .replayed
        case "full": return .full
        default: return .missing
        }
    }

    private func serverMilliseconds() throws(StateStoreError) -> Int64 {
        guard case .array(let time) = try connection.command("TIME"), time.count == 2, let seconds = Int64(time[0].text ?? ""),
            let micros = Int64(time[1].text ?? "")
        else { throw .unexpectedReply }
        return seconds * 1000 + micros / 1000
    }

    private func integer(_ reply: RedisReply) throws(StateStoreError) -> Int {
        guard case .integer(let value) = reply else { throw .unexpectedReply }
        return Int(value)
    }
}
