import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The pool's own supervisor (`telegram-gateway --socket`), without spawn-fcgi.
@Suite(.serialized) struct SupervisorTests {
    @Test func aChildKilledWithSIGKILLIsReplacedAndThePoolKeepsAnswering() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 2) { stack in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let before = Set(LocalStack.children(of: supervisor))
            let victim = try #require(before.first)
            kill(victim, SIGKILL)
            try waitUntil("a replacement child runs") {
                let now = Set(LocalStack.children(of: supervisor))
                return now.count == 2 && !now.contains(victim)
            }
            for id in 0..<20 {
                #expect(try stack.post(WebhookThroughNginxTests.update(500 + id, text: "/x")).status == 200)
            }
            #expect(stack.gatewayLog.contains("child died; restarting"))
        }
    }

    @Test func sigtermStopsTheSupervisorAndItsChildrenAndRemovesTheSocket() throws {
        let stack = try LocalStack(mode: .supervisor, processes: 2, threads: 2)
        let supervisor = try #require(stack.poolPIDs.first)
        try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
        let children = LocalStack.children(of: supervisor)
        kill(supervisor, SIGTERM)
        try waitUntil("the children exit") { children.allSatisfy(ChildProcess.isGone) }
        try waitUntil("the socket is removed") { !FileManager.default.fileExists(atPath: stack.socketPath) }
        #expect(stack.gatewayLog.contains("supervisor stopped"))
        try stack.stop()
    }
}

@Suite(.serialized) struct SupervisorReloadTests {
    @Test func sighupReplacesEveryChildAndThePoolKeepsAnswering() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 2) { stack in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let old = Set(LocalStack.children(of: supervisor))
            kill(supervisor, SIGHUP)
            try waitUntil("two new children replace the old ones") {
                let now = Set(LocalStack.children(of: supervisor).filter { !ChildProcess.isGone($0) })
                return now.count == 2 && now.isDisjoint(with: old)
            }
            #expect(old.allSatisfy(ChildProcess.isGone))
            #expect(try stack.post(WebhookThroughNginxTests.update(900, text: "/x")).status == 200)
            #expect(stack.gatewayLog.contains("child retired"))
        }
    }
}

@Suite(.serialized) struct OrphanTests {
    @Test func childrenStopWhenTheSupervisorIsKilled() throws {
        try withStack(mode: .supervisor, processes: 2, threads: 2) { stack in
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let children = LocalStack.children(of: supervisor)
            kill(supervisor, SIGKILL)
            try waitUntil("the orphaned children stop", timeout: 5) { children.allSatisfy(ChildProcess.isGone) }
            #expect(stack.gatewayLog.contains("supervisor gone"))
        }
    }
}

@Suite(.serialized) struct UpgradeTests {
    /// DEPLOY.md's upgrade: install the new binary over the old path (atomic rename), then
    /// SIGHUP. The new children run the new file; the supervisor keeps running the old one.
    @Test func afterAnInstallSighupStartsChildrenOfTheNewBinary() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "upgrade-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let installed = folder.appending(path: "telegram-gateway").path
        try FileManager.default.copyItem(atPath: LocalStack.binary, toPath: installed)
        func exe(_ pid: pid_t) -> String { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "" }

        let stack = try LocalStack(mode: .supervisor, processes: 2, threads: 2, binary: installed)
        do {
            let supervisor = try #require(stack.poolPIDs.first)
            try waitUntil("two children run") { LocalStack.children(of: supervisor).count == 2 }
            let staging = folder.appending(path: ".telegram-gateway.new").path
            try FileManager.default.copyItem(atPath: LocalStack.binary, toPath: staging)
            #expect(rename(staging, installed) == 0)
            let old = Set(LocalStack.children(of: supervisor))
            kill(supervisor, SIGHUP)
            try waitUntil("new children replace the old") {
                let now = Set(LocalStack.children(of: supervisor).filter { !ChildProcess.isGone($0) })
                return now.count == 2 && now.isDisjoint(with: old)
            }
            #expect(exe(supervisor).hasSuffix("(deleted)"), "the supervisor still runs the replaced file")
            for child in LocalStack.children(of: supervisor) where !ChildProcess.isGone(child) {
                #expect(exe(child) == installed, "child \(child) runs \(exe(child))")
            }
            #expect(try stack.post(WebhookThroughNginxTests.update(1, text: "/x")).status == 200)
            try stack.stop()
        } catch {
            try? stack.stop()
            throw error
        }
    }
}
