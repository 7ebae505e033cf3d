/// A JSON document whose whole structure has been checked (``JSONBytes/scan(_:from:)``), read
/// field by field straight from its bytes: what ``UpdateDecoder`` and ``ServiceAnswer`` read.
/// A number, a string's escapes and its UTF-8 are checked where a value is read, as Foundation's
/// `JSONDecoder` (swift-foundation 6) does; of a repeated key the first counts.
struct JSONDocument {
    /// Why a value could not be read: the text is not JSON there, or the value is of another type.
    enum ReadError: Error {
        case malformed, mismatch
    }

    let bytes: UnsafeBufferPointer<UInt8>
    /// Where the top-level value starts.
    let root: Int
    /// Where the scan found containers to open and end, in document order (not all of them in a
    /// large document: see ``JSONBytes/recordedContainers``).
    private let containers: [(open: Int, end: Int)]

    init(_ bytes: UnsafeBufferPointer<UInt8>) throws(ReadError) {
        self.bytes = bytes
        // A UTF-8 byte order mark is skipped, as JSONDecoder does.
        var start = bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0
        start = JSONBytes.skipSpace(bytes, start)
        root = start
        var containers: [(open: Int, end: Int)] = []
        containers.reserveCapacity(16)
        guard let end = JSONBytes.scan(bytes, from: start, containers: &containers), JSONBytes.skipSpace(bytes, end) == bytes.count else {
            throw .malformed
        }
        self.containers = containers
    }

    /// Past the value at `index`: a container's end as the scan found it, when it recorded it.
    func end(ofValueAt index: Int) -> Int {
        if bytes[index] == UInt8(ascii: "{") || bytes[index] == UInt8(ascii: "[") {
            var low = 0
            var high = containers.count
            while low < high {
                let middle = (low + high) / 2
                if containers[middle].open < index { low = middle + 1 } else { high = middle }
            }
            if low < containers.count, containers[low].open == index { return containers[low].end }
        }
        return JSONBytes.skipValue(bytes, index)
    }

    /// A field that may be absent or null.
    func optional<T>(_ index: Int?, _ read: (Int?) throws(ReadError) -> T) throws(ReadError) -> T? {
        guard let index, bytes[index] != UInt8(ascii: "n") else { return nil }
        return try read(index)
    }

    func requiredObject(at index: Int?) throws(ReadError) -> Fields {
        guard let index, bytes[index] == UInt8(ascii: "{") else { throw .mismatch }
        return try object(at: index)
    }

    /// Where each element of the array at `index` starts.
    func elements(at index: Int?) throws(ReadError) -> [Int] {
        guard let index, bytes[index] == UInt8(ascii: "[") else { throw .mismatch }
        var elements: [Int] = []
        var next = JSONBytes.skipSpace(bytes, index + 1)
        while bytes[next] != UInt8(ascii: "]") {
            elements.append(next)
            next = afterElement(end(ofValueAt: next), closing: UInt8(ascii: "]"))
        }
        return elements
    }

    /// The number at `index` and its shape, its form checked here: nil when it is not a number.
    func number(at index: Int) throws(ReadError) -> (digits: UnsafeBufferPointer<UInt8>, shape: JSONBytes.NumberShape)? {
        let first = bytes[index]
        guard first == UInt8(ascii: "-") || JSONBytes.isDigit(first) else { return nil }
        var end = index
        while end < bytes.count, JSONBytes.isNumberByte(bytes[end]) { end += 1 }
        let digits = UnsafeBufferPointer(rebasing: bytes[index..<end])
        guard let shape = JSONBytes.numberShape(digits) else { throw .malformed }
        return (digits, shape)
    }

    /// An integer: written as one, or as a number with an exact integer value (`1.0`, `1e2`).
    func int64(at index: Int?) throws(ReadError) -> Int64 {
        guard let index, let number = try number(at: index) else { throw .mismatch }
        guard let value = Self.integer(number.digits, shape: number.shape) else { throw .malformed }
        return value
    }

