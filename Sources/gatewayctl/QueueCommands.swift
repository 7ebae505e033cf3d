import ArgumentParser
import GatewayCore
import GatewayRedis
import GatewayRuntime

struct QueueStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue-status", abstract: "Queue mode: each partition's backlog, holder and dead letters.")

    @OptionGroup var common: CommonOptions

    func run() throws {
        let config = try common.load()
        let inspector = QueueInspector(config)
        let partitions = try reportingFailure { try inspector.status() }
        let fleet = try reportingFailure { try inspector.fleet() }
        print("partition  backlog  pending  oldest_s  dead  worker")
        for status in partitions {
            let age = String(status.oldestAgeMilliseconds / 1000)
            var columns: [String] = [
                String(status.partition), String(status.backlog), String(status.pending), age, String(status.deadLetters), status.owner ?? "-",
            ]
            if status.retiring { columns.append("(retiring)") }
            print(columns.joined(separator: "  "))
        }
        let backlog = partitions.reduce(0) { $0 + $1.backlog }
        let dead = partitions.reduce(0) { $0 + $1.deadLetters }
        let unowned = partitions.filter { $0.owner == nil }.count
        print("total: \(backlog) waiting, \(dead) dead letters, \(unowned) of \(partitions.count) partitions without a worker")
        let retiring = partitions.filter(\.retiring)
        if let first = retiring.first {
            let waiting = retiring.reduce(0) { $0 + $1.backlog }
            let deadLetters = retiring.reduce(0) { $0 + $1.deadLetters }
            print(
                "retiring: partitions \(first.partition)-\(first.partition + retiring.count - 1) are above QUEUE_PARTITIONS=\(config.queue.partitions) "
                    + "(left by a larger count, or a process still running with one): \(waiting) waiting, \(deadLetters) dead letters; "
                    + "the workers drain them in either mode, and they retire once empty (their dead letters too: replay them)")
        }
        let workers = fleet.reduce(0) { $0 + $1.workers }
        print("fleet: \(fleet.count) processes, \(workers) workers")
        for member in fleet { print("  \(member.name)  \(member.workers) workers  QUEUE_PARTITIONS=\(member.partitions)") }
    }
}

struct DeadLetters: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "List the updates and calls that failed every attempt, and replay them.",
        discussion: """
            A replayed update goes to the end of its partition as a new entry and is processed \
            with fresh attempts, once, although it was finished; a replayed call is sent again. \
            Its dead letter is removed. A partition at QUEUE_MAX_BACKLOG takes no replays until \
            it drains. Replay after fixing the cause (a service down for longer than the \
            attempts lasted).
            """)

    @OptionGroup var common: CommonOptions

    @Option(name: .customLong("replay"), help: "Replay one dead letter, as PARTITION/ID from the list (repeatable).")
    var replays: [String] = []

    @Flag(help: "Replay every dead letter.")
    var replayAll = false

    func run() throws {
        let config = try common.load()
        let inspector = QueueInspector(config)
        guard replayAll || !replays.isEmpty else {
            let letters = try reportingFailure { try inspector.deadLetters() }
            for letter in letters {
                print(
                    "\(letter.partition)/\(letter.id)  update \(letter.updateID.map(String.init) ?? "?")  \(letter.updateType)  "
                        + "\(letter.reason) after \(letter.attempts) attempts")
            }
            print("\(letters.count) dead letters")
            return
        }
        let targets: [(Int, String)] =
            replayAll
            ? try reportingFailure { try inspector.deadLetters(limit: 1_000_000) }.map { ($0.partition, $0.id) }
            : try replays.map { text in
                let parts = text.split(separator: "/", maxSplits: 1)
                guard parts.count == 2, let partition = Int(parts[0]) else { throw ValidationError("--replay takes PARTITION/ID, got \(text)") }
                return (partition, String(parts[1]))
            }
        var missing = 0
        var full = 0
        for (partition, id) in targets {
            switch try reportingFailure({ try inspector.replay(partition: partition, id: id) }) {
            case .replayed:
                print("replayed \(partition)/\(id)")
            case .missing:
                missing += 1
                print("no dead letter \(partition)/\(id)")
            case .full:
                full += 1
                print("partition \(partition) is at QUEUE_MAX_BACKLOG; \(partition)/\(id) left for later")
            }
        }
        if full > 0 { print("\(full) dead letters not replayed: their partitions are full; run this again once they drain") }
        if missing > 0 || full > 0 { throw ExitCode.failure }
    }
}

extension QueueInspector {
    /// The inspector of the configured Redis and queue.
    convenience init(_ config: GatewayConfig) {
        self.init(redis: config.redis, settings: config.queue, clock: monotonicNanoseconds)
    }
}

/// Runs `body` (calls to Redis), turning a failure into a plain message.
private func reportingFailure<Result>(_ body: () throws -> Result) throws -> Result {
    do {
        return try body()
    } catch {
        printError("gatewayctl: redis: \((error as? StateStoreError)?.shortDescription ?? "\(error)")")
        throw ExitCode.failure
    }
}
