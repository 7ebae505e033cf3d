/// Everything wrong with a configuration, reported at once so one start-up shows all of it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The environment variable (or `.env:LINE`) at fault.
        public let variable: String
        /// What is wrong and what is accepted. Never holds a secret's value.
        public let message: String

        public init(variable: String, message: String) {
            self.variable = variable
            self.message = message
        }

        public var description: String { "\(variable): \(message)" }
    }

    public let problems: [Problem]

    public init(problems: [Problem]) {
        self.problems = problems
    }

    public var description: String {
        "invalid configuration:\n" + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}
