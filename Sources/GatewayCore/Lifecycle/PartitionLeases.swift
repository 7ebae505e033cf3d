/// The partitions a process's workers hold, and until when each lease is surely still theirs:
/// the time its last renewal was sent plus the lease, less a margin. A worker whose renewals
/// fail (Redis unreachable from here) is told it lost the partition before the lease can
/// expire in Redis, so another worker never takes over while it still acts. Also the process's
/// share of the fleet's partitions, as the heartbeat last set it.
final class PartitionLeases: Sendable {
    private struct Held {
        var partition: Int
        var validUntil: UInt64
        /// Above the share: the worker gives it back after the entry in hand.
        var release = false
    }

    private struct State {
        var held: [String: Held] = [:]
        var acquiring: [Look: Int] = [:]
        var nothingFreeUntil: [Look: UInt64] = [:]
        /// Partitions last read free, not yet tried by a worker, shuffled; and when read.
        var candidates: [Look: (partitions: [Int], readAt: UInt64)] = [:]
        var share: Int
        var partitions: Int
        var inUse: Int
        var processes = 0
    }

    /// What a worker looks for: a partition of the process's share, or a retiring stream.
    enum Look { case share, retiring }

    private let state: Locked<State>
    private let leaseNanoseconds: UInt64
    private let marginNanoseconds: UInt64
    /// The share before the registry lists every process started with this one.
    let startingShare: Int

    init(leaseMilliseconds: Int64, partitions: Int, share: Int) {
        leaseNanoseconds = UInt64(max(1, leaseMilliseconds)) * 1_000_000
        marginNanoseconds = max(leaseNanoseconds / 10, min(250_000_000, leaseNanoseconds / 2))
        startingShare = share
        state = Locked(State(share: share, partitions: max(1, partitions), inUse: max(1, partitions)))
    }

    /// Until when a lease renewed by a call sent at `sentAt` is surely still the worker's.
    private func validUntil(renewalSentAt sentAt: UInt64) -> UInt64 { sentAt + leaseNanoseconds - marginNanoseconds }

    func holds(_ worker: String, at now: UInt64) -> Bool {
        state.withLock { state in state.held[worker].map { now < $0.validUntil } ?? false }
    }

    /// Whether `worker` still holds its partition, as `holds(_:at:)`; but past its last
    /// renewal's margin (a late heartbeat: the process's threads starved of CPU, a slow round
    /// trip) the worker renews its own lease, once, while the store still names it the holder,
    /// instead of leaving the partition and the entry in hand (which then waited a lease for
    /// the next holder's look, and was worked twice). A lease the heartbeat found gone, or the
    /// store let go or gave to another, stays lost. On the worker's own thread and connection.
    func holds(_ worker: String, renewingIn store: any PartitionStore, clock: GatewayClock) -> Bool {
        if holds(worker, at: clock.now()) { return true }
        guard let held = state.withLock({ $0.held[worker] }), held.validUntil > 0 else { return false }
        let sentAt = clock.now()
        guard (try? store.renewLeases([(held.partition, worker)], milliseconds: Int64(leaseNanoseconds / 1_000_000))) == [true] else {
            return false
        }
        return state.withLock { state in
            guard let current = state.held[worker], current.partition == held.partition, current.validUntil > 0 else { return false }
            state.held[worker]?.validUntil = max(current.validUntil, validUntil(renewalSentAt: sentAt))
            return true
        }
    }

    /// `worker` took `partition` with a lease sent at `sentAt`.
    func record(_ worker: String, partition: Int, since sentAt: UInt64) {
        state.withLock { $0.held[worker] = Held(partition: partition, validUntil: validUntil(renewalSentAt: sentAt)) }
    }

    func forget(_ worker: String) {
        _ = state.withLock { $0.held.removeValue(forKey: worker) }
    }

    /// Whether `worker` should give its partition back (the process holds more than its share).
    func mustRelease(_ worker: String) -> Bool {
        state.withLock { $0.held[worker]?.release ?? false }
    }

