import CCurl

/// A blocking HTTP client around one libcurl easy handle, reused so connections stay open
/// between calls.
///
/// Thread-confined: each thread owns its clients; the handle is freed in `deinit`.
public final class HTTPClient {
    private let handle: UnsafeMutableRawPointer  // CURL *: libcurl declares it as void
    private let caFile: String?

    /// Once per process, before any thread starts.
    public static func initializeLibrary() {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    }

    /// `caFile` adds a CA bundle (a self-signed certificate in local runs and tests).
    public init(caFile: String? = nil) throws(HTTPClientError) {
        guard let handle = curl_easy_init() else { throw HTTPClientError(kind: .setup, code: -1) }
        self.handle = handle
        self.caFile = caFile
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    private final class Collector {
        var body: [UInt8] = []
        /// The header lines of the last response (a redirect's or a 100's are dropped), as received.
        var headerLines: [UInt8] = []
        var headerBytes = 0
        let maxBodyBytes: Int
        /// Set when the body went over `maxBodyBytes`: the transfer was stopped there.
        var overflowed = false

        init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }
    }

    /// Headers kept per response at most: a peer cannot make the client hold more than this.
    static let maxHeaderBytes = 65_536

    /// libcurl's timeouts in whole milliseconds, never 0 (which libcurl reads as "no timeout").
    static func milliseconds(_ seconds: Double) -> Int {
        guard seconds.isFinite, seconds > 0 else { return 1 }
        return max(1, Int((seconds * 1000).rounded(.up)))
    }

    public func send(_ request: HTTPRequest) throws(HTTPClientError) -> HTTPResponse {
        // Under a millisecond is no time at all: nothing is sent.
        guard request.timeoutSeconds >= 0.001 else { throw HTTPClientError(kind: .timedOut, code: Int32(CURLE_OPERATION_TIMEDOUT.rawValue)) }
        curl_easy_reset(handle)
        let collector = Collector(maxBodyBytes: request.maxResponseBytes)
        var headerList: UnsafeMutablePointer<curl_slist>?
        for header in request.headers { headerList = curl_slist_append(headerList, "\(header.name): \(header.value)") }
        // An empty Expect stops curl from waiting for "100 Continue" on larger bodies.
        headerList = curl_slist_append(headerList, "Expect:")
        defer { curl_slist_free_all(headerList) }

        let context = Unmanaged.passUnretained(collector).toOpaque()
        var code = CURLE_OK
        func set(_ result: CURLcode) { if code == CURLE_OK { code = result } }
        set(ccurl_setopt_string(handle, CURLOPT_URL, request.url))
        set(ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
        set(ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Self.milliseconds(request.timeoutSeconds)))
        set(ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(min(request.connectTimeoutSeconds, request.timeoutSeconds))))
        set(ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList))
        set(
            ccurl_setopt_write_function(handle) { data, size, count, context in
                guard let data, let context else { return 0 }
                let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                guard collector.body.count + size * count <= collector.maxBodyBytes else {
                    // Returning less than given stops the transfer (CURLE_WRITE_ERROR).
                    collector.overflowed = true
                    return 0
                }
                data.withMemoryRebound(to: UInt8.self, capacity: size * count) {
                    collector.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: size * count))
                }
                return size * count
            })
        set(ccurl_setopt_pointer(handle, CURLOPT_WRITEDATA, context))
        set(
            ccurl_setopt_header_function(handle) { data, size, count, context in
                guard let data, let context else { return 0 }
                let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                collector.headerBytes += size * count
                guard collector.headerBytes <= HTTPClient.maxHeaderBytes else { return 0 }
                // Kept as bytes: the gateway's own calls never read a header, so a response's
                // headers are parsed only when asked for (HTTPResponse.headers).
                let line = UnsafeRawBufferPointer(start: data, count: size * count)
                if line.starts(with: "HTTP/".utf8) { collector.headerLines.removeAll(keepingCapacity: true) }  // a new response
                collector.headerLines.append(contentsOf: line)
                return size * count
            })
        set(ccurl_setopt_pointer(handle, CURLOPT_HEADERDATA, context))
        if let caFile { set(ccurl_setopt_string(handle, CURLOPT_CAINFO, caFile)) }
        guard code == CURLE_OK else { throw HTTPClientError(kind: .setup, code: Int32(code.rawValue)) }

        // CURLOPT_POSTFIELDS does not copy the body: it must stay alive until perform returns.
        let result = request.body.withUnsafeBufferPointer { body -> CURLcode in
            if !body.isEmpty || request.method == "POST" {
                ccurl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, body.count)
                ccurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress ?? UnsafePointer(bitPattern: 1)))
            }
            // After POSTFIELDS, which turns the request into a POST: any other method replaces the verb.
            if request.method != "POST" && (request.method != "GET" || !body.isEmpty) {
                ccurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method)
            }
            return curl_easy_perform(handle)
        }
        if collector.overflowed { throw HTTPClientError(kind: .tooLarge, code: Int32(result.rawValue)) }
        guard result == CURLE_OK else { throw HTTPClientError(kind: Self.kind(of: result), code: Int32(result.rawValue)) }
        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headerLines: collector.headerLines, body: collector.body)
    }

    /// Opens (and closes) a connection to `url`'s host without sending a request: whether a
    /// service is reachable, without making it act.
    public func probe(_ url: String, timeoutSeconds: Double) throws(HTTPClientError) {
        curl_easy_reset(handle)
        var code = ccurl_setopt_string(handle, CURLOPT_URL, url)
        if code == CURLE_OK { code = ccurl_setopt_long(handle, CURLOPT_CONNECT_ONLY, 1) }
        if code == CURLE_OK { code = ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1) }
        if code == CURLE_OK { code = ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(timeoutSeconds)) }
        if code == CURLE_OK, let caFile { code = ccurl_setopt_string(handle, CURLOPT_CAINFO, caFile) }
        guard code == CURLE_OK else { throw HTTPClientError(kind: .setup, code: Int32(code.rawValue)) }
        let result = curl_easy_perform(handle)
        // The connect-only connection is not reusable for requests: drop it.
        curl_easy_reset(handle)
        guard result == CURLE_OK else { throw HTTPClientError(kind: Self.kind(of: result), code: Int32(result.rawValue)) }
    }

    private static func kind(of code: CURLcode) -> HTTPClientError.Kind {
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: .connectFailed
        case CURLE_OPERATION_TIMEDOUT: .timedOut
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE: .tls
        default: .transport
        }
    }
}
