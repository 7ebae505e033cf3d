import Foundation
import GatewayTestSupport
import Logging
import Synchronization
import Testing

@testable import GatewayCore

/// Queue mode's two halves with in-memory fakes: the responder stores updates and answers at
/// once; a worker processes a stored update with every action through the Bot API, retrying a
/// failing service until the last attempt.
@Suite struct QueueModeTests {
    let queue = RecordingUpdateQueue()
    let gateway = TestGateway(
        settings: .init(
            secrets: [Secret("s3cret")], maxBodyBytes: 65_536, mode: .queue, queue: QueueSettings(partitions: 4, workers: 4, maxAttempts: 3)))

    private func enqueue(_ body: String) -> WebhookResponse {
        var dependencies = gateway.dependencies
        dependencies.queue = queue
        return gateway.processor.handle(gateway.head(), body: Array(body.utf8), with: dependencies, logger: gateway.log.logger())
    }

    private func process(_ body: String, attempt: Int = 1, of attempts: Int = 3, answered: Bool = false, replay: String? = nil) -> QueuedResult {
        let context = UpdateContext(
            requestID: "q0-1-0", logger: gateway.log.logger(), deadline: .after(seconds: 25, from: gateway.clock.now), mayWait: true,
            clock: gateway.clock.gatewayClock)
        return gateway.processor.process(
            stored: Array(body.utf8), callbackAnswered: answered, replay: replay, attempt: attempt, isLastAttempt: attempt >= attempts,
            with: gateway.dependencies, context: context)
    }

    private func answering(_ json: String) -> TestGateway {
        TestGateway(
            settings: .init(
                secrets: [Secret("s3cret")], maxBodyBytes: 65_536, mode: .queue, queue: QueueSettings(partitions: 4, workers: 4, maxAttempts: 3)),
            services: ScriptedServiceClient(answering: json))
    }

    @Test func theResponderStoresTheUpdateAsSentAndAnswersWithoutCallingAnything() {
        let response = enqueue(Fixtures.message(text: "hello"))
        #expect(response == .acknowledged)
        #expect(
            queue.requests == [
                EnqueueRequest(updateID: 1001, subject: .user(42), body: Array(Fixtures.message(text: "hello").utf8), isCallback: false)
            ])
        #expect(gateway.services.requests.isEmpty)
        #expect(gateway.botAPI.calls.isEmpty)
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
        let gateway = answering(#"{"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#)
        let context = UpdateContext(
            requestID: "q", logger: gateway.log.logger(), deadline: .after(seconds: 25, from: gateway.clock.now), mayWait: true,
            clock: gateway.clock.gatewayClock)
        let body = Array(Fixtures.message(text: "hello").utf8)
        let result = gateway.processor.process(
            stored: body, callbackAnswered: false, replay: nil, attempt: 1, isLastAttempt: false, with: gateway.dependencies, context: context)
        #expect(result == .done(.replied))
        #expect(gateway.sent == [BotMethod.sendMessage(chatID: 42, text: "one").call, BotMethod.sendMessage(chatID: 42, text: "two").call])
        // Processed once: the same entry again (a reclaimed one whose ack was lost) is a duplicate.
        let again = gateway.processor.process(
            stored: body, callbackAnswered: false, replay: nil, attempt: 2, isLastAttempt: false, with: gateway.dependencies, context: context)
        #expect(again == .done(.duplicate))
        #expect(gateway.services.requests.count == 1)
    }

    @Test func aFailingServiceIsRetriedSilentlyThenApologisedForAndDeadLettered() {
        let gateway = TestGateway(
            settings: .init(
                secrets: [Secret("s3cret")], maxBodyBytes: 65_536, mode: .queue, queue: QueueSettings(partitions: 4, workers: 4, maxAttempts: 3)),
            services: ScriptedServiceClient { _, _ in .failure(.timeout) })
        gateway.streams.append(.update(body: Array(Fixtures.message(text: "hello").utf8), callbackAnswered: false, replay: nil), to: 42 % 4)
        gateway.work()
        #expect(gateway.services.requests.count == 3)
        #expect(gateway.sent == [BotMethod.sendMessage(chatID: 42, text: ReplyTexts.standard.serviceFailure).call], "the apology, once")
        #expect(gateway.streams.deadLetters.map(\.reason) == ["service_failed"])
        #expect(gateway.streams.entries(42 % 4).isEmpty)
    }