    /// A checked number's Int64 value, as JSONDecoder reads one: nil when it has none.
    static func integer(_ number: UnsafeBufferPointer<UInt8>, shape: JSONBytes.NumberShape) -> Int64? {
        guard shape == .integer else { return JSONBytes.wholeNumber(number) }
        var value: Int64 = 0
        let negative = number[0] == UInt8(ascii: "-")
        for digit in number.dropFirst(negative ? 1 : 0) {
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 10)
            // Accumulated negative, so Int64.min fits.
            let (next, overflow2) = shifted.subtractingReportingOverflow(Int64(digit &- UInt8(ascii: "0")))
            guard !overflow, !overflow2 else { return nil }
            value = next
        }
        if negative { return value }
        return value == .min ? nil : -value
    }

    func bool(at index: Int?) throws(ReadError) -> Bool {
        switch index.map({ bytes[$0] }) {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: throw .mismatch
        }
    }

    func string(at index: Int?) throws(ReadError) -> String {
        guard let index, bytes[index] == UInt8(ascii: "\"") else { throw .mismatch }
        guard let string = JSONBytes.decodeString(bytes, at: index) else { throw .malformed }
        return string
    }

    /// An object's fields in document order. Its keys must decode (JSONDecoder reads them all
    /// when it opens an object).
    func object(at index: Int) throws(ReadError) -> Fields {
        var fields = Fields(bytes: bytes)
        var next = JSONBytes.skipSpace(bytes, index + 1)
        while bytes[next] != UInt8(ascii: "}") {
            let keyEnd = JSONBytes.skipString(bytes, next)!
            var name: String?
            if JSONBytes.needsDecoding(bytes, next + 1, keyEnd - 1) {
                guard let decoded = JSONBytes.decodeString(bytes, at: next) else { throw .malformed }
                name = decoded
            }
            let value = JSONBytes.skipSpace(bytes, JSONBytes.skipSpace(bytes, keyEnd) + 1)
            fields.append(key: next + 1..<keyEnd - 1, decoded: name, value: value)
            next = afterElement(end(ofValueAt: value), closing: UInt8(ascii: "}"))
        }
        return fields
    }

    /// Past a checked container's element and its comma: the next element, or the closing
    /// bracket (a trailing comma passes).
    private func afterElement(_ end: Int, closing: UInt8) -> Int {
        let next = JSONBytes.skipSpace(bytes, end)
        guard bytes[next] == UInt8(ascii: ",") else { return next }
        return JSONBytes.skipSpace(bytes, next + 1)
    }

    /// An object's fields as read: each key's bytes (or its decoded text when it had escapes or
    /// non-ASCII bytes) and where its value starts.
    struct Fields {
        /// A key and where its value starts. `decoded` indexes `decodedKeys`, or is -1: the key's
        /// bytes are its text. Plain integers, so that dropping an object's keys is one free:
        /// with the text in the entry (a `String?`), the runtime destroyed every entry through
        /// its generic witnesses, ~200 instructions a key and some 23 keys an update.
        private typealias Key = (range: Range<Int>, decoded: Int, value: Int)

        let bytes: UnsafeBufferPointer<UInt8>
        private var keys: [Key] = []
        /// The keys that had escapes or non-ASCII bytes, decoded; empty (unallocated) as a rule.
        private var decodedKeys: [String] = []

        init(bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            // Room for a message's fields at once (grown one doubling at a time it was four
            // allocations and copies per object).
            keys.reserveCapacity(16)
        }

        mutating func append(key: Range<Int>, decoded: String?, value: Int) {
            if let decoded {
                keys.append((key, decodedKeys.count, value))
                decodedKeys.append(decoded)
            } else {
                keys.append((key, -1, value))
            }
        }

        private func matches(_ key: Key, _ name: StaticString) -> Bool {
            let wanted = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            if key.decoded >= 0 { return decodedKeys[key.decoded].utf8.elementsEqual(wanted) }
            return bytes[key.range].elementsEqual(wanted)
        }

        /// The first field of that name (JSONDecoder's choice among repeated keys).
        func value(of name: StaticString) -> Int? {
            keys.first { matches($0, name) }?.value
        }

        /// The first field of another name: the update's type.
        func first(besides name: StaticString) -> (name: String, value: Int)? {
            guard let key = keys.first(where: { !matches($0, name) }) else { return nil }
            return (text(of: key), key.value)
        }

        /// Every field's name and value, the first of a repeated name only.
        var all: [(name: String, value: Int)] {
            var seen = Set<String>()
            var all: [(name: String, value: Int)] = []
            for key in keys {
                let name = text(of: key)
                if seen.insert(name).inserted { all.append((name, key.value)) }
            }
            return all
        }

        private func text(of key: Key) -> String {
            key.decoded >= 0 ? decodedKeys[key.decoded] : String(decoding: bytes[key.range], as: UTF8.self)
        }
    }
}
