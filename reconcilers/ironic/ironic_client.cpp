#include "reconcilers/ironic/ironic_client.hpp"

#include <charconv>
#include <cctype>
#include <set>

#include <spdlog/spdlog.h>

#include "reconcilers/http/redact.hpp"
#include "reconcilers/ironic/ironic_errors.hpp"

namespace metalsync {
namespace {

using nlohmann::json;

constexpr int k_max_page_size = 1000;  // Ironic's cap (docs/ironic-testbed.md, 12)
constexpr int k_max_pages = 100'000;   // a server that never stops paging is a bug, not a fleet

// Only what ObservedNode needs. GET /v1/nodes/detail refuses `fields`, the
// plain list accepts it (API 1.8) and returns exactly these.
constexpr const char* k_node_fields =
    "uuid,name,driver,provision_state,target_provision_state,power_state,target_power_state,"
    "maintenance,maintenance_reason,last_error,reservation,driver_info,properties,instance_info,"
    "extra,resource_class,automated_clean,provision_updated_at,instance_uuid,"
    "bios_interface,boot_interface,console_interface,deploy_interface,inspect_interface,"
    "management_interface,network_interface,power_interface,raid_interface,rescue_interface,"
    "storage_interface,vendor_interface";
constexpr const char* k_port_fields = "uuid,address,node_uuid,pxe_enabled,physical_network";

std::string str(const json& object, const char* key)
{
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json obj(const json& object, const char* key)
{
    auto it = object.find(key);
    return it != object.end() && it->is_object() ? *it : json::object();
}

std::string lower(std::string text)
{
    for (auto& c : text) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return text;
}

std::string trim_endpoint(std::string endpoint)
{
    while (!endpoint.empty() && endpoint.back() == '/') {
        endpoint.pop_back();
    }
    // Catalogs and configs sometimes carry the /v1 suffix; paths below add it.
    if (endpoint.ends_with("/v1")) {
        endpoint.resize(endpoint.size() - 3);
    }
    return endpoint;
}

void remember_patch_secrets(const json& patch)
{
    if (!patch.is_array()) {
        return;
    }
    for (const auto& op : patch) {
        if (!op.is_object()) {
            continue;
        }
        const auto path = str(op, "path");
        const auto last = path.substr(path.rfind('/') + 1);
        auto value = op.find("value");
        if (value == op.end()) {
            continue;
        }
        if (value->is_string() && is_secret_key(last)) {
            remember_secret(value->get<std::string>());
        }
        remember_secrets_in(*value);
    }
}

} // namespace

std::optional<ApiVersion> parse_api_version(std::string_view text)
{
    const auto dot = text.find('.');
    if (dot == std::string_view::npos) {
        return std::nullopt;
    }
    ApiVersion v;
    const auto* first = text.data();
    auto [p1, e1] = std::from_chars(first, first + dot, v.major);
    auto [p2, e2] = std::from_chars(first + dot + 1, first + text.size(), v.minor);
    if (e1 != std::errc() || e2 != std::errc() || p1 != first + dot || p2 != first + text.size()) {
        return std::nullopt;
    }
    return v;
}

ObservedNode ironic_node_from_json(const json& n)
{
    ObservedNode node;
    node.uuid = str(n, "uuid");
    node.name = str(n, "name");
    node.driver = str(n, "driver");
    node.provision_state = str(n, "provision_state");
    node.target_provision_state = str(n, "target_provision_state");
    node.power_state = str(n, "power_state");
    node.target_power_state = str(n, "target_power_state");
    node.maintenance = n.contains("maintenance") && n["maintenance"].is_boolean() && n["maintenance"].get<bool>();
    node.maintenance_reason = str(n, "maintenance_reason");
    node.last_error = str(n, "last_error");
    node.reservation = str(n, "reservation");
    node.driver_info = obj(n, "driver_info");
    node.properties = obj(n, "properties");
    node.instance_info = obj(n, "instance_info");
    node.extra = obj(n, "extra");
    node.resource_class = str(n, "resource_class");
    if (auto it = n.find("automated_clean"); it != n.end() && it->is_boolean()) {
        node.automated_clean = it->get<bool>();
    }
    node.provision_updated_at = str(n, "provision_updated_at");
    node.instance_uuid = str(n, "instance_uuid");
    for (const auto& [key, value] : n.items()) {
        if (key.ends_with("_interface") && value.is_string()) {
            node.interfaces[key.substr(0, key.size() - std::string_view("_interface").size())] = value.get<std::string>();
        }
    }
    return node;
}

ObservedPort ironic_port_from_json(const json& p)
{
    ObservedPort port;
    port.uuid = str(p, "uuid");
    port.node_uuid = str(p, "node_uuid");
    port.mac = lower(str(p, "address"));
    if (auto it = p.find("pxe_enabled"); it != p.end() && it->is_boolean()) {
        port.pxe_enabled = it->get<bool>();
    }
    port.physical_network = str(p, "physical_network");
    return port;
}

IronicConnection ironic_connection_from_cloud(const CloudConfig& cloud)
{
    IronicConnection connection;
    connection.endpoint = cloud.endpoint;
    connection.tls = cloud.tls;
    switch (cloud.auth_type) {
    case CloudConfig::AuthType::none:
        connection.auth = NoAuth{};
        break;
    case CloudConfig::AuthType::http_basic:
        connection.auth = BasicAuth{cloud.username, cloud.password};
        break;
    case CloudConfig::AuthType::password:
    case CloudConfig::AuthType::application_credential:
        connection.auth = cloud.keystone;
        break;
    }
    return connection;
}

struct IronicClient::Impl {
    IronicConnection connection;
    HttpClient http;
    std::unique_ptr<KeystoneSession> keystone;
    std::string endpoint;
    std::optional<ApiVersion> version;
    int page_size = k_max_page_size;

