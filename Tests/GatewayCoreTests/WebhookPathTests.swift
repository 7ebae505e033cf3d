import GatewayTestSupport
import Logging
import Testing

@testable import GatewayCore

/// The webhook path's checks and answers: admission, decoding, the gateway's own replies.
@Suite struct WebhookPathTests {
    let secret = "current-secret_1"
    let previous = "previous-secret_0"
    let gateway = TestGateway(
        settings: .init(secrets: [Secret("current-secret_1"), Secret("previous-secret_0")], maxBodyBytes: 4096, botUsername: "our_bot"))
    var log: RecordingLog { gateway.log }

    private func head(method: String = "POST", secret: String? = "current-secret_1", length: Int? = nil) -> WebhookHead {
        gateway.head(method: method, secret: secret, length: length)
    }

    private func respond(_ body: String, head: WebhookHead? = nil) -> WebhookResponse {
        gateway.post(body, head: head ?? self.head())
    }

    @Test func onlyPostIsAccepted() {
        let response = respond(Fixtures.message(), head: head(method: "GET"))
        #expect(response.status == 405)
        #expect(response.headers.contains { $0 == ("Allow", "POST") })
    }

    @Test func missingOrWrongSecretIsForbidden() {
        #expect(respond(Fixtures.message(), head: head(secret: nil)).status == 403)
        #expect(respond(Fixtures.message(), head: head(secret: "")).status == 403)
        #expect(respond(Fixtures.message(), head: head(secret: "current-secret_")).status == 403)
        #expect(respond(Fixtures.message(), head: head(secret: "current-secret_12")).status == 403)
        #expect(respond(Fixtures.message(), head: head(secret: "CURRENT-SECRET_1")).status == 403)
    }

    @Test func previousSecretIsAcceptedDuringRotation() {
        #expect(respond(Fixtures.message(), head: head(secret: previous)).status == 200)
    }

    @Test func declaredOrActualOversizeIsTooLarge() {
        #expect(respond(Fixtures.message(), head: head(length: 4097)).status == 413)
        let huge = String(repeating: " ", count: 4097)
        #expect(respond(huge, head: head()).status == 413)
    }

    @Test func aBodyShorterThanItsLengthIsNotTakenForMalformedButDeliveredAgain() {
        let body = Fixtures.message()
        let truncated = String(body.prefix(body.utf8.count / 2))
        let response = respond(truncated, head: head(length: body.utf8.count))
        #expect(response.status == 503, "Telegram must deliver it again")
        #expect(response.headers.contains { $0.name == "Retry-After" })
        #expect(log.joined.contains(#""outcome":"incomplete_body""#))
        #expect(!log.joined.contains(#""outcome":"malformed""#))
        // The whole body, as redelivered, is processed.
        #expect(respond(body, head: head(length: body.utf8.count)).status == 200)
    }

    @Test func unknownCommandGetsASendMessageWebhookReply() {
        let response = respond(Fixtures.message(text: "/nope"))
        #expect(response.status == 200)
        #expect(response.headers.contains { $0 == ("Content-Type", "application/json") })
        #expect(response.body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.unknownCommand).webhookReplyBody)
    }

    @Test func unknownCallbackIsAnsweredSoTheButtonStopsSpinning() {
        let body = Fixtures.callbackWithMessage.replacing("CONNECT:99", with: "BOGUS")
        let response = respond(body)
        #expect(response.status == 200)
        #expect(
            response.body
                == BotMethod.answerCallbackQuery(
                    callbackQueryID: "4382bfdwdsb323b2d9", text: ReplyTexts.standard.unknownCallback, showAlert: false
                ).webhookReplyBody)
    }

    @Test(arguments: ["", "{", "\u{FF}", #"{"update_id":"x"}"#, #"{"update_id":1,"message":7}"#])
    func badBodiesAreAcknowledgedAndLogged(body: String) {
        let response = respond(body)
        #expect(response == .acknowledged)
        #expect(log.joined.contains(#""outcome":"malformed""#))
    }

    @Test func routedAndIgnoredUpdatesAreAcknowledged() {
        #expect(respond(Fixtures.message(text: "hello")) == .acknowledged)
        #expect(log.joined.contains(#""route":"conversation""#))
        #expect(respond(Fixtures.poll) == .acknowledged)
        #expect(log.joined.contains(#""outcome":"ignored""#))
    }

    @Test func logLinesCarryIdsButNeverTextSecretOrCallbackData() {
        _ = respond(Fixtures.message(text: "my password is hunter2"))
        _ = respond(Fixtures.callbackWithMessage)
        _ = respond(Fixtures.message(), head: head(secret: "wrong-secret"))
        let text = log.joined
        #expect(text.contains(#""request_id":"req-1""#))
        #expect(text.contains(#""update_id":1001"#))
        #expect(text.contains(#""user_id":42"#))
        #expect(text.contains(#""update_type":"callback_query""#))
        for forbidden in ["hunter2", "CONNECT:99", secret, "wrong-secret", "Ada"] {
            #expect(!text.contains(forbidden), "log holds \(forbidden)")
        }
    }

    @Test func theHealthSummaryNamesEachCircuit() {
        let degraded = AdminEndpoints.health(
            redisOK: false, circuits: [(ServiceName("conversation"), .closed), (ServiceName("matching"), .open), (ServiceName("profile"), .halfOpen)])
        #expect(
            String(decoding: degraded, as: UTF8.self)
                == #"{"status":"degraded","redis":"unavailable","circuits":{"conversation":"closed","matching":"open","profile":"half_open"}}"#)
        #expect(String(decoding: AdminEndpoints.health(redisOK: true, circuits: []), as: UTF8.self) == #"{"status":"ok","redis":"ok","circuits":{}}"#)
    }
}
