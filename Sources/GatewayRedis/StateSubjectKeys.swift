import GatewayCore

/// The keys of one subject, by name: what follows the subject's hash tag.
package enum StateSubjectKey {
    case update, pace, session, lease, queued, outbox

    var suffix: StaticString {
        switch self {
        case .update: ":update:"
        case .pace: ":pacing"
        case .session: ":session"
        case .lease: ":lease"
        case .queued: ":queued"
        case .outbox: ":outbox"
        }
    }
}

/// The keys of one subject, as the scripts expect them.
public struct StateSubjectKeys: Sendable, Equatable {
    public let update: String
    /// The token bucket and the subject's own chat window (`pace`).
    public let pace: String
    public let session: String
    public let lease: String
    public let queued: String
    public let outbox: String

    public init(subject: StateSubject, updateID: Int64) {
        update = subject.key(.update, updateID)
        pace = subject.key(.pace)
        session = subject.key(.session)
        lease = subject.key(.lease)
        queued = subject.key(.queued)
        outbox = subject.key(.outbox)
    }
}

extension StateSubject {
    /// The subject's key `name` as a string: `"\(hashTag)\(suffix)\(number)"`.
    func key(_ name: StateSubjectKey, _ number: Int64? = nil) -> String {
        String(unsafeUninitializedCapacity: Self.keyCapacity(name.suffix)) { writeKey(name.suffix, number, into: $0) }
    }

    /// The most bytes a key with `suffix` takes: `{tgc:`, 20 digits, `}`, the suffix, 20 digits.
    static func keyCapacity(_ suffix: StaticString) -> Int { 48 + suffix.utf8CodeUnitCount }

    /// Writes the subject's hash tag, `suffix` and `number` into `buffer` (at least
    /// ``keyCapacity(_:)`` bytes) and returns their count.
    func writeKey(_ suffix: StaticString, _ number: Int64?, into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        Self.writeKeyName(suffix, number, into: buffer, at: writeHashTag(into: buffer))
    }

    /// Writes `{tg:ID}` or `{tgc:ID}` at the start of `buffer` and returns its length.
    func writeHashTag(into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var count = Self.write(hashTagOpening, into: buffer, at: 0)
        count = Digits.write(id, into: buffer, at: count)
        return Self.write("}", into: buffer, at: count)
    }

    /// Writes what follows a key's hash tag, `suffix` and `number`, at `start`; returns where it ends.
    static func writeKeyName(_ suffix: StaticString, _ number: Int64?, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
        let count = write(suffix, into: buffer, at: start)
        guard let number else { return count }
        return Digits.write(number, into: buffer, at: count)
    }

    private static func write(_ text: StaticString, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
        precondition(start + text.utf8CodeUnitCount <= buffer.count)
        (buffer.baseAddress! + start).initialize(from: text.utf8Start, count: text.utf8CodeUnitCount)
        return start + text.utf8CodeUnitCount
    }
}
