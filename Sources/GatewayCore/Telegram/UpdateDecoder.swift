#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Turns a webhook body into an `Update`, or says why it cannot.
///
/// Any byte sequence is a valid input: the result is an update or an `UpdateDecodingError`.
public struct UpdateDecoder: Sendable {
    public init() {}

    public func decode(_ body: [UInt8]) -> Result<Update, UpdateDecodingError> {
        if body.isEmpty { return .failure(.emptyBody) }
        do {
            return .success(try JSONDecoder().decode(Update.self, from: Data(body)))
        } catch let error as DecodingError {
            return .failure(UpdateDecodingError(error))
        } catch {
            return .failure(.invalidJSON)
        }
    }
}

/// Why a webhook body is not an update. `shortDescription` is safe for logs: it never holds
/// a byte of the body.
public struct UpdateDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case emptyBody = "empty_body"
        case invalidJSON = "invalid_json"
        case notAnObject = "not_an_object"
        case missingUpdateID = "missing_update_id"
        case invalidPayload = "invalid_payload"
    }

    private let code: Code

    public static let emptyBody = UpdateDecodingError(code: .emptyBody)
    public static let invalidJSON = UpdateDecodingError(code: .invalidJSON)
    public static let notAnObject = UpdateDecodingError(code: .notAnObject)
    public static let missingUpdateID = UpdateDecodingError(code: .missingUpdateID)
    public static let invalidPayload = UpdateDecodingError(code: .invalidPayload)

    private init(code: Code) { self.code = code }

    init(_ error: DecodingError) {
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            self = .invalidJSON
        case .keyNotFound(let key, let context) where context.codingPath.isEmpty:
            self = key.stringValue == "update_id" ? .missingUpdateID : .invalidPayload
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            switch context.codingPath.map(\.stringValue) {
            case []: self = .notAnObject
            case ["update_id"]: self = .missingUpdateID
            default: self = .invalidPayload
            }
        default:
            self = .invalidPayload
        }
    }

    public var shortDescription: String { code.rawValue }
    public var description: String { shortDescription }
}
