import Logging

/// A swift-log handler that renders one line per event, as a JSON object or as plain text, and
/// hands it to a sink (the executable's stderr or log file).
///
/// It owns no I/O and no clock: both are passed in, so the core stays testable.
public struct LogLineHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case json, text
    }

    public typealias Sink = @Sendable (_ line: [UInt8]) -> Void
    /// Seconds and nanoseconds since the Unix epoch.
    public typealias WallClock = @Sendable () -> (seconds: Int64, nanoseconds: Int32)

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let format: Format
    private let sink: Sink
    private let clock: WallClock

    public init(level: Logger.Level, format: Format, clock: @escaping WallClock, sink: @escaping Sink) {
        self.logLevel = level
        self.format = format
        self.clock = clock
        self.sink = sink
        // Room for a request's fields: a logger's copy keeps it, so setting them never grows
        // the dictionary.
        metadata.reserveCapacity(16)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let (seconds, nanoseconds) = clock()
        let time = (seconds: seconds, milliseconds: Int(nanoseconds / 1_000_000))
        sink(render(time: time, level: event.level, message: event.message.description, fields: Self.fields(metadata, event.metadata)))
    }

    /// The logger's metadata and the line's (the line's value wins for a key in both), sorted
    /// by key: a line's few fields in an array, no merged dictionary. A line's own fields are
    /// few: their keys are compared with the logger's one by one, not looked up by hash, and
    /// only the keys (a metadata value is an enum holding an existential: each copy costs a
    /// value-witness call).
    static func fields(_ metadata: Logger.Metadata, _ extra: Logger.Metadata?) -> [(key: String, value: Logger.Metadata.Value)] {
        var fields: [(key: String, value: Logger.Metadata.Value)] = []
        fields.reserveCapacity(metadata.count + (extra?.count ?? 0))
        if let extra {
            let replaced = extra.keys
            for (key, value) in metadata where !replaced.contains(key) { fields.append((key, value)) }
            for (key, value) in extra { fields.append((key, value)) }
        } else {
            for (key, value) in metadata { fields.append((key, value)) }
        }
        fields.sort { $0.key < $1.key }
        return fields
    }

    func render(
        time: (seconds: Int64, milliseconds: Int), level: Logger.Level, message: String, fields: [(key: String, value: Logger.Metadata.Value)]
    ) -> [UInt8] {
        switch format {
        case .json:
            var writer = JSONWriter(capacity: 512)
            writer.field("time", unescaped: { Timestamp.appendISO8601(seconds: time.seconds, milliseconds: time.milliseconds, to: &$0) })
            writer.field("level", level.rawValue)
            writer.field("message", message)
            for (key, value) in fields {
                switch value {
                case .string(let text):
                    writer.field(key, text)
                case .stringConvertible(let convertible):
                    if let integer = convertible as? Int64 {
                        writer.field(key, integer)
                    } else if let number = Self.jsonNumber(convertible) {
                        writer.field(key, json: number.utf8)
                    } else {
                        writer.field(key, convertible.description)
                    }
                default:
                    writer.field(key, value.description)
                }
            }
            var line = writer.finish()
            line.append(UInt8(ascii: "\n"))
            return line
        case .text:
            var line = "\(Timestamp.iso8601(seconds: time.seconds, milliseconds: time.milliseconds)) \(level.rawValue.uppercased()) \(message)"
            for (key, value) in fields { line += " \(key)=\(value)" }
            line += "\n"
            return Array(line.utf8)
        }
    }

    /// Integers and finite floating-point values are written as JSON numbers, the rest as strings.
    /// The types the gateway logs are tried first (Int64 by the caller, without a String): a cast
    /// to a protocol costs far more.
    private static func jsonNumber(_ convertible: any CustomStringConvertible & Sendable) -> String? {
        if let double = convertible as? Double { return double.isFinite ? String(describing: double) : nil }
        if let integer = convertible as? Int { return String(integer) }
        if let integer = convertible as? Int32 { return String(integer) }
        if let integer = convertible as? any BinaryInteger { return String(describing: integer) }
        return nil
    }
}

/// UTC timestamps from epoch seconds, without Foundation's formatters or a time zone database.
enum Timestamp {
    /// `2026-11-25T14:39:21.123Z`
    static func iso8601(seconds: Int64, milliseconds: Int) -> String {
        var bytes: [UInt8] = []
        appendISO8601(seconds: seconds, milliseconds: milliseconds, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends `2026-11-25T14:39:21.123Z`, digit by digit (no strings: once per log line).
    static func appendISO8601(seconds: Int64, milliseconds: Int, to bytes: inout [UInt8]) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        if year < 0 || year > 9999 {
            bytes.append(contentsOf: String(year).utf8)
        } else {
            appendDigits(Int(year), 4, to: &bytes)
        }
        func part(_ separator: Unicode.Scalar, _ value: Int, _ width: Int) {
            bytes.append(UInt8(ascii: separator))
            appendDigits(value, width, to: &bytes)
        }
        part("-", month, 2)
        part("-", day, 2)
        part("T", secondOfDay / 3600, 2)
        part(":", secondOfDay % 3600 / 60, 2)
        part(":", secondOfDay % 60, 2)
        part(".", milliseconds, 3)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// `value` (0 ≤ value < 10^width) in exactly `width` digits.
    private static func appendDigits(_ value: Int, _ width: Int, to bytes: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value / divisor % 10))
            divisor /= 10
        }
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    static func civilDate(daysSinceEpoch: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

}
