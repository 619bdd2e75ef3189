// The control socket's commands: each answers from the loop's view (under
// its mutex), the store's reader connection, or the executor's own counters;
// the mutating ones only set flags and wake the loop.

#include "daemon/daemon_internal.hpp"

namespace metalsync::daemon_internal {

nlohmann::json Daemon::node_json(const std::string& name, const NodeView& view, const NodeStatus* status,
                                 const std::map<std::string, NodeWait>& waits) const
{
    nlohmann::json j = {{"name", name},
                        {"provisionState", view.provision_state},
                        {"goal", view.goal},
                        {"condition", view.condition},
                        {"message", view.message},
                        {"uuid", view.uuid},
                        {"bmc", view.bmc}};
    if (!view.inspection.is_null()) j["inspection"] = view.inspection;
    if (!view.power_state.empty()) j["powerState"] = view.power_state;
    if (!view.power_goal.empty()) j["powerGoal"] = view.power_goal;
    if (!view.uuid.empty()) {
        j["maintenance"] = view.maintenance;
        if (view.maintenance) j["maintenanceReason"] = view.maintenance_reason;
    }
    if (status != nullptr) {
        j["attempts"] = status->attempts;
        j["lastErrorType"] = status->last_error_type;
        j["lastError"] = status->last_error;
        if (status->since) j["since"] = *status->since;
        if (status->next_attempt_at) j["nextAttemptAt"] = *status->next_attempt_at;
    }
    if (auto it = waits.find(name); it != waits.end()) {
        j["waitingOn"] = it->second.waiting_on;
        j["queuePosition"] = it->second.position;
    }
    {
        std::lock_guard lock(m_suspend_mutex);
        const bool node_suspended = m_suspended_nodes.contains(name);
        j["suspended"] = node_suspended || m_suspended.load();
        if (j["suspended"] == true) j["suspendedBy"] = node_suspended ? "node" : "daemon";
    }
    return j;
}

void Daemon::register_commands(ControlServer& server)
{
    server.add_command(
        "status-get",
        [this](const ControlRequest&) -> ControlReply {
            nlohmann::json suspended_nodes = nlohmann::json::array();
            {
                std::lock_guard lock(m_suspend_mutex);
                for (const auto& n : m_suspended_nodes) suspended_nodes.push_back(n);
            }
            std::lock_guard lock(m_view_mutex);
            nlohmann::json by_condition = nlohmann::json::object();
            nlohmann::json by_state = nlohmann::json::object();
            int at_goal = 0;
            for (const auto& [_, n] : m_view.nodes) {
                by_condition[n.condition] = by_condition.value(n.condition, 0) + 1;
                std::string st = n.provision_state.empty() ? "not enrolled" : n.provision_state;
                by_state[st] = by_state.value(st, 0) + 1;
                if (n.condition == "at-goal" || n.condition == "claimed") ++at_goal;  // claimed: settled as far as Git goes
            }
            auto stats = m_executor->stats();
            const KubeSnapshot kube = m_kube->snapshot();
            nlohmann::json args = {
                {"revision", m_view.revision},
                {"revisionAuthor", m_view.revision_author},
                {"revisionSummary", m_view.revision_summary},
                {"lastPoll", m_view.last_poll},
                {"lastSuccessfulPoll", m_view.last_poll_ok},
                {"gitError", m_view.git_error.empty() ? nlohmann::json() : nlohmann::json(m_view.git_error)},
                {"ironicError", m_view.ironic_error.empty() ? nlohmann::json() : nlohmann::json(m_view.ironic_error)},
                {"ironicOutage", m_view.ironic_down_since == 0
                                     ? nlohmann::json()
                                     : nlohmann::json{{"since", m_view.ironic_down_since},
                                                      {"failedObservations", m_view.ironic_failures},
                                                      {"nextAttempt", m_view.ironic_retry_at}}},
                {"gitPollingSince", m_view.git_poll_since == 0 ? nlohmann::json() : nlohmann::json(m_view.git_poll_since)},
                {"storeError", m_view.store_error.empty() ? nlohmann::json() : nlohmann::json(m_view.store_error)},
                {"rejected", m_view.rejected_commit.empty()
                                 ? nlohmann::json()
                                 : nlohmann::json{{"commit", m_view.rejected_commit}, {"errors", m_view.rejected_errors}}},
                {"suspended", m_suspended.load()},
                {"suspendedNodes", suspended_nodes},
                {"nodes", {{"total", m_view.nodes.size()}, {"atGoal", at_goal}, {"byCondition", by_condition}, {"byState", by_state}}},
                {"executor", {{"queued", stats.queued}, {"running", stats.running}, {"provisioning", stats.busy_provisioning}, {"saturated", stats.saturated}}},
                {"massDeletionHeld", m_view.plan.mass_deletion_held ? nlohmann::json(m_view.plan.mass_deletion_message) : nlohmann::json()},
                {"kubernetes", kube_status_json(kube)},
            };
            std::string text = std::to_string(m_view.nodes.size()) + " nodes, " + std::to_string(at_goal) + " at goal";
            if (!m_view.ready) text += "; no revision accepted yet";
            if (m_suspended.load()) text += "; suspended: no new actions start";
            if (!suspended_nodes.empty()) {
                text += "; " + std::to_string(suspended_nodes.size()) + (suspended_nodes.size() == 1 ? " node" : " nodes") +
                        " suspended";
            }
            if (!m_view.git_error.empty()) text += "; git: " + m_view.git_error;
            if (!m_view.ironic_error.empty()) {
                text += "; ironic: " + m_view.ironic_error + " (" + std::to_string(m_view.ironic_failures) +
                        " failed observations, next attempt in " +
                        std::to_string(std::max(0L, std::lround(m_view.ironic_retry_at - unix_now()))) + "s)";
            }
            if (!m_view.store_error.empty()) text += "; store: " + m_view.store_error;
            if (!m_view.rejected_commit.empty()) text += "; revision " + short_id(m_view.rejected_commit) + " rejected";
            if (kube.enabled || !kube.error.empty()) text += "; " + kube_status_text(kube);
            return {k_result_success, text, args};
        },
        false, "Daemon summary: revision, Git and Ironic health, nodes by condition and state, executor");
    server.add_command(
        "revision-get",
        [this](const ControlRequest&) -> ControlReply {
            auto revisions = m_reader->list_revisions(10);
            if (!revisions) return {k_result_error, revisions.error().message, nullptr};
            nlohmann::json list = nlohmann::json::array();
            for (const auto& r : *revisions) {
                list.push_back({{"commit", r.commit_id}, {"author", r.author_name}, {"committedAt", r.committed_at},
                                {"seenAt", r.seen_at}, {"status", to_string(r.status)}, {"errors", r.errors},
                                {"summary", r.summary}});
            }
            std::lock_guard lock(m_view_mutex);
            return {k_result_success, "revision in force: " + short_id(m_view.revision),
                    {{"current", m_view.revision}, {"revisions", list}}};
        },
        false, "The revision in force and the last revisions seen (accepted or rejected, with reasons)");
    server.add_command(
        "node-list",
        [this](const ControlRequest&) -> ControlReply {
            auto waits = m_executor->waits();
            std::lock_guard store_lock(m_store_mutex);  // m_status; order: store, then view
            std::lock_guard lock(m_view_mutex);
            nlohmann::json nodes = nlohmann::json::array();
            for (const auto& [name, view] : m_view.nodes) {
                auto st = m_status.find(name);
                nodes.push_back(node_json(name, view, st == m_status.end() ? nullptr : &st->second, waits));
            }
            if (nodes.empty()) return {k_result_empty, "no nodes", {{"nodes", nodes}}};
            return {k_result_success, std::to_string(nodes.size()) + " nodes", {{"nodes", nodes}}};
        },
        false, "Every node: provision state, goal, condition, attempts, last error");
    server.add_command(
        "node-get",
        [this](const ControlRequest& request) -> ControlReply {
            std::string name = request.arguments.value("name", "");
            if (name.empty()) return {k_result_error, "node-get needs arguments {\"name\": NODE}", nullptr};
            auto waits = m_executor->waits();
            nlohmann::json node;
            {
                std::lock_guard store_lock(m_store_mutex);
                std::lock_guard lock(m_view_mutex);
                auto it = m_view.nodes.find(name);
                if (it == m_view.nodes.end()) return {k_result_empty, "no node '" + name + "'", nullptr};
                auto st = m_status.find(name);
                node = node_json(name, it->second, st == m_status.end() ? nullptr : &st->second, waits);
            }
            EventFilter filter;
            filter.object_name = name;
            filter.limit = 20;
            nlohmann::json events = nlohmann::json::array();
            if (auto list = m_reader->list_events(filter)) {
                for (const auto& e : *list) {
                    events.push_back({{"time", e.time}, {"name", e.name}, {"message", e.message}, {"revision", e.revision}, {"author", e.author}});
                }
            }
            nlohmann::json actions = nlohmann::json::array();
            if (auto list = m_reader->journal_for(name, 20)) {
                for (const auto& j : *list) {
                    nlohmann::json a = {{"id", j.id}, {"verb", j.verb}, {"state", to_string(j.state)}, {"createdAt", j.created_at},
                                        {"result", j.result}, {"revision", j.revision}, {"author", j.author}, {"attempt", j.attempt}};
                    if (j.finished_at) a["finishedAt"] = *j.finished_at;
                    actions.push_back(a);
                }
            }
            return {k_result_success, name + ": " + node.value("condition", ""), {{"node", node}, {"events", events}, {"actions", actions}}};
        },
        false, "One node: state, goal, why it waits, error, attempts, recent events and actions with their commits");
    server.add_command(
        "event-list",
        [this](const ControlRequest& request) -> ControlReply {
            EventFilter filter;
            if (request.arguments.contains("object")) filter.object_name = request.arguments.value("object", "");
            if (request.arguments.contains("since")) filter.since = request.arguments.value("since", 0.0);
            filter.limit = request.arguments.value("limit", 100);
            auto list = m_reader->list_events(filter);
            if (!list) return {k_result_error, list.error().message, nullptr};
            nlohmann::json events = nlohmann::json::array();
            for (const auto& e : *list) {
                events.push_back({{"time", e.time}, {"objectKind", e.object_kind}, {"objectName", e.object_name}, {"name", e.name},
                                  {"message", e.message}, {"revision", e.revision}, {"author", e.author}});
            }
            if (events.empty()) return {k_result_empty, "no events", {{"events", events}}};
            return {k_result_success, std::to_string(events.size()) + " events", {{"events", events}}};
        },
        false, "Events, newest first; arguments: object, since (unix seconds), limit");
    server.add_command(
        "plan-get",
        [this](const ControlRequest&) -> ControlReply {
            const KubeSnapshot kube = m_kube->snapshot();
            std::lock_guard lock(m_view_mutex);
            auto j = to_json(m_view.plan);
            nlohmann::json steps = nlohmann::json::array();
            for (const auto& step : kube.pending) {
                steps.push_back({{"verb", step.verb == KubeStepVerb::apply ? "apply" : "delete"},
                                 {"object", describe(step.ref)},
                                 {"reason", step.reason}});
            }
            j["kubernetes"] = steps;
            const bool empty = m_view.plan.empty() && steps.empty();
            return {empty ? k_result_empty : k_result_success,
                    std::to_string(m_view.plan.actions.size()) + " actions planned" +
                        (steps.empty() ? std::string{} : ", " + std::to_string(steps.size()) + " Kubernetes steps pending"),
                    j};
        },
        false, "The actions of the last plan, and the Kubernetes steps not yet done");
    register_kube_commands(server, *m_kube, *m_reader);
    server.add_command(
        "reconcile-now",
        [this](const ControlRequest&) -> ControlReply {
            m_poll_now = true;
            m_observe_now = true;
            m_retry_now = true;
            request_wakeup();
            m_kube->wake();
            return {k_result_success,
                    "reconcile requested: polling Git, observing Ironic and retrying failed steps now", nullptr};
        },
        true, "Poll Git and reconcile now");
    server.add_command(
        "suspend",
        [this](const ControlRequest& request) -> ControlReply {
            std::string name = request.arguments.value("name", "");
            if (name.empty()) {
                m_suspended = true;
                m_kube->set_suspended(true);
                return {k_result_success, "suspended: no new actions start (in-flight ones finish)", nullptr};
            }
            bool known = false;
            {
                std::lock_guard lock(m_view_mutex);
                known = m_view.nodes.contains(name);
            }
            if (!known) {
                return {k_result_error, "no node " + name + " (neither in Git nor in Ironic): nothing to suspend", nullptr};
            }
            std::lock_guard lock(m_suspend_mutex);
            if (!m_suspended_nodes.insert(name).second) {
                return {k_result_success, "node " + name + " is already suspended", nullptr};
            }
            return {k_result_success, "node " + name + " suspended: no new actions start for it (an action in flight finishes)",
                    nullptr};
        },
        true, "Stop starting actions, for the whole daemon or one node (arguments: name)");
    server.add_command(
        "resume",
        [this](const ControlRequest& request) -> ControlReply {
            std::string name = request.arguments.value("name", "");
            if (name.empty()) {
                m_suspended = false;
                m_kube->set_suspended(false);
            } else {
                std::lock_guard lock(m_suspend_mutex);
                if (m_suspended_nodes.erase(name) == 0) {
                    return {k_result_success, "node " + name + " was not suspended", nullptr};
                }
            }
            request_wakeup();
            return {k_result_success, name.empty() ? "resumed" : "node " + name + " resumed", nullptr};
        },
        true, "Resume after suspend");
    server.add_command(
        "config-reload",
        [this](const ControlRequest&) -> ControlReply {
            m_reload = true;
            request_wakeup();
            return {k_result_success, "config-reload requested (the result is logged)", nullptr};
        },
        true, "Re-read the configuration file; a bad one keeps the running configuration");
    server.add_command(
        "version-get",
        [](const ControlRequest&) -> ControlReply {
            return {k_result_success, std::string("metalsync ") + METALSYNC_VERSION, {{"version", METALSYNC_VERSION}}};
        },
        false, "The daemon's version");
    server.add_command(
        "shutdown",
        [this](const ControlRequest&) -> ControlReply {
            m_shutdown = true;
            request_wakeup();
            return {k_result_success, "shutting down", nullptr};
        },
        true, "Stop the daemon gracefully");
}

} // namespace metalsync::daemon_internal
