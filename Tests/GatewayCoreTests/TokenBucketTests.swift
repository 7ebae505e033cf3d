import GatewayTestSupport
import Testing

@testable import GatewayCore

@Suite struct TokenBucketTests {
    @Test(arguments: TokenBucketVector.all)
    func sharedVectors(vector: TokenBucketVector) {
        let now: Int64 = 5_000_000
        let (after, outcome) = TokenBucket.take(
            vector.bucket(now: now), now: now, capacity: vector.capacity, windowMilliseconds: vector.windowMilliseconds)
        #expect(outcome == .init(allowed: vector.allowed, warn: vector.warn))
        #expect(after.milliTokens == vector.milliTokensAfter)
    }

    @Test func aBurstIsAllowedThenLimitedThenRefilled() {
        var bucket: TokenBucket?
        var allowed: [Bool] = []
        for _ in 0..<7 {
            let (next, outcome) = TokenBucket.take(bucket, now: 0, capacity: 5, windowMilliseconds: 1000)
            bucket = next
            allowed.append(outcome.allowed)
        }
        #expect(allowed == [true, true, true, true, true, false, false])
        // 5 per second: one token every 200 ms.
        #expect(TokenBucket.take(bucket, now: 199, capacity: 5, windowMilliseconds: 1000).1.allowed == false)
        #expect(TokenBucket.take(bucket, now: 200, capacity: 5, windowMilliseconds: 1000).1.allowed == true)
    }

    @Test func rateIsKeptOverManySmallSteps() {
        // 1 per second probed every 7 ms for 10 s: exactly 10 or 11 allowed (the first is free),
        // whatever rounding does to each step.
        var bucket: TokenBucket?
        var count = 0
        for now in stride(from: Int64(0), to: 10_000, by: 7) {
            let (next, outcome) = TokenBucket.take(bucket, now: now, capacity: 1, windowMilliseconds: 1000)
            bucket = next
            if outcome.allowed { count += 1 }
        }
        #expect((10...11).contains(count))
    }

    @Test func aFloodWarnsOncePerWindow() {
        var bucket: TokenBucket?
        var warnings = 0
        for now in stride(from: Int64(0), to: 3000, by: 10) {
            let (next, outcome) = TokenBucket.take(bucket, now: now, capacity: 1, windowMilliseconds: 1000)
            bucket = next
            if outcome.warn { warnings += 1 }
        }
        #expect(warnings == 3)
    }
}
