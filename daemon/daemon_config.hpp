#pragma once

// The daemon's own configuration file (examples/metalsync.yaml documents every
// key). Parsed into a staging copy and validated whole before use, so a bad
// reload leaves the running configuration untouched.

#include <chrono>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>

#include "sources/diagnostic.hpp"
#include "sources/git_source.hpp"

namespace metalsync {

struct IronicSettings {
    std::string cloud;
    std::string endpoint;
    std::filesystem::path clouds_file;
    std::filesystem::path ca_file;
    std::filesystem::path client_cert;
    std::filesystem::path client_key;
    bool insecure = false;
    std::chrono::milliseconds timeout{30000};
};

struct KubernetesSettings {
    std::filesystem::path kubeconfig;
    std::string context;
    std::string namespace_ = "default";
    std::chrono::milliseconds resync_interval{30000};  // a pass over every object when nothing moves
    std::chrono::milliseconds timeout{30000};          // per request
};

// metalsync as the Cluster API infrastructure provider of its own fleet.
struct ProviderSettings {
    // Install (and upgrade) the provider's CRDs (MetalsyncCluster,
    // MetalsyncMachine, MetalsyncMachineTemplate) with server-side apply, as
    // `clusterctl init` would. Needs kubernetes.kubeconfig.
    bool enabled = false;
};

struct DaemonLimits {
    double ironic_qps = 10;
    int max_provisioning = 20;
    int per_bmc = 1;
    double kubernetes_qps = 20;
    int workers = 8;
};

struct DaemonConfig {
    std::filesystem::path source_file;
    std::string instance = "metalsync";  // names this daemon in Ironic's extra and on Kubernetes objects (a label)
    std::filesystem::path state_dir = "/var/lib/metalsync";
    std::filesystem::path socket = "/run/metalsync/metalsync.sock";
    std::string socket_group = "metalsync";
    std::filesystem::path credentials_dir = "/etc/metalsync/credentials";
    std::filesystem::path credentials_fallback_dir;  // credentialsDir when $CREDENTIALS_DIRECTORY took its place
    bool has_git = false;
    GitSourceConfig git;
    std::chrono::milliseconds poll_interval{60000};
    std::chrono::milliseconds retry_interval{10000};
    IronicSettings ironic;
    KubernetesSettings kubernetes;
    ProviderSettings provider;
    DaemonLimits limits;
    std::string log_level = "info";
    std::string log_format = "text";
    std::string metrics_listen = "127.0.0.1:9460";
};

// "90s", "1500ms", "2m", "1h" → milliseconds; nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

std::expected<DaemonConfig, Diagnostics> load_daemon_config(const std::filesystem::path& path);
std::expected<DaemonConfig, Diagnostics> parse_daemon_config(const std::string& path_for_errors, const std::string& content);

} // namespace metalsync
