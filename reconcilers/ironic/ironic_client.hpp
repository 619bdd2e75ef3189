#pragma once

// The Ironic adapter: a REST client for the Bare Metal API.
//
// Every request carries X-OpenStack-Ironic-API-Version (the version agreed by
// negotiate()) and Content-Type: application/json (docs/ironic-testbed.md, 5). Calls
// return ApiResult; the client never sleeps or retries by itself except for
// one re-authentication after a 401 with a Keystone token (retry_call() in
// retry.hpp is for the executor).

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/http/api_error.hpp"
#include "reconcilers/http/http_client.hpp"
#include "reconcilers/http/rate_limiter.hpp"
#include "reconcilers/observed_state.hpp"
#include "reconcilers/openstack/clouds_config.hpp"
#include "reconcilers/openstack/keystone.hpp"

namespace metalsync {

struct NoAuth {};
struct BasicAuth {
    std::string username;
    std::string password;
};
using IronicAuth = std::variant<NoAuth, BasicAuth, KeystoneCredentials>;

struct IronicConnection {
    std::string endpoint;  // e.g. http://127.0.0.1:6385; with Keystone, empty = from the catalog
    IronicAuth auth = NoAuth{};
    TlsOptions tls;
    std::chrono::milliseconds timeout = k_default_request_timeout;
    std::chrono::milliseconds connect_timeout = k_default_connect_timeout;
    // limits.ironicQPS. Copies of the connection share it, so the observer's
    // client and every executor worker's client draw on one budget: each
    // request (version negotiation, list pages, a retry after 401) takes a
    // token before it is sent, waiting at most `timeout` for it. Null: no limit.
    std::shared_ptr<RateLimiter> rate_limiter;
};

// The connection a clouds.yaml cloud describes.
IronicConnection ironic_connection_from_cloud(const CloudConfig& cloud);

struct ApiVersion {
    int major = 1;
    int minor = 0;

    [[nodiscard]] std::string str() const { return std::to_string(major) + "." + std::to_string(minor); }
    friend auto operator<=>(const ApiVersion&, const ApiVersion&) = default;
};

// "1.82" -> {1, 82}
std::optional<ApiVersion> parse_api_version(std::string_view text);

// The newest microversion this client knows (Ironic 2023.1 "Antelope", 21.4).
inline constexpr ApiVersion k_max_wanted_version{1, 82};
// The oldest server metalsync works with. 1.56 is the first where a
// configdrive may be a JSON object ({"user_data", "meta_data",
// "network_data"}) that Ironic builds into an ISO itself; everything else we
// rely on is older: `fields` on the node list (1.8), enroll/manage/provide
// (1.11), the *_interface fields (1.31, bios 1.40), port physical_network
// (1.34), automated_clean (1.47). Newer features (inventory 1.81,
// disable_ramdisk 1.70) are used only where supports() says so.
inline constexpr ApiVersion k_min_required_version{1, 56};
inline constexpr int k_inventory_minor = 81;

class IronicClient {
public:
    explicit IronicClient(IronicConnection connection);
    ~IronicClient();
    IronicClient(const IronicClient&) = delete;
    IronicClient& operator=(const IronicClient&) = delete;
    IronicClient(IronicClient&&) noexcept;
    IronicClient& operator=(IronicClient&&) noexcept;

    // GET / : agrees on min(server max, k_max_wanted_version); refuses a
    // server older than k_min_required_version. Other calls negotiate on
    // first use when this was not called.
    ApiResult<ApiVersion> negotiate();
    [[nodiscard]] std::optional<ApiVersion> version() const;
    // True when the negotiated version is at least 1.<minor>.
    [[nodiscard]] bool supports(int minor) const;
    // The endpoint in use (from the connection or the Keystone catalog).
    [[nodiscard]] std::string endpoint() const;

    // Observation: one paginated list each, a few fields only.
    ApiResult<std::vector<ObservedNode>> list_nodes();
    ApiResult<std::vector<ObservedPort>> list_ports();
    // Nodes by name with their ports attached; complete = true.
    ApiResult<ObservedState> observe();

    ApiResult<ObservedNode> get_node(std::string_view ident);
    ApiResult<ObservedNode> create_node(const nlohmann::json& body);
    // `patch` is a JSON-Patch array: [{"op": "add", "path": "/instance_info/image_source", "value": ...}]
    ApiResult<ObservedNode> patch_node(std::string_view ident, const nlohmann::json& patch);
    // PUT /v1/nodes/{ident}/states/provision {"target": target, ...extras}.
    // extras: {"configdrive": {...}}, {"clean_steps": [...]}, ... Deploy is
    // target "active" (with the configdrive), never "deploy" (docs/ironic-testbed.md, 7).
    ApiResult<void> set_provision_state(std::string_view ident, std::string_view target,
                                        const nlohmann::json& extras = nlohmann::json::object());
    // target: "power on", "power off", "rebooting", ...
    ApiResult<void> set_power_state(std::string_view ident, std::string_view target);
    ApiResult<void> set_maintenance(std::string_view ident, bool on, std::string_view reason = {});
    ApiResult<void> delete_node(std::string_view ident);

    ApiResult<ObservedPort> create_port(std::string_view node_uuid, std::string_view mac, bool pxe_enabled = true,
                                        std::string_view physical_network = {});
    ApiResult<void> delete_port(std::string_view uuid);

    // GET /v1/nodes/{ident}/inventory (API 1.81); an ApiError (HTTP 406, not
    // retryable) when the server is older.
    ApiResult<nlohmann::json> get_inventory(std::string_view ident);

    // Page size for the lists (Ironic's largest is 1000, docs/ironic-testbed.md 12). For tests.
    void set_page_size(int page_size);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Ironic's node JSON (full or with `fields`) as ObservedNode; ports empty.
ObservedNode ironic_node_from_json(const nlohmann::json& node);
ObservedPort ironic_port_from_json(const nlohmann::json& port);

} // namespace metalsync