    /// What a worker holding nothing may look for now: a partition in use while the process
    /// holds fewer than its share, else a retiring stream while there are any, else nothing.
    func beginAcquiring() -> Look? {
        state.withLock { state in
            let inUse = state.inUse
            let holding = state.held.values.count { $0.partition < inUse }
            let look: Look
            if holding + state.acquiring[.share, default: 0] < state.share {
                look = .share
            } else if state.partitions > state.inUse {
                look = .retiring
            } else {
                return nil
            }
            state.acquiring[look, default: 0] += 1
            return look
        }
    }

    func endAcquiring(_ look: Look) {
        state.withLock { $0.acquiring[look, default: 0] -= 1 }
    }

    /// The streams that may hold entries (`0..<partitionCount`).
    var partitionCount: Int { state.withLock { $0.partitions } }

    /// The partitions new entries go to (`0..<partitionsInUse`); those above are retiring.
    var partitionsInUse: Int { state.withLock { $0.inUse } }

    var share: Int { state.withLock { $0.share } }

    /// Sets the share and the streams from a heartbeat, and marks for release the partitions
    /// of the share above it and the streams now retired; true when the share, the streams or
    /// the fleet's size changed.
    func update(share: Int, partitions: Int, inUse: Int, processes: Int) -> Bool {
        state.withLock { state in
            let changed = (state.share, state.partitions, state.inUse, state.processes) != (share, partitions, inUse, processes)
            state.share = share
            state.partitions = max(1, partitions)
            state.inUse = max(1, min(inUse, state.partitions))
            state.processes = processes
            var keeping: [String] = []
            for (worker, held) in state.held where !held.release {
                if held.partition >= state.partitions {
                    state.held[worker]?.release = true
                } else if held.partition < state.inUse {
                    keeping.append(worker)
                }
            }
            for worker in keeping.shuffled().prefix(max(0, keeping.count - share)) { state.held[worker]?.release = true }
            return changed
        }
    }

    /// A partition of `range` read free within the last second that no worker of this process
    /// has tried yet; nil when there is none (read again).
    func nextCandidate(_ look: Look, in range: Range<Int>, at now: UInt64) -> Int? {
        state.withLock { state in
            guard let read = state.candidates[look], now < read.readAt + 1_000_000_000 else { return nil }
            var partitions = read.partitions
            while let partition = partitions.popLast() {
                guard range.contains(partition) else { continue }
                state.candidates[look]?.partitions = partitions
                return partition
            }
            state.candidates[look] = nil
            return nil
        }
    }

    func setCandidates(_ partitions: [Int], _ look: Look, at now: UInt64) {
        state.withLock { $0.candidates[look] = (partitions.shuffled(), now) }
    }

    /// Whether a worker of this process looking for `look` found nothing free a moment ago.
    func nothingFree(_ look: Look, at now: UInt64) -> Bool {
        state.withLock { now < $0.nothingFreeUntil[look, default: 0] }
    }

    func noteNothingFree(_ look: Look, until time: UInt64) {
        state.withLock { $0.nothingFreeUntil[look] = time }
    }

    /// Renews every lease held now, in one round trip; a renewal that finds the lease gone
    /// drops it at once, one that fails leaves it to lapse. (Renewed one by one, the 400
    /// partitions of a busy process took longer than a short lease, and its workers gave them up.)
    func renewAll(store: any PartitionStore, clock: GatewayClock) {
        let held = state.withLock { state in state.held.map { (worker: $0.key, partition: $0.value.partition) } }
        guard !held.isEmpty else { return }
        let sentAt = clock.now()
        let renewed = try? store.renewLeases(held.map { ($0.partition, $0.worker) }, milliseconds: Int64(leaseNanoseconds / 1_000_000))
        guard let renewed, renewed.count == held.count else { return }
        state.withLock { state in
            for (holding, isOurs) in zip(held, renewed) {
                // Only the same holding: the worker may have let it go meanwhile.
                guard let current = state.held[holding.worker], current.partition == holding.partition else { continue }
                state.held[holding.worker]?.validUntil = isOurs ? validUntil(renewalSentAt: sentAt) : 0
            }
        }
    }
}
