#include "reconcilers/kubernetes/kube_client.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "reconcilers/http/redact.hpp"

namespace metalsync {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// METALSYNC_VERSION is defined where the build passes it to this library.
#ifdef METALSYNC_VERSION
constexpr const char* k_user_agent = "metalsync/" METALSYNC_VERSION;
#else
constexpr const char* k_user_agent = "metalsync";
#endif

constexpr int k_default_page_size = 500;
constexpr int k_max_pages = 100'000; // a server that never stops paging is a bug
constexpr std::size_t k_max_raw_body = 300;

std::string str(const json& object, const char* key)
{
    if (!object.is_object()) {
        return {};
    }
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// "cluster.x-k8s.io/v1beta1" -> {"cluster.x-k8s.io", "v1beta1"}; "v1" -> {"", "v1"}.
std::pair<std::string, std::string> split_api_version(const std::string& api_version)
{
    const auto slash = api_version.find('/');
    if (slash == std::string::npos) {
        return {std::string(), api_version};
    }
    return {api_version.substr(0, slash), api_version.substr(slash + 1)};
}

std::string group_version_path(const std::string& api_version)
{
    const auto [group, version] = split_api_version(api_version);
    return group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
}

// The message of a Kubernetes Status document, else the start of the body.
std::string status_message(std::string_view body)
{
    std::string message;
    auto doc = json::parse(body, nullptr, false);
    if (doc.is_object()) {
        message = str(doc, "message");
        if (message.empty()) {
            message = str(doc, "reason");
        }
    }
    if (message.empty()) {
        message = std::string(body.substr(0, k_max_raw_body));
        if (body.size() > k_max_raw_body) {
            message += "...";
        }
    }
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
    }
    return redact(std::move(message));
}

ApiError kube_api_error(std::string operation, int http_status, std::string_view body)
{
    ApiError error;
    error.http_status = http_status;
    error.operation = std::move(operation);
    error.message = status_message(body);
    error.retryable = http_status == 429 || http_status >= 500;
    if (http_status == 401) {
        error.message = "authentication failed: " + error.message;
    } else if (http_status == 403) {
        error.message = "not authorised: " + error.message;
    }
    return error;
}

ApiError client_error(std::string operation, std::string message)
{
    // Refused before sending, as the server would refuse it: 400, never
    // retried, and not 0, which callers read as "the server is unreachable".
    return ApiError{400, false, false, std::move(message), std::move(operation)};
}

// Secret values an error could echo back: metalsync itself never puts them in a message.
void remember_object_secrets(const json& object)
{
    remember_secrets_in(object);
    if (str(object, "kind") != "Secret" || str(object, "apiVersion") != "v1") {
        return;
    }
    for (const char* key : {"data", "stringData"}) {
        auto it = object.find(key);
        if (it == object.end() || !it->is_object()) {
            continue;
        }
        for (const auto& [name, value] : it->items()) {
            if (!value.is_string()) {
                continue;
            }
            remember_secret(value.get<std::string>());
            if (std::string_view(key) == "data") {
                if (auto decoded = base64_decode(value.get<std::string>()); decoded && decoded->size() >= 4) {
                    remember_secret(*decoded);
                }
            }
        }
    }
}

std::expected<std::string, std::string> read_token_file(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::unexpected("tokenFile " + path.string() + " cannot be read");
    }
    std::stringstream text;
    text << in.rdbuf();
    auto token = text.str();
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
        token.pop_back();
    }
    return token;
}

} // namespace

std::string describe(const ObjectRef& ref)
{
    return ref.kind + " " + (ref.namespace_.empty() ? ref.name : ref.namespace_ + "/" + ref.name);
}

ObjectRef ref_of(const json& object)
{
    ObjectRef ref;
    ref.api_version = str(object, "apiVersion");
    ref.kind = str(object, "kind");
    if (object.is_object()) {
        if (auto it = object.find("metadata"); it != object.end() && it->is_object()) {
            ref.namespace_ = str(*it, "namespace");
            ref.name = str(*it, "name");
        }
    }
    return ref;
}

