/// Real-shaped webhook bodies, one per update type, as Telegram sends them (extra fields included).
enum Fixtures {
    static let user = #"{"id":42,"is_bot":false,"first_name":"Ada","last_name":"L","username":"ada","language_code":"en","is_premium":true}"#
    static let privateChat = #"{"id":42,"first_name":"Ada","username":"ada","type":"private"}"#
    static let group = #"{"id":-1001234567890,"title":"Team","type":"supergroup","is_forum":true}"#

    static func message(updateID: Int = 1001, text: String = "hello", entities: String? = nil, chat: String = privateChat) -> String {
        let entityField = entities.map { #","entities":\#($0)"# } ?? ""
        return
            #"{"update_id":\#(updateID),"message":{"message_id":7,"from":\#(user),"chat":\#(chat),"date":1732540000,"text":"\#(text)"\#(entityField),"link_preview_options":{"is_disabled":true}}}"#
    }

    static let command = message(text: "/start ref_abc", entities: #"[{"offset":0,"length":6,"type":"bot_command"}]"#)

    static let editedMessage =
        #"{"update_id":1002,"edited_message":{"message_id":7,"from":\#(user),"chat":\#(privateChat),"date":1732540000,"edit_date":1732540100,"text":"hello again"}}"#
    static let channelPost =
        #"{"update_id":1003,"channel_post":{"message_id":9,"sender_chat":{"id":-1009,"title":"News","type":"channel"},"chat":{"id":-1009,"title":"News","type":"channel"},"date":1732540000,"text":"news"}}"#
    static let callbackWithMessage =
        #"{"update_id":1004,"callback_query":{"id":"4382bfdwdsb323b2d9","from":\#(user),"message":{"message_id":11,"from":{"id":777,"is_bot":true,"first_name":"Bot","username":"some_bot"},"chat":\#(privateChat),"date":1732540000,"text":"Pick one","reply_markup":{"inline_keyboard":[[{"text":"Yes","callback_data":"CONNECT:99"}]]}},"chat_instance":"-1234","data":"CONNECT:99"}}"#
    static let callbackInline =
        #"{"update_id":1005,"callback_query":{"id":"98765","from":\#(user),"inline_message_id":"AAAAAQ","chat_instance":"-55","data":"CONFIRM:1"}}"#
    static let callbackInaccessible =
        #"{"update_id":1006,"callback_query":{"id":"5","from":\#(user),"message":{"chat":\#(privateChat),"message_id":3,"date":0},"chat_instance":"1","data":"SKIP"}}"#
    static let inlineQuery = #"{"update_id":1007,"inline_query":{"id":"q1","from":\#(user),"query":"cats","offset":"","chat_type":"sender"}}"#
    static let myChatMember =
        #"{"update_id":1008,"my_chat_member":{"chat":\#(group),"from":\#(user),"date":1732540000,"old_chat_member":{"status":"left","user":{"id":777,"is_bot":true,"first_name":"Bot"}},"new_chat_member":{"status":"member","user":{"id":777,"is_bot":true,"first_name":"Bot"}}}}"#
    static let chatMember =
        #"{"update_id":1009,"chat_member":{"chat":\#(group),"from":\#(user),"date":1732540000,"old_chat_member":{"status":"member","user":\#(user)},"new_chat_member":{"status":"administrator","user":\#(user),"can_be_edited":false}}}"#
    static let poll =
        #"{"update_id":1010,"poll":{"id":"p1","question":"Lunch?","options":[{"text":"Yes","voter_count":1},{"text":"No","voter_count":0}],"total_voter_count":1,"is_closed":false,"is_anonymous":true,"type":"regular","allows_multiple_answers":false}}"#
    static let messageReaction =
        #"{"update_id":1011,"message_reaction":{"chat":\#(group),"message_id":5,"user":\#(user),"date":1732540000,"old_reaction":[],"new_reaction":[{"type":"emoji","emoji":"👍"}]}}"#
    static let businessMessage =
        #"{"update_id":1012,"business_message":{"message_id":1,"business_connection_id":"bc1","from":\#(user),"chat":\#(privateChat),"date":1732540000,"text":"hi business"}}"#
    static let unknownType = #"{"update_id":1013,"future_thing":{"from":\#(user),"chat":\#(privateChat),"sparkle":true}}"#

    static let everyType: [(name: String, body: String)] = [
        ("message", message()), ("command", command), ("edited_message", editedMessage), ("channel_post", channelPost),
        ("callback_with_message", callbackWithMessage), ("callback_inline", callbackInline),
        ("callback_inaccessible", callbackInaccessible), ("inline_query", inlineQuery), ("my_chat_member", myChatMember),
        ("chat_member", chatMember), ("poll", poll), ("message_reaction", messageReaction),
        ("business_message", businessMessage), ("unknown", unknownType),
    ]
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}
