import GatewayCore

/// What the responder reads from a request's FastCGI parameters (any bytes nginx or a client
/// on the socket sends): the path, and the head the pipeline checks before reading the body.
public enum FastCGIParameters {
    /// `lookup` gives a parameter's bytes by name. Values that are not what they should be are
    /// treated as absent (a bad `CONTENT_LENGTH`) or replaced (a bad `REQUEST_ID`).
    public static func head(acceptedAt: UInt64, _ lookup: (StaticString) -> [UInt8]?) -> (uri: String?, head: WebhookHead) {
        let uri = lookup("DOCUMENT_URI").map { String(decoding: $0, as: UTF8.self) }
        let method = lookup("REQUEST_METHOD").map { String(decoding: $0, as: UTF8.self) } ?? ""
        let contentLength = lookup("CONTENT_LENGTH").flatMap { Int(String(decoding: $0, as: UTF8.self)) }.flatMap { $0 >= 0 ? $0 : nil }
        let head = WebhookHead(
            method: method, secretToken: lookup("HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN"), contentLength: contentLength,
            requestID: RequestID.sanitized(lookup("REQUEST_ID")) ?? RequestID.make(), acceptedAt: acceptedAt,
            authorization: lookup("HTTP_AUTHORIZATION"))
        return (uri, head)
    }
}
