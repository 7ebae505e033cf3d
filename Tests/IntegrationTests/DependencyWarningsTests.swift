import GatewayCore
import GatewayRedis
import Logging
import Testing

/// The lines a failing dependency costs the log, on a clock the test moves.
@Suite struct DependencyWarningsTests {
    private final class Fixture: Sendable {
        let now = Locked<UInt64>(100_000_000_000)
        let lines = Locked<[String]>([])
        let warnings: DependencyWarnings
        let logger: Logger

        init() {
            let now = self.now
            let lines = self.lines
            warnings = DependencyWarnings(intervalSeconds: 5, quietSeconds: 1) { now.withLock { $0 } }
            logger = Logger(label: "test") { _ in
                LogLineHandler(level: .info, format: .text, clock: { (0, 0) }) { line in
                    lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) }
                }
            }
        }

        func advance(milliseconds: UInt64) { now.withLock { $0 += milliseconds * 1_000_000 } }
        func failed() { warnings.failed("redis", error: "unavailable", logger: logger) }
        func succeeded() { warnings.succeeded("redis", logger: logger) }
        func count(_ message: String) -> Int { lines.withLock { $0.count { $0.contains(message) } } }
    }

    @Test func successesBetweenFailuresAreNoRecovery() {
        // One node of a cluster down: a third of the calls fail for three seconds, the rest
        // succeed in between.
        let fixture = Fixture()
        for call in 0..<3000 {
            if call % 3 == 0 { fixture.failed() } else { fixture.succeeded() }
            fixture.advance(milliseconds: 1)
        }
        #expect(fixture.count("dependency failing") == 1)
        #expect(fixture.count("dependency recovered") == 0)
        // Successes only, for less than the quiet time: still no recovery.
        for _ in 0..<99 {
            fixture.succeeded()
            fixture.advance(milliseconds: 10)
        }
        #expect(fixture.count("dependency recovered") == 0)
        // A second without a failure: one line, and only one.
        fixture.advance(milliseconds: 10)
        fixture.succeeded()
        fixture.succeeded()
        #expect(fixture.count("dependency recovered") == 1)
    }

    @Test func aWarningEveryIntervalCountsTheFailuresItStandsFor() {
        let fixture = Fixture()
        fixture.failed()
        fixture.advance(milliseconds: 1000)
        fixture.failed()
        fixture.failed()
        #expect(fixture.count("dependency failing") == 1)
        fixture.advance(milliseconds: 4000)
        fixture.failed()
        #expect(fixture.count("dependency failing") == 2)
        #expect(fixture.lines.withLock { $0.last?.contains("failures=3") } == true, "\(fixture.lines.withLock { $0 })")
    }

    @Test func aFailureAfterARecoveryIsReportedAgain() {
        let fixture = Fixture()
        fixture.failed()
        fixture.advance(milliseconds: 1000)
        fixture.succeeded()
        #expect(fixture.count("dependency recovered") == 1)
        fixture.advance(milliseconds: 5000)
        fixture.failed()
        #expect(fixture.count("dependency failing") == 2)
        fixture.advance(milliseconds: 1000)
        fixture.succeeded()
        #expect(fixture.count("dependency recovered") == 2)
    }
}
