/// The byte-level reading behind ``UpdateDecoder``: a document's structure checked without
/// recursion, values skipped, and the numbers and strings the gateway reads decoded, each the
/// way Foundation's `JSONDecoder` (swift-foundation 6) accepts or refuses them.
enum JSONBytes {
    /// As deep as `JSONDecoder` goes.
    static let maxDepth = 512

    /// What JSONDecoder (swift-foundation 6) reads as an Int64 from a number not written as a
    /// plain integer: strtod's Double must be a whole Int64; below 2^53 that is the value, from
    /// there the written digits without their fraction (through a Decimal: the digits that fit
    /// 128 bits, trailing zeros dropped, at most a UInt64 of them).
    static func wholeNumber(_ number: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard let double = Double(String(decoding: number, as: UTF8.self)), let value = Int64(exactly: double) else { return nil }
        if double.magnitude < 9_007_199_254_740_992 { return value }
        var digits: [UInt8] = []
        var exponent = 0
        var index = number[0] == UInt8(ascii: "-") ? 1 : 0
        var fraction = false
        while index < number.count, number[index] | 0x20 != UInt8(ascii: "e") {
            if number[index] == UInt8(ascii: ".") {
                fraction = true
            } else {
                digits.append(number[index] - UInt8(ascii: "0"))
                if fraction { exponent -= 1 }
            }
            index += 1
        }
        if index < number.count {
            let written = Int(String(decoding: number[(index + 1)...], as: UTF8.self)) ?? 0
            exponent += max(-1_000_000, min(1_000_000, written))
        }
        // The Decimal's mantissa: 128 bits of the leading digits (the rest dropped), without
        // trailing zeros; its value must fit a UInt64.
        var mantissa: UInt128 = 0
        let significant = digits.drop(while: { $0 == 0 })
        for (offset, digit) in significant.enumerated() {
            let (shifted, overflow) = mantissa.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.addingReportingOverflow(UInt128(digit))
            guard !overflow, !overflow2 else {
                exponent += significant.count - offset
                break
            }
            mantissa = next
        }
        while mantissa != 0, mantissa % 10 == 0 {
            mantissa /= 10
            exponent += 1
        }
        guard var magnitude = UInt64(exactly: mantissa) else { return nil }
        for _ in 0..<abs(exponent) where magnitude != 0 {
            if exponent < 0 {
                magnitude /= 10
            } else {
                let (shifted, overflow) = magnitude.multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                magnitude = shifted
            }
        }
        guard let whole = Int64(exactly: magnitude) else { return nil }
        return number[0] == UInt8(ascii: "-") ? -whole : whole
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// The bytes JSONDecoder takes as part of a number it skips (it checks a number's form only
    /// when it reads it).
    static func isNumberByte(_ byte: UInt8) -> Bool {
        isDigit(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e")
            || byte == UInt8(ascii: "E")
    }

    static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
    }

    static func skipSpace(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int {
        var index = index
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return index
            }
        }
        return index
    }

    /// Past the string starting at `index` (its opening quote): nil when it is not closed.
    /// Escapes, control bytes and UTF-8 are checked only when the string is read.
    static func skipString(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int? {
        var index = index + 1
        while true {
            index = nextQuoteOrBackslash(bytes, from: index)
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: "\"") { return index + 1 }
            // A backslash.
            guard index + 1 < bytes.count else { return nil }
            guard bytes[index + 1] == UInt8(ascii: "u") else {
                index += 2
                continue
            }
            // JSONDecoder skips the four bytes of a `\u` unread, but not a quote among them.
            guard index + 6 <= bytes.count, !bytes[index + 2..<index + 6].contains(UInt8(ascii: "\"")) else { return nil }
            index += 6
        }
    }

