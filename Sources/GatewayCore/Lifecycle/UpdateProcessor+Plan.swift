import CoreMetrics
import Logging

/// Plan: the Bot API calls that answer a routed update, from the gateway itself or from the
/// route's service, called within what the deadline leaves.
extension UpdateProcessor {
    /// The gateway's own answer, for routes no service answers; nil for service routes.
    func ownAnswer(to update: Update, route: Route) -> (plan: ReplyPlan, outcome: RequestOutcome)? {
        switch route {
        case .unknownCommand:
            guard let chatID = update.chat?.id else { return (ReplyPlan(methods: []), .ignored) }
            return (ReplyPlan(methods: [.sendMessage(chatID: chatID, text: settings.texts.unknownCommand)]), .replied)
        case .unknownCallback:
            guard case .callbackQuery(let query) = update.content else { return (ReplyPlan(methods: []), .ignored) }
            return (
                ReplyPlan(methods: [.answerCallbackQuery(callbackQueryID: query.id, text: settings.texts.unknownCallback, showAlert: false)]),
                .replied
            )
        case .ignored, .command(_, .generic), .text(.generic):
            return (ReplyPlan(methods: []), .ignored)
        case .callback(let prefix, .generic):
            return (.forGenericCallback(prefix: prefix, update: update), .replied)
        case .command(_, .service), .callback(_, .service), .text(.service):
            return nil
        }
    }

    /// Calls the route's service and turns its answer into a plan; a failing service (or one
    /// the deadline leaves no time for) gets the user the generic apology.
    func planAnswer(
        to update: Update, route: Route, session: Session?, services: any ServiceClient, context: inout UpdateContext
    ) -> (ReplyPlan, RequestOutcome) {
        if let own = ownAnswer(to: update, route: route) { return own }
        guard case .service(let service) = route.target else { return (ReplyPlan(methods: []), .ignored) }
        let request = ServiceRequest(requestID: context.requestID, update: update, route: route, session: session)
        let started = clock.now()
        let failure: ServiceCallError
        do {
            let body = try services.call(service, body: request.body, deadline: context.deadline)
            switch ServiceAnswer.parse(body, isCallback: update.type == .callbackQuery) {
            case .success(let answer):
                recordServiceTime(service, since: started, context: &context)
                return (.forAnswer(answer, to: update), .replied)
            case .failure(let error):
                failure = error
            }
        } catch {
            failure = error
        }
        recordServiceTime(service, since: started, context: &context)
        context.logger.warning(
            "service call failed; the user gets the generic apology",
            metadata: ["service": "\(service)", LogKey.error: "\(failure.shortDescription)"])
        Counter(label: GatewayMetric.serviceErrors, dimensions: [("service", service.rawValue), ("error", failure.shortDescription)]).increment()
        return (.forFailure(of: update, texts: settings.texts), .serviceFailed)
    }

    private func recordServiceTime(_ service: ServiceName, since started: UInt64, context: inout UpdateContext) {
        let now = clock.now()
        let elapsed = now > started ? now - started : 0
        Timer(label: GatewayMetric.serviceSeconds, dimensions: [("service", service.rawValue)]).recordNanoseconds(Int64(clamping: elapsed))
        context.line.serviceMilliseconds = Double(elapsed / 1000) / 1000
    }
}
