// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "telegram-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "telegram-gateway", targets: ["telegram-gateway"]),
        .executable(name: "gatewayctl", targets: ["gatewayctl"]),
        .library(name: "GatewayCore", targets: ["GatewayCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    ],
    targets: [
        // C libraries: a module map and a shim each, linked by name (no pkgConfig).
        .systemLibrary(name: "CFastCGI", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // Pure Swift: Telegram types, routing, replies, configuration, the request pipeline.
        .target(
            name: "GatewayCore",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // One adapter per C library.
        .target(
            name: "GatewayFastCGI",
            dependencies: ["CFastCGI", "GatewayCore", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "GatewayHTTP",
            dependencies: ["CCurl", "GatewayCore", .product(name: "Logging", package: "swift-log")]
        ),

        .target(
            name: "GatewayRedis",
            dependencies: [
                "CHiredis", "GatewayCore", .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // What both executables do at start: configuration files, logging, clocks.
        .target(
            name: "GatewayRuntime",
            dependencies: ["GatewayCore", .product(name: "Logging", package: "swift-log")]
        ),

        // The gateway assembled from its configuration: what the executable runs, and tests build.
        .target(
            name: "GatewayAssembly",
            dependencies: ["GatewayCore", "GatewayRedis", "GatewayHTTP", "GatewayRuntime", .product(name: "Logging", package: "swift-log")]
        ),

        // The pool-wide swift-metrics backend: per-process snapshot files, summed on scrape.
        .target(
            name: "GatewayMetrics",
            dependencies: ["GatewayCore", "GatewayRuntime", .product(name: "CoreMetrics", package: "swift-metrics")]
        ),

        // In-memory fakes behind the core's protocols, for tests only.
        .target(name: "GatewayTestSupport", dependencies: ["GatewayCore"]),

        .executableTarget(
            name: "telegram-gateway",
            dependencies: [
                "GatewayCore", "GatewayRuntime", "GatewayFastCGI", "GatewayAssembly", "GatewayMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "gatewayctl",
            dependencies: [
                "GatewayCore", "GatewayRuntime", "GatewayRedis", "GatewayHTTP", "GatewayAssembly",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Timing loops over the hot pure functions, for scripts/bench.
        .executableTarget(
            name: "gateway-microbench", dependencies: ["GatewayCore", "GatewayRedis", .product(name: "Logging", package: "swift-log")]),

        // libFuzzer targets (scripts/fuzz builds them with -sanitize=fuzzer); built normally, a
        // corpus replayer.
        .executableTarget(
            name: "gateway-fuzz",
            dependencies: [
                "GatewayCore", "GatewayFastCGI", "GatewayTestSupport", .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Loopback stand-ins for the services and the Bot API: local runs and tests only.
        .executableTarget(
            name: "gateway-standins",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        .testTarget(name: "GatewayCoreTests", dependencies: ["GatewayCore", "GatewayTestSupport", "GatewayMetrics", "GatewayRuntime"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["GatewayCore", "GatewayHTTP", "GatewayRedis", "GatewayAssembly", "GatewayRuntime", "GatewayTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
