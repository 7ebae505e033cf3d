import Foundation
import GatewayCore
import GatewayHTTP
import Testing

@testable import GatewayRedis

#if canImport(Glibc)
import Glibc
#endif

/// Redis Cluster's key slots and answers, as the cluster-aware client reads them.
@Suite struct ClusterSlotsTests {
    @Test func slotsAreRedisClustersCRC16OfTheHashTag() {
        // The CRC16/XMODEM check value, and slots the Redis Cluster specification gives.
        #expect(ClusterSlots.crc16(Array("123456789".utf8)[...]) == 0x31C3)
        #expect(ClusterSlots.slot(of: Array("foo".utf8)) == 12182)
        #expect(ClusterSlots.slot(of: Array("{user1000}.following".utf8)) == ClusterSlots.slot(of: Array("user1000".utf8)))
        #expect(ClusterSlots.slot(of: Array("foo{}{bar}".utf8)) == ClusterSlots.slot(of: Array("foo{}{bar}".utf8)), "an empty tag: the whole key")
        #expect(ClusterSlots.hashTag(Array("foo{}{bar}".utf8)[...]) == Array("foo{}{bar}".utf8)[...])
        #expect(ClusterSlots.hashTag(Array("{tg:42}:session".utf8)[...]) == Array("tg:42".utf8)[...])
        #expect(ClusterSlots.slot(of: Array("{tg:42}:session".utf8)) == ClusterSlots.slot(of: Array("{tg:42}:lease".utf8)))
    }

    @Test func eachCommandIsRoutedByItsKey() {
        func key(_ words: String...) -> String? { ClusterSlots.key(of: words.map { Array($0.utf8) }).map { String(decoding: $0, as: UTF8.self) } }
        #expect(key("EVALSHA", "abc", "2", "{tg:1}:a", "{tg:1}:b", "x") == "{tg:1}:a")
        #expect(key("EVALSHA", "abc", "0", "x") == nil)
        #expect(key("FCALL", "begin_0123456789abcdef", "2", "{tg:1}:a", "{tg:1}:b", "x") == "{tg:1}:a")
        #expect(key("FCALL", "begin_0123456789abcdef", "0", "x") == nil)
        #expect(key("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('x', function() return 1 end)") == nil)
        #expect(key("XREADGROUP", "GROUP", "workers", "w1", "COUNT", "1", "BLOCK", "5", "STREAMS", "{tgq:3}:stream", ">") == "{tgq:3}:stream")
        #expect(key("XLEN", "{tgq:3}:stream") == "{tgq:3}:stream")
        #expect(key("TIME") == nil)
        #expect(key("PING") == nil)
        #expect(key("SCRIPT", "LOAD", "return 1") == nil)
        #expect(key("XGROUP", "CREATE", "{tgq:3}:stream", "workers", "0", "MKSTREAM") == "{tgq:3}:stream")
    }

    @Test func redirectionsAndTheSlotMapAreRead() {
        #expect(ClusterRedirect("MOVED 3999 127.0.0.1:6381") == .moved(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRedirect("ASK 3999 10.0.0.2:7000") == .ask(slot: 3999, to: .init(host: "10.0.0.2", port: 7000)))
        #expect(ClusterRedirect("TRYAGAIN Multiple keys request during rehashing of slot") == .retry)
        #expect(ClusterRedirect("CLUSTERDOWN The cluster is down") == .retry)
        #expect(ClusterRedirect("ERR unknown command") == nil)
        #expect(ClusterRedirect("MOVED x y") == nil)
        let reply = RedisReply.array([
            .array([
                .integer(0), .integer(5460), .array([.string(Array("127.0.0.1".utf8)), .integer(7000), .string(Array("id1".utf8))]),
                .array([.string(Array("127.0.0.1".utf8)), .integer(7003), .string(Array("id4".utf8))]),
            ]),
            .array([.integer(5461), .integer(16383), .array([.string(Array("127.0.0.1".utf8)), .integer(7001)])]),
        ])
        var map = ClusterSlots.parse(reply)
        #expect(map?.known == 16384)
        #expect(map?.nodes.count == 3)
        #expect(map?.masters.count == 2)
        #expect(map?[5460] == .init(host: "127.0.0.1", port: 7000))
        #expect(map?.replica(of: 5460) == .init(host: "127.0.0.1", port: 7003))
        #expect(map?[5461] == .init(host: "127.0.0.1", port: 7001))
        #expect(map?.replica(of: 5461) == nil)
        // 7000 died and its replica answered: its slots are the replica's.
        map?.promote(.init(host: "127.0.0.1", port: 7000), to: .init(host: "127.0.0.1", port: 7003))
        #expect(map?[0] == .init(host: "127.0.0.1", port: 7003))
        #expect(map?[5460] == .init(host: "127.0.0.1", port: 7003))
        #expect(map?[5461] == .init(host: "127.0.0.1", port: 7001))
        #expect(ClusterSlots.parse(.array([])) == nil)
    }
}

