import Testing

@testable import GatewayCore

@Suite struct JSONBytesTests {
    /// The byte-at-a-time search the word-at-a-time one must agree with.
    private func reference(_ bytes: [UInt8], from index: Int) -> Int {
        bytes[index...].firstIndex { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") } ?? bytes.count
    }

    @Test func quoteOrBackslashIsFoundAtEveryPlaceOfAWord() {
        // Near misses around both bytes ('!' '#' '[' ']'), bytes with the high bit set, and a
        // quote or backslash at every offset of every length, searched from every start.
        let fillers: [UInt8] = [0x21, 0x23, 0x5B, 0x5D, 0xA2, 0xDC, 0x80, 0xFF, 0x00, 0x61]
        for length in 0...27 {
            for place in -1..<length {
                for found in [UInt8(ascii: "\""), UInt8(ascii: "\\")] {
                    var bytes = (0..<length).map { fillers[($0 * 7 + length) % fillers.count] }
                    if place >= 0 { bytes[place] = found }
                    for start in 0...length {
                        let got = bytes.withUnsafeBufferPointer { JSONBytes.nextQuoteOrBackslash($0, from: start) }
                        #expect(got == reference(bytes, from: start), "length \(length), place \(place), start \(start)")
                    }
                }
            }
        }
    }

    @Test func twoInOneWordFindTheFirst() {
        for first in 0..<16 {
            for second in (first + 1)..<17 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 17)
                bytes[first] = UInt8(ascii: "\\")
                bytes[second] = UInt8(ascii: "\"")
                #expect(bytes.withUnsafeBufferPointer { JSONBytes.nextQuoteOrBackslash($0, from: 0) } == first)
                bytes[first] = UInt8(ascii: "\"")
                bytes[second] = UInt8(ascii: "\\")
                #expect(bytes.withUnsafeBufferPointer { JSONBytes.nextQuoteOrBackslash($0, from: 0) } == first)
            }
        }
    }

    @Test(
        arguments: [
            (#""""#, 2), (#""abc"x"#, 5), (#""a\"b""#, 6), (#""\\""#, 4), (#""\u0022""#, 8), (#""\u00e9 long enough to span words""#, 34),
            (#""unclosed"#, nil), (#""ends in a backslash\"#, nil), (#""\u12"#, nil), (#""a\\\"b\\" tail"#, 10),
        ] as [(String, Int?)])
    func stringsAreSkippedPastTheirClosingQuote(text: String, end: Int?) {
        let bytes = Array(text.utf8)
        #expect(bytes.withUnsafeBufferPointer { JSONBytes.skipString($0, 0) } == end)
    }

    @Test func theScanRecordsWhereEachContainerEnds() throws {
        let bodies =
            Fixtures.everyType.map(\.body) + [
                #"{"a":[1,2,],"b":{"c":{"d":[[],[{}],[[1]]]}},}"#, " [ { \"x\" : [ 1 , { } ] } , [ ] ] ",
                #"{"s":"{[\"]}","t":["]",{"u":"}"}]}"#,
            ]
        for body in bodies {
            let bytes = Array(body.utf8)
            try bytes.withUnsafeBufferPointer { buffer in
                var containers: [(open: Int, end: Int)] = []
                let start = JSONBytes.skipSpace(buffer, 0)
                let end = try #require(JSONBytes.scan(buffer, from: start, containers: &containers), "\(body)")
                #expect(end == JSONBytes.skipValue(buffer, start))
                for (open, end) in containers {
                    #expect(end == JSONBytes.skipValue(buffer, open), "\(body) at \(open)")
                }
                #expect(containers.map(\.open) == containers.map(\.open).sorted())
                let document = try JSONDocument(buffer)
                for (open, _) in containers {
                    #expect(document.end(ofValueAt: open) == JSONBytes.skipValue(buffer, open))
                }
            }
        }
    }

    @Test func containersPastTheRecordedOnesAreWalked() throws {
        let count = JSONBytes.recordedContainers + 50
        let body = "[" + (0..<count).map { "[\($0),{\"k\":[\"\($0)\"]}]" }.joined(separator: ",") + "]"
        let bytes = Array(body.utf8)
        try bytes.withUnsafeBufferPointer { buffer in
            var containers: [(open: Int, end: Int)] = []
            _ = try #require(JSONBytes.scan(buffer, from: 0, containers: &containers))
            #expect(containers.count == JSONBytes.recordedContainers)
            let document = try JSONDocument(buffer)
            let elements = try document.elements(at: document.root)
            #expect(elements.count == count)
            for (number, element) in elements.enumerated() {
                let inner = try document.elements(at: element)
                #expect(try document.int64(at: inner[0]) == Int64(number))
                let fields = try document.object(at: inner[1])
                let strings = try document.elements(at: fields.value(of: "k"))
                #expect(try document.string(at: strings[0]) == "\(number)")
            }
        }
    }
}
