import GatewayCore

/// A stream entry as Redis returns it (`[id, [field, value, …]]`): its id and fields by name.
struct RawStreamEntry {
    var id: String
    var fields: [String: RedisReply]

    init?(_ reply: RedisReply) {
        guard case .array(let entry) = reply, entry.count == 2, let id = entry[0].text, case .array(let pairs) = entry[1] else { return nil }
        var fields: [String: RedisReply] = [:]
        for index in stride(from: 0, to: pairs.count - 1, by: 2) {
            if let name = pairs[index].text { fields[name] = pairs[index + 1] }
        }
        self.id = id
        self.fields = fields
    }

    /// What the entry holds, as a worker reads it.
    var content: StreamEntry.Content {
        if case .string(let body)? = fields["u"] {
            let replay = fields["replay"]?.text
            return .update(body: body, callbackAnswered: fields["a"]?.text == "1", replay: replay?.isEmpty == false ? replay : nil)
        }
        if let tag = fields["o"]?.text, let subject = StateSubject(hashTag: tag) { return .outbox(subject) }
        if case .string(let bytes)? = fields["d"], let send = PendingSend.decode(bytes) { return .delivery(send) }
        if let job = fields["j"]?.text.flatMap(OutboundJobID.init) { return .job(job) }
        return .unreadable
    }
}

/// A worker's side of the streams on Redis, on the worker's own connection (its reads block,
/// so it cannot share the state store's short timeouts).
public final class RedisPartitionStore: PartitionStore {
    private let connection: RedisConnection

    /// `blockMilliseconds`: the longest read the worker makes, added to the command timeout.
    public init(redis: GatewayConfig.RedisSettings, blockMilliseconds: Int, clock: @escaping @Sendable () -> UInt64) {
        connection = RedisConnection(
            settings: .init(redis, commandTimeoutSeconds: redis.commandTimeoutSeconds + Double(blockMilliseconds) / 1000 + 1), clock: clock)
    }

    public func takeLease(partition: Int, worker: String, milliseconds: Int64) throws(StateStoreError) -> Bool {
        try flag(
            connection.evaluate(
                QueueScripts.take, keys: [QueueKeys(partition: partition).owner], arguments: [Array(worker.utf8), Self.bytes(milliseconds)]))
    }

    public func renewLeases(_ held: [(partition: Int, worker: String)], milliseconds: Int64) throws(StateStoreError) -> [Bool] {
        let lease = Self.bytes(milliseconds)
        let replies = try connection.evaluateAll(
            held.map { ScriptCall(QueueScripts.renew, keys: [QueueKeys(partition: $0.partition).owner], arguments: [Array($0.worker.utf8), lease]) })
        var renewed: [Bool] = []
        for reply in replies { renewed.append(try flag(reply)) }
        return renewed
    }

    public func freePartitions(_ partitions: Range<Int>, withEntries: Bool) throws(StateStoreError) -> [Int] {
        let replies = try connection.pipeline(
            partitions.flatMap { partition in
                let keys = QueueKeys(partition: partition)
                let owner = [Array("EXISTS".utf8), Array(keys.owner.utf8)]
                return withEntries ? [owner, [Array("XLEN".utf8), Array(keys.stream.utf8)]] : [owner]
            }, deadline: .distantFuture, operation: "free_partitions")
        let stride = withEntries ? 2 : 1
        guard replies.count == partitions.count * stride else { throw .unexpectedReply }
        return partitions.enumerated().compactMap { index, partition in
            guard replies[index * stride] == .integer(0) else { return nil }
            if withEntries, case .integer(let length) = replies[index * stride + 1], length == 0 { return nil }
            return partition
        }
    }

    public func releaseLease(partition: Int, worker: String) {
        _ = try? connection.evaluate(QueueScripts.release, keys: [QueueKeys(partition: partition).owner], arguments: [Array(worker.utf8)])
    }

