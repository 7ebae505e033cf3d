import GatewayCore

/// One call of a script, `EVALSHA DIGEST COUNT KEYS… ARGUMENTS…`, in Redis's protocol, written
/// piece by piece as its keys and arguments are added: no string per key, no array per
/// argument and no list of either. A subject's key goes straight from its hash tag and name to
/// the bytes: an update's six keys and six arguments made as strings and arrays, listed, then
/// copied cost the gateway path's `begin` 20.2k instructions, written here 11.7k (callgrind).
///
/// The digest is known only once the connection has loaded the script: the call keeps its 40
/// bytes and ``setDigest(_:)`` writes them. Keys come first, then arguments, as many of each as
/// the call was made for.
package struct ScriptCall: Sendable {
    package private(set) var bytes: [UInt8] = []
    /// Where the digest goes, and where the first key is (its cluster slot is the call's).
    private var digestStart = 0
    private var firstKey: Range<Int>?
    /// The hash tag of the last subject a key was written for (26 bytes at most).
    private var taggedSubject: StateSubject?
    private var tag: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var tagLength = 0
    private var keysLeft: Int
    private var argumentsLeft: Int

    /// A SHA-1 digest in hex, as `SCRIPT LOAD` returns it.
    static let digestLength = 40
    /// The longest key or number written in one go (`short`), and the room kept before it for
    /// its `$LENGTH` CRLF.
    private static let shortPiece = 96
    private static let headerRoom = 8

    /// `capacity`: about the bytes the keys and arguments take (the buffer grows if need be).
    package init(keys: Int, arguments: Int, capacity: Int = 256) {
        keysLeft = keys
        argumentsLeft = arguments
        bytes.reserveCapacity(capacity + 80)
        header(UInt8(ascii: "*"), 3 + keys + arguments)
        literal("$7\r\nEVALSHA\r\n$40\r\n")
        digestStart = bytes.count
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: Self.digestLength))
        literal("\r\n")
        number(Int64(keys))
    }

    /// A call of general keys and arguments.
    package init(keys: [String], arguments: [[UInt8]]) {
        var capacity = 0
        for key in keys { capacity += key.utf8.count + 8 }
        for argument in arguments { capacity += argument.count + 8 }
        self.init(keys: keys.count, arguments: arguments.count, capacity: capacity)
        for key in keys { self.key(key) }
        for argument in arguments { self.argument(argument) }
    }

    /// Every key and argument the call was made for has been added.
    var isComplete: Bool { keysLeft == 0 && argumentsLeft == 0 }

    /// The cluster slot of the call's first key; nil without keys.
    var slot: Int? { firstKey.map { ClusterSlots.slot(of: bytes[$0]) } }

    /// The subject's key `name` (`{tg:42}:update:7` with `number` 7).
    package mutating func key(_ subject: StateSubject, _ name: StateSubjectKey, _ number: Int64? = nil) {
        countKey()
        // A call's keys are mostly one subject's: its hash tag is written once and copied.
        if subject != taggedSubject {
            taggedSubject = subject
            tagLength = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { written in
                let count = subject.writeHashTag(into: written)
                withUnsafeMutableBytes(of: &self.tag) {
                    $0.copyMemory(from: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: written[..<count])))
                }
                return count
            }
        }
        let (written, length) = (tag, tagLength)
        let range = short { buffer in
            withUnsafeBytes(of: written) { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: $0.baseAddress!, byteCount: length) }
            return StateSubject.writeKeyName(name.suffix, number, into: buffer, at: length)
        }
        if firstKey == nil { firstKey = range }
    }

    package mutating func key(_ key: String) {
        countKey()
        var key = key
        let range = key.withUTF8 { long($0) }
        if firstKey == nil { firstKey = range }
    }

    package mutating func argument(_ argument: [UInt8]) {
        countArgument()
        argument.withUnsafeBufferPointer { _ = long($0) }
    }

    package mutating func argument(_ argument: String) {
        countArgument()
        var argument = argument
        argument.withUTF8 { _ = long($0) }
    }

    package mutating func argument(_ argument: UnsafeBufferPointer<UInt8>) {
        countArgument()
        _ = long(argument)
    }

    /// A number as its decimal text.
    package mutating func argument(_ value: Int64) {
        countArgument()
        number(value)
    }

    /// Writes the loaded script's digest into the place kept for it.
    mutating func setDigest(_ digest: String) {
        var digest = digest
        digest.withUTF8 { digest in
            precondition(digest.count == Self.digestLength, "a script's digest is 40 hex digits")
            bytes.withUnsafeMutableBufferPointer { bytes in
                _ = UnsafeMutableBufferPointer(rebasing: bytes[digestStart..<digestStart + Self.digestLength]).initialize(fromContentsOf: digest)
            }
        }
    }

    private mutating func countKey() {
        precondition(keysLeft > 0, "a script call's keys come first, as many as it was made for")
        keysLeft -= 1
    }

    private mutating func countArgument() {
        precondition(keysLeft == 0 && argumentsLeft > 0, "a script call's arguments come after its keys, as many as it was made for")
        argumentsLeft -= 1
    }

    private mutating func number(_ value: Int64) {
        short { StateSubject.writeDecimal(value, into: $0, at: 0) }
    }

    /// A piece of at most ``shortPiece`` bytes that `write` puts into a buffer and counts,
    /// written on the stack between its `$LENGTH` CRLF and its CRLF and appended at once.
    /// Returns where its bytes are in the call.
    @discardableResult
    private mutating func short(_ write: (UnsafeMutableBufferPointer<UInt8>) -> Int) -> Range<Int> {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.headerRoom + Self.shortPiece + 2) { buffer in
            let room = Self.headerRoom
            let count = write(UnsafeMutableBufferPointer(rebasing: buffer[room..<room + Self.shortPiece]))
            let start = Self.header(UInt8(ascii: "$"), count, endingAt: room, in: buffer)
            buffer[room + count] = UInt8(ascii: "\r")
            buffer[room + count + 1] = UInt8(ascii: "\n")
            let bytesStart = bytes.count + room - start
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start..<room + count + 2]))
            return bytesStart..<bytesStart + count
        }
    }

    /// `$LENGTH` CRLF, the bytes copied from where they are, CRLF. Returns where they are in the call.
    private mutating func long(_ piece: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        header(UInt8(ascii: "$"), piece.count)
        let start = bytes.count
        bytes.append(contentsOf: piece)
        literal("\r\n")
        return start..<bytes.count - 2
    }

    /// `*COUNT` or `$LENGTH`, then CRLF.
    private mutating func header(_ marker: UInt8, _ value: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.headerRoom + 16) { buffer in
            let start = Self.header(marker, value, endingAt: buffer.count, in: buffer)
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// Writes `marker`, `value`'s digits and CRLF so that they end at `end`; returns where they start.
    private static func header(_ marker: UInt8, _ value: Int, endingAt end: Int, in buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var start = end - 2
        buffer[start] = UInt8(ascii: "\r")
        buffer[start + 1] = UInt8(ascii: "\n")
        var rest = value
        repeat {
            start -= 1
            buffer[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        } while rest > 0
        start -= 1
        buffer[start] = marker
        return start
    }

    private mutating func literal(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }
}
