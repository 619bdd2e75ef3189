#pragma once

// A Cluster API cluster as `clusterctl describe cluster` shows it, built from
// the objects listed from the management cluster. Pure.
//
// Tree (JSON, what cluster-get returns and `metalsync cluster NAME` draws):
//   {name, namespace, phase, ready{status, reason, message, since}, deleting,
//    finalizers[], infrastructure{kind, name, ready},
//    controlPlane{kind, name, version, replicas{desired, current, updated, ready},
//                 ready{...}, machines[...]},
//    machineDeployments[{name, version, phase, replicas{...}, ready{...}, machines[...]}],
//    otherMachines[...], machinesByPhase{Running: 3, ...}, machineCount}
// machine: {name, phase, version, ready{...}, node, providerID, deleting}

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace metalsync {

inline constexpr const char* k_capi_api_version = "cluster.x-k8s.io/v1beta1";
inline constexpr const char* k_capi_cluster_name_label = "cluster.x-k8s.io/cluster-name";

struct ClusterObjects {
    nlohmann::json cluster;                      // a cluster.x-k8s.io Cluster
    nlohmann::json infrastructure;               // the infrastructureRef object, or null
    std::vector<nlohmann::json> control_planes;  // candidates; the one named by controlPlaneRef is used
    std::vector<nlohmann::json> machine_deployments;  // of the namespace; those with spec.clusterName are used
    std::vector<nlohmann::json> machines;             // of the namespace; those labelled with the cluster are used
};

[[nodiscard]] nlohmann::json cluster_tree(const ClusterObjects& objects);

// One line per cluster for cluster-list: name, namespace, phase, ready,
// controlPlane{desired, updated, ready, version}, workers{desired, updated,
// ready}, machineCount, deleting.
[[nodiscard]] nlohmann::json cluster_summary(const nlohmann::json& tree);

// True when the cluster is Ready, every replica count is met and updated,
// and nothing is being deleted: nothing more to watch closely.
[[nodiscard]] bool cluster_settled(const nlohmann::json& tree);

} // namespace metalsync