struct KubeClient::Impl {
    const KubeConnection& connection;
    std::uint64_t& requests;
    HttpClient http;
    std::chrono::milliseconds timeout;
    std::string token;
    int page_size = k_default_page_size;

    // Token bucket: up to one second's worth of requests in a burst.
    double qps = 0;
    double bucket = 0;
    Clock::time_point refilled = Clock::now();

    // Discovery: the group versions the server serves (from /api and /apis),
    // loaded once, and the resources of each group version asked about.
    bool have_group_versions = false;
    std::set<std::string> group_versions;
    std::map<std::string, std::vector<std::string>> group_order;  // group -> versions, preferred first
    std::map<std::string, std::vector<ResourceInfo>> resources;
    // Kinds served before discovery lists them (see KubeClient::learn), by resource key.
    std::map<std::string, ResourceInfo> learned;

    Impl(const KubeConnection& c, std::uint64_t& counter, std::chrono::milliseconds t)
        : connection(c), requests(counter), http(c.tls, std::min(t, k_default_connect_timeout)), timeout(t),
          token(c.bearer_token)
    {
        remember_secret(token);
        remember_secret(c.tls.client_key_pem);
    }

    void take_token()
    {
        if (qps <= 0) {
            return;
        }
        const double burst = std::max(1.0, std::floor(qps));
        auto now = Clock::now();
        bucket = std::min(burst, bucket + std::chrono::duration<double>(now - refilled).count() * qps);
        refilled = now;
        if (bucket < 1.0) {
            const auto wait = std::chrono::duration<double>((1.0 - bucket) / qps);
            std::this_thread::sleep_for(std::chrono::duration_cast<Clock::duration>(wait));
            now = Clock::now();
            bucket = std::min(burst, bucket + std::chrono::duration<double>(now - refilled).count() * qps);
            refilled = now;
        }
        bucket = std::max(0.0, bucket - 1.0);
    }

    // One request. `path` starts with "/" and may carry a query string.
    // `operation` names it in errors and logs.
    ApiResult<HttpResponse> call(std::string_view method, const std::string& path, const std::string& operation,
                                 const std::string& body = {}, const std::string& content_type = {})
    {
        bool token_reread = false;
        while (true) {
            HttpHeaders headers{{"Accept", "application/json"}, {"User-Agent", k_user_agent}};
            if (!content_type.empty()) {
                headers.emplace_back("Content-Type", content_type);
            }
            if (!token.empty()) {
                headers.emplace_back("Authorization", "Bearer " + token);
            }
            take_token();
            ++requests;
            auto response = http.request(method, connection.server + path, headers, body, timeout);
            if (!response) {
                spdlog::debug("kubernetes: {} failed: {}", operation, redact(response.error().message));
                return std::unexpected(ApiError{0, true, false,
                                                "Kubernetes API " + connection.server +
                                                    " unreachable: " + redact(response.error().message),
                                                operation});
            }
            const auto status = static_cast<int>(response->status);
            spdlog::debug("kubernetes: {} -> {}", operation, status);
            if (status == 401 && !token_reread && !connection.token_file.empty()) {
                // Projected ServiceAccount tokens rotate: read the file again,
                // and try once more when it holds a different token.
                token_reread = true;
                if (auto fresh = read_token_file(connection.token_file); fresh && !fresh->empty() && *fresh != token) {
                    remember_secret(*fresh);
                    token = std::move(*fresh);
                    spdlog::info("kubernetes: {} answered 401; token re-read from {}", connection.server,
                                 connection.token_file.string());
                    continue;
                }
            }
            if (status >= 400) {
                return std::unexpected(kube_api_error(operation, status, response->body));
            }
            return std::move(*response);
        }
    }

    ApiResult<json> call_json(std::string_view method, const std::string& path, const std::string& operation,
                              const std::string& body = {}, const std::string& content_type = {})
    {
        auto response = call(method, path, operation, body, content_type);
        if (!response) {
            return std::unexpected(response.error());
        }
        auto doc = json::parse(response->body, nullptr, false);
        if (doc.is_discarded() || !doc.is_object()) {
            return std::unexpected(ApiError{static_cast<int>(response->status), false, false,
                                            "the server answered with something other than a JSON object", operation});
        }
        return doc;
    }

