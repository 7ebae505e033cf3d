import Logging
import Synchronization

@testable import GatewayCore

/// Collects the lines a `LogLineHandler` renders, for tests that read logs.
final class RecordingLog: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }
    var joined: String { all.joined() }

    func logger(level: Logger.Level = .trace, format: LogLineHandler.Format = .json) -> Logger {
        Logger(label: "test") { _ in
            LogLineHandler(level: level, format: format, clock: { (1_732_540_000, 123_000_000) }) { line in
                self.lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) }
            }
        }
    }
}
