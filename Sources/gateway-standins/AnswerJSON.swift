import Foundation

/// The services' answers as JSON text, written here rather than by JSONSerialization, whose
/// writer took a tenth of the machine in `scripts/bench`'s service row (the stand-in shares the
/// two cores with what it measures). Only what the answers hold: strings, integers, booleans,
/// arrays and objects (keys sorted); anything else is written as null. Independent of the
/// gateway's own JSON code, so a fault there is not mirrored here.
enum AnswerJSON {
    static func data(_ value: Any) -> Data {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(value, to: &out)
        return Data(out)
    }

    private static func write(_ value: Any, to out: inout [UInt8]) {
        switch value {
        case let text as String:
            string(text, to: &out)
        case let flag as Bool where type(of: value) == Bool.self:
            out += Array((flag ? "true" : "false").utf8)
        case let number as Int:
            out += Array(String(number).utf8)
        case let object as [String: Any]:
            out.append(UInt8(ascii: "{"))
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                string(key, to: &out)
                out.append(UInt8(ascii: ":"))
                write(object[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        case let array as [Any]:
            out.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        default:
            out += Array("null".utf8)
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8.
    private static func string(_ text: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out += [UInt8(ascii: "\\"), byte]
            case UInt8(ascii: "\n"):
                out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0..<0x20:
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            default:
                out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
