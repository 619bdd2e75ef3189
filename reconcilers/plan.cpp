#include "reconcilers/plan.hpp"

namespace metalsync {

const char* to_string(ActionVerb verb)
{
    switch (verb) {
    case ActionVerb::create_node: return "create";
    case ActionVerb::adopt_node: return "adopt";
    case ActionVerb::update_node: return "update";
    case ActionVerb::create_port: return "port-create";
    case ActionVerb::update_port: return "port-update";
    case ActionVerb::delete_port: return "port-delete";
    case ActionVerb::manage: return "manage";
    case ActionVerb::inspect: return "inspect";
    case ActionVerb::collect_inspection: return "inspection-collect";
    case ActionVerb::provide: return "provide";
    case ActionVerb::clean: return "clean";
    case ActionVerb::deploy: return "deploy";
    case ActionVerb::rebuild: return "rebuild";
    case ActionVerb::undeploy: return "undeploy";
    case ActionVerb::set_maintenance: return "maintenance";
    case ActionVerb::set_power: return "power";
    case ActionVerb::delete_node: return "delete";
    }
    return "unknown";
}

const char* to_string(NodeCondition condition)
{
    switch (condition) {
    case NodeCondition::at_goal: return "at-goal";
    case NodeCondition::progressing: return "progressing";
    case NodeCondition::waiting: return "waiting";
    case NodeCondition::failed: return "failed";
    case NodeCondition::orphaned: return "orphaned";
    case NodeCondition::held: return "held";
    case NodeCondition::maintenance: return "maintenance";
    case NodeCondition::claimed: return "claimed";
    }
    return "unknown";
}

nlohmann::json journal_params(const Action& action)
{
    nlohmann::json params = action.params;
    if (action.secret_user_data && params.contains("configdrive") && params["configdrive"].is_object() &&
        params["configdrive"].contains("user_data")) {
        auto& user_data = params["configdrive"]["user_data"];
        const std::size_t size = user_data.is_string() ? user_data.get_ref<const std::string&>().size() : 0;
        user_data = "<withheld: " + std::to_string(size) + " bytes of bootstrap data>";
    }
    return params;
}

nlohmann::json to_json(const Action& action)
{
    nlohmann::json j = {{"node", action.node}, {"verb", to_string(action.verb)}, {"reason", action.reason}};
    if (!action.params.empty()) j["params"] = journal_params(action);
    if (!action.bmc.empty()) j["bmc"] = action.bmc;
    if (action.provisioning) j["provisioning"] = true;
    if (action.retry) j["retry"] = true;
    return j;
}

nlohmann::json to_json(const Plan& plan)
{
    nlohmann::json j = {{"actions", nlohmann::json::array()}, {"nodes", nlohmann::json::array()}};
    for (const auto& a : plan.actions) {
        j["actions"].push_back(to_json(a));
    }
    for (const auto& v : plan.verdicts) {
        j["nodes"].push_back({{"node", v.node}, {"condition", to_string(v.condition)}, {"message", v.message}});
    }
    if (plan.mass_deletion_held) {
        j["massDeletionHeld"] = plan.mass_deletion_message;
    }
    return j;
}

} // namespace metalsync
