import GatewayCore

/// Calls internal services over HTTP with libcurl: one reused handle per service on this thread,
/// the service's own timeout cut to what the update's deadline leaves, answers read up to
/// ``ServiceAnswer/maxAnswerBytes``, and one retry only where it is safe: the connection was
/// refused (nothing was sent) or the service answered 502/503 (it did not process the
/// request), and only while the deadline allows.
public final class CurlServiceClient: ServiceClient {
    private let services: [ServiceName: GatewayConfig.ServiceSettings]
    private let breaker: CircuitBreaker
    private let clock: @Sendable () -> UInt64
    private var clients: [ServiceName: HTTPClient] = [:]

    public init(services: [ServiceName: GatewayConfig.ServiceSettings], breaker: CircuitBreaker, clock: @escaping @Sendable () -> UInt64) {
        self.services = services
        self.breaker = breaker
        self.clock = clock
    }

    public func call(_ service: ServiceName, body: [UInt8], deadline: Deadline) throws(ServiceCallError) -> [UInt8] {
        guard let settings = services[service] else { throw .unknownService }
        // No time left is not the service's failure: its circuit is left alone.
        guard deadline.timeout(cappedAt: settings.timeoutSeconds, at: clock()) != nil else { throw .timeout }
        guard breaker.allows(service) else { throw .circuitOpen }
        do {
            let answer = try exchange(service, settings: settings, body: body, deadline: deadline)
            breaker.recordSuccess(service)
            return answer
        } catch {
            breaker.recordFailure(service)
            throw error
        }
    }

    private func exchange(
        _ service: ServiceName, settings: GatewayConfig.ServiceSettings, body: [UInt8], deadline: Deadline
    ) throws(ServiceCallError) -> [UInt8] {
        let own = Deadline.after(seconds: settings.timeoutSeconds, from: clock()).capped(by: deadline)
        let client = try client(for: service)
        for attempt in 0..<2 {
            guard let remaining = own.timeout(cappedAt: settings.timeoutSeconds, at: clock()) else { throw .timeout }
            let request = HTTPRequest(
                method: "POST", url: settings.url, headers: [("Content-Type", "application/json")], body: body,
                timeoutSeconds: remaining, connectTimeoutSeconds: min(1, remaining), maxResponseBytes: ServiceAnswer.maxAnswerBytes)
            do {
                let response = try client.send(request)
                if (200..<300).contains(response.status) { return response.body }
                if attempt == 0, response.status == 502 || response.status == 503 { continue }
                throw ServiceCallError.badStatus
            } catch let error as HTTPClientError {
                switch error.kind {
                case .connectFailed where attempt == 0: continue
                case .connectFailed: throw .refused
                case .timedOut: throw .timeout
                case .tooLarge: throw .tooLarge
                default: throw .transport
                }
            } catch let error as ServiceCallError {
                throw error
            } catch {
                throw .transport
            }
        }
        throw .refused
    }

    private func client(for service: ServiceName) throws(ServiceCallError) -> HTTPClient {
        if let client = clients[service] { return client }
        guard let client = try? HTTPClient() else { throw .transport }
        clients[service] = client
        return client
    }
}
