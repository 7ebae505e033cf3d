import GatewayCore

/// The `OutboundStore` on Redis, on the thread's one connection (shared with its state store):
/// one `FCALL` to store a job with its stream entry, one per fan-out step each way (the
/// recipients' outboxes in one pipelined round trip), one per recipient's outcome.
public final class RedisOutboundStore: OutboundStore {
    private let store: RedisStateStore
    private let partitions: Int
    /// A job's keys live this long after its last activity: DEDUPE_TTL.
    private let ttl: [UInt8]

    public init(store: RedisStateStore, partitions: Int) {
        self.store = store
        self.partitions = partitions
        ttl = RedisStateStore.bytes(store.policy.dedupeTTLSeconds)
    }

    public func create(_ job: OutboundJob, maxBacklog: Int, deadline: Deadline) throws(StateStoreError) -> OutboundCreation {
        let keys = OutboundKeys(job.id)
        // The other partitions' backlog, read first: the bound is coarse (two requests at once
        // may pass it by one request), and each partition's own count is exact.
        let others = (0..<partitions).filter { $0 != job.id.partition }
        var elsewhere: Int64 = 0
        for reply in try store.commands(others.map { ["HGET", OutboundKeys.backlog(partition: $0), "*"].map { Array($0.utf8) } }, deadline: deadline)
        {
            elsewhere += reply.text.flatMap { Int64($0) } ?? 0
        }
        let arguments: [[UInt8]] =
            [
                Array(job.id.description.utf8), ttl, RedisStateStore.bytes(maxBacklog), RedisStateStore.bytes(elsewhere),
                RedisStateStore.bytes(job.unknown), RedisStateStore.bytes(job.templates.count),
            ] + job.templates.map(\.encoded) + job.recipients.map { RedisStateStore.bytes($0) }
        let reply = try store.evaluate(
            OutboundScripts.create, keys: [keys.job, keys.recipients, keys.calls, keys.backlog, keys.unfinished, keys.stream], arguments: arguments,
            deadline: deadline)
        guard case .array(let items) = reply, let kind = items.first?.text else { throw .unexpectedReply }
        switch kind {
        case "created": return .created
        case "full": return .full
        case "existing":
            guard items.count == 2, case .integer(let count) = items[1] else { throw .unexpectedReply }
            return .existing(recipients: Int(count))
        default: throw .unexpectedReply
        }
    }