    explicit Impl(IronicConnection c)
        : connection(std::move(c)), http(connection.tls, connection.connect_timeout),
          endpoint(trim_endpoint(connection.endpoint))
    {
        if (auto* basic = std::get_if<BasicAuth>(&connection.auth)) {
            remember_secret(basic->password);
        } else if (auto* keystone_credentials = std::get_if<KeystoneCredentials>(&connection.auth)) {
            keystone = std::make_unique<KeystoneSession>(*keystone_credentials, connection.tls, connection.timeout);
        }
    }

    ApiResult<void> resolve_endpoint()
    {
        if (!endpoint.empty()) {
            return {};
        }
        if (!keystone) {
            return std::unexpected(ApiError{0, false, false, "no Ironic endpoint configured", "connect"});
        }
        auto url = keystone->endpoint("baremetal");
        if (!url) {
            return std::unexpected(url.error());
        }
        endpoint = trim_endpoint(*url);
        return {};
    }

    // Waits for limits.ironicQPS to allow one more request; the error when it
    // did not within the request timeout, or the daemon is stopping.
    std::optional<ApiError> take_request_token(const std::string& operation)
    {
        if (!connection.rate_limiter) {
            return std::nullopt;
        }
        switch (connection.rate_limiter->acquire(std::chrono::steady_clock::now() + connection.timeout)) {
        case RateLimiter::Outcome::granted:
            return std::nullopt;
        case RateLimiter::Outcome::timed_out:
            return ApiError{0, true, false,
                            fmt::format("not sent: the Ironic request rate limit (ironicQPS {:g}) allowed no request "
                                        "within {} ms",
                                        connection.rate_limiter->rate(), connection.timeout.count()),
                            operation};
        case RateLimiter::Outcome::interrupted:
            break;
        }
        return ApiError{0, true, false, "not sent: metalsync is shutting down", operation};
    }

