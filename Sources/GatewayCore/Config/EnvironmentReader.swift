/// Reads typed values out of an environment dictionary, collecting every problem instead of
/// stopping at the first, so that one failed start-up names all of them.
struct EnvironmentReader {
    private let environment: [String: String]
    private(set) var problems: [ConfigError.Problem] = []

    init(_ environment: [String: String]) {
        self.environment = environment
    }

    /// The value, or `nil` when the variable is unset or empty (an empty value means "use the default").
    private func value(_ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }

    mutating func problem(_ name: String, _ message: String) {
        problems.append(.init(variable: name, message: message))
    }

    /// Non-secret values are quoted back, shortened, to help the operator find the typo.
    private func shown(_ value: String) -> String {
        let short = value.count > 40 ? value.prefix(40) + "…" : Substring(value)
        return "'\(short)'"
    }

    mutating func string(_ name: String, default defaultValue: String) -> String {
        value(name) ?? defaultValue
    }

    mutating func optionalString(_ name: String, matching pattern: CharacterPattern?, form: String) -> String? {
        guard let value = value(name) else { return nil }
        if let pattern, !pattern.matches(value) {
            problem(name, "got \(shown(value)), expected \(form)")
            return nil
        }
        return value
    }

    mutating func integer(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) -> Int {
        guard let text = value(name) else { return defaultValue }
        guard let number = Int(text), range.contains(number) else {
            problem(name, "got \(shown(text)), expected a whole number from \(range.lowerBound) to \(range.upperBound)")
            return defaultValue
        }
        return number
    }

    mutating func seconds(_ name: String, default defaultValue: Double, in range: ClosedRange<Double>) -> Double {
        guard let text = value(name) else { return defaultValue }
        guard let number = Double(text), number.isFinite, range.contains(number) else {
            problem(name, "got \(shown(text)), expected seconds from \(range.lowerBound) to \(range.upperBound), e.g. 1.5")
            return defaultValue
        }
        return number
    }

    mutating func httpURL(_ name: String, default defaultValue: String) -> String {
        guard let text = value(name) else { return defaultValue }
        let lowered = text.lowercased()
        guard let scheme = ["http://", "https://"].first(where: { lowered.hasPrefix($0) }),
            text.count > scheme.count, !text.contains(where: { $0.isWhitespace })
        else {
            problem(name, "got \(shown(text)), expected an http:// or https:// URL")
            return defaultValue
        }
        return text
    }

    mutating func choice<Value>(_ name: String, default defaultValue: Value, choices: [String: Value]) -> Value {
        guard let text = value(name) else { return defaultValue }
        guard let chosen = choices[text.uppercased()] ?? choices[text.lowercased()] else {
            problem(name, "got \(shown(text)), expected one of \(choices.keys.sorted().joined(separator: ", "))")
            return defaultValue
        }
        return chosen
    }

    /// A secret's value is never quoted back, only what is wrong with it.
    mutating func secret(_ name: String, required: Bool, pattern: CharacterPattern, form: String) -> Secret? {
        guard let text = value(name) else {
            if required { problem(name, "is required: \(form)") }
            return nil
        }
        guard pattern.matches(text) else {
            problem(name, "has the wrong form (value not shown): expected \(form)")
            return nil
        }
        return Secret(text)
    }
}

/// The few value shapes Telegram defines, checked without regular expressions.
struct CharacterPattern: Sendable {
    let matches: @Sendable (String) -> Bool

    private static func isWordCharacter(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || c == "_")
    }

    /// `123456:ABC-DEF…`: the bot id, a colon, at least 30 characters of A-Z, a-z, 0-9, _ and -.
    static let botToken = CharacterPattern { text in
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, (1...20).contains(parts[0].count), parts[0].allSatisfy({ $0.isASCII && $0.isNumber })
        else { return false }
        return parts[1].count >= 30 && parts[1].allSatisfy { isWordCharacter($0) || $0 == "-" }
    }

    /// setWebhook's `secret_token`: 1-256 characters of A-Z, a-z, 0-9, _ and -.
    static let webhookSecret = CharacterPattern { text in
        (1...256).contains(text.utf8.count) && text.allSatisfy { isWordCharacter($0) || $0 == "-" }
    }

    static let anything = CharacterPattern { _ in true }

    /// The outbound API's bearer token: long enough not to be guessed, safe in a header.
    static let serviceAPIToken = CharacterPattern { text in
        (16...256).contains(text.utf8.count) && text.allSatisfy { isWordCharacter($0) || $0 == "-" }
    }

    static let botUsername = CharacterPattern { text in
        (5...32).contains(text.count) && text.allSatisfy(isWordCharacter)
    }
}
