import Foundation
import Synchronization
import GatewayTestSupport
import Logging
import Testing

@testable import GatewayCore

/// Routed updates reach their service with the contract's request; answers become Bot API calls
/// and a webhook reply; failures become the generic apology. In-memory fakes throughout.
@Suite struct DownstreamPipelineTests {
    let log = RecordingLog()
    let state = InMemoryStateStore(policy: .testing)
    let botAPI = RecordingBotAPI()

    private func handle(_ body: String, services: ScriptedServiceClient, webhookReply: Bool = true, state: InMemoryStateStore? = nil) -> WebhookResponse {
        let handler = WebhookHandler(
            secrets: [Secret("s")], maxBodyBytes: 65_536, webhookReply: webhookReply, clock: { 0 },
            newInternalUserID: { "fresh-id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "req-7", acceptedAt: 0)
        return handler.handle(
            head, body: Array(body.utf8), with: ThreadDependencies(state: state ?? self.state, services: services, botAPI: botAPI),
            logger: log.logger())
    }

    @Test(arguments: [
        (Fixtures.command, ServiceName.userProfile),
        (Fixtures.message(text: "hello"), .conversation),
        (Fixtures.callbackWithMessage, .matching),
    ])
    func eachRouteReachesItsServiceWithTheContractRequest(body: String, service: ServiceName) throws {
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"ok"}]}"#)
        _ = handle(body, services: services)
        let request = try #require(services.requests.first)
        #expect(request.service == service)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        #expect(json["request_id"] as? String == "req-7")
        #expect(json["internal_user_id"] as? String == "fresh-id")
        #expect(json["session_available"] as? Bool == true)
    }

    @Test func threeActionsArriveInOrderWithTheLastAsTheWebhookReply() {
        let services = ScriptedServiceClient(answering: #"""
            {"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"},{"type":"send_message","text":"three"}]}
            """#)
        let response = handle(Fixtures.message(text: "hello"), services: services)
        #expect(botAPI.calls == [.sendMessage(chatID: 42, text: "one"), .sendMessage(chatID: 42, text: "two")])
        #expect(response.body == BotMethod.sendMessage(chatID: 42, text: "three").webhookReplyBody)
    }

    @Test func withoutWebhookRepliesEverythingGoesThroughTheAPI() {
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#)
        let response = handle(Fixtures.message(text: "hello"), services: services, webhookReply: false)
        #expect(botAPI.calls == [.sendMessage(chatID: 42, text: "one"), .sendMessage(chatID: 42, text: "two")])
        #expect(response == .acknowledged)
    }

    @Test(arguments: [ServiceCallError.timeout, .refused, .badStatus, .circuitOpen])
    func aFailingServiceGetsTheUserTheApologyAndTelegram200(error: ServiceCallError) {
        let services = ScriptedServiceClient { _, _ in .failure(error) }
        let response = handle(Fixtures.message(text: "hello"), services: services)
        #expect(response.status == 200)
        #expect(response.body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.serviceFailure).webhookReplyBody)
        #expect(log.joined.contains(#""outcome":"service_failed""#))
    }

    @Test func nonsenseFromTheServiceIsAFailureToo() {
        let services = ScriptedServiceClient(answering: "<html>oops</html>")
        let response = handle(Fixtures.callbackWithMessage, services: services)
        #expect(response.body == BotMethod.answerCallbackQuery(
            callbackQueryID: "4382bfdwdsb323b2d9", text: ReplyTexts.standard.serviceFailure, showAlert: false).webhookReplyBody)
    }

    @Test func stateTheServiceSetsIsWhatItSeesNextTime() throws {
        let services = ScriptedServiceClient { _, body in
            let request = (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:]
            let step = ((request["conversation_state"] as? [String: Any])?["step"] as? Int) ?? 0
            return .success(Array(#"{"actions":[{"type":"set_state","state":{"step":\#(step + 1)}}]}"#.utf8))
        }
        for id in 1...3 { _ = handle(Fixtures.message(updateID: id, text: "next"), services: services) }
        #expect(state.session(.user(42))?.conversationState == #"{"step":3}"#)
    }

    @Test func withRedisDownServicesAreToldTheSessionIsUnavailable() throws {
        state.failing = true
        let services = ScriptedServiceClient(answering: #"{"actions":[]}"#)
        _ = handle(Fixtures.message(text: "hello"), services: services)
        let request = try #require(services.requests.first)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        #expect(json["session_available"] as? Bool == false)
        #expect(json["internal_user_id"] is NSNull)
    }

    @Test func confirmIsHandledByTheGatewayWithoutAService() {
        let services = ScriptedServiceClient(answering: #"{"actions":[]}"#)
        let body = Fixtures.callbackWithMessage.replacing("CONNECT:99", with: "CONFIRM:order-1")
        let response = handle(body, services: services)
        #expect(services.requests.isEmpty)
        #expect(botAPI.calls == [.answerCallbackQuery(callbackQueryID: "4382bfdwdsb323b2d9", text: "Confirmed", showAlert: false)])
        #expect(response.body == BotMethod.editMessageReplyMarkup(target: .chat(chatID: 42, messageID: 11), keyboard: nil).webhookReplyBody)
    }

    @Test func botAPIFailuresAreLoggedWithoutTheirContent() {
        botAPI.fail(with: .rejected(status: 403))
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"secret words"},{"type":"send_message","text":"b"}]}"#)
        let response = handle(Fixtures.message(text: "hello"), services: services)
        #expect(response.status == 200)
        #expect(log.joined.contains("Bot API call failed"))
        #expect(!log.joined.contains("secret words"))
    }
}

@Suite struct LongCallbackDataTests {
    let state = InMemoryStateStore(policy: .testing)
    let botAPI = RecordingBotAPI()
    let log = RecordingLog()

    private func handle(_ body: String, services: ScriptedServiceClient) -> WebhookResponse {
        let handler = WebhookHandler(secrets: [Secret("s")], maxBodyBytes: 65_536, clock: { 0 }, newInternalUserID: { "id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "r", acceptedAt: 0)
        return handler.handle(
            head, body: Array(body.utf8), with: ThreadDependencies(state: state, services: services, botAPI: botAPI), logger: log.logger())
    }

    @Test func longDataTravelsAsATokenAndComesBackWhole() throws {
        let long = "CONNECT:" + String(repeating: "x", count: 192)
        let services = ScriptedServiceClient { service, _ in
            service == .conversation
                ? .success(Array(#"{"actions":[{"type":"send_message","text":"t","keyboard":[[{"text":"b","callback_data":"\#(long)"},{"text":"s","callback_data":"SKIP"}]]}]}"#.utf8))
                : .success(Array(#"{"actions":[]}"#.utf8))
        }
        let response = handle(Fixtures.message(text: "hello"), services: services)
        let reply = String(decoding: response.body, as: UTF8.self)
        #expect(!reply.contains(long))
        #expect(reply.contains(#""callback_data":"SKIP""#), "short data is left alone")
        let token = try #require(reply.firstRange(of: #""callback_data":"~"#).map { reply[$0.upperBound...].prefix { $0 != "\"" } })
        #expect(("~" + token).utf8.count <= 64)

        _ = handle(Fixtures.callbackWithMessage.replacing("CONNECT:99", with: "~" + token), services: services)
        let press = try #require(services.requests.last)
        #expect(press.service == .matching)
        #expect(String(decoding: press.body, as: UTF8.self).contains(long))
    }

    @Test func anUnknownTokenIsAnUnknownButton() {
        let services = ScriptedServiceClient(answering: #"{"actions":[]}"#)
        let response = handle(Fixtures.callbackWithMessage.replacing("CONNECT:99", with: "~nosuchtoken"), services: services)
        #expect(services.requests.isEmpty)
        #expect(String(decoding: response.body, as: UTF8.self).contains(ReplyTexts.standard.unknownCallback))
    }

    @Test func servicesCannotForgeTokens() {
        #expect(ServiceAnswer.parse(Array(#"{"actions":[{"type":"send_message","text":"t","keyboard":[[{"text":"b","callback_data":"~abc"}]]}]}"#.utf8), isCallback: false)
            == .failure(.invalidAnswer))
    }
}

@Suite struct OutgoingPacingTests {
    /// Grants `slots` messages, then refuses; records what it was asked.
    final class CountingLimiter: OutgoingLimiter, Sendable {
        let asked = Mutex<[(Int64, Bool)]>([])
        let slots: Int
        init(slots: Int) { self.slots = slots }
        func awaitSlot(chatID: Int64, throughBotAPI: Bool) -> Bool {
            asked.withLock { $0.append((chatID, throughBotAPI)); return $0.count <= slots }
        }
    }

    @Test func messagesWithoutASlotAreLeftOutAndLogged() {
        let limiter = CountingLimiter(slots: 1)
        let botAPI = RecordingBotAPI()
        let log = RecordingLog()
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#)
        let handler = WebhookHandler(secrets: [Secret("s")], maxBodyBytes: 65_536, clock: { 0 }, newInternalUserID: { "id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "r", acceptedAt: 0)
        let response = handler.handle(
            head, body: Array(Fixtures.message(text: "hello").utf8),
            with: ThreadDependencies(state: InMemoryStateStore(policy: .testing), services: services, botAPI: botAPI, outgoing: limiter),
            logger: log.logger())
        #expect(botAPI.calls == [.sendMessage(chatID: 42, text: "one")])
        #expect(response == .acknowledged, "the second message had no slot")
        #expect(limiter.asked.withLock { $0.map(\.1) } == [true, false], "only the webhook reply skips the bot-wide budget")
        #expect(log.joined.contains("outgoing limit reached"))
    }
}

@Suite struct SlowRequestLogTests {
    @Test func aSlowRequestIsLoggedWithItsTimingsButNoContent() {
        let log = RecordingLog()
        let now = Mutex<UInt64>(0)
        let services = ScriptedServiceClient { _, _ in
            now.withLock { $0 += 7_000_000_000 }  // the service takes 7 s
            return .success(Array(#"{"actions":[{"type":"send_message","text":"private answer"}]}"#.utf8))
        }
        let handler = WebhookHandler(
            secrets: [Secret("s")], maxBodyBytes: 65_536, slowRequestSeconds: 5, clock: { now.withLock { $0 } }, newInternalUserID: { "id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "r", acceptedAt: 0)
        _ = handler.handle(
            head, body: Array(Fixtures.message(text: "secret question").utf8),
            with: ThreadDependencies(state: InMemoryStateStore(policy: .testing), services: services, botAPI: RecordingBotAPI()),
            logger: log.logger())
        let line = log.all.last ?? ""
        #expect(line.contains(#""level":"warning""#))
        #expect(line.contains(#""message":"slow request""#))
        #expect(line.contains(#""service_ms":7000"#))
        #expect(line.contains(#""route":"conversation""#))
        #expect(!log.joined.contains("secret question") && !log.joined.contains("private answer"))
    }
}
