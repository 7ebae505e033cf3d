/// Parses `.env` files: `KEY=value` lines, `export` prefixes, `#` comments, single- or
/// double-quoted values. The process environment wins over the file (see `GatewayConfig`).
public enum DotEnv {
    public static func parse(_ contents: String) throws(ConfigError) -> [String: String] {
        var values: [String: String] = [:]
        var problems: [ConfigError.Problem] = []
        for (offset, rawLine) in contents.fileLines().enumerated() {
            var line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst("export ".count).trimmingWhitespace() }
            guard let equals = line.firstIndex(of: "="), equals > line.startIndex else {
                problems.append(.init(variable: ".env:\(offset + 1)", message: "expected KEY=value"))
                continue
            }
            let key = String(line[..<equals].trimmingWhitespace())
            guard key.allSatisfy({ $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                problems.append(.init(variable: ".env:\(offset + 1)", message: "a key is letters, digits and _"))
                continue
            }
            let rawValue = line[line.index(after: equals)...].trimmingWhitespace()
            guard let value = unquote(rawValue) else {
                problems.append(.init(variable: ".env:\(offset + 1)", message: "unterminated quote in the value of \(key)"))
                continue
            }
            values[key] = value
        }
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        return values
    }

    private static func unquote(_ value: Substring) -> String? {
        guard let quote = value.first, quote == "\"" || quote == "'" else {
            // Unquoted: a ` #` starts a comment.
            if let comment = value.firstRange(of: " #") { return String(value[..<comment.lowerBound].trimmingWhitespace()) }
            return String(value)
        }
        let rest = value.dropFirst()
        guard let end = rest.firstIndex(of: quote) else { return nil }
        return String(rest[..<end])
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> SubSequence {
        let start = firstIndex(where: { !$0.isWhitespace }) ?? endIndex
        let end = lastIndex(where: { !$0.isWhitespace }).map(index(after:)) ?? start
        return self[start..<Swift.max(start, end)]
    }
}

extension String {
    /// The lines of a configuration file, whichever line ends it was saved with: Swift reads
    /// "\r\n" as one character, which splitting at "\n" would never find, so a file saved on
    /// Windows would be one long line.
    func fileLines() -> [Substring] {
        split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
    }
}
