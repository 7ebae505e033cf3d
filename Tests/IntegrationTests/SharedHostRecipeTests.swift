import Foundation
import GatewayHTTP
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// DEPLOY.md's shared-host recipe on an nginx that already serves other sites: two includes,
/// and those sites answer exactly as before.
@Suite(.serialized) struct SharedHostRecipeTests {
    @Test func theOtherSitesAnswerAsBeforeAndTheWebhookWorks() throws {
        try withStack { stack in
            let folder = stack.directory.appending(path: "shared-host")
            try FileManager.default.createDirectory(at: folder.appending(path: "logs"), withIntermediateDirectories: true)
            let other = try LocalStack.freePort()
            let shared = try LocalStack.freePort()
            let rendered = stack.directory.appending(path: "nginx")
            func config(recipe: Bool) -> String {
                """
                \(getuid() == 0 ? "user root root;" : "")
                pid \(folder.path)/nginx.pid;
                error_log \(folder.path)/logs/error.log warn;
                events { worker_connections 256; }
                http {
                    access_log \(folder.path)/logs/access.log;
                    client_body_temp_path \(folder.path)/body;
                    fastcgi_temp_path \(folder.path)/fastcgi;
                    proxy_temp_path \(folder.path)/proxy;
                    uwsgi_temp_path \(folder.path)/uwsgi;
                    scgi_temp_path \(folder.path)/scgi;
                    client_max_body_size 20m;
                    \(recipe ? "include \(rendered.path)/conf.d/telegram-gateway.conf;" : "")
                    server {
                        listen 127.0.0.1:\(other);
                        server_name other.test;
                        location / { return 200 "other site\\n"; }
                        location /upload { return 200 "big bodies welcome\\n"; }
                    }
                    server {
                        listen 127.0.0.1:\(shared);
                        server_name shared.test;
                        location / { return 200 "shared host home\\n"; }
                        \(recipe ? "include \(rendered.path)/snippets/telegram-gateway-location.conf;" : "")
                    }
                }
                """
            }
            let conf = folder.appending(path: "nginx.conf")
            try config(recipe: false).write(to: conf, atomically: false, encoding: .utf8)
            let nginx = try ChildProcess.spawn(
                "/usr/sbin/nginx", ["-p", folder.path, "-c", conf.path, "-e", folder.path + "/logs/error.log", "-g", "daemon off;"])
            defer {
                kill(nginx, SIGTERM)
                ChildProcess.waitForExit(nginx)
            }
            let client = try HTTPClient()
            func get(_ port: Int, _ path: String, body: [UInt8] = [], method: String = "GET", secret: String? = nil) throws -> (Int, String) {
                var headers: [(name: String, value: String)] = []
                if let secret { headers.append(("X-Telegram-Bot-Api-Secret-Token", secret)) }
                let response = try client.send(
                    HTTPRequest(method: method, url: "http://127.0.0.1:\(port)\(path)", headers: headers, body: body, timeoutSeconds: 5))
                return (response.status, String(decoding: response.body, as: UTF8.self))
            }
            try waitUntil("the shared host's nginx answers") { (try? get(other, "/").0) == 200 }
            let big = [UInt8](repeating: 0x41, count: 5 * 1024 * 1024)
            let before = try [get(other, "/"), get(other, "/upload", body: big, method: "POST"), get(shared, "/"), get(shared, "/webhook/telegram")]

            // The recipe: the http-level file and the location snippet, then a reload.
            try config(recipe: true).write(to: conf, atomically: false, encoding: .utf8)
            let test = try ChildProcess.runCapturing(
                "/usr/sbin/nginx", ["-t", "-p", folder.path, "-c", conf.path, "-e", folder.path + "/logs/error.log"])
            #expect(test.code == 0, "\(test.output)")
            kill(nginx, SIGHUP)
            try waitUntil("the webhook location is live") { (try? get(shared, "/webhook/telegram").0) == 405 }

            let after = try [get(other, "/"), get(other, "/upload", body: big, method: "POST"), get(shared, "/")]
            #expect(after.map(\.0) == before.prefix(3).map(\.0))
            #expect(after.map(\.1) == before.prefix(3).map(\.1))
            #expect(before[3].0 == 200, "before the recipe the shared host's own catch-all served the path")
            let update = Array(WebhookThroughNginxTests.update(1, text: "/nope").utf8)
            #expect(try get(shared, "/webhook/telegram", body: update, method: "POST", secret: LocalStack.secret).1.contains("sendMessage"))
            #expect(try get(shared, "/webhook/telegram", body: update, method: "POST", secret: "wrong").0 == 403)
        }
    }

