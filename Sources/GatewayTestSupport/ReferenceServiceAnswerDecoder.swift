import Foundation
import GatewayCore

/// How the gateway read a service's answer before its byte reader: Foundation's `JSONDecoder`
/// through `Decodable`, then the same checks against the contract. Kept only as the reference
/// the byte reader is checked against (the `service-answer` fuzz target, the contract's unit
/// tests): the same answer, or the same error.
public enum ReferenceServiceAnswerDecoder {
    public static func parse(_ body: [UInt8], isCallback: Bool) -> Result<ServiceAnswer, ServiceCallError> {
        guard body.count <= ServiceAnswer.maxAnswerBytes else { return .failure(.tooLarge) }
        guard !JSONNesting.exceeds(ServiceAnswer.maxNesting, in: body) else { return .failure(.invalidAnswer) }
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(body)) else { return .failure(.invalidAnswer) }
        return ServiceAnswer.validated(wire.actions.map(\.action), internalUserID: wire.internalUserID, isCallback: isCallback)
    }

    /// Whether the byte reader's answer must equal this one's: not for UTF-16 or UTF-32 (a byte
    /// order mark, or a NUL among the first bytes), which JSONDecoder transcodes. The contract's
    /// JSON is UTF-8 (RFC 8259), all the byte reader reads.
    public static func compares(_ body: [UInt8]) -> Bool {
        !(body.prefix(4).contains(0) || body.starts(with: [0xFE, 0xFF]) || body.starts(with: [0xFF, 0xFE]))
    }

    private struct Wire: Decodable {
        let actions: [WireAction]
        let internalUserID: String?

        private enum CodingKeys: String, CodingKey {
            case actions
            case internalUserID = "internal_user_id"
        }
    }

    private struct WireAction: Decodable {
        let type: String
        let text: String?
        let keyboard: InlineKeyboard?
        let showAlert: Bool?
        let state: Value?
        let chatID: Int64?

        private enum CodingKeys: String, CodingKey {
            case type, text, keyboard, state
            case showAlert = "show_alert"
            case chatID = "chat_id"
        }

        var action: ServiceAnswer.WireAction {
            ServiceAnswer.WireAction(
                type: type, text: text, keyboard: keyboard, showAlert: showAlert,
                state: state.map { String(decoding: $0.json.serialized, as: UTF8.self) }, chatID: chatID)
        }
    }

    /// Any JSON value, decoded the way `JSONValue` was.
    private struct Value: Decodable {
        let json: JSONValue

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                json = .null
            } else if let value = try? container.decode(Bool.self) {
                json = .bool(value)
            } else if let value = try? container.decode(Int64.self) {
                json = .integer(value)
            } else if let value = try? container.decode(Double.self) {
                json = .number(value)
            } else if let value = try? container.decode(String.self) {
                json = .string(value)
            } else if let value = try? container.decode([Value].self) {
                json = .array(value.map(\.json))
            } else {
                json = .object(try container.decode([String: Value].self).mapValues(\.json))
            }
        }
    }
}
