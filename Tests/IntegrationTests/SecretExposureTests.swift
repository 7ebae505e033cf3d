import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The bot token and the webhook secret never show up where other users of the host, or log
/// readers, can see them: process command lines, and log lines, including libcurl's own error
/// messages about a Bot API URL (which holds the token).
@Suite(.serialized) struct SecretExposureTests {
    @Test func neitherTheTokenNorTheSecretIsInAnyProcessCommandLine() throws {
        try withStack(mode: .supervisor, standins: true) { stack, _ in
            #expect(try stack.post(textUpdate(id: 1, user: 2, text: "/start")).status == 200)
            let supervisor = try #require(stack.poolPIDs.first)
            let pids = [supervisor] + LocalStack.children(of: supervisor)
            #expect(pids.count == 3)
            for pid in pids {
                let commandLine = try #require(FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"))
                let text = String(decoding: commandLine.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
                #expect(text.contains("telegram-gateway"))
                #expect(!text.contains(LocalStack.token) && !text.contains(LocalStack.secret), "pid \(pid): \(text)")
            }
        }
    }

    @Test func theSocketAndTheRunFilesAreOwnedByThePoolAndNotOpenToOthers() throws {
        try withStack(mode: .supervisor) { stack, _ in
            var info = stat()
            #expect(stat(stack.socketPath, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFSOCK)
            #expect(info.st_mode & 0o777 == 0o600, "the socket has the mode given (--socket-mode 0600)")
            #expect(info.st_uid == getuid())
            let metrics = stack.directory.appending(path: "metrics").path
            // The children write their first file a moment after they start.
            try waitUntil("the supervisor and both children wrote their metrics files") {
                ((try? FileManager.default.contentsOfDirectory(atPath: metrics)) ?? []).filter { $0.hasSuffix(".metrics") }.count >= 3
            }
            var checked = 0
            for name in try FileManager.default.contentsOfDirectory(atPath: metrics) {
                let found = stat(metrics + "/" + name, &info) == 0
                // A process writes its file as NAME.tmp and renames it into place (a few times a
                // second): a .tmp listed a moment ago may be gone, and what it became is NAME.
                if !found, errno == ENOENT, name.hasSuffix(".tmp") { continue }
                #expect(found, "\(name): \(String(cString: strerror(errno)))")
                #expect(info.st_mode & 0o002 == 0, "\(name) is not world-writable")
                #expect(info.st_uid == getuid())
                if name.hasSuffix(".metrics") { checked += 1 }
            }
            #expect(checked >= 3, "the supervisor's and both children's metrics files were checked")
        }
    }

    @Test func anUnreachableBotAPIIsLoggedWithoutItsURL() throws {
        let closed = try LocalStack.freePort()
        let environment = ["WEBHOOK_REPLY": "off", "TELEGRAM_API_BASE_URL": "http://127.0.0.1:\(closed)"]
        try withStack(standins: true, environment: environment) { stack, _ in
            #expect(try stack.post(textUpdate(id: 3, user: 4, text: "/nosuchcommand")).status == 200)
            try waitUntil("the failed call is logged") { stack.gatewayLog.contains("Bot API call failed") }
            #expect(!stack.gatewayLog.contains(LocalStack.token))
            #expect(!stack.gatewayLog.contains("/bot"), "no Bot API URL in the log")
            #expect(!stack.gatewayLog.contains(LocalStack.secret))
        }
    }
}
