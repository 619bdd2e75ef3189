// The Cluster API provider's pass in the loop (see reconcilers/provider/
// controller.hpp for the model): between the Ironic observation and the node
// planner, so that the nodes its claims hold are never planned by Git's word.

#include "daemon/daemon_internal.hpp"
#include "reconcilers/provider/controller.hpp"
#include "reconcilers/provider/objects.hpp"

namespace metalsync::daemon_internal {

namespace {

std::string event_key(const provider::ClaimDecision& d)
{
    return std::string(to_string(d.step)) + "|" + d.reason + "|" + d.node;
}

const char* event_name(provider::ClaimStep step)
{
    switch (step) {
    case provider::ClaimStep::claim: return "provider.machine.claimed";
    case provider::ClaimStep::adopt: return "provider.machine.restored";
    case provider::ClaimStep::deploy: return "provider.machine.deploying";
    case provider::ClaimStep::report_provisioned: return "provider.machine.provisioned";
    case provider::ClaimStep::in_sync: return "provider.machine.running";
    case provider::ClaimStep::held_by_claim: return "provider.machine.held";
    case provider::ClaimStep::release: return "provider.machine.releasing";
    case provider::ClaimStep::unclaim: return "provider.machine.unclaimed";
    case provider::ClaimStep::forget: return "provider.machine.released";
    case provider::ClaimStep::conflict: return "provider.machine.conflict";
    case provider::ClaimStep::failed: return "provider.machine.failed";
    case provider::ClaimStep::wait: return "provider.machine.waiting";
    }
    return "provider.machine";
}

} // namespace

std::map<std::string, std::string> Daemon::provider_step(const DesiredState& desired, double now,
                                                         std::vector<Action>& actions)
{
    std::lock_guard store_lock(m_store_mutex);
    auto rows = m_store->list_claims();
    if (!checked(rows, "list_claims")) {
        // Without the claims no node can be told free or held: hold every
        // node Ironic gives an instance, and claim nothing.
        std::map<std::string, std::string> holds;
        for (const auto& [name, node] : m_observed.nodes) {
            if (!node.instance_uuid.empty()) holds[name] = "the store's claims cannot be read; instance " + node.instance_uuid;
        }
        return holds;
    }
    std::vector<std::string> problems;
    provider::ClaimTable claims = provider::claim_table_from_rows(*rows, &problems);
    for (const auto& p : problems) spdlog::error("provider: store: {}", p);
    const auto nodes = provider::pool_nodes(desired, m_observed);

    auto view = m_config.provider.enabled && m_kube ? m_kube->provider_view() : nullptr;
    if (!view || (view->machines.empty() && view->clusters.empty() && !view->complete)) {
        std::lock_guard lock(m_view_mutex);
        m_view.provider_error = m_config.provider.enabled
                                    ? (view ? view->error : std::string("the management cluster has not been read yet"))
                                    : std::string();
        return provider::claim_holds(nodes, claims);
    }

    const auto plan = provider::plan_provider(
        {*view, nodes, claims, desired, m_config.instance, provider::rfc3339(now)});
    std::vector<provider::KubeWrite> writes;
    std::vector<MachineView> machines;
    auto tx = m_store->transaction();
    for (const auto& mp : plan.machines) {
        const auto& d = mp.decision;
        const std::string who = mp.ref.key();
        if (mp.put) {
            // The journal first: a claim refused here (the node is another
            // machine's) stops this machine's pass; Ironic is not asked.
            auto put = m_store->put_claim(provider::claim_row(*mp.put, now));
            if (!put) {
                spdlog::warn("provider: MetalsyncMachine {}: claim on node {} refused: {}", who, mp.put->node,
                             put.error().message);
                continue;
            }
            if (auto ok = claims.put(*mp.put); !ok) spdlog::debug("provider: {}", ok.error());
        }
        for (const auto& a : mp.actions) actions.push_back(a);
        writes.insert(writes.end(), mp.writes.begin(), mp.writes.end());
        if (mp.drop) {
            if (checked(m_store->delete_claim(mp.ref.uid), "delete_claim")) claims.erase_machine(mp.ref.uid);
        }
        if (!mp.synthetic) {
            machines.push_back({mp.ref.namespace_, mp.ref.name, mp.cluster, d.node, to_string(d.step), d.reason,
                                d.message});
        }
        const std::string key = event_key(d);
        if (m_provider_reported[who] != key) {
            m_provider_reported[who] = key;
            m_metrics.provider_step(to_string(d.step));
            if (!d.conflict.empty()) {
                spdlog::error("provider: MetalsyncMachine {}: claim conflict: {}", who, d.conflict);
            } else {
                spdlog::info("provider: MetalsyncMachine {}: {}", who, d.message);
            }
            Event e;
            e.time = now;
            e.object_kind = "MetalsyncMachine";
            e.object_name = who;
            e.name = event_name(d.step);
            e.message = d.message + (d.node.empty() || d.message.find(d.node) != std::string::npos
                                         ? ""
                                         : " (node " + d.node + ")");
            checked(m_store->add_event(e), "add_event");
        }
    }
    if (tx) checked(tx->commit(), "commit");
    for (auto it = m_provider_reported.begin(); it != m_provider_reported.end();) {
        const bool planned = std::any_of(plan.machines.begin(), plan.machines.end(),
                                         [&](const provider::MachinePlan& mp) { return mp.ref.key() == it->first; });
        it = planned ? std::next(it) : m_provider_reported.erase(it);
    }
    for (const auto& w : plan.cluster_writes) writes.push_back(w);
    if (m_kube) {
        m_kube->queue_provider_writes(std::move(writes));
        std::map<std::string, nlohmann::json> shown;
        for (const auto& mv : machines) {
            nlohmann::json j = {{"step", mv.step}, {"reason", mv.reason}, {"message", mv.message}};
            if (!mv.node.empty()) {
                j["ironicNode"] = mv.node;
                if (auto it = m_observed.nodes.find(mv.node); it != m_observed.nodes.end()) {
                    j["provisionState"] = it->second.provision_state;
                }
            }
            shown[mv.namespace_ + "/" + mv.name] = std::move(j);
        }
        m_kube->set_provider_machines(std::move(shown));
        std::map<std::string, int> by_step;
        for (const auto& mv : machines) by_step[mv.step]++;
        m_metrics.set_provider_machines(by_step);
    }
    {
        std::lock_guard lock(m_view_mutex);
        m_view.machines = std::move(machines);
        m_view.provider_error = view->error;
    }
    return provider::claim_holds(nodes, claims);
}

} // namespace metalsync::daemon_internal
