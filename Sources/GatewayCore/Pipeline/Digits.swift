/// Decimal digits written in place, for the numbers of the hot path (ids in Redis keys and JSON,
/// counts and lengths in Redis's protocol, tokens): a number's `description` costs several
/// hundred instructions and a String, where these write its bytes where they go. And a 64-bit
/// value's fixed-width hex, for ids and names.
package enum Digits {
    /// The most bytes a number takes: a sign and 19 digits.
    package static let maximumCount = 20

    /// Writes `value`'s digits into `buffer` at `start` (``count(_:)`` bytes, at most
    /// ``maximumCount``, must fit) and returns where they end.
    package static func write(_ value: Int64, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
        // Most are a protocol's lengths and counts, under 100.
        if value >= 0, value < 100 {
            if value < 10 {
                buffer[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value)
                return start + 1
            }
            buffer[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value / 10)
            buffer[start + 1] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value % 10)
            return start + 2
        }
        let end = start + count(value)
        var rest = value.magnitude
        var place = end
        repeat {
            place -= 1
            buffer[place] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        } while rest > 0
        if value < 0 { buffer[start] = UInt8(ascii: "-") }
        return end
    }

    /// `value` as 16 lowercase hex digits, zeros in front.
    package static func hex(_ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for place in 0..<16 { buffer[15 - place] = digits.utf8Start[Int(truncatingIfNeeded: value >> (4 * place) & 0xF)] }
            return 16
        }
    }

    /// How many bytes `value`'s digits take, its sign included.
    package static func count(_ value: Int64) -> Int {
        var count = value < 0 ? 2 : 1
        var rest = value.magnitude
        while rest >= 10 {
            count += 1
            rest /= 10
        }
        return count
    }
}
