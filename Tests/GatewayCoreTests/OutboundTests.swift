import GatewayTestSupport
import Logging
import Testing

@testable import GatewayCore

/// The outbound API and its delivery with in-memory fakes: a request stored once and fanned
/// out into each recipient's outbox, sent in order per chat, each recipient's outcome counted.
@Suite struct OutboundTests {
    static let token = "service-token-0123456789"
    static let previous = "previous-token-0123456789"

    let gateway = TestGateway(
        settings: .init(secrets: [Secret("s3cret")], maxBodyBytes: 65_536, queue: QueueSettings(partitions: 4, workers: 4, maxAttempts: 3)),
        services: ScriptedServiceClient(answering: #"{"actions":[{"type":"send_message","text":"hi"}]}"#))

    func api(tokens: [String] = [token], maxBacklog: Int = 100_000) -> OutboundAPI {
        OutboundAPI(
            tokens: tokens.map { Secret($0) }, maxBacklog: maxBacklog, retryAfterSeconds: 7, partitions: 4, sessionTTLSeconds: 86_400,
            deadlineSeconds: 25, clock: gateway.clock.gatewayClock)
    }

    func head(method: String = "POST", token: String? = token, length: Int? = nil) -> WebhookHead {
        WebhookHead(
            method: method, secretToken: nil, contentLength: length, requestID: "svc-1", acceptedAt: gateway.clock.now,
            authorization: token.map { Array("Bearer \($0)".utf8) })
    }

    /// A request through the API as the responder serves it: admitted, then handled.
    func send(_ body: String, path: String = OutboundAPI.sendPath, head: WebhookHead? = nil, api: OutboundAPI? = nil) -> WebhookResponse {
        let api = api ?? self.api()
        let head = head ?? self.head(method: path == OutboundAPI.sendPath ? "POST" : "GET")
        return api.admit(head, path: path, logger: gateway.log.logger())
            ?? api.handle(head, path: path, body: Array(body.utf8), with: gateway.dependencies, logger: gateway.log.logger())
    }

    func field(_ name: String, of response: WebhookResponse) -> String? {
        let text = String(decoding: response.body, as: UTF8.self)
        guard let start = text.range(of: "\"\(name)\":") else { return nil }
        let rest = text[start.upperBound...]
        if rest.first == "\"" {
            let string = rest.dropFirst()
            return String(string[..<(string.firstIndex(of: "\"") ?? string.endIndex)])
        }
        return String(rest[..<(rest.firstIndex { $0 == "," || $0 == "}" } ?? rest.endIndex)])
    }

    func status(_ id: String) -> OutboundStatus? {
        OutboundJobID(id).flatMap { try? gateway.outbound.status(of: $0, deadline: .distantFuture) }
    }

    func texts(to chat: Int64) -> [String] {
        gateway.botAPI.calls(to: chat).map { call in
            let text = String(decoding: call.parameters, as: UTF8.self)
            guard let start = text.range(of: #""text":""#), let end = text[start.upperBound...].firstIndex(of: "\"") else { return "" }
            return String(text[start.upperBound..<end])
        }
    }

    // MARK: The request

    @Test(arguments: [
        ("not json", "the body is not JSON"),
        (#"[1,2]"#, "the body must be a JSON object"),
        (#"{"actions":[{"type":"send_message","text":"x"}]}"#, "give chat_ids or internal_user_ids"),
        (#"{"chat_ids":[1],"internal_user_ids":["a"],"actions":[{"type":"send_message","text":"x"}]}"#, "not both"),
        (#"{"chat_ids":[],"actions":[{"type":"send_message","text":"x"}]}"#, "chat_ids is empty"),
        (#"{"chat_ids":["1"],"actions":[{"type":"send_message","text":"x"}]}"#, "chat_ids[0]: expected an integer"),
        (#"{"chat_ids":[1]}"#, "actions is missing"),
        (#"{"chat_ids":[1],"actions":[{"type":"edit_message","text":"x"}]}"#, "actions[0].type: 'edit_message' is not sent outbound"),
        (#"{"chat_ids":[1],"actions":[{"type":"send_message"}]}"#, "actions[0].text is missing or empty"),
        (#"{"chat_ids":[1],"actions":[{"type":"send_message","text":"x","keyboard":[[]]}]}"#, "actions[0].keyboard"),
        (#"{"chat_ids":[1],"actions":[{"type":"send_message","text":"x"}],"idempotency_key":""}"#, "idempotency_key is 1-128 bytes"),
    ])
    func oddBodiesGetAReasonAndStoreNothing(body: String, reason: String) {
        let response = send(body)
        #expect(response.status == 400)
        #expect(field("error", of: response)?.contains(reason) == true, "\(String(decoding: response.body, as: UTF8.self))")
        #expect(gateway.outbound.jobCount == 0)
        #expect(gateway.streams.entries(0).isEmpty && gateway.streams.entries(1).isEmpty)
    }

    @Test func tenThousandAndOneRecipientsAreRefusedAndTenThousandAccepted() {
        let ids = (1...10_001).map(String.init).joined(separator: ",")
        let over = send(#"{"chat_ids":[\#(ids)],"actions":[{"type":"send_message","text":"x"}]}"#)
        #expect(over.status == 400)
        #expect(field("error", of: over) == "chat_ids has 10001 ids; at most 10000 in one request")
        let most = (1...10_000).map(String.init).joined(separator: ",")
        let accepted = send(#"{"chat_ids":[\#(most)],"actions":[{"type":"send_message","text":"x"}]}"#)
        #expect(accepted.status == 202)
        #expect(field("recipients", of: accepted) == "10000")
    }

    @Test func aBodyOverTheLimitIs413BeforeAndAfterReading() {
        let declared = api().admit(head(length: OutboundAPI.maxBodyBytes + 1), path: OutboundAPI.sendPath, logger: gateway.log.logger())
        #expect(declared?.status == 413)
        let text = String(repeating: "a", count: OutboundAPI.maxBodyBytes)
        #expect(send(#"{"chat_ids":[1],"actions":[{"type":"send_message","text":"\#(text)"}]}"#).status == 413)
        #expect(gateway.outbound.jobCount == 0)
    }

    // MARK: Authentication

    @Test func tokensAreCheckedAndNeverLogged() {
        let body = #"{"chat_ids":[5],"actions":[{"type":"send_message","text":"x"}]}"#
        let missing = send(body, head: head(token: nil))
        #expect(missing.status == 401)
        #expect(missing.headers.contains { $0.name == "WWW-Authenticate" && $0.value == "Bearer" })
        #expect(send(body, head: head(token: "wrong-token-0123456789")).status == 401)
        #expect(send(body, head: head(token: Self.previous)).status == 401)
        // During a rotation both work; after it the previous one no longer does.
        let rotating = api(tokens: [Self.token, Self.previous])
        #expect(send(body, head: head(token: Self.previous), api: rotating).status == 202)
        #expect(send(body, head: head(token: Self.token), api: rotating).status == 202)
        #expect(gateway.outbound.jobCount == 2)
        #expect(gateway.log.joined.contains("missing or wrong token"))
        #expect(!gateway.log.joined.contains("wrong-token") && !gateway.log.joined.contains(Self.previous))
    }

    @Test func theAPIIsOffWithoutATokenAndTakesOnlyItsMethods() {
        let off = send(#"{}"#, api: api(tokens: []))
        #expect(off.status == 404)
        let get = send(#"{}"#, head: head(method: "GET"))
        #expect(get.status == 405)
        #expect(get.headers.contains { $0.name == "Allow" && $0.value == "POST" })
    }

    // MARK: Delivery

    @Test func everyRecipientGetsEveryMessageOnceInOrder() throws {
        let long = String(repeating: "word ", count: 1000)  // 5,000 characters: two parts
        let response = send(
            #"{"chat_ids":[11,12,-100500,12],"actions":[{"type":"send_message","text":"\#(long)"},{"type":"send_message","text":"second","keyboard":[[{"text":"Go","callback_data":"CONNECT:1"}]]}]}"#
        )
        #expect(response.status == 202)
        #expect(field("recipients", of: response) == "3")  // 12 once
        let id = try #require(field("id", of: response))
        #expect(status(id)?.pending == 3)
        gateway.work()
        for chat: Int64 in [11, 12, -100500] {
            let texts = texts(to: chat)
            #expect(texts.count == 3)
            #expect(texts.last == "second")
            #expect(texts.prefix(2).joined().count >= 4_990)
        }
        let last = String(decoding: gateway.botAPI.calls(to: 11).last?.parameters ?? [], as: UTF8.self)
        #expect(last.contains("CONNECT:1"))
        #expect(status(id) == OutboundStatus(id: OutboundJobID(id)!, recipients: 3, delivered: 3, failed: [:], unknown: 0))
        // The status endpoint gives the same counts.
        let answer = send("", path: OutboundAPI.sendPath + "/" + id)
        #expect(answer.status == 200)
        #expect(String(decoding: answer.body, as: UTF8.self).contains(#""delivered":3,"pending":0,"failed":{}"#))
        #expect(send("", path: OutboundAPI.sendPath + "/0-r00").status == 404)
        #expect(send("", path: OutboundAPI.sendPath + "/../../etc").status == 404)
    }

    @Test func aFanOutDoneAgainAddsNothingTwice() throws {
        let response = send(#"{"chat_ids":[21,22,23],"actions":[{"type":"send_message","text":"once"}]}"#)
        let id = try #require(OutboundJobID(field("id", of: response) ?? ""))
        let context = UpdateContext(
            requestID: "w", logger: gateway.log.logger(), deadline: .after(seconds: 25, from: gateway.clock.now), mayWait: true,
            clock: gateway.clock.gatewayClock)
        // A worker that died after putting the calls in the outboxes, before moving the cursor.
        let chunk = try #require(try gateway.outbound.nextRecipients(of: id, count: 200, deadline: .distantFuture))
        try gateway.outbound.keep(
            chunk.recipients.map { chat in
                (
                    StateSubject.windowOwner(of: chat),
                    [PendingSend(id: OutboundJob.sendID(job: id, index: 0, of: 1), call: chunk.templates[0].call(to: chat), pacedChatID: chat)]
                )
            }, for: id, deadline: .distantFuture)
        #expect(gateway.processor.fanOut(id, dependencies: gateway.dependencies, context: context) == .done)
        gateway.work()
        for chat: Int64 in [21, 22, 23] { #expect(texts(to: chat) == ["once"]) }
        #expect(try gateway.outbound.status(of: id, deadline: .distantFuture)?.delivered == 3)
    }

    @Test func blockedRecipientsAreRecordedAndNeverRetried() throws {
        gateway.botAPI.refuse(chat: 32, with: .rejected(status: 403, description: "Forbidden: bot was blocked by the user"))
        gateway.botAPI.refuse(chat: 33, with: .rejected(status: 400, description: "Bad Request: chat not found"))
        let response = send(
            #"{"chat_ids":[31,32,33],"actions":[{"type":"send_message","text":"one"},{"type":"send_message","text":"two"}]}"#)
        let id = try #require(field("id", of: response))
        gateway.work()
        gateway.clock.advance(milliseconds: 60_000)
        gateway.work()
        #expect(texts(to: 31) == ["one", "two"])
        // One attempt each: the second message is not tried after the refusal.
        #expect(gateway.botAPI.calls(to: 32).count == 1)
        #expect(gateway.botAPI.calls(to: 33).count == 1)
        #expect(status(id)?.delivered == 1)
        #expect(status(id)?.failed == ["blocked": 1, "chat_not_found": 1])
        #expect(status(id)?.pending == 0)
    }

    @Test func serverErrorsAreRetriedThenGivenUpWithAReason() throws {
        gateway.botAPI.refuse(chat: 41, with: .server(status: 502))
        let response = send(#"{"chat_ids":[41,42],"actions":[{"type":"send_message","text":"x"}]}"#)
        let id = try #require(field("id", of: response))
        for _ in 0..<10 {
            gateway.work()
            gateway.clock.advance(milliseconds: 31_000)
        }
        #expect(gateway.botAPI.calls(to: 41).count == 3)  // maxAttempts
        #expect(status(id)?.failed == ["bot_api_server_error": 1])
        #expect(status(id)?.delivered == 1)
        #expect(gateway.streams.deadCalls.count == 1)
    }

    @Test func aRetryAfterPausesEverySendOfTheBot() {
        gateway.botAPI.failNext([.rateLimited(retryAfterSeconds: 1)])
        _ = send(#"{"chat_ids":[51,52,53],"actions":[{"type":"send_message","text":"x"}]}"#)
        gateway.work()
        // The 429 was the first call; every later call (the retry and the other recipients,
        // through the store every process shares) waited at least the second it asked for.
        let times = gateway.botAPI.times
        #expect(times.count == 4)
        #expect(times.dropFirst().allSatisfy { $0 - times[0] >= 1_000 })
        for chat: Int64 in [51, 52, 53] { #expect(texts(to: chat).last == "x") }
    }

    @Test func theSameIdempotencyKeyIsOneRequest() throws {
        let body = #"{"chat_ids":[61],"actions":[{"type":"send_message","text":"x"}],"idempotency_key":"reminder-2026-12-01"}"#
        let first = send(body)
        let second = send(body)
        #expect(first.status == 202 && second.status == 202)
        #expect(field("id", of: first) == field("id", of: second))
        #expect(field("duplicate", of: second) == "true")
        gateway.work()
        #expect(texts(to: 61) == ["x"])
        #expect(field("id", of: send(body.replacingOccurrences(of: "2026-12-01", with: "2026-12-02"))) != field("id", of: first))
    }

    @Test func aFullBacklogIs503AndStoresNothing() {
        let api = api(maxBacklog: 4)
        #expect(send(#"{"chat_ids":[1,2,3],"actions":[{"type":"send_message","text":"x"}]}"#, api: api).status == 202)
        let full = send(#"{"chat_ids":[4,5],"actions":[{"type":"send_message","text":"x"}]}"#, api: api)
        #expect(full.status == 503)
        #expect(full.headers.contains { $0.name == "Retry-After" && $0.value == "7" })
        #expect(gateway.outbound.jobCount == 1)
        gateway.work()
        // Delivered recipients leave the backlog.
        #expect(send(#"{"chat_ids":[4,5],"actions":[{"type":"send_message","text":"x"}]}"#, api: api).status == 202)
    }

    @Test func internalUserIDsResolveWhileTheirSessionsLive() throws {
        #expect(gateway.post(Fixtures.message(text: "hello")).status == 200)  // user 42's session, id "fresh-id"
        let response = send(#"{"internal_user_ids":["fresh-id","ghost"],"actions":[{"type":"send_message","text":"x"}]}"#)
        #expect(response.status == 202)
        #expect(field("recipients", of: response) == "1")
        #expect(String(decoding: response.body, as: UTF8.self).contains(#""unknown_internal_user_ids":["ghost"]"#))
        gateway.work()
        #expect(texts(to: 42).last == "x")
        gateway.clock.advance(milliseconds: 86_400_001)
        let expired = send(#"{"internal_user_ids":["fresh-id"],"actions":[{"type":"send_message","text":"x"}]}"#)
        #expect(expired.status == 400)
        #expect(field("error", of: expired)?.contains("has a live session") == true)
    }

    @Test func aServiceAnswerToAnotherChatReachesThatChat() {
        let gateway = TestGateway(
            services: ScriptedServiceClient(
                answering:
                    #"{"actions":[{"type":"send_message","text":"someone wants to connect","chat_id":77},{"type":"send_message","text":"sent"}]}"#))
        let response = gateway.post(Fixtures.message(text: "hello"))
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self).contains(#""chat_id":42"#))
        gateway.work()
        let other = gateway.botAPI.calls(to: 77)
        #expect(other.count == 1)
        let text = String(decoding: other.first?.parameters ?? [], as: UTF8.self)
        #expect(text.contains("someone wants to connect"))
        #expect(gateway.botAPI.calls(to: 42).isEmpty)  // its own answer went as the webhook reply
    }

    @Test func aKeysJobIDIsTheSameInEveryRelease() {
        // A service retrying with its idempotency key must find the job stored by an earlier
        // release: the id is two 64-bit FNV-1a hashes of the key, in fixed-width hex.
        #expect(FNV1a.hash("".utf8) == 0xcbf2_9ce4_8422_2325)
        #expect(FNV1a.hash("a".utf8) == 0xaf63_dc4c_8601_ec8c)
        #expect(OutboundJobID.derived(fromKey: "order-42", partitions: 4).description == "0-k7d1deb86a05662d47dfc1e759bac4d85")
        for value: UInt64 in [0, 1, 0xabc, 0x0123_4567_89ab_cdef, .max] {
            let digits = String(value, radix: 16)
            #expect(Digits.hex(value) == String(repeating: "0", count: 16 - digits.count) + digits)
        }
    }
}
