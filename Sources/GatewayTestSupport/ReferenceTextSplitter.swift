import GatewayCore

/// The text splitter the gateway had before it read a text's bytes: a walk over the text's
/// graphemes. Kept only as the reference the gateway's splitter is checked against (the `split`
/// fuzz target, the splitter's unit tests): the same parts for every text and limit.
public enum ReferenceTextSplitter {
    public static func split(_ text: String, limit: Int = TextSplitter.maxUTF16Units) -> [String] {
        var parts: [String] = []
        var rest = Substring(text)
        while rest.utf16.count > limit {
            var end = rest.startIndex
            var units = 0
            var lastNewline: String.Index?
            var lastSpace: String.Index?
            for index in rest.indices {
                let character = rest[index]
                let size = character.utf16.count
                if units + size > limit { break }
                units += size
                end = rest.index(after: index)
                if units > limit / 2 {
                    if character.isNewline { lastNewline = end } else if character == " " { lastSpace = end }
                }
            }
            // A single grapheme longer than the limit cannot be kept whole; cut it by scalars.
            if end == rest.startIndex {
                var scalarEnd = rest.unicodeScalars.startIndex
                var scalarUnits = 0
                for scalar in rest.unicodeScalars {
                    if scalarUnits + scalar.utf16.count > limit { break }
                    scalarUnits += scalar.utf16.count
                    scalarEnd = rest.unicodeScalars.index(after: scalarEnd)
                }
                end = scalarEnd
            }
            let cut = lastNewline ?? lastSpace ?? end
            parts.append(String(rest[..<cut]))
            rest = rest[cut...]
        }
        if !rest.isEmpty || parts.isEmpty { parts.append(String(rest)) }
        return parts
    }
}
