#include "reconcilers/kubernetes/cluster_status.hpp"

#include <algorithm>
#include <map>

namespace metalsync {

using nlohmann::json;

namespace {

const json& at(const json& object, std::initializer_list<const char*> path)
{
    static const json k_null;
    const json* node = &object;
    for (const char* key : path) {
        if (!node->is_object()) return k_null;
        const auto found = node->find(key);
        if (found == node->end()) return k_null;
        node = &*found;
    }
    return *node;
}

std::string text(const json& object, std::initializer_list<const char*> path)
{
    const json& value = at(object, path);
    return value.is_string() ? value.get<std::string>() : std::string{};
}

json integer_or_null(const json& value)
{
    return value.is_number() ? json(value.get<long long>()) : json();
}

json condition(const json& object, const std::string& type)
{
    const json& conditions = at(object, {"status", "conditions"});
    if (conditions.is_array()) {
        for (const auto& c : conditions) {
            if (c.is_object() && c.value("type", "") == type) {
                json out{{"status", c.value("status", "Unknown")}};
                if (c.contains("reason") && c["reason"].is_string()) out["reason"] = c["reason"];
                if (c.contains("message") && c["message"].is_string()) out["message"] = c["message"];
                if (c.contains("severity") && c["severity"].is_string()) out["severity"] = c["severity"];
                if (c.contains("lastTransitionTime") && c["lastTransitionTime"].is_string()) {
                    out["since"] = c["lastTransitionTime"];
                }
                return out;
            }
        }
    }
    return json{{"status", "Unknown"}};
}

// Cluster API v1beta2 (v1.11+) reports with Available conditions and
// upToDateReplicas; v1beta1 with Ready conditions and updatedReplicas.
bool is_v1beta1(const json& object) { return text(object, {"apiVersion"}).ends_with("/v1beta1"); }

// The readiness of a Cluster, control plane or MachineDeployment: Available
// at v1beta2, Ready at v1beta1, whichever the object carries.
json readiness(const json& object)
{
    json ready = condition(object, is_v1beta1(object) ? "Ready" : "Available");
    if (ready.value("status", "Unknown") == "Unknown" && !ready.contains("reason")) {
        json other = condition(object, is_v1beta1(object) ? "Available" : "Ready");
        if (other.value("status", "Unknown") != "Unknown" || other.contains("reason")) return other;
    }
    return ready;
}

bool deleting(const json& object)
{
    const json& ts = at(object, {"metadata", "deletionTimestamp"});
    return !ts.is_null();
}

json machine_json(const json& machine)
{
    json out{{"name", text(machine, {"metadata", "name"})},
             {"phase", text(machine, {"status", "phase"})},
             {"version", text(machine, {"spec", "version"})},
             {"ready", condition(machine, "Ready")},
             {"deleting", deleting(machine)}};
    const std::string node = text(machine, {"status", "nodeRef", "name"});
    if (!node.empty()) out["node"] = node;
    const std::string provider = text(machine, {"spec", "providerID"});
    if (!provider.empty()) out["providerID"] = provider;
    const std::string infra_kind = text(machine, {"spec", "infrastructureRef", "kind"});
    const std::string infra_name = text(machine, {"spec", "infrastructureRef", "name"});
    if (!infra_kind.empty() && !infra_name.empty()) out["infrastructure"] = {{"kind", infra_kind}, {"name", infra_name}};
    return out;
}

bool owned_by(const json& object, const std::string& kind, const std::string& name)
{
    const json& owners = at(object, {"metadata", "ownerReferences"});
    if (!owners.is_array()) return false;
    for (const auto& o : owners) {
        if (o.is_object() && o.value("kind", "") == kind && o.value("name", "") == name) return true;
    }
    return false;
}

json replicas(const json& object)
{
    const bool old = is_v1beta1(object);
    json out{{"desired", integer_or_null(at(object, {"spec", "replicas"}))},
             {"current", integer_or_null(at(object, {"status", "replicas"}))},
             {"updated", integer_or_null(at(object, {"status", old ? "updatedReplicas" : "upToDateReplicas"}))},
             {"ready", integer_or_null(at(object, {"status", "readyReplicas"}))}};
    if (!old) out["available"] = integer_or_null(at(object, {"status", "availableReplicas"}));
    return out;
}

// Infrastructure provisioned: status.initialization.provisioned (contract
// v1beta2) or status.ready (v1beta1).
bool provisioned(const json& object)
{
    const json& initialization = at(object, {"status", "initialization", "provisioned"});
    if (initialization.is_boolean()) return initialization.get<bool>();
    const json& ready = at(object, {"status", "ready"});
    return ready.is_boolean() && ready.get<bool>();
}

bool by_name(const json& a, const json& b) { return a.value("name", "") < b.value("name", ""); }

long long count_or_zero(const json& value) { return value.is_number() ? value.get<long long>() : 0; }

} // namespace

json cluster_tree(const ClusterObjects& objects)
{
    const json& cluster = objects.cluster;
    const std::string name = text(cluster, {"metadata", "name"});
    const std::string namespace_ = text(cluster, {"metadata", "namespace"});
    json tree{{"name", name},
              {"namespace", namespace_},
              {"phase", text(cluster, {"status", "phase"})},
              {"ready", readiness(cluster)},
              {"deleting", deleting(cluster)},
              {"finalizers", json::array()}};
    const json& finalizers = at(cluster, {"metadata", "finalizers"});
    if (finalizers.is_array()) tree["finalizers"] = finalizers;

    const json& infra_ref = at(cluster, {"spec", "infrastructureRef"});
    if (infra_ref.is_object()) {
        json infra{{"kind", infra_ref.value("kind", "")}, {"name", infra_ref.value("name", "")}};
        if (objects.infrastructure.is_object()) infra["ready"] = provisioned(objects.infrastructure);
        tree["infrastructure"] = infra;
    }

    // Machines of this cluster, by owner.
    std::vector<const json*> machines;
    for (const auto& m : objects.machines) {
        if (text(m, {"metadata", "labels", k_capi_cluster_name_label}) == name) machines.push_back(&m);
    }
    std::vector<bool> placed(machines.size(), false);
    std::map<std::string, long long> by_phase;
    for (const json* m : machines) by_phase[text(*m, {"status", "phase"}).empty() ? "Pending" : text(*m, {"status", "phase"})]++;

    const json& cp_ref = at(cluster, {"spec", "controlPlaneRef"});
    if (cp_ref.is_object()) {
        const std::string cp_kind = cp_ref.value("kind", "");
        const std::string cp_name = cp_ref.value("name", "");
        json cp{{"kind", cp_kind}, {"name", cp_name}, {"machines", json::array()}};
        for (const auto& candidate : objects.control_planes) {
            if (text(candidate, {"metadata", "name"}) != cp_name) continue;
            cp["version"] = text(candidate, {"spec", "version"});
            cp["replicas"] = replicas(candidate);
            cp["ready"] = readiness(candidate);
            cp["deleting"] = deleting(candidate);
            const std::string status_version = text(candidate, {"status", "version"});
            if (!status_version.empty()) cp["statusVersion"] = status_version;
        }
        for (std::size_t i = 0; i < machines.size(); ++i) {
            const json& m = *machines[i];
            const bool cp_machine = at(m, {"metadata", "labels"}).is_object() &&
                                    at(m, {"metadata", "labels"}).contains("cluster.x-k8s.io/control-plane");
            if (cp_machine || owned_by(m, cp_kind, cp_name)) {
                cp["machines"].push_back(machine_json(m));
                placed[i] = true;
            }
        }
        std::sort(cp["machines"].begin(), cp["machines"].end(), by_name);
        tree["controlPlane"] = cp;
    }

    json deployments = json::array();
    for (const auto& md : objects.machine_deployments) {
        if (text(md, {"spec", "clusterName"}) != name) continue;
        const std::string md_name = text(md, {"metadata", "name"});
        json entry{{"name", md_name},
                   {"version", text(md, {"spec", "template", "spec", "version"})},
                   {"phase", text(md, {"status", "phase"})},
                   {"replicas", replicas(md)},
                   {"ready", readiness(md)},
                   {"deleting", deleting(md)},
                   {"machines", json::array()}};
        for (std::size_t i = 0; i < machines.size(); ++i) {
            if (placed[i]) continue;
            if (text(*machines[i], {"metadata", "labels", "cluster.x-k8s.io/deployment-name"}) == md_name) {
                entry["machines"].push_back(machine_json(*machines[i]));
                placed[i] = true;
            }
        }
        std::sort(entry["machines"].begin(), entry["machines"].end(), by_name);
        deployments.push_back(entry);
    }
    std::sort(deployments.begin(), deployments.end(), by_name);
    tree["machineDeployments"] = deployments;

    json others = json::array();
    for (std::size_t i = 0; i < machines.size(); ++i) {
        if (!placed[i]) others.push_back(machine_json(*machines[i]));
    }
    std::sort(others.begin(), others.end(), by_name);
    tree["otherMachines"] = others;
    tree["machinesByPhase"] = json(by_phase);
    tree["machineCount"] = static_cast<long long>(machines.size());
    return tree;
}

json cluster_summary(const json& tree)
{
    json out{{"name", tree.value("name", "")},
             {"namespace", tree.value("namespace", "")},
             {"phase", tree.value("phase", "")},
             {"ready", at(tree, {"ready", "status"}).is_string() ? at(tree, {"ready", "status"}) : json("Unknown")},
             {"deleting", tree.value("deleting", false)},
             {"machineCount", tree.value("machineCount", 0LL)}};
    const json& reason = at(tree, {"ready", "reason"});
    if (reason.is_string()) out["reason"] = reason;
    const json& cp = at(tree, {"controlPlane"});
    if (cp.is_object()) {
        out["controlPlane"] = json{{"desired", at(cp, {"replicas", "desired"})},
                                   {"updated", at(cp, {"replicas", "updated"})},
                                   {"ready", at(cp, {"replicas", "ready"})},
                                   {"version", cp.value("version", "")}};
    }
    long long desired = 0;
    long long updated = 0;
    long long ready = 0;
    std::string version;
    for (const auto& md : at(tree, {"machineDeployments"})) {
        desired += count_or_zero(at(md, {"replicas", "desired"}));
        updated += count_or_zero(at(md, {"replicas", "updated"}));
        ready += count_or_zero(at(md, {"replicas", "ready"}));
        const std::string v = md.value("version", "");
        version = version.empty() || version == v ? v : "mixed";
    }
    out["workers"] = json{{"desired", desired}, {"updated", updated}, {"ready", ready}, {"version", version}};
    return out;
}

bool cluster_settled(const json& tree)
{
    if (tree.value("deleting", false)) return false;
    if (at(tree, {"ready", "status"}) != "True") return false;
    auto met = [](const json& r) {
        const json& d = at(r, {"desired"});
        if (!d.is_number()) return true;
        return at(r, {"ready"}) == d && at(r, {"updated"}) == d && (at(r, {"current"}).is_null() || at(r, {"current"}) == d);
    };
    const json& cp = at(tree, {"controlPlane"});
    if (cp.is_object() && !met(at(cp, {"replicas"}))) return false;
    for (const auto& md : at(tree, {"machineDeployments"})) {
        if (!met(at(md, {"replicas"}))) return false;
    }
    return true;
}

} // namespace metalsync
