#include "reconcilers/kubernetes/cluster_reader.hpp"

namespace metalsync {

using nlohmann::json;

namespace {

constexpr const char* k_capi_group = "cluster.x-k8s.io";

} // namespace

std::string reference_group(const json& reference)
{
    if (!reference.is_object()) return {};
    if (auto group = reference.find("apiGroup"); group != reference.end() && group->is_string()) {
        return group->get<std::string>();
    }
    const std::string api_version = reference.value("apiVersion", "");
    const auto slash = api_version.find('/');
    return slash == std::string::npos ? std::string() : api_version.substr(0, slash);
}

std::string ClusterReader::capi_version()
{
    if (!m_capi_version) {
        const auto preferred = m_client.preferred_version(k_capi_group);
        m_capi_version = std::string(k_capi_group) + "/" + preferred.value_or("v1beta1");
    }
    return *m_capi_version;
}

json ClusterReader::follow(const json& reference, const std::string& namespace_)
{
    if (!reference.is_object()) return json();
    const std::string kind = reference.value("kind", "");
    const std::string name = reference.value("name", "");
    if (kind.empty() || name.empty()) return json();
    auto info = m_client.resource_for_group_kind(reference_group(reference), kind);
    if (!info) return json();
    auto got = m_client.get(ObjectRef{info->api_version, kind, reference.value("namespace", namespace_), name});
    return got && *got ? **got : json();
}

std::optional<ClusterObjects> ClusterReader::read(const ObjectRef& cluster, std::string& error)
{
    error.clear();
    const std::string api_version = capi_version();
    auto got = m_client.get(ObjectRef{api_version, "Cluster", cluster.namespace_, cluster.name});
    if (!got) {
        error = got.error().describe();
        return std::nullopt;
    }
    if (!*got) return std::nullopt;
    ClusterObjects objects;
    objects.cluster = std::move(**got);
    const json spec = objects.cluster.value("spec", json::object());
    objects.infrastructure = follow(spec.value("infrastructureRef", json()), cluster.namespace_);
    if (json cp = follow(spec.value("controlPlaneRef", json()), cluster.namespace_); cp.is_object()) {
        objects.control_planes.push_back(std::move(cp));
    }
    if (!m_deployments.contains(cluster.namespace_)) {
        auto mds = m_client.list(api_version, "MachineDeployment", cluster.namespace_);
        m_deployments[cluster.namespace_] = mds ? std::move(*mds) : std::vector<json>{};
    }
    objects.machine_deployments = m_deployments[cluster.namespace_];
    if (auto machines = m_client.list(api_version, "Machine", cluster.namespace_,
                                      std::string(k_capi_cluster_name_label) + "=" + cluster.name)) {
        objects.machines = std::move(*machines);
    }
    return objects;
}

} // namespace metalsync
