import GatewayCore

/// Commands in Redis's protocol, as hiredis's own formatter writes them (`*N`, then `$LENGTH` and
/// the bytes of each argument): hiredis formats argument by argument with its printf-like
/// `sdscatfmt`, which cost more than the rest of a call's client side.
package enum RESP {
    package static func encode(_ arguments: [[UInt8]]) -> [UInt8] {
        var capacity = 0
        for argument in arguments { capacity += argument.count + 8 }
        var writer = RESPWriter(capacity: capacity)
        writer.header(UInt8(ascii: "*"), arguments.count)
        for argument in arguments { argument.withUnsafeBufferPointer { _ = writer.piece($0) } }
        return writer.bytes
    }
}

/// Writes a command's pieces into one growing buffer, each piece with its framing in one append
/// (appending byte by byte, with the array's checks per byte, cost a third of a call's client
/// side).
struct RESPWriter {
    private(set) var bytes: [UInt8] = []

    /// The longest piece ``short(_:)`` writes, and the room kept before it for `$LENGTH` CRLF.
    static let shortPiece = 96
    private static let headerRoom = 8

    /// `capacity`: about the bytes the pieces take; a command's framing is added.
    init(capacity: Int) {
        bytes.reserveCapacity(capacity + 80)
    }

    /// `*COUNT` or `$LENGTH`, then CRLF.
    mutating func header(_ marker: UInt8, _ value: Int) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.headerRoom + Digits.maximumCount) { buffer in
            let start = Self.header(marker, value, endingAt: buffer.count, in: buffer)
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// `$LENGTH` CRLF, the bytes copied from where they are, CRLF. Returns where they are.
    mutating func piece(_ piece: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        header(UInt8(ascii: "$"), piece.count)
        let start = bytes.count
        bytes.append(contentsOf: piece)
        literal("\r\n")
        return start..<bytes.count - 2
    }

    /// A piece of at most ``shortPiece`` bytes that `write` puts into a buffer and counts,
    /// written on the stack between its `$LENGTH` CRLF and its CRLF and appended at once.
    /// Returns where its bytes are.
    @discardableResult
    mutating func short(_ write: (UnsafeMutableBufferPointer<UInt8>) -> Int) -> Range<Int> {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: Self.headerRoom + Self.shortPiece + 2) { buffer in
            let room = Self.headerRoom
            let count = write(UnsafeMutableBufferPointer(rebasing: buffer[room..<room + Self.shortPiece]))
            precondition(count <= Self.shortPiece, "a short piece fits its buffer")
            let start = Self.header(UInt8(ascii: "$"), count, endingAt: room, in: buffer)
            buffer[room + count] = UInt8(ascii: "\r")
            buffer[room + count + 1] = UInt8(ascii: "\n")
            let bytesStart = bytes.count + room - start
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[start..<room + count + 2]))
            return bytesStart..<bytesStart + count
        }
    }

    mutating func literal(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Writes `marker`, `value`'s digits and CRLF so that they end at `end`; returns where they start.
    private static func header(_ marker: UInt8, _ value: Int, endingAt end: Int, in buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        let start = end - 3 - Digits.count(Int64(value))
        buffer[start] = marker
        let digitsEnd = Digits.write(Int64(value), into: buffer, at: start + 1)
        buffer[digitsEnd] = UInt8(ascii: "\r")
        buffer[digitsEnd + 1] = UInt8(ascii: "\n")
        return start
    }
}
