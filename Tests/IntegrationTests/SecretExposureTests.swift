import Foundation
import Testing

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
