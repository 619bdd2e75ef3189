#include "reconcilers/provider/conditions.hpp"

#include <algorithm>
#include <utility>

namespace metalsync::provider {

namespace {

Condition make(const char* type, bool status, std::string reason, std::string message, std::int64_t generation)
{
    return {type, status ? "True" : "False", std::move(reason), std::move(message), generation, ""};
}

bool provisioned_step(ClaimStep step)
{
    return step == ClaimStep::report_provisioned || step == ClaimStep::in_sync || step == ClaimStep::held_by_claim;
}

// The Ready and Provisioned conditions for a decision. Adopt without a
// conflict is bookkeeping: the machine's state has not changed, so both keep
// what they said (a repaired store record must not flap a running machine).
void set_machine_conditions(std::vector<Condition>& conditions, const ClaimDecision& d, std::int64_t generation,
                            std::string_view now)
{
    const bool conflict = d.step == ClaimStep::conflict || !d.conflict.empty();
    std::string message = d.message;
    if (!d.git_hold.empty() && d.step != ClaimStep::held_by_claim && d.reason != k_reason_node_left_pool) {
        message += " (held against Git: " + d.git_hold + ")";
    }

    if (conflict) {
        set_condition(conditions, make(k_condition_ready, false, k_reason_claim_conflict, message, generation), now);
    } else if (d.step == ClaimStep::adopt) {
        if (find_condition(conditions, k_condition_ready) == nullptr) {
            set_condition(conditions, make(k_condition_ready, false, d.reason, message, generation), now);
        }
    } else if (provisioned_step(d.step)) {
        set_condition(conditions, make(k_condition_ready, true, d.reason, message, generation), now);
    } else {
        set_condition(conditions, make(k_condition_ready, false, d.reason, message, generation), now);
    }

    if (provisioned_step(d.step)) {
        set_condition(conditions,
                      make(k_condition_provisioned, true, k_reason_provisioned, "node " + d.node + " is deployed",
                           generation),
                      now);
    } else if (d.step == ClaimStep::adopt || d.step == ClaimStep::conflict) {
        if (find_condition(conditions, k_condition_provisioned) == nullptr) {
            set_condition(conditions, make(k_condition_provisioned, false, d.reason, message, generation), now);
        }
    } else {
        set_condition(conditions, make(k_condition_provisioned, false, d.reason, message, generation), now);
    }
}

void set_paused(std::vector<Condition>& conditions, bool paused, std::string message, std::int64_t generation,
                std::string_view now)
{
    set_condition(conditions,
                  make(k_condition_paused, paused, paused ? k_reason_paused : k_reason_not_paused,
                       paused ? std::move(message) : "", generation),
                  now);
}

nlohmann::json conditions_json(const std::vector<Condition>& conditions)
{
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : conditions) {
        nlohmann::json j = nlohmann::json::object();
        j["type"] = c.type;
        j["status"] = c.status;
        j["reason"] = c.reason;
        j["message"] = c.message;
        j["observedGeneration"] = c.observed_generation;
        j["lastTransitionTime"] = c.last_transition_time;
        out.push_back(std::move(j));
    }
    return out;
}

std::expected<std::string, std::string> string_field(const nlohmann::json& j, const char* key, const std::string& where)
{
    if (!j.contains(key) || j.at(key).is_null()) {
        return std::string();
    }
    if (!j.at(key).is_string()) {
        return std::unexpected(where + key + ": not a string");
    }
    return j.at(key).get<std::string>();
}

std::expected<std::vector<Condition>, std::string> conditions_from_json(const nlohmann::json& status)
{
    std::vector<Condition> out;
    if (!status.contains("conditions") || status.at("conditions").is_null()) {
        return out;
    }
    const auto& list = status.at("conditions");
    if (!list.is_array()) {
        return std::unexpected("conditions: not a list");
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
        const auto& c = list[i];
        const std::string where = "conditions[" + std::to_string(i) + "].";
        if (!c.is_object()) {
            return std::unexpected(where + ": not an object");
        }
        Condition cond;
        for (auto [key, field] : {std::pair{"type", &cond.type}, std::pair{"status", &cond.status},
                                  std::pair{"reason", &cond.reason}, std::pair{"message", &cond.message},
                                  std::pair{"lastTransitionTime", &cond.last_transition_time}}) {
            auto value = string_field(c, key, where);
            if (!value) {
                return std::unexpected(value.error());
            }
            *field = std::move(*value);
        }
        if (cond.type.empty()) {
            return std::unexpected(where + "type: missing");
        }
        if (c.contains("observedGeneration") && c.at("observedGeneration").is_number_integer()) {
            cond.observed_generation = c.at("observedGeneration").get<std::int64_t>();
        }
        out.push_back(std::move(cond));
    }
    return out;
}

} // namespace