    @Test func aRetryAfterAWorkerDiedTakesTheLeasesOver() {
        // The first attempt claimed the update and the user, then its worker died (no finish).
        let claim = BeginRequest(updateID: 1001, subject: .user(42), needsSession: true, newInternalUserID: "x", token: "w-dead", origin: .worker)
        _ = try? gateway.state.begin(claim, deadline: .distantFuture)
        let started = gateway.clock.milliseconds
        #expect(process(Fixtures.message(text: "hello"), attempt: 2) == .done(.replied))
        #expect(gateway.clock.milliseconds == started, "taken over at once, not waited for")
    }

    @Test func aWorkerWaitsForAWebhookRequestHoldingTheUserInsteadOfTakingItOver() {
        let claim = BeginRequest(updateID: 999, subject: .user(42), needsSession: true, newInternalUserID: "x", token: "s-webhook")
        _ = try? gateway.state.begin(claim, deadline: .distantFuture)
        let started = gateway.clock.milliseconds
        #expect(process(Fixtures.message(text: "hello"), attempt: 1) == .done(.replied))
        #expect(gateway.clock.milliseconds - started >= 30_000, "it waited for the webhook request's lease")
    }

    @Test func aCallbackAnsweredAtEnqueueIsNotAnsweredTwice() {
        let gateway = answering(#"{"actions":[{"type":"answer_callback","text":"Done"},{"type":"send_message","text":"ok"}]}"#)
        let context = UpdateContext(
            requestID: "q", logger: gateway.log.logger(), deadline: .after(seconds: 25, from: gateway.clock.now), mayWait: true,
            clock: gateway.clock.gatewayClock)
        let result = gateway.processor.process(
            stored: Array(Fixtures.callbackWithMessage.utf8), callbackAnswered: true, replay: nil, attempt: 1, isLastAttempt: false,
            with: gateway.dependencies, context: context)
        #expect(result == .done(.replied))
        #expect(gateway.sent == [BotMethod.sendMessage(chatID: 42, text: "ok").call])
    }

    @Test func aReplayIsProcessedOnceEvenIfItsEntryIsClaimedAgain() {
        let gateway = answering(#"{"actions":[{"type":"send_message","text":"ok"}]}"#)
        let context = UpdateContext(
            requestID: "q", logger: gateway.log.logger(), deadline: .after(seconds: 25, from: gateway.clock.now), mayWait: true,
            clock: gateway.clock.gatewayClock)
        let body = Array(Fixtures.message(text: "hello").utf8)
        func run(replay: String?) -> QueuedResult {
            gateway.processor.process(
                stored: body, callbackAnswered: false, replay: replay, attempt: 1, isLastAttempt: false, with: gateway.dependencies, context: context)
        }
        #expect(run(replay: nil) == .done(.replied))
        #expect(run(replay: "1700000000000-0") == .done(.replied), "the operator's replay runs although the update was done")
        #expect(run(replay: "1700000000000-0") == .done(.duplicate), "the same replay claimed again (its ack lost) does not")
        #expect(run(replay: nil) == .done(.duplicate), "Telegram's own redelivery neither")
        #expect(gateway.services.requests.count == 2)
    }

    @Test func aWorkerTakesEachNextEntryWithTheLastOnesAcknowledgement() throws {
        let gateway = TestGateway(
            settings: .init(secrets: [Secret("s3cret")], maxBodyBytes: 65_536, mode: .queue, queue: QueueSettings(partitions: 1, workers: 1)))
        let updates = 1...10
        for id in updates {
            // Ten users (one chat's window would hold its later replies back for a later turn).
            let body = Fixtures.message(updateID: 1000 + id, text: "/nosuchcommand", entities: #"[{"type":"bot_command","offset":0,"length":14}]"#)
                .replacingOccurrences(of: #""id":42"#, with: #""id":\#(100 + id)"#)
            gateway.streams.append(.update(body: Array(body.utf8), callbackAnswered: false, replay: nil), to: 0)
        }
        let workers = StreamWorkers(
            settings: gateway.processor.settings.queue, processes: 1, processor: gateway.processor, clock: gateway.clock.gatewayClock,
            logger: gateway.log.logger(), prefix: "test")
        let finished = Atomic<Bool>(false)
        // The worker's thread uses the fakes alone until it has finished.
        nonisolated(unsafe) let dependencies = gateway.dependencies
        let streams = gateway.streams
        Thread {
            workers.runWorker(0, partitions: streams, dependencies: dependencies)
            finished.store(true, ordering: .sequentiallyConsistent)
        }.start()
        // Real time: the worker's own waits are on the manual clock and take none.
        for _ in 0..<1_000 where !streams.entries(0).isEmpty { usleep(10_000) }
        workers.stop()
        for _ in 0..<1_000 where !finished.load(ordering: .sequentiallyConsistent) { usleep(10_000) }
        let stopped = finished.load(ordering: .sequentiallyConsistent)
        try #require(stopped, "the worker stops once asked")
        #expect(gateway.streams.entries(0).isEmpty)
        #expect(gateway.sent.count == updates.count, "each update answered once")
        // Eight read at once, the first's attempt counted on its own; the last two read with the
        // eighth's acknowledgement; every other attempt counted with the acknowledgement before.
        #expect(gateway.streams.calls("acknowledge") == updates.count)
        #expect(gateway.streams.calls("countAttempt") == 1)
    }

    @Test func partitionsFollowTheSubjectSoAUsersUpdatesShareOne() {
        let settings = QueueSettings(partitions: 16)
        #expect(settings.partition(of: .user(42), updateID: 1) == settings.partition(of: .user(42), updateID: 999))
        #expect(settings.partition(of: .user(42), updateID: 1) == 42 % 16)
        #expect((0..<16).contains(settings.partition(of: .chat(-1_001_234_567_890), updateID: 1)))
        #expect(settings.partition(of: nil, updateID: 35) == 3)
    }

    @Test(arguments: [DeliveryMode.sync, .queue])
    func everyPartitionNeedsAWorkerInEitherMode(mode: DeliveryMode) {
        var environment = GatewayConfigTests().minimal
        environment["DELIVERY_MODE"] = mode.rawValue
        environment["QUEUE_PARTITIONS"] = "64"
        environment["QUEUE_WORKERS"] = "8"
        environment["GATEWAY_PROCESSES"] = "4"
        #expect(throws: ConfigError.self) { try GatewayConfig.load(environment: environment) }
        environment["QUEUE_WORKERS"] = "16"
        let config = try? GatewayConfig.load(environment: environment)
        #expect(config?.deliveryMode == mode)
        #expect(config?.queue.partitions == 64)
    }
}

/// A worker's hold on its partition: known lost before the lease can expire in the store.
@Suite struct PartitionLeaseTests {
    /// Worker "w" holds partition 1, in the store and as its process knows it, from now.
    static func holdingPartition1(leaseMilliseconds: Int64) -> (ManualClock, InMemoryStreams, PartitionLeases) {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(), clock: clock)
        let leases = PartitionLeases(leaseMilliseconds: leaseMilliseconds, partitions: 16, share: 16)
        _ = try? streams.takeLease(partition: 1, worker: "w", milliseconds: leaseMilliseconds)
        leases.record("w", partition: 1, since: clock.now)
        return (clock, streams, leases)
    }

    @Test func aWorkerWhoseRenewalsFailLosesItsPartitionBeforeTheStoreLetsItGo() {
        let (clock, streams, leases) = Self.holdingPartition1(leaseMilliseconds: 5000)
        clock.advance(milliseconds: 1000)
        leases.renewAll(store: streams, clock: clock.gatewayClock)
        clock.advance(milliseconds: 4000)
        #expect(leases.holds("w", at: clock.now), "renewed a second in: good for 4.5 s more")
        streams.failing = true  // Redis unreachable from this process
        leases.renewAll(store: streams, clock: clock.gatewayClock)
        clock.advance(milliseconds: 600)
        #expect(!leases.holds("w", at: clock.now), "given up before the store's lease (5 s after the last renewal) runs out")
        #expect(streams.owner(1) == "w", "while the store still names it the holder: no other worker acts yet")
    }

    @Test func aWorkerWhoseHeartbeatIsLateRenewsItsOwnLeaseWhileTheStoreStillNamesIt() {
        let (clock, streams, leases) = Self.holdingPartition1(leaseMilliseconds: 2000)
        // No heartbeat for 1.8 s: past the margin here, still the worker's in the store.
        clock.advance(milliseconds: 1800)
        #expect(!leases.holds("w", at: clock.now))
        #expect(leases.holds("w", renewingIn: streams, clock: clock.gatewayClock))
        clock.advance(milliseconds: 1500)
        #expect(streams.owner(1) == "w", "renewed in the store for another lease")
        #expect(leases.holds("w", at: clock.now), "and known renewed here")
    }

    @Test func aLateWorkerDoesNotTakeBackALeaseTheStoreLetGoOrGaveToAnother() {
        let (clock, streams, leases) = Self.holdingPartition1(leaseMilliseconds: 2000)
        clock.advance(milliseconds: 2100)  // expired in the store
        #expect(!leases.holds("w", renewingIn: streams, clock: clock.gatewayClock))
        #expect(streams.owner(1) == nil)
        _ = try? streams.takeLease(partition: 1, worker: "other", milliseconds: 2000)
        #expect(!leases.holds("w", renewingIn: streams, clock: clock.gatewayClock))
        #expect(streams.owner(1) == "other")
        // A renewal the heartbeat found refused is final, even before the margin.
        leases.record("v", partition: 2, since: clock.now)
        leases.renewAll(store: streams, clock: clock.gatewayClock)
        _ = try? streams.takeLease(partition: 2, worker: "v", milliseconds: 2000)
        #expect(!leases.holds("v", renewingIn: streams, clock: clock.gatewayClock))
    }

    @Test func aRenewalThatFindsThePartitionGoneDropsItAtOnce() {
        let clock = ManualClock()
        let streams = InMemoryStreams(settings: QueueSettings(), clock: clock)
        let leases = PartitionLeases(leaseMilliseconds: 5000, partitions: 16, share: 16)
        leases.record("w", partition: 2, since: clock.now)
        leases.renewAll(store: streams, clock: clock.gatewayClock)  // the store does not have it
        #expect(!leases.holds("w", at: clock.now))
    }

    @Test func aWorkerThatLostItsPartitionWhileWaitingCallsNoServiceAndSendsNothing() {
        let gateway = TestGateway(services: ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"ok"}]}"#))
        let context = UpdateContext(
            requestID: "q", logger: gateway.log.logger(), deadline: .after(seconds: 25, from: gateway.clock.now), mayWait: true,
            clock: gateway.clock.gatewayClock, holdsPartition: { false })
        let result = gateway.processor.process(
            stored: Array(Fixtures.message(text: "hello").utf8), callbackAnswered: false, replay: nil, attempt: 1, isLastAttempt: false,
            with: gateway.dependencies, context: context)
        #expect(result == .retry(reason: "partition_lost"))
        #expect(gateway.services.requests.isEmpty)
        #expect(gateway.sent.isEmpty)
    }
}