    /// Creates the stream and its group if they do not exist yet (a group created late still
    /// reads the entries already there).
    public func prepare(partition: Int) throws(StateStoreError) {
        let reply = try connection.command("XGROUP", "CREATE", QueueKeys(partition: partition).stream, QueueKeys.group, "0", "MKSTREAM")
        if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw .refused }
    }

    public func claimPending(partition: Int, worker: String, idleMilliseconds: Int64) throws(StateStoreError) -> StreamEntry? {
        let keys = QueueKeys(partition: partition)
        var cursor = "0-0"
        while true {
            let reply = try connection.command("XAUTOCLAIM", keys.stream, QueueKeys.group, worker, String(idleMilliseconds), cursor, "COUNT", "1")
            if case .error(let message) = reply {
                try recreateGroup(partition, after: message)
                return nil
            }
            guard case .array(let parts) = reply, parts.count >= 2, let next = parts[0].text else { throw .unexpectedReply }
            if let entry = entries(of: parts[1], partition: partition).first { return entry }
            // A pending id whose entry is gone (deleted from outside) is dropped by Redis; go on.
            guard next != "0-0" else { return nil }
            cursor = next
        }
    }

    public func readNew(partition: Int, worker: String, count: Int, blockMilliseconds: Int) throws(StateStoreError) -> [StreamEntry] {
        let keys = QueueKeys(partition: partition)
        let reply = try connection.command(
            "XREADGROUP", "GROUP", QueueKeys.group, worker, "COUNT", String(max(1, count)), "BLOCK", String(blockMilliseconds), "STREAMS",
            keys.stream, ">")
        if case .error(let message) = reply {
            try recreateGroup(partition, after: message)
            return []
        }
        guard case .array(let streams) = reply, case .array(let stream)? = streams.first, stream.count == 2 else { return [] }
        return entries(of: stream[1], partition: partition)
    }

    public func countAttempt(_ entry: StreamEntry) throws(StateStoreError) -> Int {
        guard case .integer(let attempts) = try connection.command("HINCRBY", QueueKeys(partition: entry.partition).attempts, entry.id, "1")
        else { throw .unexpectedReply }
        return Int(attempts)
    }

    public func acknowledge(_ entry: StreamEntry) throws(StateStoreError) {
        guard try acknowledge(entry, then: []) == .integer(1) else { throw .unexpectedReply }
    }

    public func acknowledge(_ entry: StreamEntry, countingAttemptAt next: StreamEntry) throws(StateStoreError) -> Int {
        guard case .integer(let attempt) = try acknowledge(entry, then: ["c", next.id]) else { throw .unexpectedReply }
        return Int(attempt)
    }

    public func acknowledge(
        _ entry: StreamEntry, readingNewFor worker: String, count: Int
    ) throws(StateStoreError) -> (entries: [StreamEntry], firstAttempt: Int) {
        switch try acknowledge(entry, then: ["r", worker, String(max(1, count))]) {
        case .integer(0):
            return ([], 0)
        case .array(let parts) where parts.count == 2:
            // The attempt is the first entry's: every entry read must be one (never skipped).
            let read = entries(of: parts[0], partition: entry.partition)
            guard case .integer(let attempt) = parts[1], case .array(let raw) = parts[0], !read.isEmpty, read.count == raw.count
            else { throw .unexpectedReply }
            return (read, Int(attempt))
        default:
            throw .unexpectedReply
        }
    }

    /// The acknowledgement script with what the worker takes next (see ``QueueScripts/acknowledge``).
    private func acknowledge(_ entry: StreamEntry, then next: [String]) throws(StateStoreError) -> RedisReply {
        let keys = QueueKeys(partition: entry.partition)
        let reply = try connection.evaluate(
            QueueScripts.acknowledge, keys: [keys.stream, keys.attempts], arguments: ([entry.id] + next).map { Array($0.utf8) })
        if case .error = reply { throw .refused }
        return reply
    }

    public func deadLetter(_ entry: StreamEntry, reason: String, attempts: Int, limit: Int) throws(StateStoreError) {
        let keys = QueueKeys(partition: entry.partition)
        let payload: (field: String, value: [UInt8])
        switch entry.content {
        case .update(let body, _, _): payload = ("u", body)
        case .delivery(let send): payload = ("d", send.encoded)
        case .outbox(let subject): payload = ("o", Array(subject.hashTag.utf8))
        case .job(let id): payload = ("j", Array(id.description.utf8))
        case .unreadable: payload = ("x", [])
        }
        try expectSuccess(
            connection.evaluate(
                QueueScripts.deadLetter, keys: [keys.stream, keys.attempts, keys.dead],
                arguments: [
                    Array(entry.id.utf8), Array(payload.field.utf8), payload.value, Array(reason.utf8), Self.bytes(attempts), Self.bytes(limit),
                ]))
    }

    public func joinFleet(_ member: FleetMember, milliseconds: Int64) throws(StateStoreError) -> FleetView {
        let reply = try connection.evaluate(
            QueueScripts.joinFleet, keys: [FleetKeys.members, FleetKeys.partitions],
            arguments: [Array(member.encoded.utf8), Self.bytes(milliseconds), Self.bytes(member.partitions)])
        guard case .array(let parts) = reply, parts.count == 2, case .integer(let partitions) = parts[0], case .array(let members) = parts[1]
        else { throw .unexpectedReply }
        return FleetView(members: members.compactMap { $0.text.flatMap(FleetMember.init(encoded:)) }, partitions: Int(partitions))
    }

    public func leaveFleet(_ member: FleetMember) {
        _ = try? connection.command("ZREM", FleetKeys.members, member.encoded)
    }

    /// The retiring streams' lengths and dead letters read in one round trip (per node), then
    /// the count lowered in the registry's slot. The empty streams stay (a few hundred bytes
    /// each): a process still starting with the old count would only make them again.
    public func retirePartitions(from partitions: Int, to inUse: Int) throws(StateStoreError) -> Bool {
        let retiring = inUse..<partitions
        guard !retiring.isEmpty else { return false }
        let lengths = try connection.pipeline(
            retiring.flatMap { partition in
                let keys = QueueKeys(partition: partition)
                return [["XLEN", keys.stream], ["XLEN", keys.dead]].map { $0.map { Array($0.utf8) } }
            }, deadline: .distantFuture, operation: "retiring_lengths")
        guard lengths.count == retiring.count * 2 else { throw .unexpectedReply }
        guard lengths.allSatisfy({ $0 == .integer(0) }) else { return false }
        let reply = try connection.evaluate(
            QueueScripts.retirePartitions, keys: [FleetKeys.members, FleetKeys.partitions],
            arguments: [Self.bytes(partitions), Self.bytes(inUse)])
        return reply == .integer(1)
    }

    /// The entries of a stream reply (`[[id, fields], …]`) that this version reads as entries.
    private func entries(of reply: RedisReply, partition: Int) -> [StreamEntry] {
        guard case .array(let list) = reply else { return [] }
        return list.compactMap { RawStreamEntry($0).map { StreamEntry(partition: partition, id: $0.id, content: $0.content) } }
    }

    private func flag(_ reply: RedisReply) throws(StateStoreError) -> Bool {
        switch reply {
        case .integer(1): return true
        case .integer(0): return false
        default: throw .unexpectedReply
        }
    }

    private func expectSuccess(_ reply: RedisReply) throws(StateStoreError) {
        if case .error = reply { throw .refused }
    }

    /// Redis lost the group (restarted without its data): make it again; the next read retries.
    private func recreateGroup(_ partition: Int, after message: String) throws(StateStoreError) {
        guard message.hasPrefix("NOGROUP") else { throw .refused }
        try prepare(partition: partition)
    }

    static func bytes(_ value: some BinaryInteger) -> [UInt8] { Array(String(value).utf8) }
}
