/// One responder process as the fleet registry knows it: every process of every host that
/// runs stream workers against the same Redis registers itself once a heartbeat.
public struct FleetMember: Sendable, Equatable, Hashable {
    /// The process's worker prefix (host, pid and a random part): unique in the fleet.
    public var name: String
    /// Its worker threads: it never holds more partitions than that.
    public var workers: Int
    /// Its QUEUE_PARTITIONS: the streams it stores new entries in.
    public var partitions: Int

    public init(name: String, workers: Int, partitions: Int) {
        self.name = name
        self.workers = workers
        self.partitions = partitions
    }

    /// As kept in the registry: `name workers partitions` (a name never holds a space).
    public var encoded: String { "\(name) \(workers) \(partitions)" }

    public init?(encoded: String) {
        let parts = encoded.split(separator: " ")
        guard parts.count == 3, let workers = Int(parts[1]), let partitions = Int(parts[2]), workers >= 0, partitions >= 1 else { return nil }
        self.init(name: String(parts[0]), workers: workers, partitions: partitions)
    }
}

/// The live processes of the fleet and the streams in use, as one heartbeat read them.
public struct FleetView: Sendable, Equatable {
    public var members: [FleetMember]
    /// Streams `0..<partitions` may hold entries: the highest QUEUE_PARTITIONS any process used
    /// since those above it were drained. Above a lowered QUEUE_PARTITIONS they are retiring:
    /// nobody stores in them, workers still take and drain them.
    public var partitions: Int

    public init(members: [FleetMember], partitions: Int) {
        self.members = members
        self.partitions = partitions
    }

    /// The highest QUEUE_PARTITIONS a live process uses: streams at or above it are retiring.
    public var partitionsInUse: Int { members.map(\.partitions).max() ?? partitions }

    /// How many of the partitions in use `name` should hold: shared as evenly as the processes'
    /// workers allow (a process with fewer workers than an even share holds what it can, the
    /// rest share its remainder). Every process computes it from the same view, so the shares add
    /// up to the partitions whenever the fleet has workers enough for them. (Retiring streams
    /// are left to the workers beyond the shares.)
    public func share(of name: String) -> Int {
        guard let own = members.first(where: { $0.name == name }) else { return 0 }
        var left = partitionsInUse
        var members = members.sorted { ($0.workers, $0.name) < ($1.workers, $1.name) }
        while let member = members.first {
            let share = min(member.workers, (left + members.count - 1) / members.count)
            if member == own { return share }
            left -= share
            members.removeFirst()
        }
        return 0
    }
}
