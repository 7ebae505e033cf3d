import GatewayCore

/// One call of a script, `FCALL FUNCTION COUNT KEYS… ARGUMENTS…`, in Redis's protocol, written
/// piece by piece as its keys and arguments are added: no string per key, no array per
/// argument and no list of either. A subject's key goes straight from its hash tag and name to
/// the bytes: an update's six keys and six arguments made as strings and arrays, listed, then
/// copied cost the gateway path's `begin` 20.2k instructions, written here 11.7k (callgrind).
///
/// Keys come first, then arguments, as many of each as the call was made for. The call keeps
/// its script: the connection loads the script's library on its first call.
package struct ScriptCall: Sendable {
    let script: RedisScript
    private var writer: RESPWriter
    package var bytes: [UInt8] { writer.bytes }
    /// Where the first key is (its cluster slot is the call's).
    private var firstKey: Range<Int>?
    /// The hash tag of the last subject a key was written for (26 bytes at most).
    private var taggedSubject: StateSubject?
    private var tag: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var tagLength = 0
    private var keysLeft: Int
    private var argumentsLeft: Int

    /// `capacity`: about the bytes the keys and arguments take (the buffer grows if need be).
    package init(_ script: RedisScript, keys: Int, arguments: Int, capacity: Int = 256) {
        self.script = script
        keysLeft = keys
        argumentsLeft = arguments
        writer = RESPWriter(capacity: capacity + script.function.utf8.count)
        writer.header(UInt8(ascii: "*"), 3 + keys + arguments)
        writer.literal("$5\r\nFCALL\r\n")
        var function = script.function
        function.withUTF8 { _ = writer.piece($0) }
        number(Int64(keys))
    }

    /// A call of general keys and arguments.
    package init(_ script: RedisScript, keys: [String], arguments: [[UInt8]]) {
        var capacity = 0
        for key in keys { capacity += key.utf8.count + 8 }
        for argument in arguments { capacity += argument.count + 8 }
        self.init(script, keys: keys.count, arguments: arguments.count, capacity: capacity)
        for key in keys { self.key(key) }
        for argument in arguments { self.argument(argument) }
    }

    /// Every key and argument the call was made for has been added.
    var isComplete: Bool { keysLeft == 0 && argumentsLeft == 0 }

    /// The cluster slot of the call's first key; nil without keys.
    var slot: Int? { firstKey.map { ClusterSlots.slot(of: writer.bytes[$0]) } }

    /// The subject's key `name` (`{tg:42}:update:7` with `number` 7).
    package mutating func key(_ subject: StateSubject, _ name: StateSubjectKey, _ number: Int64? = nil) {
        countKey()
        // A call's keys are mostly one subject's: its hash tag is written once and copied
        // (written for each key, an update cost 1.6k instructions more, callgrind).
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
        let range = writer.short { buffer in
            withUnsafeBytes(of: written) { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: $0.baseAddress!, byteCount: length) }
            return StateSubject.writeKeyName(name.suffix, number, into: buffer, at: length)
        }
        if firstKey == nil { firstKey = range }
    }

    /// The subject's keys `names`, in order (`.update` with `updateID`).
    package mutating func keys(of subject: StateSubject, _ names: [StateSubjectKey], updateID: Int64) {
        for name in names { key(subject, name, name == .update ? updateID : nil) }
    }

    package mutating func key(_ key: String) {
        countKey()
        var key = key
        let range = key.withUTF8 { writer.piece($0) }
        if firstKey == nil { firstKey = range }
    }

    package mutating func argument(_ argument: [UInt8]) {
        countArgument()
        argument.withUnsafeBufferPointer { _ = writer.piece($0) }
    }

    package mutating func argument(_ argument: String) {
        countArgument()
        var argument = argument
        argument.withUTF8 { _ = writer.piece($0) }
    }

    package mutating func argument(_ argument: UnsafeBufferPointer<UInt8>) {
        countArgument()
        _ = writer.piece(argument)
    }

    /// A number as its decimal text.
    package mutating func argument(_ value: Int64) {
        countArgument()
        number(value)
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
        writer.short { Digits.write(value, into: $0, at: 0) }
    }
}
