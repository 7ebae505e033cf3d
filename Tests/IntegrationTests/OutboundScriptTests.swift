import Foundation
import GatewayCore
import GatewayRedis
import GatewayTestSupport
import Testing

/// The outbound scripts against a real redis-server, through the gateway's own adapters: a job
/// stored once within the bound, fanned out from its cursor into each recipient's outbox once,
/// each outcome counted once, internal ids resolved only while their sessions live.
@Suite(.serialized) struct OutboundScriptTests {
    static let template = CallTemplate(name: "sendMessage", parameters: Array(#"{"text":"hi"}"#.utf8))

    private func withStore(partitions: Int = 2, _ body: (StoreFixture, RedisStateStore, RedisOutboundStore) throws -> Void) throws {
        let redis = try RedisServer()
        defer { try? redis.stop() }
        let fixture = StoreFixture(redis)
        let state = fixture.store()
        try body(fixture, state, RedisOutboundStore(store: state, partitions: partitions))
    }

    private func job(_ key: String, recipients: [Int64]) -> OutboundJob {
        OutboundJob(id: .derived(fromKey: key, partitions: 2), recipients: recipients, templates: [Self.template], unknown: 1)
    }

    @Test func aJobIsStoredOnceWithinTheBoundWithItsStreamEntry() throws {
        try withStore { fixture, _, store in
            let first = job("a", recipients: [1, 2, 3])
            #expect(try store.create(first, maxBacklog: 5, deadline: .distantFuture) == .created)
            #expect(try store.create(first, maxBacklog: 5, deadline: .distantFuture) == .existing(recipients: 3))
            // The bound counts every partition's unfinished recipients.
            let other = (0..<50).map { job("b\($0)", recipients: [4, 5, 6]) }.first { $0.id.partition != first.id.partition }!
            #expect(try store.create(other, maxBacklog: 5, deadline: .distantFuture) == .full)
            #expect(try fixture.redis.cli("EXISTS", OutboundKeys(other.id).job) == "0")
            let stream = QueueKeys(partition: first.id.partition).stream
            #expect(try fixture.redis.cli("XLEN", stream) == "1")
            #expect(try fixture.redis.cli("XRANGE", stream, "-", "+").contains(first.id.description))
            #expect(try store.backlog(deadline: .distantFuture).recipients == 3)
            let status = try store.status(of: first.id, deadline: .distantFuture)
            #expect(status == OutboundStatus(id: first.id, recipients: 3, delivered: 0, failed: [:], unknown: 1))
            #expect(try store.status(of: other.id, deadline: .distantFuture) == nil)
        }
    }

    @Test func aFanOutMovesItsCursorOnceAndKeepsEachRecipientsCallsOnce() throws {
        try withStore { fixture, state, store in
            let stored = job("c", recipients: Array(1...5))
            _ = try store.create(stored, maxBacklog: 100, deadline: .distantFuture)
            let chunk = try #require(try store.nextRecipients(of: stored.id, count: 3, deadline: .distantFuture))
            #expect(chunk == OutboundChunk(cursor: 0, recipients: [1, 2, 3], templates: [Self.template]))
            let deliveries = chunk.recipients.map { chat in
                (
                    subject: StateSubject.windowOwner(of: chat),
                    calls: [
                        PendingSend(id: OutboundJob.sendID(job: stored.id, index: 0, of: 1), call: Self.template.call(to: chat), pacedChatID: chat)
                    ]
                )
            }
            try store.keep(deliveries, for: stored.id, deadline: .distantFuture)
            try store.keep(deliveries, for: stored.id, deadline: .distantFuture)  // done again after a crash
            #expect(try fixture.redis.cli("LLEN", "{tg:2}:outbox") == "1")
            #expect(try fixture.redis.cli("LINDEX", "{tg:2}:outbox", "0").contains(#"{"chat_id":2,"text":"hi"}"#))
            #expect(try fixture.redis.cli("SMEMBERS", "{tg:2}:queued") == "o")
            try store.advance(stored.id, from: 0, by: 3, deadline: .distantFuture)
            try store.advance(stored.id, from: 0, by: 3, deadline: .distantFuture)  // a stale worker's: ignored
            #expect(try store.nextRecipients(of: stored.id, count: 3, deadline: .distantFuture)?.recipients == [4, 5])
            // The outbox's first call is the job's, sent by the ordinary outbox path.
            guard case .next(let head, _) = try state.advanceOutbox(of: .user(2), after: nil, maxWaitMilliseconds: 1000, deadline: .distantFuture)
            else {
                Issue.record("the outbox is empty")
                return
            }
            #expect(OutboundJob.parse(sendID: head.id)?.job == stored.id)
        }
    }

    @Test func eachRecipientsOutcomeIsCountedOnceAndAFinishedJobLeavesTheBacklog() throws {
        try withStore { fixture, _, store in
            let stored = job("d", recipients: [1, 2, 3])
            _ = try store.create(stored, maxBacklog: 100, deadline: .distantFuture)
            try store.record(stored.id, chat: 1, outcome: .delivered, deadline: .distantFuture)
            try store.record(stored.id, chat: 1, outcome: .delivered, deadline: .distantFuture)  // a repeat
            try store.record(stored.id, chat: 2, outcome: .failed(reason: "blocked"), deadline: .distantFuture)
            try store.record(stored.id, chat: 2, outcome: .delivered, deadline: .distantFuture)  // too late: it failed
            var status = try #require(try store.status(of: stored.id, deadline: .distantFuture))
            #expect(status.delivered == 1 && status.failed == ["blocked": 1] && status.pending == 1)
            #expect(try store.backlog(deadline: .distantFuture).recipients == 1)
            #expect(try store.backlog(deadline: .distantFuture).oldestAgeMilliseconds >= 0)
            try store.record(stored.id, chat: 3, outcome: .delivered, deadline: .distantFuture)
            status = try #require(try store.status(of: stored.id, deadline: .distantFuture))
            #expect(status.pending == 0)
            #expect(try store.backlog(deadline: .distantFuture) == OutboundBacklog(recipients: 0, oldestAgeMilliseconds: 0))
            #expect(try fixture.redis.cli("ZCARD", OutboundKeys.unfinished(partition: stored.id.partition)) == "0")
        }
    }

    @Test func aJobThatExpiredUnfinishedIsForgottenByTheBacklog() throws {
        try withStore { fixture, _, store in
            let stored = job("e", recipients: [1, 2])
            _ = try store.create(stored, maxBacklog: 100, deadline: .distantFuture)
            try fixture.redis.cli("DEL", OutboundKeys(stored.id).job)
            #expect(try store.backlog(deadline: .distantFuture) == OutboundBacklog(recipients: 0, oldestAgeMilliseconds: 0))
            #expect(try store.create(job("f", recipients: Array(1...100)), maxBacklog: 100, deadline: .distantFuture) == .created)
        }
    }

    @Test func internalIDsResolveOnlyWhileTheSessionHoldsThem() throws {
        try withStore { fixture, state, store in
            guard case .proceed(let claim?, let session?, _, _) = try fixture.begin(state, user: 9, update: 1, token: "s-a") else {
                Issue.record("not claimed")
                return
            }
            #expect(session.needsIndex)
            var completion = Completion(claim: claim)
            completion.indexedInternalUserID = "internal-9"
            if fixture.redis.cluster == nil {
                // On one Redis the record is written by the finish's own call: one round trip
                // (the finish's library loaded first, by a finish that claimed nothing).
                _ = try state.finish(Completion(subject: .user(8), updateID: 1, claim: nil), deadline: .distantFuture)
                let record = #""SET" "tgi:{internal-9}" "9" "EX" "86400""#
                let commands = try fixture.redis.monitoring(until: #""FCALL" "finish_"#, record) {
                    _ = try state.finish(completion, deadline: .distantFuture)
                }
                #expect(commands.count == 1 + commands.filter { $0.contains("[0 lua]") }.count, "one command from the client: \(commands)")
                #expect(commands.contains { $0.contains("[0 lua]") && $0.contains(record) }, "\(commands)")
            } else {
                // On a cluster, by a command of its own (RedisClusterTests).
                _ = try state.finish(completion, deadline: .distantFuture)
            }
            #expect(try fixture.redis.cli("HEXISTS", "{tg:9}:session", "ix") == "1", "the session notes when")
            guard case .proceed(let again?, let later?, _, _) = try fixture.begin(state, user: 9, update: 2, token: "s-b") else {
                Issue.record("not claimed")
                return
            }
            #expect(!later.needsIndex, "recorded now: not again until half a session's life has passed")
            #expect(try store.resolve(internalUserIDs: ["internal-9", "nobody"], deadline: .distantFuture) == ["internal-9": 9])
            // The service renamed the user: the old id no longer resolves.
            _ = try state.finish(Completion(claim: again, internalUserID: "renamed-9"), deadline: .distantFuture)
            #expect(try store.resolve(internalUserIDs: ["internal-9"], deadline: .distantFuture).isEmpty)
            #expect(try fixture.redis.cli("TTL", OutboundKeys.internalUser("internal-9")) != "-1")
        }
    }
}
