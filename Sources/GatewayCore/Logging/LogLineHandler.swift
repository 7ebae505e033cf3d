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

    public var metadata: Logger.Metadata = [:] {
        didSet { sortedMetadata = Self.fields(metadata, nil) }
    }
    public var logLevel: Logger.Level
    private let format: Format
    private let sink: Sink
    private let clock: WallClock
    /// The logger's metadata in key order, kept with it: a line merges its own fields into it
    /// without sorting the logger's again.
    private var sortedMetadata: [(key: String, value: Logger.Metadata.Value)] = []

    public init(level: Logger.Level, format: Format, clock: @escaping WallClock, sink: @escaping Sink) {
        self.logLevel = level
        self.format = format
        self.clock = clock
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = start(level: event.level, message: event.message.description)
        if let extra = event.metadata, !extra.isEmpty {
            for (key, value) in Self.fields(metadata, extra) { line.field(key, value) }
        } else {
            for (key, value) in sortedMetadata { line.field(key, value) }
        }
        sink(line.finish())
    }

    /// One update's line, from its typed fields merged in key order with the logger's (the
    /// update's value wins for a key in both): no metadata dictionary and no cast per value.
    func log(level: Logger.Level, message: String, update: UpdateLine) {
        var line = start(level: level, message: message)
        var next = 0
        update.forEachField { field, value in
            if next < sortedMetadata.count {
                let key = field.key
                while next < sortedMetadata.count, sortedMetadata[next].key <= key {
                    let (loggerKey, loggerValue) = sortedMetadata[next]
                    if loggerKey != key { line.field(loggerKey, loggerValue) }
                    next += 1
                }
            }
            line.field(field, value)
        }
        for (key, value) in sortedMetadata[next...] { line.field(key, value) }
        sink(line.finish())
    }

    private func start(level: Logger.Level, message: String) -> LineWriter {
        let (seconds, nanoseconds) = clock()
        return LineWriter(format: format, time: (seconds, Int(nanoseconds / 1_000_000)), level: level, message: message)
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
}

/// Writes one line's bytes in either format: the time, level and message, then each field.
struct LineWriter {
    private let format: LogLineHandler.Format
    private var bytes: [UInt8] = []

    init(format: LogLineHandler.Format, time: (seconds: Int64, milliseconds: Int), level: Logger.Level, message: String) {
        self.format = format
        bytes.reserveCapacity(512)
        switch format {
        case .json:
            JSONWriter.appendLiteral(#"{"time":""#, to: &bytes)
            Timestamp.appendISO8601(seconds: time.seconds, milliseconds: time.milliseconds, to: &bytes)
            JSONWriter.appendLiteral(#"","level":""#, to: &bytes)
            JSONWriter.appendRaw(level.rawValue, to: &bytes)
            JSONWriter.appendLiteral(#"","message":"#, to: &bytes)
            JSONWriter.appendString(message, to: &bytes)
        case .text:
            Timestamp.appendISO8601(seconds: time.seconds, milliseconds: time.milliseconds, to: &bytes)
            bytes.append(UInt8(ascii: " "))
            bytes.append(contentsOf: level.rawValue.uppercased().utf8)
            bytes.append(UInt8(ascii: " "))
            bytes.append(contentsOf: message.utf8)
        }
    }

    /// A typed field, its key written as it is (one of ``LogKey``'s).
    mutating func field(_ field: UpdateLine.Field, _ value: UpdateLine.Value) {
        switch format {
        case .json: bytes.append(contentsOf: UpdateLine.Field.jsonKeys[field.rawValue])
        case .text: appendKey(field.key)
        }
        switch value {
        case .string(let string): appendString(string)
        case .integer(let integer): JSONWriter.appendDecimal(integer, to: &bytes)
        case .number(let number): appendNumber(number)
        }
    }

    /// Integers and finite floating-point values are written as JSON numbers, the rest as
    /// strings. The type the gateway logs most (Int64) is tried first, without a String.
    mutating func field(_ key: String, _ value: Logger.Metadata.Value) {
        appendKey(key)
        guard case .stringConvertible(let convertible) = value else {
            appendString(value.description)
            return
        }
        if let integer = convertible as? Int64 {
            JSONWriter.appendDecimal(integer, to: &bytes)
        } else if let double = convertible as? Double {
            appendNumber(double)
        } else if format == .json, let integer = Self.integerDigits(convertible) {
            JSONWriter.appendRaw(integer, to: &bytes)
        } else {
            appendString(convertible.description)
        }
    }

    consuming func finish() -> [UInt8] {
        if format == .json { bytes.append(UInt8(ascii: "}")) }
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    private mutating func appendKey(_ key: String) {
        switch format {
        case .json:
            bytes.append(UInt8(ascii: ","))
            JSONWriter.appendString(key, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
        case .text:
            bytes.append(UInt8(ascii: " "))
            bytes.append(contentsOf: key.utf8)
            bytes.append(UInt8(ascii: "="))
        }
    }

    private mutating func appendString(_ string: String) {
        if format == .json { JSONWriter.appendString(string, to: &bytes) } else { JSONWriter.appendRaw(string, to: &bytes) }
    }

    private mutating func appendNumber(_ number: Double) {
        if number.isFinite || format == .text {
            JSONWriter.appendRaw(String(describing: number), to: &bytes)
        } else {
            appendString(number.description)
        }
    }

    /// The other integer types' digits; a cast to a protocol costs far more than to a type, so
    /// the common ones are tried first.
    private static func integerDigits(_ convertible: any CustomStringConvertible & Sendable) -> String? {
        if let integer = convertible as? Int { return String(integer) }
        if let integer = convertible as? Int32 { return String(integer) }
        if let integer = convertible as? any BinaryInteger { return String(describing: integer) }
        return nil
    }
}

/// UTC timestamps from epoch seconds, without Foundation's formatters or a time zone database.
enum Timestamp {
    /// Appends `2026-11-25T14:39:21.123Z` (once per log line: no strings).
    static func appendISO8601(seconds: Int64, milliseconds: Int, to bytes: inout [UInt8]) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        // Filled in place, then appended at once: the array checks its storage once, not per digit.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48) { text in
            var index = 0
            func put(_ value: Int, _ width: Int, then separator: Unicode.Scalar?) {
                var rest = value
                for offset in stride(from: width - 1, through: 0, by: -1) {
                    text[index + offset] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10)
                    rest /= 10
                }
                index += width
                if let separator {
                    text[index] = UInt8(ascii: separator)
                    index += 1
                }
            }
            if year >= 0, year <= 9999 {
                put(Int(year), 4, then: "-")
            } else {
                for byte in "\(year)-".utf8 {
                    text[index] = byte
                    index += 1
                }
            }
            put(month, 2, then: "-")
            put(day, 2, then: "T")
            put(secondOfDay / 3600, 2, then: ":")
            put(secondOfDay % 3600 / 60, 2, then: ":")
            put(secondOfDay % 60, 2, then: ".")
            put(milliseconds, 3, then: "Z")
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: text[..<index]))
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