const Condition* find_condition(const std::vector<Condition>& conditions, std::string_view type)
{
    auto it = std::find_if(conditions.begin(), conditions.end(), [&](const Condition& c) { return c.type == type; });
    return it == conditions.end() ? nullptr : &*it;
}

void set_condition(std::vector<Condition>& conditions, Condition condition, std::string_view now)
{
    auto it = std::find_if(conditions.begin(), conditions.end(),
                           [&](const Condition& c) { return c.type == condition.type; });
    if (it == conditions.end()) {
        if (condition.last_transition_time.empty()) {
            condition.last_transition_time = std::string(now);
        }
        conditions.push_back(std::move(condition));
        return;
    }
    if (it->status != condition.status) {
        it->status = condition.status;
        it->last_transition_time =
            condition.last_transition_time.empty() ? std::string(now) : condition.last_transition_time;
    }
    it->reason = std::move(condition.reason);
    it->message = std::move(condition.message);
    it->observed_generation = condition.observed_generation;
}

MachineStatus machine_status(const ClaimDecision& d, const MachineStatus& previous, std::int64_t generation,
                             std::string_view now)
{
    MachineStatus s = previous;
    if (d.reason == k_reason_paused) {
        // Paused: nothing was reconciled, so nothing else may change.
        set_paused(s.conditions, true, d.message, generation, now);
        return s;
    }
    if (d.writes.status_node) {
        s.node = d.node;
    } else if (d.writes.clear_status_node) {
        s.node.clear();
    }
    if (s.node.empty()) {
        s.failure_domain.clear();
    } else if (!d.failure_domain.empty() && d.node == s.node) {
        s.failure_domain = d.failure_domain;
    }
    if (provisioned_step(d.step)) {
        // Initialization happens once: later steps never take it back
        // (Cluster API ignores it after the first true anyway).
        s.provisioned = true;
    }
    s.ready = s.provisioned.value_or(false);
    if (d.step == ClaimStep::report_provisioned) {
        s.addresses = d.addresses;
    }
    if (d.step == ClaimStep::failed) {
        s.failure_reason = d.failure_reason;
        s.failure_message = d.message;
    } else {
        s.failure_reason.clear();
        s.failure_message.clear();
    }
    // Ready first: the order `kubectl describe` shows them in.
    set_machine_conditions(s.conditions, d, generation, now);
    set_paused(s.conditions, false, "", generation, now);
    return s;
}

nlohmann::json to_json(const MachineStatus& s)
{
    nlohmann::json j = nlohmann::json::object();
    if (s.provisioned) {
        j["initialization"] = {{"provisioned", *s.provisioned}};
    }
    j["ready"] = s.ready;
    if (!s.addresses.empty()) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& a : s.addresses) {
            list.push_back({{"type", a.type}, {"address", a.address}});
        }
        j["addresses"] = std::move(list);
    }
    if (!s.node.empty()) j["node"] = s.node;
    if (!s.failure_domain.empty()) j["failureDomain"] = s.failure_domain;
    if (!s.failure_reason.empty()) {
        j["failureReason"] = s.failure_reason;
        j["failureMessage"] = s.failure_message;
        j["deprecated"]["v1beta1"] = {{"failureReason", s.failure_reason}, {"failureMessage", s.failure_message}};
    }
    j["conditions"] = conditions_json(s.conditions);
    return j;
}

