import CoreMetrics
import Logging

/// Claim: the state store's one round trip decides whether and how the update is processed.
extension UpdateProcessor {
    enum Claimed {
        /// Answer without processing: a duplicate, an update another responder has, a limited one.
        case answer(WebhookResponse, RequestOutcome)
        /// The same, once the user's outbox is seen to (a redelivery of a finished update whose
        /// outbox note may have been lost: the webhook path writes the note again, a worker
        /// sends the outbox).
        case answerAfterScheduling(WebhookResponse, RequestOutcome)
        /// The user is busy: hand the update to the user's stream (the store counted it).
        case handOver
        /// A worker must wait this long for a webhook request holding the user.
        case busy(milliseconds: Int64)
        /// Process it, with the claim and session the store gave; calls wait in the outbox.
        case proceed(Claim?, Session?, reply: ReplyAdmission, outboxWaiting: Int)
        /// The store did not answer: process without it (fail-open). The begin may have run
        /// all the same, so its claim is finished afterwards.
        case failedOpen(Claim)
    }

    func claim(_ request: BeginRequest, update: Update, state: any StateStore, context: inout UpdateContext) -> Claimed {
        let decision: BeginDecision
        do {
            decision = try state.begin(request, deadline: context.deadline)
        } catch {
            // No rate limit, no session, no dedupe; the store's adapter warns (rate-limited).
            context.line.degraded = true
            return .failedOpen(Claim(updateID: request.updateID, subject: request.subject, token: request.token))
        }
        switch decision {
        case .duplicate(let waiting):
            return waiting > 0 ? .answerAfterScheduling(.acknowledged, .duplicate) : .answer(.acknowledged, .duplicate)
        case .inProgress(let seconds):
            return .answer(.retryLater(seconds: seconds), .deferred)
        case .limited(let warn):
            return .answer(limitedReply(update, warn: warn), .rateLimited)
        case .deferred:
            return .handOver
        case .busy(let milliseconds):
            return .busy(milliseconds: milliseconds)
        case .proceed(let claim, let session, let reply, let waiting):
            return .proceed(claim, session, reply: reply, outboxWaiting: waiting)
        }
    }

    /// A limited message gets the friendly warning once per window; a limited button press is
    /// always answered (with the warning when due) so the button stops spinning.
    func limitedReply(_ update: Update, warn: Bool) -> WebhookResponse {
        switch update.content {
        case .callbackQuery(let query):
            return .webhookReply(.answerCallbackQuery(callbackQueryID: query.id, text: warn ? settings.texts.rateLimited : nil, showAlert: false))
        default:
            guard warn, let chat = update.chat else { return .acknowledged }
            return .webhookReply(.sendMessage(chatID: chat.id, text: settings.texts.rateLimited))
        }
    }
}