    ApiResult<void> load_group_versions()
    {
        auto core = call_json("GET", "/api", "GET /api");
        if (!core) {
            return std::unexpected(core.error());
        }
        auto groups = call_json("GET", "/apis", "GET /apis");
        if (!groups) {
            return std::unexpected(groups.error());
        }
        std::set<std::string> served;
        std::map<std::string, std::vector<std::string>> order;
        if (auto it = core->find("versions"); it != core->end() && it->is_array()) {
            for (const auto& v : *it) {
                if (v.is_string()) {
                    served.insert(v.get<std::string>());
                    order[""].push_back(v.get<std::string>());
                }
            }
        }
        if (auto it = groups->find("groups"); it != groups->end() && it->is_array()) {
            for (const auto& group : *it) {
                if (!group.is_object() || !group.contains("versions") || !group["versions"].is_array()) {
                    continue;
                }
                const auto name = str(group, "name");
                auto& versions = order[name];
                const auto preferred = group.contains("preferredVersion") ? str(group["preferredVersion"], "version")
                                                                           : std::string();
                if (!preferred.empty()) {
                    versions.push_back(preferred);
                }
                // The server lists a group's versions by priority (GA, beta, alpha; newest first).
                for (const auto& v : group["versions"]) {
                    if (auto gv = str(v, "groupVersion"); !gv.empty()) {
                        served.insert(gv);
                    }
                    if (auto version = str(v, "version"); !version.empty() && version != preferred) {
                        versions.push_back(version);
                    }
                }
            }
        }
        group_versions = std::move(served);
        group_order = std::move(order);
        have_group_versions = true;
        return {};
    }

    ApiResult<void> load_resources(const std::string& api_version)
    {
        const auto path = group_version_path(api_version);
        auto list = call_json("GET", path, "GET " + path);
        if (!list) {
            if (list.error().http_status == 404) {
                // Gone between /apis and now (a CRD deleted): not served.
                resources.erase(api_version);
                group_versions.erase(api_version);
                return {};
            }
            return std::unexpected(list.error());
        }
        std::vector<ResourceInfo> infos;
        std::set<std::string> with_status;
        if (auto it = list->find("resources"); it != list->end() && it->is_array()) {
            for (const auto& r : *it) {
                const auto name = str(r, "name");
                if (name.empty()) {
                    continue;
                }
                if (const auto slash = name.find('/'); slash != std::string::npos) {
                    if (name.substr(slash + 1) == "status") {
                        with_status.insert(name.substr(0, slash));
                    }
                    continue;
                }
                ResourceInfo info;
                info.api_version = api_version;
                info.kind = str(r, "kind");
                info.resource = name;
                info.namespaced =
                    r.contains("namespaced") && r["namespaced"].is_boolean() && r["namespaced"].get<bool>();
                infos.push_back(std::move(info));
            }
        }
        for (auto& info : infos) {
            info.has_status = with_status.contains(info.resource);
        }
        resources[api_version] = std::move(infos);
        return {};
    }

    std::optional<ResourceInfo> cached(const std::string& api_version, const std::string& kind)
    {
        if (auto it = resources.find(api_version); it != resources.end()) {
            for (const auto& info : it->second) {
                if (info.kind == kind) {
                    learned.erase(api_version + "/" + kind);  // discovery has caught up
                    return info;
                }
            }
        }
        if (auto it = learned.find(api_version + "/" + kind); it != learned.end()) {
            return it->second;
        }
        return std::nullopt;
    }

