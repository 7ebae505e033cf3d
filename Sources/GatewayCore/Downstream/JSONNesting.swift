/// How deep JSON text nests, found in one pass over its bytes without parsing it. Decoders
/// recurse per level of arrays and objects, and worker threads have 1 MiB stacks: nesting is
/// bounded before anything is decoded.
public enum JSONNesting {
    /// Whether `bytes` open more than `limit` arrays or objects inside one another (strings,
    /// with their escapes, are skipped). Malformed text is left to the decoder to refuse.
    public static func exceeds(_ limit: Int, in bytes: [UInt8]) -> Bool {
        var depth = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
            default:
                break
            }
        }
        return false
    }
}
