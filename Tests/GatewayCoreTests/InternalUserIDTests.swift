import GatewayRuntime
import Testing

@Suite struct InternalUserIDTests {
    @Test func aNewInternalIDIsAVersion4UUIDInLowercaseHex() {
        let hex = Set("0123456789abcdef")
        var seen = Set<String>()
        for _ in 0..<2000 {
            let id = makeInternalUserID()
            let parts = id.split(separator: "-", omittingEmptySubsequences: false)
            #expect(parts.map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            #expect(parts.joined().allSatisfy(hex.contains), "\(id)")
            #expect(parts[2].first == "4", "version: \(id)")
            #expect(parts[3].first.map { "89ab".contains($0) } == true, "variant: \(id)")
            seen.insert(id)
        }
        #expect(seen.count == 2000)
    }

    @Test func everyRandomNibbleTakesEveryValue() {
        // 122 random bits: over 2,000 ids each hex position (but the fixed ones) shows all 16 digits.
        var digits = Array(repeating: Set<Character>(), count: 36)
        for _ in 0..<2000 {
            for (index, character) in makeInternalUserID().enumerated() { digits[index].insert(character) }
        }
        let fixed: Set = [8, 13, 14, 18, 19, 23]  // the dashes, the version and the variant's digit
        for index in 0..<36 where !fixed.contains(index) { #expect(digits[index].count == 16, "position \(index)") }
        #expect(digits[19] == Set("89ab"))
    }
}
