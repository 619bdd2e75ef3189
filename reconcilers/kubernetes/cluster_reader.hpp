#pragma once

// Reads a Cluster API cluster's objects for cluster_tree(), at the versions
// the server prefers: on Cluster API v1.11+ that is v1beta2, whose status
// (Available conditions, upToDateReplicas, initialization.provisioned) is the
// one its controllers write; a v1beta1 read sees that status converted back.
// References are followed by group and kind (v1beta2 references carry
// {apiGroup, kind, name}, no apiVersion), resolved through discovery.
// One reader per pass: MachineDeployments are listed once per namespace.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reconcilers/kubernetes/cluster_status.hpp"
#include "reconcilers/kubernetes/kube_client.hpp"

namespace metalsync {

class ClusterReader {
public:
    explicit ClusterReader(KubeClient& client) : m_client(client) {}

    // nullopt when the Cluster cannot be read (gone, or the server failed);
    // `error` then says why, empty when it is simply gone.
    std::optional<ClusterObjects> read(const ObjectRef& cluster, std::string& error);

private:
    nlohmann::json follow(const nlohmann::json& reference, const std::string& namespace_);
    std::string capi_version();

    KubeClient& m_client;
    std::optional<std::string> m_capi_version;
    std::map<std::string, std::vector<nlohmann::json>> m_deployments;  // by namespace
};

// The group of a reference: apiGroup (v1beta2) or the group of apiVersion (v1beta1).
[[nodiscard]] std::string reference_group(const nlohmann::json& reference);

} // namespace metalsync
