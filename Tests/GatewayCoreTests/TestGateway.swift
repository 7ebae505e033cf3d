import GatewayTestSupport
import Logging

@testable import GatewayCore

/// A processor over in-memory fakes on a manual clock: the state store (with its windows), the
/// streams, the Bot API and a scripted service. `post` is a webhook request; `work` plays a
/// stream worker over everything waiting, in order.
final class TestGateway {
    let clock: ManualClock
    let log = RecordingLog()
    let state: InMemoryStateStore
    let streams: InMemoryStreams
    let outbound: InMemoryOutbound
    let botAPI: RecordingBotAPI
    let services: ScriptedServiceClient
    let processor: UpdateProcessor
    let tokens = ClaimTokens(prefix: "t")
    let secret = "s3cret"
    var outgoing: (any OutgoingLimiter)?

    init(
        settings: UpdateProcessor.Settings? = nil, policy: StatePolicy = .testing,
        services: ScriptedServiceClient = ScriptedServiceClient(answering: #"{"actions":[]}"#), clock: ManualClock = ManualClock()
    ) {
        self.clock = clock
        self.services = services
        botAPI = RecordingBotAPI(clock: clock)
        let settings =
            settings ?? UpdateProcessor.Settings(secrets: [Secret("s3cret")], maxBodyBytes: 65_536, queue: QueueSettings(partitions: 4, workers: 4))
        state = InMemoryStateStore(policy: policy, clock: clock)
        streams = InMemoryStreams(settings: settings.queue, policy: policy, clock: clock)
        outbound = InMemoryOutbound(store: state, streams: streams)
        processor = UpdateProcessor(settings: settings, clock: clock.gatewayClock, newInternalUserID: { "fresh-id" })
    }

    var dependencies: ThreadDependencies {
        ThreadDependencies(
            state: state, services: services, botAPI: botAPI, outgoing: outgoing ?? state, queue: streams, outbound: outbound, tokens: tokens)
    }

    func head(method: String = "POST", secret: String? = "s3cret", length: Int? = nil, requestID: String = "req-1") -> WebhookHead {
        WebhookHead(method: method, secretToken: secret.map { Array($0.utf8) }, contentLength: length, requestID: requestID, acceptedAt: clock.now)
    }

    /// A webhook request: admitted, then handled.
    func post(_ body: String, head: WebhookHead? = nil) -> WebhookResponse {
        post(Array(body.utf8), head: head)
    }

    func post(_ body: [UInt8], head: WebhookHead? = nil) -> WebhookResponse {
        let head = head ?? self.head()
        return processor.admit(head, logger: log.logger()) ?? processor.handle(head, body: body, with: dependencies, logger: log.logger())
    }

    /// The Bot API calls made, as methods' calls.
    var sent: [BotCall] { botAPI.calls }

    /// Plays a stream worker: takes every partition's entries in order, as the workers do, until
    /// nothing is left (or `rounds` passes). Returns what each entry came to.
    @discardableResult
    func work(rounds: Int = 20) -> [String] {
        let workers = StreamWorkers(
            settings: processor.settings.queue, processes: 1, processor: processor, clock: clock.gatewayClock, logger: log.logger(), prefix: "test")
        var results: [String] = []
        for _ in 0..<rounds {
            var worked = false
            for partition in 0..<processor.settings.queue.partitions {
                while let entry = try? streams.readNew(partition: partition, worker: "test", count: 1, blockMilliseconds: 0).first {
                    worked = true
                    results.append(workers.workOnce(entry, store: streams, dependencies: dependencies, logger: log.logger()))
                }
            }
            if !worked { break }
        }
        return results
    }
}
