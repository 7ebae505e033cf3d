import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Idle stream workers when others hold every partition: four processes started where
/// GATEWAY_PROCESSES says two (as with two hosts), so each process believes half the partitions
/// are its share and half its workers keep looking for one.
@Suite(.serialized) struct PartitionSearchTests {
    /// Calls of each command Redis served since its statistics were reset.
    static func calls(_ redis: RedisServer) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for line in try redis.cli("INFO", "commandstats").split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
            let name = line.dropFirst("cmdstat_".count).prefix { $0 != ":" }
            if let calls = line.split(separator: ",").first?.split(separator: "=").last.flatMap({ Int($0) }) { result[String(name)] = calls }
        }
        return result
    }

    @Test func workersFindingEveryPartitionHeldReadOnceASecondInsteadOfTryingEach() throws {
        try withStack(processes: 4, threads: 2, redis: (password: nil, useSocket: true), environment: ["GATEWAY_PROCESSES": "2"]) { stack, redis in
            let redis = try #require(redis)
            let owners = (0..<16).map { "{tgq:\($0)}:owner" }
            try waitUntil("every partition has a worker", timeout: 15) {
                (try? redis.cli(["MGET"] + owners))?.split(whereSeparator: \.isNewline).count == 16
            }
            sleep(2)
            _ = try redis.cli("CONFIG", "RESETSTAT")
            sleep(5)
            let calls = try Self.calls(redis)
            let scripts = calls["evalsha"] ?? 0
            let reads = calls["exists"] ?? 0
            print("idle, 4 processes x 16 workers, 16 partitions, 5 s: \(scripts) script calls (lease renewals and takes), \(reads) partition reads")
            // Renewals: 16 held partitions, about once a second each = ~80. Before the read,
            // each of the 32 workers beyond the partitions ran a take script on every
            // partition every second: ~2,500.
            #expect(scripts < 200, "\(calls)")
            // About one read of the 16 owners a second per process (two workers' looks may
            // meet now and then): at most two a second.
            #expect(reads <= 4 * 16 * 2 * 6, "\(calls)")
            // Still each partition held by exactly one worker.
            let held = try redis.cli(["MGET"] + owners).split(whereSeparator: \.isNewline).map(String.init)
            #expect(held.count == 16 && Set(held).count == 16, "\(held)")
        }
    }
}