    public func status(of id: OutboundJobID, deadline: Deadline) throws(StateStoreError) -> OutboundStatus? {
        let reply = try store.command([Array("HGETALL".utf8), Array(OutboundKeys(id).job.utf8)], deadline: deadline)
        guard case .array(let items) = reply else { throw .unexpectedReply }
        guard !items.isEmpty else { return nil }
        var fields: [String: Int] = [:]
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            if let name = items[index].text, let value = items[index + 1].text.flatMap({ Int($0) }) { fields[name] = value }
        }
        var failed: [String: Int] = [:]
        for (name, count) in fields where name.hasPrefix("f:") { failed[String(name.dropFirst(2))] = count }
        return OutboundStatus(id: id, recipients: fields["n"] ?? 0, delivered: fields["d"] ?? 0, failed: failed, unknown: fields["u"] ?? 0)
    }

    public func nextRecipients(of id: OutboundJobID, count: Int, deadline: Deadline) throws(StateStoreError) -> OutboundChunk? {
        let keys = OutboundKeys(id)
        let reply = try store.evaluate(
            OutboundScripts.next, keys: [keys.job, keys.recipients, keys.calls], arguments: [RedisStateStore.bytes(count)], deadline: deadline)
        if case .null = reply { return nil }
        guard case .array(let items) = reply, items.count == 3, case .integer(let cursor) = items[0], case .array(let chats) = items[1],
            case .array(let calls) = items[2]
        else { throw .unexpectedReply }
        var recipients: [Int64] = []
        for chat in chats {
            guard let value = chat.text.flatMap({ Int64($0) }) else { throw .unexpectedReply }
            recipients.append(value)
        }
        var templates: [CallTemplate] = []
        for call in calls {
            guard case .string(let bytes) = call, let template = CallTemplate.decode(bytes) else { throw .unexpectedReply }
            templates.append(template)
        }
        return OutboundChunk(cursor: Int(cursor), recipients: recipients, templates: templates)
    }

    public func advance(_ id: OutboundJobID, from cursor: Int, by count: Int, deadline: Deadline) throws(StateStoreError) {
        let keys = OutboundKeys(id)
        _ = try store.evaluate(
            OutboundScripts.advance, keys: [keys.job, keys.recipients, keys.calls, keys.outcomes],
            arguments: [RedisStateStore.bytes(cursor), RedisStateStore.bytes(count), ttl], deadline: deadline)
    }

    public func keep(_ deliveries: [(subject: StateSubject, calls: [PendingSend])], for id: OutboundJobID, deadline: Deadline) throws(StateStoreError)
    {
        let calls = deliveries.map { delivery in
            let keys = StateSubjectKeys(subject: delivery.subject, updateID: 0)
            return (
                keys: [OutboundKeys.delivery(of: delivery.subject, job: id), keys.outbox, keys.queued],
                arguments: [ttl] + delivery.calls.map(\.encoded)
            )
        }
        _ = try store.evaluateAll(OutboundScripts.keep, calls: calls, deadline: deadline)
    }

    public func record(_ id: OutboundJobID, chat: Int64, outcome: OutboundOutcome, deadline: Deadline) throws(StateStoreError) {
        let keys = OutboundKeys(id)
        let value: String =
            switch outcome {
            case .delivered: "d"
            case .failed(let reason): reason
            }
        _ = try store.evaluate(
            OutboundScripts.record, keys: [keys.job, keys.outcomes, keys.backlog, keys.unfinished, keys.recipients, keys.calls],
            arguments: [Array(id.description.utf8), RedisStateStore.bytes(chat), Array(value.utf8), ttl], deadline: deadline)
    }

    /// Two round trips: each id's recorded user, then whether that user's session still lives
    /// with this internal id (a record outlives a session the service renamed).
    public func resolve(internalUserIDs: [String], deadline: Deadline) throws(StateStoreError) -> [String: Int64] {
        let recorded = try store.commands(internalUserIDs.map { ["GET", OutboundKeys.internalUser($0)].map { Array($0.utf8) } }, deadline: deadline)
        var candidates: [(id: String, user: Int64)] = []
        for (id, reply) in zip(internalUserIDs, recorded) {
            if let user = reply.text.flatMap({ Int64($0) }), user > 0 { candidates.append((id, user)) }
        }
        let sessions = try store.commands(
            candidates.map { candidate in
                ["HGET", StateSubjectKeys(subject: .windowOwner(of: candidate.user), updateID: 0).session, "id"].map { Array($0.utf8) }
            }, deadline: deadline)
        var resolved: [String: Int64] = [:]
        for (candidate, reply) in zip(candidates, sessions) where reply.text == candidate.id {
            resolved[candidate.id] = candidate.user
        }
        return resolved
    }

    /// Every partition's unfinished recipients and oldest unfinished job, in one round trip; a
    /// job found expired is forgotten on the way.
    public func backlog(deadline: Deadline) throws(StateStoreError) -> OutboundBacklog {
        var commands: [[[UInt8]]] = []
        for partition in 0..<partitions {
            commands.append(["HGET", OutboundKeys.backlog(partition: partition), "*"].map { Array($0.utf8) })
            commands.append(["ZRANGE", OutboundKeys.unfinished(partition: partition), "0", "0", "WITHSCORES"].map { Array($0.utf8) })
        }
        commands.append([Array("TIME".utf8)])
        let replies = try store.commands(commands, deadline: deadline)
        guard replies.count == commands.count, let now = replies.last.flatMap(Self.milliseconds) else { throw .unexpectedReply }
        var recipients = 0
        var oldest: Int64 = 0
        for partition in 0..<partitions {
            var count = replies[partition * 2].text.flatMap { Int($0) } ?? 0
            defer { recipients += count }
            guard case .array(let first) = replies[partition * 2 + 1], first.count == 2, let job = first[0].text,
                let created = first[1].text.flatMap({ Double($0) })
            else { continue }
            if let id = OutboundJobID(job), try isGone(id, deadline: deadline) {
                let left = try store.evaluate(
                    OutboundScripts.forget, keys: [OutboundKeys.backlog(partition: partition), OutboundKeys.unfinished(partition: partition)],
                    arguments: [Array(job.utf8)], deadline: deadline)
                if case .integer(let value) = left { count = Int(value) }
                continue
            }
            oldest = max(oldest, now - Int64(created))
        }
        return OutboundBacklog(recipients: recipients, oldestAgeMilliseconds: oldest)
    }

    private func isGone(_ id: OutboundJobID, deadline: Deadline) throws(StateStoreError) -> Bool {
        try store.command([Array("EXISTS".utf8), Array(OutboundKeys(id).job.utf8)], deadline: deadline) == .integer(0)
    }

    private static func milliseconds(_ time: RedisReply) -> Int64? {
        guard case .array(let parts) = time, parts.count == 2, let seconds = parts[0].text.flatMap({ Int64($0) }),
            let micros = parts[1].text.flatMap({ Int64($0) })
        else { return nil }
        return seconds * 1000 + micros / 1000
    }
}