    ApiResult<ResourceInfo> resource_for(const std::string& api_version, const std::string& kind)
    {
        if (auto info = cached(api_version, kind)) {
            return *info;
        }
        const auto operation = "GET " + group_version_path(api_version);
        if (api_version.empty() || kind.empty()) {
            return std::unexpected(client_error(operation, "an object needs apiVersion and kind"));
        }
        // First use of the server or of this group version: load what is missing.
        bool fresh_groups = false;
        bool fresh_resources = false;
        if (!have_group_versions) {
            if (auto ok = load_group_versions(); !ok) {
                return std::unexpected(ok.error());
            }
            fresh_groups = true;
        }
        if (group_versions.contains(api_version) && !resources.contains(api_version)) {
            if (auto ok = load_resources(api_version); !ok) {
                return std::unexpected(ok.error());
            }
            fresh_resources = true;
        }
        if (auto info = cached(api_version, kind)) {
            return *info;
        }
        // A miss: refresh once what was not just loaded, a CRD may have been established since.
        if (!fresh_groups) {
            if (auto ok = load_group_versions(); !ok) {
                return std::unexpected(ok.error());
            }
        }
        if (!group_versions.contains(api_version)) {
            resources.erase(api_version);
        } else if (!fresh_resources) {
            if (auto ok = load_resources(api_version); !ok) {
                return std::unexpected(ok.error());
            }
        }
        if (auto info = cached(api_version, kind)) {
            return *info;
        }
        return std::unexpected(ApiError{
            404, false, false, "the server does not serve kind " + kind + " in apiVersion " + api_version, operation});
    }

    static std::string resource_name(const ResourceInfo& info)
    {
        const auto group = split_api_version(info.api_version).first;
        return group.empty() ? info.resource : info.resource + "." + group;
    }

    // The collection path (name empty) or an object's path.
    static std::string object_path(const ResourceInfo& info, const std::string& namespace_, const std::string& name)
    {
        std::string path = group_version_path(info.api_version);
        if (info.namespaced && !namespace_.empty()) {
            path += "/namespaces/" + url_escape(namespace_);
        }
        path += "/" + info.resource;
        if (!name.empty()) {
            path += "/" + url_escape(name);
        }
        return path;
    }

    static std::string operation_name(std::string_view method, const ResourceInfo& info, const ObjectRef& ref)
    {
        const auto where = info.namespaced && !ref.namespace_.empty() ? ref.namespace_ + "/" + ref.name : ref.name;
        return std::string(method) + " " + resource_name(info) + " " + where;
    }
};

KubeClient::KubeClient(KubeConnection connection, std::chrono::milliseconds timeout)
    : m_connection(std::move(connection)), m_impl(std::make_unique<Impl>(m_connection, m_requests, timeout))
{
}

KubeClient::~KubeClient() = default;

void KubeClient::set_qps(double qps)
{
    m_impl->qps = qps > 0 ? qps : 0;
    m_impl->bucket = std::max(1.0, std::floor(m_impl->qps));
    m_impl->refilled = Clock::now();
}

void KubeClient::set_page_size(int page_size)
{
    m_impl->page_size = page_size > 0 ? page_size : k_default_page_size;
}

ApiResult<ResourceInfo> KubeClient::resource_for(const std::string& api_version, const std::string& kind)
{
    return m_impl->resource_for(api_version, kind);
}

void KubeClient::invalidate_discovery()
{
    m_impl->have_group_versions = false;
    m_impl->group_versions.clear();
    m_impl->group_order.clear();
    m_impl->resources.clear();
    m_impl->learned.clear();
}

void KubeClient::learn(ResourceInfo info)
{
    auto key = info.api_version + "/" + info.kind;
    m_impl->learned[std::move(key)] = std::move(info);
}

std::optional<std::string> KubeClient::preferred_version(const std::string& group)
{
    if (!m_impl->have_group_versions && !m_impl->load_group_versions()) {
        return std::nullopt;
    }
    auto it = m_impl->group_order.find(group);
    if (it == m_impl->group_order.end() || it->second.empty()) {
        return std::nullopt;
    }
    return it->second.front();
}

ApiResult<ResourceInfo> KubeClient::resource_for_group_kind(const std::string& group, const std::string& kind)
{
    if (!m_impl->have_group_versions) {
        if (auto ok = m_impl->load_group_versions(); !ok) {
            return std::unexpected(ok.error());
        }
    }
    std::vector<std::string> versions;
    if (auto it = m_impl->group_order.find(group); it != m_impl->group_order.end()) {
        versions = it->second;
    }
    for (const auto& version : versions) {
        auto info = m_impl->resource_for(group.empty() ? version : group + "/" + version, kind);
        if (info) {
            return info;
        }
        if (info.error().http_status != 404) {
            return std::unexpected(info.error());
        }
    }
    return std::unexpected(ApiError{404, false, false,
                                    "the server does not serve kind " + kind + " in group " +
                                        (group.empty() ? std::string("core") : group),
                                    "GET /apis/" + group});
}

