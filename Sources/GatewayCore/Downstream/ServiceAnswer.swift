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
        /// The conversation state to store: a JSON object as the session keeps it, compact
        /// JSON text with its keys sorted.
        case setState(String)
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
    /// Read straight from the bytes; what it accepts is what Foundation's `JSONDecoder` accepted
    /// before it (the unit tests and the `service-answer` fuzz target check it against that
    /// decoder, kept in the test support).
    public static func parse(_ body: [UInt8], isCallback: Bool) -> Result<ServiceAnswer, ServiceCallError> {
        guard body.count <= maxAnswerBytes else { return .failure(.tooLarge) }
        guard !JSONNesting.exceeds(maxNesting, in: body) else { return .failure(.invalidAnswer) }
        let read = body.withUnsafeBufferPointer { bytes in try? JSONDocument(bytes).serviceAnswer() }
        guard let read else { return .failure(.invalidAnswer) }
        return validated(read.actions, internalUserID: read.internalUserID, isCallback: isCallback)
    }

    /// One action as a service wrote it, before it is checked against the contract.
    public struct WireAction: Sendable, Equatable {
        public var type: String
        public var text: String?
        public var keyboard: InlineKeyboard?
        public var showAlert: Bool?
        /// Any JSON value, as compact text: the contract takes an object only.
        public var state: String?
        public var chatID: Int64?

        public init(
            type: String, text: String? = nil, keyboard: InlineKeyboard? = nil, showAlert: Bool? = nil, state: String? = nil,
            chatID: Int64? = nil
        ) {
            self.type = type
            self.text = text
            self.keyboard = keyboard
            self.showAlert = showAlert
            self.state = state
            self.chatID = chatID
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
                guard let state, state.utf8.first == UInt8(ascii: "{"), state.utf8.count <= ServiceAnswer.maxStateBytes else { return nil }
                return .setState(state)
            case "clear_state":
                return .clearState
            default:
                return nil
            }
        }
    }

    /// An answer as read, checked against the contract.
    public static func validated(_ wire: [WireAction], internalUserID: String?, isCallback: Bool) -> Result<ServiceAnswer, ServiceCallError> {
        guard wire.count <= maxActions else { return .failure(.invalidAnswer) }
        var actions: [Action] = []
        for action in wire {
            guard let converted = action.validated(isCallback: isCallback) else { return .failure(.invalidAnswer) }
            actions.append(converted)
        }
        if let id = internalUserID, !(1...128).contains(id.utf8.count) { return .failure(.invalidAnswer) }
        return .success(ServiceAnswer(actions: actions, internalUserID: internalUserID))
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

/// The answer's fields, read as the `Decodable` types before them read them: `actions` an array
/// of objects, `internal_user_id` a string; in an action `type` a string, `text` a string,
/// `keyboard` rows of buttons, `show_alert` a boolean, `state` any value and `chat_id` an
/// integer, each but `type` absent or null when not given. Other fields are skipped unread. The
/// state is written out as it is read, not kept as a value.
extension JSONDocument {
    fileprivate func serviceAnswer() throws(ReadError) -> (actions: [ServiceAnswer.WireAction], internalUserID: String?) {
        let fields = try requiredObject(at: root)
        let elements = try elements(at: fields.value(of: "actions"))
        // Too many is refused whatever they hold: a hostile answer's thousands are not read.
        guard elements.count <= ServiceAnswer.maxActions else { throw .mismatch }
        var actions: [ServiceAnswer.WireAction] = []
        for element in elements {
            actions.append(try action(at: element))
        }
        return (actions, try optional(fields.value(of: "internal_user_id"), string))
    }

    private func action(at index: Int) throws(ReadError) -> ServiceAnswer.WireAction {
        let fields = try requiredObject(at: index)
        return ServiceAnswer.WireAction(
            type: try string(at: fields.value(of: "type")), text: try optional(fields.value(of: "text"), string),
            keyboard: try optional(fields.value(of: "keyboard"), keyboard), showAlert: try optional(fields.value(of: "show_alert"), bool),
            state: try optional(fields.value(of: "state"), state),
            chatID: try optional(fields.value(of: "chat_id"), int64))
    }

    private func keyboard(at index: Int?) throws(ReadError) -> InlineKeyboard {
        var rows: [[InlineKeyboard.Button]] = []
        for row in try elements(at: index) {
            var buttons: [InlineKeyboard.Button] = []
            for button in try elements(at: row) {
                let fields = try requiredObject(at: button)
                buttons.append(
                    InlineKeyboard.Button(
                        text: try string(at: fields.value(of: "text")), callbackData: try optional(fields.value(of: "callback_data"), string),
                        url: try optional(fields.value(of: "url"), string)))
            }
            rows.append(buttons)
        }
        return InlineKeyboard(rows: rows)
    }

    /// The state's value as compact JSON text: what ``JSONValue`` wrote of it (its
    /// `serialized`) when the gateway read it into one, without building it.
    private func state(at index: Int?) throws(ReadError) -> String {
        guard let index else { throw .mismatch }
        var text: [UInt8] = []
        try writeState(at: index, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    /// Writes the value at `index` as ``JSONValue`` read and wrote it: of an object's repeated
    /// keys (equal as Swift's strings are) the first counts, as written, and the keys are sorted
    /// as ``JSONValue/precedes(_:_:)`` sorts them; a number is an integer where it has an exact
    /// Int64 value, else a finite Double; strings are decoded, then escaped again.
    private func writeState(at index: Int, to text: inout [UInt8]) throws(ReadError) {
        switch bytes[index] {
        case UInt8(ascii: "n"):
            text += "null".utf8
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            text += (try bool(at: index) ? "true" : "false").utf8
        case UInt8(ascii: "\""):
            JSONWriter.appendString(try string(at: index), to: &text)
        case UInt8(ascii: "["):
            text.append(UInt8(ascii: "["))
            for (position, element) in try elements(at: index).enumerated() {
                if position > 0 { text.append(UInt8(ascii: ",")) }
                try writeState(at: element, to: &text)
            }
            text.append(UInt8(ascii: "]"))
        case UInt8(ascii: "{"):
            text.append(UInt8(ascii: "{"))
            for (position, field) in try object(at: index).all.sorted(by: { JSONValue.precedes($0.name, $1.name) }).enumerated() {
                if position > 0 { text.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(field.name, to: &text)
                text.append(UInt8(ascii: ":"))
                try writeState(at: field.value, to: &text)
            }
            text.append(UInt8(ascii: "}"))
        default:
            guard let number = try number(at: index) else { throw .mismatch }
            if let integer = Self.integer(number.digits, shape: number.shape) {
                JSONWriter.appendDecimal(integer, to: &text)
            } else {
                guard let double = Double(String(decoding: number.digits, as: UTF8.self)), double.isFinite else { throw .mismatch }
                text += String(double).utf8
            }
        }
    }
}
