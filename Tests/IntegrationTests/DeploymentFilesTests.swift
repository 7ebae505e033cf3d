import Foundation
import GatewayCore
import Testing

/// What can be checked of the deployment files without a Docker engine or a systemd host.
@Suite(.serialized) struct DeploymentFilesTests {
    let root = LocalStack.packageRoot

    private func text(_ path: String) throws -> String {
        try String(contentsOf: root.appending(path: path), encoding: .utf8)
    }

    @Test func nginxWaitsLongerThanAnUpdatesDeadlineCanLast() throws {
        let location = try text("nginx/snippets/telegram-gateway-location.conf")
        let line = try #require(location.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("fastcgi_read_timeout") })
        let digits = String(line.filter(\.isNumber))
        let seconds = try #require(Double(digits))
        #expect(seconds == GatewayConfig.nginxReadTimeoutSeconds, "the shipped snippet and the configuration check agree")
        #expect(GatewayConfig.maxUpdateDeadlineSeconds < seconds)
    }

    @Test func theSendAPIIsServedOnlyWhereInternalCallersReachIt() throws {
        // Every server block of the shipped sites: the public ones never include the send API;
        // those that do listen on loopback or inside the compose network only.
        for (path, listen) in [("nginx/sites/telegram-gateway.conf", "listen 127.0.0.1:8081;"), ("docker/nginx/default.conf", "listen 8081;")] {
            let servers = try text(path).components(separatedBy: "server {").dropFirst()
            let serving = servers.filter { $0.contains("telegram-gateway-send.conf") }
            #expect(serving.count == 1, "\(path)")
            #expect(serving.allSatisfy { $0.contains(listen) && !$0.contains("443") && !$0.contains("ssl") }, "\(path)")
            #expect(servers.filter { $0.contains("telegram-gateway-location.conf") }.allSatisfy { !$0.contains("telegram-gateway-send.conf") })
        }
        let compose = try text("docker/compose.yaml")
        #expect(!compose.contains(":8081"), "the send API's port is not published")
        let snippet = try text("nginx/snippets/telegram-gateway-send.conf")
        #expect(snippet.contains("deny all;") && snippet.contains("client_max_body_size 1m;"))
        #expect(OutboundAPI.maxBodyBytes == 1 << 20, "nginx's limit and the pool's agree")
    }

    @Test func everyFileTheDockerfileCopiesExists() throws {
        let dockerfile = try text("docker/Dockerfile")
        let copies = dockerfile.split(separator: "\n").filter { $0.hasPrefix("COPY ") && !$0.contains("--from=") }
        #expect(!copies.isEmpty)
        for line in copies {
            let words = line.split(separator: " ").dropFirst().dropLast()  // sources, then the destination
            for source in words {
                #expect(FileManager.default.fileExists(atPath: root.appending(path: String(source)).path), "COPY \(source)")
            }
        }
    }

    @Test func theRuntimePackagesExistInDebian12() throws {
        let dockerfile = try text("docker/Dockerfile")
        let runtime = try #require(dockerfile.components(separatedBy: "AS runtime").last)
        let install = try #require(runtime.split(separator: "\n").first { $0.contains("apt-get install") })
        let packages = install.split(separator: " ").map(String.init).filter {
            !$0.hasPrefix("-") && !["&&", "apt-get", "install", "\\"].contains($0)
        }
        #expect(packages.sorted() == ["ca-certificates", "libcurl4", "libfcgi0ldbl", "libhiredis0.14"])
        for package in packages {
            let shown = try ChildProcess.runCapturing("/usr/bin/apt-cache", ["show", "--no-all-versions", package])
            #expect(shown.code == 0 && shown.output.contains("Package: \(package)"), "\(package) is not a Debian 12 package")
        }
    }

    @Test func theComposeFileParsesAndNamesExistingFiles() throws {
        let script = """
            import sys, yaml
            compose = yaml.safe_load(open(sys.argv[1]))
            for name, service in compose["services"].items():
                build = service.get("build")
                if build:
                    print("path", build["context"])
                    print("path", build["context"] + "/" + build["dockerfile"])
                for volume in service.get("volumes", []):
                    source = volume.split(":")[0]
                    if source.startswith("."):
                        print("path", source)
                for env in service.get("env_file", []) if isinstance(service.get("env_file"), list) else [service.get("env_file")] if service.get("env_file") else []:
                    print("env", env)
            """
        let result = try ChildProcess.runCapturing("/usr/bin/python3", ["-c", script, root.appending(path: "docker/compose.yaml").path])
        #expect(result.code == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n")
        #expect(lines.count > 5)
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            let path = root.appending(path: "docker").appending(path: parts[1]).standardizedFileURL.path
            if parts[0] == "env" {
                // The operator's .env is not in the repository; its template is.
                #expect(parts[1] == "../.env")
                #expect(FileManager.default.fileExists(atPath: root.appending(path: ".env.example").path))
            } else {
                #expect(FileManager.default.fileExists(atPath: path), "compose names \(parts[1]), which does not exist")
            }
        }
    }

    @Test func theSystemdUnitsVerify() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "units-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let units = [
            "telegram-gateway.service", "telegram-gateway-spawn-fcgi.service", "telegram-gateway-webhook-info.service",
            "telegram-gateway-webhook-info.timer",
        ]
        for unit in units {
            // Point the Exec lines at the built binaries: verify checks that they exist.
            let contents = try text("scripts/systemd/\(unit)").replacing("/usr/local/bin/telegram-gateway", with: LocalStack.binary)
                .replacing("/usr/local/bin/gatewayctl", with: GatewayCtlTests.binary)
            try contents.write(to: folder.appending(path: unit), atomically: false, encoding: .utf8)
            guard !unit.hasPrefix("telegram-gateway-webhook-info") else { continue }
            #expect(contents.contains("User=telegram-gateway"), "\(unit) runs unprivileged")
            #expect(contents.contains("NoNewPrivileges=yes"))
            #expect(contents.contains("LogsDirectory=telegram-gateway"), "\(unit) may write /var/log/telegram-gateway")
            #expect(contents.contains("ExecStartPre=\(GatewayCtlTests.binary) check-config --offline"), "\(unit) checks before it starts")
        }
        let result = try ChildProcess.runCapturing(
            "/usr/bin/systemd-analyze",
            ["verify"] + units.map { folder.appending(path: $0).path })
        #expect(result.code == 0, "\(result.output)")
        // `systemctl reload` runs the check before the signal: a failing check fails the reload.
        let reload = try text("scripts/systemd/telegram-gateway.service").split(separator: "\n").filter { $0.hasPrefix("ExecReload=") }
        #expect(
            reload == [
                "ExecReload=/usr/local/bin/telegram-gateway --check-config --env-file /etc/telegram-gateway/env",
                "ExecReload=/bin/kill -HUP $MAINPID",
            ])
    }

}
