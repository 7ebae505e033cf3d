#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What a service answers: actions to carry out in order, and optionally the user's internal id.
/// The contract is described in the Service Contracts article.
public struct ServiceAnswer: Sendable, Equatable {
    public enum Action: Sendable, Equatable {
        /// A message to the update's chat, or to `chatID` (another user, another chat): that one
        /// goes through the outbound path, paced in its own chat's window.
        case sendMessage(text: String, keyboard: InlineKeyboard?, chatID: Int64? = nil)
        /// Edits the message whose button was pressed: its text, its keyboard, or both.
        case editMessage(text: String?, keyboard: InlineKeyboard?)
        case answerCallback(text: String?, showAlert: Bool)
        case setState(JSONValue)
        case clearState
    }

    public var actions: [Action]
    public var internalUserID: String?

    public init(actions: [Action], internalUserID: String? = nil) {
        self.actions = actions
        self.internalUserID = internalUserID
    }

    public static let maxActions = 10
    /// The longest text of one action, in UTF-16 code units as Telegram counts them (a count of
    /// characters would let one character with megabytes of combining marks through).
    public static let maxTextUTF16Units = 20_000
    /// The largest answer read from a service; the client stops reading past it.
    public static let maxAnswerBytes = 1 << 20
    /// The deepest nesting of arrays and objects accepted: the contract's shape needs 5, a
    /// conversation state a few more. Checked before decoding, which recurses per level.
    public static let maxNesting = 32
    public static let maxStateBytes = 16_384
    public static let maxKeyboardRows = 20
    public static let maxButtonsPerRow = 8
    /// Telegram takes at most 64 bytes of callback data; longer data (up to this) is kept in
    /// Redis and the button carries a token (see ``CallbackDataToken``).
    public static let maxCallbackDataBytes = 1024

    /// Parses and validates a service's answer. Anything that does not validate is a service error.
    public static func parse(_ body: [UInt8], isCallback: Bool) -> Result<ServiceAnswer, ServiceCallError> {
        guard body.count <= maxAnswerBytes else { return .failure(.tooLarge) }
        guard !JSONNesting.exceeds(maxNesting, in: body) else { return .failure(.invalidAnswer) }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(body))
        } catch {
            return .failure(.invalidAnswer)
        }
        guard wire.actions.count <= maxActions else { return .failure(.invalidAnswer) }
        var actions: [Action] = []
        for action in wire.actions {
            guard let converted = action.validated(isCallback: isCallback) else { return .failure(.invalidAnswer) }
            actions.append(converted)
        }
        if let id = wire.internalUserID, !(1...128).contains(id.utf8.count) { return .failure(.invalidAnswer) }
        return .success(ServiceAnswer(actions: actions, internalUserID: wire.internalUserID))
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
        let state: JSONValue?
        let chatID: Int64?

        private enum CodingKeys: String, CodingKey {
            case type, text, keyboard, state
            case showAlert = "show_alert"
            case chatID = "chat_id"
        }

        func validated(isCallback: Bool) -> Action? {
            if let text, text.isEmpty || text.utf16.count > ServiceAnswer.maxTextUTF16Units { return nil }
            if let keyboard, !ServiceAnswer.isValid(keyboard) { return nil }
            if let chatID, chatID == 0 || type != "send_message" { return nil }
            switch type {
            case "send_message":
                guard let text else { return nil }
                return .sendMessage(text: text, keyboard: keyboard, chatID: chatID)
            case "edit_message":
                guard isCallback, text != nil || keyboard != nil else { return nil }
                return .editMessage(text: text, keyboard: keyboard)
            case "answer_callback":
                guard isCallback, (text?.utf16.count ?? 0) <= 200 else { return nil }
                return .answerCallback(text: text, showAlert: showAlert ?? false)
            case "set_state":
                guard let state, case .object = state, state.serialized.count <= ServiceAnswer.maxStateBytes else { return nil }
                return .setState(state)
            case "clear_state":
                return .clearState
            default:
                return nil
            }
        }
    }

    /// A keyboard a service may send: bounded rows and buttons, each with text and exactly one
    /// of callback data (not a token's) or a link.
    static func isValid(_ keyboard: InlineKeyboard) -> Bool {
        guard keyboard.rows.count <= ServiceAnswer.maxKeyboardRows else { return false }
        return keyboard.rows.allSatisfy { row in
            !row.isEmpty && row.count <= ServiceAnswer.maxButtonsPerRow
                && row.allSatisfy { button in
                    guard !button.text.isEmpty else { return false }
                    switch (button.callbackData, button.url) {
                    case (let data?, nil):
                        return (1...ServiceAnswer.maxCallbackDataBytes).contains(data.utf8.count)
                            && !data.hasPrefix(CallbackDataToken.marker)
                    case (nil, let url?): return url.hasPrefix("https://") || url.hasPrefix("http://") || url.hasPrefix("tg://")
                    default: return false
                    }
                }
        }
    }
}

/// Why a service call produced no usable answer. `shortDescription` is bounded for logs and labels.
public struct ServiceCallError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Code: String, Sendable {
        case timeout, refused
        case transport = "transport_failed"
        case badStatus = "bad_status"
        case invalidAnswer = "invalid_answer"
        case tooLarge = "answer_too_large"
        case circuitOpen = "circuit_open"
        case unknownService = "unknown_service"
    }

    private let code: Code

    public static let timeout = ServiceCallError(code: .timeout)
    /// The connection was refused: the request never reached the service.
    public static let refused = ServiceCallError(code: .refused)
    public static let transport = ServiceCallError(code: .transport)
    public static let badStatus = ServiceCallError(code: .badStatus)
    public static let invalidAnswer = ServiceCallError(code: .invalidAnswer)
    /// The answer was over ``ServiceAnswer/maxAnswerBytes``: not read further.
    public static let tooLarge = ServiceCallError(code: .tooLarge)
    /// Failing fast: the service failed repeatedly and its circuit is open.
    public static let circuitOpen = ServiceCallError(code: .circuitOpen)
    public static let unknownService = ServiceCallError(code: .unknownService)

    private init(code: Code) { self.code = code }

    public var shortDescription: String { code.rawValue }
    public var description: String { shortDescription }
}
