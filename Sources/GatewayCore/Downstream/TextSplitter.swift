/// Splits long texts into Telegram-sized messages.
public enum TextSplitter {
    /// Telegram's limit on a message's text, in UTF-16 code units.
    public static let maxUTF16Units = 4096

    /// Parts of at most `limit` UTF-16 units (at least 2: an emoji alone takes two) that join
    /// back to `text` exactly. Parts end after a newline (or a space) where one lies in the second
    /// half of the part; a grapheme (an emoji with its modifiers, a letter with its accents) is
    /// never cut, unless it alone is longer than the limit: then it is cut between its scalars.
    ///
    /// The text is read as UTF-8 bytes. A newline always ends a grapheme, and a space between
    /// ASCII bytes is one; only a cut elsewhere asks the standard library where a grapheme ends.
    public static func split(_ text: String, limit: Int = maxUTF16Units) -> [String] {
        precondition(limit >= 2, "a part must hold a scalar of two UTF-16 units")
        // A scalar never takes more UTF-16 units than UTF-8 bytes: a text of `limit` bytes fits.
        guard text.utf8.count > limit else { return [text] }
        var parts: [String] = []
        var rest = Substring(text)
        while let cut = firstCut(in: rest, limit: limit) {
            parts.append(String(rest[..<cut]))
            rest = rest[cut...]
        }
        parts.append(String(rest))
        return parts
    }

    /// Where the first part of `text` ends, or nil when all of it fits: after a newline or a
    /// space found in its bytes, else after the last whole grapheme before the limit (a grapheme
    /// longer than the limit is cut at the limit).
    private static func firstCut(in text: Substring, limit: Int) -> String.Index? {
        var contiguous = text
        guard let offset = contiguous.withUTF8({ bytes in cutOffset(bytes, of: text, limit: limit) }) else { return nil }
        let cut = text.utf8.index(text.startIndex, offsetBy: offset)
        let boundary = text.index(cut, offsetBy: 0)  // rounded down to a grapheme's start (a newline's end is one)
        return boundary == text.startIndex ? cut : boundary
    }

    /// The UTF-8 offset after the part's last newline or lone space in its second half, else of
    /// the first scalar past the limit; nil when the whole text fits.
    private static func cutOffset(_ bytes: UnsafeBufferPointer<UInt8>, of text: Substring, limit: Int) -> Int? {
        var offset = 0
        var units = 0
        var newline: Int?
        var space: Int?
        while offset < bytes.count {
            let byte = bytes[offset]
            // The scalar's length from its first byte (a String is valid UTF-8); a scalar of four
            // bytes takes two UTF-16 units, any other one.
            let length = byte < 0x80 ? 1 : byte < 0xE0 ? 2 : byte < 0xF0 ? 3 : 4
            let size = length == 4 ? 2 : 1
            if units + size > limit { break }
            units += size
            let next = offset + length
            if units > limit / 2 {
                switch byte {
                case 0x0A, 0x0B, 0x0C: newline = next
                // CR LF is one grapheme: it ends after the LF.
                case 0x0D where next == bytes.count || bytes[next] != 0x0A: newline = next
                case 0xC2 where bytes[offset + 1] == 0x85: newline = next  // NEL
                case 0xE2 where bytes[offset + 1] == 0x80 && (bytes[offset + 2] == 0xA8 || bytes[offset + 2] == 0xA9): newline = next  // LS, PS
                case 0x20 where isLoneSpace(at: offset, in: bytes, of: text): space = next
                default: break
                }
            }
            offset = next
        }
        guard offset < bytes.count else { return nil }
        return newline ?? space ?? offset
    }

    /// Whether the space at `offset` is a grapheme of its own. Between ASCII bytes it always is;
    /// otherwise a mark after it (or a prefix before it) may join it to its neighbour.
    private static func isLoneSpace(at offset: Int, in bytes: UnsafeBufferPointer<UInt8>, of text: Substring) -> Bool {
        let next = offset + 1
        if offset > 0, bytes[offset - 1] < 0x80, next == bytes.count || bytes[next] < 0x80 { return true }
        let start = text.utf8.index(text.startIndex, offsetBy: offset)
        let end = text.utf8.index(after: start)
        return text.index(start, offsetBy: 0) == start && (end == text.endIndex || text.index(end, offsetBy: 0) == end)
    }
}
