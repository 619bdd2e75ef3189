#pragma once

// The Kubernetes API, as metalsync uses it: discovery, server-side apply, get,
// list, delete. One instance per thread (it owns one HttpClient). Every
// request is rate limited by a token bucket (kubernetesQPS) and has a timeout.
// Errors are ApiError: http_status 0 for transport failures, the server's
// Status message otherwise (never a request body, never the token); an
// object refused before sending (no name, no namespace for a namespaced
// kind) is a 400 that is not retryable. A 401 re-reads token_file once and
// retries when the file holds a different token.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/http/api_error.hpp"
#include "reconcilers/http/http_client.hpp"
#include "reconcilers/kubernetes/kubeconfig.hpp"

namespace metalsync {

// How the server serves one kind.
struct ResourceInfo {
    std::string api_version;  // "cluster.x-k8s.io/v1beta1", "v1"
    std::string kind;         // "Cluster"
    std::string resource;     // "clusters"
    bool namespaced = true;
    bool has_status = false;  // a status subresource is served
};

struct ObjectRef {
    std::string api_version;
    std::string kind;
    std::string namespace_;  // empty for cluster-scoped kinds
    std::string name;

    friend bool operator==(const ObjectRef&, const ObjectRef&) = default;
    friend auto operator<=>(const ObjectRef&, const ObjectRef&) = default;
};

// "Cluster default/baremetal-cluster", "Namespace capi-system" for messages and events.
[[nodiscard]] std::string describe(const ObjectRef& ref);
[[nodiscard]] ObjectRef ref_of(const nlohmann::json& object);  // from apiVersion, kind, metadata

class KubeClient {
public:
    explicit KubeClient(KubeConnection connection, std::chrono::milliseconds timeout = std::chrono::seconds(30));
    ~KubeClient();
    KubeClient(const KubeClient&) = delete;
    KubeClient& operator=(const KubeClient&) = delete;

    // Requests per second across every call of this client; <= 0 means unlimited.
    void set_qps(double qps);

    // Maps apiVersion + kind to its resource through discovery (/api, /apis,
    // then each group version). Cached; on a miss the cache is refreshed once
    // (a CRD may have just been established) before answering 404 with
    // "the server does not serve kind K in apiVersion V".
    ApiResult<ResourceInfo> resource_for(const std::string& api_version, const std::string& kind);
    void invalidate_discovery();

    // Server-side apply: PATCH application/apply-patch+yaml with
    // fieldManager and force. The object must carry apiVersion, kind and
    // metadata.name (and metadata.namespace for namespaced kinds). Returns
    // the object as the server stored it.
    ApiResult<nlohmann::json> apply(const nlohmann::json& object, const std::string& field_manager, bool force = true);

    // nullopt when the object does not exist (404).
    ApiResult<std::optional<nlohmann::json>> get(const ObjectRef& ref);

    // Every object of a kind (following `continue`), in one namespace or, with
    // an empty namespace, in all of them. `label_selector` as the API takes it.
    ApiResult<std::vector<nlohmann::json>> list(const std::string& api_version, const std::string& kind,
                                                const std::string& namespace_ = {},
                                                const std::string& label_selector = {});

    // DELETE with propagationPolicy=Background. true: the server accepted the
    // delete (the object may linger while finalizers run); false: already gone.
    ApiResult<bool> remove(const ObjectRef& ref);

    // Items per list page (the `limit` sent; 500 unless changed). For tests.
    void set_page_size(int page_size);

    [[nodiscard]] const KubeConnection& connection() const { return m_connection; }
    [[nodiscard]] std::uint64_t requests_sent() const { return m_requests; }

private:
    struct Impl;
    KubeConnection m_connection;
    std::unique_ptr<Impl> m_impl;
    std::uint64_t m_requests = 0;
};

// Standard base64 (RFC 4648), as Secret data is encoded. nullopt when malformed.
// Defined once, in sources/git_known_hosts.cpp (the same function, declared
// there too); padding may be left out, line breaks are not accepted.
std::optional<std::string> base64_decode(std::string_view text);

} // namespace metalsync
