import Testing

@testable import GatewayCore

@Suite struct WebhookInfoTests {
    @Test func parsesAndExplainsTelegramsAnswer() throws {
        let body =
            #"{"ok":true,"result":{"url":"https://x/webhook/telegram","has_custom_certificate":false,"pending_update_count":12,"last_error_date":1000,"last_error_message":"Wrong response from the webhook: 502 Bad Gateway","max_connections":16}}"#
        let info = try #require(WebhookInfo.parse(Array(body.utf8)))
        #expect(
            info
                == WebhookInfo(
                    url: "https://x/webhook/telegram", pendingUpdateCount: 12, lastErrorDate: 1000,
                    lastErrorMessage: "Wrong response from the webhook: 502 Bad Gateway", maxConnections: 16, hasCustomCertificate: false))
        let report = info.report(now: 1090)
        #expect(report.contains("Updates waiting at Telegram: 12"))
        #expect(report.contains("Last delivery error, 90 seconds ago"))
        #expect(report.contains("could not reach the responder pool"))
        #expect(WebhookInfo.parse(Array(#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#.utf8)) == nil)
    }

    @Test func theAssessmentIsWhatAMonitoringCheckNeeds() {
        let url = "https://bot.example.com/webhook/telegram"
        func status(_ info: WebhookInfo, expected: String? = url) -> WebhookInfo.Status { info.assess(now: 10_000, expectedURL: expected).0 }
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 0)) == .ok)
        #expect(status(WebhookInfo(url: "", pendingUpdateCount: 0)) == .critical)
        #expect(status(WebhookInfo(url: "https://old.example.com/webhook/telegram", pendingUpdateCount: 0)) == .critical)
        #expect(status(WebhookInfo(url: "https://old.example.com/webhook/telegram", pendingUpdateCount: 0), expected: nil) == .ok)
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 99)) == .ok)
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 100)) == .warning)
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 1000)) == .critical)
        let error = "Wrong response from the webhook: 504 Gateway Time-out"
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 0, lastErrorDate: 9_500, lastErrorMessage: error)) == .warning)
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 1, lastErrorDate: 9_500, lastErrorMessage: error)) == .critical)
        #expect(status(WebhookInfo(url: url, pendingUpdateCount: 1, lastErrorDate: 9_000, lastErrorMessage: error)) == .ok)
        #expect([WebhookInfo.Status.ok, .warning, .critical].map(\.exitCode) == [0, 1, 2])
    }

    @Test func everyCommonDeliveryErrorHasItsOwnAdvice() {
        let messages = [
            "Wrong response from the webhook: 403 Forbidden", "Wrong response from the webhook: 502 Bad Gateway",
            "Wrong response from the webhook: 503 Service Unavailable", "Wrong response from the webhook: 404 Not Found",
            "Wrong response from the webhook: 429 Too Many Requests", "Wrong response from the webhook: 413 Request Entity Too Large",
            "Wrong response from the webhook: 500 Internal Server Error", "Failed to resolve host: Name or service not known",
            "SSL error {error:0A000086:SSL routines::certificate verify failed}", "Read timeout expired",
        ]
        let advice = messages.map(WebhookInfo.advice(for:))
        #expect(Set(advice).count == messages.count, "\(advice)")
        #expect(!advice.contains { $0.hasPrefix("Meaning: see the message above") })
    }

    @Test func allowedUpdatesFollowTheRouteTable() {
        #expect(RouteTable.standard.allowedUpdates == [.message, .callbackQuery])
        #expect(RouteTable(commands: [:], callbackPrefixes: ["A": .generic], text: nil).allowedUpdates == [.callbackQuery])
    }
}
