#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a service asks the gateway to send: messages to chats (or to users by their internal
/// id), the body of `POST /telegram-gateway/send`. See the Service Contracts article.
public struct OutboundRequest: Sendable, Equatable {
    public enum Recipients: Sendable, Equatable {
        /// Telegram chat ids (a user's id is their private chat's).
        case chats([Int64])
        /// The gateway's internal user ids, resolved through the live sessions.
        case internalUsers([String])
    }

    public var recipients: Recipients
    /// Messages, each a text (split as usual past 4,096 UTF-16 units) with an optional keyboard.
    public var messages: [(text: String, keyboard: InlineKeyboard?)]
    /// The same key within DEDUPE_TTL is the same request: stored and sent once.
    public var idempotencyKey: String?

    public static let maxRecipients = 10_000
    public static let maxMessages = 10
    public static let maxIdempotencyKeyBytes = 128

    public init(recipients: Recipients, messages: [(text: String, keyboard: InlineKeyboard?)], idempotencyKey: String? = nil) {
        self.recipients = recipients
        self.messages = messages
        self.idempotencyKey = idempotencyKey
    }

    public static func == (lhs: OutboundRequest, rhs: OutboundRequest) -> Bool {
        lhs.recipients == rhs.recipients && lhs.idempotencyKey == rhs.idempotencyKey && lhs.messages.map(\.text) == rhs.messages.map(\.text)
            && lhs.messages.map(\.keyboard) == rhs.messages.map(\.keyboard)
    }

    /// Parses and validates a body; the failure says what to change, for the developer who sent it.
    public static func parse(_ body: [UInt8]) -> Result<OutboundRequest, OutboundRequestError> {
        guard !JSONNesting.exceeds(ServiceAnswer.maxNesting, in: body) else { return .failure(.init("the body nests too deep")) }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(body))
        } catch let error as DecodingError {
            return .failure(.init(describing: error))
        } catch {
            return .failure(.init("the body is not JSON"))
        }
        let recipients: Recipients
        switch (wire.chatIDs, wire.internalUserIDs) {
        case (let ids?, nil):
            guard !ids.isEmpty else { return .failure(.init("chat_ids is empty")) }
            guard ids.count <= maxRecipients else { return .failure(.init("chat_ids has \(ids.count) ids; at most \(maxRecipients) in one request")) }
            guard !ids.contains(0) else { return .failure(.init("chat_ids: 0 is not a chat id")) }
            recipients = .chats(ids)
        case (nil, let ids?):
            guard !ids.isEmpty else { return .failure(.init("internal_user_ids is empty")) }
            guard ids.count <= maxRecipients else {
                return .failure(.init("internal_user_ids has \(ids.count) ids; at most \(maxRecipients) in one request"))
            }
            guard ids.allSatisfy({ (1...128).contains($0.utf8.count) }) else { return .failure(.init("internal_user_ids: each id is 1-128 bytes")) }
            recipients = .internalUsers(ids)
        case (nil, nil):
            return .failure(.init("give chat_ids or internal_user_ids"))
        case (.some, .some):
            return .failure(.init("give chat_ids or internal_user_ids, not both"))
        }
        guard !wire.actions.isEmpty else { return .failure(.init("actions is empty")) }
        guard wire.actions.count <= maxMessages else { return .failure(.init("actions has \(wire.actions.count); at most \(maxMessages)")) }
        var messages: [(text: String, keyboard: InlineKeyboard?)] = []
        for (index, action) in wire.actions.enumerated() {
            guard action.type == "send_message" else {
                return .failure(.init("actions[\(index)].type: '\(action.type.prefix(40))' is not sent outbound; use send_message"))
            }
            guard let text = action.text, !text.isEmpty else { return .failure(.init("actions[\(index)].text is missing or empty")) }
            guard text.utf16.count <= ServiceAnswer.maxTextUTF16Units else {
                return .failure(.init("actions[\(index)].text has \(text.utf16.count) UTF-16 units; at most \(ServiceAnswer.maxTextUTF16Units)"))
            }
            if let keyboard = action.keyboard, !ServiceAnswer.isValid(keyboard) {
                return .failure(.init("actions[\(index)].keyboard: rows of 1-8 buttons, each with text and callback_data (1-1024 bytes) or a url"))
            }
            messages.append((text, action.keyboard))
        }
        if let key = wire.idempotencyKey {
            guard (1...maxIdempotencyKeyBytes).contains(key.utf8.count) else {
                return .failure(.init("idempotency_key is 1-\(maxIdempotencyKeyBytes) bytes"))
            }
        }
        return .success(OutboundRequest(recipients: recipients, messages: messages, idempotencyKey: wire.idempotencyKey))
    }

    private struct Wire: Decodable {
        let chatIDs: [Int64]?
        let internalUserIDs: [String]?
        let actions: [WireAction]
        let idempotencyKey: String?

        private enum CodingKeys: String, CodingKey {
            case actions
            case chatIDs = "chat_ids"
            case internalUserIDs = "internal_user_ids"
            case idempotencyKey = "idempotency_key"
        }
    }

    private struct WireAction: Decodable {
        let type: String
        let text: String?
        let keyboard: InlineKeyboard?
    }
}

/// Why an outbound request was refused (400): a sentence for the developer who sent it, naming
/// the field. Never holds the request's text.
public struct OutboundRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String

    init(_ reason: String) {
        self.reason = reason
    }

    init(describing error: DecodingError) {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            reason = "the body is not JSON"
        case .keyNotFound(let key, let context):
            let at = path(context)
            reason = "\(at.isEmpty ? "" : at + ": ")\(key.stringValue) is missing"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            let at = path(context)
            reason = at.isEmpty ? "the body must be a JSON object" : "\(at): expected \(Self.name(of: type))"
        case .dataCorrupted(let context):
            reason = "\(path(context)): not a valid value"
        @unknown default:
            reason = "the body does not have the expected shape"
        }
    }

    private static func name(of type: Any.Type) -> String {
        switch type {
        case is Int64.Type, is Int.Type: "an integer"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        default: "a different value"
        }
    }

    public var description: String { reason }
}
