/// 64-bit FNV-1a: a fast, stable, non-cryptographic hash of bytes, for names and ids derived
/// from text (an outbound job's id from its idempotency key, a Redis Functions library's name
/// from its code).
package enum FNV1a {
    /// The algorithm's standard offset basis.
    package static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325

    package static func hash(_ bytes: some Sequence<UInt8>, basis: UInt64 = offsetBasis) -> UInt64 {
        var hash = basis
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }
}
