#include "reconcilers/provider/controller.hpp"

#include <algorithm>
#include <ctime>
#include <set>

#include "reconcilers/provider/objects.hpp"

namespace metalsync::provider {

using nlohmann::json;

namespace {

std::string str(const json& parent, const char* key)
{
    if (!parent.is_object()) return "";
    auto it = parent.find(key);
    return it != parent.end() && it->is_string() ? it->get<std::string>() : "";
}

bool flag(const json& parent, const char* key)
{
    if (!parent.is_object()) return false;
    auto it = parent.find(key);
    return it != parent.end() && it->is_boolean() && it->get<bool>();
}

const json& sub(const json& parent, const char* key)
{
    static const json empty = json::object();
    if (!parent.is_object()) return empty;
    auto it = parent.find(key);
    return it != parent.end() && it->is_object() ? *it : empty;
}

std::string key_of(const json& object)
{
    const json& meta = sub(object, "metadata");
    return str(meta, "namespace") + "/" + str(meta, "name");
}

std::vector<std::string> finalizers_of(const json& object)
{
    std::vector<std::string> out;
    const json& meta = sub(object, "metadata");
    if (auto it = meta.find("finalizers"); it != meta.end() && it->is_array()) {
        for (const auto& f : *it) {
            if (f.is_string()) out.push_back(f.get<std::string>());
        }
    }
    return out;
}

// The owner of `kind` in Cluster API's core group, by name; empty: none.
std::string owner_named(const json& object, const char* kind)
{
    const json& meta = sub(object, "metadata");
    if (auto it = meta.find("ownerReferences"); it != meta.end() && it->is_array()) {
        for (const auto& o : *it) {
            if (str(o, "kind") == kind && str(o, "apiVersion").starts_with("cluster.x-k8s.io/")) {
                return str(o, "name");
            }
        }
    }
    return "";
}

// Cluster API's Cluster: infrastructure provisioned, under either contract.
bool infrastructure_provisioned(const json& cluster)
{
    const json& status = sub(cluster, "status");
    return flag(sub(status, "initialization"), "infrastructureProvisioned") || flag(status, "infrastructureReady");
}

bool paused(const json& object)
{
    return flag(sub(object, "spec"), "paused") ||
           sub(sub(object, "metadata"), "annotations").contains(k_paused_annotation);
}

ClusterStatus cluster_status_from(const json& status)
{
    ClusterStatus s;
    const json& init = sub(status, "initialization");
    if (init.contains("provisioned") && init["provisioned"].is_boolean()) s.provisioned = init["provisioned"].get<bool>();
    s.ready = flag(status, "ready");
    if (auto it = status.find("failureDomains"); status.is_object() && it != status.end() && it->is_array()) {
        for (const auto& fd : *it) {
            if (auto name = str(fd, "name"); !name.empty()) s.failure_domains.push_back(name);
        }
    }
    json conditions = json::object();
    if (status.is_object() && status.contains("conditions")) conditions["conditions"] = status["conditions"];
    if (auto parsed = machine_status_from_json(conditions)) s.conditions = std::move(parsed->conditions);
    return s;
}

KubeWrite write(KubeWrite::Op op, const char* kind, const MachineRef& ref, json value)
{
    KubeWrite w;
    w.op = op;
    w.kind = kind;
    w.namespace_ = ref.namespace_;
    w.name = ref.name;
    w.uid = ref.uid;
    w.value = std::move(value);
    return w;
}

Action ironic_action(const std::string& node, ActionVerb verb, std::string reason, const DesiredState& desired)
{
    Action a;
    a.node = node;
    a.verb = verb;
    a.reason = std::move(reason);
    if (auto it = desired.nodes.find(node); it != desired.nodes.end() && !it->second.bmc.address.empty()) {
        a.bmc = it->second.bmc.address + ":" +
                std::to_string(it->second.bmc.port.value_or(default_bmc_port(it->second.bmc.driver)));
    }
    return a;
}

} // namespace

std::string KubeWrite::describe() const
{
    const std::string object = kind + " " + namespace_ + "/" + name;
    switch (op) {
    case Op::set_finalizers: return "finalizers of " + object;
    case Op::set_provider_id: return "spec.providerID of " + object;
    case Op::apply_status: return "status of " + object;
    }
    return object;
}

std::string rfc3339(double unix_seconds)
{
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

ProviderView assemble_view(const std::vector<json>& metalsync_machines, const std::vector<json>& metalsync_clusters,
                           const std::vector<json>& machines, const std::vector<json>& clusters)
{
    ProviderView view;
    view.complete = true;
    std::map<std::string, const json*> machine_by_key;
    for (const auto& m : machines) machine_by_key[key_of(m)] = &m;
    std::map<std::string, const json*> cluster_by_key;
    for (const auto& c : clusters) cluster_by_key[key_of(c)] = &c;

    for (const auto& object : metalsync_machines) {
        MachineView mv;
        const json& meta = sub(object, "metadata");
        mv.resource_version = str(meta, "resourceVersion");
        mv.finalizers = finalizers_of(object);
        auto parsed = machine_from_json(object);
        if (!parsed) {
            mv.machine.ref = {str(meta, "namespace"), str(meta, "name"), str(meta, "uid")};
            mv.machine.deleting = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
            mv.problem = parsed.error();
            view.machines.push_back(std::move(mv));
            continue;
        }
        mv.machine = std::move(*parsed);
        if (auto status = machine_status_from_json(object.value("status", json())); status) {
            mv.status = std::move(*status);
        }
        const std::string ns = mv.machine.ref.namespace_;
        mv.owner_machine = owner_named(object, "Machine");
        if (!mv.owner_machine.empty()) {
            if (auto it = machine_by_key.find(ns + "/" + mv.owner_machine); it != machine_by_key.end()) {
                const json& spec = sub(*it->second, "spec");
                mv.bootstrap_secret = str(sub(spec, "bootstrap"), "dataSecretName");
                mv.machine.machine_failure_domain = str(spec, "failureDomain");
            }
        }
        auto cluster = cluster_by_key.find(ns + "/" + mv.machine.cluster);
        if (mv.machine.cluster.empty() || cluster == cluster_by_key.end()) {
            mv.machine.cluster_infrastructure_ready = false;
        } else {
            mv.machine.paused = mv.machine.paused || paused(*cluster->second);
            mv.machine.cluster_infrastructure_ready = infrastructure_provisioned(*cluster->second);
        }
        view.machines.push_back(std::move(mv));
    }

    for (const auto& object : metalsync_clusters) {
        ClusterView cv;
        const json& meta = sub(object, "metadata");
        cv.namespace_ = str(meta, "namespace");
        cv.name = str(meta, "name");
        cv.uid = str(meta, "uid");
        cv.resource_version = str(meta, "resourceVersion");
        cv.finalizers = finalizers_of(object);
        cv.deleting = meta.contains("deletionTimestamp") && !meta["deletionTimestamp"].is_null();
        if (meta.contains("generation") && meta["generation"].is_number_integer()) {
            cv.generation = meta["generation"].get<std::int64_t>();
        }
        cv.cluster = str(sub(meta, "labels"), "cluster.x-k8s.io/cluster-name");
        if (cv.cluster.empty()) cv.cluster = owner_named(object, "Cluster");
        cv.endpoint_set = !str(sub(sub(object, "spec"), "controlPlaneEndpoint"), "host").empty();
        cv.paused = paused(object);
        if (auto it = cluster_by_key.find(cv.namespace_ + "/" + cv.cluster); it != cluster_by_key.end()) {
            cv.paused = cv.paused || paused(*it->second);
        }
        cv.status = cluster_status_from(sub(object, "status"));
        view.clusters.push_back(std::move(cv));
    }
    std::sort(view.machines.begin(), view.machines.end(),
              [](const MachineView& a, const MachineView& b) { return a.machine.ref.key() < b.machine.ref.key(); });
    return view;
}

ProviderPlan plan_provider(const ProviderInputs& in)
{
    ProviderPlan plan;
    const ProviderView& view = in.view;

    // Machines that may claim this pass: those carrying the finalizer (it is
    // added first, so a claim is always released before the object goes) and
    // every machine that holds a claim already. A claim whose machine is no
    // longer in the cluster (its finalizer removed by hand) is released as a
    // deleted machine's would be.
    std::vector<MachineInput> inputs;
    std::vector<const MachineView*> sources;
    std::set<std::string> listed;
    for (const auto& mv : view.machines) {
        listed.insert(mv.machine.ref.uid);
        const bool ours = std::find(mv.finalizers.begin(), mv.finalizers.end(), k_machine_finalizer) !=
                          mv.finalizers.end();
        const bool has_claim = in.claims.by_machine(mv.machine.ref.uid) != nullptr || !mv.machine.status_node.empty();
        if (!mv.problem.empty()) {
            if (has_claim && mv.machine.deleting) {
                // Unreadable, but going: its node is released all the same.
                Machine m = mv.machine;
                inputs.push_back({std::move(m), std::nullopt});
                sources.push_back(&mv);
                continue;
            }
            MachinePlan mp;
            mp.ref = mv.machine.ref;
            mp.decision.step = ClaimStep::failed;
            mp.decision.reason = k_reason_invalid_configuration;
            mp.decision.failure_reason = "InvalidConfiguration";
            mp.decision.message = mv.problem;
            MachineStatus status = machine_status(mp.decision, mv.status, mv.machine.generation, in.now);
            if (status != mv.status) {
                mp.writes.push_back(write(KubeWrite::Op::apply_status, "MetalsyncMachine", mp.ref, to_json(status)));
            }
            plan.machines.push_back(std::move(mp));
            continue;
        }
        if (!ours && !mv.machine.deleting) {
            MachinePlan mp;
            mp.ref = mv.machine.ref;
            mp.cluster = mv.machine.cluster;
            mp.decision.step = ClaimStep::wait;
            mp.decision.node = mv.machine.status_node;
            mp.decision.reason = k_reason_waiting_for_node;
            mp.decision.message = "adding metalsync's finalizer before any node is claimed";
            std::vector<std::string> finalizers = mv.finalizers;
            finalizers.push_back(k_machine_finalizer);
            KubeWrite w = write(KubeWrite::Op::set_finalizers, "MetalsyncMachine", mp.ref, finalizers);
            w.resource_version = mv.resource_version;
            mp.writes.push_back(std::move(w));
            plan.machines.push_back(std::move(mp));
            continue;
        }
        if (!ours && !has_claim) {
            continue;  // deleting, never ours: nothing to release
        }
        MachineInput input{mv.machine, std::nullopt};
        if (!mv.bootstrap_problem.empty()) {
            input.bootstrap.reset();
        } else {
            input.bootstrap = mv.bootstrap;
        }
        inputs.push_back(std::move(input));
        sources.push_back(&mv);
    }
    if (view.complete) {
        for (const auto& [node, record] : in.claims.records()) {
            if (!listed.contains(record.machine.uid)) {
                Machine m;
                m.ref = record.machine;
                m.cluster = record.cluster;
                m.deleting = true;
                inputs.push_back({std::move(m), std::nullopt});
                sources.push_back(nullptr);
            }
        }
    }

    auto decisions = reconcile_claims(inputs, in.nodes, in.claims, in.instance);
    for (std::size_t i = 0; i < decisions.size(); ++i) {
        ClaimDecision& d = decisions[i];
        const Machine& m = inputs[i].machine;
        const MachineView* mv = sources[i];
        MachinePlan mp;
        mp.ref = m.ref;
        mp.cluster = m.cluster;
        mp.synthetic = mv == nullptr;
        if (d.writes.store) {
            mp.put = ClaimRecord{d.node, m.ref, m.cluster, d.writes.phase};
        }
        mp.drop = d.writes.drop_store;
        const std::string who = "MetalsyncMachine " + m.ref.key();
        if (d.writes.instance_uuid && !d.node.empty()) {
            Action a = ironic_action(d.node, ActionVerb::update_node, "claimed by " + who, in.desired);
            a.params["patch"] = json::array({{{"op", "add"}, {"path", "/instance_uuid"}, {"value", m.ref.uid}}});
            mp.actions.push_back(std::move(a));
        }
        if (!d.writes.clear_instance_uuid_on.empty()) {
            Action a = ironic_action(d.writes.clear_instance_uuid_on, ActionVerb::update_node,
                                     "released by " + who, in.desired);
            a.params["patch"] = json::array({{{"op", "remove"}, {"path", "/instance_uuid"}}});
            mp.actions.push_back(std::move(a));
        }
        if (d.step == ClaimStep::deploy && d.deploy) {
            Action a = ironic_action(d.node, ActionVerb::deploy, "deploy for " + who, in.desired);
            a.params["instance_info"] = d.deploy->instance_info;
            a.params["configdrive"] = d.deploy->configdrive;
            a.provisioning = true;
            a.secret_user_data = true;
            mp.actions.push_back(std::move(a));
        }
        if (d.step == ClaimStep::release && !d.automated_clean) {
            // The machine's automatedCleaning: false, for this tear-down only (the
            // node planner puts Git's automated_clean back once the node is released).
            Action a = ironic_action(d.node, ActionVerb::update_node, "release for " + who + " without cleaning",
                                     in.desired);
            a.params["patch"] = json::array({{{"op", "replace"}, {"path", "/automated_clean"}, {"value", false}}});
            mp.actions.push_back(std::move(a));
        }
        if (d.step == ClaimStep::release) {
            Action a = ironic_action(d.node, ActionVerb::undeploy, "release for " + who + ": " + d.message, in.desired);
            a.provisioning = true;
            mp.actions.push_back(std::move(a));
        }
        if (mv != nullptr) {
            if (d.step == ClaimStep::report_provisioned && m.spec.provider_id != d.provider_id) {
                mp.writes.push_back(write(KubeWrite::Op::set_provider_id, "MetalsyncMachine", m.ref, d.provider_id));
            }
            MachineStatus status = machine_status(d, mv->status, m.generation, in.now);
            if (status != mv->status) {
                mp.writes.push_back(write(KubeWrite::Op::apply_status, "MetalsyncMachine", m.ref, to_json(status)));
            }
            if (d.remove_finalizer) {
                std::vector<std::string> finalizers;
                for (const auto& f : mv->finalizers) {
                    if (f != k_machine_finalizer) finalizers.push_back(f);
                }
                if (finalizers.size() != mv->finalizers.size()) {
                    KubeWrite w = write(KubeWrite::Op::set_finalizers, "MetalsyncMachine", m.ref, finalizers);
                    w.resource_version = mv->resource_version;
                    mp.writes.push_back(std::move(w));
                }
            }
        }
        mp.decision = std::move(d);
        plan.machines.push_back(std::move(mp));
    }

    for (const auto& cv : view.clusters) {
        ClusterInputs ci{cv.endpoint_set, cv.paused, view.v1beta2_contract, cv.generation};
        ClusterStatus status = cluster_status(ci, in.nodes, cv.status, in.now);
        if (status != cv.status) {
            plan.cluster_writes.push_back(write(KubeWrite::Op::apply_status, "MetalsyncCluster",
                                                MachineRef{cv.namespace_, cv.name, cv.uid},
                                                to_json(status, view.v1beta2_contract)));
        }
    }
    return plan;
}

std::map<std::string, std::string> claim_holds(const std::vector<PoolNode>& nodes, const ClaimTable& claims)
{
    std::map<std::string, std::string> out;
    for (const auto& n : nodes) {
        if (auto hold = node_hold(n, claims)) out[n.name] = hold->message;
    }
    return out;
}

} // namespace metalsync::provider
