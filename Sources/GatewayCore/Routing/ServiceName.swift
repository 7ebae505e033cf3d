/// The name of an internal HTTP service the gateway routes to.
public struct ServiceName: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: String) {
        self.rawValue = rawValue
    }

    public static let conversation = ServiceName("conversation")
    public static let userProfile = ServiceName("user_profile")
    public static let matching = ServiceName("matching")
    public static let notification = ServiceName("notification")

    public var description: String { rawValue }
}
