import Logging

/// Admit: what can be judged before the update is read. nginx checks the same; the responder
/// may be reachable without nginx, so it checks again.
extension UpdateProcessor {
    /// Checks what is known before the body is read. Returns the rejection to send, or `nil`
    /// when the body should be read and passed to `handle`.
    public func admit(_ head: WebhookHead, logger: Logger) -> WebhookResponse? {
        if head.method != "POST" {
            return reject(head, .rejectedMethod, WebhookResponse(status: 405, headers: [("Allow", "POST")]), logger)
        }
        // The secret is compared in constant time.
        guard let token = head.secretToken, settings.secrets.contains(where: { $0.matches(token) }) else {
            return reject(head, .rejectedSecret, WebhookResponse(status: 403), logger)
        }
        if let length = head.contentLength, length > settings.maxBodyBytes {
            return reject(head, .tooLarge, WebhookResponse(status: 413), logger)
        }
        return nil
    }

    /// Checks the body as read: over the limit gets 413; shorter than its declared length (the
    /// connection broke, a read failed) gets 503, so Telegram delivers the update again rather
    /// than a truncated body being taken for a malformed one and acknowledged.
    func checkBody(_ head: WebhookHead, body: [UInt8], context: UpdateContext) -> WebhookResponse? {
        if body.count > settings.maxBodyBytes {
            return reject(head, .tooLarge, WebhookResponse(status: 413), context.logger)
        }
        if let expected = head.contentLength, body.count < expected {
            context.logger.warning(
                "request body ended early; Telegram will deliver it again",
                metadata: [LogKey.bodyBytes: .stringConvertible(body.count), "expected_bytes": .stringConvertible(expected)])
            return reject(head, .incompleteBody, .retryLater(seconds: 1), context.logger)
        }
        return nil
    }

    func reject(_ head: WebhookHead, _ outcome: RequestOutcome, _ response: WebhookResponse, _ logger: Logger) -> WebhookResponse {
        count(outcome)
        let now = clock.now()
        let latency = now > head.acceptedAt ? Double((now - head.acceptedAt) / 1000) / 1000 : 0
        logger.warning(
            "webhook request rejected",
            metadata: [
                LogKey.requestID: "\(head.requestID)", LogKey.outcome: "\(outcome.rawValue)",
                LogKey.status: .stringConvertible(response.status), LogKey.latencyMilliseconds: .stringConvertible(latency),
            ])
        return response
    }
}