    // One request. `path` starts with "/" and may carry a query string; the
    // operation named in errors leaves the query out.
    ApiResult<HttpResponse> call(std::string_view method, const std::string& path, const std::optional<json>& body,
                                 bool needs_version = true)
    {
        if (auto ok = resolve_endpoint(); !ok) {
            return std::unexpected(ok.error());
        }
        if (needs_version && !version) {
            if (auto v = negotiate(); !v) {
                return std::unexpected(v.error());
            }
        }
        const std::string operation = std::string(method) + " " + path.substr(0, path.find('?'));
        const std::string payload = body ? body->dump() : std::string();
        bool reauthenticated = false;
        while (true) {
            HttpHeaders headers{
                // GET / answers every version; 1.1 is the one every server has.
                {"X-OpenStack-Ironic-API-Version", version && needs_version ? version->str() : "1.1"},
                {"Content-Type", "application/json"},
                {"Accept", "application/json"},
            };
            if (auto* basic = std::get_if<BasicAuth>(&connection.auth)) {
                headers.emplace_back("Authorization", basic_authorization(basic->username, basic->password));
            } else if (keystone) {
                auto token = keystone->token(reauthenticated);
                if (!token) {
                    return std::unexpected(token.error());
                }
                headers.emplace_back("X-Auth-Token", *token);
            }
            if (auto refused = take_request_token(operation)) {
                return std::unexpected(*refused);
            }
            auto response = http.request(method, endpoint + path, headers, payload, connection.timeout);
            if (!response) {
                spdlog::debug("ironic: {} failed: {}", operation, redact(response.error().message));
                return std::unexpected(ironic_transport_error(operation, response.error().message));
            }
            const auto status = static_cast<int>(response->status);
            spdlog::debug("ironic: {} -> {}", operation, status);
            if (status == 401 && keystone && !reauthenticated) {
                // The token may have been revoked or expired early: once more with a new one.
                reauthenticated = true;
                continue;
            }
            if (status >= 400) {
                return std::unexpected(ironic_api_error(operation, status, response->body));
            }
            return std::move(*response);
        }
    }

    ApiResult<json> call_json(std::string_view method, const std::string& path, const std::optional<json>& body)
    {
        auto response = call(method, path, body);
        if (!response) {
            return std::unexpected(response.error());
        }
        auto doc = json::parse(response->body, nullptr, false);
        if (doc.is_discarded()) {
            return std::unexpected(ApiError{static_cast<int>(response->status), false, false,
                                            "Ironic answered with a body that is not JSON",
                                            std::string(method) + " " + path.substr(0, path.find('?'))});
        }
        return doc;
    }

    ApiResult<ApiVersion> negotiate()
    {
        auto response = call("GET", "/", std::nullopt, false);
        if (!response) {
            return std::unexpected(response.error());
        }
        const auto doc = json::parse(response->body, nullptr, false);
        json v1;
        if (doc.is_object() && doc.contains("versions") && doc["versions"].is_array() && !doc["versions"].empty()) {
            v1 = doc["versions"][0];
        } else if (doc.is_object()) {
            v1 = obj(doc, "default_version");
        }
        const auto min = parse_api_version(v1.is_object() ? str(v1, "min_version") : std::string());
        const auto max = parse_api_version(v1.is_object() ? str(v1, "version") : std::string());
        if (!min || !max) {
            return std::unexpected(ApiError{static_cast<int>(response->status), false, false,
                                            "Ironic at " + endpoint + " did not advertise its API versions on GET /",
                                            "GET /"});
        }
        if (*max < k_min_required_version || *min > k_max_wanted_version) {
            const std::string need = *max < k_min_required_version
                                         ? "metalsync needs at least " + k_min_required_version.str()
                                         : "metalsync speaks at most " + k_max_wanted_version.str();
            return std::unexpected(ApiError{static_cast<int>(response->status), false, false,
                                            "Ironic at " + endpoint + " supports API " + min->str() + " to " +
                                                max->str() + "; " + need,
                                            "GET /"});
        }
        version = std::min(*max, k_max_wanted_version);
        spdlog::debug("ironic: {} speaks API {} to {}, using {}", endpoint, min->str(), max->str(), version->str());
        return *version;
    }

