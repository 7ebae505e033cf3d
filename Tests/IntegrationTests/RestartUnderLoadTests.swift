import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The documented restart: SIGHUP to the supervisor replaces every child while nginx keeps
/// sending; a running load test must see nothing but 200.
@Suite(.serialized) struct RestartUnderLoadTests {
    @Test func reloadingThePoolUnderLoadLosesNoRequest() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 4, redis: (password: nil, useSocket: true)) { stack, _ in
            let supervisor = try #require(stack.poolPIDs.first)
            let output = stack.directory.appending(path: "loadtest.out").path
            let loadtest = try ChildProcess.spawn(
                "/bin/bash", [LocalStack.packageRoot.appending(path: "scripts/loadtest").path, "-d", "6", "-c", "16", stack.url],
                outputPath: output, environment: ["LOADTEST_SECRET": LocalStack.secret])
            for _ in 0..<3 {
                usleep(1_500_000)
                kill(supervisor, SIGHUP)
            }
            ChildProcess.waitForExit(loadtest)
            let summary = try String(contentsOfFile: output, encoding: .utf8)
            #expect(summary.contains("loadtest:"), "\(summary)")
            #expect(summary.contains(" non2xx=0 "), "\(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            #expect(stack.gatewayLog.components(separatedBy: "child retired").count - 1 == 6)
            print("restart under load: \(summary.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}
