#include "daemon/kube_commands.hpp"

#include <map>

#include "reconcilers/kubernetes/cluster_status.hpp"

namespace metalsync {

using nlohmann::json;

json kube_status_json(const KubeSnapshot& snapshot)
{
    json by_state = json::object();
    for (const auto& v : snapshot.objects) {
        const std::string state = to_string(v.state);
        by_state[state] = by_state.value(state, 0) + 1;
    }
    json clusters = json::array();
    for (const auto& tree : snapshot.clusters) clusters.push_back(cluster_summary(tree));
    return json{{"enabled", snapshot.enabled},
                {"connected", snapshot.connected},
                {"error", snapshot.error.empty() ? json() : json(snapshot.error)},
                {"revision", snapshot.revision},
                {"lastPass", snapshot.last_pass},
                {"lastSuccess", snapshot.last_success},
                {"objects", {{"total", snapshot.objects.size()}, {"byState", by_state}}},
                {"pending", snapshot.pending.size()},
                {"clusters", clusters}};
}

std::string kube_status_text(const KubeSnapshot& snapshot)
{
    if (!snapshot.enabled) return snapshot.error.empty() ? "kubernetes: not configured" : "kubernetes: " + snapshot.error;
    std::map<std::string, int> by_state;
    for (const auto& v : snapshot.objects) by_state[to_string(v.state)]++;
    std::string text = "kubernetes: " + std::to_string(snapshot.objects.size()) + " objects";
    for (const auto& [state, count] : by_state) text += ", " + std::to_string(count) + " " + state;
    text += "; " + std::to_string(snapshot.clusters.size()) + (snapshot.clusters.size() == 1 ? " cluster" : " clusters");
    if (!snapshot.error.empty()) text += "; error: " + snapshot.error;
    return text;
}

// Each Machine whose infrastructure is a MetalsyncMachine gains what the
// provider knows: its Ironic node, that node's state, and why it waits.
static json with_provider(json tree, const std::map<std::string, json>& provider)
{
    if (provider.empty()) return tree;
    const std::string ns = tree.value("namespace", "");
    auto enrich = [&](json& machines) {
        if (!machines.is_array()) return;
        for (auto& m : machines) {
            const json infra = m.value("infrastructure", json::object());
            if (infra.value("kind", "") != "MetalsyncMachine") continue;
            auto it = provider.find(ns + "/" + infra.value("name", ""));
            if (it == provider.end()) continue;
            for (const auto& [key, value] : it->second.items()) m[key] = value;
        }
    };
    if (tree.contains("controlPlane") && tree["controlPlane"].is_object()) enrich(tree["controlPlane"]["machines"]);
    if (tree.contains("machineDeployments") && tree["machineDeployments"].is_array()) {
        for (auto& md : tree["machineDeployments"]) enrich(md["machines"]);
    }
    if (tree.contains("otherMachines")) enrich(tree["otherMachines"]);
    return tree;
}

void register_kube_commands(ControlServer& server, KubeWorker& worker, const StoreReader& reader)
{
    server.add_command(
        "cluster-list",
        [&worker](const ControlRequest&) -> ControlReply {
            const KubeSnapshot snapshot = worker.snapshot();
            json clusters = json::array();
            for (const auto& tree : snapshot.clusters) clusters.push_back(cluster_summary(tree));
            json args{{"clusters", clusters}, {"kubernetes", kube_status_json(snapshot)}};
            if (!snapshot.enabled) {
                return {k_result_empty, "no Kubernetes management cluster configured (kubernetes.kubeconfig)", args};
            }
            if (clusters.empty()) {
                return {k_result_empty,
                        snapshot.error.empty() ? "no Cluster API clusters in Git" : "no clusters known: " + snapshot.error,
                        args};
            }
            return {k_result_success, std::to_string(clusters.size()) + (clusters.size() == 1 ? " cluster" : " clusters"),
                    args};
        },
        false, "Cluster API clusters from Git: phase, Ready, control plane and worker replicas");
    server.add_command(
        "cluster-get",
        [&worker, &reader](const ControlRequest& request) -> ControlReply {
            const std::string name = request.arguments.value("name", "");
            const std::string namespace_ = request.arguments.value("namespace", "");
            if (name.empty()) return {k_result_error, "cluster-get needs arguments {\"name\": CLUSTER}", nullptr};
            const KubeSnapshot snapshot = worker.snapshot();
            std::vector<const json*> matches;
            for (const auto& tree : snapshot.clusters) {
                if (tree.value("name", "") == name && (namespace_.empty() || tree.value("namespace", "") == namespace_)) {
                    matches.push_back(&tree);
                }
            }
            if (matches.empty()) {
                return {k_result_empty, "no cluster '" + name + "'" + (namespace_.empty() ? "" : " in namespace " + namespace_),
                        nullptr};
            }
            if (matches.size() > 1) {
                return {k_result_error, "cluster '" + name + "' exists in several namespaces; give the namespace", nullptr};
            }
            const json tree = with_provider(*matches.front(), worker.provider_machines());
            const std::string ns = tree.value("namespace", "");
            json objects = json::array();
            for (const auto& v : snapshot.objects) {
                if (v.ref.namespace_ == ns) objects.push_back(to_json(v));
            }
            EventFilter filter;
            filter.object_name = ns + "/" + name;
            filter.limit = 20;
            json events = json::array();
            if (auto list = reader.list_events(filter)) {
                for (const auto& e : *list) {
                    events.push_back({{"time", e.time}, {"name", e.name}, {"message", e.message},
                                      {"revision", e.revision}, {"author", e.author}});
                }
            }
            return {k_result_success, name + ": " + tree.value("phase", ""),
                    {{"cluster", tree}, {"objects", objects}, {"events", events},
                     {"kubernetes", kube_status_json(snapshot)}}};
        },
        false, "One cluster as clusterctl describe shows it: control plane, MachineDeployments, Machines; its objects "
               "and events (arguments: name, namespace)");
    server.add_command(
        "kube-object-list",
        [&worker](const ControlRequest& request) -> ControlReply {
            const std::string state = request.arguments.value("state", "");
            const KubeSnapshot snapshot = worker.snapshot();
            json objects = json::array();
            for (const auto& v : snapshot.objects) {
                if (state.empty() || state == to_string(v.state)) objects.push_back(to_json(v));
            }
            json pending = json::array();
            for (const auto& step : snapshot.pending) {
                pending.push_back({{"verb", step.verb == KubeStepVerb::apply ? "apply" : "delete"},
                                   {"object", describe(step.ref)},
                                   {"reason", step.reason}});
            }
            json args{{"objects", objects}, {"pending", pending}, {"kubernetes", kube_status_json(snapshot)}};
            if (objects.empty()) return {k_result_empty, "no Kubernetes objects", args};
            return {k_result_success, std::to_string(objects.size()) + " Kubernetes objects", args};
        },
        false, "Every Kubernetes object from Git (and pruned ones) with its state (arguments: state)");
}

} // namespace metalsync
