import Logging

/// The fields of the lines about one update (``LogKey``), kept typed while it is handled.
///
/// The stages set them as plain stores; the line every update ends with is rendered from them
/// by ``LogLineHandler`` straight into its buffer, without a `Logger.Metadata` dictionary, a
/// logger copy per field or a cast per value. Any other handler, and every other line about the
/// update, gets them as ordinary metadata (``metadata``).
public struct UpdateLine: Sendable {
    public var requestID: String
    public var updateID: Int64?
    public var updateType: UpdateType?
    public var userID: Int64?
    /// A stream worker's attempt at the entry.
    public var attempt: Int64?
    public var route: String?
    public var outcome: String?
    public var latencyMilliseconds: Double?
    public var serviceMilliseconds: Double?
    public var deliveryMilliseconds: Double?
    /// Set when a dependency failed and the update was handled without it (fail-open).
    public var degraded = false

    public init(requestID: String) {
        self.requestID = requestID
    }

    /// A field's value as a line writes it.
    enum Value {
        case string(String)
        case integer(Int64)
        case number(Double)
    }

    /// The fields, in key order (the order a line's fields are written in).
    enum Field: Int, CaseIterable {
        case attempt, degraded, deliveryMilliseconds, latencyMilliseconds, outcome, requestID, route, serviceMilliseconds, updateID
        case updateType, userID

        var key: String {
            switch self {
            case .attempt: LogKey.attempt
            case .degraded: LogKey.degraded
            case .deliveryMilliseconds: LogKey.deliveryMilliseconds
            case .latencyMilliseconds: LogKey.latencyMilliseconds
            case .outcome: LogKey.outcome
            case .requestID: LogKey.requestID
            case .route: LogKey.route
            case .serviceMilliseconds: LogKey.serviceMilliseconds
            case .updateID: LogKey.updateID
            case .updateType: LogKey.updateType
            case .userID: LogKey.userID
            }
        }

        /// Each field's `,"key":` in a JSON line, by `rawValue`: written once, copied per line.
        static let jsonKeys: [[UInt8]] = allCases.map { Array(#","\#($0.key)":"#.utf8) }
    }

    /// Calls `body` with each field that is set, in key order.
    func forEachField(_ body: (Field, Value) -> Void) {
        if let attempt { body(.attempt, .integer(attempt)) }
        if degraded { body(.degraded, .string("true")) }
        if let deliveryMilliseconds { body(.deliveryMilliseconds, .number(deliveryMilliseconds)) }
        if let latencyMilliseconds { body(.latencyMilliseconds, .number(latencyMilliseconds)) }
        if let outcome { body(.outcome, .string(outcome)) }
        body(.requestID, .string(requestID))
        if let route { body(.route, .string(route)) }
        if let serviceMilliseconds { body(.serviceMilliseconds, .number(serviceMilliseconds)) }
        if let updateID { body(.updateID, .integer(updateID)) }
        if let updateType { body(.updateType, .string(updateType.description)) }
        if let userID { body(.userID, .integer(userID)) }
    }

    /// The fields as metadata, for handlers other than ``LogLineHandler`` and for every line but
    /// the update's last.
    public var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        forEachField { field, value in
            switch value {
            case .string(let string): metadata[field.key] = .string(string)
            case .integer(let integer): metadata[field.key] = .stringConvertible(integer)
            case .number(let number): metadata[field.key] = .stringConvertible(number)
            }
        }
        return metadata
    }
}

extension Logger {
    /// Logs `line` with this logger's metadata: rendered from its typed fields by a
    /// ``LogLineHandler``, given to any other handler as metadata.
    public func log(level: Logger.Level, _ message: String, update line: UpdateLine) {
        guard logLevel <= level else { return }
        if let handler = handler as? LogLineHandler {
            handler.log(level: level, message: message, update: line)
        } else {
            log(level: level, "\(message)", metadata: line.metadata)
        }
    }
}
