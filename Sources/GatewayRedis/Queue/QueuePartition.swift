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
}

/// One entry read from a partition.
struct StreamEntry: Equatable {
    var id: String
    var body: [UInt8]
    var callbackAnswered: Bool
    var isReplay: Bool

    /// The first entry of an `XREADGROUP` or `XAUTOCLAIM` reply's entry list, if any.
    init?(entries: RedisReply) {
        guard case .array(let list) = entries, let first = list.first, let entry = RawStreamEntry(first),
            case .string(let body)? = entry.fields["u"]
        else { return nil }
        id = entry.id
        self.body = body
        callbackAnswered = entry.fields["a"]?.text == "1"
        isReplay = entry.fields["replay"]?.text == "1"
    }
}

/// The Redis commands a worker runs on the partition it holds, on its own connection (its
/// reads block, so it cannot share the state store's short timeouts).
struct QueuePartition {
    let keys: QueueKeys
    let worker: String
    let connection: RedisConnection

    /// Takes the partition's lease for this worker, or renews it: true when it is ours, false
    /// when another worker holds it, nil when Redis could not tell.
    func takeLease(milliseconds: [UInt8]) -> Bool? {
        switch try? connection.evaluate(QueueScripts.acquire, keys: [keys.owner], arguments: [Array(worker.utf8), milliseconds]) {
        case .integer(1): true
        case .integer(0): false
        default: nil
        }
    }

    /// Gives the lease up if it is still this worker's.
    func releaseLease() {
        _ = try? connection.evaluate(QueueScripts.release, keys: [keys.owner], arguments: [Array(worker.utf8)])
    }

    /// Creates the stream and its group if they do not exist yet (a group created late still
    /// reads the entries already there).
    func prepare() throws(StateStoreError) {
        let reply = try connection.command("XGROUP", "CREATE", keys.stream, QueueKeys.group, "0", "MKSTREAM")
        if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw .refused }
    }

    /// An entry left pending by an earlier holder of the partition (whose lease ran out), oldest first.
    func claimPending() throws(StateStoreError) -> StreamEntry? {
        var cursor = "0-0"
        while true {
            let reply = try connection.command("XAUTOCLAIM", keys.stream, QueueKeys.group, worker, "0", cursor, "COUNT", "1")
            if case .error(let message) = reply { return try recreateGroup(after: message) }
            guard case .array(let parts) = reply, parts.count >= 2, let next = parts[0].text else { throw .unexpectedReply }
            if let entry = StreamEntry(entries: parts[1]) { return entry }
            // A pending id whose entry is gone (deleted from outside) is dropped by Redis; go on.
            guard next != "0-0" else { return nil }
            cursor = next
        }
    }

    /// The next new entry, waiting up to `blockMilliseconds` for one.
    func readNew(blockMilliseconds: Int) throws(StateStoreError) -> StreamEntry? {
        let reply = try connection.command(
            "XREADGROUP", "GROUP", QueueKeys.group, worker, "COUNT", "1", "BLOCK", String(blockMilliseconds), "STREAMS", keys.stream, ">")
        if case .error(let message) = reply { return try recreateGroup(after: message) }
        guard case .array(let streams) = reply, case .array(let stream)? = streams.first, stream.count == 2 else { return nil }
        return StreamEntry(entries: stream[1])
    }

    /// Counts an attempt at `entry` before making it, so a worker that dies mid-attempt counts too.
    func countAttempt(_ entry: StreamEntry) throws(StateStoreError) -> Int {
        guard case .integer(let attempts) = try connection.command("HINCRBY", keys.attempts, entry.id, "1") else { throw .unexpectedReply }
        return Int(attempts)
    }

    func acknowledge(_ entry: StreamEntry) throws(StateStoreError) {
        try expectSuccess(connection.evaluate(QueueScripts.acknowledge, keys: [keys.stream, keys.attempts], arguments: [Array(entry.id.utf8)]))
    }

    func deadLetter(_ entry: StreamEntry, reason: String, attempts: Int, limit: Int) throws(StateStoreError) {
        try expectSuccess(
            connection.evaluate(
                QueueScripts.deadLetter, keys: [keys.stream, keys.attempts, keys.dead],
                arguments: [Array(entry.id.utf8), entry.body, Array(reason.utf8), Array(String(attempts).utf8), Array(String(limit).utf8)]))
    }

    private func expectSuccess(_ reply: RedisReply) throws(StateStoreError) {
        if case .error = reply { throw .refused }
    }

    /// Redis lost the group (restarted without its data): make it again; the next read retries.
    private func recreateGroup(after message: String) throws(StateStoreError) -> StreamEntry? {
        guard message.hasPrefix("NOGROUP") else { throw .refused }
        try prepare()
        return nil
    }
}
