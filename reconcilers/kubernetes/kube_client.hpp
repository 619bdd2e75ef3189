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

// How a server-side apply is sent.
struct ApplyOptions {
    bool force = true;
    // dryRun=All: the server runs the whole write (merge, conversion,
    // defaulting and validating webhooks, schema pruning) and answers the
    // object it would store, storing nothing.
    bool dry_run = false;
    // fieldValidation: "Strict" refuses unknown or duplicate fields (400);
    // "Warn" (the server's default) drops them with a Warning header;
    // "Ignore" drops them silently.
    std::string field_validation = "Strict";
    // "status": apply to the status subresource (only .status is taken).
    std::string subresource;
};

enum class PatchType { merge, json };

struct AppliedObject {
    nlohmann::json object;              // as the server stored it (or would, for a dry run)
    std::vector<std::string> warnings;  // the texts of the answer's Warning headers
};

// The texts of a Warning header value (`299 - "text", 299 - "other"`), as
// k8s.io/apiserver's warning recorder writes them; malformed parts skipped.
[[nodiscard]] std::vector<std::string> parse_warning_header(std::string_view value);

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

    // The version of `group` the server prefers (discovery's
    // preferredVersion), e.g. "v1beta2" for cluster.x-k8s.io on Cluster API
    // v1.11. nullopt when the group is not served or discovery failed.
    std::optional<std::string> preferred_version(const std::string& group);

    // A kind named by group and kind only, as Cluster API v1beta2 references
    // name them ({apiGroup, kind, name}): the preferred version of the group
    // when it serves the kind, else the first version that does.
    ApiResult<ResourceInfo> resource_for_group_kind(const std::string& group, const std::string& kind);

    // Teaches discovery a kind it does not list yet. A real API server serves
    // a CustomResourceDefinition's resources as soon as it is Established,
    // while its discovery document is updated by an asynchronous controller
    // (apiextensions-apiserver's DiscoveryController): for a moment the kind
    // is served but not discoverable. Forgotten at the next refresh that
    // lists it, or by invalidate_discovery().
    void learn(ResourceInfo info);

    // Server-side apply: PATCH application/apply-patch+yaml with
    // fieldManager and force. The object must carry apiVersion, kind and
    // metadata.name (and metadata.namespace for namespaced kinds). Returns
    // the object as the server stored it.
    ApiResult<nlohmann::json> apply(const nlohmann::json& object, const std::string& field_manager, bool force = true);
    ApiResult<AppliedObject> apply(const nlohmann::json& object, const std::string& field_manager,
                                   const ApplyOptions& options);

    // PATCH with a JSON merge patch (RFC 7386) or a JSON patch (RFC 6902),
    // to the object or one of its subresources ("status"). A merge patch
    // carrying metadata.resourceVersion is refused with 409 when the object
    // changed since (optimistic locking, as controller-runtime's
    // MergeFromWithOptimisticLock). Returns the object as stored.
    ApiResult<nlohmann::json> patch(const ObjectRef& ref, const nlohmann::json& body, PatchType type,
                                    const std::string& field_manager, const std::string& subresource = {});

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
