#pragma once

#include <map>
#include <optional>
#include <string>

#include "reconcilers/inspection.hpp"
#include "reconcilers/observed_state.hpp"
#include "reconcilers/plan.hpp"
#include "sources/desired_state.hpp"

namespace metalsync {

// The result of the node's last inspection, once collected (the store's
// inspection table; the daemon keeps it beside node_status).
struct InspectionMemory {
    InspectedHardware hardware;
    std::string expect_key;             // expect_key() of the spec it was collected under
};

// What the store remembers of a node between ticks (never a credential).
struct NodeMemory {
    int attempts = 0;                   // retries at a failing step since the spec last changed
    double next_attempt_at = 0;         // unix seconds; no retry before
    std::string spec_hash;              // spec the attempts count against
    std::string applied_secret_hash;    // HMAC of the credentials last written to driver_info
    std::string clean_steps_hash;       // manual clean steps already run for this list
    std::string config_drive_hash;      // config drive the node was last deployed with
    bool inspected = false;             // inspection done since enrollment
    // Collected after the last inspection; empty from the inspect request
    // until collect_inspection has read it.
    std::optional<InspectionMemory> inspection;
    bool was_active = false;            // last seen active (adopt, never redeploy, if Ironic forgets it)
    std::string uuid;                   // last Ironic uuid seen
};

struct PlanInput {
    const DesiredState& desired;
    const ObservedState& observed;
    const std::map<std::string, NodeMemory>& memory;
    std::string instance;               // this daemon's instance name, written to Ironic `extra`
    double now = 0;                     // unix seconds, for backoff only
    // Current HMAC of each node's credentials file (empty when unreadable); the
    // planner compares it with memory.applied_secret_hash to notice rotation
    // and drift that Ironic's masking hides.
    std::map<std::string, std::string> secret_hashes;
    // Node name -> why: nodes a Cluster API machine's claim holds
    // (provider::claim_holds). Their provisioning is the provider's; the
    // planner keeps only what Git governs on any node, and never retires them.
    std::map<std::string, std::string> claimed;
};

// The node half of the plan. Pure: the same inputs give the same plan.
[[nodiscard]] Plan plan_nodes(const PlanInput& input);

// Ironic provision states in which the conductor is busy with the node.
[[nodiscard]] bool is_busy_state(const std::string& provision_state);

// The desired driver_info without secrets, as metalsync writes it; the
// executor adds the username and password read from the credentials file.
[[nodiscard]] nlohmann::json desired_driver_info(const NodeSpec& spec);
[[nodiscard]] nlohmann::json desired_instance_info(const NodeSpec& spec);
[[nodiscard]] std::string config_drive_hash(const NodeSpec& spec);
[[nodiscard]] std::string clean_steps_hash(const NodeSpec& spec);

} // namespace metalsync
