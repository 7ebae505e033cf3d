/// An inline keyboard as services describe it and the Bot API takes it.
public struct InlineKeyboard: Sendable, Equatable, Decodable {
    public struct Button: Sendable, Equatable, Decodable {
        public var text: String
        /// Data sent back when pressed (a callback button)…
        public var callbackData: String?
        /// …or a link the button opens.
        public var url: String?

        public init(text: String, callbackData: String? = nil, url: String? = nil) {
            self.text = text
            self.callbackData = callbackData
            self.url = url
        }

        private enum CodingKeys: String, CodingKey {
            case text, url
            case callbackData = "callback_data"
        }
    }

    public var rows: [[Button]]

    public init(rows: [[Button]]) {
        self.rows = rows
    }

    public init(from decoder: any Decoder) throws {
        rows = try decoder.singleValueContainer().decode([[Button]].self)
    }

    /// The Bot API's `reply_markup` object.
    var replyMarkupJSON: [UInt8] {
        var bytes = Array(#"{"inline_keyboard":["#.utf8)
        for (rowIndex, row) in rows.enumerated() {
            if rowIndex > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(UInt8(ascii: "["))
            for (index, button) in row.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                var writer = JSONWriter(capacity: 64)
                writer.field("text", button.text)
                if let data = button.callbackData { writer.field("callback_data", data) }
                if let url = button.url { writer.field("url", url) }
                bytes += writer.finish()
            }
            bytes.append(UInt8(ascii: "]"))
        }
        bytes += Array("]}".utf8)
        return bytes
    }
}
