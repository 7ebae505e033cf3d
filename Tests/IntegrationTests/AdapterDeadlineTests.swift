import Foundation
import GatewayCore
import GatewayHTTP
import GatewayRedis
import Logging
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The adapters at the edges of a deadline, against real sockets: a peer that accepts and
/// never answers, and clocks another thread has moved on.
@Suite(.serialized) struct AdapterDeadlineTests {
    /// Runs `body` on a thread and gives up waiting after `seconds`: a regression that hangs
    /// fails the test instead of the suite.
    private func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }.start()
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return result.withLock { $0 }
    }

    @Test func underAMillisecondLeftNothingIsSentAndASilentPeerCostsOnlyTheTimeout() throws {
        let (fd, port) = try LocalStack.silentPeer()
        defer { close(fd) }
        let url = "http://127.0.0.1:\(port)/"
        let outcome = within(5) { () -> (String, Double) in
            let started = monotonicNow()
            do {
                _ = try HTTPClient().send(HTTPRequest(method: "POST", url: url, timeoutSeconds: 0.0009))
                return ("answered", 0)
            } catch {
                return ("\((error as? HTTPClientError)?.kind.rawValue ?? "?")", monotonicNow() - started)
            }
        }
        guard let (kind, seconds) = outcome else {
            Issue.record("0.9 ms was taken for no timeout at all: the call hangs")
            return
        }
        #expect(kind == "timed_out")
        #expect(seconds < 0.05)
        let bounded = within(5) { () -> Double in
            let started = monotonicNow()
            _ = try? HTTPClient().send(HTTPRequest(method: "POST", url: url, timeoutSeconds: 0.3, connectTimeoutSeconds: 0.3))
            return monotonicNow() - started
        }
        let elapsed = try #require(bounded)
        #expect(elapsed >= 0.25 && elapsed < 1.5, "\(elapsed)")
    }

    @Test func aServiceCallWithTheDeadlineSpentIsNotMade() throws {
        let (fd, port) = try LocalStack.silentPeer()
        defer { close(fd) }
        let clock: @Sendable () -> UInt64 = { 10_000_000_000 }
        let client = CurlServiceClient(
            services: [.conversation: .init(url: "http://127.0.0.1:\(port)/", timeoutSeconds: 5)],
            breaker: CircuitBreaker(clock: clock), clock: clock)
        let spent = Deadline(uptimeNanoseconds: 10_000_000_000 + 500_000)  // half a millisecond left
        #expect(throws: ServiceCallError.timeout) { try client.call(ServiceName.conversation, body: [], deadline: spent) }
    }

    @Test func aFailureTimedBeforeAnotherThreadsLaterOneNeverTraps() {
        // Another thread stored a later time than this one read: UInt64 arithmetic must not go
        // below zero (it trapped, killing the responder exactly while Redis was failing).
        let now = Mutex<UInt64>(10_000_000_000)
        let warnings = DependencyWarnings(intervalSeconds: 5) { now.withLock { $0 } }
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        warnings.failed("redis", error: "timeout", logger: logger)
        now.withLock { $0 = 9_000_000_000 }
        warnings.failed("redis", error: "timeout", logger: logger)
        now.withLock { $0 = 16_000_000_000 }
        warnings.failed("redis", error: "timeout", logger: logger)
    }
}
