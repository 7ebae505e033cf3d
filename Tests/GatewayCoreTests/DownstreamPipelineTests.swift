import Foundation
import GatewayTestSupport
import Logging
import Synchronization
import Testing

@testable import GatewayCore

/// Routed updates reach their service with the contract's request; answers become Bot API calls
/// and a webhook reply; failures become the generic apology. In-memory fakes throughout.
@Suite struct DownstreamPipelineTests {
    let clock = ManualClock()
    let log = RecordingLog()
    let state: InMemoryStateStore
    let botAPI = RecordingBotAPI()

    init() {
        state = InMemoryStateStore(policy: .testing, clock: clock)
    }

    private func handle(_ body: String, services: ScriptedServiceClient, webhookReply: Bool = true) -> WebhookResponse {
        let processor = UpdateProcessor(
            settings: .init(secrets: [Secret("s")], maxBodyBytes: 65_536, webhookReply: webhookReply), clock: clock.gatewayClock,
            newInternalUserID: { "fresh-id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "req-7", acceptedAt: clock.now)
        return processor.handle(
            head, body: Array(body.utf8),
            with: ThreadDependencies(state: state, services: services, botAPI: botAPI, outgoing: state, queue: RecordingUpdateQueue()),
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
        let services = ScriptedServiceClient(
            answering: #"""
                {"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"},{"type":"send_message","text":"three"}]}
                """#)
        let response = handle(Fixtures.message(text: "hello"), services: services)
        #expect(botAPI.calls == [BotMethod.sendMessage(chatID: 42, text: "one").call, BotMethod.sendMessage(chatID: 42, text: "two").call])
        #expect(response.body == BotMethod.sendMessage(chatID: 42, text: "three").webhookReplyBody)
    }

    @Test func withoutWebhookRepliesEverythingGoesThroughTheAPI() {
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#)
        let response = handle(Fixtures.message(text: "hello"), services: services, webhookReply: false)
        #expect(botAPI.calls == [BotMethod.sendMessage(chatID: 42, text: "one").call, BotMethod.sendMessage(chatID: 42, text: "two").call])
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
        #expect(
            response.body
                == BotMethod.answerCallbackQuery(
                    callbackQueryID: "4382bfdwdsb323b2d9", text: ReplyTexts.standard.serviceFailure, showAlert: false
                ).webhookReplyBody)
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

    @Test func theServiceGetsWhatTheDeadlineLeavesNotItsWholeTimeout() throws {
        let services = ScriptedServiceClient(answering: #"{"actions":[]}"#)
        _ = handle(Fixtures.message(text: "hello"), services: services)
        let deadline = try #require(services.deadlines.first)
        #expect(deadline == .after(seconds: 25, from: clock.now), "the update's deadline, from its acceptance")
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
        #expect(botAPI.calls == [BotMethod.answerCallbackQuery(callbackQueryID: "4382bfdwdsb323b2d9", text: "Confirmed", showAlert: false).call])
        #expect(response.body == BotMethod.editMessageReplyMarkup(target: .chat(chatID: 42, messageID: 11), keyboard: nil).webhookReplyBody)
    }

    @Test func botAPIRefusalsAreLoggedWithoutTheirContentAndNotRetried() {
        botAPI.fail(with: .rejected(status: 403))
        let services = ScriptedServiceClient(
            answering: #"{"actions":[{"type":"send_message","text":"secret words"},{"type":"send_message","text":"b"}]}"#)
        let response = handle(Fixtures.message(text: "hello"), services: services)
        #expect(response.status == 200)
        #expect(log.joined.contains("Bot API refused a call; not retried"))
        #expect(!log.joined.contains("secret words"))
        #expect(state.outbox(.user(42)).isEmpty, "a refusal is final")
    }

    @Test func aCallThatFailsOnTheWebhookPathIsKeptForAWorkerWithTheRestBehindIt() {
        botAPI.failNext([.server(status: 502)])
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#)
        let response = handle(Fixtures.message(text: "hello"), services: services)
        #expect(response == .acknowledged, "the reply would overtake the first message: it waits behind it")
        let kept = state.outbox(.user(42))
        #expect(kept.map(\.call) == [BotMethod.sendMessage(chatID: 42, text: "one").call, BotMethod.sendMessage(chatID: 42, text: "two").call])
        #expect(kept.map(\.attempts) == [1, 0])
    }
}

@Suite struct LongCallbackDataTests {
    let clock = ManualClock()
    let state: InMemoryStateStore
    let botAPI = RecordingBotAPI()
    let log = RecordingLog()

    init() {
        state = InMemoryStateStore(policy: .testing, clock: clock)
    }

    private func handle(_ body: String, services: ScriptedServiceClient) -> WebhookResponse {
        let processor = UpdateProcessor(
            settings: .init(secrets: [Secret("s")], maxBodyBytes: 65_536), clock: clock.gatewayClock, newInternalUserID: { "id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "r", acceptedAt: clock.now)
        clock.advance(milliseconds: 3000)  // each answer its own slot in the chat's window
        return processor.handle(
            head, body: Array(body.utf8), with: ThreadDependencies(state: state, services: services, botAPI: botAPI, outgoing: state),
            logger: log.logger())
    }

    @Test func longDataTravelsAsATokenAndComesBackWhole() throws {
        let long = "CONNECT:" + String(repeating: "x", count: 192)
        let services = ScriptedServiceClient { service, _ in
            service == .conversation
                ? .success(
                    Array(
                        #"{"actions":[{"type":"send_message","text":"t","keyboard":[[{"text":"b","callback_data":"\#(long)"},{"text":"s","callback_data":"SKIP"}]]}]}"#
                            .utf8))
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

    @Test func aStoreFailingWhileReadingATokenBackAsksForTheButtonAgain() {
        let services = ScriptedServiceClient(answering: #"{"actions":[]}"#)
        state.failing = true
        let response = handle(Fixtures.callbackWithMessage.replacing("CONNECT:99", with: "~sometoken"), services: services)
        #expect(response.status == 503, "not answered as an unknown button: Telegram delivers the press again")
        #expect(services.requests.isEmpty)
        #expect(!String(decoding: response.body, as: UTF8.self).contains(ReplyTexts.standard.unknownCallback))
    }

    @Test func anUnknownTokenIsAnUnknownButton() {
        let services = ScriptedServiceClient(answering: #"{"actions":[]}"#)
        let response = handle(Fixtures.callbackWithMessage.replacing("CONNECT:99", with: "~nosuchtoken"), services: services)
        #expect(services.requests.isEmpty)
        #expect(String(decoding: response.body, as: UTF8.self).contains(ReplyTexts.standard.unknownCallback))
    }

    @Test func servicesCannotForgeTokens() {
        #expect(
            ServiceAnswer.parse(
                Array(#"{"actions":[{"type":"send_message","text":"t","keyboard":[[{"text":"b","callback_data":"~abc"}]]}]}"#.utf8), isCallback: false
            )
                == .failure(.invalidAnswer))
    }
}

@Suite struct OutgoingPacingTests {
    @Test func whatTheChatsWindowDoesNotAllowNowIsKeptInOrderAndAWorkerSendsItPaced() {
        let gateway = TestGateway(
            services: ScriptedServiceClient(
                answering:
                    #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"},{"type":"send_message","text":"three"},{"type":"send_message","text":"four"},{"type":"send_message","text":"five"}]}"#
            ))
        let response = gateway.post(Fixtures.message(text: "hello"))
        #expect(response == .acknowledged, "the last message waits behind the others: no webhook reply")
        #expect(
            gateway.sent.map(\.parameters).map { String(decoding: $0, as: UTF8.self) }.allSatisfy {
                $0.contains("one") || $0.contains("two") || $0.contains("three")
            })
        #expect(gateway.sent.count == 3, "the private chat's window: 3 per 3 s")
        #expect(gateway.state.outbox(.user(42)).count == 2)
        #expect(gateway.streams.entries(42 % 4).count == 1, "a worker is told")
        let started = gateway.clock.milliseconds
        gateway.work()
        let texts = gateway.sent.map { String(decoding: $0.parameters, as: UTF8.self) }
        #expect(texts.count == 5)
        #expect(texts.enumerated().allSatisfy { $1.contains(["one", "two", "three", "four", "five"][$0]) }, "in order")
        #expect(gateway.clock.milliseconds - started >= 2900, "paced: the worker waited for the window")
        #expect(gateway.state.outbox(.user(42)).isEmpty)
        #expect(gateway.state.queued(.user(42)).isEmpty, "the user is no longer held back")
    }

    @Test func theWebhookReplyCountsInTheChatsWindowButNotTheBotsBudget() {
        let gateway = TestGateway(
            policy: StatePolicy(
                rateLimitRequests: 1000, rateLimitWindowMilliseconds: 1000, sessionTTLSeconds: 86_400, dedupeTTLSeconds: 86_400,
                leaseMilliseconds: 30_000, outgoing: OutgoingLimits(botMessagesPerSecond: 1)),
            services: ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#))
        let response = gateway.post(Fixtures.message(text: "hello"))
        #expect(gateway.sent.count == 1, "one through the Bot API: the bot's budget of 1 a second")
        #expect(!response.body.isEmpty, "the reply is Telegram's to send: outside the bot's budget")
    }
}

/// A worker's sends as they leave on a machine whose sleeps overshoot: the bot-wide budget
/// counts slots, Telegram counts arrivals, so a send may not leave long after its slot.
@Suite struct LateSenderTests {
    /// How far the next sleeps overshoot.
    final class Oversleep: Sendable {
        let nanoseconds = Atomic<UInt64>(0)
        func set(milliseconds: UInt64) { nanoseconds.store(milliseconds * 1_000_000, ordering: .sequentiallyConsistent) }
    }

    let clock = ManualClock()
    let oversleep = Oversleep()
    let state: InMemoryStateStore
    let botAPI: RecordingBotAPI
    let processor: UpdateProcessor
    let log = RecordingLog()

    init() {
        state = InMemoryStateStore(policy: .testing, clock: clock)
        botAPI = RecordingBotAPI(clock: clock)
        let (clock, oversleep) = (clock, oversleep)
        processor = UpdateProcessor(
            settings: .init(secrets: [Secret("s")], maxBodyBytes: 65_536),
            clock: GatewayClock(
                now: { clock.now }, sleep: { clock.advance(nanoseconds: $0 + oversleep.nanoseconds.load(ordering: .sequentiallyConsistent)) }),
            newInternalUserID: { "id" })
    }

    /// A worker's send of a message to `chat` (its own chat's window, the bot's budget), with
    /// the suite's store or `store`.
    private func send(to chat: Int64, store: InMemoryStateStore? = nil) -> UpdateProcessor.SendOutcome {
        let store = store ?? state
        let context = UpdateContext(
            requestID: "q0-1-0", logger: log.logger(), deadline: .after(seconds: 25, from: clock.now), mayWait: true, clock: processor.clock)
        return processor.sendPaced(
            PendingSend(.sendMessage(chatID: chat, text: "hi"), requestID: "r\(chat)", index: 0), slot: .elsewhere,
            dependencies: ThreadDependencies(state: store, services: ScriptedServiceClient(answering: "{}"), botAPI: botAPI, outgoing: store),
            context: context)
    }

    @Test func aSenderWakingTooLongAfterItsSlotTakesANewSlotInsteadOfSendingLate() {
        let start = clock.milliseconds
        #expect(send(to: 1) == .sent, "the budget's first slot is free at once")
        // The next slot is 35 ms on (30 a second, spread evenly); the sender wakes 21 ms late.
        oversleep.set(milliseconds: 21)
        #expect(send(to: 2) == .notNow(retryAfterMilliseconds: 0), "late past the tolerance: not sent, back at once for a new slot")
        #expect(botAPI.calls.count == 1)
        oversleep.set(milliseconds: 0)
        #expect(send(to: 2) == .sent)
        // The slot it left stays counted: the new one is 35 ms after it, not the 56 ms it woke at.
        #expect(botAPI.times.map { $0 - start } == [0, 70])
    }

    @Test func aSenderWakingWithinTheToleranceSends() {
        let start = clock.milliseconds
        #expect(send(to: 1) == .sent)
        oversleep.set(milliseconds: UInt64(OutgoingLimits.lateSendMilliseconds))
        #expect(send(to: 2) == .sent, "20 ms late is within the window's margin")
        #expect(botAPI.times.map { $0 - start } == [0, 55])
    }

    @Test func withoutABotWideBudgetALateSenderSends() {
        var policy = StatePolicy.testing
        policy.outgoing.botMessagesPerSecond = 0
        (policy.outgoing.privateChatMessages, policy.outgoing.privateWindowMilliseconds) = (1, 500)
        let store = InMemoryStateStore(policy: policy, clock: clock)
        let start = clock.milliseconds
        #expect(send(to: 1, store: store) == .sent)
        // The second waits 500 ms for the chat's window and wakes 100 ms late: no bot-wide
        // second to crowd, and the chat's own window is only the later for it.
        oversleep.set(milliseconds: 100)
        #expect(send(to: 1, store: store) == .sent)
        #expect(botAPI.times.map { $0 - start } == [0, 600])
    }
}

@Suite struct SlowRequestLogTests {
    @Test func aSlowRequestIsLoggedWithItsTimingsButNoContent() {
        let log = RecordingLog()
        let clock = ManualClock()
        let services = ScriptedServiceClient { _, _ in
            clock.advance(milliseconds: 7000)  // the service takes 7 s
            return .success(Array(#"{"actions":[{"type":"send_message","text":"private answer"}]}"#.utf8))
        }
        let processor = UpdateProcessor(
            settings: .init(secrets: [Secret("s")], maxBodyBytes: 65_536, slowRequestSeconds: 5), clock: clock.gatewayClock,
            newInternalUserID: { "id" })
        let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "r", acceptedAt: clock.now)
        let state = InMemoryStateStore(policy: .testing, clock: clock)
        _ = processor.handle(
            head, body: Array(Fixtures.message(text: "secret question").utf8),
            with: ThreadDependencies(state: state, services: services, botAPI: RecordingBotAPI(), outgoing: state), logger: log.logger())
        let line = log.all.last ?? ""
        #expect(line.contains(#""level":"warning""#))
        #expect(line.contains(#""message":"slow request""#))
        #expect(line.contains(#""service_ms":7000"#))
        #expect(line.contains(#""route":"conversation""#))
        #expect(!log.joined.contains("secret question") && !log.joined.contains("private answer"))
    }
}
