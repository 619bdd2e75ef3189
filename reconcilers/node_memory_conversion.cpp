#include "reconcilers/node_memory_conversion.hpp"

#include <set>

namespace metalsync {

NodeMemory node_memory(const NodeStatus& status)
{
    NodeMemory memory;
    memory.attempts = status.attempts;
    memory.next_attempt_at = status.next_attempt_at.value_or(0);
    memory.spec_hash = status.spec_hash;
    memory.applied_secret_hash = status.applied_secret_hash;
    memory.clean_steps_hash = status.clean_steps_hash;
    memory.config_drive_hash = status.config_drive_hash;
    memory.inspected = status.inspected;
    memory.was_active = status.was_active;
    memory.uuid = status.uuid;
    return memory;
}

void store_memory(NodeStatus& status, const NodeMemory& memory)
{
    status.attempts = memory.attempts;
    status.next_attempt_at =
        memory.next_attempt_at > 0 ? std::optional<double>(memory.next_attempt_at) : std::optional<double>();
    status.spec_hash = memory.spec_hash;
    status.applied_secret_hash = memory.applied_secret_hash;
    status.clean_steps_hash = memory.clean_steps_hash;
    status.config_drive_hash = memory.config_drive_hash;
    status.inspected = memory.inspected;
    status.was_active = memory.was_active;
    status.uuid = memory.uuid;
}

void apply_result(NodeMemory& memory, const ActionResult& result)
{
    if (!result.ok) {
        return;
    }
    if (!result.uuid.empty()) {
        memory.uuid = result.uuid;
    }
    if (result.applied_secret_hash) {
        memory.applied_secret_hash = *result.applied_secret_hash;
    }
    if (result.clean_steps_hash) {
        memory.clean_steps_hash = *result.clean_steps_hash;
    }
    if (result.config_drive_hash) {
        memory.config_drive_hash = *result.config_drive_hash;
    }
    if (result.inspected) {
        memory.inspected = *result.inspected;
        memory.inspection.reset();
    }
    if (result.inspection) {
        memory.inspection =
            InspectionMemory{hardware_from_collected(*result.inspection), expect_key_of(*result.inspection)};
    }
    if (result.was_active) {
        memory.was_active = *result.was_active;
    }
}

InspectionMemory inspection_memory(const InspectionRecord& record)
{
    return InspectionMemory{hardware_from_collected(record.inventory), expect_key_of(record.inventory)};
}

InspectionRecord inspection_record(const std::string& name, const std::string& uuid, const nlohmann::json& collected,
                                   double now)
{
    InspectionRecord record;
    record.name = name;
    record.uuid = uuid;
    record.inventory = collected;
    record.collected_at = now;
    return record;
}

void learn_from_observation(NodeMemory& memory, const ObservedNode& node)
{
    // States a node that was active can be in without its disks having been
    // touched: active itself, rescue and service around it, and the
    // re-enrolment path to adoption.
    static const std::set<std::string> k_keeps_active = {
        "active",       "enroll",          "verifying",   "manageable",   "adopting",
        "adopt failed", "rescuing",        "rescue wait", "rescue",       "rescue failed",
        "unrescuing",   "unrescue failed", "servicing",   "service wait", "service failed"};
    if (!node.uuid.empty()) {
        memory.uuid = node.uuid;
    }
    const auto& state = node.provision_state;
    if (state == "active" && node.target_provision_state.empty()) {
        memory.was_active = true;
    } else if (!k_keeps_active.contains(state)) {
        memory.was_active = false;
    }
    if (state == "inspect failed") {
        memory.inspected = false;
    }
    if (state == "clean failed") {
        memory.clean_steps_hash.clear();
    }
}

} // namespace metalsync
