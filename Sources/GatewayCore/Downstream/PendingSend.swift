/// One Bot API call as it goes out: the method's name and its JSON parameters.
public struct BotCall: Sendable, Equatable {
    public var name: String
    public var parameters: [UInt8]

    public init(name: String, parameters: [UInt8]) {
        self.name = name
        self.parameters = parameters
    }
}

extension BotMethod {
    /// This method as a call to the Bot API.
    public var call: BotCall { BotCall(name: name, parameters: parameters) }

    /// The chat whose sending window paces this method: new messages only (edits and callback
    /// answers change nothing in a chat's flow and Telegram does not limit them the same way).
    public var pacedChatID: Int64? {
        if case .sendMessage(let chatID, _, _) = self { chatID } else { nil }
    }
}

/// A Bot API call that could not go now and waits in its user's outbox (the part of an answer
/// the chat's window did not allow, a call that failed and will be tried again), as kept in the
/// state store. Workers send outboxes in order, paced; nothing is left out for pacing.
public struct PendingSend: Sendable, Equatable {
    /// Unique per call: the request id and the call's place in its answer.
    public let id: String
    public let call: BotCall
    /// The chat whose window paces it; nil when it is not paced.
    public let pacedChatID: Int64?
    /// Failed attempts so far.
    public let attempts: Int
    /// The stored form, which is also its identity in the outbox.
    public let encoded: [UInt8]

    public init(id: String, call: BotCall, pacedChatID: Int64?, attempts: Int = 0) {
        self.id = id
        self.call = call
        self.pacedChatID = pacedChatID
        self.attempts = attempts
        // One line of "v1 ATTEMPTS CHAT METHOD ID", then the parameters as they are: written
        // into one buffer (made per update, for the webhook reply too).
        var encoded: [UInt8] = []
        encoded.reserveCapacity(48 + call.name.utf8.count + id.utf8.count + call.parameters.count)
        JSONWriter.appendLiteral("v1 ", to: &encoded)
        JSONWriter.appendDecimal(Int64(attempts), to: &encoded)
        encoded.append(UInt8(ascii: " "))
        if let pacedChatID { JSONWriter.appendDecimal(pacedChatID, to: &encoded) } else { encoded.append(UInt8(ascii: "-")) }
        encoded.append(UInt8(ascii: " "))
        JSONWriter.appendRaw(call.name, to: &encoded)
        encoded.append(UInt8(ascii: " "))
        JSONWriter.appendRaw(id, to: &encoded)
        encoded.append(UInt8(ascii: "\n"))
        encoded.append(contentsOf: call.parameters)
        self.encoded = encoded
    }

    /// `method`, the `index`th call of the answer to request `requestID`.
    public init(_ method: BotMethod, requestID: String, index: Int) {
        self.init(id: "\(requestID).\(index)", call: method.call, pacedChatID: method.pacedChatID)
    }

    /// The same call with one more failed attempt counted.
    public func failedOnce() -> PendingSend {
        PendingSend(id: id, call: call, pacedChatID: pacedChatID, attempts: attempts + 1)
    }

    /// Reads a stored call back; nil for anything this version did not write.
    public static func decode(_ bytes: [UInt8]) -> PendingSend? {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")), newline < 512 else { return nil }
        let fields = bytes[..<newline].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        guard fields.count == 5, fields[0] == "v1", let attempts = Int(fields[1]), attempts >= 0,
            !fields[3].isEmpty, fields[3].utf8.allSatisfy(Self.isNameByte), !fields[4].isEmpty
        else { return nil }
        let chat: Int64?
        if fields[2] == "-" {
            chat = nil
        } else {
            guard let id = Int64(fields[2]) else { return nil }
            chat = id
        }
        let send = PendingSend(
            id: fields[4], call: BotCall(name: fields[3], parameters: Array(bytes[(newline + 1)...])), pacedChatID: chat,
            attempts: attempts)
        return send.encoded == bytes ? send : nil
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }
}