std::expected<MachineStatus, std::string> machine_status_from_json(const nlohmann::json& status)
{
    MachineStatus s;
    if (status.is_null()) {
        return s;
    }
    if (!status.is_object()) {
        return std::unexpected("status: not an object");
    }
    if (status.contains("initialization") && status.at("initialization").is_object()) {
        const auto& init = status.at("initialization");
        if (init.contains("provisioned") && init.at("provisioned").is_boolean()) {
            s.provisioned = init.at("provisioned").get<bool>();
        }
    }
    if (status.contains("ready") && status.at("ready").is_boolean()) {
        s.ready = status.at("ready").get<bool>();
    }
    if (status.contains("addresses") && status.at("addresses").is_array()) {
        for (const auto& a : status.at("addresses")) {
            if (a.is_object() && a.value("type", nlohmann::json()).is_string() &&
                a.value("address", nlohmann::json()).is_string()) {
                s.addresses.push_back({a.at("type").get<std::string>(), a.at("address").get<std::string>()});
            }
        }
    }
    for (auto [key, field] : {std::pair{"node", &s.node}, std::pair{"failureDomain", &s.failure_domain},
                              std::pair{"failureReason", &s.failure_reason},
                              std::pair{"failureMessage", &s.failure_message}}) {
        auto value = string_field(status, key, "");
        if (!value) {
            return std::unexpected(value.error());
        }
        *field = std::move(*value);
    }
    auto conditions = conditions_from_json(status);
    if (!conditions) {
        return std::unexpected(conditions.error());
    }
    s.conditions = std::move(*conditions);
    return s;
}

ClusterStatus cluster_status(const ClusterInputs& in, const std::vector<PoolNode>& nodes,
                             const ClusterStatus& previous, std::string_view now)
{
    ClusterStatus s = previous;
    if (in.paused) {
        set_paused(s.conditions, true, "reconciliation is paused (the Cluster's spec.paused or the " +
                                           std::string(k_paused_annotation) + " annotation)",
                   in.generation, now);
        return s;
    }
    s.failure_domains = in.v1beta2_contract ? failure_domains(nodes) : std::vector<std::string>{};
    if (in.endpoint_set) {
        s.provisioned = true;
    }
    s.ready = s.provisioned.value_or(false);
    if (s.ready) {
        set_condition(s.conditions,
                      make(k_condition_ready, true, k_reason_provisioned,
                           std::to_string(s.failure_domains.size()) + " failure domain(s) in the pools",
                           in.generation),
                      now);
    } else {
        set_condition(s.conditions,
                      make(k_condition_ready, false, k_reason_waiting_for_endpoint,
                           "spec.controlPlaneEndpoint is not set: give the control plane's address in Git",
                           in.generation),
                      now);
    }
    set_paused(s.conditions, false, "", in.generation, now);
    return s;
}

nlohmann::json to_json(const ClusterStatus& s, bool v1beta2_contract)
{
    nlohmann::json j = nlohmann::json::object();
    if (s.provisioned) {
        j["initialization"] = {{"provisioned", *s.provisioned}};
    }
    j["ready"] = s.ready;
    // Cluster API v1.5-v1.10 read a map here and would fail on a list
    // (internal/contract/infrastructure_cluster.go, FailureDomains.Get).
    if (v1beta2_contract && !s.failure_domains.empty()) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& name : s.failure_domains) {
            list.push_back({{"name", name}, {"controlPlane", true}});
        }
        j["failureDomains"] = std::move(list);
    }
    j["conditions"] = conditions_json(s.conditions);
    return j;
}

} // namespace metalsync::provider
