import GatewayTestSupport
import Logging
import Testing

@testable import GatewayCore

/// The pipeline with the state store: dedupe, rate limit, sessions, leases, hand-over of a busy
/// user's updates and fail-open, against the in-memory store.
@Suite struct StatefulPipelineTests {
    private func gateway(requests: Int = 1, windowMilliseconds: Int64 = 1000, answering json: String = #"{"actions":[]}"#) -> TestGateway {
        TestGateway(
            policy: StatePolicy(
                rateLimitRequests: requests, rateLimitWindowMilliseconds: windowMilliseconds, sessionTTLSeconds: 86_400, dedupeTTLSeconds: 3600,
                leaseMilliseconds: 30_000),
            services: ScriptedServiceClient(answering: json))
    }

    @Test func floodGetsOneRoutedUpdateAndOneFriendlyMessage() {
        let gateway = gateway()
        let responses = (1...5).map { gateway.post(Fixtures.message(updateID: $0, text: "/nope\($0)")) }
        let friendly = BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.rateLimited).webhookReplyBody
        #expect(responses.map(\.status) == [200, 200, 200, 200, 200])
        #expect(responses[0].body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.unknownCommand).webhookReplyBody)
        #expect(responses.filter { $0.body == friendly }.count == 1)
        #expect(responses[2...].allSatisfy { $0.body.isEmpty })
        #expect(gateway.log.joined.components(separatedBy: #""outcome":"rate_limited""#).count - 1 == 4)
        // A window later (and past the chat's sending window) the user is heard again.
        gateway.state.advance(milliseconds: 3000)
        #expect(gateway.post(Fixtures.message(updateID: 6, text: "/nope")).body.isEmpty == false)
    }

    @Test func limitedButtonPressIsStillAnswered() {
        let gateway = gateway()
        _ = gateway.post(Fixtures.message(updateID: 1, text: "hello"))
        let response = gateway.post(Fixtures.callbackWithMessage)
        #expect(
            response.body
                == BotMethod.answerCallbackQuery(callbackQueryID: "4382bfdwdsb323b2d9", text: ReplyTexts.standard.rateLimited, showAlert: false)
                .webhookReplyBody)
    }

    @Test func redeliveredUpdateIsAcknowledgedButNotProcessedAgain() {
        let gateway = gateway(requests: 100)
        let first = gateway.post(Fixtures.message(updateID: 77, text: "/nope"))
        let again = gateway.post(Fixtures.message(updateID: 77, text: "/nope"))
        #expect(!first.body.isEmpty)
        #expect(again == .acknowledged)
        #expect(gateway.log.joined.contains(#""outcome":"duplicate""#))
    }

    @Test func serviceRouteCreatesASessionAndLaterUpdatesRefreshIt() {
        let gateway = gateway(requests: 100)
        #expect(gateway.state.session(.user(42)) == nil)
        _ = gateway.post(Fixtures.message(updateID: 1, text: "hello"))
        #expect(gateway.state.session(.user(42))?.internalUserID == "fresh-id")
        gateway.state.advance(milliseconds: 3_600_000)
        #expect(gateway.state.sessionTTL(.user(42)) == 82_800_000)
        _ = gateway.post(Fixtures.message(updateID: 2, text: "/nope"))  // no service, still refreshes
        #expect(gateway.state.sessionTTL(.user(42)) == 86_400_000)
    }

    @Test func gatewayOnlyRoutesCreateNoSession() {
        let gateway = gateway(requests: 100)
        _ = gateway.post(Fixtures.message(updateID: 1, text: "/nope"))
        #expect(gateway.state.session(.user(42)) == nil)
    }

    @Test func theGatewayPathAdmitsItsReplyInTheClaimsOneRoundTrip() {
        let gateway = gateway(requests: 100)
        let response = gateway.post(Fixtures.message(updateID: 1, text: "/nope"))
        #expect(response.body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.unknownCommand).webhookReplyBody)
        // Three replies fill the private chat's window of 3 per 3 s; the fourth waits for a worker.
        for id in 2...3 { #expect(!gateway.post(Fixtures.message(updateID: id, text: "/nope")).body.isEmpty) }
        #expect(gateway.post(Fixtures.message(updateID: 4, text: "/nope")) == .acknowledged)
        #expect(gateway.state.outbox(.user(42)).count == 1)
        gateway.work()
        #expect(gateway.sent.map(\.name) == ["sendMessage"], "the worker sent the kept reply, paced")
        #expect(gateway.state.outbox(.user(42)).isEmpty)
    }

    @Test func anUpdateBeingProcessedElsewhereIsDeferredAndAnotherOfTheUserIsHandedOver() throws {
        let gateway = gateway(requests: 100, answering: #"{"actions":[{"type":"send_message","text":"ok"}]}"#)
        let claimed = try gateway.state.begin(
            BeginRequest(updateID: 9, subject: .user(42), needsSession: true, newInternalUserID: "x", token: "s-other"), deadline: .distantFuture)
        guard case .proceed(let claim?, _, _, _) = claimed else {
            Issue.record("no claim")
            return
        }
        // Telegram redelivers update 9 while the first responder still holds it: 503, not lost.
        let redelivery = gateway.post(Fixtures.message(updateID: 9, text: "hello"))
        #expect(redelivery.status == 503)
        #expect(redelivery.headers.contains { $0 == ("Retry-After", "30") })
        // Another update of the same user does not wait: it is handed to the user's stream.
        #expect(gateway.post(Fixtures.message(updateID: 10, text: "hello")) == .acknowledged)
        #expect(gateway.streams.entries(42 % 4).count == 1)
        #expect(gateway.services.requests.isEmpty, "nothing was processed yet")
        _ = try gateway.state.finish(Completion(claim: claim, stateChange: .set(#"{"flow":"intro"}"#)), deadline: .distantFuture)
        #expect(gateway.post(Fixtures.message(updateID: 9, text: "hello")) == .acknowledged)
        gateway.work()
        #expect(gateway.services.requests.count == 1, "the handed-over update was processed by a worker")
        #expect(gateway.sent.map(\.name) == ["sendMessage"])
        #expect(gateway.state.session(.user(42))?.conversationState == #"{"flow":"intro"}"#)
        #expect(gateway.state.queued(.user(42)).isEmpty)
    }

    @Test func whileAUsersUpdatesWaitInTheStreamALaterOneDoesNotOvertakeThem() {
        let gateway = gateway(requests: 100)
        _ = try? gateway.state.begin(
            BeginRequest(updateID: 1, subject: .user(42), needsSession: true, newInternalUserID: "x", token: "s-busy"), deadline: .distantFuture)
        #expect(gateway.post(Fixtures.message(updateID: 2, text: "hello")) == .acknowledged)
        // The lease expires; update 3 (a command the gateway answers itself) still goes behind 2.
        gateway.state.advance(milliseconds: 31_000)
        #expect(gateway.post(Fixtures.message(updateID: 3, text: "/nope")) == .acknowledged)
        #expect(gateway.streams.entries(42 % 4).count == 2)
    }

    @Test func leaseOfADeadResponderExpiresAndTheRedeliveryIsProcessed() throws {
        let gateway = gateway(requests: 100)
        _ = try gateway.state.begin(
            BeginRequest(updateID: 9, subject: .user(42), needsSession: true, newInternalUserID: "x", token: "s-dead"), deadline: .distantFuture)
        gateway.state.advance(milliseconds: 30_000)
        #expect(gateway.post(Fixtures.message(updateID: 9, text: "/nope")).body.isEmpty == false)
    }

    @Test func storeDownStillRoutesAndAnswers() {
        let gateway = gateway()
        gateway.state.failing = true
        for id in 1...3 {
            let response = gateway.post(Fixtures.message(updateID: id, text: "/nope"))
            #expect(response.status == 200)
            #expect(response.body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.unknownCommand).webhookReplyBody)
        }
        #expect(gateway.log.joined.contains(#""degraded":"true""#))
        gateway.state.failing = false
        #expect(gateway.post(Fixtures.message(updateID: 4, text: "/nope")).status == 200)
    }

    @Test func aBeginThatFailedHereButRanInTheStoreIsReleasedByTheFinish() throws {
        // The begin's answer is lost (a timeout on this side) after it took the user's lease.
        final class LosingAnswers: StateStore {
            let store: InMemoryStateStore
            var loseNextBegin = true
            init(_ store: InMemoryStateStore) { self.store = store }
            func begin(_ request: BeginRequest, deadline: Deadline) throws(StateStoreError) -> BeginDecision {
                let decision = try store.begin(request, deadline: deadline)
                if loseNextBegin {
                    loseNextBegin = false
                    throw .timeout
                }
                return decision
            }
            func finish(_ completion: Completion, deadline: Deadline) throws(StateStoreError) -> FinishReport {
                try store.finish(completion, deadline: deadline)
            }
            func storeCallbackData(_ data: String, ttlSeconds: Int, deadline: Deadline) throws(StateStoreError) -> String {
                try store.storeCallbackData(data, ttlSeconds: ttlSeconds, deadline: deadline)
            }
            func loadCallbackData(token: String, deadline: Deadline) throws(StateStoreError) -> String? {
                try store.loadCallbackData(token: token, deadline: deadline)
            }
            func advanceOutbox(
                of subject: StateSubject, after done: [UInt8]?, maxWaitMilliseconds: Int64, deadline: Deadline
            ) throws(StateStoreError) -> OutboxStep {
                try store.advanceOutbox(of: subject, after: done, maxWaitMilliseconds: maxWaitMilliseconds, deadline: deadline)
            }
            func replaceOutboxHead(of subject: StateSubject, send: PendingSend, with updated: PendingSend, deadline: Deadline) throws(StateStoreError)
            {
                try store.replaceOutboxHead(of: subject, send: send, with: updated, deadline: deadline)
            }
            func ping() throws(StateStoreError) { try store.ping() }
        }
        let gateway = gateway(requests: 100, answering: #"{"actions":[{"type":"send_message","text":"ok"}]}"#)
        let losing = LosingAnswers(gateway.state)
        var dependencies = gateway.dependencies
        dependencies.state = losing
        let head = gateway.head()
        let response = gateway.processor.handle(
            head, body: Array(Fixtures.message(updateID: 5, text: "hello").utf8), with: dependencies, logger: gateway.log.logger())
        #expect(response.status == 200, "processed without the store's answer (fail-open)")
        #expect(gateway.state.leaseHolder(.user(42)) == nil, "the orphaned lease was released at once, not left for its 30 s")
        // The user's next update is processed at once, not handed over behind a ghost.
        #expect(gateway.post(Fixtures.message(updateID: 6, text: "hello")).body.isEmpty == false)
    }
}