/// The gateway on a real local Redis Cluster (3 masters, 3 replicas), through nginx.
@Suite(.serialized) struct RedisClusterTests {
    static func update(_ id: Int, user: Int64, text: String = "/definitely_unknown") -> String {
        RedisStateThroughNginxTests.command(id, user: user, text: text)
    }

    private func withCluster(
        environment: [String: String] = [:], standins: Bool = false, _ body: (LocalStack, RedisCluster) throws -> Void
    ) throws {
        let cluster = try RedisCluster()
        do {
            let stack = try LocalStack(
                processes: 2, threads: 4, standins: standins, extraEnvironment: cluster.gatewayEnvironment.merging(environment) { _, new in new })
            do {
                try body(stack, cluster)
                try stack.stop()
            } catch {
                try? stack.stop()
                throw error
            }
            try cluster.stop()
        } catch {
            try? cluster.stop()
            throw error
        }
    }

    @Test func theGatewayPathRunsOnTheClusterAndNoMasterServesMoreThanHalf() throws {
        try withCluster(environment: ["RATE_LIMIT_REQUESTS": "1", "RATE_LIMIT_WINDOW": "60"]) { stack, cluster in
            for port in cluster.masterPorts() { try cluster.cli(port, "CONFIG", "RESETSTAT") }
            // 300 users, one update each: every one answered by the gateway itself.
            let users = (1...300).map { Int64(6_000_000 + $0) }
            for (index, user) in users.enumerated() {
                let response = try stack.post(Self.update(index + 1, user: user))
                #expect(response.status == 200)
                #expect(String(decoding: response.body, as: UTF8.self).contains("sendMessage"), "user \(user)")
            }
            // Redelivery of the first update: remembered (dedupe), so nothing is sent again.
            #expect(try stack.post(Self.update(1, user: users[0])).body.isEmpty)
            // A second update of the same user within the window: rate limited.
            let limited = try stack.post(Self.update(10_001, user: users[1]))
            #expect(String(decoding: limited.body, as: UTF8.self).contains("too fast"))
            // The state lives on the master of each user's slot.
            let user = users[2]
            let port = try cluster.master(ofSlot: try cluster.slot(of: "{tg:\(user)}"))
            #expect(try cluster.cli(port, "EXISTS", "{tg:\(user)}:pacing") == "(integer) 1")

            let calls = try cluster.masterPorts().map { try cluster.commandCalls(port: $0) }
            let total = calls.reduce(0, +)
            print("cluster: commands per master \(calls) of \(total)")
            #expect(calls.count == 3 && total >= 300)
            #expect(calls.allSatisfy { Double($0) <= Double(total) / 2 }, "no master serves more than half: \(calls)")
            #expect(!stack.gatewayLog.contains("dependency failing"), "no update was handled without Redis")
        }
    }

