import Foundation
import GatewayCore
import GatewayRedis
import GatewayTestSupport
import Testing

/// The Lua scripts themselves, run with `redis-cli --eval` against a real redis-server.
/// Time-dependent cases set the bucket relative to Redis's own clock instead of sleeping.
@Suite(.serialized) struct RedisScriptTests {
    private func withFixture(_ body: (ScriptFiles) throws -> Void) throws {
        let redis = try RedisServer()
        defer { try? redis.stop() }
        try body(try ScriptFiles(redis))
    }

    @Test(arguments: TokenBucketVector.all)
    func luaBucketMatchesTheSharedVectors(vector: TokenBucketVector) throws {
        try withFixture { fixture in
            let rate = StateSubjectKeys(subject: .user(7), updateID: 1).rate
            if let start = vector.start {
                // Set the bucket relative to Redis's own clock, in Redis.
                let setup = """
                    local t = redis.call('TIME')
                    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
                    redis.call('HSET', KEYS[1], 'mt', ARGV[1], 'at', now - tonumber(ARGV[2]))
                    if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'warned', now - tonumber(ARGV[3])) end
                    return 1
                    """
                try fixture.redis.cli(
                    "EVAL", setup, "1", rate, "\(start.milliTokens)", "\(start.updatedAgo)", start.warnedAgo.map(String.init) ?? "")
            }
            let reply = try fixture.begin(user: 7, update: 1, token: "t", capacity: vector.capacity, window: vector.windowMilliseconds, needs: false)
            if vector.allowed {
                #expect(reply == ["ok"])
            } else {
                #expect(reply == ["limited", vector.warn ? "1" : "0"])
            }
            // Redis's clock moves on between setting up and running: allow 100 ms of refill.
            let left = try #require(Int64(try fixture.redis.cli("HGET", rate, "mt")))
            let slack = 100 * Int64(vector.capacity) * 1000 / vector.windowMilliseconds
            #expect(left >= vector.milliTokensAfter && left <= vector.milliTokensAfter + slack, "\(left)")
        }
    }

    @Test func secondUpdateOfAUserWaitsAndSeesTheStateTheFirstWrote() throws {
        try withFixture { fixture in
            #expect(try fixture.begin(user: 5, update: 1, token: "a", capacity: 100) == ["ok", "internal-5", "", "1"])
            let busy = try fixture.begin(user: 5, update: 2, token: "b", capacity: 100)
            #expect(busy.first == "busy")
            #expect(try fixture.finish(user: 5, update: 1, token: "a", state: #"{"flow":"signup","step":2}"#) == ["1"])
            #expect(try fixture.begin(user: 5, update: 2, token: "b", capacity: 100) == ["ok", "internal-5", #"{"flow":"signup","step":2}"#, "0"])
            // Another user is never held up.
            #expect(try fixture.begin(user: 6, update: 3, token: "c", capacity: 100).first == "ok")
        }
    }

    @Test func doneUpdateIsDuplicateAndHeldUpdateIsInProgressUntilItsLeaseExpires() throws {
        try withFixture { fixture in
            #expect(try fixture.begin(user: 5, update: 1, token: "a", capacity: 100).first == "ok")
            let held = try fixture.begin(user: 5, update: 1, token: "b", capacity: 100)
            #expect(held.first == "in_progress")
            #expect((Int(held.last ?? "") ?? 0) > 9000)
            // The responder holding it dies: its leases run out on Redis's clock.
            let keys = StateSubjectKeys(subject: .user(5), updateID: 1)
            try fixture.redis.cli("PEXPIRE", keys.update, "1")
            try fixture.redis.cli("PEXPIRE", keys.lease, "1")
            try waitUntil("the leases expire") { (try? fixture.redis.cli("EXISTS", keys.update, keys.lease)) == "0" }
            #expect(try fixture.begin(user: 5, update: 1, token: "b", capacity: 100).first == "ok")
            // A finish with a lost lease changes nothing.
            #expect(try fixture.finish(user: 5, update: 1, token: "a", state: "{}") == ["0"])
            #expect(try fixture.finish(user: 5, update: 1, token: "b") == ["1"])
            #expect(try fixture.begin(user: 5, update: 1, token: "c", capacity: 100) == ["duplicate"])
            #expect((Int(try fixture.redis.cli("TTL", keys.update)) ?? 0) > 3500)
        }
    }

    @Test func everyKeyOfAnUpdateSharesOneClusterSlot() throws {
        try withFixture { fixture in
            let keys = StateSubjectKeys(subject: .user(123_456_789), updateID: 42)
            let slots = try [keys.update, keys.rate, keys.session, keys.lease].map { try fixture.redis.cli("CLUSTER", "KEYSLOT", $0) }
            #expect(Set(slots).count == 1)
            let chat = StateSubjectKeys(subject: .chat(-100_123), updateID: 1)
            #expect(chat.session == "{tgc:-100123}:session")
        }
    }
}