std::vector<std::string> parse_warning_header(std::string_view value)
{
    // warning-value = warn-code SP warn-agent SP warn-text [ SP warn-date ],
    // several joined with ", "; warn-text is a quoted string with \-escapes.
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < value.size()) {
        const auto quote = value.find('"', i);
        if (quote == std::string_view::npos) {
            break;
        }
        std::string text;
        std::size_t j = quote + 1;
        bool closed = false;
        for (; j < value.size(); ++j) {
            if (value[j] == '\\' && j + 1 < value.size()) {
                text += value[++j];
            } else if (value[j] == '"') {
                closed = true;
                break;
            } else {
                text += value[j];
            }
        }
        if (!closed) {
            break;
        }
        out.push_back(redact(std::move(text)));
        // Skip an optional quoted warn-date, then the separating comma.
        i = j + 1;
        while (i < value.size() && value[i] == ' ') {
            ++i;
        }
        if (i < value.size() && value[i] == '"') {
            const auto end = value.find('"', i + 1);
            i = end == std::string_view::npos ? value.size() : end + 1;
        }
        const auto comma = value.find(',', i);
        if (comma == std::string_view::npos) {
            break;
        }
        i = comma + 1;
    }
    return out;
}

ApiResult<nlohmann::json> KubeClient::apply(const nlohmann::json& object, const std::string& field_manager, bool force)
{
    ApplyOptions options;
    options.force = force;
    auto applied = apply(object, field_manager, options);
    if (!applied) {
        return std::unexpected(applied.error());
    }
    return std::move(applied->object);
}

ApiResult<AppliedObject> KubeClient::apply(const nlohmann::json& object, const std::string& field_manager,
                                           const ApplyOptions& options)
{
    const auto ref = ref_of(object);
    if (ref.api_version.empty() || ref.kind.empty() || ref.name.empty()) {
        return std::unexpected(
            client_error("PATCH " + describe(ref), "an applied object needs apiVersion, kind and metadata.name"));
    }
    if (field_manager.empty()) {
        return std::unexpected(client_error("PATCH " + describe(ref), "server-side apply needs a field manager"));
    }
    auto info = m_impl->resource_for(ref.api_version, ref.kind);
    if (!info) {
        return std::unexpected(info.error());
    }
    const auto operation = Impl::operation_name("PATCH", *info, ref);
    if (info->namespaced && ref.namespace_.empty()) {
        return std::unexpected(client_error(operation, ref.kind + " is namespaced: metadata.namespace is missing"));
    }
    remember_object_secrets(object);
    auto path = Impl::object_path(*info, ref.namespace_, ref.name) +
                (options.subresource.empty() ? "" : "/" + options.subresource) +
                "?fieldManager=" + url_escape(field_manager);
    if (options.force) {
        path += "&force=true";
    }
    if (options.dry_run) {
        path += "&dryRun=All";
    }
    if (!options.field_validation.empty()) {
        path += "&fieldValidation=" + url_escape(options.field_validation);
    }
    // JSON is YAML: the apply patch content type takes either.
    auto response = m_impl->call("PATCH", path, options.dry_run ? operation + " (dry run)" : operation, object.dump(),
                                 "application/apply-patch+yaml");
    if (!response) {
        if (response.error().http_status == 404 && !m_impl->learned.contains(ref.api_version + "/" + ref.kind)) {
            // The kind may have gone (a CRD deleted): ask discovery again next time.
            m_impl->resources.erase(ref.api_version);
        }
        return std::unexpected(response.error());
    }
    AppliedObject out;
    out.object = json::parse(response->body, nullptr, false);
    if (out.object.is_discarded() || !out.object.is_object()) {
        return std::unexpected(ApiError{static_cast<int>(response->status), false, false,
                                        "the server answered with something other than a JSON object", operation});
    }
    if (auto warning = response->header("warning"); !warning.empty()) {
        out.warnings = parse_warning_header(warning);
    }
    return out;
}

