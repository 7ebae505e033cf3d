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
                    lastErrorMessage: "Wrong response from the webhook: 502 Bad Gateway", maxConnections: 16))
        let report = info.report(now: 1090)
        #expect(report.contains("Updates waiting at Telegram: 12"))
        #expect(report.contains("Last delivery error, 90 seconds ago"))
        #expect(report.contains("could not reach the responder pool"))
        #expect(WebhookInfo.parse(Array(#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#.utf8)) == nil)
    }

    @Test func allowedUpdatesFollowTheRouteTable() {
        #expect(RouteTable.standard.allowedUpdates == [.message, .callbackQuery])
        #expect(RouteTable(commands: [:], callbackPrefixes: ["A": .generic], text: nil).allowedUpdates == [.callbackQuery])
    }
}
