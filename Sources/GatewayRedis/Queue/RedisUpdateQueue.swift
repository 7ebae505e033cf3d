import GatewayCore

/// The streams' side every thread uses, on the thread's one connection (shared with its state
/// store): queue mode's front door and the hand-over of a busy user's update (one `FCALL`
/// each), outbox notes, and dead-lettered calls.
public final class RedisUpdateQueue: UpdateQueue {
    private let store: RedisStateStore
    private let settings: QueueSettings
    /// The enqueue script with the configuration's numbers in it.
    private let enqueueScript: RedisScript

    public init(store: RedisStateStore, settings: QueueSettings) {
        self.store = store
        self.settings = settings
        enqueueScript = QueueScripts.enqueue(store.policy, settings)
    }

    public func enqueue(_ request: EnqueueRequest, deadline: Deadline) throws(StateStoreError) -> EnqueueDecision {
        let keys = QueueKeys(partition: settings.partition(of: request.subject, updateID: request.updateID))
        let frontDoor = request.origin == .frontDoor
        let one = UInt8(ascii: "1")
        let zero = UInt8(ascii: "0")
        let flags = [frontDoor && request.subject != nil ? one : zero, request.isCallback ? one : zero, frontDoor ? zero : one]
        let reply = try store.evaluate(
            enqueueScript, keys: [keys.stream, keys.seen(request.updateID), keys.rate(request.subject)], arguments: [request.body, flags],
            deadline: deadline)
        let decision = try Self.decision(reply, retryAfterSeconds: settings.retryAfterSeconds)
        switch decision {
        case .queued: try awaitReplicas(keys: keys, updateID: nil, deadline: deadline)
        case .duplicate: try awaitReplicas(keys: keys, updateID: request.updateID, deadline: deadline)
        default: break
        }
        return decision
    }

    /// `REDIS_WAIT_REPLICAS`: blocks until that many replicas of the partition's master hold
    /// what this connection wrote, or throws (the update then gets 503 and Telegram delivers it
    /// again). A duplicate (`updateID`) wrote nothing here: its dedupe mark is refreshed first,
    /// so that the wait covers the replication stream up to now, the first delivery's entry
    /// included.
    private func awaitReplicas(keys: QueueKeys, updateID duplicate: Int64?, deadline: Deadline) throws(StateStoreError) {
        guard settings.waitReplicas > 0 else { return }
        if let duplicate {
            let seen = Array(keys.seen(duplicate).utf8)
            _ = try store.command(
                [Array("EXPIRE".utf8), seen, RedisStateStore.bytes(store.policy.dedupeTTLSeconds)], deadline: deadline, routedBy: seen)
        }
        let reply = try store.command(
            [Array("WAIT".utf8), RedisStateStore.bytes(settings.waitReplicas), RedisStateStore.bytes(settings.waitTimeoutMilliseconds)],
            deadline: deadline, routedBy: Array(keys.stream.utf8), allowance: Double(settings.waitTimeoutMilliseconds) / 1000)
        guard case .integer(let replicas) = reply else { throw .unexpectedReply }
        guard replicas >= settings.waitReplicas else { throw .timeout }
    }

    public func backlog(deadline: Deadline) throws(StateStoreError) -> QueueBacklog {
        let fleet = try store.commands(
            [["GET", FleetKeys.partitions], ["ZCARD", FleetKeys.members]].map { $0.map { Array($0.utf8) } }, deadline: deadline)
        guard fleet.count == 2, case .integer(let processes) = fleet[1] else { throw .unexpectedReply }
        let partitions = max(settings.partitions, fleet[0].text.flatMap { Int($0) } ?? 0)
        var commands: [[[UInt8]]] = []
        for partition in 0..<partitions {
            let keys = QueueKeys(partition: partition)
            commands.append(["XLEN", keys.stream].map { Array($0.utf8) })
            commands.append(["XRANGE", keys.stream, "-", "+", "COUNT", "1"].map { Array($0.utf8) })
            commands.append(["XLEN", keys.dead].map { Array($0.utf8) })
        }
        commands.append([Array("TIME".utf8)])
        let replies = try store.commands(commands, deadline: deadline)
        guard replies.count == commands.count, case .array(let time) = replies[replies.count - 1], time.count == 2,
            let seconds = time[0].text.flatMap({ Int64($0) }), let micros = time[1].text.flatMap({ Int64($0) })
        else { throw .unexpectedReply }
        let now = seconds * 1000 + micros / 1000
        var backlog = QueueBacklog(entries: 0, oldestAgeMilliseconds: 0, deadLetters: 0, fleetProcesses: Int(processes))
        for partition in 0..<partitions {
            if case .integer(let length) = replies[partition * 3] {
                backlog.entries += Int(length)
                if partition >= settings.partitions { backlog.retiringEntries += Int(length) }
            }
            if case .integer(let dead) = replies[partition * 3 + 2] { backlog.deadLetters += Int(dead) }
            // An entry's id starts with the milliseconds it was added at.
            if case .array(let first) = replies[partition * 3 + 1], case .array(let entry)? = first.first, let id = entry.first?.text,
                let added = Int64(id.prefix { $0 != "-" })
            {
                backlog.oldestAgeMilliseconds = max(backlog.oldestAgeMilliseconds, now - added)
            }
        }
        return backlog
    }

    public func scheduleOutbox(of subject: StateSubject, deadline: Deadline) throws(StateStoreError) {
        let keys = QueueKeys(partition: settings.partition(of: subject))
        try expectEntry(
            store.command([Array("XADD".utf8), Array(keys.stream.utf8), [0x2A], [0x6F], Array(subject.hashTag.utf8)], deadline: deadline))
    }

    public func scheduleOutboxes(of subjects: [StateSubject], deadline: Deadline) throws(StateStoreError) {
        let replies = try store.commands(
            subjects.map { subject in
                [
                    Array("XADD".utf8), Array(QueueKeys(partition: settings.partition(of: subject)).stream.utf8), [0x2A], [0x6F],
                    Array(subject.hashTag.utf8),
                ]
            }, deadline: deadline)
        for reply in replies { try expectEntry(reply) }
    }

    public func deadLetter(_ send: PendingSend, of subject: StateSubject, reason: String, attempts: Int, deadline: Deadline) throws(StateStoreError) {
        let keys = QueueKeys(partition: settings.partition(of: subject))
        let arguments: [[UInt8]] =
            ["XADD", keys.dead, "MAXLEN", "~", String(settings.deadLetterLimit), "*"].map { Array($0.utf8) }
            + [Array("d".utf8), send.encoded] + ["reason", reason, "attempts", String(attempts), "s", subject.hashTag].map { Array($0.utf8) }
        try expectEntry(store.command(arguments, deadline: deadline))
    }

    private func expectEntry(_ reply: RedisReply) throws(StateStoreError) {
        guard case .string = reply else { throw .refused }
    }

    static func decision(_ reply: RedisReply, retryAfterSeconds: Int) throws(StateStoreError) -> EnqueueDecision {
        if case .string = reply, reply.text == "queued" { return .queued(answerCallbackNow: false) }
        guard case .array(let items) = reply, let kind = items.first?.text else { throw .unexpectedReply }
        let flag = items.count > 1 && items[1] == .integer(1)
        switch kind {
        case "queued": return .queued(answerCallbackNow: flag)
        case "duplicate": return .duplicate
        case "limited": return .limited(warn: flag)
        case "full": return .full(retryAfterSeconds: retryAfterSeconds)
        default: throw .unexpectedReply
        }
    }
}
