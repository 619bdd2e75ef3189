#pragma once

// The plan: what the daemon would do next, one short step per node. Built by
// the pure planners (no clock, no network, no database) from desired state,
// observed state and what the store remembers of each node.

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace metalsync {

enum class ActionVerb {
    create_node,       // POST /v1/nodes (driver_info credentials filled in by the executor)
    adopt_node,        // a node Ironic forgot while active: enroll again, then adopt, never redeploy
    update_node,       // JSON-Patch: driver, driver_info, properties, interfaces, instance_info ...
    create_port,
    update_port,
    delete_port,
    manage,
    inspect,
    collect_inspection, // after inspection: read Ironic's inventory (or the node's properties), once
    provide,
    clean,             // manual clean steps, from manageable
    deploy,            // available -> active, with instance_info and config drive
    rebuild,           // active -> active with a new image or config drive
    undeploy,          // active / deploy failed -> available (cleaning)
    set_maintenance,
    set_power,
    delete_node,
};

[[nodiscard]] const char* to_string(ActionVerb verb);

struct Action {
    std::string node;          // metalsync node name
    ActionVerb verb;
    std::string reason;        // one line for operators: why this step, now
    nlohmann::json params = nlohmann::json::object();
    std::string bmc;           // BMC address:port this action talks to; empty when none
    bool provisioning = false; // starts a busy Ironic transition (counted against maxProvisioning)
    bool retry = false;        // a retry from a failure state (counts an attempt)
    // params.configdrive.user_data holds a credential (a Cluster API
    // machine's bootstrap data carries a kubeadm join token): sent to Ironic,
    // never written to the journal, a log or a reply (journal_params).
    bool secret_user_data = false;
};

// The parameters as the journal and the control socket may show them: a
// secret user_data replaced by its size.
[[nodiscard]] nlohmann::json journal_params(const Action& action);

enum class NodeCondition {
    at_goal,       // nothing to do
    progressing,   // Ironic is busy with it, or an action is planned
    waiting,       // held by backoff or a limit
    failed,        // out of attempts: needs a person or a spec change
    orphaned,      // in Ironic, not in Git, prune off (or never ours)
    held,          // an undeploy or delete held by the mass-deletion guard
    maintenance,   // in maintenance as the spec asks: no provisioning steps
    claimed,       // a Cluster API machine's claim holds it: the provider drives its provisioning
};

[[nodiscard]] const char* to_string(NodeCondition condition);

struct NodeVerdict {
    std::string node;
    NodeCondition condition = NodeCondition::at_goal;
    std::string message;
};

struct Plan {
    std::vector<Action> actions;
    std::vector<NodeVerdict> verdicts;  // one per node, desired or observed
    bool mass_deletion_held = false;
    std::string mass_deletion_message;

    [[nodiscard]] bool empty() const { return actions.empty(); }
};

[[nodiscard]] nlohmann::json to_json(const Action& action);
[[nodiscard]] nlohmann::json to_json(const Plan& plan);

} // namespace metalsync