    @Test func queueModeProcessesEveryUpdateOnceOnTheCluster() throws {
        try withCluster(environment: ["DELIVERY_MODE": "queue", "RATE_LIMIT_REQUESTS": "100"], standins: true) { stack, cluster in
            try waitUntil("the workers hold every partition", timeout: 15) { stack.gatewayLog.contains("\"share\":8") }
            for port in cluster.masterPorts() { try cluster.cli(port, "CONFIG", "RESETSTAT") }
            let updates = (1...120).map { Self.update($0, user: Int64(6_100_000 + $0 % 40), text: "/start") }
            for update in updates { #expect(try stack.post(update).status == 200) }
            // Every answer goes through the Bot API, paced by the bot-wide budget (30 a second).
            try waitUntil("every queued update is processed and answered", timeout: 30) {
                stack.serviceRequests().filter { $0.service == "user_profile" }.count >= 120
                    && stack.botAPICalls().filter { $0.method == "sendMessage" }.count >= 120
            }
            let calls = try cluster.masterPorts().map { commandCalls(inCommandstats: try cluster.cli($0, "INFO", "commandstats")) }
            let scripts = calls.map { $0["evalsha"] ?? 0 }
            let total = calls.map { $0.values.reduce(0, +) }
            print(
                "queue mode on the cluster, 120 updates answered through the Bot API (budget 30/s): scripts per master \(scripts) "
                    + "(\(String(format: "%.1f", Double(scripts.reduce(0, +)) / 120)) an update, idle heartbeats included); all commands per master \(total)"
            )
            #expect(total.allSatisfy { Double($0) <= Double(total.reduce(0, +)) / 2 }, "no master serves more than half: \(total)")
            sleep(1)
            let ids = stack.serviceRequests().compactMap { $0.request["update_id"] as? Int }
            #expect(ids.count == 120 && Set(ids).count == 120, "each update once: \(ids.count) calls, \(Set(ids).count) distinct")
            #expect(!stack.gatewayLog.contains("dependency failing"))
        }
    }

    @Test func aSlotMovedToAnotherMasterOrBeingMigratedIsFollowed() throws {
        try withCluster { stack, cluster in
            // The gateway learns the slot map with its first requests.
            for id in 1...20 { #expect(try stack.post(Self.update(id, user: Int64(6_200_000 + id))).status == 200) }
            let masters = cluster.masterPorts()
            let ids = Dictionary(uniqueKeysWithValues: cluster.view(from: masters[0]).map { ($0.port, $0.id) })

            // MOVED: an empty slot reassigned to another master.
            let moved: Int64 = 6_299_001
            let slot = try cluster.slot(of: "{tg:\(moved)}")
            let source = try cluster.master(ofSlot: slot)
            let target = try #require(masters.first { $0 != source })
            try cluster.moveSlot(slot, from: source, to: target, ids: ids)
            #expect(try stack.post(Self.update(100, user: moved)).status == 200)
            #expect(try cluster.cli(target, "EXISTS", "{tg:\(moved)}:pacing") == "(integer) 1", "the state went to the new master")

            // A slot being migrated: a new user's first update touches several keys that exist
            // on neither node, which Redis refuses with TRYAGAIN until the migration ends (its
            // multi-key rule); the gateway retries briefly, then answers without Redis. Once the
            // slot has moved, the user's updates are processed on the new master.
            let migrating: Int64 = 6_299_002
            let migratingSlot = try cluster.slot(of: "{tg:\(migrating)}")
            let from = try cluster.master(ofSlot: migratingSlot)
            let to = try #require(masters.first { $0 != from })
            try cluster.startMigration(migratingSlot, from: from, to: to, ids: ids)
            #expect(try stack.post(Self.update(101, user: migrating)).status == 200, "answered during the migration")
            try cluster.finishMigration(migratingSlot, from: from, to: to, ids: ids)
            #expect(try stack.post(Self.update(102, user: migrating)).status == 200)
            #expect(try cluster.cli(to, "EXISTS", "{tg:\(migrating)}:pacing") == "(integer) 1", "processed on the new master")
            #expect(try stack.post(Self.update(102, user: migrating)).body.isEmpty, "and remembered there (dedupe)")
        }
    }

    @Test func aReplicaAnswersAScriptCallWithMOVEDToItsMaster() throws {
        // What a failover's first second relies on: a replica not promoted yet answers a call
        // for its master's slots with MOVED, which the routing follows or fails on at once. It
        // is never sent the library (which it would refuse with READONLY, every call).
        let cluster = try RedisCluster()
        defer { try? cluster.stop() }
        let key = "{replica-test}:value"
        let master = try cluster.master(ofSlot: try cluster.slot(of: key))
        let replica = try #require(
            cluster.nodes.map(\.port).first { port in
                (try? cluster.cli(port, "INFO", "replication"))?.contains("master_port:\(master)") == true
            })
        let settings = GatewayConfig.RedisSettings(
            host: "127.0.0.1", port: replica, socket: nil, password: nil, database: 0, connectTimeoutSeconds: 1, commandTimeoutSeconds: 1)
        let node = RedisNode(settings: .init(settings), clock: { DispatchTime.now().uptimeNanoseconds })
        let setting = RedisScript(name: "replica_test_set", body: "return redis.call('SET', KEYS[1], ARGV[1])")
        let reply = try node.evaluate(ScriptCall(setting, keys: [key], arguments: [Array("x".utf8)]))
        guard case .error(let message) = reply, case .moved(_, let target)? = ClusterRedirect(message) else {
            Issue.record("\(reply)")
            return
        }
        #expect(target.port == master)
        #expect(try cluster.cli(replica, "FUNCTION", "LIST") == "(empty array)", "no library sent to the replica")
    }

    @Test func aSessionsInternalIDIsRecordedOnTheCluster() throws {
        // The record's key (`tgi:{ID}`) is another slot's than the session's: in a cluster it is
        // written by a command of its own before the finish, never in the finish's call
        // (CROSSSLOT).
        let cluster = try RedisCluster()
        defer { try? cluster.stop() }
        let state = StoreFixture.store(config: cluster.clientSettings)
        let outbound = RedisOutboundStore(store: state, partitions: 2)
        func begin(_ update: Int64) throws -> (Claim, Session)? {
            let request = BeginRequest(updateID: update, subject: .user(9), needsSession: true, newInternalUserID: "internal-9", token: "t\(update)")
            guard case .proceed(let claim?, let session?, _, _) = try state.begin(request, deadline: .distantFuture) else { return nil }
            return (claim, session)
        }
        let (claim, session) = try #require(try begin(1))
        #expect(session.needsIndex)
        #expect(try cluster.slot(of: OutboundKeys.internalUser("internal-9")) != (try cluster.slot(of: "{tg:9}")))
        var completion = Completion(claim: claim)
        completion.indexedInternalUserID = "internal-9"
        _ = try state.finish(completion, deadline: .distantFuture)
        #expect(try outbound.resolve(internalUserIDs: ["internal-9"], deadline: .distantFuture) == ["internal-9": 9])
        let (_, later) = try #require(try begin(2))
        #expect(!later.needsIndex, "recorded: not again until half a session's life has passed")
    }

    @Test func aCommandForASlotBeingMigratedFollowsASK() throws {
        let cluster = try RedisCluster()
        defer { try? cluster.stop() }
        let connection = RedisConnection(settings: .init(cluster.clientSettings), clock: { DispatchTime.now().uptimeNanoseconds })
        let key = "{ask-test}:value"
        #expect(try connection.command("SET", key, "before") == .status("OK"))
        let masters = cluster.masterPorts()
        let ids = Dictionary(uniqueKeysWithValues: cluster.view(from: masters[0]).map { ($0.port, $0.id) })
        let slot = try cluster.slot(of: key)
        let from = try cluster.master(ofSlot: slot)
        let to = try #require(masters.first { $0 != from })
        try cluster.startMigration(slot, from: from, to: to, ids: ids)
        // A key still on the source is served there; a new one is created on the target (ASK).
        #expect(try connection.command("GET", key) == .string(Array("before".utf8)))
        let fresh = "{ask-test}:fresh"
        #expect(try connection.command("SET", fresh, "new") == .status("OK"))
        #expect(try cluster.cli(to, "CLUSTER", "COUNTKEYSINSLOT", "\(slot)") == "(integer) 1", "created on the importing node")
        #expect(try connection.command("GET", fresh) == .string(Array("new".utf8)), "and read from there")
        // A script call follows ASK the same way: `ASKING`, then the call, nothing between.
        let setting = RedisScript(name: "ask_test_set", body: "return redis.call('SET', KEYS[1], ARGV[1])")
        #expect(try connection.evaluate(setting, keys: ["{ask-test}:scripted"], arguments: [Array("by a script".utf8)]) == .status("OK"))
        #expect(try cluster.cli(to, "CLUSTER", "COUNTKEYSINSLOT", "\(slot)") == "(integer) 2", "the script's key created on the importing node")
        // The migration finishes: the source's key moves, and the client follows MOVED.
        try cluster.cli(from, "MIGRATE", "127.0.0.1", "\(to)", "", "0", "5000", "KEYS", key)
        try cluster.finishMigration(slot, from: from, to: to, ids: ids)
        #expect(try connection.command("GET", key) == .string(Array("before".utf8)))
    }

    @Test func withWaitReplicasNoAcknowledgedQueuedUpdateIsLostWhenAMasterDies() throws {
        // No bot-wide pacing: the test waits for processing, not for 30 sends a second.
        let environment = [
            "DELIVERY_MODE": "queue", "REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT": "0.2", "RATE_LIMIT_REQUESTS": "100",
            "OUTGOING_PER_SECOND": "0",
        ]
        try withCluster(environment: environment, standins: true) { stack, cluster in
            var acknowledged: [Int] = []
            var refused = 0
            var victim = 0
            let started = monotonicNow()
            var id = 0
            while (monotonicNow() - started) < 6 {
                id += 1
                if victim == 0, (monotonicNow() - started) > 2 {
                    victim = try #require(cluster.masterPorts().first)
                    cluster.kill(port: victim)
                }
                let status = (try? stack.post(Self.update(id, user: Int64(6_500_000 + id), text: "/start")))?.status
                if status == 200 { acknowledged.append(id) } else { refused += 1 }
            }
            try waitUntil("a replica is promoted", timeout: 15) { cluster.hasReplaced(master: victim) }
            var processed = Set<Int>()
            let waited: Void? = try? waitUntil("every acknowledged update is processed", timeout: 40) {
                processed = Set(stack.serviceRequests().compactMap { $0.request["update_id"] as? Int })
                return Set(acknowledged).isSubset(of: processed)
            }
            let lost = Set(acknowledged).subtracting(processed)
            print(
                "cluster failover, REDIS_WAIT_REPLICAS=1: \(id) sent, \(acknowledged.count) acknowledged, \(refused) answered 503, "
                    + "\(lost.count) acknowledged and lost, \(stack.serviceRequests().count - processed.count) processed twice")
            #expect(waited != nil && lost.isEmpty, "acknowledged but never processed: \(lost.sorted().prefix(10))")
            #expect(acknowledged.count > 100)
            // Telegram delivers an acknowledged update again: a duplicate, also answered only once
            // the replicas have caught up, and not processed again.
            let again = try #require(acknowledged.last)
            let calls = stack.serviceRequests().count
            #expect(try stack.post(Self.update(again, user: Int64(6_500_000 + again), text: "/start")).status == 200)
            sleep(1)
            #expect(stack.serviceRequests().count == calls)
        }
    }

    @Test func aMasterKilledUnderLoadIsReplacedAndTheGatewayAnswersThroughout() throws {
        try withCluster(environment: ["RATE_LIMIT_REQUESTS": "100"]) { stack, cluster in
            let loadtest = try stack.startLoadtest(seconds: 8)
            sleep(2)
            let victim = try #require(cluster.masterPorts().first)
            let killedAt = monotonicNow()
            cluster.kill(port: victim)
            do {
                // Failed over when every node that is up serves again: the first to hear of the
                // promotion can say so up to a second before the last stops answering CLUSTERDOWN,
                // and no client is served before that.
                try waitUntil("a replica is promoted and every node serves", timeout: 15) {
                    cluster.hasReplaced(master: victim) && cluster.isServing
                }
            } catch {
                Issue.record("no promotion: \(cluster.masterPorts()) \(cluster.view(from: cluster.masterPorts().first ?? 0))")
                throw error
            }
            let promotedAt = monotonicNow()
            // Back to normal: an update for a user of the promoted master's slots is handled with Redis.
            let promoted = Set(cluster.masterPorts())
            var user: Int64 = 6_400_000
            var recovered: Double?
            try waitUntil("the gateway uses the promoted master", timeout: 10) {
                user += 1
                guard let slot = try? cluster.slot(of: "{tg:\(user)}"), let port = try? cluster.master(ofSlot: slot), promoted.contains(port)
                else { return false }
                // When the gateway was back: a probe sent then was handled with Redis (the answer
                // itself waits behind the load test's requests).
                let sentAt = monotonicNow()
                guard (try? stack.post(Self.update(Int(user), user: user)))?.status == 200,
                    (try? cluster.cli(port, "EXISTS", "{tg:\(user)}:pacing")) == "(integer) 1"
                else { return false }
                recovered = sentAt
                return true
            }
            let summary = try stack.finishLoadtest(loadtest)
            let failover = promotedAt - killedAt
            let recovery = try #require(recovered) - killedAt
            print(
                "cluster failover: promoted and every node serving after \(Int(failover * 1000)) ms, the gateway back on Redis after \(Int(recovery * 1000)) ms; "
                    + summary.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(summary.contains(" non2xx=0 "), "fail-open: every request answered: \(summary)")
            #expect(summary.contains(" socket_errors=0 "), "\(summary)")
            #expect(recovery <= failover + 1, "back to normal within the failover time plus one second")
            // The updates of the other masters' slots succeeded between the failing ones: no
            // recovery until a second has passed without a failure, then one line per process
            // (an update a second after the load test makes sure a second has passed).
            usleep(1_100_000)
            #expect(try stack.post(Self.update(Int(user) + 1, user: user + 1)).status == 200)
            let log = stack.gatewayLog
            let recoveries = log.components(separatedBy: "dependency recovered").count - 1
            #expect((1...4).contains(recoveries), "one recovery per process: \(recoveries)")
            #expect((1...4).contains(log.components(separatedBy: "dependency failing").count - 1), "warnings are rate-limited per process")
        }
    }
}
