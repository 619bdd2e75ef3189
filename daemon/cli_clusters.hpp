#pragma once

// The CLI's Kubernetes subcommands:
//   clusters            Cluster API clusters from Git, one line each (cluster-list)
//   cluster NAME        the clusterctl-describe tree of one cluster (cluster-get)
//   objects             every Kubernetes object from Git with its state (kube-object-list)
//   kubeconfig NAME     the workload cluster's kubeconfig, read from the management
//                       cluster's <NAME>-kubeconfig Secret with the daemon's own
//                       kubeconfig; printed to stdout only, never through the
//                       daemon, never logged.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "daemon/cli_status.hpp"

namespace metalsync {

struct ClusterOptions {
    ClientOptions client;
    std::string name;
    std::string namespace_;
    bool grouping = true;  // collapse alike machines into "N Machines...", as clusterctl describe does
};

struct ObjectsOptions {
    ClientOptions client;
    std::string state;
};

struct KubeconfigOptions {
    std::string name;
    std::string namespace_;  // default: the config's kubernetes.namespace
    std::string config = "/etc/metalsync/metalsync.yaml";
    std::string kubeconfig;  // overrides the config's kubernetes.kubeconfig
    std::string context;     // overrides the config's kubernetes.context
};

int run_clusters(const ClientOptions& options);
int run_cluster(const ClusterOptions& options);
int run_objects(const ObjectsOptions& options);
int run_kubeconfig(const KubeconfigOptions& options);

std::string render_cluster_list(const nlohmann::json& arguments);
std::string render_cluster(const nlohmann::json& arguments, bool grouping, std::int64_t now);
std::string render_objects(const nlohmann::json& arguments);

} // namespace metalsync
