#pragma once

// The control socket's Kubernetes commands, answered from the KubeWorker's
// snapshot (never a live call, never a Secret's content):
//   cluster-list                 one summary per Cluster API cluster
//   cluster-get {name[, namespace]}  the clusterctl-describe tree and the cluster's events
//   kube-object-list [{state}]   every Kubernetes object from Git with its state
// and the "kubernetes" part of status-get.

#include <nlohmann/json.hpp>

#include "daemon/control_server.hpp"
#include "daemon/kube_worker.hpp"
#include "store/store.hpp"

namespace metalsync {

void register_kube_commands(ControlServer& server, KubeWorker& worker, const StoreReader& reader);

// {enabled, connected, error, revision, lastPass, lastSuccess, objects{total, byState}, clusters}
[[nodiscard]] nlohmann::json kube_status_json(const KubeSnapshot& snapshot);
// One line for `status` text and sd_notify: "12 objects, 12 in sync; 1 cluster".
[[nodiscard]] std::string kube_status_text(const KubeSnapshot& snapshot);

} // namespace metalsync
