import Foundation
import Logging
import Synchronization
import Testing

@testable import GatewayCore

@Suite struct LogLineHandlerTests {
    @Test func jsonLinesAreOneObjectWithTypedNumbers() {
        let log = RecordingLog()
        var logger = log.logger()
        logger[metadataKey: "request_id"] = "r1"
        logger.info(
            "update handled", metadata: ["update_id": .stringConvertible(Int64(77)), "latency_ms": .stringConvertible(0.25), "outcome": "replied"])
        #expect(
            log.all == [
                #"{"time":"2024-11-25T13:06:40.123Z","level":"info","message":"update handled","latency_ms":0.25,"outcome":"replied","request_id":"r1","update_id":77}"#
                    + "\n"
            ])
    }

    @Test func everyNumberTypeIsWrittenAsItsDigits() throws {
        let log = RecordingLog()
        log.logger().info(
            "x",
            metadata: [
                "a": .stringConvertible(Int64.min), "b": .stringConvertible(Int64.max), "c": .stringConvertible(Int64(-7)),
                "d": .stringConvertible(Int64(0)), "e": .stringConvertible(Int(-42)), "f": .stringConvertible(Int32(5)),
                "g": .stringConvertible(UInt8(200)), "h": .stringConvertible(-1.5), "i": .stringConvertible(Double.nan),
                "j": .stringConvertible(Int64(1_000_000)), "k": .array(["x"]),
            ])
        let line = try #require(log.all.first)
        #expect(
            line.hasSuffix(
                #""a":-9223372036854775808,"b":9223372036854775807,"c":-7,"d":0,"e":-42,"f":5,"g":200,"h":-1.5,"i":"nan","j":1000000,"k":"[\"x\"]"}"#
                    + "\n"), "\(line)")
        #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) != nil)
    }

    @Test func aLinesFieldReplacesTheLoggersOfTheSameKey() {
        let log = RecordingLog()
        var logger = log.logger()
        logger[metadataKey: "outcome"] = "pending"
        logger[metadataKey: "b"] = "logger"
        logger.info("x", metadata: ["outcome": "replied", "a": "line"])
        #expect(log.all.first?.hasSuffix(#""message":"x","a":"line","b":"logger","outcome":"replied"}"# + "\n") == true, "\(log.all)")
        var text = log.logger(format: .text)
        text[metadataKey: "outcome"] = "pending"
        text.info("x", metadata: ["outcome": "replied"])
        #expect(log.all.last == "2024-11-25T13:06:40.123Z INFO x outcome=replied\n")
    }

    @Test func valuesAreEscaped() {
        let log = RecordingLog()
        log.logger().warning("x", metadata: ["k": "quote\" newline\n"])
        #expect(log.all.first?.contains(#""k":"quote\" newline\n""#) == true)
        #expect(log.all.first?.filter { $0 == "\n" }.count == 1)
    }

    @Test func everyCharacterRoundTripsThroughAJSONString() throws {
        // Every control character, quotes and backslashes between runs copied whole, and
        // characters of every UTF-8 length.
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))
        for value in ["", "plain", controls, "a\"b\\c\u{7f}d", "é🙂\u{2028}x\"", String(repeating: "ab\n", count: 100)] {
            var bytes: [UInt8] = []
            JSONWriter.appendString(value, to: &bytes)
            #expect(bytes.allSatisfy { $0 >= 0x20 }, "no raw control byte")
            let decoded = try JSONDecoder().decode(String.self, from: Data(bytes))
            #expect(decoded == value)
        }
    }

    @Test func levelFiltersAndTextFormatReads() {
        let log = RecordingLog()
        let logger = log.logger(level: .warning, format: .text)
        logger.info("dropped")
        logger.error("kept", metadata: ["a": "1"])
        #expect(log.all == ["2024-11-25T13:06:40.123Z ERROR kept a=1\n"])
    }

    /// Every field an update's line may carry, and loggers whose own keys sort before, between
    /// and after them, one of them the same as an update's.
    static let fullLine: UpdateLine = {
        var line = UpdateLine(requestID: "r\"1")
        (line.updateID, line.updateType, line.userID, line.attempt) = (77, .callbackQuery, -5, 2)
        (line.route, line.outcome, line.latencyMilliseconds) = ("callback:x", "replied", 0.25)
        (line.serviceMilliseconds, line.deliveryMilliseconds, line.degraded) = (12.5, .nan, true)
        return line
    }()

    @Test(arguments: LogLineHandler.Format.allCases)
    func anUpdatesTypedLineIsTheLineItsMetadataWouldMake(format: LogLineHandler.Format) {
        let typed = RecordingLog()
        let generic = RecordingLog()
        for line in [Self.fullLine, UpdateLine(requestID: "r2")] {
            for loggerKeys in [[], ["pid"], ["a", "pid", "route", "worker"]] {
                var typedLogger = typed.logger(format: format)
                var genericLogger = generic.logger(format: format)
                for key in loggerKeys {
                    typedLogger[metadataKey: key] = "logger"
                    genericLogger[metadataKey: key] = "logger"
                }
                typedLogger.log(level: .info, "update handled", update: line)
                genericLogger.info("update handled", metadata: line.metadata)
            }
        }
        #expect(typed.all.count == 6)
        #expect(typed.all == generic.all)
        #expect(
            typed.all.first
                == #"{"time":"2024-11-25T13:06:40.123Z","level":"info","message":"update handled","attempt":2,"degraded":"true","delivery_ms":"nan","latency_ms":0.25,"outcome":"replied","request_id":"r\"1","route":"callback:x","service_ms":12.5,"update_id":77,"update_type":"callback_query","user_id":-5}"#
                + "\n" || format == .text, "\(typed.all)")
    }

    @Test func anUpdatesLineRespectsTheLevelAndReachesOtherHandlersAsMetadata() {
        let log = RecordingLog()
        log.logger(level: .warning).log(level: .info, "update handled", update: Self.fullLine)
        #expect(log.all.isEmpty)
        let recorded = RecordingHandler.Events()
        Logger(label: "test") { _ in RecordingHandler(events: recorded) }.log(level: .notice, "update handled", update: Self.fullLine)
        let event = recorded.all.first
        #expect(recorded.all.count == 1 && event?.level == .notice && event?.message == "update handled")
        #expect(event?.metadata[LogKey.requestID] == "r\"1")
        #expect(event?.metadata[LogKey.updateType] == "callback_query")
        #expect(event?.metadata.count == 11)
        #expect(UpdateLine(requestID: "r").metadata == [LogKey.requestID: "r"])
    }

    @Test(arguments: [
        (Int64(0), "1970-01-01T00:00:00.000Z"),
        (951_782_400, "2000-02-29T00:00:00.000Z"),
        (1_732_540_000, "2024-11-25T13:06:40.000Z"),
        (4_102_444_799, "2099-12-31T23:59:59.000Z"),
        (-1, "1969-12-31T23:59:59.000Z"),
        (253_402_300_799, "9999-12-31T23:59:59.000Z"),
        (253_402_300_800, "10000-01-01T00:00:00.000Z"),
    ])
    func timestampsAreUTC(seconds: Int64, expected: String) {
        var bytes: [UInt8] = []
        Timestamp.appendISO8601(seconds: seconds, milliseconds: 0, to: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == expected)
    }
}

/// A handler that is not the gateway's: it keeps each event's level, message and metadata.
private struct RecordingHandler: LogHandler {
    final class Events: Sendable {
        private let events = Mutex<[(level: Logger.Level, message: String, metadata: Logger.Metadata)]>([])
        var all: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { events.withLock { $0 } }
        func append(_ event: (level: Logger.Level, message: String, metadata: Logger.Metadata)) { events.withLock { $0.append(event) } }
    }

    let events: Events
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        events.append((event.level, event.message.description, metadata.merging(event.metadata ?? [:]) { $1 }))
    }
}
