import GatewayTestSupport
import Logging
import Testing

@testable import GatewayCore

/// Queue mode's two halves with in-memory fakes: the responder stores updates and answers at
/// once; a worker processes a stored update with every action through the Bot API, retrying a
/// failing service until the last attempt.
@Suite struct QueueModeTests {
    let log = RecordingLog()
    let state = InMemoryStateStore(policy: .testing)
    let botAPI = RecordingBotAPI()
    let queue = RecordingUpdateQueue()
    let handler = WebhookHandler(secrets: [Secret("s")], maxBodyBytes: 65_536, clock: { 0 }, newInternalUserID: { "fresh-id" })
    let head = WebhookHead(method: "POST", secretToken: Array("s".utf8), contentLength: nil, requestID: "req-1", acceptedAt: 0)

    private func dependencies(_ services: ScriptedServiceClient, queue: RecordingUpdateQueue? = nil) -> ThreadDependencies {
        ThreadDependencies(state: state, services: services, botAPI: botAPI, queue: queue)
    }

    private func enqueue(_ body: String, services: ScriptedServiceClient = ScriptedServiceClient(answering: "{}")) -> WebhookResponse {
        handler.handle(head, body: Array(body.utf8), with: dependencies(services, queue: queue), logger: log.logger())
    }

    private func process(_ body: String, attempt: Int = 1, of attempts: Int = 3, answered: Bool = false, services: ScriptedServiceClient) -> QueuedResult {
        let entry = QueuedUpdate(body: Array(body.utf8), callbackAnswered: answered, attempt: attempt, isLastAttempt: attempt >= attempts)
        return handler.process(entry, requestID: "q0-1-0", with: dependencies(services), logger: log.logger())
    }

    @Test func theResponderStoresTheUpdateAsSentAndAnswersWithoutCallingAnything() {
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"ok"}]}"#)
        let response = enqueue(Fixtures.message(text: "hello"), services: services)
        #expect(response == .acknowledged)
        #expect(queue.requests == [EnqueueRequest(updateID: 1001, subject: .user(42), body: Array(Fixtures.message(text: "hello").utf8), isCallback: false)])
        #expect(services.requests.isEmpty)
        #expect(botAPI.calls.isEmpty)
    }

    @Test func aFullPartitionGetsRetryAfterAndABrokenQueueToo() {
        queue.answer(.full(retryAfterSeconds: 7))
        #expect(enqueue(Fixtures.message()) == .retryLater(seconds: 7))
        queue.failing = true
        let response = enqueue(Fixtures.message(updateID: 1002))
        #expect(response.status == 503)
        #expect(response.headers.first?.name == "Retry-After")
    }

    @Test func aButtonPressBehindABacklogIsAnsweredAtOnce() {
        queue.answer(.queued(answerCallbackNow: true))
        let response = enqueue(Fixtures.callbackWithMessage)
        #expect(response == .webhookReply(.answerCallbackQuery(callbackQueryID: "4382bfdwdsb323b2d9", text: nil, showAlert: false)))
        #expect(queue.requests.first?.isCallback == true)
    }

    @Test func duplicatesAndLimitedUpdatesAreAnsweredLikeSyncMode() {
        queue.answer(.duplicate)
        #expect(enqueue(Fixtures.message()) == .acknowledged)
        queue.answer(.limited(warn: true))
        #expect(enqueue(Fixtures.message(updateID: 1002)) == .webhookReply(.sendMessage(chatID: 42, text: ReplyTexts.standard.rateLimited)))
    }

    @Test func ignoredUpdatesAreNotStored() {
        _ = enqueue(Fixtures.poll)
        #expect(queue.requests.isEmpty)
    }

    @Test func aWorkerDeliversEverythingThroughTheBotAPIAndFinishes() throws {
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}],"state":{"step":2}}"#)
        #expect(process(Fixtures.message(text: "hello"), services: services) == .done(.replied))
        #expect(botAPI.calls == [.sendMessage(chatID: 42, text: "one"), .sendMessage(chatID: 42, text: "two")])
        // Processed once: the same entry again (a reclaimed one whose ack was lost) is a duplicate.
        #expect(process(Fixtures.message(text: "hello"), services: services) == .done(.duplicate))
        #expect(services.requests.count == 1)
    }

    @Test func aFailingServiceIsRetriedSilentlyThenApologisedForAndDeadLettered() {
        let services = ScriptedServiceClient { _, _ in .failure(.timeout) }
        #expect(process(Fixtures.message(text: "hello"), attempt: 1, services: services) == .retry(reason: "service_failed"))
        #expect(process(Fixtures.message(text: "hello"), attempt: 2, services: services) == .retry(reason: "service_failed"))
        #expect(botAPI.calls.isEmpty)
        #expect(process(Fixtures.message(text: "hello"), attempt: 3, services: services) == .deadLetter(reason: "service_failed"))
        #expect(botAPI.calls == [.sendMessage(chatID: 42, text: ReplyTexts.standard.serviceFailure)])
        #expect(services.requests.count == 3)
    }

    @Test func aRetryAfterAWorkerDiedTakesTheLeasesOver() {
        // The first attempt claimed the update and the user, then its worker died (no finish).
        let claim = BeginRequest(updateID: 1001, subject: .user(42), needsSession: true, newInternalUserID: "x", queued: true)
        _ = try? state.begin(claim)
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"ok"}]}"#)
        #expect(process(Fixtures.message(text: "hello"), attempt: 2, services: services) == .done(.replied))
    }

    @Test func aCallbackAnsweredAtEnqueueIsNotAnsweredTwice() {
        let services = ScriptedServiceClient(answering: #"{"actions":[{"type":"answer_callback","text":"Done"},{"type":"send_message","text":"ok"}]}"#)
        #expect(process(Fixtures.callbackWithMessage, answered: true, services: services) == .done(.replied))
        #expect(botAPI.calls == [.sendMessage(chatID: 42, text: "ok")])
    }

    @Test func partitionsFollowTheSubjectSoAUsersUpdatesShareOne() {
        let settings = QueueSettings(partitions: 16)
        #expect(settings.partition(of: .user(42), updateID: 1) == settings.partition(of: .user(42), updateID: 999))
        #expect(settings.partition(of: .user(42), updateID: 1) == 42 % 16)
        #expect((0..<16).contains(settings.partition(of: .chat(-1001234567890), updateID: 1)))
        #expect(settings.partition(of: nil, updateID: 35) == 3)
    }

    @Test func queueModeNeedsAWorkerForEveryPartition() {
        var environment = GatewayConfigTests().minimal
        environment["DELIVERY_MODE"] = "queue"
        environment["QUEUE_PARTITIONS"] = "64"
        environment["QUEUE_WORKERS"] = "8"
        environment["GATEWAY_PROCESSES"] = "4"
        #expect(throws: ConfigError.self) { try GatewayConfig.load(environment: environment) }
        environment["QUEUE_WORKERS"] = "16"
        let config = try? GatewayConfig.load(environment: environment)
        #expect(config?.deliveryMode == .queue)
        #expect(config?.queue.partitions == 64)
    }
}