    @Test func theDedicatedHostSitePassesNginxT() throws {
        try withStack { stack in
            let rendered = stack.directory.appending(path: "nginx")
            let site = try String(contentsOf: LocalStack.packageRoot.appending(path: "nginx/sites/telegram-gateway.conf"), encoding: .utf8)
                .replacing("/etc/letsencrypt/live/gateway.example.com/fullchain.pem", with: stack.directory.appending(path: "tls/cert.pem").path)
                .replacing("/etc/letsencrypt/live/gateway.example.com/privkey.pem", with: stack.directory.appending(path: "tls/key.pem").path)
                .replacing(
                    "/etc/nginx/snippets/telegram-gateway-location.conf",
                    with: rendered.appending(path: "snippets/telegram-gateway-location.conf").path
                )
                .replacing(
                    "/etc/nginx/snippets/telegram-gateway-status.conf", with: rendered.appending(path: "snippets/telegram-gateway-status.conf").path
                )
                .replacing(
                    "/etc/nginx/snippets/telegram-gateway-send.conf", with: rendered.appending(path: "snippets/telegram-gateway-send.conf").path)
            #expect(!site.contains("include /etc/nginx/"), "every include of the site is rendered")
            let folder = stack.directory.appending(path: "site-check")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try site.write(to: folder.appending(path: "site.conf"), atomically: false, encoding: .utf8)
            let conf = folder.appending(path: "nginx.conf")
            try """
            pid \(folder.path)/nginx.pid;
            events {}
            http {
                include \(rendered.path)/conf.d/telegram-gateway.conf;
                include \(folder.path)/site.conf;
            }
            """.write(to: conf, atomically: false, encoding: .utf8)
            let result = try ChildProcess.runCapturing(
                "/usr/sbin/nginx", ["-t", "-p", folder.path, "-c", conf.path, "-e", folder.path + "/error.log"])
            #expect(result.code == 0, "\(result.output)")
        }
    }

    @Test func thePort80SiteNeedsNoCertificateAnswersTheACMEChallengeAndRedirectsTheRest() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "acme-\(UUID().uuidString.prefix(8))")
        let webroot = folder.appending(path: "letsencrypt/.well-known/acme-challenge")
        try FileManager.default.createDirectory(at: webroot, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: folder.appending(path: "logs"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "token-proof".write(to: webroot.appending(path: "abc123"), atomically: false, encoding: .utf8)
        let port = try LocalStack.freePort()
        // The shipped file as it is, but on a free loopback port and this test's webroot.
        let shipped = try String(contentsOf: LocalStack.packageRoot.appending(path: "nginx/sites/telegram-gateway-http.conf"), encoding: .utf8)
        var site = shipped
        for (from, to) in [
            ("listen 80;", "listen 127.0.0.1:\(port);"), ("listen [::]:80;", ""),
            ("/var/www/letsencrypt", folder.appending(path: "letsencrypt").path),
        ] {
            #expect(site.contains(from), "the shipped site changed: \(from)")
            site = site.replacing(from, with: to)
        }
        #expect(!shipped.contains("ssl_certificate"), "no certificate before the first certificate")
        try site.write(to: folder.appending(path: "site.conf"), atomically: false, encoding: .utf8)
        let conf = folder.appending(path: "nginx.conf")
        try """
        \(getuid() == 0 ? "user root root;" : "")
        pid \(folder.path)/nginx.pid;
        error_log \(folder.path)/logs/error.log warn;
        events { worker_connections 64; }
        http {
            access_log \(folder.path)/logs/access.log;
            client_body_temp_path \(folder.path)/body;
            include \(folder.path)/site.conf;
        }
        """.write(to: conf, atomically: false, encoding: .utf8)
        let check = try ChildProcess.runCapturing(
            "/usr/sbin/nginx", ["-t", "-p", folder.path, "-c", conf.path, "-e", folder.path + "/logs/error.log"])
        #expect(check.code == 0, "\(check.output)")
        let nginx = try ChildProcess.spawn(
            "/usr/sbin/nginx", ["-p", folder.path, "-c", conf.path, "-e", folder.path + "/logs/error.log", "-g", "daemon off;"])
        defer {
            kill(nginx, SIGTERM)
            ChildProcess.waitForExit(nginx)
        }
        let client = try HTTPClient()
        func get(_ path: String) throws -> HTTPResponse {
            try client.send(HTTPRequest(url: "http://127.0.0.1:\(port)\(path)", headers: [("Host", "gateway.example.com")], timeoutSeconds: 5))
        }
        try waitUntil("nginx answers") { (try? get("/")) != nil }
        let proof = try get("/.well-known/acme-challenge/abc123")
        #expect(proof.status == 200 && String(decoding: proof.body, as: UTF8.self) == "token-proof")
        #expect(try get("/.well-known/acme-challenge/missing").status == 404)
        #expect(try get("/webhook/telegram").status == 301, "everything else goes to HTTPS")
    }
}

/// DEPLOY.md's secret rotation: while both secrets are configured, nginx and the pool accept
/// either, so updates sent with the old one during the switch are not lost.
@Suite(.serialized) struct SecretRotationTests {
    @Test func duringARotationBothSecretsAreAcceptedAndOthersRefused() throws {
        let previous = "previous-secret_\(UInt32.random(in: 0...UInt32.max))"
        try withStack(environment: ["TELEGRAM_WEBHOOK_SECRET_PREVIOUS": previous]) { stack, _ in
            let current = try stack.post(WebhookThroughNginxTests.update(1, text: "/nope"), secret: LocalStack.secret)
            let old = try stack.post(WebhookThroughNginxTests.update(2, text: "/nope"), secret: previous)
            let other = try stack.post(WebhookThroughNginxTests.update(3, text: "/nope"), secret: previous + "x")
            #expect(current.status == 200)
            #expect(old.status == 200)
            #expect(other.status == 403)
        }
    }
}