ApiResult<nlohmann::json> KubeClient::patch(const ObjectRef& ref, const nlohmann::json& body, PatchType type,
                                            const std::string& field_manager, const std::string& subresource)
{
    auto info = m_impl->resource_for(ref.api_version, ref.kind);
    if (!info) {
        return std::unexpected(info.error());
    }
    const auto operation = Impl::operation_name("PATCH", *info, ref) + (subresource.empty() ? "" : "/" + subresource);
    auto path = Impl::object_path(*info, ref.namespace_, ref.name) + (subresource.empty() ? "" : "/" + subresource);
    if (!field_manager.empty()) {
        path += "?fieldManager=" + url_escape(field_manager);
    }
    return m_impl->call_json("PATCH", path, operation, body.dump(),
                             type == PatchType::merge ? "application/merge-patch+json" : "application/json-patch+json");
}

ApiResult<std::optional<nlohmann::json>> KubeClient::get(const ObjectRef& ref)
{
    auto info = m_impl->resource_for(ref.api_version, ref.kind);
    if (!info) {
        return std::unexpected(info.error());
    }
    const auto operation = Impl::operation_name("GET", *info, ref);
    auto object = m_impl->call_json("GET", Impl::object_path(*info, ref.namespace_, ref.name), operation);
    if (!object) {
        if (object.error().http_status == 404) {
            return std::optional<json>();
        }
        return std::unexpected(object.error());
    }
    return std::optional<json>(std::move(*object));
}

ApiResult<std::vector<nlohmann::json>> KubeClient::list(const std::string& api_version, const std::string& kind,
                                                        const std::string& namespace_,
                                                        const std::string& label_selector)
{
    auto info = m_impl->resource_for(api_version, kind);
    if (!info) {
        return std::unexpected(info.error());
    }
    const auto operation =
        "LIST " + Impl::resource_name(*info) + (info->namespaced && !namespace_.empty() ? " in " + namespace_ : "");
    std::string base = Impl::object_path(*info, namespace_, {}) + "?limit=" + std::to_string(m_impl->page_size);
    if (!label_selector.empty()) {
        base += "&labelSelector=" + url_escape(label_selector);
    }
    std::vector<json> out;
    std::string next;
    bool restarted = false;
    for (int page = 0; page < k_max_pages; ++page) {
        auto doc = m_impl->call_json("GET", next.empty() ? base : base + "&continue=" + url_escape(next), operation);
        if (!doc && doc.error().http_status == 404) {
            // The kind is no longer served (its CRD deleted): ask discovery again next time.
            m_impl->resources.erase(api_version);
        }
        if (!doc) {
            if (doc.error().http_status == 410 && !next.empty() && !restarted) {
                // The continue token expired (etcd compacted): start over once.
                restarted = true;
                out.clear();
                next.clear();
                continue;
            }
            return std::unexpected(doc.error());
        }
        if (auto items = doc->find("items"); items != doc->end() && items->is_array()) {
            for (auto& item : *items) {
                // List items carry no apiVersion and kind; put them back so ref_of works.
                if (item.is_object()) {
                    item["apiVersion"] = api_version;
                    item["kind"] = kind;
                }
                out.push_back(std::move(item));
            }
        }
        next.clear();
        if (auto metadata = doc->find("metadata"); metadata != doc->end()) {
            next = str(*metadata, "continue");
        }
        if (next.empty()) {
            return out;
        }
    }
    return std::unexpected(ApiError{0, false, false, "the server never stopped paging", operation});
}

ApiResult<bool> KubeClient::remove(const ObjectRef& ref)
{
    auto info = m_impl->resource_for(ref.api_version, ref.kind);
    if (!info) {
        return std::unexpected(info.error());
    }
    const auto operation = Impl::operation_name("DELETE", *info, ref);
    static const std::string k_delete_options =
        R"({"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"})";
    auto response = m_impl->call("DELETE", Impl::object_path(*info, ref.namespace_, ref.name), operation,
                                 k_delete_options, "application/json");
    if (!response) {
        if (response.error().http_status == 404) {
            return false;
        }
        return std::unexpected(response.error());
    }
    return true;
}

} // namespace metalsync