    std::string node_path(std::string_view ident) const { return "/v1/nodes/" + url_escape(ident); }
};

IronicClient::IronicClient(IronicConnection connection) : m_impl(std::make_unique<Impl>(std::move(connection))) {}
IronicClient::~IronicClient() = default;
IronicClient::IronicClient(IronicClient&&) noexcept = default;
IronicClient& IronicClient::operator=(IronicClient&&) noexcept = default;

ApiResult<ApiVersion> IronicClient::negotiate()
{
    m_impl->version.reset();
    if (auto ok = m_impl->resolve_endpoint(); !ok) {
        return std::unexpected(ok.error());
    }
    return m_impl->negotiate();
}

std::optional<ApiVersion> IronicClient::version() const
{
    return m_impl->version;
}

bool IronicClient::supports(int minor) const
{
    return m_impl->version && *m_impl->version >= ApiVersion{1, minor};
}

std::string IronicClient::endpoint() const
{
    return m_impl->endpoint;
}

void IronicClient::set_page_size(int page_size)
{
    m_impl->page_size = std::clamp(page_size, 1, k_max_page_size);
}

ApiResult<std::vector<ObservedNode>> IronicClient::list_nodes()
{
    std::vector<ObservedNode> nodes;
    std::string marker;
    for (int page = 0; page < k_max_pages; ++page) {
        std::string path = "/v1/nodes?limit=" + std::to_string(m_impl->page_size) + "&fields=" + k_node_fields;
        if (!marker.empty()) {
            path += "&marker=" + url_escape(marker);
        }
        auto doc = m_impl->call_json("GET", path, std::nullopt);
        if (!doc) {
            return std::unexpected(doc.error());
        }
        if (!doc->contains("nodes") || !(*doc)["nodes"].is_array()) {
            return std::unexpected(ApiError{200, false, false, "Ironic's node list has no \"nodes\" array", "GET /v1/nodes"});
        }
        const auto& items = (*doc)["nodes"];
        for (const auto& item : items) {
            nodes.push_back(ironic_node_from_json(item));
        }
        // Ironic adds "next" only when the page was full; we page with our own
        // marker rather than follow "next", whose host may be a proxy's view.
        if (items.empty() || !doc->contains("next") || nodes.back().uuid.empty()) {
            return nodes;
        }
        marker = nodes.back().uuid;
    }
    return std::unexpected(ApiError{200, false, false, "Ironic's node list did not end", "GET /v1/nodes"});
}

ApiResult<std::vector<ObservedPort>> IronicClient::list_ports()
{
    std::vector<ObservedPort> ports;
    std::string marker;
    for (int page = 0; page < k_max_pages; ++page) {
        std::string path = "/v1/ports?limit=" + std::to_string(m_impl->page_size) + "&fields=" + k_port_fields;
        if (!marker.empty()) {
            path += "&marker=" + url_escape(marker);
        }
        auto doc = m_impl->call_json("GET", path, std::nullopt);
        if (!doc) {
            return std::unexpected(doc.error());
        }
        if (!doc->contains("ports") || !(*doc)["ports"].is_array()) {
            return std::unexpected(ApiError{200, false, false, "Ironic's port list has no \"ports\" array", "GET /v1/ports"});
        }
        const auto& items = (*doc)["ports"];
        for (const auto& item : items) {
            ports.push_back(ironic_port_from_json(item));
        }
        if (items.empty() || !doc->contains("next") || ports.back().uuid.empty()) {
            return ports;
        }
        marker = ports.back().uuid;
    }
    return std::unexpected(ApiError{200, false, false, "Ironic's port list did not end", "GET /v1/ports"});
}

ApiResult<ObservedState> IronicClient::observe()
{
    auto nodes = list_nodes();
    if (!nodes) {
        return std::unexpected(nodes.error());
    }
    auto ports = list_ports();
    if (!ports) {
        return std::unexpected(ports.error());
    }
    std::map<std::string, std::vector<ObservedPort>> ports_by_node;
    for (auto& port : *ports) {
        ports_by_node[port.node_uuid].push_back(std::move(port));
    }
    ObservedState state;
    for (auto& node : *nodes) {
        if (node.name.empty()) {
            continue;  // not ours to manage: metalsync names every node it enrolls
        }
        if (auto it = ports_by_node.find(node.uuid); it != ports_by_node.end()) {
            node.ports = std::move(it->second);
        }
        auto name = node.name;
        state.nodes.insert_or_assign(std::move(name), std::move(node));
    }
    state.complete = true;
    return state;
}

ApiResult<ObservedNode> IronicClient::get_node(std::string_view ident)
{
    auto doc = m_impl->call_json("GET", m_impl->node_path(ident), std::nullopt);
    if (!doc) {
        return std::unexpected(doc.error());
    }
    return ironic_node_from_json(*doc);
}

ApiResult<ObservedNode> IronicClient::create_node(const json& body)
{
    remember_secrets_in(body);
    auto doc = m_impl->call_json("POST", "/v1/nodes", body);
    if (!doc) {
        return std::unexpected(doc.error());
    }
    return ironic_node_from_json(*doc);
}

ApiResult<ObservedNode> IronicClient::patch_node(std::string_view ident, const json& patch)
{
    remember_patch_secrets(patch);
    auto doc = m_impl->call_json("PATCH", m_impl->node_path(ident), patch);
    if (!doc) {
        return std::unexpected(doc.error());
    }
    return ironic_node_from_json(*doc);
}

ApiResult<void> IronicClient::set_provision_state(std::string_view ident, std::string_view target, const json& extras)
{
    json body = extras.is_object() ? extras : json::object();
    body["target"] = std::string(target);
    remember_secrets_in(body);
    auto response = m_impl->call("PUT", m_impl->node_path(ident) + "/states/provision", body);
    if (!response) {
        return std::unexpected(response.error());
    }
    return {};
}

ApiResult<void> IronicClient::set_power_state(std::string_view ident, std::string_view target)
{
    auto response = m_impl->call("PUT", m_impl->node_path(ident) + "/states/power", json{{"target", std::string(target)}});
    if (!response) {
        return std::unexpected(response.error());
    }
    return {};
}

ApiResult<void> IronicClient::set_maintenance(std::string_view ident, bool on, std::string_view reason)
{
    const auto path = m_impl->node_path(ident) + "/maintenance";
    auto response = on ? m_impl->call("PUT", path, reason.empty() ? json::object() : json{{"reason", std::string(reason)}})
                       : m_impl->call("DELETE", path, std::nullopt);
    if (!response) {
        return std::unexpected(response.error());
    }
    return {};
}

ApiResult<void> IronicClient::delete_node(std::string_view ident)
{
    auto response = m_impl->call("DELETE", m_impl->node_path(ident), std::nullopt);
    if (!response) {
        return std::unexpected(response.error());
    }
    return {};
}

ApiResult<ObservedPort> IronicClient::create_port(std::string_view node_uuid, std::string_view mac, bool pxe_enabled,
                                                  std::string_view physical_network)
{
    json body{{"node_uuid", std::string(node_uuid)}, {"address", lower(std::string(mac))}, {"pxe_enabled", pxe_enabled}};
    if (!physical_network.empty()) {
        body["physical_network"] = std::string(physical_network);
    }
    auto doc = m_impl->call_json("POST", "/v1/ports", body);
    if (!doc) {
        return std::unexpected(doc.error());
    }
    return ironic_port_from_json(*doc);
}

ApiResult<void> IronicClient::delete_port(std::string_view uuid)
{
    auto response = m_impl->call("DELETE", "/v1/ports/" + url_escape(uuid), std::nullopt);
    if (!response) {
        return std::unexpected(response.error());
    }
    return {};
}

ApiResult<json> IronicClient::get_inventory(std::string_view ident)
{
    const auto path = m_impl->node_path(ident) + "/inventory";
    if (!m_impl->version) {
        if (auto v = negotiate(); !v) {
            return std::unexpected(v.error());
        }
    }
    if (!supports(k_inventory_minor)) {
        return std::unexpected(ApiError{406, false, false,
                                        "node inventory needs Ironic API 1." + std::to_string(k_inventory_minor) +
                                            ", this Ironic speaks " + m_impl->version->str(),
                                        "GET /v1/nodes/{node}/inventory"});
    }
    return m_impl->call_json("GET", path, std::nullopt);
}

} // namespace metalsync
