import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `scripts/loadtest`, which the tests under load and `scripts/bench` measure with.
@Suite struct LoadtestScriptTests {
    /// wrk reads the wall clock for its timings. A step of that clock mid-run (NTP, a resumed
    /// virtual machine) once failed a test with 16 timeouts, one per connection, while no
    /// request took more than 18 ms. The script gives wrk a gettimeofday that reads the monotonic
    /// clock; the dynamic linker's own account shows wrk bound to it.
    @Test func wrkTimesItsRequestsOnTheMonotonicClock() throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "loadtest-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // A peer that never answers: one second of wrk waiting is enough to see what it calls.
        let peer = try LocalStack.silentPeer()
        defer { close(peer.fd) }
        let run = try ChildProcess.runCapturing(
            "/bin/bash",
            [LocalStack.packageRoot.appending(path: "scripts/loadtest").path, "-d", "1", "-c", "1", "-t", "1", "http://127.0.0.1:\(peer.port)/"],
            environment: [
                "LOADTEST_SECRET": "unused", "LD_BIND_NOW": "1", "LD_DEBUG": "bindings",
                "LD_DEBUG_OUTPUT": directory.appending(path: "ld").path,
            ])
        #expect(run.code == 0, "\(run.output)")
        #expect(run.output.contains("loadtest: kind=unknown-command"), "\(run.output)")
        let traces = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("ld.") }
        let bindings = traces.flatMap { name in
            ((try? String(contentsOf: directory.appending(path: name), encoding: .utf8)) ?? "").split(separator: "\n")
        }
        let wrk = bindings.filter { $0.contains("binding file wrk ") && $0.contains("`gettimeofday'") }
        #expect(!wrk.isEmpty, "wrk ran and bound gettimeofday (\(traces.count) traces)")
        #expect(wrk.allSatisfy { $0.contains("/monotonic-clock.so ") }, "\(wrk)")
    }
}
