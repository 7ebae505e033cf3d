/// A secret value (bot token, webhook secret, Redis password) that never prints.
///
/// `description`, `debugDescription` and reflection all show `***`, so a secret interpolated
/// into a log line or dumped in a test failure stays hidden. `reveal()` is the one explicit way out.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let value: [UInt8]

    public init(_ value: String) {
        self.value = Array(value.utf8)
    }

    public var description: String { "***" }
    public var debugDescription: String { "***" }
    public var customMirror: Mirror { Mirror(self, children: [:]) }

    /// The secret itself, for the few places that must send it (Bot API URLs, nginx's map).
    public func reveal() -> String { String(decoding: value, as: UTF8.self) }

    /// Compares `candidate` with the secret in time that does not depend on where they differ.
    public func matches(_ candidate: [UInt8]) -> Bool {
        guard !value.isEmpty else { return false }
        var difference = value.count ^ candidate.count
        for index in candidate.indices {
            difference |= Int(value[index % value.count] ^ candidate[index])
        }
        return difference == 0
    }
}