    /// The first quote or backslash at or after `index` (`bytes.count` when there is none),
    /// looked for eight bytes at a time: a string's bytes are most of an update's, and each is
    /// passed over more than once (checked, skipped by the objects around it, then read).
    static func nextQuoteOrBackslash(_ bytes: UnsafeBufferPointer<UInt8>, from index: Int) -> Int {
        var index = index
        if let base = bytes.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            while index + 8 <= bytes.count {
                let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self).littleEndian
                // A byte of `x` is zero where the word has the byte looked for; the lowest flag
                // marks the first one exactly (a borrow only carries to higher bytes).
                let quotes = word ^ (ones &* 0x22)
                let backslashes = word ^ (ones &* 0x5C)
                let found = ((quotes &- ones) & ~quotes | (backslashes &- ones) & ~backslashes) & highs
                if found != 0 { return index + found.trailingZeroBitCount / 8 }
                index += 8
            }
        }
        while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") { index += 1 }
        return index
    }

    /// How many containers a scan records the ends of: every one of an update or a service's
    /// answer, while a body of many small containers costs no more memory than this.
    static let recordedContainers = 256

    /// Past the value starting at `index`, or nil when the document is malformed there.
    /// Iterative: the nesting costs no stack. `containers` gets where each non-empty container
    /// opens and where it ends (past its closing bracket), in the order they open, the first
    /// ``recordedContainers`` of them: a reader then passes over a container without walking it.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, containers: inout [(open: Int, end: Int)]) -> Int? {
        withUnsafeTemporaryAllocation(of: (opening: UInt8, slot: Int).self, capacity: maxDepth) { open in
            var depth = 0
            var index = start
            while true {
                // A value at `index`.
                guard index < bytes.count else { return nil }
                switch bytes[index] {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard depth < maxDepth else { return nil }
                    let opening = bytes[index]
                    let closing = opening == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    let at = index
                    index = skipSpace(bytes, index + 1)
                    guard index < bytes.count else { return nil }
                    if bytes[index] == closing {
                        index += 1
                    } else {
                        var slot = -1
                        if containers.count < recordedContainers {
                            slot = containers.count
                            containers.append((open: at, end: 0))
                        }
                        open[depth] = (opening, slot)
                        depth += 1
                        if opening == UInt8(ascii: "{") {
                            guard let next = member(bytes, index) else { return nil }
                            index = next
                        }
                        continue
                    }
                case UInt8(ascii: "\""):
                    guard let end = skipString(bytes, index) else { return nil }
                    index = end
                case UInt8(ascii: "t"):
                    guard literal(bytes, index, "true") else { return nil }
                    index += 4
                case UInt8(ascii: "f"):
                    guard literal(bytes, index, "false") else { return nil }
                    index += 5
                case UInt8(ascii: "n"):
                    guard literal(bytes, index, "null") else { return nil }
                    index += 4
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    index += 1
                    while index < bytes.count, isNumberByte(bytes[index]) { index += 1 }
                default:
                    return nil
                }
                // After a value: a comma and the next element, or the end of containers.
                while true {
                    guard depth > 0 else { return index }
                    index = skipSpace(bytes, index)
                    guard index < bytes.count else { return nil }
                    let inObject = open[depth - 1].opening == UInt8(ascii: "{")
                    let closing = inObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    if bytes[index] != closing {
                        guard bytes[index] == UInt8(ascii: ",") else { return nil }
                        index = skipSpace(bytes, index + 1)
                        guard index < bytes.count else { return nil }
                    }
                    if bytes[index] == closing {  // the end, or a trailing comma and the end
                        depth -= 1
                        index += 1
                        if open[depth].slot >= 0 { containers[open[depth].slot].end = index }
                        continue
                    }
                    if inObject {
                        guard let next = member(bytes, index) else { return nil }
                        index = next
                    }
                    break
                }
            }
        }
    }

    /// A member's key and colon at `index`: where its value starts.
    static func member(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int? {
        guard bytes[index] == UInt8(ascii: "\""), let keyEnd = skipString(bytes, index) else { return nil }
        let colon = skipSpace(bytes, keyEnd)
        guard colon < bytes.count, bytes[colon] == UInt8(ascii: ":") else { return nil }
        return skipSpace(bytes, colon + 1)
    }

    static func literal(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int, _ word: StaticString) -> Bool {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        return bytes[index..<index + count].elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: count))
    }

    /// Past the value at `index` in a checked document.
    static func skipValue(_ bytes: UnsafeBufferPointer<UInt8>, _ index: Int) -> Int {
        switch bytes[index] {
        case UInt8(ascii: "\""):
            return skipString(bytes, index)!
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var index = index
            while true {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index = skipString(bytes, index)!
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default:
                    break
                }
                index += 1
            }
        case UInt8(ascii: "t"), UInt8(ascii: "n"):
            return index + 4
        case UInt8(ascii: "f"):
            return index + 5
        default:
            var index = index + 1
            while index < bytes.count, isNumberByte(bytes[index]) { index += 1 }
            return index
        }
    }

    enum NumberShape { case integer, decimal }

    /// JSON's number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    static func numberShape(_ number: UnsafeBufferPointer<UInt8>) -> NumberShape? {
        var index = 0
        if index < number.count, number[index] == UInt8(ascii: "-") { index += 1 }
        guard index < number.count, isDigit(number[index]) else { return nil }
        if number[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < number.count, isDigit(number[index]) { index += 1 }
        }
        var shape = NumberShape.integer
        if index < number.count, number[index] == UInt8(ascii: ".") {
            index += 1
            guard index < number.count, isDigit(number[index]) else { return nil }
            while index < number.count, isDigit(number[index]) { index += 1 }
            shape = .decimal
        }
        if index < number.count, number[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            if index < number.count, number[index] == UInt8(ascii: "+") || number[index] == UInt8(ascii: "-") { index += 1 }
            guard index < number.count, isDigit(number[index]) else { return nil }
            while index < number.count, isDigit(number[index]) { index += 1 }
            shape = .decimal
        }
        return index == number.count ? shape : nil
    }

    /// Whether a string's bytes hold an escape, a control byte or non-ASCII (to be decoded).
    static func needsDecoding(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        bytes[start..<end].contains { $0 == UInt8(ascii: "\\") || $0 < 0x20 || $0 >= 0x80 }
    }

    /// The text of the string starting at `index`: nil for a control byte, an unknown escape, a
    /// lone surrogate or bytes that are not UTF-8.
    static func decodeString(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> String? {
        let end = skipString(bytes, index)! - 1
        let start = index + 1
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<end])
        // One pass for the usual string: no escape, no control byte, and ASCII, which needs no
        // UTF-8 check (String(validating:) costs about a thousand instructions a string).
        var nonASCII: UInt8 = 0
        for byte in raw {
            guard byte >= 0x20 else { return nil }
            guard byte != UInt8(ascii: "\\") else { return unescaped(raw) }
            nonASCII |= byte
        }
        return nonASCII < 0x80 ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self)
    }

    /// A string's text from its bytes (without its quotes) holding at least one escape.
    private static func unescaped(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(raw.count)
        var position = 0
        func hex(_ at: Int) -> UInt32? {
            guard at + 4 <= raw.count else { return nil }
            var value: UInt32 = 0
            for byte in raw[at..<at + 4] {
                guard isHexDigit(byte) else { return nil }
                let digit = byte <= UInt8(ascii: "9") ? byte - UInt8(ascii: "0") : (byte | 0x20) - UInt8(ascii: "a") + 10
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while position < raw.count {
            let byte = raw[position]
            guard byte >= 0x20 else { return nil }
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                position += 1
                continue
            }
            let escape = raw[position + 1]
            position += 2
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex(position) else { return nil }
                position += 4
                if (0xD800...0xDBFF).contains(scalar) {
                    // A high surrogate must be followed by an escaped low one.
                    guard position + 6 <= raw.count, raw[position] == UInt8(ascii: "\\"), raw[position + 1] == UInt8(ascii: "u") else { return nil }
                    guard let low = hex(position + 2), (0xDC00...0xDFFF).contains(low) else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    position += 6
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                utf8.append(contentsOf: UTF8.encode(unicode)!)
            default:
                return nil
            }
        }
        return String(validating: utf8, as: UTF8.self)
    }
}
