import GatewayTestSupport
import Logging
import Testing

@testable import GatewayCore

/// The pipeline with the state store: dedupe, rate limit, sessions, leases and fail-open,
/// against the in-memory store.
@Suite struct StatefulPipelineTests {
    let secret = "s3cret"
    let log = RecordingLog()

    private func handler() -> WebhookHandler {
        WebhookHandler(secrets: [Secret(secret)], maxBodyBytes: 65_536, clock: { 0 }, newInternalUserID: { "new-internal-id" })
    }

    private func post(_ body: String, to state: InMemoryStateStore) -> WebhookResponse {
        let head = WebhookHead(method: "POST", secretToken: Array(secret.utf8), contentLength: nil, requestID: "r", acceptedAt: 0)
        let dependencies = ThreadDependencies(
            state: state, services: ScriptedServiceClient(answering: #"{"actions":[]}"#), botAPI: RecordingBotAPI())
        return handler().handle(head, body: body.bytes, with: dependencies, logger: log.logger())
    }

    private func store(requests: Int = 1, windowMilliseconds: Int64 = 1000) -> InMemoryStateStore {
        InMemoryStateStore(
            policy: StatePolicy(
                rateLimitRequests: requests, rateLimitWindowMilliseconds: windowMilliseconds, sessionTTLSeconds: 86_400,
                dedupeTTLSeconds: 3600, leaseMilliseconds: 10_000, userWaitMilliseconds: 0))
    }

    @Test func floodGetsOneRoutedUpdateAndOneFriendlyMessage() {
        let state = store()
        let responses = (1...5).map { post(Fixtures.message(updateID: $0, text: "/nope\($0)"), to: state) }
        let friendly = BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.rateLimited).webhookReplyBody
        #expect(responses.map(\.status) == [200, 200, 200, 200, 200])
        #expect(responses[0].body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.unknownCommand).webhookReplyBody)
        #expect(responses.filter { $0.body == friendly }.count == 1)
        #expect(responses[2...].allSatisfy { $0.body.isEmpty })
        #expect(log.joined.components(separatedBy: #""outcome":"rate_limited""#).count - 1 == 4)
        // A window later the user is heard again.
        state.advance(milliseconds: 1000)
        #expect(post(Fixtures.message(updateID: 6, text: "/nope"), to: state).body.isEmpty == false)
    }

    @Test func limitedButtonPressIsStillAnswered() {
        let state = store()
        _ = post(Fixtures.message(updateID: 1, text: "hello"), to: state)
        let response = post(Fixtures.callbackWithMessage, to: state)
        #expect(
            response.body
                == BotMethod.answerCallbackQuery(callbackQueryID: "4382bfdwdsb323b2d9", text: ReplyTexts.standard.rateLimited, showAlert: false)
                .webhookReplyBody)
    }

    @Test func redeliveredUpdateIsAcknowledgedButNotProcessedAgain() {
        let state = store(requests: 100)
        let first = post(Fixtures.message(updateID: 77, text: "/nope"), to: state)
        let again = post(Fixtures.message(updateID: 77, text: "/nope"), to: state)
        #expect(!first.body.isEmpty)
        #expect(again == .acknowledged)
        #expect(log.joined.contains(#""outcome":"duplicate""#))
    }

    @Test func serviceRouteCreatesASessionAndLaterUpdatesRefreshIt() {
        let state = store(requests: 100)
        #expect(state.session(.user(42)) == nil)
        _ = post(Fixtures.message(updateID: 1, text: "hello"), to: state)
        #expect(state.session(.user(42))?.internalUserID == "new-internal-id")
        state.advance(milliseconds: 3_600_000)
        #expect(state.sessionTTL(.user(42)) == 82_800_000)
        _ = post(Fixtures.message(updateID: 2, text: "/nope"), to: state)  // no service, still refreshes
        #expect(state.sessionTTL(.user(42)) == 86_400_000)
    }

    @Test func gatewayOnlyRoutesCreateNoSession() {
        let state = store(requests: 100)
        _ = post(Fixtures.message(updateID: 1, text: "/nope"), to: state)
        #expect(state.session(.user(42)) == nil)
    }

    @Test func updateBeingProcessedElsewhereIsDeferredNotDropped() throws {
        let state = store(requests: 100)
        let claimed = try state.begin(BeginRequest(updateID: 9, subject: .user(42), needsSession: true, newInternalUserID: "x"))
        guard case .proceed(let claim?, _) = claimed else { Issue.record("no claim"); return }
        // Telegram redelivers update 9 while the first responder still holds it.
        let redelivery = post(Fixtures.message(updateID: 9, text: "hello"), to: state)
        #expect(redelivery.status == 503)
        #expect(redelivery.headers.contains { $0 == ("Retry-After", "10") })
        // Another update of the same user waits for the first (here: no wait allowed) and is deferred too.
        #expect(post(Fixtures.message(updateID: 10, text: "hello"), to: state).status == 503)
        try state.finish(Completion(claim: claim, stateChange: .set(#"{"flow":"intro"}"#)))
        #expect(post(Fixtures.message(updateID: 9, text: "hello"), to: state) == .acknowledged)
        #expect(post(Fixtures.message(updateID: 10, text: "hello"), to: state) == .acknowledged)
        #expect(state.session(.user(42))?.conversationState == #"{"flow":"intro"}"#)
    }

    @Test func leaseOfADeadResponderExpiresAndTheRedeliveryIsProcessed() throws {
        let state = store(requests: 100)
        _ = try state.begin(BeginRequest(updateID: 9, subject: .user(42), needsSession: true, newInternalUserID: "x"))
        state.advance(milliseconds: 10_000)
        #expect(post(Fixtures.message(updateID: 9, text: "/nope"), to: state).body.isEmpty == false)
    }

    @Test func storeDownStillRoutesAndAnswers() {
        let state = store()
        state.failing = true
        for id in 1...3 {
            let response = post(Fixtures.message(updateID: id, text: "/nope"), to: state)
            #expect(response.status == 200)
            #expect(response.body == BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.unknownCommand).webhookReplyBody)
        }
        #expect(log.joined.contains(#""degraded":"true""#))
        state.failing = false
        #expect(post(Fixtures.message(updateID: 4, text: "/nope"), to: state).status == 200)
    }
}
